//! What dockerd checks in a create (and update) request before anything is
//! made, with its wording, and the defaults it fills in. Pure functions over
//! the request and a probed [`SysInfo`], so every rule is unit-tested.

use berth_api::{ContainerConfig, HostConfig};
use berth_runtime::spec::DeviceAllow;
use std::collections::BTreeSet;

/// dockerd's floor for memory limits and reservations: room for the
/// runtime's own start-up.
pub const MIN_MEMORY: i64 = 6 * 1024 * 1024;

/// Docker's default /dev/shm size.
pub const DEFAULT_SHM: i64 = 64 * 1024 * 1024;

/// What the host's cgroups can do, read once.
#[derive(Debug, Clone)]
pub struct SysInfo {
    pub ncpus: usize,
    /// The cpus and memory nodes a container may be pinned to.
    pub cpus: String,
    pub mems: String,
    /// memory+swap limits (`memory.memsw.*` on v1, `memory.swap.max` on v2).
    pub swap_limit: bool,
    /// `memory.swappiness` and `memory.oom_control` exist only on v1.
    pub swappiness: bool,
    pub oom_kill_disable: bool,
}

impl SysInfo {
    pub fn probe() -> SysInfo {
        let unified = berth_runtime::cgroups::is_unified();
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        let ncpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (cpus, mems) = if unified {
            (
                read("/sys/fs/cgroup/cpuset.cpus.effective"),
                read("/sys/fs/cgroup/cpuset.mems.effective"),
            )
        } else {
            (
                read("/sys/fs/cgroup/cpuset/cpuset.effective_cpus"),
                read("/sys/fs/cgroup/cpuset/cpuset.effective_mems"),
            )
        };
        let or_online = |v: String, p: &str| if v.is_empty() { read(p) } else { v };
        SysInfo {
            ncpus,
            cpus: or_online(cpus, "/sys/devices/system/cpu/online"),
            mems: or_online(mems, "/sys/devices/system/node/online"),
            swap_limit: unified
                || std::path::Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
                    .exists(),
            swappiness: !unified,
            oom_kill_disable: !unified,
        }
    }
}

type Checked = std::result::Result<Vec<String>, String>;

