//! Creating and entering containers: berth's own OCI runtime path, for the
//! subset of the runtime spec that `berth_runtime::spec` writes.
//!
//! It replaced libcontainer for start-up time: libcontainer's create took
//! ~7.8 ms of a ~22 ms `run`, most of it in ~3,500 system calls of hardened
//! procfs lookups (each mount re-verifies /proc and /proc/thread-self). This
//! path makes ~150: the shim is single-threaded, so a plain clone3 (fork-like,
//! no new stack) is safe, and mount targets are resolved once each, inside the
//! rootfs, with openat2(RESOLVE_IN_ROOT) — the protection the hardening is for
//! (an image's symlinks must not send a mount outside its rootfs).
//!
//! Order in the container's init (as runc's): join the cgroups, unshare the
//! cgroup namespace, hostname, mounts under the new root, devices, console,
//! pivot_root, sysctls, masked and read-only paths, rlimits; check that the
//! command exists; report ready and wait for `Start`; then signal
//! dispositions, capabilities, user and seccomp (process.rs), and exec.

mod cgroup;
mod mounts;
mod process;
mod sys;

pub use cgroup::{delete, freeze, kill};
pub use process::Process;

use berth_monitor::set_cloexec;
use berth_runtime::cgroups::DeviceRule;
use berth_runtime::oci::{
    Linux, LinuxDeviceType, LinuxNamespaceType, LinuxResources, LinuxThrottleDevice, Mount, Spec,
};
pub use berth_runtime::proto::ErrorKind;
use cgroup::*;
use mounts::*;
use process::*;
use std::ffi::{CStr, CString};
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use sys::*;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{0}")]
    Spec(String),
    #[error("{what}: {err}")]
    Os { what: String, err: io::Error },
    /// What the container's process reported before it could start.
    #[error("{msg}")]
    Child { kind: ErrorKind, msg: String },
}

impl RuntimeError {
    pub(crate) fn child(msg: impl Into<String>) -> Self {
        RuntimeError::Child {
            kind: ErrorKind::Other,
            msg: msg.into(),
        }
    }

    /// Why the process could not start, for berthd to pick its exit status.
    pub fn kind(&self) -> ErrorKind {
        match self {
            RuntimeError::Child { kind, .. } => *kind,
            _ => ErrorKind::Other,
        }
    }
}

type Res<T> = Result<T, RuntimeError>;

fn os(what: impl Into<String>) -> impl FnOnce(io::Error) -> RuntimeError {
    let what = what.into();
    move |err| RuntimeError::Os { what, err }
}

fn last_err(what: &str) -> RuntimeError {
    RuntimeError::Os {
        what: what.to_string(),
        err: io::Error::last_os_error(),
    }
}

fn cstr(s: &str) -> Res<CString> {
    CString::new(s).map_err(|_| RuntimeError::Spec(format!("NUL byte in {s:?}")))
}

fn write_file(p: &Path, v: &str) -> Res<()> {
    fs::write(p, v).map_err(os(format!("writing {}", p.display())))
}

/// The descriptors a new process's stdio comes from.
pub enum StdioIn {
    Pipes {
        stdin: OwnedFd,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    /// A pty from the container's devpts, whose master comes back.
    Terminal,
}

/// A created container: its init waits for `start`. Dropped unstarted (the
/// shim failing before it could report ready, or going away with berthd's
/// pipe), it takes its init and its cgroup with it.
pub struct Created {
    pub pid: i32,
    pub pty_master: Option<OwnedFd>,
    start: OwnedFd,
    cgroup_path: String,
    started: bool,
}

impl Drop for Created {
    fn drop(&mut self) {
        if self.started {
            return;
        }
        // SAFETY: killing and reaping our own child, which waits for start.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, std::ptr::null_mut(), 0);
        }
        delete(&self.cgroup_path);
    }
}

impl Created {
    /// Lets the init run its command.
    pub fn start(mut self) -> Res<()> {
        // SAFETY: a one-byte write to our end of the start pipe.
        let n = unsafe { libc::write(self.start.as_raw_fd(), b"s".as_ptr().cast(), 1) };
        self.started = n == 1;
        if n != 1 {
            return Err(last_err("starting the container"));
        }
        Ok(())
    }
}

