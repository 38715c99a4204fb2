//! The resource limits of a create or update request, as dockerd checks
//! them against what this host's cgroups can do.

use berth_api::HostConfig;
use std::collections::BTreeSet;

/// dockerd's floor for memory limits and reservations: room for the
/// runtime's own start-up.
pub const MIN_MEMORY: i64 = 6 * 1024 * 1024;

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

pub type Checked = std::result::Result<Vec<String>, String>;

/// dockerd's `verifyPlatformContainerResources`: refuses what cannot be
/// honoured and drops (with a warning) what this kernel cannot do. `update`
/// relaxes the rules that only make sense for a whole request.
pub fn resources(hc: &mut HostConfig, sys: &SysInfo, update: bool) -> Checked {
    let mut warn = Vec::new();
    memory(hc, sys, update, &mut warn)?;
    cpu(hc, sys, &mut warn)?;
    block_io(hc)?;
    Ok(warn)
}

fn memory(
    hc: &mut HostConfig,
    sys: &SysInfo,
    update: bool,
    warn: &mut Vec<String>,
) -> Result<(), String> {
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
    Ok(())
}

fn cpu(hc: &mut HostConfig, sys: &SysInfo, warn: &mut Vec<String>) -> Result<(), String> {
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
    Ok(())
}

fn block_io(hc: &HostConfig) -> Result<(), String> {
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
    Ok(())
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(crate) fn sys() -> SysInfo {
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
}
