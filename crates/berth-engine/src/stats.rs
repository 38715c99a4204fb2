//! `docker stats`: a container's cgroup counters and network counters in the
//! shape of Docker's stats JSON, from which clients compute CPU %.

use crate::record::Status;
use crate::{Engine, Result};
use serde_json::{json, Map, Value};

/// Where a container's cgroup lives (below each controller, or in cgroup2).
pub(crate) fn cgroup_path(id: &str) -> String {
    format!("/berth/{id}")
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
fn networks(pid: i32) -> Map<String, Value> {
    let mut out = Map::new();
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
            json!({
                "rx_bytes": v[0], "rx_packets": v[1], "rx_errors": v[2], "rx_dropped": v[3],
                "tx_bytes": v[8], "tx_packets": v[9], "tx_errors": v[10], "tx_dropped": v[11],
            }),
        );
    }
    out
}

impl Engine {
    /// One stats sample; `prev` (the previous sample) becomes its
    /// `precpu_stats`, as in Docker's stream.
    pub fn stats_sample(&self, key: &str, prev: Option<&Value>) -> Result<Value> {
        let c = self.find(key)?;
        let (id, name) = {
            let r = c.rec.read().expect("rec");
            (r.id.clone(), r.name.clone())
        };
        let st = c.state();
        let precpu = prev
            .map(|p| p["cpu_stats"].clone())
            .unwrap_or_else(|| json!({}));
        let preread = prev
            .map(|p| p["read"].clone())
            .unwrap_or_else(|| json!(crate::ZERO_TIME));
        if !matches!(st.status, Status::Running | Status::Paused) {
            // What dockerd answers for a container that is not running.
            return Ok(json!({
                "read": crate::ZERO_TIME, "preread": crate::ZERO_TIME, "id": id, "name": format!("/{name}"),
                "pids_stats": {}, "blkio_stats": {}, "num_procs": 0, "storage_stats": {},
                "cpu_stats": {"cpu_usage": {"total_usage": 0}, "throttling_data": {}},
                "precpu_stats": {"cpu_usage": {"total_usage": 0}, "throttling_data": {}},
                "memory_stats": {},
            }));
        }
        let s = berth_runtime::cgroups::stats(&cgroup_path(&id));
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let mem_stats: Map<String, Value> = s
            .mem_stat
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        let io: Vec<Value> = s
            .io_bytes
            .iter()
            .map(|(maj, min, op, v)| json!({"major": maj, "minor": min, "op": op, "value": v}))
            .collect();
        let mut pids = json!({"current": s.pids});
        if let Some(l) = s.pids_limit {
            pids["limit"] = json!(l);
        }
        let mut v = json!({
            "read": crate::now(),
            "preread": preread,
            "id": id,
            "name": format!("/{name}"),
            "num_procs": 0,
            "storage_stats": {},
            "pids_stats": pids,
            "blkio_stats": {"io_service_bytes_recursive": io},
            "cpu_stats": {
                "cpu_usage": {
                    "total_usage": s.cpu_total,
                    "percpu_usage": if s.percpu.is_empty() { Value::Null } else { json!(s.percpu) },
                    "usage_in_kernelmode": s.cpu_system,
                    "usage_in_usermode": s.cpu_user,
                },
                "system_cpu_usage": system_cpu_ns(),
                "online_cpus": cpus,
                "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
            },
            "precpu_stats": precpu,
            "memory_stats": {
                "usage": s.mem_usage,
                "max_usage": s.mem_max_usage,
                "stats": mem_stats,
                "limit": s.mem_limit.unwrap_or_else(host_memory),
            },
        });
        if st.pid > 0 && !st.endpoints.is_empty() {
            v["networks"] = Value::Object(networks(st.pid));
        }
        Ok(v)
    }
}
