//! Reading a container's cgroup on v1 (and hybrid) and v2 hosts.

use std::fs;
use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/fs/cgroup";

/// True on a unified (v2-only) host.
pub fn is_unified() -> bool {
    Path::new(ROOT).join("cgroup.controllers").exists()
}

fn dir(controller: &str, cgroup_path: &str) -> PathBuf {
    dir_at(Path::new(ROOT), is_unified(), controller, cgroup_path)
}

/// A controller's directory for a cgroup: one tree on cgroup2, one per
/// controller on v1.
fn dir_at(root: &Path, unified: bool, controller: &str, cgroup_path: &str) -> PathBuf {
    let rel = cgroup_path.trim_start_matches('/');
    if unified {
        root.join(rel)
    } else {
        root.join(controller).join(rel)
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

/// One reading of a container's cgroup counters, in Docker's units.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CgroupStats {
    /// CPU time, nanoseconds: total, user, system.
    pub cpu_total: u64,
    pub cpu_user: u64,
    pub cpu_system: u64,
    pub percpu: Vec<u64>,
    pub mem_usage: u64,
    pub mem_max_usage: u64,
    /// None: unlimited.
    pub mem_limit: Option<u64>,
    /// `memory.stat` as it is (v1 or v2 keys).
    pub mem_stat: Vec<(String, u64)>,
    pub pids: u64,
    pub pids_limit: Option<u64>,
    /// (major, minor, op, bytes) with ops `read`/`write`.
    pub io_bytes: Vec<(u64, u64, String, u64)>,
}

fn read_u64(p: &Path) -> Option<u64> {
    fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// A limit file: `max` (v2) or a huge v1 value means none.
fn read_limit(p: &Path) -> Option<u64> {
    let s = fs::read_to_string(p).ok()?;
    let v: u64 = s.trim().parse().ok()?;
    (v < (1 << 62)).then_some(v)
}

fn key_values(p: &Path) -> Vec<(String, u64)> {
    fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.parse().ok()?))
        })
        .collect()
}

/// The container's counters now.
pub fn stats(cgroup_path: &str) -> CgroupStats {
    stats_at(Path::new(ROOT), is_unified(), cgroup_path)
}

