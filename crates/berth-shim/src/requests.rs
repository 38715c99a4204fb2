//! What each request of the shim protocol does.

use super::*;

impl Shim {
    pub(super) fn handle(&mut self, t: Token, req: Request) {
        match req {
            Request::Start => self.start(t),
            Request::Attach {
                stdin,
                stdout,
                stderr,
            } => {
                self.reply(t, Response::ok(), false);
                if let Some(c) = self.clients.get_mut(&t) {
                    c.state = ClientState::Attached {
                        stdin: stdin && self.cfg.open_stdin,
                        stdout,
                        stderr,
                    };
                    if self.exit.is_some() {
                        c.close_after_flush = true;
                    }
                }
            }
            Request::Kill { signal, all } => self.kill(t, signal, all),
            Request::Resize {
                exec_id,
                height,
                width,
            } => {
                let fd = match exec_id {
                    Some(id) => self.execs.get(&id).and_then(|e| e.tty),
                    None => self.init_tty,
                };
                if let Some(fd) = fd {
                    set_winsize(fd, height, width);
                }
                self.reply(t, Response::ok(), true);
            }
            Request::Wait => {
                if let Some(st) = &self.exit {
                    let mut resp = Response::ok();
                    resp.exit = Some(st.clone());
                    self.reply(t, resp, true);
                } else if let Some(c) = self.clients.get_mut(&t) {
                    c.state = ClientState::Waiting;
                }
            }
            Request::State => {
                let mut resp = Response::ok();
                resp.pid = self.init_pid;
                resp.status = Some(self.status().to_string());
                resp.exit = self.exit.clone();
                self.reply(t, resp, true);
            }
            Request::Pause => {
                let r = linux::freeze(&self.cfg.cgroup_path, true).map_err(|e| e.to_string());
                self.reply(t, r.map_or_else(Response::err, |_| Response::ok()), true);
            }
            Request::Resume => {
                let r = linux::freeze(&self.cfg.cgroup_path, false).map_err(|e| e.to_string());
                self.reply(t, r.map_or_else(Response::err, |_| Response::ok()), true);
            }
            Request::Exec {
                exec_id,
                process,
                stdin,
                detach,
            } => self.exec_request(t, exec_id, &process, stdin, detach),
            Request::ExecWait { exec_id } => self.exec_wait(t, exec_id),
        }
    }

    /// `Start`: the created container's init runs.
    fn start(&mut self, t: Token) {
        let r = match self.created.take() {
            Some(c) => {
                let pid = c.pid;
                c.start().map(|_| pid).map_err(|e| e.to_string())
            }
            None => Err("the container is not waiting to start".to_string()),
        };
        match r {
            Ok(pid) => {
                self.dirty_since = Some(Instant::now());
                self.init_pid = Some(pid);
                let _ = fs::write(
                    self.state_dir.join("init.pid"),
                    self.init_pid.unwrap_or(0).to_string(),
                );
                let mut resp = Response::ok();
                resp.pid = self.init_pid;
                self.reply(t, resp, true);
                // A process that exited before we got here was reaped already.
                self.reap();
            }
            Err(e) => self.reply(t, Response::err(e), true),
        }
    }

    /// `Kill`: a signal to the init, or to every process of the container.
    fn kill(&mut self, t: Token, signal: i32, all: bool) {
        let target = self.init_pid.or(self.created.as_ref().map(|c| c.pid));
        let r = match (Signal::try_from(signal), target) {
            (Ok(_), Some(pid)) => {
                linux::kill(pid, &self.cfg.cgroup_path, signal, all).map_err(|e| e.to_string())
            }
            (Ok(_), None) => Err("container not running".to_string()),
            (Err(e), _) => Err(e.to_string()),
        };
        let resp = match r {
            Ok(()) => Response::ok(),
            // Racing with the exit is not an error for the caller.
            Err(_) if self.init_exit.is_some() => Response::ok(),
            Err(e) => Response::err(e),
        };
        self.reply(t, resp, true);
    }

