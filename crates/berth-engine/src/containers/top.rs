//! `docker top`: the host's `ps`, narrowed to the container's processes.

use crate::{Engine, EngineError, Result};
use berth_api::ContainerTopResponse;

/// Keeps the rows of `ps` output whose PID column is one of `pids`.
pub fn filter_ps(output: &str, pids: &[i32]) -> Result<ContainerTopResponse> {
    let mut lines = output.lines();
    let header = lines
        .next()
        .ok_or_else(|| EngineError::Internal("ps printed nothing".into()))?;
    let titles: Vec<&str> = header.split_whitespace().collect();
    let pid_col = titles
        .iter()
        .position(|t| *t == "PID")
        .ok_or_else(|| EngineError::BadRequest("Couldn't find PID field in ps output".into()))?;
    let mut procs = Vec::new();
    for l in lines {
        let fields: Vec<&str> = l.split_whitespace().collect();
        if fields.len() < titles.len() {
            continue;
        }
        let Ok(pid) = fields[pid_col].parse::<i32>() else {
            continue;
        };
        if !pids.contains(&pid) {
            continue;
        }
        // The last column (the command) may hold spaces.
        let mut row: Vec<String> = fields[..titles.len() - 1]
            .iter()
            .map(|s| s.to_string())
            .collect();
        row.push(fields[titles.len() - 1..].join(" "));
        procs.push(row);
    }
    Ok(ContainerTopResponse {
        titles: titles.into_iter().map(str::to_string).collect(),
        processes: procs,
    })
}

impl Engine {
    pub async fn top(&self, key: &str, ps_args: &str) -> Result<ContainerTopResponse> {
        let c = self.find(key)?;
        if !c.state().status.is_running() {
            return Err(EngineError::Conflict(format!(
                "Container {} is not running",
                c.id()
            )));
        }
        let pids = self.cgroups.pids(&self.cgroup_path(&c.id()));
        let args: Vec<&str> = if ps_args.is_empty() {
            vec!["-ef"]
        } else {
            ps_args.split_whitespace().collect()
        };
        let out = tokio::process::Command::new("ps")
            .args(&args)
            .output()
            .await
            .map_err(|e| EngineError::Internal(format!("running ps: {e}")))?;
        if !out.status.success() {
            return Err(EngineError::Internal(format!(
                "ps: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        filter_ps(&String::from_utf8_lossy(&out.stdout), &pids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_container_rows() {
        let out = "UID PID PPID C STIME TTY TIME CMD\nroot 1 0 0 10:00 ? 00:00:01 /sbin/init\nroot 42 1 0 10:01 ? 00:00:00 sleep 3600\n";
        let v = filter_ps(out, &[42]).unwrap();
        assert_eq!(v.processes.len(), 1);
        assert_eq!(v.processes[0][7], "sleep 3600");
        assert!(filter_ps("USER COMMAND\nroot x\n", &[1]).is_err());
    }
}