/// dockerd's `verifyPlatformContainerResources`: refuses what cannot be
/// honoured and drops (with a warning) what this kernel cannot do. `update`
/// relaxes the rules that only make sense for a whole request.
pub fn resources(hc: &mut HostConfig, sys: &SysInfo, update: bool) -> Checked {
    let mut warn = Vec::new();
    // -1 is the API's "unset".
    if hc.memory_swappiness == Some(-1) {
        hc.memory_swappiness = None;
    }
    if hc.memory != 0 && hc.memory < MIN_MEMORY {
        return Err("Minimum memory limit allowed is 6MB".into());
    }
    if hc.memory > 0 && hc.memory_swap != -1 && !sys.swap_limit {
        warn.push("Your kernel does not support swap limit capabilities or the cgroup is not mounted. Memory limited without swap.".into());
        hc.memory_swap = -1;
    }
    if hc.memory > 0 && hc.memory_swap > 0 && hc.memory_swap < hc.memory {
        return Err(
            "Minimum memoryswap limit should be larger than memory limit, see usage".into(),
        );
    }
    if hc.memory == 0 && hc.memory_swap > 0 && !update {
        return Err(
            "You should always set the Memory limit when using Memoryswap limit, see usage".into(),
        );
    }
    if hc.memory_swap < -1 {
        return Err(format!(
            "Invalid value: {}, valid memory swap values are -1 (unlimited) or a size of at least the memory limit",
            hc.memory_swap
        ));
    }
    if hc.memory_swappiness.is_some() && !sys.swappiness {
        warn.push("Your kernel does not support memory swappiness capabilities or the cgroup is not mounted. Memory swappiness discarded.".into());
        hc.memory_swappiness = None;
    }
    if let Some(s) = hc.memory_swappiness.filter(|s| !(0..=100).contains(s)) {
        return Err(format!(
            "Invalid value: {s}, valid memory swappiness range is 0-100"
        ));
    }
    if hc.memory_reservation < 0 {
        return Err(format!(
            "Invalid value: {}, memory reservation can not be negative",
            hc.memory_reservation
        ));
    }
    if hc.memory_reservation > 0 && hc.memory_reservation < MIN_MEMORY {
        return Err("Minimum memory reservation allowed is 6MB".into());
    }
    if hc.memory > 0 && hc.memory_reservation > 0 && hc.memory < hc.memory_reservation {
        return Err(
            "Minimum memory limit can not be less than memory reservation limit, see usage".into(),
        );
    }
    if hc.oom_kill_disable.is_some() && !sys.oom_kill_disable {
        if hc.oom_kill_disable == Some(true) {
            warn.push(
                "Your kernel does not support OomKillDisable. OomKillDisable discarded.".into(),
            );
        }
        hc.oom_kill_disable = None;
    }
    if hc.oom_kill_disable == Some(true) && hc.memory == 0 {
        warn.push("OOM killer is disabled for the container, but no memory limit is set, this can result in the system running out of resources.".into());
    }
    if hc.pids_limit.is_some_and(|p| p <= 0) {
        // 0 and negatives mean "no limit" in the API.
        hc.pids_limit = None;
    }

    if hc.nano_cpus > 0 && hc.cpu_period > 0 {
        return Err("Conflicting options: Nano CPUs and CPU Period cannot both be set".into());
    }
    if hc.nano_cpus > 0 && hc.cpu_quota > 0 {
        return Err("Conflicting options: Nano CPUs and CPU Quota cannot both be set".into());
    }
    let n = sys.ncpus as i64;
    if hc.nano_cpus != 0 && (hc.nano_cpus < 0 || hc.nano_cpus > n * 1_000_000_000) {
        return Err(format!(
            "range of CPUs is from 0.01 to {n}.00, as there are only {n} CPUs available"
        ));
    }
    if hc.cpu_shares < 0 {
        return Err(format!(
            "invalid CPU shares ({}): value must be a positive integer",
            hc.cpu_shares
        ));
    }
    if hc.cpu_period != 0 && !(1000..=1_000_000).contains(&hc.cpu_period) {
        return Err(
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"
                .into(),
        );
    }
    if hc.cpu_quota > 0 && hc.cpu_quota < 1000 {
        return Err("CPU cfs quota can not be less than 1ms (i.e. 1000)".into());
    }
    if hc.cpu_quota < -1 {
        return Err(format!(
            "Invalid value: {}, CPU cfs quota must be -1 (unlimited) or at least 1000",
            hc.cpu_quota
        ));
    }
    if hc.cpu_percent > 0 {
        warn.push("linux does not support CPU percent. Percent discarded.".into());
        hc.cpu_percent = 0;
    }
    if hc.cpu_count > 0 {
        warn.push("linux does not support CPU count. Count discarded.".into());
        hc.cpu_count = 0;
    }
    if hc.cpu_realtime_period != 0 || hc.cpu_realtime_runtime != 0 {
        return Err("Your kernel does not support CPU real-time scheduler".into());
    }
    check_cpuset(&hc.cpuset_cpus, &sys.cpus, "cpus", "CPUs")?;
    check_cpuset(&hc.cpuset_mems, &sys.mems, "mems", "memory nodes")?;

    if hc.blkio_weight > 0 && !(10..=1000).contains(&hc.blkio_weight) {
        return Err("Range of blkio weight is from 10 to 1000".into());
    }
    for d in hc.blkio_weight_device.iter().flatten() {
        if !(10..=1000).contains(&d.weight) {
            return Err(format!(
                "invalid weight for device: {}:{} (range of blkio weight is from 10 to 1000)",
                d.path, d.weight
            ));
        }
    }
    if hc.io_maximum_bandwidth != 0 || hc.io_maximum_iops != 0 {
        return Err(
            "Invalid QoS settings: linux does not support Maximum IO Bandwidth or Maximum IO IOps"
                .into(),
        );
    }
    Ok(warn)
}

