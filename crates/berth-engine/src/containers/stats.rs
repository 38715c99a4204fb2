//! `docker stats`: a container's cgroup counters and network counters in the
//! shape of Docker's stats JSON, from which clients compute CPU %.

use crate::record::Status;
use crate::{Engine, Result};
use berth_api::{
    BlkioStatEntry, BlkioStats, CpuStats, CpuUsage, MemoryStats, NetworkStats, PidsStats,
    StatsResponse,
};
use std::collections::BTreeMap;

impl Engine {
    /// Where a container's cgroup lives (below each controller, or in
    /// cgroup2): under the daemon's `--cgroup-parent`.
    pub(crate) fn cgroup_path(&self, id: &str) -> String {
        format!("{}/{id}", self.cfg.cgroup_parent.trim_end_matches('/'))
    }
}

/// Host CPU time so far, nanoseconds, as Docker's `system_cpu_usage`.
fn system_cpu_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    ticks * 10_000_000
}

fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Per-interface counters of a process's network namespace, loopback left out.
fn networks(pid: i32) -> BTreeMap<String, NetworkStats> {
    let mut out = BTreeMap::new();
    let dev = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default();
    for l in dev.lines().skip(2) {
        let Some((name, rest)) = l.split_once(':') else {
            continue;
        };
        let name = name.trim();
        let v: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if name == "lo" || v.len() < 12 {
            continue;
        }
        out.insert(
            name.to_string(),
            NetworkStats {
                rx_bytes: v[0],
                rx_packets: v[1],
                rx_errors: v[2],
                rx_dropped: v[3],
                tx_bytes: v[8],
                tx_packets: v[9],
                tx_errors: v[10],
                tx_dropped: v[11],
            },
        );
    }
    out
}

impl Engine {
    /// Kills what is left in a container's cgroup and removes it, off the
    /// async threads (it may wait for processes to die).
    pub(crate) async fn destroy_cgroup(&self, id: &str) {
        let (cgroups, path) = (self.cgroups.clone(), self.cgroup_path(id));
        let _ = tokio::task::spawn_blocking(move || cgroups.destroy(&path)).await;
    }

    /// One stats sample; `prev` (the previous sample) becomes its
    /// `precpu_stats`, as in Docker's stream.
    pub fn stats_sample(&self, key: &str, prev: Option<&StatsResponse>) -> Result<StatsResponse> {
        let c = self.find(key)?;
        let (id, name) = {
            let r = c.rec.read().expect("rec");
            (r.id.clone(), format!("/{}", r.name))
        };
        let st = c.state();
        if !matches!(st.status, Status::Running | Status::Paused) {
            // What dockerd answers for a container that is not running.
            return Ok(StatsResponse {
                read: crate::ZERO_TIME.into(),
                preread: crate::ZERO_TIME.into(),
                id,
                name,
                ..StatsResponse::default()
            });
        }
        let s = self.cgroups.stats(&self.cgroup_path(&id));
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1);
        let io = s
            .io_bytes
            .iter()
            .map(|(major, minor, op, value)| BlkioStatEntry {
                major: *major,
                minor: *minor,
                op: op.clone(),
                value: *value,
            })
            .collect();
        Ok(StatsResponse {
            read: crate::now(),
            preread: prev
                .map(|p| p.read.clone())
                .unwrap_or_else(|| crate::ZERO_TIME.into()),
            id,
            name,
            pids_stats: PidsStats {
                current: Some(s.pids),
                limit: s.pids_limit,
            },
            blkio_stats: BlkioStats {
                io_service_bytes_recursive: Some(io),
            },
            cpu_stats: CpuStats {
                cpu_usage: CpuUsage {
                    total_usage: s.cpu_total,
                    percpu_usage: Some(s.percpu),
                    usage_in_kernelmode: s.cpu_system,
                    usage_in_usermode: s.cpu_user,
                },
                system_cpu_usage: Some(system_cpu_ns()),
                online_cpus: Some(cpus),
                throttling_data: Default::default(),
            },
            precpu_stats: prev.map(|p| p.cpu_stats.clone()).unwrap_or_default(),
            memory_stats: MemoryStats {
                usage: Some(s.mem_usage),
                max_usage: Some(s.mem_max_usage),
                stats: Some(s.mem_stat.into_iter().collect()),
                limit: Some(s.mem_limit.unwrap_or_else(host_memory)),
            },
            networks: (st.pid > 0 && !st.endpoints.is_empty()).then(|| networks(st.pid)),
            ..StatsResponse::default()
        })
    }
}
