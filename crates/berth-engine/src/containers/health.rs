//! HEALTHCHECK: a probe run as an exec on a timer while the container runs;
//! its results land in the container's state (`State.Health`, the
//! `(healthy)` of `ps`), as dockerd keeps them.

use crate::record::Status;
use crate::{now, Ctr, Engine};
use berth_api::HealthConfig;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use berth_api::{Health, HealthcheckResult as HealthResult};

/// Docker keeps the last five results and 4 KiB of each one's output.
const KEEP_RESULTS: usize = 5;
const MAX_OUTPUT: usize = 4096;

/// A container's healthcheck, defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub cmd: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub start_period: Duration,
    pub start_interval: Duration,
    pub retries: u32,
}

/// The probe a `Healthcheck` config asks for: None without one, or for
/// `["NONE"]`. `shell` runs `CMD-SHELL` (the image's SHELL, else `/bin/sh -c`).
pub fn probe(hc: Option<&HealthConfig>, shell: &[String]) -> Option<Probe> {
    let hc = hc?;
    let cmd = match hc.test.split_first() {
        Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => rest.to_vec(),
        Some((kind, rest)) if kind == "CMD-SHELL" && !rest.is_empty() => {
            let mut c = if shell.is_empty() {
                vec!["/bin/sh".to_string(), "-c".to_string()]
            } else {
                shell.to_vec()
            };
            c.push(rest.join(" "));
            c
        }
        _ => return None,
    };
    let dur = |ns: i64, default: Duration| {
        if ns > 0 {
            Duration::from_nanos(ns as u64)
        } else {
            default
        }
    };
    let retries = if hc.retries > 0 { hc.retries as u32 } else { 3 };
    Some(Probe {
        cmd,
        interval: dur(hc.interval, Duration::from_secs(30)),
        timeout: dur(hc.timeout, Duration::from_secs(30)),
        start_period: dur(hc.start_period, Duration::ZERO),
        start_interval: dur(hc.start_interval, Duration::from_secs(5)),
        retries,
    })
}

/// Folds one result into the health: a success makes it healthy; failures
/// count once the start period is over, and `retries` in a row make it
/// unhealthy.
pub fn record(h: &mut Health, result: HealthResult, in_start_period: bool, retries: u32) {
    if result.exit_code == 0 {
        h.status = "healthy".into();
        h.failing_streak = 0;
    } else if !in_start_period {
        h.failing_streak += 1;
        if h.failing_streak >= retries {
            h.status = "unhealthy".into();
        }
    }
    h.log.push(result);
    if h.log.len() > KEEP_RESULTS {
        let extra = h.log.len() - KEEP_RESULTS;
        h.log.drain(..extra);
    }
}

/// The payload of Docker's multiplexed frames (stdout and stderr alike).
fn demux(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = raw;
    while rest.len() >= 8 {
        let n = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
        let end = (8 + n).min(rest.len());
        out.extend_from_slice(&rest[8..end]);
        rest = &rest[end..];
    }
    out
}

