//! `docker update`: new resource limits and restart policy for a container,
//! written to its cgroup at once when it runs and kept for its next start.

use crate::{Engine, EngineError, Result};
use berth_runtime::cgroups::Limits;
use serde_json::{json, Value};

const MIN_MEMORY: i64 = 6 << 20;

impl Engine {
    /// `POST /containers/{id}/update`.
    pub async fn update(&self, key: &str, body: &Value) -> Result<Value> {
        let c = self.find(key)?;
        let _op = c.op.lock().await;
        let int = |k: &str| body.get(k).and_then(Value::as_i64).filter(|v| *v != 0);
        let mut rec = c.rec.read().expect("rec").clone();
        let hc = &mut rec.host_config;
        let mut l = Limits::default();
        if let Some(m) = int("Memory") {
            if m < MIN_MEMORY {
                return Err(EngineError::BadRequest(
                    "Minimum memory limit allowed is 6MB".into(),
                ));
            }
            hc.memory = m;
            l.memory = Some(m);
        }
        if let Some(sw) = int("MemorySwap") {
            hc.memory_swap = sw;
            l.memory_swap = Some(sw);
        }
        if hc.memory > 0 && hc.memory_swap > 0 && hc.memory_swap < hc.memory {
            return Err(EngineError::BadRequest(if l.memory_swap.is_some() {
                "Minimum memoryswap limit should be larger than memory limit, see usage".into()
            } else {
                "Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time".into()
            }));
        }
        if let Some(n) = int("NanoCpus") {
            hc.nano_cpus = n;
            hc.cpu_quota = 0;
            l.cpu_quota = Some((n * 100_000 / 1_000_000_000, 100_000));
        } else if int("CpuQuota").is_some() || int("CpuPeriod").is_some() {
            if let Some(q) = int("CpuQuota") {
                hc.cpu_quota = q;
            }
            if let Some(p) = int("CpuPeriod") {
                hc.cpu_period = p;
            }
            let period = if hc.cpu_period > 0 {
                hc.cpu_period
            } else {
                100_000
            };
            l.cpu_quota = Some((hc.cpu_quota, period));
        }
        if let Some(s) = int("CpuShares") {
            hc.cpu_shares = s;
            l.cpu_shares = Some(s);
        }
        if let Some(p) = body.get("PidsLimit").and_then(Value::as_i64) {
            hc.pids_limit = Some(p);
            l.pids = Some(p);
        }
        if let Some(rp) = body.get("RestartPolicy").filter(|v| v.is_object()) {
            let name = rp["Name"].as_str().unwrap_or_default();
            if !name.is_empty() {
                if hc.auto_remove && name != "no" {
                    return Err(EngineError::BadRequest(
                        "Restart policy cannot be updated because AutoRemove is enabled for the container".into(),
                    ));
                }
                hc.restart_policy.name = name.to_string();
                hc.restart_policy.maximum_retry_count =
                    rp["MaximumRetryCount"].as_i64().unwrap_or(0);
            }
        }
        if c.state().status.is_running() && l != Limits::default() {
            let path = crate::stats::cgroup_path(&rec.id);
            berth_runtime::cgroups::update(&path, &l).map_err(|e| {
                EngineError::Internal(format!("Cannot update container {}: {e}", rec.id))
            })?;
        }
        self.persist_record(&rec)?;
        self.emit_container(&rec, "update", &[]);
        *c.rec.write().expect("rec") = rec;
        Ok(json!({"Warnings": []}))
    }
}
