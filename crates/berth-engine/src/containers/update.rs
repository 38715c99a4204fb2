//! `docker update`: new resource limits and restart policy for a container,
//! written to its cgroup at once when it runs and kept for its next start.

use crate::{validate, Engine, EngineError, Result};
use berth_api::{ContainerUpdateResponse, HostConfig};
use berth_runtime::cgroups::Limits;

impl Engine {
    /// `POST /containers/{id}/update`: the body's non-zero fields replace the
    /// container's, as dockerd merges them.
    pub async fn update(
        &self,
        key: &str,
        mut given: HostConfig,
    ) -> Result<ContainerUpdateResponse> {
        let bad = EngineError::BadRequest;
        let pids_given = given.pids_limit.is_some();
        let warnings = validate::resources(&mut given, &self.sys, true).map_err(bad)?;
        let c = self.find(key)?;
        let _op = c.op.lock().await;
        let mut rec = c.rec.read().expect("rec").clone();
        let l = merge(&mut rec.host_config, given, pids_given)?;
        if c.state().status.is_running() && l != Limits::default() {
            let path = self.cgroup_path(&rec.id);
            self.cgroups.update(&path, &l).map_err(|e| {
                EngineError::Internal(format!("Cannot update container {}: {e}", rec.id))
            })?;
        }
        self.persist_record(&rec)?;
        self.emit_container(&rec, "update", &[]);
        *c.rec.write().expect("rec") = rec;
        Ok(ContainerUpdateResponse { warnings })
    }
}

/// dockerd's merge of an update into a container's `HostConfig`: the given
/// non-zero fields replace the kept ones; the limits to write to a running
/// container's cgroup come back.
fn merge(hc: &mut HostConfig, given: HostConfig, pids_given: bool) -> Result<Limits> {
    let bad = EngineError::BadRequest;
    let conflict = |m: &str| Err(EngineError::Conflict(m.to_string()));
    check_cpu_mix(hc, &given)?;
    let mut l = Limits::default();
    if given.memory != 0 {
        if hc.memory_swap > 0 && given.memory > hc.memory_swap && given.memory_swap == 0 {
            return conflict("Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time");
        }
        hc.memory = given.memory;
        l.memory = Some(given.memory);
    }
    if given.memory_swap != 0 {
        hc.memory_swap = given.memory_swap;
        l.memory_swap = Some(given.memory_swap);
    }
    if hc.memory > 0 && hc.memory_swap > 0 && hc.memory_swap < hc.memory {
        return Err(bad(
            "Minimum memoryswap limit should be larger than memory limit, see usage".into(),
        ));
    }
    if given.memory_reservation != 0 {
        hc.memory_reservation = given.memory_reservation;
        l.memory_reservation = Some(given.memory_reservation);
    }
    if given.nano_cpus != 0 {
        hc.nano_cpus = given.nano_cpus;
        l.cpu_quota = Some((given.nano_cpus * 100_000 / 1_000_000_000, 100_000));
    } else if given.cpu_quota != 0 || given.cpu_period != 0 {
        if given.cpu_quota != 0 {
            hc.cpu_quota = given.cpu_quota;
        }
        if given.cpu_period != 0 {
            hc.cpu_period = given.cpu_period;
        }
        let period = if hc.cpu_period > 0 {
            hc.cpu_period
        } else {
            100_000
        };
        l.cpu_quota = Some((hc.cpu_quota, period));
    }
    if given.cpu_shares != 0 {
        hc.cpu_shares = given.cpu_shares;
        l.cpu_shares = Some(given.cpu_shares);
    }
    if !given.cpuset_cpus.is_empty() {
        hc.cpuset_cpus = given.cpuset_cpus.clone();
        l.cpuset_cpus = Some(given.cpuset_cpus);
    }
    if !given.cpuset_mems.is_empty() {
        hc.cpuset_mems = given.cpuset_mems.clone();
        l.cpuset_mems = Some(given.cpuset_mems);
    }
    if given.blkio_weight != 0 {
        hc.blkio_weight = given.blkio_weight;
        l.blkio_weight = Some(given.blkio_weight);
    }
    // `PidsLimit` 0 or -1 lifts the limit; validation made those None.
    if pids_given {
        hc.pids_limit = given.pids_limit;
        l.pids = Some(given.pids_limit.unwrap_or(0));
    }
    if !given.restart_policy.name.is_empty() {
        let rp = &given.restart_policy;
        validate::restart_policy(&rp.name, rp.maximum_retry_count).map_err(bad)?;
        if hc.auto_remove && rp.name != "no" {
            return conflict(
                "Restart policy cannot be updated because AutoRemove is enabled for the container",
            );
        }
        hc.restart_policy = rp.clone();
    }
    Ok(l)
}

/// CPU limits come as NanoCPUs or as a quota and period, never both: an
/// update may not bring the other kind in.
fn check_cpu_mix(hc: &HostConfig, given: &HostConfig) -> Result<()> {
    let mixed = [
        (
            given.nano_cpus > 0 && hc.cpu_period > 0,
            "Nano CPUs",
            "CPU Period",
        ),
        (
            given.nano_cpus > 0 && hc.cpu_quota > 0,
            "Nano CPUs",
            "CPU Quota",
        ),
        (
            given.cpu_period > 0 && hc.nano_cpus > 0,
            "CPU Period",
            "NanoCPUs",
        ),
        (
            given.cpu_quota > 0 && hc.nano_cpus > 0,
            "CPU Quota",
            "NanoCPUs",
        ),
    ];
    if let Some((_, new, kept)) = mixed.iter().find(|m| m.0) {
        return Err(EngineError::Conflict(format!(
            "Conflicting options: {new} cannot be updated as {kept} has already been set"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(f: impl FnOnce(&mut HostConfig)) -> HostConfig {
        let mut h = HostConfig::default();
        f(&mut h);
        h
    }

    #[test]
    fn merges_as_dockerd() {
        let mut hc = given(|h| h.nano_cpus = 1_000_000_000);
        let e = merge(&mut hc, given(|h| h.cpu_quota = 50_000), false).unwrap_err();
        assert!(matches!(e, EngineError::Conflict(m) if m.contains("CPU Quota cannot be updated")));

        let mut hc = given(|h| h.memory_swap = 64 << 20);
        let e = merge(&mut hc, given(|h| h.memory = 128 << 20), false).unwrap_err();
        assert!(
            matches!(e, EngineError::Conflict(m) if m.contains("smaller than already set memoryswap"))
        );

        let mut hc = HostConfig::default();
        let l = merge(&mut hc, given(|h| h.cpu_quota = 50_000), false).unwrap();
        assert_eq!(
            (hc.cpu_quota, l.cpu_quota),
            (50_000, Some((50_000, 100_000)))
        );
        // Fields not given are left as they were; a pids limit only when given.
        let l = merge(&mut hc, given(|h| h.memory = 64 << 20), false).unwrap();
        assert_eq!(
            (hc.cpu_quota, hc.memory, l.memory, l.pids),
            (50_000, 64 << 20, Some(64 << 20), None)
        );

        let mut hc = given(|h| h.auto_remove = true);
        let always = given(|h| h.restart_policy.name = "always".into());
        assert!(matches!(
            merge(&mut hc, always, false),
            Err(EngineError::Conflict(_))
        ));
    }
}
