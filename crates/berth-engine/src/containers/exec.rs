//! `docker exec`: processes started inside a running container by its shim.

use crate::record::Status;
use crate::{new_id, user, Engine, EngineError, Kind, Result};
use berth_api::{ExecConfig, ExecInspect, ExecProcessConfig};
use berth_runtime::proto::Request;
use berth_runtime::spec;
use std::sync::Arc;
use tokio::io::BufReader;
use tokio::net::UnixStream;

#[derive(Debug, Clone)]
pub struct ExecRecord {
    pub id: String,
    pub container_id: String,
    pub config: ExecConfig,
    pub running: bool,
    pub exit_code: Option<i32>,
    pub pid: i32,
}

/// An exec checked and ready to run (see [`Engine::exec_prepare`]).
pub struct PreparedExec {
    exec_id: String,
    container_id: String,
    req: Request,
    detach: bool,
    /// Whether the process has a terminal (the exec's create request).
    pub tty: bool,
    /// `DetachKeys` of the create request ("" for Docker's default).
    pub detach_keys: String,
}

impl Engine {
    pub fn exec_create(&self, key: &str, cfg: ExecConfig) -> Result<String> {
        let c = self.find(key)?;
        let id = c.id();
        match c.state().status {
            Status::Running => {}
            Status::Paused => {
                return Err(EngineError::Conflict(format!(
                    "container {id} is paused, unpause the container before exec"
                )))
            }
            _ => {
                return Err(EngineError::Conflict(format!(
                    "container {id} is not running"
                )))
            }
        }
        if cfg.cmd.is_empty() {
            return Err(EngineError::BadRequest("No exec command specified".into()));
        }
        let exec_id = new_id();
        self.emit_for(
            &c,
            &format!("exec_create: {}", cfg.cmd.join(" ")),
            &[("execID", exec_id.clone())],
        );
        self.execs.lock().expect("execs").insert(
            exec_id.clone(),
            ExecRecord {
                id: exec_id.clone(),
                container_id: id,
                config: cfg,
                running: false,
                exit_code: None,
                pid: 0,
            },
        );
        Ok(exec_id)
    }

    pub(crate) fn exec_get(&self, exec_id: &str) -> Result<ExecRecord> {
        self.execs
            .lock()
            .expect("execs")
            .get(exec_id)
            .cloned()
            .ok_or_else(|| EngineError::missing(Kind::Exec, exec_id))
    }

    /// Starts the exec. Returns its stream unless detached; the caller reports the
    /// end of the stream with [`Engine::exec_finished`].
    pub async fn exec_start(
        self: &Arc<Self>,
        exec_id: &str,
        detach: bool,
        console: Option<(u16, u16)>,
    ) -> Result<Option<(BufReader<UnixStream>, bool)>> {
        let prepared = self.exec_prepare(exec_id, detach, console)?;
        let tty = prepared.tty;
        let stream = self.exec_launch(prepared).await?;
        Ok(stream.map(|s| (s, tty)))
    }

