//! berth-monitor: what a container's supervisor becomes while nothing needs
//! the full shim. An idle berth-shim execs this binary (same pid, so the
//! container stays its child) and hands it the container's stdio, its
//! listening socket and its connected clients (see `handover`). The monitor
//! does the steady-state work itself: the container's output into the
//! json-file log and out to attached clients, their input into the
//! container. Anything else (berthd connecting, the container exiting, a
//! stream ending) it hands back by exec'ing the full shim, which takes it from
//! there. Std and libc only, linked statically where the build allows: an
//! idle container costs this process's resident pages, not the shim's.

use berth_monitor::handover::{HandedClient, Handover};
use berth_monitor::log::JsonLog;
use berth_monitor::{set_cloexec, write_all_fd};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

/// A client that falls this far behind is dropped rather than stalling us.
const MAX_CLIENT_BACKLOG: usize = 8 << 20;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn read_fd(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: reading into a valid, writable slice.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

struct Monitor {
    state_dir: PathBuf,
    h: Handover,
    log: JsonLog,
    epoll: OwnedFd,
    sigfd: OwnedFd,
    /// The signal mask to restore before exec'ing the shim.
    old_mask: libc::sigset_t,
    /// Which clients are registered for writability.
    out_armed: Vec<RawFd>,
    /// Set after an exec of the shim failed: what would hand back is
    /// ignored until the retry.
    retry: bool,
}

impl Monitor {
    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events,
            u64: fd as u64,
        };
        // SAFETY: epoll_ctl with a valid event struct.
        cvt(unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), op, fd, &mut ev) }).map(|_| ())
    }

    fn client_events(c: &HandedClient) -> u32 {
        let mut ev = 0;
        if !c.read_closed {
            ev |= libc::EPOLLIN as u32;
        }
        if !c.outbuf.is_empty() {
            ev |= libc::EPOLLOUT as u32;
        }
        ev
    }

    fn open(state_dir: &Path) -> Result<Monitor, Box<dyn std::error::Error>> {
        let path = state_dir.join("handover");
        let h = Handover::decode(&std::fs::read_to_string(&path)?)?;
        let _ = std::fs::remove_file(&path);
        for fd in h.fds() {
            set_cloexec(fd, true);
        }
        let mut log = JsonLog::open(&h.log_path, h.log_max_size, h.log_max_files)?;
        log.set_partial(h.log_partial.clone());
        // SAFETY: plain syscalls on stack-allocated sigsets; the descriptors
        // returned are new and owned from here on.
        let (sigfd, epoll, old_mask) = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGCHLD);
            cvt(libc::sigprocmask(libc::SIG_BLOCK, &set, &mut old))?;
            let sfd = cvt(libc::signalfd(
                -1,
                &set,
                libc::SFD_CLOEXEC | libc::SFD_NONBLOCK,
            ))?;
            let ep = cvt(libc::epoll_create1(libc::EPOLL_CLOEXEC))?;
            (OwnedFd::from_raw_fd(sfd), OwnedFd::from_raw_fd(ep), old)
        };
        let m = Monitor {
            state_dir: state_dir.to_path_buf(),
            h,
            log,
            epoll,
            sigfd,
            old_mask,
            out_armed: Vec::new(),
            retry: false,
        };
        m.watch_triggers()?;
        let inp = libc::EPOLLIN as u32;
        for &(fd, _) in &m.h.sources {
            m.ctl(libc::EPOLL_CTL_ADD, fd, inp)?;
        }
        for c in &m.h.clients {
            m.ctl(libc::EPOLL_CTL_ADD, c.fd, Self::client_events(c))?;
        }
        let mut m = m;
        m.out_armed =
            m.h.clients
                .iter()
                .filter(|c| !c.outbuf.is_empty())
                .map(|c| c.fd)
                .collect();
        Ok(m)
    }

    /// The listener and the SIGCHLD descriptor: either firing means the shim.
    fn watch_triggers(&self) -> io::Result<()> {
        let inp = libc::EPOLLIN as u32;
        self.ctl(libc::EPOLL_CTL_ADD, self.h.listener, inp)?;
        self.ctl(libc::EPOLL_CTL_ADD, self.sigfd.as_raw_fd(), inp)
    }

    fn unwatch_triggers(&self) {
        let _ = self.ctl(libc::EPOLL_CTL_DEL, self.h.listener, 0);
        let _ = self.ctl(libc::EPOLL_CTL_DEL, self.sigfd.as_raw_fd(), 0);
    }

    /// The container exited while no image was watching (before the
    /// signalfd existed): left for the shim to reap.
    fn child_exited() -> bool {
        // SAFETY: waitid fills a zeroed siginfo; WNOWAIT leaves the child
        // for the shim to reap.
        unsafe {
            let mut si: libc::siginfo_t = std::mem::zeroed();
            let r = libc::waitid(
                libc::P_ALL,
                0,
                &mut si,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            );
            r == 0 && si.si_pid() != 0
        }
    }

    fn broadcast(&mut self, stream: usize, data: &[u8]) {
        self.log.write(stream, data);
        let tty = self.h.tty;
        self.h.clients.retain_mut(|c| {
            let wants = if c.waiting {
                false
            } else if stream == 0 {
                c.stdout
            } else {
                c.stderr
            };
            if wants {
                if !tty {
                    let kind = if stream == 0 { 1u8 } else { 2 };
                    let n = (data.len() as u32).to_be_bytes();
                    c.outbuf
                        .extend_from_slice(&[kind, 0, 0, 0, n[0], n[1], n[2], n[3]]);
                }
                c.outbuf.extend_from_slice(data);
            }
            let keep = c.outbuf.len() <= MAX_CLIENT_BACKLOG;
            if !keep {
                // SAFETY: closing a descriptor handed to us and dropped here.
                unsafe { libc::close(c.fd) };
            }
            keep
        });
    }

    /// Reads what a source has; true when it ended.
    fn on_source(&mut self, fd: RawFd, stream: usize, buf: &mut [u8]) -> bool {
        loop {
            match read_fd(fd, buf) {
                Ok(0) => return true,
                Ok(n) => {
                    let data = buf[..n].to_vec();
                    self.broadcast(stream, &data);
                }
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => return false,
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(_) => return true,
            }
        }
    }

    fn drop_client(&mut self, fd: RawFd) {
        if let Some(i) = self.h.clients.iter().position(|c| c.fd == fd) {
            let _ = self.ctl(libc::EPOLL_CTL_DEL, fd, 0);
            self.h.clients.remove(i);
            self.out_armed.retain(|&f| f != fd);
            // SAFETY: the descriptor was handed to us and is no longer listed.
            unsafe { libc::close(fd) };
        }
    }

    /// True when what happened needs the shim.
    fn on_client(&mut self, fd: RawFd, events: u32, buf: &mut [u8]) -> bool {
        let Some(i) = self.h.clients.iter().position(|c| c.fd == fd) else {
            return false;
        };
        let c = &self.h.clients[i];
        if c.read_closed {
            if events & (libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0 {
                self.drop_client(fd);
            }
            return false;
        }
        if events & (libc::EPOLLIN | libc::EPOLLHUP | libc::EPOLLERR) as u32 == 0 {
            return false;
        }
        let (waiting, stdin) = (c.waiting, c.stdin);
        loop {
            match read_fd(fd, buf) {
                // berthd went away: its waiter is not coming back.
                Ok(0) if waiting => {
                    self.drop_client(fd);
                    return false;
                }
                // An attached client's EOF may be the container's EOF
                // (`stdin_once`): the shim decides.
                Ok(0) => return true,
                Ok(n) => {
                    if stdin {
                        if let Some(to) = self.h.init_stdin {
                            write_all_fd(to, &buf[..n]);
                        }
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => return false,
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(_) => {
                    self.drop_client(fd);
                    return false;
                }
            }
        }
    }

    fn flush_clients(&mut self) {
        let mut dead = vec![];
        for c in self.h.clients.iter_mut().filter(|c| !c.outbuf.is_empty()) {
            while !c.outbuf.is_empty() {
                // SAFETY: sending from a valid slice; MSG_NOSIGNAL keeps a
                // hung-up client from killing us with SIGPIPE.
                let n = unsafe {
                    libc::send(
                        c.fd,
                        c.outbuf.as_ptr().cast(),
                        c.outbuf.len(),
                        libc::MSG_NOSIGNAL,
                    )
                };
                if n >= 0 {
                    c.outbuf.drain(..n as usize);
                    continue;
                }
                match io::Error::last_os_error().raw_os_error() {
                    Some(libc::EAGAIN) => break,
                    Some(libc::EINTR) => {}
                    _ => {
                        dead.push(c.fd);
                        break;
                    }
                }
            }
        }
        for fd in dead {
            self.drop_client(fd);
        }
        let mut rearm = vec![];
        for c in &self.h.clients {
            let armed = self.out_armed.contains(&c.fd);
            if armed == c.outbuf.is_empty() {
                rearm.push((c.fd, Self::client_events(c), !armed));
            }
        }
        for (fd, ev, now_armed) in rearm {
            if self.ctl(libc::EPOLL_CTL_MOD, fd, ev).is_ok() {
                if now_armed {
                    self.out_armed.push(fd);
                } else {
                    self.out_armed.retain(|&f| f != fd);
                }
            }
        }
    }

    /// Execs the full shim with everything handed over. Returns only on
    /// failure, with the monitor as it was.
    fn hand_back(&mut self) -> io::Error {
        self.h.generation += 1;
        self.h.log_partial = self.log.take_partial();
        let fail = |m: &mut Monitor, e: io::Error| {
            m.h.generation -= 1;
            m.log.set_partial(std::mem::take(&mut m.h.log_partial));
            e
        };
        let path = self.state_dir.join("handover");
        let tmp = self.state_dir.join("handover.tmp");
        if let Err(e) =
            std::fs::write(&tmp, self.h.encode()).and_then(|_| std::fs::rename(&tmp, &path))
        {
            return fail(self, e);
        }
        let fds = self.h.fds();
        for &fd in &fds {
            set_cloexec(fd, false);
        }
        // SAFETY: restoring the mask this process started with.
        unsafe { libc::sigprocmask(libc::SIG_SETMASK, &self.old_mask, std::ptr::null_mut()) };
        use std::os::unix::process::CommandExt;
        let err = std::process::Command::new(&self.h.shim)
            .arg0("berth-shim")
            .arg(&self.state_dir)
            .arg("--resume")
            .arg(self.h.generation.to_string())
            .exec();
        // SAFETY: as in `open`: SIGCHLD back to the signalfd.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGCHLD);
            libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        }
        for &fd in &fds {
            set_cloexec(fd, true);
        }
        let _ = std::fs::remove_file(&path);
        fail(self, err)
    }

    fn need_shim(&mut self) {
        if self.retry {
            return;
        }
        let e = self.hand_back();
        eprintln!("berth-monitor: exec {}: {e}; retrying in 1 s", self.h.shim);
        // Level-triggered: what asked for the shim would fire again at once.
        self.unwatch_triggers();
        self.retry = true;
    }

    fn run(&mut self) -> io::Result<()> {
        if Self::child_exited() {
            self.need_shim();
        }
        let mut buf = vec![0u8; 64 * 1024];
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 16];
        loop {
            let timeout = if self.retry { 1000 } else { -1 };
            // SAFETY: epoll_wait into a valid array of its stated length.
            let n = unsafe {
                libc::epoll_wait(
                    self.epoll.as_raw_fd(),
                    events.as_mut_ptr(),
                    events.len() as i32,
                    timeout,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Err(e);
            }
            if n == 0 && self.retry {
                self.retry = false;
                let _ = self.watch_triggers();
                self.need_shim();
                continue;
            }
            let mut need = false;
            for ev in &events[..n as usize] {
                let (fd, bits) = (ev.u64 as RawFd, ev.events);
                if fd == self.h.listener || fd == self.sigfd.as_raw_fd() {
                    need = true;
                } else if let Some(&(_, stream)) = self.h.sources.iter().find(|s| s.0 == fd) {
                    if self.on_source(fd, stream, &mut buf) {
                        // Until the shim takes it, an ended stream is not
                        // watched (it would report its end again and again).
                        let _ = self.ctl(libc::EPOLL_CTL_DEL, fd, 0);
                        need = true;
                    }
                } else if self.on_client(fd, bits, &mut buf) {
                    let _ = self.ctl(libc::EPOLL_CTL_DEL, fd, 0);
                    need = true;
                }
            }
            self.flush_clients();
            if need {
                self.need_shim();
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(state_dir) = args.get(1) else {
        eprintln!("usage: berth-monitor STATE_DIR --resume GENERATION");
        std::process::exit(2);
    };
    let mut m = match Monitor::open(Path::new(state_dir)) {
        Ok(m) => m,
        Err(e) => {
            // The container runs on without its supervisor: berthd finds the
            // shim gone and reports the container's exit as unknown.
            eprintln!("berth-monitor: taking over: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = m.run() {
        eprintln!("berth-monitor: {e}");
        std::process::exit(1);
    }
}