/// What the parent learns from a child setting itself up.
fn await_child(sock: &OwnedFd, pid: i32) -> Res<Option<OwnedFd>> {
    let mut master = None;
    loop {
        let (msg, fd) = recv_msg(sock.as_raw_fd())?;
        if msg == b"pty" {
            master = fd;
        } else if msg == b"ok" {
            return Ok(master);
        } else {
            // SAFETY: reaping our own child, which has exited or is exiting.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
            // "err KIND MESSAGE", from child_fail.
            let text = String::from_utf8_lossy(msg.strip_prefix(b"err ").unwrap_or(&msg));
            let (kind, text) = text.split_once(' ').unwrap_or((&text, ""));
            return Err(RuntimeError::Child {
                kind: ErrorKind::parse(kind),
                msg: if text.is_empty() {
                    "the container's process exited during setup".into()
                } else {
                    text.to_string()
                },
            });
        }
    }
}

/// What the child needs, prepared by the parent before the clone.
struct InitPlan {
    rootfs: CString,
    readonly_root: bool,
    hostname: Option<String>,
    mounts: Vec<MountOp>,
    hierarchies: Vec<Hierarchy>,
    unified: bool,
    cgroup_procs: Vec<PathBuf>,
    new_cgroupns: bool,
    /// A network namespace of its own (not one berthd made).
    new_netns: bool,
    join: Vec<(String, i32)>,
    sysctls: Vec<(String, String)>,
    masked: Vec<String>,
    /// `linux.devices`: (path, S_IF* | mode, dev, uid, gid).
    devices: Vec<(String, u32, u64, u32, u32)>,
    readonly: Vec<String>,
    process: Process,
    seccomp: Option<(Vec<u8>, u32)>,
    cap_last: u32,
    stdio: StdioIn,
}

fn ns_flag(kind: LinuxNamespaceType) -> Option<i32> {
    use LinuxNamespaceType as T;
    Some(match kind {
        T::Pid => libc::CLONE_NEWPID,
        T::Network => libc::CLONE_NEWNET,
        T::Mount => libc::CLONE_NEWNS,
        T::Ipc => libc::CLONE_NEWIPC,
        T::Uts => libc::CLONE_NEWUTS,
        T::Cgroup => libc::CLONE_NEWCGROUP,
        T::User => libc::CLONE_NEWUSER,
        T::Time => return None,
    })
}

fn cap_last() -> u32 {
    fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// Creates the container the bundle's config.json describes; its init is
/// left waiting for `Created::start`.
pub fn create(spec: &Spec, seccomp: Option<(Vec<u8>, u32)>, stdio: StdioIn) -> Res<Created> {
    let none = Linux::default();
    let linux = spec.linux().as_ref().unwrap_or(&none);
    let cgroup_path = linux
        .cgroups_path()
        .as_ref()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let unified = berth_runtime::cgroups::is_unified();
    let hierarchies = if unified {
        Vec::new()
    } else {
        v1_hierarchies(&fs::read_to_string("/proc/self/mountinfo").map_err(os("mountinfo"))?)
    };
    let dirs = cgroup_dirs(&cgroup_path, unified, &hierarchies);
    let mut flags = 0u64;
    let mut join = Vec::new();
    let mut new_cgroupns = false;
    for ns in linux.namespaces().iter().flatten() {
        let kind = ns.typ();
        let flag =
            ns_flag(kind).ok_or_else(|| RuntimeError::Spec(format!("namespace {kind:?}")))?;
        match ns.path() {
            Some(p) => join.push((p.to_string_lossy().into_owned(), flag)),
            None if flag == libc::CLONE_NEWCGROUP => new_cgroupns = true,
            None => flags |= flag as u64,
        }
    }
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| RuntimeError::Spec("no root".into()))?;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| RuntimeError::Spec("no process".into()))?;
    let plan = InitPlan {
        rootfs: cstr(&root.path().to_string_lossy())?,
        readonly_root: root.readonly().unwrap_or(false),
        hostname: spec.hostname().clone(),
        mounts: spec.mounts().iter().flatten().map(mount_op).collect(),
        hierarchies,
        unified,
        cgroup_procs: dirs.iter().map(|d| d.join("cgroup.procs")).collect(),
        new_cgroupns,
        new_netns: flags & libc::CLONE_NEWNET as u64 != 0,
        join,
        sysctls: linux
            .sysctl()
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        masked: linux.masked_paths().clone().unwrap_or_default(),
        devices: linux
            .devices()
            .iter()
            .flatten()
            .map(|d| {
                let kind = match d.typ() {
                    LinuxDeviceType::B => libc::S_IFBLK,
                    _ => libc::S_IFCHR,
                };
                (
                    d.path().to_string_lossy().into_owned(),
                    kind | (d.file_mode().unwrap_or(0) & 0o7777),
                    libc::makedev(d.major() as u32, d.minor() as u32),
                    d.uid().unwrap_or(0),
                    d.gid().unwrap_or(0),
                )
            })
            .collect(),
        readonly: linux.readonly_paths().clone().unwrap_or_default(),
        process: Process::from_spec(process)?,
        seccomp,
        cap_last: cap_last(),
        stdio,
    };
    make_cgroup(linux.resources(), &cgroup_path, &dirs, unified)?;
    let made = spawn_init(flags, plan, &cgroup_path);
    if made.is_err() {
        berth_runtime::cgroups::destroy(&cgroup_path);
    }
    made
}

