//! Writing a container's cgroup limits on v1 and v2: at creation (by the
//! shim) and for `docker update`, including the cgroup2 controllers its
//! ancestors must hand down and the v1 cpuset levels that must be filled.

use super::{dir_at, is_unified, read_limit, read_u64, ROOT};
use std::fs;
use std::path::{Path, PathBuf};

/// New limits for a running container (`docker update`); None leaves one be.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    /// Bytes.
    pub memory: Option<i64>,
    /// Memory plus swap, bytes; -1 unlimited.
    pub memory_swap: Option<i64>,
    /// (quota, period) in microseconds.
    pub cpu_quota: Option<(i64, i64)>,
    pub cpu_shares: Option<i64>,
    /// 0 or less: unlimited.
    pub pids: Option<i64>,
    /// Soft limit, bytes (v1 `memory.soft_limit_in_bytes`, v2 `memory.low`).
    pub memory_reservation: Option<i64>,
    /// v1 only.
    pub swappiness: Option<i64>,
    /// v1 only.
    pub oom_kill_disable: Option<bool>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    pub blkio_weight: Option<u16>,
    /// ("MAJOR:MINOR", weight).
    pub blkio_weight_device: Vec<(String, u16)>,
    /// ("MAJOR:MINOR", per second) throttles.
    pub read_bps: Vec<(String, u64)>,
    pub write_bps: Vec<(String, u64)>,
    pub read_iops: Vec<(String, u64)>,
    pub write_iops: Vec<(String, u64)>,
}

/// (v1 file suffix, v2 `io.max` key, the devices' rates).
type Throttle<'a> = (&'static str, &'static str, &'a [(String, u64)]);

impl Limits {
    fn io_throttles(&self) -> [Throttle<'_>; 4] {
        [
            ("read_bps_device", "rbps", &self.read_bps),
            ("write_bps_device", "wbps", &self.write_bps),
            ("read_iops_device", "riops", &self.read_iops),
            ("write_iops_device", "wiops", &self.write_iops),
        ]
    }
}

/// A v1 cpuset cgroup starts with no cpus and no memory nodes, and a task
/// cannot join it so: each level from the hierarchy's root down to the
/// container's takes its parent's lists where it has none.
pub fn init_cpuset_v1(root: &Path, cgroup_path: &str) -> std::io::Result<()> {
    let mut dir = root.join("cpuset");
    for c in cgroup_path.split('/').filter(|c| !c.is_empty()) {
        let child = dir.join(c);
        fs::create_dir_all(&child)?;
        for f in ["cpuset.cpus", "cpuset.mems"] {
            let mine = fs::read_to_string(child.join(f)).unwrap_or_default();
            if mine.trim().is_empty() {
                write(&child.join(f), fs::read_to_string(dir.join(f))?.trim())?;
            }
        }
        dir = child;
    }
    Ok(())
}

/// v1 weights live in `blkio.weight` (CFQ) or `blkio.bfq.weight` (BFQ),
/// v2 in `io.weight` or `io.bfq.weight`: the first that exists.
fn weight_file(dir: &Path, names: [&str; 2]) -> Option<PathBuf> {
    names.iter().map(|n| dir.join(n)).find(|p| p.exists())
}

/// Writes `l` into the container's cgroup.
pub fn update(cgroup_path: &str, l: &Limits) -> std::io::Result<()> {
    update_at(Path::new(ROOT), is_unified(), cgroup_path, l)
}

fn write(p: &Path, v: &str) -> std::io::Result<()> {
    fs::write(p, v).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", p.display())))
}

/// The cgroup2 controllers a container's cgroup needs for its limits and
/// its stats.
const V2_CONTROLLERS: [&str; 5] = ["cpu", "cpuset", "io", "memory", "pids"];

