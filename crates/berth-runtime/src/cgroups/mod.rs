//! Reading a container's cgroup on v1 (and hybrid) and v2 hosts; its limits
//! are written by `limits.rs`.

pub mod host;
mod limits;
pub use limits::*;

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
    pub fn from_spec(d: &oci_spec::runtime::LinuxDeviceCgroup) -> DeviceRule {
        use oci_spec::runtime::LinuxDeviceType as T;
        DeviceRule {
            allow: d.allow(),
            kind: match d.typ() {
                Some(T::C | T::U) => Some('c'),
                Some(T::B) => Some('b'),
                Some(T::P) => Some('p'),
                Some(T::A) | None => None,
            },
            major: d.major(),
            minor: d.minor(),
            access: d.access().clone().unwrap_or_else(|| "rwm".into()),
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

#[cfg(test)]
mod tests {

    /// Docker's default device rules, as spec::build writes them.
    fn docker_rules() -> Vec<DeviceRule> {
        let spec = crate::spec::build(&crate::spec::RunSpec {
            args: vec!["true".into()],
            ..Default::default()
        })
        .unwrap();
        let resources = spec.linux().as_ref().unwrap().resources().as_ref().unwrap();
        resources
            .devices()
            .iter()
            .flatten()
            .map(DeviceRule::from_spec)
            .collect()
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
