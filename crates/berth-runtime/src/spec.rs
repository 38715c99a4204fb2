//! A container's settings → an OCI runtime spec (`config.json`).

use crate::RuntimeError;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::PathBuf;

/// Docker's default capability set.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability the kernel knows, in its bit order (index = bit number).
pub const ALL_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Docker's default masked paths, less the per-cpu ones
/// [`default_masked_paths`] adds.
const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's default read-only paths.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Docker's default masked paths on this host: the fixed list and each
/// cpu's `thermal_throttle` directory (it leaks host activity).
pub fn default_masked_paths() -> Vec<String> {
    // The host's cpus do not change while berthd runs: looked up once, not
    // at every create.
    static PATHS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    PATHS.get_or_init(masked_paths_of_this_host).clone()
}

fn masked_paths_of_this_host() -> Vec<String> {
    let mut out: Vec<String> = MASKED_PATHS.iter().map(|s| s.to_string()).collect();
    let online = std::fs::read_to_string("/sys/devices/system/cpu/possible").unwrap_or_default();
    for part in online.trim().split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let (Ok(lo), Ok(hi)) = (lo.parse::<u32>(), hi.parse::<u32>()) else {
            continue;
        };
        for cpu in lo..=hi.min(lo + 8192) {
            let p = format!("/sys/devices/system/cpu/cpu{cpu}/thermal_throttle");
            if std::path::Path::new(&p).exists() {
                out.push(p);
            }
        }
    }
    out
}

/// A block device's weight or throttle rate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct BlkioDevice {
    pub major: u64,
    pub minor: u64,
    pub value: u64,
}

/// A host device made inside the container (`--device`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DeviceNode {
    /// Where, inside the container.
    pub path: String,
    /// 'c' or 'b'.
    pub kind: char,
    pub major: u64,
    pub minor: u64,
    /// Permission bits, as on the host.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Letters of "rwm" for the device cgroup.
    pub access: String,
}

/// An extra `linux.resources.devices` allow rule (`--device-cgroup-rule`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DeviceAllow {
    /// 'a', 'b' or 'c'.
    pub kind: char,
    /// None: any.
    pub major: Option<i64>,
    pub minor: Option<i64>,
    /// Letters of "rwm".
    pub access: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum NetMode {
    #[default]
    None,
    Host,
    /// Join the network namespace bind-mounted at this path.
    Path(String),
}

/// What the engine decided a container runs with.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunSpec {
    pub rootfs: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub tty: bool,
    pub hostname: String,
    pub readonly_rootfs: bool,
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub no_new_privileges: bool,
    pub seccomp_unconfined: bool,
    pub memory: i64,
    pub memory_swap: i64,
    pub nano_cpus: i64,
    pub cpu_quota: i64,
    pub cpu_period: i64,
    pub cpu_shares: i64,
    pub pids_limit: i64,
    pub net: NetMode,
    pub cgroup_path: String,
    /// (host file, container path) bind mounts such as /etc/hosts.
    pub etc_binds: Vec<(PathBuf, String)>,
    /// Volumes, bind mounts and tmpfs mounts the user asked for.
    pub mounts: Vec<UserMount>,
    /// Bytes of /dev/shm (0: Docker's 64 MiB).
    pub shm_size: i64,
    /// (`RLIMIT_NOFILE`, soft, hard).
    pub rlimits: Vec<(String, u64, u64)>,
    pub sysctls: std::collections::BTreeMap<String, String>,
    /// `--pid=host`, `--ipc=host`, `--uts=host`: the host's namespace.
    pub host_pid: bool,
    pub host_ipc: bool,
    pub host_uts: bool,
    /// `--cgroupns=host`.
    pub host_cgroupns: bool,
    /// Soft limit, bytes (0: none).
    pub memory_reservation: i64,
    pub memory_swappiness: Option<i64>,
    pub oom_kill_disable: bool,
    pub oom_score_adj: i64,
    /// cgroup cpu and memory-node lists ("0-1,3"); empty: all.
    pub cpuset_cpus: String,
    pub cpuset_mems: String,
    /// 10–1000; 0: the kernel's default.
    pub blkio_weight: u16,
    pub blkio_weight_device: Vec<BlkioDevice>,
    /// Throttles: bytes or operations per second.
    pub read_bps: Vec<BlkioDevice>,
    pub write_bps: Vec<BlkioDevice>,
    pub read_iops: Vec<BlkioDevice>,
    pub write_iops: Vec<BlkioDevice>,
    pub device_allow: Vec<DeviceAllow>,
    /// `--device`: nodes made in the container, each allowed in its cgroup.
    pub devices: Vec<DeviceNode>,
    /// None: Docker's defaults (none when privileged).
    pub masked_paths: Option<Vec<String>>,
    pub readonly_paths: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserMount {
    /// A host directory bound in; None for a tmpfs.
    pub source: Option<PathBuf>,
    pub destination: String,
    pub readonly: bool,
    /// Extra tmpfs options (`size=…`, `mode=…`).
    pub tmpfs_options: Vec<String>,
}