/// On cgroup2 a cgroup has memory.max, pids.max… only when every ancestor
/// hands the controller down in `cgroup.subtree_control`: enables what the
/// hierarchy offers on each level above the container's cgroup.
pub fn enable_controllers_at(root: &Path, cgroup_path: &str) -> std::io::Result<()> {
    let mut dir = root.to_path_buf();
    let comps: Vec<&str> = cgroup_path.split('/').filter(|c| !c.is_empty()).collect();
    for (i, c) in comps.iter().enumerate() {
        let offered = fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
        let enabled = fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
        let missing: Vec<String> = V2_CONTROLLERS
            .iter()
            .filter(|k| offered.split_whitespace().any(|o| o == **k))
            .filter(|k| !enabled.split_whitespace().any(|o| o == **k))
            .map(|k| format!("+{k}"))
            .collect();
        if !missing.is_empty() {
            write(&dir.join("cgroup.subtree_control"), &missing.join(" "))?;
        }
        dir = dir.join(c);
        if i + 1 < comps.len() {
            fs::create_dir_all(&dir)?;
        }
    }
    Ok(())
}

/// `update` under a given cgroup mount root (tests point it at a fake tree).
pub fn update_at(root: &Path, unified: bool, cgroup_path: &str, l: &Limits) -> std::io::Result<()> {
    let at = |controller: &str| dir_at(root, unified, controller, cgroup_path);
    if unified {
        update_v2(&at(""), l)
    } else {
        update_v1(&at, l)
    }
}

/// A limit as cgroup2 files take it: `max` for none.
fn max(v: i64) -> String {
    if v <= 0 {
        "max".to_string()
    } else {
        v.to_string()
    }
}

/// cgroup2: every controller's files in the one directory `d`.
fn update_v2(d: &Path, l: &Limits) -> std::io::Result<()> {
    if let Some(m) = l.memory {
        write(&d.join("memory.max"), &max(m))?;
    }
    if let Some(sw) = l.memory_swap {
        // cgroup2 limits swap alone: memory+swap less memory.
        let mem = l
            .memory
            .or_else(|| read_limit(&d.join("memory.max")).map(|v| v as i64));
        let v = match (sw, mem) {
            (-1, _) | (_, None) => "max".to_string(),
            (sw, Some(m)) => (sw - m).max(0).to_string(),
        };
        write(&d.join("memory.swap.max"), &v)?;
    }
    if let Some((quota, period)) = l.cpu_quota {
        write(&d.join("cpu.max"), &format!("{} {period}", max(quota)))?;
    }
    if let Some(shares) = l.cpu_shares {
        let weight = 1 + ((shares.clamp(2, 262144) - 2) * 9999) / 262142;
        write(&d.join("cpu.weight"), &weight.to_string())?;
    }
    if let Some(p) = l.pids {
        write(&d.join("pids.max"), &max(p))?;
    }
    if let Some(r) = l.memory_reservation {
        write(&d.join("memory.low"), &r.max(0).to_string())?;
    }
    if let Some(c) = &l.cpuset_cpus {
        write(&d.join("cpuset.cpus"), c)?;
    }
    if let Some(m) = &l.cpuset_mems {
        write(&d.join("cpuset.mems"), m)?;
    }
    let weights = weight_file(d, ["io.weight", "io.bfq.weight"]);
    if let (Some(w), Some(f)) = (l.blkio_weight, &weights) {
        write(f, &format!("default {w}"))?;
    }
    for (dev, w) in &l.blkio_weight_device {
        if let Some(f) = &weights {
            write(f, &format!("{dev} {w}"))?;
        }
    }
    for (_, key, list) in l.io_throttles() {
        for (dev, rate) in list {
            write(
                &d.join("io.max"),
                &format!("{dev} {key}={}", max(*rate as i64)),
            )?;
        }
    }
    Ok(())
}

