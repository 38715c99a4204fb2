//! berth-shim: one per container. Single-threaded: creates the container
//! (`linux/`), then loops on epoll, moving the container's stdio to the log
//! file and to attached clients, answering berthd's requests, and reaping. It
//! writes the exit status to `<state>/exit` before it exits, so nothing is lost
//! while berthd is down.

mod clients;
mod filter;
mod linux;
mod outputs;
mod requests;
mod slim;

use berth_monitor::handover::{HandedClient, Handover};
use berth_monitor::log;
use berth_monitor::{set_cloexec, write_all_fd};
use berth_runtime::oci;
use berth_runtime::proto::{self, ExitStatus, Request, Response, ShimConfig};
use mio::net::{UnixListener, UnixStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::fs;
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

const LISTENER: Token = Token(0);
const SIGCHLD_PIPE: Token = Token(1);
const FIRST_DYNAMIC: usize = 16;
/// A client that falls this far behind is dropped rather than stalling the shim.
const MAX_CLIENT_BACKLOG: usize = 8 << 20;

static SIG_PIPE_W: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_sigchld(_: libc::c_int) {
    let fd = SIG_PIPE_W.load(Ordering::Relaxed);
    // SAFETY: write(2) is async-signal-safe; the buffer is a valid static byte.
    unsafe {
        libc::write(fd, b"c".as_ptr().cast(), 1);
    }
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Why a process could not start, when the error says.
fn error_kind(e: &(dyn std::error::Error + 'static)) -> proto::ErrorKind {
    e.downcast_ref::<linux::RuntimeError>()
        .map(linux::RuntimeError::kind)
        .unwrap_or_default()
}

/// Whose process a stdio stream belongs to.
#[derive(Clone, PartialEq, Eq, Debug)]
enum Owner {
    Init,
    Exec(String),
}

struct Source {
    fd: OwnedFd,
    owner: Owner,
    /// 0 stdout, 1 stderr; a TTY master counts as stdout.
    stream: usize,
}

enum ClientState {
    Request,
    Attached {
        stdin: bool,
        stdout: bool,
        stderr: bool,
    },
    Waiting,
    ExecWaiting(String),
    ExecStream(String),
}

struct Client {
    sock: UnixStream,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    state: ClientState,
    close_after_flush: bool,
    read_closed: bool,
    /// What the socket is registered for: re-arming an edge-triggered
    /// registration that has a hangup pending reports it again at once.
    writable: bool,
}

struct Exec {
    pid: Option<i32>,
    tty: Option<RawFd>,
    stdin: Option<OwnedFd>,
    exit: Option<i32>,
    open_streams: usize,
}

struct Shim {
    /// The container's compiled seccomp program and flags; execs get it too.
    filter: Option<(Vec<u8>, u32)>,
    cfg: ShimConfig,
    state_dir: PathBuf,
    /// The created container, until `Start`.
    created: Option<linux::Created>,
    /// When the shim last did more than move bytes (None: not since its last
    /// re-exec): the clock for `slim_down`.
    dirty_since: Option<Instant>,
    slim_failed: bool,
    poll: Poll,
    listener: UnixListener,
    sig_r: OwnedFd,
    sources: HashMap<Token, Source>,
    clients: HashMap<Token, Client>,
    next_token: usize,
    init_pid: Option<i32>,
    /// Where input for the container's process goes: its stdin pipe or the TTY master.
    init_stdin: Option<OwnedFd>,
    init_tty: Option<RawFd>,
    init_open_streams: usize,
    init_exit: Option<i32>,
    exit: Option<ExitStatus>,
    execs: HashMap<String, Exec>,
    log: log::JsonLog,
    exit_deadline: Option<Instant>,
    /// Exit codes of finished execs, newest last, for an `ExecWait` that
    /// comes after the exec is gone (berthd asks once its stream ends).
    finished_execs: std::collections::VecDeque<(String, i32)>,
    /// How many times this shim has re-executed itself.
    generation: u32,
    /// The spec's rlimits, which execs run under too: read from the bundle
    /// once per image of this process.
    rlimits: Option<Vec<(u32, u64, u64)>>,
}

/// How many finished execs' exit codes a shim remembers.
const KEEP_FINISHED_EXECS: usize = 64;

fn set_nonblock(fd: RawFd) {
    // SAFETY: fcntl on a descriptor we own; flags come from the kernel.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

fn pipe() -> Res<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?)
}

fn set_winsize(fd: RawFd, h: u16, w: u16) {
    if h == 0 || w == 0 {
        return;
    }
    let ws = libc::winsize {
        ws_row: h,
        ws_col: w,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize struct that lives across the call.
    unsafe {
        libc::ioctl(fd, libc::TIOCSWINSZ, &ws);
    }
}

/// A process's output streams as we read them: (fd, 0 stdout / 1 stderr).
type Outputs = Vec<(OwnedFd, usize)>;

/// Pipes for a new process's stdio (or a pty it makes): the child's ends,
/// and ours — its stdin's writing end (when it takes input) and the
/// (fd, stream) we read its output from.
fn make_stdio(tty: bool, stdin: bool) -> Res<(linux::StdioIn, Option<OwnedFd>, Outputs)> {
    if tty {
        return Ok((linux::StdioIn::Terminal, None, Vec::new()));
    }
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (child_in, ours_in) = if stdin {
        let (r, w) = pipe()?;
        (r, Some(w))
    } else {
        (OwnedFd::from(fs::File::open("/dev/null")?), None)
    };
    Ok((
        linux::StdioIn::Pipes {
            stdin: child_in,
            stdout: out_w,
            stderr: err_w,
        },
        ours_in,
        vec![(out_r, 0), (err_r, 1)],
    ))
}

/// A pty master as a process's stdio on our side: written to as its input,
/// read as its output.
fn pty_stdio(master: OwnedFd, h: u16, w: u16) -> Res<(RawFd, OwnedFd, Outputs)> {
    set_winsize(master.as_raw_fd(), h, w);
    let dup = nix::unistd::dup(master.as_raw_fd())?;
    // SAFETY: dup just returned a fresh descriptor that we now own.
    let write_end = unsafe { OwnedFd::from_raw_fd(dup) };
    set_cloexec(dup, true);
    Ok((master.as_raw_fd(), write_end, vec![(master, 0)]))
}

/// Atomic, not durable: the exec root does not outlive a reboot, and the
/// page cache outlives a crash of berthd or of this shim.
/// Output for a client: raw with a TTY, else in Docker's 8-byte frames.
fn queue_output(outbuf: &mut Vec<u8>, tty: bool, stream: usize, data: &[u8]) {
    if !tty {
        let kind = if stream == 0 {
            proto::STDOUT
        } else {
            proto::STDERR
        };
        outbuf.extend_from_slice(&proto::frame_header(kind, data.len()));
    }
    outbuf.extend_from_slice(data);
}

fn write_exit_file(state_dir: &Path, st: &ExitStatus) -> io::Result<()> {
    let tmp = state_dir.join("exit.tmp");
    fs::write(&tmp, serde_json::to_vec(st).unwrap_or_default())?;
    fs::rename(&tmp, state_dir.join("exit"))
}

impl Shim {
    /// A shim with its event loop set up and no process known yet;
    /// `created`: the container this image created, not yet started.
    fn new(
        cfg: ShimConfig,
        state_dir: &Path,
        listener: std::os::unix::net::UnixListener,
        log: log::JsonLog,
        filter: Option<(Vec<u8>, u32)>,
        created: Option<linux::Created>,
    ) -> Res<Shim> {
        let (poll, listener, sig_r) = event_loop(listener)?;
        Ok(Shim {
            filter,
            init_open_streams: 0,
            init_tty: None,
            init_stdin: None,
            cfg,
            state_dir: state_dir.to_path_buf(),
            dirty_since: created.as_ref().map(|_| Instant::now()),
            created,
            slim_failed: false,
            poll,
            listener,
            sig_r,
            sources: HashMap::new(),
            clients: HashMap::new(),
            next_token: FIRST_DYNAMIC,
            init_pid: None,
            init_exit: None,
            exit: None,
            execs: HashMap::new(),
            log,
            exit_deadline: None,
            finished_execs: Default::default(),
            generation: 0,
            rlimits: None,
        })
    }

    fn run(&mut self) -> Res<()> {
        let mut events = Events::with_capacity(64);
        loop {
            let timeout = match self.exit_deadline {
                Some(_) => Some(Duration::from_millis(50)),
                // Re-checked at least every 100 ms once due, while busy.
                None => self
                    .slim_due_in()
                    .map(|d| d.max(Duration::from_millis(100))),
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e.into());
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
                    SIGCHLD_PIPE => {
                        let mut b = [0u8; 64];
                        while let Ok(n) = nix::unistd::read(self.sig_r.as_raw_fd(), &mut b) {
                            if n == 0 {
                                break;
                            }
                        }
                        self.reap();
                    }
                    t if self.sources.contains_key(&t) => self.on_source(t),
                    t => {
                        self.on_client(t, ev.is_readable());
                        // Hung up entirely: nothing can reach it any more.
                        if ev.is_write_closed() {
                            self.drop_client(t);
                        }
                    }
                }
            }
            // Output read above, and replies, sit in client buffers until flushed.
            let pending: Vec<Token> = self
                .clients
                .iter()
                .filter(|(_, c)| !c.outbuf.is_empty() || c.close_after_flush)
                .map(|(t, _)| *t)
                .collect();
            for t in pending {
                self.flush_client(t);
            }
            if self.exit.is_none() && self.init_exit.is_some() {
                let drained = self.init_open_streams == 0;
                let late = self.exit_deadline.is_some_and(|d| Instant::now() > d);
                if drained || late {
                    self.finish();
                    let toks: Vec<Token> = self.clients.keys().copied().collect();
                    for t in toks {
                        self.flush_client(t);
                    }
                    // Waiters have the exit status; tearing down the cgroups
                    // is off their path. berthd waits for this process
                    // before it starts the container again.
                    linux::delete(&self.cfg.cgroup_path);
                    self.exit_deadline = Some(Instant::now() + Duration::from_secs(5));
                }
            }
            if self.slim_due_in() == Some(Duration::ZERO) && self.quiescent() {
                if let Err(e) = self.slim_down() {
                    eprintln!("berth-shim: re-exec: {e}");
                    self.slim_failed = true;
                }
            }
            if self.exit.is_some() {
                let idle = !self
                    .clients
                    .values()
                    .any(|c| !c.outbuf.is_empty() || matches!(c.state, ClientState::Request));
                let late = self.exit_deadline.is_some_and(|d| Instant::now() > d);
                if idle || late {
                    let _ = fs::remove_file(&self.cfg.socket);
                    return Ok(());
                }
            }
        }
    }
}

fn response_line(r: &Response) -> Vec<u8> {
    let mut v = serde_json::to_vec(r).unwrap_or_default();
    v.push(b'\n');
    v
}

/// The container's rlimits, which its execs run under too.
fn init_rlimits(spec: &oci::Spec) -> Res<Vec<(u32, u64, u64)>> {
    match spec.process() {
        Some(p) => Ok(linux::Process::from_spec(p)?.rlimits),
        None => Ok(Vec::new()),
    }
}

/// The compiled program of the spec's seccomp profile (see filter.rs).
fn seccomp_program(cfg: &ShimConfig, spec: &oci::Spec) -> Res<Option<(Vec<u8>, u32)>> {
    let cache = if cfg.seccomp_cache.is_empty() {
        Path::new(&cfg.runtime_root).with_file_name("seccomp")
    } else {
        PathBuf::from(&cfg.seccomp_cache)
    };
    let profile = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
    Ok(filter::program(profile, &cache)?)
}

/// The SIGCHLD self-pipe and the poll set with the listener and that pipe.
fn event_loop(
    std_listener: std::os::unix::net::UnixListener,
) -> Res<(Poll, UnixListener, OwnedFd)> {
    let (sig_r, sig_w) = pipe()?;
    set_nonblock(sig_r.as_raw_fd());
    set_nonblock(sig_w.as_raw_fd());
    SIG_PIPE_W.store(sig_w.as_raw_fd(), Ordering::Relaxed);
    std::mem::forget(sig_w);
    let act = nix::sys::signal::SigAction::new(
        nix::sys::signal::SigHandler::Handler(on_sigchld),
        nix::sys::signal::SaFlags::SA_RESTART | nix::sys::signal::SaFlags::SA_NOCLDSTOP,
        nix::sys::signal::SigSet::empty(),
    );
    // SAFETY: the handler only calls write(2), which is async-signal-safe.
    unsafe { nix::sys::signal::sigaction(Signal::SIGCHLD, &act)? };
    let poll = Poll::new()?;
    let mut listener = UnixListener::from_std(std_listener);
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    poll.registry().register(
        &mut SourceFd(&sig_r.as_raw_fd()),
        SIGCHLD_PIPE,
        Interest::READABLE,
    )?;
    Ok((poll, listener, sig_r))
}

/// The shim again after `slim_down`'s exec: the same process, the same
/// container, a fresh image.
fn resume(state_dir: &Path) -> Res<Shim> {
    let cfg: ShimConfig = serde_json::from_slice(&fs::read(state_dir.join("shim.json"))?)?;
    let path = state_dir.join("handover");
    let h = Handover::decode(&fs::read_to_string(&path)?)?;
    let _ = fs::remove_file(&path);
    for fd in h.fds() {
        set_cloexec(fd, true);
    }
    // The previous image of this process handed these descriptors over,
    // open, each exactly once; each is owned from here on.
    let own = |fd: RawFd| {
        // SAFETY: see above.
        unsafe { OwnedFd::from_raw_fd(fd) }
    };
    let std_listener = std::os::unix::net::UnixListener::from(own(h.listener));
    let mut log = log::JsonLog::open(&cfg.log_path, cfg.log_max_size, cfg.log_max_files)?;
    log.set_partial(h.log_partial);
    let mut shim = Shim::new(cfg, state_dir, std_listener, log, h.seccomp, None)?;
    shim.init_open_streams = h.init_open_streams;
    shim.init_tty = h.init_tty;
    shim.init_stdin = h.init_stdin.map(own);
    shim.init_pid = Some(h.init_pid);
    shim.finished_execs = h.finished_execs.into_iter().collect();
    shim.generation = h.generation;
    // Handed back by the monitor: once idle again, this image goes back to it.
    if shim.cfg.monitor.is_some() {
        shim.dirty_since = Some(Instant::now());
    }
    for (fd, stream) in h.sources {
        shim.add_source(own(fd), Owner::Init, stream)?;
    }
    for c in h.clients {
        let std_sock = std::os::unix::net::UnixStream::from(own(c.fd));
        std_sock.set_nonblocking(true)?;
        let mut sock = UnixStream::from_std(std_sock);
        let t = shim.token();
        shim.poll
            .registry()
            .register(&mut sock, t, Interest::READABLE)?;
        let state = if c.waiting {
            ClientState::Waiting
        } else {
            ClientState::Attached {
                stdin: c.stdin,
                stdout: c.stdout,
                stderr: c.stderr,
            }
        };
        shim.clients.insert(
            t,
            Client {
                sock,
                inbuf: Vec::new(),
                outbuf: c.outbuf,
                state,
                close_after_flush: false,
                read_closed: c.read_closed,
                writable: false,
            },
        );
    }
    // The container may have ended while this image was loading.
    shim.reap();
    Ok(shim)
}

fn setup(state_dir: &Path) -> Res<Shim> {
    let cfg: ShimConfig = serde_json::from_slice(&fs::read(state_dir.join("shim.json"))?)?;
    let sock_path = PathBuf::from(&cfg.socket);
    let _ = fs::remove_file(&sock_path);
    let std_listener = std::os::unix::net::UnixListener::bind(&sock_path)?;
    std_listener.set_nonblocking(true)?;

    let spec: oci::Spec =
        serde_json::from_slice(&fs::read(Path::new(&cfg.bundle).join("config.json"))?)?;
    let filter = seccomp_program(&cfg, &spec)?;
    let (child, mut stdin_w, mut outputs) = make_stdio(cfg.tty, cfg.open_stdin)?;
    let mut created = linux::create(&spec, filter.clone(), child)?;
    let mut tty = None;
    if let Some(m) = created.pty_master.take() {
        let (raw, write_end, outs) = pty_stdio(m, cfg.height, cfg.width)?;
        tty = Some(raw);
        stdin_w = Some(write_end);
        outputs = outs;
    }
    let log = log::JsonLog::open(&cfg.log_path, cfg.log_max_size, cfg.log_max_files)?;
    let mut shim = Shim::new(cfg, state_dir, std_listener, log, filter, Some(created))?;
    shim.rlimits = Some(init_rlimits(&spec)?);
    shim.init_open_streams = outputs.len();
    shim.init_tty = tty;
    shim.init_stdin = stdin_w;
    for (fd, stream) in outputs {
        shim.add_source(fd, Owner::Init, stream)?;
    }
    Ok(shim)
}

fn main() {
    // Not dumpable, and so are the children it clones: an exec's process sits
    // in the container's pid namespace while it is still this binary, and a
    // process there must not reach it through /proc/<pid>/exe (runc's
    // CVE-2019-5736); execve makes the container's program dumpable again.
    // SAFETY: prctl with constant arguments.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
    let mut args = std::env::args().skip(1);
    let Some(state_dir) = args.next().map(PathBuf::from) else {
        eprintln!("usage: berth-shim STATE_DIR");
        std::process::exit(2);
    };
    if args.next().as_deref() == Some("--resume") {
        match resume(&state_dir) {
            Ok(mut shim) => {
                if let Err(e) = shim.run() {
                    eprintln!("berth-shim: {e}");
                    std::process::exit(1);
                }
            }
            Err(e) => {
                // The container runs on without its supervisor: berthd finds
                // the shim gone and reports the container's exit as unknown.
                eprintln!("berth-shim: resuming after re-exec: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    // Out of berthd's session: signals meant for the daemon never reach us.
    let _ = nix::unistd::setsid();
    // SAFETY: prctl with constant arguments.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
    let _ = fs::write(state_dir.join("shim.pid"), std::process::id().to_string());
    match setup(&state_dir) {
        Ok(mut shim) => {
            let told = writeln!(io::stdout(), "ready").and_then(|_| io::stdout().flush());
            if told.is_err() {
                // berthd went away before it heard: nobody will start this
                // container; dropping it takes its init and cgroup along.
                drop(shim);
                std::process::exit(1);
            }
            // berthd stops reading after "ready"; never die of SIGPIPE on stdout.
            if let Ok(null) = fs::OpenOptions::new().write(true).open("/dev/null") {
                // SAFETY: dup2 onto our own stdout.
                unsafe {
                    libc::dup2(null.as_raw_fd(), 1);
                }
            }
            // Container setup leaves most of the heap free; hand it back,
            // since this process now idles for as long as the container runs.
            // SAFETY: malloc_trim only releases free memory of glibc's allocator.
            unsafe {
                libc::malloc_trim(0);
            }
            if let Err(e) = shim.run() {
                eprintln!("berth-shim: {e}");
                std::process::exit(1);
            }
        }
        Err(e) => {
            // "error KIND MESSAGE": berthd picks the exit status by the kind.
            println!("error {} {e}", error_kind(e.as_ref()).as_str());
            let _ = io::stdout().flush();
            std::process::exit(1);
        }
    }
}