    /// `Exec`: a process joins the container; unless detached, this client
    /// becomes its stream.
    fn exec_request(
        &mut self,
        t: Token,
        exec_id: String,
        process: &oci::Process,
        stdin: bool,
        detach: bool,
    ) {
        match self.exec(&exec_id, process, stdin) {
            Ok(pid) => {
                let mut resp = Response::ok();
                resp.pid = Some(pid);
                self.reply(t, resp, detach);
                if let Some(c) = self.clients.get_mut(&t) {
                    if !detach {
                        c.state = ClientState::ExecStream(exec_id.clone());
                    }
                }
                self.reap();
                self.maybe_finish_exec(&exec_id);
            }
            Err(e) => {
                let resp = Response::err_kind(error_kind(e.as_ref()), e.to_string());
                self.reply(t, resp, true)
            }
        }
    }

    /// `ExecWait`: answered when the exec has ended (at once if it has).
    fn exec_wait(&mut self, t: Token, exec_id: String) {
        let done = self
            .finished_execs
            .iter()
            .find(|(id, _)| *id == exec_id)
            .map(|(_, code)| *code);
        if let Some(c) = self.clients.get_mut(&t) {
            c.state = ClientState::ExecWaiting(exec_id.clone());
        }
        match (done, self.execs.contains_key(&exec_id)) {
            (Some(code), _) => self.answer_exec_waiters(&exec_id, code),
            (None, true) => self.maybe_finish_exec(&exec_id),
            (None, false) => self.reply(t, Response::err("no such exec"), true),
        }
    }

    pub(super) fn exec(&mut self, id: &str, process: &oci::Process, stdin: bool) -> Res<i32> {
        let Some(init) = self.init_pid.filter(|_| self.init_exit.is_none()) else {
            return Err("container is not running".into());
        };
        self.dirty_since = Some(Instant::now());
        let mut p = linux::Process::from_spec(process)?;
        // An exec runs under the container's rlimits, as its init does.
        p.rlimits = self.spec_rlimits()?;
        let (child, stdin_w, outputs) = make_stdio(p.terminal, stdin)?;
        let entered = linux::enter(init, &self.cfg.cgroup_path, &p, self.filter.as_ref(), child)?;
        let (tty, stdin_w, outputs) = match entered.pty_master {
            Some(m) => {
                let (h, w) = process
                    .console_size()
                    .map_or((0, 0), |b| (b.height() as u16, b.width() as u16));
                let (raw, write_end, outs) = pty_stdio(m, h, w)?;
                (Some(raw), Some(write_end), outs)
            }
            None => (None, stdin_w, outputs),
        };
        self.execs.insert(
            id.to_string(),
            Exec {
                pid: Some(entered.pid),
                tty,
                stdin: if stdin { stdin_w } else { None },
                exit: None,
                open_streams: outputs.len(),
            },
        );
        for (fd, stream) in outputs {
            self.add_source(fd, Owner::Exec(id.to_string()), stream)?;
        }
        Ok(entered.pid)
    }

    pub(super) fn status(&self) -> &'static str {
        if self.exit.is_some() || self.init_exit.is_some() {
            "stopped"
        } else if self.init_pid.is_none() {
            "created"
        } else if fs::read_to_string(self.freezer_state())
            .map(|s| s.trim() == "FROZEN" || s.contains('1'))
            .unwrap_or(false)
        {
            "paused"
        } else {
            "running"
        }
    }

    pub(super) fn freezer_state(&self) -> PathBuf {
        let rel = self.cfg.cgroup_path.trim_start_matches('/');
        if berth_runtime::cgroups::is_unified() {
            Path::new("/sys/fs/cgroup").join(rel).join("cgroup.freeze")
        } else {
            Path::new("/sys/fs/cgroup/freezer")
                .join(rel)
                .join("freezer.state")
        }
    }

    pub(super) fn spec_rlimits(&mut self) -> Res<Vec<(u32, u64, u64)>> {
        if self.rlimits.is_none() {
            let path = Path::new(&self.cfg.bundle).join("config.json");
            let spec: oci::Spec = serde_json::from_slice(&fs::read(path)?)?;
            self.rlimits = Some(init_rlimits(&spec)?);
        }
        Ok(self.rlimits.clone().unwrap_or_default())
    }
}