fn spawn_init(flags: u64, plan: InitPlan, cgroup_path: &str) -> Res<Created> {
    let (parent_sock, child_sock) = seqpacket_pair()?;
    let (start_r, start_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| RuntimeError::Os {
            what: "pipe".into(),
            err: e.into(),
        })?;
    let pid = clone3(flags)?;
    if pid == 0 {
        drop(parent_sock);
        drop(start_w);
        let sock = child_sock.as_raw_fd();
        let err = match init_child(&plan, sock, start_r.as_raw_fd()) {
            Ok(never) => match never {},
            Err(e) => e,
        };
        child_fail(sock, &err);
    }
    drop(child_sock);
    drop(start_r);
    // The child has its copies of the stdio ends in `plan`; ours close here.
    drop(plan);
    let pty_master = await_child(&parent_sock, pid)?;
    Ok(Created {
        pid,
        pty_master,
        start: start_w,
        cgroup_path: cgroup_path.to_string(),
        started: false,
    })
}

/// Reports a setup failure to the parent and ends the child.
fn child_fail(sock: RawFd, err: &RuntimeError) -> ! {
    send_msg(
        sock,
        format!("err {} {err}", err.kind().as_str()).as_bytes(),
        None,
    );
    // SAFETY: leaving the child without running the shim's destructors.
    unsafe { libc::_exit(1) }
}

fn check(r: libc::c_int, what: &str) -> Res<()> {
    if r < 0 {
        Err(last_err(what))
    } else {
        Ok(())
    }
}

/// The container's cgroups and namespaces, its session and hostname.
fn join_sandbox(plan: &InitPlan) -> Res<()> {
    // SAFETY: umask has no failure mode; device nodes get exactly 0666.
    unsafe { libc::umask(0) };
    join_cgroups(&plan.cgroup_procs)?;
    if plan.new_cgroupns {
        check(
            // SAFETY: a plain syscall on descriptors and values we own.
            unsafe { libc::unshare(libc::CLONE_NEWCGROUP) },
            "unshare cgroup",
        )?;
    }
    join_namespaces(&plan.join)?;
    if plan.new_netns {
        loopback_up()?;
    }
    // SAFETY: setsid has no memory-safety preconditions.
    unsafe { libc::setsid() };
    if let Some(h) = &plan.hostname {
        check(
            // SAFETY: sethostname with a pointer and length of a live string.
            unsafe { libc::sethostname(h.as_ptr().cast(), h.len()) },
            "setting the hostname",
        )?;
    }
    Ok(())
}