/// The capabilities this host can grant: its bounding set. A sandbox without
/// CAP_SYS_RESOURCE (like ours) must not hand it to `--privileged` containers.
pub fn host_caps() -> &'static [&'static str] {
    static CAPS: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    CAPS.get_or_init(|| {
        let bnd = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("CapBnd:"))
                    .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            })
            .unwrap_or(u64::MAX);
        ALL_CAPS
            .iter()
            .enumerate()
            .filter(|(bit, _)| bnd & (1u64 << bit) != 0)
            .map(|(_, c)| *c)
            .collect()
    })
}

/// Normalises `net_admin` / `NET_ADMIN` / `CAP_NET_ADMIN` to `CAP_NET_ADMIN`.
pub fn normalize_cap(c: &str) -> Result<String, RuntimeError> {
    let up = c.to_ascii_uppercase();
    if up == "ALL" {
        return Ok(up);
    }
    let full = if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    if ALL_CAPS.contains(&full.as_str()) {
        Ok(full)
    } else {
        Err(RuntimeError::InvalidCapability(c.to_string()))
    }
}

/// The capability set after `--cap-add` / `--cap-drop` (drops win over the defaults,
/// adds win over drops, as Docker does).
pub fn capabilities(spec: &RunSpec) -> Result<Vec<String>, RuntimeError> {
    if spec.privileged {
        return Ok(host_caps().iter().map(|s| s.to_string()).collect());
    }
    let adds = spec
        .cap_add
        .iter()
        .map(|c| normalize_cap(c))
        .collect::<Result<Vec<_>, _>>()?;
    let drops = spec
        .cap_drop
        .iter()
        .map(|c| normalize_cap(c))
        .collect::<Result<Vec<_>, _>>()?;
    let mut caps: Vec<String> = if drops.iter().any(|d| d == "ALL") {
        vec![]
    } else {
        DEFAULT_CAPS
            .iter()
            .map(|s| s.to_string())
            .filter(|c| !drops.contains(c))
            .collect()
    };
    if adds.iter().any(|a| a == "ALL") {
        return Ok(host_caps().iter().map(|s| s.to_string()).collect());
    }
    for a in adds {
        if !caps.contains(&a) {
            caps.push(a);
        }
    }
    Ok(caps)
}

fn mount(dest: &str, kind: &str, source: &str, options: &[&str]) -> Value {
    json!({"destination": dest, "type": kind, "source": source, "options": options})
}

