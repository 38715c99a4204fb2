//! The container's and execs' output, their exits, and who is told.

use super::*;

impl Shim {
    pub(super) fn add_source(&mut self, fd: OwnedFd, owner: Owner, stream: usize) -> Res<()> {
        set_nonblock(fd.as_raw_fd());
        let t = self.token();
        self.poll
            .registry()
            .register(&mut SourceFd(&fd.as_raw_fd()), t, Interest::READABLE)?;
        self.sources.insert(t, Source { fd, owner, stream });
        Ok(())
    }

    pub(super) fn broadcast_init_output(&mut self, stream: usize, data: &[u8]) {
        self.log.write(stream, data);
        let tty = self.cfg.tty;
        let mut dead = vec![];
        for (t, c) in self.clients.iter_mut() {
            if let ClientState::Attached { stdout, stderr, .. } = c.state {
                if (stream == 0 && stdout) || (stream == 1 && stderr) {
                    queue_output(&mut c.outbuf, tty, stream, data);
                    if c.outbuf.len() > MAX_CLIENT_BACKLOG {
                        dead.push(*t);
                    }
                }
            }
        }
        for t in dead {
            self.drop_client(t);
        }
    }

    pub(super) fn exec_output(&mut self, id: &str, stream: usize, data: &[u8]) {
        let tty = self.execs.get(id).is_some_and(|e| e.tty.is_some());
        for c in self.clients.values_mut() {
            if matches!(&c.state, ClientState::ExecStream(x) if x == id) {
                queue_output(&mut c.outbuf, tty, stream, data);
            }
        }
    }

    pub(super) fn on_source(&mut self, t: Token) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let Some(src) = self.sources.get(&t) else {
                return;
            };
            let n = nix::unistd::read(src.fd.as_raw_fd(), &mut buf);
            let (owner, stream) = (src.owner.clone(), src.stream);
            match n {
                Ok(0) | Err(nix::errno::Errno::EIO) => {
                    self.close_source(t);
                    return;
                }
                Ok(n) => match owner {
                    Owner::Init => self.broadcast_init_output(stream, &buf[..n]),
                    Owner::Exec(id) => self.exec_output(&id, stream, &buf[..n]),
                },
                Err(nix::errno::Errno::EAGAIN) => return,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => {
                    self.close_source(t);
                    return;
                }
            }
        }
    }

    pub(super) fn close_source(&mut self, t: Token) {
        let Some(src) = self.sources.remove(&t) else {
            return;
        };
        let _ = self
            .poll
            .registry()
            .deregister(&mut SourceFd(&src.fd.as_raw_fd()));
        match src.owner {
            Owner::Init => {
                self.init_open_streams = self.init_open_streams.saturating_sub(1);
                if self.init_tty == Some(src.fd.as_raw_fd()) {
                    self.init_tty = None;
                }
            }
            Owner::Exec(id) => {
                if let Some(e) = self.execs.get_mut(&id) {
                    e.open_streams = e.open_streams.saturating_sub(1);
                    if e.tty == Some(src.fd.as_raw_fd()) {
                        e.tty = None;
                    }
                }
                self.maybe_finish_exec(&id);
            }
        }
    }

    pub(super) fn maybe_finish_exec(&mut self, id: &str) {
        let Some(e) = self.execs.get(id) else { return };
        let Some(code) = e.exit else { return };
        if e.open_streams > 0 {
            return;
        }
        // Done with: only its exit code is kept.
        self.execs.remove(id);
        if self.finished_execs.len() == KEEP_FINISHED_EXECS {
            self.finished_execs.pop_front();
        }
        self.finished_execs.push_back((id.to_string(), code));
        self.answer_exec_waiters(id, code);
    }

    pub(super) fn answer_exec_waiters(&mut self, id: &str, code: i32) {
        let st = ExitStatus {
            exit_code: code,
            ..Default::default()
        };
        let mut resp = Response::ok();
        resp.exit = Some(st);
        let line = response_line(&resp);
        for c in self.clients.values_mut() {
            match &c.state {
                ClientState::ExecStream(x) if x == id => c.close_after_flush = true,
                ClientState::ExecWaiting(x) if x == id => {
                    c.outbuf.extend_from_slice(&line);
                    c.close_after_flush = true;
                }
                _ => {}
            }
        }
    }

    pub(super) fn reap(&mut self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => self.on_exit(pid.as_raw(), code),
                Ok(WaitStatus::Signaled(pid, sig, _)) => {
                    self.on_exit(pid.as_raw(), 128 + sig as i32)
                }
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    }

    pub(super) fn on_exit(&mut self, pid: i32, code: i32) {
        if Some(pid) == self.init_pid {
            self.init_exit = Some(code);
            // The pid namespace is gone with its init; give the pipes a moment to drain.
            self.exit_deadline = Some(Instant::now() + Duration::from_secs(2));
            return;
        }
        let id = self
            .execs
            .iter()
            .find(|(_, e)| e.pid == Some(pid))
            .map(|(k, _)| k.clone());
        if let Some(id) = id {
            if let Some(e) = self.execs.get_mut(&id) {
                e.exit = Some(code);
                e.stdin = None;
            }
            self.maybe_finish_exec(&id);
        }
    }

    /// Called once the init has exited and its output is drained.
    pub(super) fn finish(&mut self) {
        let code = self.init_exit.unwrap_or(255);
        self.log.flush();
        let st = ExitStatus {
            exit_code: code,
            oom_killed: berth_runtime::cgroups::oom_kills(&self.cfg.cgroup_path) > 0,
            finished_at: log::rfc3339_nanos(std::time::SystemTime::now()),
        };
        if let Err(e) = write_exit_file(&self.state_dir, &st) {
            eprintln!("berth-shim: writing exit file: {e}");
        }
        let mut resp = Response::ok();
        resp.exit = Some(st.clone());
        let line = response_line(&resp);
        for c in self.clients.values_mut() {
            match c.state {
                ClientState::Waiting => {
                    c.outbuf.extend_from_slice(&line);
                    c.close_after_flush = true;
                }
                ClientState::Attached { .. } => c.close_after_flush = true,
                _ => {}
            }
        }
        self.exit = Some(st);
        self.init_stdin = None;
    }
}