/// The rootfs bound on itself with every mount and device inside it, and
/// the console when there is one.
fn fill_root(plan: &InitPlan, sock: RawFd) -> Res<(OwnedFd, Option<OwnedFd>)> {
    // Nothing mounted in here travels back to the host.
    sys_mount(
        None,
        c"/",
        None,
        libc::MS_SLAVE | libc::MS_REC,
        None,
        "making / a slave",
    )?;
    sys_mount(
        Some(&plan.rootfs),
        &plan.rootfs,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
        "binding the rootfs",
    )?;
    // SAFETY: open(2) of the rootfs path.
    let rootfd = unsafe {
        libc::open(
            plan.rootfs.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    check(rootfd, "opening the rootfs")?;
    // SAFETY: a new descriptor, ours.
    let root = unsafe { OwnedFd::from_raw_fd(rootfd) };
    let mut dev_done = false;
    for m in &plan.mounts {
        mount_in_root(root.as_raw_fd(), m, plan)?;
        if m.destination == "/dev" && !dev_done {
            make_devices(root.as_raw_fd(), &plan.devices)?;
            dev_done = true;
        }
    }
    let slave = if plan.process.terminal {
        Some(open_console(
            Some(root.as_raw_fd()),
            sock,
            true,
            plan.process.uid,
        )?)
    } else {
        None
    };
    Ok((root, slave))
}

/// pivot_root into the rootfs; the old root is detached.
fn pivot_into(root: OwnedFd) -> Res<()> {
    // SAFETY: the pivot_root(".", ".") sequence on the rootfs we hold.
    unsafe {
        check(libc::fchdir(root.as_raw_fd()), "entering the rootfs")?;
        check(
            libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) as libc::c_int,
            "pivot_root",
        )?;
    }
    sys_mount(
        None,
        c".",
        None,
        libc::MS_SLAVE | libc::MS_REC,
        None,
        "old root",
    )?;
    // SAFETY: detaching the old root, stacked on the new one by pivot_root.
    unsafe {
        check(
            libc::umount2(c".".as_ptr(), libc::MNT_DETACH),
            "detaching the old root",
        )?;
        check(libc::chdir(c"/".as_ptr()), "chdir /")?;
    }
    Ok(())
}

/// Sysctls, masked and read-only paths, a read-only rootfs.
fn harden(plan: &InitPlan) -> Res<()> {
    for (k, v) in &plan.sysctls {
        write_file(&Path::new("/proc/sys").join(k.replace('.', "/")), v)?;
    }
    mask_paths(&plan.masked, &plan.readonly)?;
    if plan.readonly_root {
        let flags = mounted_flags(c"/") | libc::MS_RDONLY;
        sys_mount(
            None,
            c"/",
            None,
            libc::MS_BIND | libc::MS_REMOUNT | flags,
            None,
            "making the rootfs read-only",
        )?;
    }
    Ok(())
}

/// The container's init, in its new namespaces: the steps of the module
/// comment, in order, then it waits for `Start` and becomes the process.
fn init_child(plan: &InitPlan, sock: RawFd, start: RawFd) -> Res<std::convert::Infallible> {
    join_sandbox(plan)?;
    let (root, slave) = fill_root(plan, sock)?;
    pivot_into(root)?;
    harden(plan)?;
    set_rlimits(&plan.process.rlimits)?;
    write_oom_score(plan.process.oom_score_adj);
    dup_stdio(&plan.stdio, slave.as_ref())?;
    drop(slave);
    enter_cwd(&plan.process)?;
    let path = resolve_command(&plan.process)?;
    send_msg(sock, b"ok", None);
    // SAFETY: closing our end of the sync socket; the parent holds its own.
    unsafe { libc::close(sock) };
    let mut b = [0u8; 1];
    // SAFETY: a blocking one-byte read from the start pipe.
    let n = unsafe { libc::read(start, b.as_mut_ptr().cast(), 1) };
    if n != 1 {
        // The shim went away without starting us.
        // SAFETY: exiting the never-started init.
        unsafe { libc::_exit(1) };
    }
    reset_signals();
    become_process(&plan.process, plan.seccomp.as_ref(), plan.cap_last)?;
    let err = exec_process(&plan.process, &path).unwrap_err();
    eprintln!("berth: {err}");
    // SAFETY: the exec failed after start; 127 as a shell would.
    unsafe { libc::_exit(127) }
}

/// A process started inside a running container (`docker exec`).
pub struct Entered {
    pub pid: i32,
    pub pty_master: Option<OwnedFd>,
}

/// The namespaces of `pid` that differ from ours, as open descriptors.
fn namespaces_of(pid: i32) -> Res<Vec<(OwnedFd, i32)>> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    // The cgroup namespace first (while /sys/fs/cgroup is still the host's
    // for the cgroup join before it), the mount namespace before the rest.
    for (name, flag) in [
        ("cgroup", libc::CLONE_NEWCGROUP),
        ("ipc", libc::CLONE_NEWIPC),
        ("uts", libc::CLONE_NEWUTS),
        ("net", libc::CLONE_NEWNET),
        ("pid", libc::CLONE_NEWPID),
        ("mnt", libc::CLONE_NEWNS),
    ] {
        let theirs = format!("/proc/{pid}/ns/{name}");
        let (Ok(a), Ok(b)) = (
            fs::metadata(&theirs),
            fs::metadata(format!("/proc/self/ns/{name}")),
        ) else {
            continue;
        };
        if a.ino() == b.ino() && a.dev() == b.dev() {
            continue;
        }
        let f = fs::File::open(&theirs).map_err(os(format!("opening {theirs}")))?;
        out.push((OwnedFd::from(f), flag));
    }
    Ok(out)
}