/// Parses a cgroup cpu/node list ("0-2,4"), bounded as dockerd bounds it
/// (a huge range would otherwise be a huge set).
pub fn parse_list(val: &str, maximum: usize) -> std::result::Result<BTreeSet<usize>, String> {
    let mut out = BTreeSet::new();
    if val.is_empty() {
        return Ok(out);
    }
    let invalid = || format!("invalid format: {val}");
    for r in val.split(',') {
        let (lo, hi) = match r.split_once('-') {
            Some((a, b)) => (
                a.parse::<usize>().map_err(|_| invalid())?,
                b.parse::<usize>().map_err(|_| invalid())?,
            ),
            None => {
                let v = r.parse::<usize>().map_err(|_| invalid())?;
                (v, v)
            }
        };
        if hi < lo {
            return Err(invalid());
        }
        if hi > maximum {
            return Err(format!("value of out range, maximum is {maximum}"));
        }
        out.extend(lo..=hi);
    }
    Ok(out)
}

fn check_cpuset(requested: &str, available: &str, kind: &str, what: &str) -> Result<(), String> {
    if requested.is_empty() {
        return Ok(());
    }
    let avail = parse_list(available, usize::MAX).unwrap_or_default();
    let max = avail.iter().copied().max().unwrap_or(0).max(8192);
    let want = parse_list(requested, max)
        .map_err(|e| format!("Invalid value {requested} for cpuset {kind}: {e}"))?;
    if !want.is_subset(&avail) {
        return Err(format!(
            "Requested {what} are not available - requested {requested}, available: {available}"
        ));
    }
    Ok(())
}

/// The rest of dockerd's create checks on the host config
/// (`validateHostConfig` and `verifyPlatformContainerSettings`).
pub fn host_config(hc: &HostConfig) -> Checked {
    let mut warn = Vec::new();
    let rp = &hc.restart_policy;
    let none = matches!(rp.name.as_str(), "" | "no");
    if hc.auto_remove && !none {
        return Err("can't create 'AutoRemove' container with restart policy".into());
    }
    restart_policy(&rp.name, rp.maximum_retry_count)?;
    if !matches!(hc.isolation.as_str(), "" | "default") {
        return Err(format!("invalid isolation '{}' on linux", hc.isolation));
    }
    if hc.annotations.iter().flatten().any(|(k, _)| k.is_empty()) {
        return Err(
            "invalid Annotations: the empty string is not permitted as an annotation key".into(),
        );
    }
    if hc.shm_size < 0 {
        return Err("SHM size can not be less than 0".into());
    }
    if !(-1000..=1000).contains(&hc.oom_score_adj) {
        return Err(format!(
            "Invalid value {}, range for oom score adj is [-1000, 1000]",
            hc.oom_score_adj
        ));
    }
    if !matches!(hc.cgroupns_mode.as_str(), "" | "host" | "private") {
        return Err(format!(
            "invalid cgroup namespace mode: {}",
            hc.cgroupns_mode
        ));
    }
    if !matches!(hc.runtime.as_str(), "" | "runc" | "berth") {
        return Err(format!("unknown or invalid runtime name: {}", hc.runtime));
    }
    if !matches!(hc.userns_mode.as_str(), "" | "host") {
        return Err(format!(
            "invalid user namespace mode: {} (user namespace remapping is not enabled in this daemon)",
            hc.userns_mode
        ));
    }
    if !hc.cgroup.is_empty() {
        return Err(format!(
            "invalid cgroup mode: {} (joining another container's cgroup is not supported)",
            hc.cgroup
        ));
    }
    if !matches!(hc.volume_driver.as_str(), "" | "local") {
        return Err(format!(
            "error looking up volume plugin {}: plugin \"{}\" not found",
            hc.volume_driver, hc.volume_driver
        ));
    }
    if hc.storage_opt.as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(
            "--storage-opt is supported only for overlay over xfs with 'pquota' mount option"
                .into(),
        );
    }
    if hc.device_requests.as_ref().is_some_and(|d| !d.is_empty()) {
        return Err("could not select device driver \"\" with capabilities: [[gpu]]".into());
    }
    for r in hc.device_cgroup_rules.iter().flatten() {
        parse_device_rule(r)?;
    }
    for d in hc.devices.iter().flatten() {
        if !d.cgroup_permissions.is_empty()
            && !d.cgroup_permissions.chars().all(|c| "rwm".contains(c))
        {
            return Err(format!("invalid device mode: {}", d.cgroup_permissions));
        }
    }
    if hc.network_mode == "host" && hc.port_bindings.as_ref().is_some_and(|p| !p.is_empty()) {
        warn.push("Published ports are discarded when using host network mode".into());
    }
    Ok(warn)
}