impl Engine {
    /// Starts the probe loop of a running container that has a healthcheck.
    /// `fresh`: a new start (health begins as `starting`), not a daemon restart.
    pub(crate) fn start_health(self: &Arc<Self>, c: &Arc<Ctr>, fresh: bool) {
        let (id, p) = {
            let rec = c.rec.read().expect("rec");
            if rec.config.healthcheck.is_none() {
                return;
            }
            // CMD-SHELL runs under the image's SHELL.
            let shell = self
                .store
                .get(&rec.image_id)
                .ok()
                .and_then(|img| img.config.config.shell.clone())
                .unwrap_or_default();
            match probe(rec.config.healthcheck.as_ref(), &shell) {
                Some(p) => (rec.id.clone(), p),
                None => return,
            }
        };
        {
            let mut st = c.state.lock().expect("state");
            if fresh || st.health.is_none() {
                st.health = Some(Health {
                    status: "starting".into(),
                    ..Default::default()
                });
            }
        }
        let me = Arc::downgrade(self);
        let ctr = Arc::downgrade(c);
        let cid = id.clone();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            loop {
                let in_start = started.elapsed() < p.start_period;
                let wait = if in_start {
                    p.start_interval
                } else {
                    p.interval
                };
                tokio::time::sleep(wait).await;
                let (Some(engine), Some(c)) = (me.upgrade(), ctr.upgrade()) else {
                    return;
                };
                match c.state().status {
                    Status::Running => {}
                    Status::Paused => continue,
                    _ => return,
                }
                let result = engine.run_probe(&cid, &p).await;
                let in_start = started.elapsed() < p.start_period;
                let changed = {
                    let mut st = c.state.lock().expect("state");
                    if !st.status.is_running() {
                        return;
                    }
                    let h = st.health.get_or_insert_with(Default::default);
                    let before = h.status.clone();
                    record(h, result, in_start, p.retries);
                    (h.status != before).then(|| h.status.clone())
                };
                let _ = engine.persist_state(&c);
                if let Some(status) = changed {
                    engine.emit_for(&c, &format!("health_status: {status}"), &[]);
                }
            }
        });
        if let Some(old) = self
            .health
            .lock()
            .expect("health")
            .insert(id, task.abort_handle())
        {
            old.abort();
        }
    }

    pub(crate) fn stop_health(&self, id: &str) {
        if let Some(h) = self.health.lock().expect("health").remove(id) {
            h.abort();
        }
    }

    /// One probe: an exec of the check command, bounded by the timeout.
    async fn run_probe(self: &Arc<Self>, id: &str, p: &Probe) -> HealthResult {
        let start = now();
        let cfg = berth_api::ExecConfig {
            attach_stdout: true,
            attach_stderr: true,
            cmd: p.cmd.clone(),
            ..Default::default()
        };
        let failed = |msg: String| (-1i64, msg);
        let (exit_code, output) = match self.exec_create(id, cfg) {
            Err(e) => failed(e.to_string()),
            Ok(exec_id) => {
                let run = async {
                    let prepared = self.exec_prepare(&exec_id, false, None)?;
                    let stream = self.exec_launch(prepared).await?;
                    let mut raw = Vec::new();
                    if let Some(mut s) = stream {
                        use tokio::io::AsyncReadExt;
                        let mut buf = [0u8; 4096];
                        loop {
                            match s.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) if raw.len() < 4 * MAX_OUTPUT => {
                                    raw.extend_from_slice(&buf[..n])
                                }
                                Ok(_) => {}
                            }
                        }
                    }
                    self.exec_finished(&exec_id).await;
                    let code = self
                        .exec_get(&exec_id)
                        .ok()
                        .and_then(|e| e.exit_code)
                        .unwrap_or(-1);
                    crate::Result::Ok((code as i64, demux(&raw)))
                };
                let r = match tokio::time::timeout(p.timeout, run).await {
                    Ok(Ok((code, out))) => {
                        let mut out = String::from_utf8_lossy(&out).into_owned();
                        if out.len() > MAX_OUTPUT {
                            let mut cut = MAX_OUTPUT;
                            while !out.is_char_boundary(cut) {
                                cut -= 1;
                            }
                            out.truncate(cut);
                        }
                        (code, out)
                    }
                    Ok(Err(e)) => failed(e.to_string()),
                    Err(_) => {
                        // The probe outlived its timeout: end it, as dockerd does.
                        if let Ok(e) = self.exec_get(&exec_id) {
                            if e.pid > 0 {
                                let _ = nix::sys::signal::kill(
                                    nix::unistd::Pid::from_raw(e.pid),
                                    nix::sys::signal::Signal::SIGKILL,
                                );
                            }
                        }
                        failed(format!(
                            "Health check exceeded timeout ({}s)",
                            p.timeout.as_secs_f64()
                        ))
                    }
                };
                self.execs.lock().expect("execs").remove(&exec_id);
                r
            }
        };
        HealthResult {
            start,
            end: now(),
            exit_code,
            output,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hc(v: serde_json::Value) -> HealthConfig {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn probes_from_configs() {
        assert_eq!(probe(None, &[]), None);
        assert_eq!(probe(Some(&hc(json!({"Test": ["NONE"]}))), &[]), None);
        assert_eq!(probe(Some(&hc(json!({"Test": []}))), &[]), None);
        let p = probe(
            Some(&hc(json!({"Test": ["CMD-SHELL", "test -f /ok"]}))),
            &[],
        )
        .unwrap();
        assert_eq!(p.cmd, ["/bin/sh", "-c", "test -f /ok"]);
        assert_eq!((p.interval, p.retries), (Duration::from_secs(30), 3));
        let shell = vec!["/bin/ash".to_string(), "-e".to_string(), "-c".to_string()];
        let p = probe(
            Some(&hc(
                json!({"Test": ["CMD-SHELL", "true"], "Interval": 500_000_000u64, "Retries": 2}),
            )),
            &shell,
        )
        .unwrap();
        assert_eq!(p.cmd, ["/bin/ash", "-e", "-c", "true"]);
        assert_eq!((p.interval, p.retries), (Duration::from_millis(500), 2));
        let p = probe(Some(&hc(json!({"Test": ["CMD", "cat", "/ok"]}))), &[]).unwrap();
        assert_eq!(p.cmd, ["cat", "/ok"]);
    }

    fn res(code: i64) -> HealthResult {
        HealthResult {
            exit_code: code,
            ..Default::default()
        }
    }

    #[test]
    fn streaks_and_start_period() {
        let mut h = Health {
            status: "starting".into(),
            ..Default::default()
        };
        record(&mut h, res(1), true, 2);
        assert_eq!((h.status.as_str(), h.failing_streak), ("starting", 0));
        record(&mut h, res(1), false, 2);
        assert_eq!((h.status.as_str(), h.failing_streak), ("starting", 1));
        record(&mut h, res(1), false, 2);
        assert_eq!((h.status.as_str(), h.failing_streak), ("unhealthy", 2));
        record(&mut h, res(0), false, 2);
        assert_eq!((h.status.as_str(), h.failing_streak), ("healthy", 0));
        for _ in 0..10 {
            record(&mut h, res(0), false, 2);
        }
        assert_eq!(h.log.len(), KEEP_RESULTS);
    }

    #[test]
    fn demuxes_frames() {
        let mut raw = vec![1, 0, 0, 0, 0, 0, 0, 3];
        raw.extend_from_slice(b"abc");
        raw.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 2]);
        raw.extend_from_slice(b"de");
        assert_eq!(demux(&raw), b"abcde");
    }
}