/// Starts `p` inside the container whose init is `init_pid`.
pub fn enter(
    init_pid: i32,
    cgroup_path: &str,
    p: &Process,
    seccomp: Option<&(Vec<u8>, u32)>,
    stdio: StdioIn,
) -> Res<Entered> {
    let unified = berth_runtime::cgroups::is_unified();
    let hierarchies = if unified {
        Vec::new()
    } else {
        v1_hierarchies(&fs::read_to_string("/proc/self/mountinfo").map_err(os("mountinfo"))?)
    };
    let procs: Vec<PathBuf> = cgroup_dirs(cgroup_path, unified, &hierarchies)
        .into_iter()
        .map(|d| d.join("cgroup.procs"))
        .collect();
    let mut ns = namespaces_of(init_pid)?;
    // The pid namespace is entered by the child being cloned into it: this
    // process points its children there for the clone, then back.
    let pid_ns = ns
        .iter()
        .position(|(_, f)| *f == libc::CLONE_NEWPID)
        .map(|i| ns.remove(i).0);
    let own_pid_ns =
        fs::File::open("/proc/self/ns/pid").map_err(os("opening our pid namespace"))?;
    let (parent_sock, child_sock) = seqpacket_pair()?;
    if let Some(fd) = &pid_ns {
        check(
            // SAFETY: a plain syscall on descriptors and values we own.
            unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWPID) },
            "entering the pid namespace",
        )?;
    }
    let pid = clone3(0);
    if pid_ns.is_some() {
        // SAFETY: back to our own namespace for later children.
        unsafe { libc::setns(own_pid_ns.as_raw_fd(), libc::CLONE_NEWPID) };
    }
    let pid = pid?;
    if pid == 0 {
        drop(parent_sock);
        let sock = child_sock.as_raw_fd();
        let err = match exec_child(&procs, &ns, p, seccomp, &stdio, sock) {
            Ok(never) => match never {},
            Err(e) => e,
        };
        child_fail(sock, &err);
    }
    drop(child_sock);
    let pty_master = await_child(&parent_sock, pid)?;
    Ok(Entered { pid, pty_master })
}

fn exec_child(
    procs: &[PathBuf],
    ns: &[(OwnedFd, i32)],
    p: &Process,
    seccomp: Option<&(Vec<u8>, u32)>,
    stdio: &StdioIn,
    sock: RawFd,
) -> Res<std::convert::Infallible> {
    join_cgroups(procs)?;
    for (fd, flag) in ns {
        check(
            // SAFETY: a plain syscall on descriptors and values we own.
            unsafe { libc::setns(fd.as_raw_fd(), *flag) },
            "entering the container",
        )?;
    }
    // SAFETY: setsid has no memory-safety preconditions.
    unsafe { libc::setsid() };
    let slave = if p.terminal {
        Some(open_console(None, sock, false, p.uid)?)
    } else {
        None
    };
    set_rlimits(&p.rlimits)?;
    write_oom_score(p.oom_score_adj);
    dup_stdio(stdio, slave.as_ref())?;
    drop(slave);
    enter_cwd(p)?;
    let path = resolve_command(p)?;
    send_msg(sock, b"ok", None);
    reset_signals();
    become_process(p, seccomp, cap_last())?;
    let err = exec_process(p, &path).unwrap_err();
    eprintln!("berth: {err}");
    // SAFETY: the exec failed after setup; 127 as a shell would.
    unsafe { libc::_exit(127) }
}
