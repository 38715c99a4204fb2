//! A fake of berth-shim for tests without root: `spawn` serves the shim
//! protocol in-process on the container's socket, records every request,
//! lets the test end a container's process (`exit`) and say what the
//! container's execs print and end with (`exec_outcome`). It serves from a
//! runtime of its own, so that its shims outlive an engine whose runtime is
//! shut down — as real shims outlive a berthd killed with SIGKILL.

use crate::shims::ShimLauncher;
use crate::{EngineError, Result};
use berth_runtime::proto::{ExitStatus, Request, Response, ShimConfig};
use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

/// What a fake shim was asked, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum ShimCall {
    Spawn,
    Start,
    Kill(i32),
    Pause,
    Resume,
    /// An exec of these arguments.
    Exec(Vec<String>),
    Other(String),
}

/// What the next execs in a container print (on stdout) and exit with; an
/// exit code of 127 is a command the shim cannot find.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecOutcome {
    pub code: i32,
    pub output: String,
}

struct Shim {
    xdir: PathBuf,
    pid: i32,
    started: bool,
    exit: watch::Sender<Option<ExitStatus>>,
    server: tokio::task::AbortHandle,
}

pub struct FakeShims {
    shims: Arc<Mutex<HashMap<String, Shim>>>,
    calls: Arc<Mutex<Vec<(String, ShimCall)>>>,
    next_pid: Arc<Mutex<i32>>,
    /// By container id.
    outcomes: Arc<Mutex<HashMap<String, ExecOutcome>>>,
    /// Exit codes of execs that ran, by exec id.
    exec_exits: Arc<Mutex<HashMap<String, i32>>>,
    rt: Option<tokio::runtime::Runtime>,
}

impl Drop for FakeShims {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl FakeShims {
    pub fn new() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the fake shims");
        FakeShims {
            shims: Default::default(),
            calls: Default::default(),
            next_pid: Default::default(),
            outcomes: Default::default(),
            exec_exits: Default::default(),
            rt: Some(rt),
        }
    }

    /// The calls made to the shims of container `id`.
    pub fn calls(&self, id: &str) -> Vec<ShimCall> {
        let calls = self.calls.lock().expect("calls");
        calls
            .iter()
            .filter(|(c, _)| c == id)
            .map(|(_, x)| x.clone())
            .collect()
    }

    /// Ends container `id`'s process with `code`, as its shim reports it.
    pub fn exit(&self, id: &str, code: i32) {
        let shims = self.shims.lock().expect("shims");
        let s = shims.get(id).expect("a shim for that container");
        end(s, code);
    }

    /// What execs in container `id` do from now on.
    pub fn exec_outcome(&self, id: &str, code: i32, output: &str) {
        self.outcomes.lock().expect("outcomes").insert(
            id.to_string(),
            ExecOutcome {
                code,
                output: output.to_string(),
            },
        );
    }

    fn new_pid(&self) -> i32 {
        let mut n = self.next_pid.lock().expect("pid");
        *n += 1;
        1000 + *n
    }

    /// The pid the container's current shim reported.
    pub fn pid(&self, id: &str) -> Option<i32> {
        self.shims.lock().expect("shims").get(id).map(|s| s.pid)
    }

    pub fn running(&self, id: &str) -> bool {
        let shims = self.shims.lock().expect("shims");
        shims
            .get(id)
            .is_some_and(|s| s.started && s.exit.borrow().is_none())
    }