/// cgroup v1: one directory per controller, as `at` finds it.
fn update_v1(at: &dyn Fn(&str) -> PathBuf, l: &Limits) -> std::io::Result<()> {
    let mem = at("memory");
    let memsw = mem.join("memory.memsw.limit_in_bytes");
    let sw = l.memory_swap.map(|v| {
        if v == -1 {
            "-1".to_string()
        } else {
            v.to_string()
        }
    });
    // memory ≤ memory+swap must hold after each write: raise memsw first
    // when memory goes above its current value.
    let memsw_first = match (l.memory, read_u64(&memsw)) {
        (Some(m), Some(cur)) => m as u64 > cur,
        _ => false,
    };
    if let (true, Some(v)) = (memsw_first, &sw) {
        write(&memsw, v)?;
    }
    if let Some(m) = l.memory {
        write(&mem.join("memory.limit_in_bytes"), &m.to_string())?;
    }
    if let (false, Some(v)) = (memsw_first, &sw) {
        if memsw.exists() {
            write(&memsw, v)?;
        }
    }
    let cpu = at("cpu");
    if let Some((quota, period)) = l.cpu_quota {
        write(&cpu.join("cpu.cfs_period_us"), &period.to_string())?;
        write(
            &cpu.join("cpu.cfs_quota_us"),
            &(if quota <= 0 { -1 } else { quota }).to_string(),
        )?;
    }
    if let Some(shares) = l.cpu_shares {
        write(&cpu.join("cpu.shares"), &shares.to_string())?;
    }
    if let Some(p) = l.pids {
        write(&at("pids").join("pids.max"), &max(p))?;
    }
    if let Some(r) = l.memory_reservation {
        let v = if r <= 0 {
            "-1".to_string()
        } else {
            r.to_string()
        };
        write(&mem.join("memory.soft_limit_in_bytes"), &v)?;
    }
    if let Some(s) = l.swappiness {
        write(&mem.join("memory.swappiness"), &s.to_string())?;
    }
    if let Some(off) = l.oom_kill_disable {
        write(&mem.join("memory.oom_control"), if off { "1" } else { "0" })?;
    }
    let cpuset = at("cpuset");
    if let Some(c) = &l.cpuset_cpus {
        write(&cpuset.join("cpuset.cpus"), c)?;
    }
    if let Some(m) = &l.cpuset_mems {
        write(&cpuset.join("cpuset.mems"), m)?;
    }
    let blkio = at("blkio");
    let weights = weight_file(&blkio, ["blkio.weight", "blkio.bfq.weight"]);
    if let (Some(w), Some(f)) = (l.blkio_weight, &weights) {
        write(f, &w.to_string())?;
    }
    let weight_dev = weight_file(&blkio, ["blkio.weight_device", "blkio.bfq.weight_device"]);
    for (dev, w) in &l.blkio_weight_device {
        if let Some(f) = &weight_dev {
            write(f, &format!("{dev} {w}"))?;
        }
    }
    for (file, _, list) in l.io_throttles() {
        for (dev, rate) in list {
            write(
                &blkio.join(format!("blkio.throttle.{file}")),
                &format!("{dev} {rate}"),
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup2_ancestors_hand_the_controllers_down() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        fs::write(
            r.join("cgroup.controllers"),
            "cpuset cpu io memory hugetlb pids rdma\n",
        )
        .unwrap();
        fs::write(r.join("cgroup.subtree_control"), "memory\n").unwrap();
        fs::create_dir(r.join("berth")).unwrap();
        fs::write(r.join("berth/cgroup.controllers"), "cpu io memory pids\n").unwrap();
        fs::write(r.join("berth/cgroup.subtree_control"), "").unwrap();
        enable_controllers_at(r, "/berth/abc").unwrap();
        // Only what each level offers and lacks; the container's own
        // cgroup is left to be made.
        assert_eq!(
            fs::read_to_string(r.join("cgroup.subtree_control")).unwrap(),
            "+cpu +cpuset +io +pids"
        );
        assert_eq!(
            fs::read_to_string(r.join("berth/cgroup.subtree_control")).unwrap(),
            "+cpu +io +memory +pids"
        );
        assert!(!r.join("berth/abc").exists());
    }

    #[test]
    fn cpuset_levels_take_their_parents_lists() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("cpuset");
        fs::create_dir_all(root.join("berth")).unwrap();
        fs::write(root.join("cpuset.cpus"), "0-3\n").unwrap();
        fs::write(root.join("cpuset.mems"), "0\n").unwrap();
        fs::write(root.join("berth/cpuset.cpus"), "1-2\n").unwrap();
        init_cpuset_v1(d.path(), "/berth/c").unwrap();
        let r = |p: &str| fs::read_to_string(root.join(p)).unwrap();
        assert_eq!(r("berth/cpuset.mems"), "0");
        assert_eq!(r("berth/c/cpuset.cpus"), "1-2");
        assert_eq!(r("berth/c/cpuset.mems"), "0");
    }

    #[test]
    fn updates_v1_and_v2_limits() {
        let d = tempfile::tempdir().unwrap();
        for f in [
            "memory/berth/c/memory.limit_in_bytes",
            "cpu/berth/c/cpu.shares",
            "pids/berth/c/pids.max",
            "v2/berth/c/memory.max",
        ] {
            let p = d.path().join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, "0").unwrap();
        }
        fs::create_dir_all(d.path().join("cpu/berth/c")).unwrap();
        fs::write(
            d.path().join("memory/berth/c/memory.memsw.limit_in_bytes"),
            "67108864",
        )
        .unwrap();
        let l = Limits {
            memory: Some(128 << 20),
            memory_swap: Some(256 << 20),
            cpu_quota: Some((50_000, 100_000)),
            cpu_shares: Some(512),
            pids: Some(0),
            memory_reservation: Some(64 << 20),
            swappiness: Some(10),
            oom_kill_disable: Some(true),
            cpuset_cpus: Some("0".into()),
            read_bps: vec![("8:0".into(), 1048576)],
            ..Default::default()
        };
        for f in ["cpuset/berth/c", "blkio/berth/c", "v2/berth/c"] {
            fs::create_dir_all(d.path().join(f)).unwrap();
        }
        update_at(d.path(), false, "/berth/c", &l).unwrap();
        let r = |p: &str| fs::read_to_string(d.path().join(p)).unwrap();
        assert_eq!(
            r("memory/berth/c/memory.limit_in_bytes"),
            (128u64 << 20).to_string()
        );
        assert_eq!(
            r("memory/berth/c/memory.memsw.limit_in_bytes"),
            (256u64 << 20).to_string()
        );
        assert_eq!(r("cpu/berth/c/cpu.cfs_quota_us"), "50000");
        assert_eq!(r("cpu/berth/c/cpu.shares"), "512");
        assert_eq!(r("pids/berth/c/pids.max"), "max");
        assert_eq!(
            r("memory/berth/c/memory.soft_limit_in_bytes"),
            (64u64 << 20).to_string()
        );
        assert_eq!(r("memory/berth/c/memory.swappiness"), "10");
        assert_eq!(r("memory/berth/c/memory.oom_control"), "1");
        assert_eq!(r("cpuset/berth/c/cpuset.cpus"), "0");
        assert_eq!(
            r("blkio/berth/c/blkio.throttle.read_bps_device"),
            "8:0 1048576"
        );
        update_at(&d.path().join("v2"), true, "/berth/c", &l).unwrap();
        assert_eq!(r("v2/berth/c/io.max"), "8:0 rbps=1048576");
        assert_eq!(r("v2/berth/c/memory.low"), (64u64 << 20).to_string());
        assert_eq!(r("v2/berth/c/memory.max"), (128u64 << 20).to_string());
        assert_eq!(r("v2/berth/c/memory.swap.max"), (128u64 << 20).to_string());
        assert_eq!(r("v2/berth/c/cpu.max"), "50000 100000");
        assert_eq!(r("v2/berth/c/cpu.weight"), "20");
    }
}
