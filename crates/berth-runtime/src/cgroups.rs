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