/// `stats` under a given cgroup mount root (tests point it at a fake tree).
pub fn stats_at(root: &Path, unified: bool, cgroup_path: &str) -> CgroupStats {
    let at = |controller: &str| dir_at(root, unified, controller, cgroup_path);
    let mut s = CgroupStats::default();
    if unified {
        let d = at("");
        let cpu = key_values(&d.join("cpu.stat"));
        let get = |k: &str| cpu.iter().find(|(a, _)| a == k).map(|(_, v)| *v * 1000);
        s.cpu_total = get("usage_usec").unwrap_or(0);
        s.cpu_user = get("user_usec").unwrap_or(0);
        s.cpu_system = get("system_usec").unwrap_or(0);
        s.mem_usage = read_u64(&d.join("memory.current")).unwrap_or(0);
        s.mem_max_usage = read_u64(&d.join("memory.peak")).unwrap_or(0);
        s.mem_limit = read_limit(&d.join("memory.max"));
        s.mem_stat = key_values(&d.join("memory.stat"));
        s.pids = read_u64(&d.join("pids.current")).unwrap_or(0);
        s.pids_limit = read_limit(&d.join("pids.max"));
        for l in fs::read_to_string(d.join("io.stat"))
            .unwrap_or_default()
            .lines()
        {
            let mut it = l.split_whitespace();
            let Some((maj, min)) = it.next().and_then(|d| d.split_once(':')) else {
                continue;
            };
            let (Ok(maj), Ok(min)) = (maj.parse(), min.parse()) else {
                continue;
            };
            for kv in it {
                let op = match kv.split_once('=') {
                    Some(("rbytes", v)) => ("read", v),
                    Some(("wbytes", v)) => ("write", v),
                    _ => continue,
                };
                if let Ok(n) = op.1.parse() {
                    s.io_bytes.push((maj, min, op.0.to_string(), n));
                }
            }
        }
    } else {
        let cpu = at("cpuacct");
        s.cpu_total = read_u64(&cpu.join("cpuacct.usage")).unwrap_or(0);
        s.percpu = fs::read_to_string(cpu.join("cpuacct.usage_percpu"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        // cpuacct.stat counts USER_HZ (100/s) ticks.
        let ticks = key_values(&cpu.join("cpuacct.stat"));
        let get = |k: &str| {
            ticks
                .iter()
                .find(|(a, _)| a == k)
                .map(|(_, v)| *v * 10_000_000)
        };
        s.cpu_user = get("user").unwrap_or(0);
        s.cpu_system = get("system").unwrap_or(0);
        let mem = at("memory");
        s.mem_usage = read_u64(&mem.join("memory.usage_in_bytes")).unwrap_or(0);
        s.mem_max_usage = read_u64(&mem.join("memory.max_usage_in_bytes")).unwrap_or(0);
        s.mem_limit = read_limit(&mem.join("memory.limit_in_bytes"));
        s.mem_stat = key_values(&mem.join("memory.stat"));
        let pids = at("pids");
        s.pids = read_u64(&pids.join("pids.current")).unwrap_or(0);
        s.pids_limit = read_limit(&pids.join("pids.max"));
        let blk = at("blkio");
        for l in fs::read_to_string(blk.join("blkio.throttle.io_service_bytes_recursive"))
            .unwrap_or_default()
            .lines()
        {
            let f: Vec<&str> = l.split_whitespace().collect();
            let [dev, op, n] = f[..] else { continue };
            let Some((maj, min)) = dev.split_once(':') else {
                continue;
            };
            let (Ok(maj), Ok(min), Ok(n)) = (maj.parse(), min.parse(), n.parse()) else {
                continue;
            };
            s.io_bytes.push((maj, min, op.to_ascii_lowercase(), n));
        }
    }
    s
}

/// Ends whatever is left in a container's cgroup (a shim killed before it
/// could clean up) and removes the cgroup from every hierarchy.
pub fn destroy(cgroup_path: &str) {
    let procs = dir("pids", cgroup_path).join("cgroup.procs");
    for _ in 0..100 {
        let pids: Vec<i32> = fs::read_to_string(&procs)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        if pids.is_empty() {
            break;
        }
        for p in pids {
            // SAFETY: kill(2) with a pid read from the container's own cgroup.
            unsafe {
                libc::kill(p, libc::SIGKILL);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let rel = cgroup_path.trim_start_matches('/');
    if is_unified() {
        let _ = fs::remove_dir(Path::new(ROOT).join(rel));
        return;
    }
    for hierarchy in fs::read_dir(ROOT).into_iter().flatten().flatten() {
        let _ = fs::remove_dir(hierarchy.path().join(rel));
    }
}

/// A device rule of the runtime spec (`linux.resources.devices`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeviceRule {
    pub allow: bool,
    /// 'c' or 'b'; None: every kind.
    pub kind: Option<char>,
    pub major: Option<i64>,
    pub minor: Option<i64>,
    /// Letters of "rwm".
    pub access: String,
}

impl DeviceRule {
    pub fn from_spec(v: &serde_json::Value) -> DeviceRule {
        DeviceRule {
            allow: v["allow"].as_bool().unwrap_or(false),
            kind: v["type"]
                .as_str()
                .and_then(|t| t.chars().next())
                .filter(|c| *c != 'a'),
            major: v["major"].as_i64(),
            minor: v["minor"].as_i64(),
            access: v["access"].as_str().unwrap_or("rwm").to_string(),
        }
    }

    /// The line v1's devices.allow / devices.deny take.
    pub fn v1_line(&self) -> String {
        let n = |v: Option<i64>| v.map_or("*".to_string(), |n| n.to_string());
        format!(
            "{} {}:{} {}",
            self.kind.unwrap_or('a'),
            n(self.major),
            n(self.minor),
            self.access
        )
    }
}

/// cgroup v2 has no devices.allow: the same rules as a
/// BPF_PROG_TYPE_CGROUP_DEVICE program. The last rule that matches decides,
/// as when v1 applies them in order; nothing matching is refused.
pub fn device_program(rules: &[DeviceRule]) -> Vec<u64> {
    use crate::bpf::asm::*;
    // struct bpf_cgroup_dev_ctx { u32 access_type (access << 16 | type); u32 major; u32 minor; }
    let mut a = Asm::default();
    a.ldx(W, R2, R1, 0);
    a.mov_reg(R3, R2);
    a.and_imm(R3, 0xffff);
    a.mov_reg(R4, R2);
    a.rsh_imm(R4, 16);
    a.ldx(W, R5, R1, 4);
    a.ldx(W, R6, R1, 8);
    for r in rules.iter().rev() {
        if let Some(k) = r.kind {
            // BPF_DEVCG_DEV_BLOCK 1, BPF_DEVCG_DEV_CHAR 2.
            a.jne_imm_pending(R3, if k == 'b' { 1 } else { 2 });
        }
        // BPF_DEVCG_ACC_MKNOD 1, READ 2, WRITE 4.
        let mask: i32 = r.access.chars().fold(0, |m, c| {
            m | match c {
                'm' => 1,
                'r' => 2,
                'w' => 4,
                _ => 0,
            }
        });
        a.mov_reg(R7, R4);
        if r.allow {
            // Allowed only if everything asked for is in the rule.
            a.and_imm(R7, !mask & 7);
            a.jne_imm_pending(R7, 0);
        } else {
            // Refused if anything asked for is in the rule.
            a.and_imm(R7, mask);
            a.jeq_imm_pending(R7, 0);
        }
        if let Some(m) = r.major.filter(|m| *m >= 0) {
            a.jne_imm_pending(R5, m as i32);
        }
        if let Some(m) = r.minor.filter(|m| *m >= 0) {
            a.jne_imm_pending(R6, m as i32);
        }
        a.mov_imm(R0, i32::from(r.allow));
        a.exit();
        a.resolve_pending();
    }
    a.mov_imm(R0, 0);
    a.exit();
    a.finish()
}

/// Loads `rules` as a device program and attaches it to a cgroup2 directory.
pub fn attach_device_rules(dir: &Path, rules: &[DeviceRule]) -> std::io::Result<()> {
    use crate::bpf;
    use std::os::fd::AsRawFd;
    let prog = bpf::prog_load(bpf::PROG_TYPE_CGROUP_DEVICE, &device_program(rules), 0)?;
    let cg = fs::File::open(dir)?;
    bpf::prog_attach(
        prog.as_raw_fd(),
        cg.as_raw_fd(),
        bpf::ATTACH_CGROUP_DEVICE,
        bpf::F_ALLOW_MULTI,
    )
}

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
    let max = |v: i64| {
        if v <= 0 {
            "max".to_string()
        } else {
            v.to_string()
        }
    };
    if unified {
        let d = at("");
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
        let weights = weight_file(&d, ["io.weight", "io.bfq.weight"]);
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
        return Ok(());
    }
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

    /// Docker's default device rules, as spec::build writes them.
    fn docker_rules() -> Vec<DeviceRule> {
        let spec = crate::spec::build(&crate::spec::RunSpec {
            args: vec!["true".into()],
            ..Default::default()
        })
        .unwrap();
        spec["linux"]["resources"]["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(DeviceRule::from_spec)
            .collect()
    }

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
    fn device_rules_read_as_v1_lines() {
        let lines: Vec<String> = docker_rules().iter().map(|r| r.v1_line()).collect();
        assert_eq!(lines[0], "a *:* rwm");
        assert!(lines.contains(&"c 1:3 rwm".to_string()));
        assert!(lines.contains(&"c 136:* rwm".to_string()));
        assert!(lines.contains(&"b *:* m".to_string()));
    }

    /// The v2 device filter, for real: attached to a cgroup2 directory (on a
    /// hybrid host, in the cgroup2 hierarchy beside the v1 ones), it lets a
    /// process in that cgroup open /dev/null's numbers and refuses
    /// /dev/kmsg's. Needs root and a cgroup2 mount; skipped otherwise.
    #[test]
    fn device_program_enforces_the_rules_on_cgroup2() {
        let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let Some(root) = info.lines().find_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            post.starts_with("cgroup2 ")
                .then(|| pre.split(' ').nth(4).map(String::from))?
        }) else {
            eprintln!("no cgroup2 mount: skipped");
            return;
        };
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("not root: skipped");
            return;
        }
        let cg = Path::new(&root).join(format!("berth-devtest-{}", std::process::id()));
        fs::create_dir(&cg).unwrap();
        let nodes = tempfile::tempdir().unwrap();
        let result = std::panic::catch_unwind(|| {
            attach_device_rules(&cg, &docker_rules()).unwrap();
            let try_open = |name: &str, major: u32, minor: u32| {
                let node = nodes.path().join(name);
                let c = std::ffi::CString::new(node.to_str().unwrap()).unwrap();
                // SAFETY: mknod of a node in our own temp dir.
                let r = unsafe {
                    libc::mknod(
                        c.as_ptr(),
                        libc::S_IFCHR | 0o600,
                        libc::makedev(major, minor),
                    )
                };
                assert_eq!(r, 0, "mknod: {}", std::io::Error::last_os_error());
                let script = format!(
                    "echo $$ > {}/cgroup.procs && exec head -c 0 {}",
                    cg.display(),
                    node.display()
                );
                std::process::Command::new("sh")
                    .args(["-c", &script])
                    .stderr(std::process::Stdio::null())
                    .status()
                    .unwrap()
                    .success()
            };
            assert!(try_open("null", 1, 3), "c 1:3 is allowed");
            assert!(!try_open("kmsg", 1, 11), "c 1:11 is refused");
        });
        let _ = fs::remove_dir(&cg);
        result.unwrap();
    }
    use super::*;

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

    #[test]
    fn reads_v1_and_v2_counters() {
        let d = tempfile::tempdir().unwrap();
        let w = |p: &str, s: &str| {
            let p = d.path().join(p);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, s).unwrap();
        };
        w("cpuacct/berth/c/cpuacct.usage", "5000000000\n");
        w(
            "cpuacct/berth/c/cpuacct.usage_percpu",
            "3000000000 2000000000 \n",
        );
        w("cpuacct/berth/c/cpuacct.stat", "user 300\nsystem 100\n");
        w("memory/berth/c/memory.usage_in_bytes", "1048576\n");
        w(
            "memory/berth/c/memory.limit_in_bytes",
            "9223372036854771712\n",
        );
        w(
            "memory/berth/c/memory.stat",
            "cache 4096\ntotal_inactive_file 8192\n",
        );
        w("pids/berth/c/pids.current", "3\n");
        w("pids/berth/c/pids.max", "max\n");
        w(
            "blkio/berth/c/blkio.throttle.io_service_bytes_recursive",
            "8:0 Read 10\n8:0 Write 20\nTotal 30\n",
        );
        let s = stats_at(d.path(), false, "/berth/c");
        assert_eq!(
            (s.cpu_total, s.cpu_user, s.cpu_system),
            (5_000_000_000, 3_000_000_000, 1_000_000_000)
        );
        assert_eq!(s.percpu, [3_000_000_000, 2_000_000_000]);
        assert_eq!(
            (s.mem_usage, s.mem_limit, s.pids, s.pids_limit),
            (1 << 20, None, 3, None)
        );
        assert_eq!(s.mem_stat[1], ("total_inactive_file".to_string(), 8192));
        assert_eq!(
            s.io_bytes,
            [
                (8, 0, "read".to_string(), 10),
                (8, 0, "write".to_string(), 20)
            ]
        );

        w(
            "v2/berth/c/cpu.stat",
            "usage_usec 2000\nuser_usec 1500\nsystem_usec 500\n",
        );
        w("v2/berth/c/memory.current", "4096\n");
        w("v2/berth/c/memory.max", "8192\n");
        w("v2/berth/c/pids.current", "2\n");
        w("v2/berth/c/pids.max", "100\n");
        w(
            "v2/berth/c/io.stat",
            "8:0 rbytes=5 wbytes=6 rios=1 wios=1\n",
        );
        let s = stats_at(&d.path().join("v2"), true, "/berth/c");
        assert_eq!(
            (s.cpu_total, s.cpu_user, s.cpu_system),
            (2_000_000, 1_500_000, 500_000)
        );
        assert_eq!(
            (s.mem_usage, s.mem_limit, s.pids, s.pids_limit),
            (4096, Some(8192), 2, Some(100))
        );
        assert_eq!(
            s.io_bytes,
            [
                (8, 0, "read".to_string(), 5),
                (8, 0, "write".to_string(), 6)
            ]
        );
    }

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
