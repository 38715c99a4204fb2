//! Handing an idle container to berth-monitor, which takes less memory than the shim.

use super::*;

impl Shim {
    pub(super) fn slim_after(&self) -> Option<Duration> {
        match self.cfg.slim_after_ms {
            Some(0) => None,
            Some(ms) => Some(Duration::from_millis(ms)),
            None => Some(Duration::from_secs(3)),
        }
    }

    /// How long until `slim_down` is due, if it will be.
    pub(super) fn slim_due_in(&self) -> Option<Duration> {
        let since = self.dirty_since?;
        if self.slim_failed || self.init_pid.is_none() || self.init_exit.is_some() {
            return None;
        }
        Some(self.slim_after()?.saturating_sub(since.elapsed()))
    }

    /// Nothing in flight that a re-exec could not carry: no exec, no request
    /// half read, no output waiting for a client.
    pub(super) fn quiescent(&self) -> bool {
        self.exit.is_none()
            && self.execs.is_empty()
            && self.sources.values().all(|s| s.owner == Owner::Init)
            && self.clients.values().all(|c| {
                c.inbuf.is_empty()
                    && c.outbuf.is_empty()
                    && !c.close_after_flush
                    && matches!(c.state, ClientState::Waiting | ClientState::Attached { .. })
            })
    }

    /// Execs the monitor (or, without one, this binary again) with the
    /// container's stdio, the listening socket and the connected clients
    /// carried over as open descriptors: the container creation code,
    /// its pages and the heap it left stop counting against an
    /// idle container. Returns only on failure.
    pub(super) fn slim_down(&mut self) -> Res<()> {
        let shim = std::env::current_exe()?;
        let clients: Vec<HandedClient> = self
            .clients
            .values()
            .map(|c| {
                let (stdin, stdout, stderr) = match c.state {
                    ClientState::Attached {
                        stdin,
                        stdout,
                        stderr,
                    } => (stdin, stdout, stderr),
                    _ => (false, false, false),
                };
                HandedClient {
                    fd: c.sock.as_raw_fd(),
                    waiting: matches!(c.state, ClientState::Waiting),
                    stdin,
                    stdout,
                    stderr,
                    read_closed: c.read_closed,
                    outbuf: c.outbuf.clone(),
                }
            })
            .collect();
        let mut h = Handover {
            generation: self.generation + 1,
            shim: shim.to_string_lossy().into_owned(),
            listener: self.listener.as_raw_fd(),
            init_pid: self.init_pid.unwrap_or(0),
            init_stdin: self.init_stdin.as_ref().map(|f| f.as_raw_fd()),
            init_tty: self.init_tty,
            init_open_streams: self.init_open_streams,
            sources: self
                .sources
                .values()
                .map(|s| (s.fd.as_raw_fd(), s.stream))
                .collect(),
            clients,
            log_path: self.cfg.log_path.clone(),
            log_max_size: self.cfg.log_max_size,
            log_max_files: self.cfg.log_max_files,
            tty: self.cfg.tty,
            log_partial: self.log.take_partial(),
            seccomp: self.filter.clone(),
            finished_execs: self.finished_execs.iter().cloned().collect(),
        };
        let path = self.state_dir.join("handover");
        let tmp = self.state_dir.join("handover.tmp");
        if let Err(e) = fs::write(&tmp, h.encode()).and_then(|_| fs::rename(&tmp, &path)) {
            self.log.set_partial(std::mem::take(&mut h.log_partial));
            return Err(e.into());
        }
        let fds = h.fds();
        for &fd in &fds {
            set_cloexec(fd, false);
        }
        let (image, name) = match self.cfg.monitor.as_deref() {
            Some(m) if !m.is_empty() => (PathBuf::from(m), "berth-monitor"),
            _ => (PathBuf::from("/proc/self/exe"), "berth-shim"),
        };
        use std::os::unix::process::CommandExt;
        let err = std::process::Command::new(image)
            .arg0(name)
            .arg(&self.state_dir)
            .arg("--resume")
            .arg(h.generation.to_string())
            .exec();
        for &fd in &fds {
            set_cloexec(fd, true);
        }
        let _ = fs::remove_file(&path);
        self.log.set_partial(std::mem::take(&mut h.log_partial));
        Err(err.into())
    }
}
