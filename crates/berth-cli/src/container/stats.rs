//! `berth stats`: the docker CLI's table of CPU, memory, network, block I/O
//! and PIDs per container, computed from the daemon's stats samples.

use crate::args::*;
use crate::client::{urlencode, Client};
use crate::format::{bytes_size, human_size, print_rows};
use anyhow::Result;
use berth_api::{ContainerSummary, StatsResponse};
use serde_json::{json, Value};
use std::time::Duration;

const DEFAULT: &str =
    "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}";
const HEADERS: [(&str, &str); 9] = [
    ("Container", "CONTAINER"),
    ("ID", "CONTAINER ID"),
    ("Name", "NAME"),
    ("CPUPerc", "CPU %"),
    ("MemUsage", "MEM USAGE / LIMIT"),
    ("MemPerc", "MEM %"),
    ("NetIO", "NET I/O"),
    ("BlockIO", "BLOCK I/O"),
    ("PIDs", "PIDS"),
];

/// One table row from a sample (whose `precpu_stats` is the one before).
fn row(container: &str, s: &StatsResponse) -> Value {
    let (cpu, pre) = (&s.cpu_stats, &s.precpu_stats);
    let cpu_delta = cpu.cpu_usage.total_usage as f64 - pre.cpu_usage.total_usage as f64;
    let sys_delta =
        cpu.system_cpu_usage.unwrap_or(0) as f64 - pre.system_cpu_usage.unwrap_or(0) as f64;
    let cpus = f64::from(cpu.online_cpus.unwrap_or(1).max(1));
    let cpu_pct = if sys_delta > 0.0 && cpu_delta > 0.0 {
        cpu_delta / sys_delta * cpus * 100.0
    } else {
        0.0
    };
    let mem = &s.memory_stats;
    // As the docker CLI: page cache that could be dropped is not "used".
    let inactive = mem
        .stats
        .as_ref()
        .and_then(|m| {
            m.get("total_inactive_file")
                .or_else(|| m.get("inactive_file"))
        })
        .copied()
        .unwrap_or(0);
    let used = mem.usage.unwrap_or(0).saturating_sub(inactive) as f64;
    let limit = mem.limit.unwrap_or(0) as f64;
    let mem_pct = if limit > 0.0 {
        used / limit * 100.0
    } else {
        0.0
    };
    let nets = s.networks.iter().flat_map(|m| m.values());
    let rx: u64 = nets.clone().map(|n| n.rx_bytes).sum();
    let tx: u64 = nets.map(|n| n.tx_bytes).sum();
    let (mut rd, mut wr) = (0, 0);
    for e in s.blkio_stats.io_service_bytes_recursive.iter().flatten() {
        match e.op.to_ascii_lowercase().as_str() {
            "read" => rd += e.value,
            "write" => wr += e.value,
            _ => {}
        }
    }
    json!({
        "Container": container,
        "ID": s.id.chars().take(12).collect::<String>(),
        "Name": s.name.trim_start_matches('/'),
        "CPUPerc": format!("{cpu_pct:.2}%"),
        "MemUsage": format!("{} / {}", bytes_size(used), bytes_size(limit)),
        "MemPerc": format!("{mem_pct:.2}%"),
        "NetIO": format!("{} / {}", human_size(rx as f64), human_size(tx as f64)),
        "BlockIO": format!("{} / {}", human_size(rd as f64), human_size(wr as f64)),
        "PIDs": s.pids_stats.current.unwrap_or(0).to_string(),
    })
}

fn sample(c: &Client, name: &str, one_shot: bool) -> Result<StatsResponse> {
    let q = if one_shot {
        "stream=false&one-shot=true"
    } else {
        "stream=false"
    };
    c.get(&format!("/containers/{}/stats?{q}", urlencode(name)))?
        .decode()
}

pub fn stats(c: &Client, a: StatsArgs) -> Result<i32> {
    let names: Vec<String> = if a.containers.is_empty() {
        let q = if a.all { "?all=1" } else { "" };
        c.get(&format!("/containers/json{q}"))?
            .decode::<Vec<ContainerSummary>>()?
            .into_iter()
            .map(|c| c.id[..12.min(c.id.len())].to_string())
            .collect()
    } else {
        a.containers.clone()
    };
    if a.no_stream {
        // The daemon waits a second for each to get a CPU delta: in parallel.
        let rows: Vec<Result<Value>> = std::thread::scope(|s| {
            let handles: Vec<_> = names
                .iter()
                .map(|n| {
                    let client = c.clone();
                    s.spawn(move || sample(&client, n, false).map(|v| row(n, &v)))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("stats thread"))
                .collect()
        });
        let rows = rows.into_iter().collect::<Result<Vec<_>>>()?;
        print_rows(&a.format, DEFAULT, &rows, &HEADERS)?;
        return Ok(0);
    }
    let mut prev: Vec<Option<StatsResponse>> = vec![None; names.len()];
    loop {
        let mut rows = Vec::new();
        for (i, n) in names.iter().enumerate() {
            let Ok(mut s) = sample(c, n, true) else {
                continue;
            };
            if let Some(p) = &prev[i] {
                s.precpu_stats = p.cpu_stats.clone();
            }
            rows.push(row(n, &s));
            prev[i] = Some(s);
        }
        print!("\x1b[2J\x1b[H");
        print_rows(&a.format, DEFAULT, &rows, &HEADERS)?;
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_like_the_docker_cli() {
        let s = json!({
            "id": "0123456789abcdef", "name": "/web",
            "cpu_stats": {"cpu_usage": {"total_usage": 1_500_000_000u64}, "system_cpu_usage": 4_000_000_000u64, "online_cpus": 2},
            "precpu_stats": {"cpu_usage": {"total_usage": 1_000_000_000u64}, "system_cpu_usage": 2_000_000_000u64},
            "memory_stats": {"usage": 3 * 1048576, "limit": 64 * 1048576, "stats": {"total_inactive_file": 1048576}},
            "networks": {"eth0": {"rx_bytes": 1500, "tx_bytes": 0}},
            "blkio_stats": {"io_service_bytes_recursive": [{"op": "Read", "value": 4096}, {"op": "write", "value": 0}]},
            "pids_stats": {"current": 3},
        });
        let r = row("web", &serde_json::from_value(s).unwrap());
        assert_eq!(r["ID"], "0123456789ab");
        assert_eq!(r["CPUPerc"], "50.00%");
        assert_eq!(r["MemUsage"], "2MiB / 64MiB");
        assert_eq!(r["MemPerc"], "3.12%");
        assert_eq!(r["NetIO"], "1.5kB / 0B");
        assert_eq!(r["BlockIO"], "4.1kB / 0B");
        assert_eq!(r["PIDs"], "3");
    }
}