/// Refuses `--pid`/`--ipc`/`--uts` modes, ulimits and sysctls Docker would
/// refuse (or that Berth cannot honour), before anything is created.
pub fn check_host_options(hc: &HostConfig) -> crate::Result<()> {
    let bad = |m: String| Err(crate::EngineError::BadRequest(m));
    if !matches!(hc.pid_mode.as_str(), "" | "host") {
        return bad(format!(
            "invalid PID mode: {} (only host is supported)",
            hc.pid_mode
        ));
    }
    if !matches!(hc.ipc_mode.as_str(), "" | "private" | "shareable" | "host") {
        return bad(format!("invalid IPC mode: {}", hc.ipc_mode));
    }
    if !matches!(hc.uts_mode.as_str(), "" | "host") {
        return bad(format!("invalid UTS mode: {}", hc.uts_mode));
    }
    const ULIMITS: [&str; 15] = [
        "as",
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
    ];
    for u in hc.ulimits.iter().flatten() {
        if !ULIMITS.contains(&u.name.as_str()) && u.name != "stack" {
            return bad(format!("invalid ulimit type: {}", u.name));
        }
        if u.soft > u.hard {
            return bad(format!(
                "ulimit soft limit must be less than or equal to hard limit: {} > {}",
                u.soft, u.hard
            ));
        }
    }
    for k in hc.sysctls.iter().flatten().map(|(k, _)| k) {
        let namespaced = k.starts_with("fs.mqueue.")
            || k.starts_with("net.")
            || matches!(
                k.as_str(),
                "kernel.msgmax"
                    | "kernel.msgmnb"
                    | "kernel.msgmni"
                    | "kernel.sem"
                    | "kernel.shmall"
                    | "kernel.shmmax"
                    | "kernel.shmmni"
                    | "kernel.shm_rmid_forced"
                    | "kernel.domainname"
                    | "kernel.hostname"
            );
        if !namespaced {
            return bad(format!("sysctl '{k}' is not allowed"));
        }
        if k.starts_with("net.") && hc.network_mode == "host" {
            return bad(format!(
                "sysctl '{k}' is not allowed in host network namespace"
            ));
        }
    }
    Ok(())
}

/// Docker's `ValidateRestartPolicy`, shared by create and update.
pub fn restart_policy(name: &str, count: i64) -> Result<(), String> {
    match name {
        "always" | "unless-stopped" | "no" if count != 0 => {
            let mut m = String::from(
                "invalid restart policy: maximum retry count can only be used with 'on-failure'",
            );
            if count < 0 {
                m.push_str(" and cannot be negative");
            }
            Err(m)
        }
        "on-failure" if count < 0 => {
            Err("invalid restart policy: maximum retry count cannot be negative".into())
        }
        "" | "always" | "unless-stopped" | "no" | "on-failure" => Ok(()),
        other => Err(format!(
            "invalid restart policy: unknown policy '{other}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"
        )),
    }
}

/// A `--device-cgroup-rule`: `TYPE MAJOR:MINOR ACCESS` with `*` for any
/// number, as runc's cgroup device rules.
pub fn parse_device_rule(rule: &str) -> Result<DeviceAllow, String> {
    let invalid = || format!("invalid device cgroup format '{rule}'");
    let parts: Vec<&str> = rule.split_whitespace().collect();
    let [kind, nums, access] = parts[..] else {
        return Err(invalid());
    };
    let kind = match kind {
        "a" | "b" | "c" => kind.chars().next().unwrap_or('a'),
        _ => return Err(invalid()),
    };
    let num = |s: &str| match s {
        "*" => Ok(None),
        n => n.parse::<i64>().map(Some).map_err(|_| invalid()),
    };
    let (major, minor) = nums.split_once(':').ok_or_else(invalid)?;
    if access.is_empty() || !access.chars().all(|c| "rwm".contains(c)) {
        return Err(invalid());
    }
    Ok(DeviceAllow {
        kind,
        major: num(major)?,
        minor: num(minor)?,
        access: access.to_string(),
    })
}

