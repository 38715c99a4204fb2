//! A container's settings → an OCI runtime spec (`config.json`).

mod build;
pub use build::{build, exec_process, ExecProcess};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_dockers() {
        let s = RunSpec {
            args: vec!["true".into()],
            ..Default::default()
        };
        let v = serde_json::to_value(build(&s).unwrap()).unwrap();
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

    /// oci-spec's defaults are runc's example config: none of it may leak
    /// into a container (an rlimit of 1024 files, no-new-privileges,
    /// inheritable capabilities), and what is written reads back the same.
    #[test]
    fn only_what_docker_gives_and_it_round_trips() {
        let s = RunSpec {
            args: vec!["true".into()],
            ..Default::default()
        };
        let spec = build(&s).unwrap();
        let p = spec.process().as_ref().unwrap();
        assert!(p.rlimits().is_none() && p.no_new_privileges().is_none());
        let caps = p.capabilities().as_ref().unwrap();
        assert!(caps.inheritable().is_none() && caps.ambient().is_none());
        assert!(spec.annotations().is_none() && spec.hooks().is_none());
        assert_eq!(p.cwd().to_str(), Some("/"));
        let text = serde_json::to_vec(&spec).unwrap();
        let back: oci_spec::runtime::Spec = serde_json::from_slice(&text).unwrap();
        assert_eq!(back, spec);
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
        let v = serde_json::to_value(build(&s).unwrap()).unwrap();
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
        let v = serde_json::to_value(build(&s).unwrap()).unwrap();
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
        let v = serde_json::to_value(build(&s).unwrap()).unwrap();
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