    async fn serve_one(self: Arc<Self>, id: String, conn: UnixStream) -> std::io::Result<()> {
        let mut r = BufReader::new(conn);
        let mut line = String::new();
        r.read_line(&mut line).await?;
        let req: Request = serde_json::from_str(&line).map_err(std::io::Error::other)?;
        // Waits and state queries are berthd's bookkeeping, not calls a test
        // asserts on.
        let call = match &req {
            Request::Start => Some(ShimCall::Start),
            Request::Kill { signal, .. } => Some(ShimCall::Kill(*signal)),
            Request::Pause => Some(ShimCall::Pause),
            Request::Resume => Some(ShimCall::Resume),
            Request::Exec { process, .. } => {
                Some(ShimCall::Exec(process.args().clone().unwrap_or_default()))
            }
            Request::Wait | Request::State | Request::ExecWait { .. } => None,
            other => Some(ShimCall::Other(format!("{other:?}"))),
        };
        if let Some(call) = call {
            self.calls.lock().expect("calls").push((id.clone(), call));
        }
        let mut exit_rx = match self.shims.lock().expect("shims").get(&id) {
            Some(s) => s.exit.subscribe(),
            None => return Ok(()),
        };
        let resp = match req {
            Request::Start => {
                let mut shims = self.shims.lock().expect("shims");
                let s = shims.get_mut(&id).expect("registered");
                s.started = true;
                Response {
                    pid: Some(s.pid),
                    ..Response::ok()
                }
            }
            Request::State => {
                let done = exit_rx.borrow().is_some();
                Response {
                    status: Some(if done { "stopped" } else { "running" }.into()),
                    ..Response::ok()
                }
            }
            Request::Kill { signal, .. } => {
                if matches!(signal, libc::SIGKILL | libc::SIGTERM) {
                    if let Some(s) = self.shims.lock().expect("shims").get(&id) {
                        end(s, 128 + signal);
                    }
                }
                Response::ok()
            }
            Request::Wait => {
                let exit = exit_rx
                    .wait_for(Option::is_some)
                    .await
                    .map(|e| e.clone())
                    .ok()
                    .flatten();
                Response {
                    exit,
                    ..Response::ok()
                }
            }
            Request::Attach { .. } => {
                // No output; the stream ends with the process.
                reply(&mut r, Response::ok()).await?;
                let _ = exit_rx.wait_for(Option::is_some).await;
                return Ok(());
            }
            Request::Pause | Request::Resume | Request::Resize { .. } => Response::ok(),
            Request::Exec {
                exec_id, detach, ..
            } => return self.exec(&id, exec_id, detach, &mut r).await,
            Request::ExecWait { exec_id } => self.exec_exit(&exec_id),
        };
        reply(&mut r, resp).await
    }
    /// An exec: it starts at once; unless detached, its output follows the
    /// answer on the same connection.
    async fn exec(
        &self,
        id: &str,
        exec_id: String,
        detach: bool,
        r: &mut BufReader<UnixStream>,
    ) -> std::io::Result<()> {
        let out = self
            .outcomes
            .lock()
            .expect("outcomes")
            .get(id)
            .cloned()
            .unwrap_or_default();
        if out.code == 127 {
            let missing = Response {
                kind: Some(berth_runtime::proto::ErrorKind::NotFound),
                ..Response::err("exec: executable file not found in $PATH")
            };
            return reply(r, missing).await;
        }
        self.exec_exits
            .lock()
            .expect("exec exits")
            .insert(exec_id, out.code);
        let resp = Response {
            pid: Some(self.new_pid()),
            ..Response::ok()
        };
        reply(r, resp).await?;
        if detach {
            return Ok(());
        }
        // The output as Docker frames it, then the stream ends.
        let data = out.output.as_bytes();
        let mut framed = berth_api::stream::frame_header(1, data.len()).to_vec();
        framed.extend_from_slice(data);
        r.get_mut().write_all(&framed).await
    }

    fn exec_exit(&self, exec_id: &str) -> Response {
        let code = self
            .exec_exits
            .lock()
            .expect("exec exits")
            .get(exec_id)
            .copied();
        match code {
            Some(exit_code) => Response {
                exit: Some(ExitStatus {
                    exit_code,
                    oom_killed: false,
                    finished_at: chrono::Utc::now().to_rfc3339(),
                }),
                ..Response::ok()
            },
            None => Response::err(format!("no exec {exec_id}")),
        }
    }
}

fn end(s: &Shim, code: i32) {
    let exit = ExitStatus {
        exit_code: code,
        oom_killed: false,
        finished_at: chrono::Utc::now().to_rfc3339(),
    };
    // As the real shim: the status is on disk before anyone is told.
    if let Ok(b) = serde_json::to_vec(&exit) {
        let _ = std::fs::write(s.xdir.join("exit"), b);
    }
    s.exit.send_replace(Some(exit));
}

async fn reply(r: &mut BufReader<UnixStream>, resp: Response) -> std::io::Result<()> {
    let mut b = serde_json::to_vec(&resp).map_err(std::io::Error::other)?;
    b.push(b'\n');
    r.get_mut().write_all(&b).await
}

impl ShimLauncher for Arc<FakeShims> {
    fn spawn<'a>(
        &'a self,
        xdir: &'a Path,
    ) -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>> {
        Box::pin(async move {
            let cfg: ShimConfig = serde_json::from_slice(&std::fs::read(xdir.join("shim.json"))?)
                .map_err(|e| EngineError::Internal(e.to_string()))?;
            let _ = std::fs::remove_file(&cfg.socket);
            let me = self.clone();
            let id = cfg.id.clone();
            let socket = cfg.socket.clone();
            let (bound_tx, bound) = tokio::sync::oneshot::channel();
            let rt = self.rt.as_ref().expect("running").handle();
            let server = rt
                .spawn(async move {
                    let listener = match UnixListener::bind(&socket) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = bound_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = bound_tx.send(Ok(()));
                    while let Ok((conn, _)) = listener.accept().await {
                        tokio::spawn(me.clone().serve_one(id.clone(), conn));
                    }
                })
                .abort_handle();
            bound
                .await
                .map_err(|e| EngineError::Internal(e.to_string()))??;
            let pid = self.new_pid();
            let (exit, _) = watch::channel(None);
            let old = self.shims.lock().expect("shims").insert(
                cfg.id.clone(),
                Shim {
                    xdir: xdir.to_path_buf(),
                    pid,
                    started: false,
                    exit,
                    server,
                },
            );
            if let Some(old) = old {
                old.server.abort();
            }
            self.calls
                .lock()
                .expect("calls")
                .push((cfg.id, ShimCall::Spawn));
            Ok(())
        })
    }
}
