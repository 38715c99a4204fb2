//! Reading a container's cgroup on v1 (and hybrid) and v2 hosts.

use std::fs;
use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/fs/cgroup";

/// True on a unified (v2-only) host.
pub fn is_unified() -> bool {
    Path::new(ROOT).join("cgroup.controllers").exists()
}

fn dir(controller: &str, cgroup_path: &str) -> PathBuf {
    let rel = cgroup_path.trim_start_matches('/');
    if is_unified() {
        Path::new(ROOT).join(rel)
    } else {
        Path::new(ROOT).join(controller).join(rel)
    }
}

/// The cgroup2 mount options that must survive a remount; anything else in
/// the super block options (rw, favordynmods itself) is left out.
const CGROUP2_KEEP: [&str; 5] = [
    "nsdelegate",
    "memory_localevents",
    "memory_recursiveprot",
    "memory_hugetlb_accounting",
    "pids_localevents",
];

/// Where a cgroup2 hierarchy is mounted without `favordynmods`, and the
/// options to remount it with, from /proc/self/mountinfo.
pub fn favordynmods_remounts(mountinfo: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let mut post = post.split_whitespace();
        if post.next() != Some("cgroup2") {
            continue;
        }
        let super_opts = post.nth(1).unwrap_or("");
        if super_opts.split(',').any(|o| o == "favordynmods") {
            return Vec::new();
        }
        let Some(target) = pre.split_whitespace().nth(4) else {
            continue;
        };
        let mut opts: Vec<&str> = super_opts
            .split(',')
            .filter(|o| CGROUP2_KEEP.contains(o))
            .collect();
        opts.push("favordynmods");
        out.push((target.to_string(), opts.join(",")));
    }
    // One hierarchy is enough: the lock it relaxes is global.
    out.truncate(1);
    out
}

/// Every process in the container, as host pids.
pub fn pids(cgroup_path: &str) -> Vec<i32> {
    let mut v: Vec<i32> = fs::read_to_string(dir("pids", cgroup_path).join("cgroup.procs"))
        .or_else(|_| fs::read_to_string(dir("memory", cgroup_path).join("cgroup.procs")))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    v.sort_unstable();
    v
}

/// How many times the kernel's OOM killer struck inside the cgroup.
pub fn oom_kills(cgroup_path: &str) -> u64 {
    let (file, key) = if is_unified() {
        ("memory.events", "oom_kill")
    } else {
        ("memory.oom_control", "oom_kill")
    };
    fs::read_to_string(dir("memory", cgroup_path).join(file))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let mut it = l.split_whitespace();
            (it.next() == Some(key)).then(|| it.next()?.parse().ok())?
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
35 25 0:30 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
40 35 0:35 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 35 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    #[test]
    fn remounts_one_cgroup2_keeping_its_semantic_options() {
        assert_eq!(
            favordynmods_remounts(HYBRID),
            vec![(
                "/sys/fs/cgroup/unified".to_string(),
                "nsdelegate,memory_recursiveprot,favordynmods".to_string()
            )]
        );
    }

    #[test]
    fn nothing_to_do_when_already_set_or_without_cgroup2() {
        let set = HYBRID.replace("memory_recursiveprot", "favordynmods");
        assert!(favordynmods_remounts(&set).is_empty());
        let v1_only: String = HYBRID.lines().take(2).map(|l| format!("{l}\n")).collect();
        assert!(favordynmods_remounts(&v1_only).is_empty());
    }
}