    /// Checks an exec and builds its process; errors here come before any
    /// stream is opened.
    pub fn exec_prepare(
        &self,
        exec_id: &str,
        detach: bool,
        console: Option<(u16, u16)>,
    ) -> Result<PreparedExec> {
        let ex = self.exec_get(exec_id)?;
        if ex.running || ex.exit_code.is_some() {
            return Err(EngineError::Conflict(format!(
                "Error: Exec command {exec_id} has already run"
            )));
        }
        let c = self.find(&ex.container_id)?;
        if c.state().status != Status::Running {
            return Err(EngineError::Conflict(format!(
                "container {} is not running",
                ex.container_id
            )));
        }
        let rec = c.rec.read().expect("rec").clone();
        let rootfs = self.rootfs(&rec.id);
        let user_spec = if ex.config.user.is_empty() {
            rec.config.user.clone()
        } else {
            ex.config.user.clone()
        };
        let u = user::resolve(&rootfs, &user_spec).map_err(EngineError::BadRequest)?;
        let mut env = rec.config.env.clone().unwrap_or_default();
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.insert(0, crate::DEFAULT_PATH.to_string());
        }
        env = crate::merge_env(&env, ex.config.env.as_deref().unwrap_or_default());
        if ex.config.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
            env.push("TERM=xterm".into());
        }
        if !env.iter().any(|e| e.starts_with("HOME=")) {
            env.push(format!("HOME={}", u.home));
        }
        let hc = &rec.host_config;
        let caps = spec::capabilities(&spec::RunSpec {
            privileged: hc.privileged || ex.config.privileged,
            cap_add: hc.cap_add.clone().unwrap_or_default(),
            cap_drop: hc.cap_drop.clone().unwrap_or_default(),
            ..Default::default()
        })
        .map_err(|e| EngineError::BadRequest(e.to_string()))?;
        let cwd = if ex.config.working_dir.is_empty() {
            rec.config.working_dir.clone()
        } else {
            ex.config.working_dir.clone()
        };
        let nnp = hc
            .security_opt
            .iter()
            .flatten()
            .any(|s| s.starts_with("no-new-privileges"));
        let mut process = spec::exec_process(&spec::ExecProcess {
            args: &ex.config.cmd,
            env: &env,
            cwd: &cwd,
            uid: u.uid,
            gid: u.gid,
            tty: ex.config.tty,
            caps: &caps,
            no_new_privileges: nnp,
            oom_score_adj: hc.oom_score_adj,
        })
        .map_err(|e| EngineError::BadRequest(e.to_string()))?;
        if let Some((h, w)) = console.or_else(|| {
            ex.config
                .console_size
                .as_ref()
                .filter(|s| s.len() == 2)
                .map(|s| (s[0], s[1]))
        }) {
            let size = berth_runtime::oci::BoxBuilder::default()
                .height(u64::from(h))
                .width(u64::from(w))
                .build()
                .map_err(|e| EngineError::Internal(e.to_string()))?;
            process.set_console_size(Some(size));
        }
        let req = Request::Exec {
            exec_id: exec_id.to_string(),
            process: Box::new(process),
            stdin: ex.config.attach_stdin,
            detach,
        };
        Ok(PreparedExec {
            exec_id: exec_id.to_string(),
            container_id: rec.id,
            req,
            detach,
            tty: ex.config.tty,
            detach_keys: ex.config.detach_keys.clone(),
        })
    }

    /// Runs a prepared exec in its container's shim. A failure marks the exec
    /// ended with 126, or 127 when the command is not found, as dockerd does.
    pub async fn exec_launch(
        self: &Arc<Self>,
        p: PreparedExec,
    ) -> Result<Option<BufReader<UnixStream>>> {
        let (resp, stream) = match self.shim(&p.container_id).open(&p.req).await {
            Ok(r) => r,
            Err(e) => {
                let msg = format!("OCI runtime exec failed: {e}");
                // dockerd's statuses for an exec that did not start: 127 when
                // the command is missing, 126 for anything else.
                let code = match e {
                    berth_runtime::RuntimeError::Shim {
                        kind: berth_runtime::proto::ErrorKind::NotFound,
                        ..
                    } => 127,
                    _ => 126,
                };
                if let Some(e) = self.execs.lock().expect("execs").get_mut(&p.exec_id) {
                    e.running = false;
                    e.exit_code = Some(code);
                }
                return Err(EngineError::BadRequest(msg));
            }
        };
        let cmd = {
            let mut execs = self.execs.lock().expect("execs");
            let e = execs.get_mut(&p.exec_id);
            e.map(|e| {
                e.running = true;
                e.pid = resp.pid.unwrap_or(0);
                e.config.cmd.join(" ")
            })
            .unwrap_or_default()
        };
        if let Ok(c) = self.find(&p.container_id) {
            self.emit_for(
                &c,
                &format!("exec_start: {cmd}"),
                &[("execID", p.exec_id.clone())],
            );
        }
        if p.detach {
            let me = self.clone();
            let id = p.exec_id.clone();
            tokio::spawn(async move { me.exec_finished(&id).await });
            return Ok(None);
        }
        Ok(Some(stream))
    }

    /// Collects the exit code of a finished exec.
    pub async fn exec_finished(&self, exec_id: &str) {
        let Ok(ex) = self.exec_get(exec_id) else {
            return;
        };
        let code = self
            .shim(&ex.container_id)
            .exec_wait(exec_id)
            .await
            .map(|s| s.exit_code)
            .unwrap_or(126);
        if let Some(e) = self.execs.lock().expect("execs").get_mut(exec_id) {
            e.running = false;
            e.exit_code = Some(code);
        }
        if let Ok(c) = self.find(&ex.container_id) {
            self.emit_for(
                &c,
                "exec_die",
                &[
                    ("execID", exec_id.to_string()),
                    ("exitCode", code.to_string()),
                ],
            );
        }
    }

    pub async fn exec_resize(&self, exec_id: &str, height: u16, width: u16) -> Result<()> {
        let ex = self.exec_get(exec_id)?;
        self.shim(&ex.container_id)
            .call(&Request::Resize {
                exec_id: Some(exec_id.to_string()),
                height,
                width,
            })
            .await?;
        Ok(())
    }

    pub fn exec_inspect(&self, exec_id: &str) -> Result<ExecInspect> {
        let e = self.exec_get(exec_id)?;
        let (entrypoint, arguments) = e
            .config
            .cmd
            .split_first()
            .map(|(a, b)| (a.clone(), b.to_vec()))
            .unwrap_or_default();
        Ok(ExecInspect {
            id: e.id,
            running: e.running,
            exit_code: e.exit_code,
            process_config: ExecProcessConfig {
                tty: e.config.tty,
                entrypoint,
                arguments,
                privileged: e.config.privileged,
                user: e.config.user.clone(),
            },
            open_stdin: e.config.attach_stdin,
            open_stderr: e.config.attach_stderr,
            open_stdout: e.config.attach_stdout,
            can_remove: false,
            container_id: e.container_id,
            detach_keys: e.config.detach_keys.clone(),
            pid: e.pid.into(),
        })
    }
}