/// dockerd's `validateContainerConfig`: working directory, stop signal,
/// environment and healthcheck timings. Cleans the working directory.
pub fn config(c: &mut ContainerConfig) -> Result<(), String> {
    if !c.working_dir.is_empty() {
        if !c.working_dir.starts_with('/') {
            return Err(format!(
                "the working directory '{}' is invalid, it needs to be an absolute path",
                c.working_dir
            ));
        }
        c.working_dir = clean_path(&c.working_dir);
    }
    if let Some(s) = c.stop_signal.as_deref().filter(|s| !s.is_empty()) {
        crate::parse_signal(s).map_err(|e| e.to_string())?;
    }
    for e in c.env.iter().flatten() {
        if e.split('=').next().is_none_or(str::is_empty) {
            return Err(format!("invalid environment variable: {e}"));
        }
    }
    if c.hostname.len() > 64 {
        return Err(format!(
            "hostname \"{}\" is too long (maximum 64 bytes)",
            c.hostname
        ));
    }
    if let Some(h) = &c.healthcheck {
        let ns = |k: &str| h.get(k).and_then(serde_json::Value::as_i64).unwrap_or(0);
        for (k, name) in [
            ("Interval", "Interval"),
            ("Timeout", "Timeout"),
            ("StartPeriod", "StartPeriod"),
            ("StartInterval", "StartInterval"),
        ] {
            let v = ns(k);
            if v != 0 && v < 1_000_000 {
                return Err(format!("{name} in Healthcheck cannot be less than 1ms"));
            }
        }
        if ns("Retries") < 0 {
            return Err("Retries in Healthcheck cannot be negative".into());
        }
    }
    Ok(())
}

/// Lexical clean of an absolute path, as Go's `filepath.Clean`.
fn clean_path(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    format!("/{}", out.join("/"))
}