/// The OCI runtime spec for `spec`.
pub fn build(spec: &RunSpec) -> Result<Value, RuntimeError> {
    let caps = capabilities(spec)?;
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &[
                "nosuid",
                "noexec",
                "nodev",
                if spec.privileged { "rw" } else { "ro" },
            ],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &[
                "nosuid",
                "noexec",
                "nodev",
                "relatime",
                if spec.privileged { "rw" } else { "ro" },
            ],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
    ];
    let shm_size = format!(
        "size={}k",
        if spec.shm_size > 0 {
            spec.shm_size / 1024
        } else {
            65536
        }
    );
    if spec.host_ipc {
        mounts.push(mount(
            "/dev/shm",
            "bind",
            "/dev/shm",
            &["rbind", "rprivate", "rw"],
        ));
    } else {
        mounts.push(mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", &shm_size],
        ));
    }
    for (src, dst) in &spec.etc_binds {
        mounts.push(mount(
            dst,
            "bind",
            &src.to_string_lossy(),
            &["rbind", "rprivate"],
        ));
    }
    // Parents before children: `/data` must be mounted before `/data/sub`.
    let mut user: Vec<&UserMount> = spec.mounts.iter().collect();
    user.sort_by_key(|m| m.destination.matches('/').count());
    for m in user {
        let rw = if m.readonly { "ro" } else { "rw" };
        match &m.source {
            Some(src) => mounts.push(mount(
                &m.destination,
                "bind",
                &src.to_string_lossy(),
                &["rbind", "rprivate", rw],
            )),
            None => {
                let mut opts: Vec<&str> = vec!["nosuid", "nodev", "noexec", rw];
                opts.extend(m.tmpfs_options.iter().map(String::as_str));
                mounts.push(mount(&m.destination, "tmpfs", "tmpfs", &opts));
            }
        }
    }
    let mut namespaces = Vec::new();
    for (kind, host) in [
        ("pid", spec.host_pid),
        ("ipc", spec.host_ipc),
        ("uts", spec.host_uts),
    ] {
        if !host {
            namespaces.push(json!({"type": kind}));
        }
    }
    namespaces.push(json!({"type": "mount"}));
    if !spec.host_cgroupns {
        namespaces.push(json!({"type": "cgroup"}));
    }
    match &spec.net {
        NetMode::None => namespaces.push(json!({"type": "network"})),
        NetMode::Path(p) => namespaces.push(json!({"type": "network", "path": p})),
        NetMode::Host => {}
    }
    let mut resources = json!({
        "devices": [
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 7, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
            {"allow": true, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
            {"allow": true, "type": "c", "major": 5, "minor": 1, "access": "rwm"},
            {"allow": true, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
            {"allow": true, "type": "c", "major": 136, "access": "rwm"},
            {"allow": true, "type": "c", "major": 10, "minor": 200, "access": "rwm"},
            {"allow": true, "type": "c", "access": "m"},
            {"allow": true, "type": "b", "access": "m"}
        ]
    });
    if spec.privileged {
        resources["devices"] = json!([{"allow": true, "access": "rwm"}]);
    }
    if let Some(rules) = resources["devices"].as_array_mut() {
        for d in &spec.devices {
            rules.push(json!({"allow": true, "type": d.kind.to_string(),
                "major": d.major, "minor": d.minor, "access": d.access}));
        }
        for d in &spec.device_allow {
            let mut r = json!({"allow": true, "access": d.access});
            if d.kind != 'a' {
                r["type"] = json!(d.kind.to_string());
            }
            if let Some(m) = d.major {
                r["major"] = json!(m);
            }
            if let Some(m) = d.minor {
                r["minor"] = json!(m);
            }
            rules.push(r);
        }
    }
    let mut memory = serde_json::Map::new();
    if spec.memory > 0 {
        memory.insert("limit".into(), json!(spec.memory));
        if spec.memory_swap != 0 {
            memory.insert("swap".into(), json!(spec.memory_swap));
        }
    }
    if spec.memory_reservation > 0 {
        memory.insert("reservation".into(), json!(spec.memory_reservation));
    }
    if let Some(s) = spec.memory_swappiness {
        memory.insert("swappiness".into(), json!(s));
    }
    if spec.oom_kill_disable {
        memory.insert("disableOOMKiller".into(), json!(true));
    }
    if !memory.is_empty() {
        resources["memory"] = Value::Object(memory);
    }
    let mut blkio = serde_json::Map::new();
    if spec.blkio_weight > 0 {
        blkio.insert("weight".into(), json!(spec.blkio_weight));
    }
    let devs = |l: &[BlkioDevice], key: &str| -> Value {
        l.iter()
            .map(|d| json!({"major": d.major, "minor": d.minor, key: d.value}))
            .collect()
    };
    for (key, list, field) in [
        ("weightDevice", &spec.blkio_weight_device, "weight"),
        ("throttleReadBpsDevice", &spec.read_bps, "rate"),
        ("throttleWriteBpsDevice", &spec.write_bps, "rate"),
        ("throttleReadIOPSDevice", &spec.read_iops, "rate"),
        ("throttleWriteIOPSDevice", &spec.write_iops, "rate"),
    ] {
        if !list.is_empty() {
            blkio.insert(key.into(), devs(list, field));
        }
    }
    if !blkio.is_empty() {
        resources["blockIO"] = Value::Object(blkio);
    }
    let mut cpu = serde_json::Map::new();
    if spec.nano_cpus > 0 {
        let period = 100_000i64;
        cpu.insert("period".into(), json!(period));
        cpu.insert(
            "quota".into(),
            json!(spec.nano_cpus * period / 1_000_000_000),
        );
    } else if spec.cpu_quota > 0 {
        cpu.insert("quota".into(), json!(spec.cpu_quota));
        cpu.insert(
            "period".into(),
            json!(if spec.cpu_period > 0 {
                spec.cpu_period
            } else {
                100_000
            }),
        );
    }
    if spec.cpu_shares > 0 {
        cpu.insert("shares".into(), json!(spec.cpu_shares));
    }
    if !spec.cpuset_cpus.is_empty() {
        cpu.insert("cpus".into(), json!(spec.cpuset_cpus));
    }
    if !spec.cpuset_mems.is_empty() {
        cpu.insert("mems".into(), json!(spec.cpuset_mems));
    }
    if !cpu.is_empty() {
        resources["cpu"] = Value::Object(cpu);
    }
    if spec.pids_limit > 0 {
        resources["pids"] = json!({"limit": spec.pids_limit});
    }
    let mut linux = json!({
        "namespaces": namespaces,
        "cgroupsPath": spec.cgroup_path,
        "resources": resources,
    });
    if !spec.sysctls.is_empty() {
        linux["sysctl"] = json!(spec.sysctls);
    }
    if !spec.devices.is_empty() {
        linux["devices"] = spec
            .devices
            .iter()
            .map(|d| {
                json!({"path": d.path, "type": d.kind.to_string(), "major": d.major,
                    "minor": d.minor, "fileMode": d.mode, "uid": d.uid, "gid": d.gid})
            })
            .collect();
    }
    let masked = match &spec.masked_paths {
        Some(p) => p.clone(),
        None if spec.privileged => vec![],
        None => default_masked_paths(),
    };
    let readonly = match &spec.readonly_paths {
        Some(p) => p.clone(),
        None if spec.privileged => vec![],
        None => READONLY_PATHS.iter().map(|s| s.to_string()).collect(),
    };
    if !masked.is_empty() {
        linux["maskedPaths"] = json!(masked);
    }
    if !readonly.is_empty() {
        linux["readonlyPaths"] = json!(readonly);
    }
    if !spec.privileged && !spec.seccomp_unconfined {
        linux["seccomp"] = crate::seccomp::default_profile(&caps);
    }
    let mut user = json!({"uid": spec.uid, "gid": spec.gid});
    if !spec.additional_gids.is_empty() {
        user["additionalGids"] = json!(spec.additional_gids);
    }
    let mut v = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": spec.tty,
            "user": user,
            "args": spec.args,
            "env": spec.env,
            "cwd": if spec.cwd.is_empty() { "/" } else { &spec.cwd },
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps,
            },
            "oomScoreAdj": spec.oom_score_adj,
        },
        "root": {"path": spec.rootfs, "readonly": spec.readonly_rootfs},
        "mounts": mounts,
        "linux": linux,
    });
    if !spec.host_uts {
        v["hostname"] = json!(spec.hostname);
    }
    if !spec.rlimits.is_empty() {
        v["process"]["rlimits"] = spec
            .rlimits
            .iter()
            .map(|(t, soft, hard)| json!({"type": t, "soft": soft, "hard": hard}))
            .collect();
    }
    set_no_new_privileges(&mut v["process"], spec.no_new_privileges);
    Ok(v)
}