/// What dockerd writes into a new container's host config when the client
/// left it out, so inspect shows the values in force.
pub fn apply_defaults(hc: &mut HostConfig, sys: &SysInfo) {
    if hc.memory > 0 && hc.memory_swap == 0 {
        hc.memory_swap = hc.memory * 2;
    }
    if hc.shm_size == 0 {
        hc.shm_size = DEFAULT_SHM;
    }
    if hc.ipc_mode.is_empty() {
        hc.ipc_mode = "private".into();
    }
    if hc.cgroupns_mode.is_empty() {
        // dockerd shares the host's cgroup namespace on v1 hosts; Berth
        // gives every container its own on both, as dockerd does on v2.
        hc.cgroupns_mode = "private".into();
    }
    if hc.oom_kill_disable.is_none() && sys.oom_kill_disable {
        hc.oom_kill_disable = Some(false);
    }
    if hc.runtime.is_empty() {
        hc.runtime = "runc".into();
    }
    if hc.log_config.config.is_none() {
        hc.log_config.config = Some(Default::default());
    }
    if !hc.privileged {
        if hc.masked_paths.is_none() {
            hc.masked_paths = Some(berth_runtime::spec::default_masked_paths());
        }
        if hc.readonly_paths.is_none() {
            hc.readonly_paths = Some(
                berth_runtime::spec::READONLY_PATHS
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sys() -> SysInfo {
        SysInfo {
            ncpus: 2,
            cpus: "0-1".into(),
            mems: "0".into(),
            swap_limit: true,
            swappiness: true,
            oom_kill_disable: true,
        }
    }

    fn check(f: impl FnOnce(&mut HostConfig)) -> Checked {
        let mut hc = HostConfig::default();
        f(&mut hc);
        resources(&mut hc, &sys(), false)
    }

    #[test]
    fn memory_limits_as_dockerd() {
        for m in [-1, -1_000_000_000, 1, MIN_MEMORY - 1] {
            assert_eq!(
                check(|h| h.memory = m).unwrap_err(),
                "Minimum memory limit allowed is 6MB"
            );
        }
        assert!(check(|h| h.memory = MIN_MEMORY).is_ok());
        assert!(check(|h| {
            h.memory = 64 << 20;
            h.memory_swap = 32 << 20;
        })
        .unwrap_err()
        .starts_with("Minimum memoryswap limit"));
        assert!(check(|h| h.memory_swap = 64 << 20)
            .unwrap_err()
            .starts_with("You should always set the Memory limit"));
        assert!(check(|h| {
            h.memory = 64 << 20;
            h.memory_swap = -5;
        })
        .is_err());
        assert!(check(|h| {
            h.memory = 64 << 20;
            h.memory_swap = -1;
        })
        .is_ok());
        assert_eq!(
            check(|h| h.memory_reservation = 100).unwrap_err(),
            "Minimum memory reservation allowed is 6MB"
        );
        assert!(check(|h| {
            h.memory = 8 << 20;
            h.memory_reservation = 16 << 20;
        })
        .unwrap_err()
        .contains("can not be less than memory reservation"));
    }

    #[test]
    fn swappiness_and_pids_unset_values_are_dropped() {
        let mut hc = HostConfig {
            memory_swappiness: Some(-1),
            pids_limit: Some(-1),
            ..Default::default()
        };
        resources(&mut hc, &sys(), false).unwrap();
        assert_eq!((hc.memory_swappiness, hc.pids_limit), (None, None));
        assert_eq!(
            check(|h| h.memory_swappiness = Some(101)).unwrap_err(),
            "Invalid value: 101, valid memory swappiness range is 0-100"
        );
        // cgroup2 has no swappiness: discarded with dockerd's warning.
        let mut hc = HostConfig {
            memory_swappiness: Some(10),
            ..Default::default()
        };
        let s = SysInfo {
            swappiness: false,
            ..sys()
        };
        let w = resources(&mut hc, &s, false).unwrap();
        assert!(w[0].contains("Memory swappiness discarded"));
        assert_eq!(hc.memory_swappiness, None);
    }

    #[test]
    fn cpu_limits_as_dockerd() {
        assert_eq!(
            check(|h| h.nano_cpus = -5).unwrap_err(),
            "range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available"
        );
        assert!(check(|h| h.nano_cpus = 3_000_000_000).is_err());
        assert!(check(|h| h.nano_cpus = 2_000_000_000).is_ok());
        assert!(check(|h| {
            h.nano_cpus = 1_000_000_000;
            h.cpu_quota = 50_000;
        })
        .unwrap_err()
        .contains("Nano CPUs and CPU Quota"));
        assert!(check(|h| h.cpu_shares = -2)
            .unwrap_err()
            .contains("CPU shares"));
        assert!(check(|h| h.cpu_period = 999).is_err());
        assert!(check(|h| h.cpu_period = 1_000_001).is_err());
        assert!(check(|h| h.cpu_period = 50_000).is_ok());
        assert!(check(|h| h.cpu_quota = 999).is_err());
        assert!(check(|h| h.cpu_quota = -1).is_ok());
        assert!(check(|h| h.cpu_quota = -2).is_err());
        assert!(check(|h| h.blkio_weight = 5).is_err());
        assert!(check(|h| h.blkio_weight = 500).is_ok());
        assert!(check(|h| h.io_maximum_iops = 5).is_err());
        let mut hc = HostConfig {
            cpu_percent: 50,
            ..Default::default()
        };
        let w = resources(&mut hc, &sys(), false).unwrap();
        assert_eq!(w.len(), 1);
        assert_eq!(hc.cpu_percent, 0);
    }

    #[test]
    fn cpusets_are_parsed_bounded_and_checked() {
        assert_eq!(
            parse_list("0-2,4,3", 10)
                .unwrap()
                .into_iter()
                .collect::<Vec<_>>(),
            [0, 1, 2, 3, 4]
        );
        assert!(parse_list("2-1", 10).is_err());
        assert!(parse_list("a", 10).is_err());
        assert!(parse_list("0-9223372036854775807", 8192)
            .unwrap_err()
            .contains("maximum is 8192"));
        assert!(check(|h| h.cpuset_cpus = "0-1".into()).is_ok());
        assert_eq!(
            check(|h| h.cpuset_cpus = "0-3".into()).unwrap_err(),
            "Requested CPUs are not available - requested 0-3, available: 0-1"
        );
        assert_eq!(
            check(|h| h.cpuset_mems = "x".into()).unwrap_err(),
            "Invalid value x for cpuset mems: invalid format: x"
        );
    }

    #[test]
    fn host_config_rules() {
        let hc = |f: &dyn Fn(&mut HostConfig)| {
            let mut h = HostConfig::default();
            f(&mut h);
            host_config(&h)
        };
        assert_eq!(
            hc(&|h| {
                h.auto_remove = true;
                h.restart_policy.name = "always".into();
            })
            .unwrap_err(),
            "can't create 'AutoRemove' container with restart policy"
        );
        assert_eq!(
            hc(&|h| {
                h.restart_policy.name = "on-failure".into();
                h.restart_policy.maximum_retry_count = -1;
            })
            .unwrap_err(),
            "invalid restart policy: maximum retry count cannot be negative"
        );
        assert!(hc(&|h| {
            h.restart_policy.name = "always".into();
            h.restart_policy.maximum_retry_count = 3;
        })
        .unwrap_err()
        .ends_with("only be used with 'on-failure'"));
        assert!(hc(&|h| h.oom_score_adj = 1001).is_err());
        assert!(hc(&|h| h.oom_score_adj = -1000).is_ok());
        assert!(hc(&|h| h.shm_size = -1).is_err());
        assert!(hc(&|h| h.cgroupns_mode = "shared".into()).is_err());
        assert_eq!(
            hc(&|h| h.runtime = "kata".into()).unwrap_err(),
            "unknown or invalid runtime name: kata"
        );
        assert!(hc(&|h| h.runtime = "runc".into()).is_ok());
        assert!(hc(&|h| h.isolation = "hyperv".into()).is_err());
        assert!(hc(&|h| h.device_cgroup_rules = Some(vec!["c 1:3 rwm".into()])).is_ok());
        assert!(hc(&|h| h.device_cgroup_rules = Some(vec!["x 1:3 rwm".into()])).is_err());
        assert!(hc(&|h| h.device_cgroup_rules = Some(vec!["c 1:3 rwz".into()])).is_err());
    }

    #[test]
    fn device_rules_parse_stars() {
        assert_eq!(
            parse_device_rule("c *:* m").unwrap(),
            DeviceAllow {
                kind: 'c',
                major: None,
                minor: None,
                access: "m".into()
            }
        );
        assert_eq!(parse_device_rule("b 8:0 rw").unwrap().major, Some(8));
        assert!(parse_device_rule("c 8 rw").is_err());
    }

    #[test]
    fn config_rules() {
        let cfg = |f: &dyn Fn(&mut ContainerConfig)| {
            let mut c = ContainerConfig::default();
            f(&mut c);
            config(&mut c).map(|_| c)
        };
        assert!(cfg(&|c| c.working_dir = "rel".into()).is_err());
        assert_eq!(
            cfg(&|c| c.working_dir = "/a/../b/./c/".into())
                .unwrap()
                .working_dir,
            "/b/c"
        );
        assert!(cfg(&|c| c.stop_signal = Some("SIGNOPE".into())).is_err());
        assert_eq!(
            cfg(&|c| c.env = Some(vec!["=x".into()])).unwrap_err(),
            "invalid environment variable: =x"
        );
        assert!(cfg(&|c| c.hostname = "h".repeat(65)).is_err());
        assert!(
            cfg(&|c| c.healthcheck = Some(serde_json::json!({"Interval": 10})))
                .unwrap_err()
                .starts_with("Interval in Healthcheck")
        );
        assert!(cfg(&|c| c.healthcheck = Some(serde_json::json!({"Retries": -1}))).is_err());
    }

    #[test]
    fn defaults_as_dockerd() {
        let mut hc = HostConfig {
            memory: 64 << 20,
            ..Default::default()
        };
        apply_defaults(&mut hc, &sys());
        assert_eq!(hc.memory_swap, 128 << 20);
        assert_eq!(hc.shm_size, DEFAULT_SHM);
        assert_eq!(hc.ipc_mode, "private");
        assert_eq!(hc.runtime, "runc");
        assert_eq!(hc.oom_kill_disable, Some(false));
        assert!(hc
            .masked_paths
            .as_ref()
            .unwrap()
            .contains(&"/proc/kcore".to_string()));
        let mut p = HostConfig {
            privileged: true,
            ..Default::default()
        };
        apply_defaults(&mut p, &sys());
        assert_eq!(p.masked_paths, None);
        assert_eq!(p.cgroupns_mode, "private");
    }
}