/// Written only when set, as Docker writes it.
fn set_no_new_privileges(process: &mut Value, on: bool) {
    if on {
        process["noNewPrivileges"] = json!(true);
    }
}

/// What an exec inside a running container runs, and as whom.
#[derive(Debug, Clone, Default)]
pub struct ExecProcess<'a> {
    pub args: &'a [String],
    pub env: &'a [String],
    pub cwd: &'a str,
    pub uid: u32,
    pub gid: u32,
    pub tty: bool,
    pub caps: &'a [String],
    pub no_new_privileges: bool,
    /// The container's, as runc gives every exec.
    pub oom_score_adj: i64,
}

/// The `process` object for an exec inside a running container.
pub fn exec_process(e: &ExecProcess) -> Value {
    let caps = e.caps;
    let mut p = json!({
        "terminal": e.tty,
        "user": {"uid": e.uid, "gid": e.gid},
        "args": e.args,
        "env": e.env,
        "cwd": if e.cwd.is_empty() { "/" } else { e.cwd },
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "oomScoreAdj": e.oom_score_adj,
    });
    set_no_new_privileges(&mut p, e.no_new_privileges);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_dockers() {
        let s = RunSpec {
            args: vec!["true".into()],
            ..Default::default()
        };
        let v = build(&s).unwrap();
        let caps = v["process"]["capabilities"]["bounding"].as_array().unwrap();
        assert_eq!(caps.len(), 14);
        assert!(!caps.iter().any(|c| c == "CAP_SYS_ADMIN"));
        assert!(v["linux"]["seccomp"].is_object());
        assert!(v["process"].get("noNewPrivileges").is_none());
        assert!(v["linux"]["maskedPaths"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "/proc/kcore"));
        let ns: Vec<_> = v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        for want in ["pid", "mount", "uts", "ipc", "network", "cgroup"] {
            assert!(ns.contains(&want), "{want}");
        }
    }

    #[test]
    fn cap_add_drop_and_privileged() {
        let mut s = RunSpec {
            cap_add: vec!["sys_admin".into()],
            cap_drop: vec!["CHOWN".into()],
            ..Default::default()
        };
        let caps = capabilities(&s).unwrap();
        assert!(caps.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(!caps.contains(&"CAP_CHOWN".to_string()));
        s.cap_drop = vec!["ALL".into()];
        assert_eq!(capabilities(&s).unwrap(), vec!["CAP_SYS_ADMIN"]);
        s.cap_add = vec!["NOPE".into()];
        assert!(capabilities(&s).is_err());
        s.privileged = true;
        let v = build(&s).unwrap();
        assert!(v["linux"]["seccomp"].is_null());
        assert_eq!(
            v["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .len(),
            host_caps().len()
        );
    }

    #[test]
    fn limits_map_to_resources() {
        let s = RunSpec {
            memory: 64 << 20,
            nano_cpus: 1_500_000_000,
            pids_limit: 20,
            net: NetMode::Host,
            ..Default::default()
        };
        let v = build(&s).unwrap();
        let r = &v["linux"]["resources"];
        assert_eq!(r["memory"]["limit"], 64 << 20);
        assert_eq!(r["cpu"]["quota"], 150_000);
        assert_eq!(r["pids"]["limit"], 20);
        assert!(!v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["type"] == "network"));
    }

    #[test]
    fn devices_cpusets_and_namespaces_reach_the_spec() {
        let s = RunSpec {
            cpuset_cpus: "0-1".into(),
            memory_reservation: 32 << 20,
            oom_score_adj: 500,
            host_cgroupns: true,
            devices: vec![DeviceNode {
                path: "/dev/x".into(),
                kind: 'b',
                major: 7,
                minor: 0,
                mode: 0o600,
                access: "r".into(),
                ..Default::default()
            }],
            device_allow: vec![DeviceAllow {
                kind: 'c',
                major: Some(1),
                minor: None,
                access: "m".into(),
            }],
            masked_paths: Some(vec![]),
            ..Default::default()
        };
        let v = build(&s).unwrap();
        let r = &v["linux"]["resources"];
        assert_eq!(r["cpu"]["cpus"], "0-1");
        assert_eq!(r["memory"]["reservation"], 32 << 20);
        assert_eq!(v["process"]["oomScoreAdj"], 500);
        assert_eq!(v["linux"]["devices"][0]["path"], "/dev/x");
        let rules = r["devices"].as_array().unwrap();
        assert!(rules
            .contains(&json!({"allow": true, "type": "b", "major": 7, "minor": 0, "access": "r"})));
        assert!(rules.contains(&json!({"allow": true, "type": "c", "major": 1, "access": "m"})));
        let ns = v["linux"]["namespaces"].as_array().unwrap();
        assert!(!ns.iter().any(|n| n["type"] == "cgroup"));
        // Masked paths given as empty: nothing masked.
        assert!(v["linux"]["maskedPaths"].is_null());
        assert!(!v["linux"]["readonlyPaths"].is_null());
    }
}
