//! Creating and entering containers: berth's own OCI runtime path, for the
//! subset of the runtime spec that `berth_runtime::spec` writes.
//!
//! It replaced libcontainer here because of time: libcontainer's create took
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
//! command exists; report ready and wait for `Start`; then capabilities,
//! user, seccomp and exec.

use berth_monitor::set_cloexec;
use berth_runtime::cgroups::DeviceRule;
use serde_json::Value;
use std::ffi::{CStr, CString};
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{0}")]
    Spec(String),
    #[error("{what}: {err}")]
    Os { what: String, err: io::Error },
    /// What the container's process reported before it could start.
    #[error("{0}")]
    Child(String),
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

/// The process part of a spec, resolved to what the syscalls take.
#[derive(Debug, Clone, Default)]
pub struct Process {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub gids: Vec<u32>,
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub rlimits: Vec<(u32, u64, u64)>,
    pub no_new_privs: bool,
    pub oom_score_adj: Option<i32>,
    pub terminal: bool,
}

fn cap_mask(v: &Value) -> Res<u64> {
    let mut m = 0u64;
    for c in v.as_array().into_iter().flatten() {
        let name = c.as_str().unwrap_or("");
        let bit = berth_runtime::spec::ALL_CAPS
            .iter()
            .position(|k| *k == name)
            .ok_or_else(|| RuntimeError::Spec(format!("unknown capability {name}")))?;
        m |= 1 << bit;
    }
    Ok(m)
}

fn rlimit_resource(name: &str) -> Option<u32> {
    Some(match name {
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        _ => return None,
    })
}

impl Process {
    pub fn from_spec(p: &Value) -> Res<Process> {
        let strs = |v: &Value| -> Vec<String> {
            v.as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        };
        let caps = &p["capabilities"];
        let mut rlimits = Vec::new();
        for r in p["rlimits"].as_array().into_iter().flatten() {
            let t = r["type"].as_str().unwrap_or("");
            let res = rlimit_resource(t)
                .ok_or_else(|| RuntimeError::Spec(format!("unknown rlimit {t}")))?;
            rlimits.push((
                res,
                r["soft"].as_u64().unwrap_or(0),
                r["hard"].as_u64().unwrap_or(0),
            ));
        }
        let args = strs(&p["args"]);
        if args.is_empty() {
            return Err(RuntimeError::Spec("no command given".into()));
        }
        Ok(Process {
            args,
            env: strs(&p["env"]),
            cwd: p["cwd"].as_str().unwrap_or("/").to_string(),
            uid: p["user"]["uid"].as_u64().unwrap_or(0) as u32,
            gid: p["user"]["gid"].as_u64().unwrap_or(0) as u32,
            gids: p["user"]["additionalGids"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|g| g.as_u64().map(|g| g as u32))
                .collect(),
            bounding: cap_mask(&caps["bounding"])?,
            effective: cap_mask(&caps["effective"])?,
            permitted: cap_mask(&caps["permitted"])?,
            rlimits,
            no_new_privs: p["noNewPrivileges"].as_bool().unwrap_or(false),
            oom_score_adj: p["oomScoreAdj"].as_i64().map(|v| v as i32),
            terminal: p["terminal"].as_bool().unwrap_or(false),
        })
    }
}

/// A mount as the syscalls take it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MountOp {
    pub destination: String,
    pub kind: String,
    pub source: String,
    pub flags: libc::c_ulong,
    /// MS_SHARED / MS_SLAVE / MS_PRIVATE / MS_UNBINDABLE, with MS_REC.
    pub propagation: libc::c_ulong,
    pub data: String,
    pub bind: bool,
}

/// Parses an OCI mount's options as mount(8) reads them.
pub fn mount_op(m: &Value) -> MountOp {
    let mut op = MountOp {
        destination: m["destination"].as_str().unwrap_or("").to_string(),
        kind: m["type"].as_str().unwrap_or("").to_string(),
        source: m["source"].as_str().unwrap_or("").to_string(),
        ..Default::default()
    };
    let mut data = Vec::new();
    for o in m["options"].as_array().into_iter().flatten() {
        let o = o.as_str().unwrap_or("");
        let (set, clear): (libc::c_ulong, libc::c_ulong) = match o {
            "ro" => (libc::MS_RDONLY, 0),
            "rw" => (0, libc::MS_RDONLY),
            "nosuid" => (libc::MS_NOSUID, 0),
            "suid" => (0, libc::MS_NOSUID),
            "nodev" => (libc::MS_NODEV, 0),
            "dev" => (0, libc::MS_NODEV),
            "noexec" => (libc::MS_NOEXEC, 0),
            "exec" => (0, libc::MS_NOEXEC),
            "sync" => (libc::MS_SYNCHRONOUS, 0),
            "async" => (0, libc::MS_SYNCHRONOUS),
            "noatime" => (libc::MS_NOATIME, 0),
            "atime" => (0, libc::MS_NOATIME),
            "nodiratime" => (libc::MS_NODIRATIME, 0),
            "diratime" => (0, libc::MS_NODIRATIME),
            "relatime" => (libc::MS_RELATIME, 0),
            "norelatime" => (0, libc::MS_RELATIME),
            "strictatime" => (libc::MS_STRICTATIME, 0),
            "nostrictatime" => (0, libc::MS_STRICTATIME),
            "bind" => {
                op.bind = true;
                (0, 0)
            }
            "rbind" => {
                op.bind = true;
                (libc::MS_REC, 0)
            }
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                let base = match o.trim_start_matches('r') {
                    "private" => libc::MS_PRIVATE,
                    "shared" => libc::MS_SHARED,
                    "slave" => libc::MS_SLAVE,
                    _ => libc::MS_UNBINDABLE,
                };
                op.propagation = base | if o.starts_with('r') { libc::MS_REC } else { 0 };
                (0, 0)
            }
            other => {
                data.push(other);
                (0, 0)
            }
        };
        op.flags = (op.flags | set) & !clear;
    }
    if op.kind == "bind" {
        op.bind = true;
    }
    op.data = data.join(",");
    op
}

/// A v1 hierarchy as the host mounts it: where, and its mount data
/// (controllers, or `name=…`).
#[derive(Debug, Clone, PartialEq)]
pub struct Hierarchy {
    pub mountpoint: PathBuf,
    pub data: String,
}

/// The cgroup v1 hierarchies in a mountinfo, under /sys/fs/cgroup.
pub fn v1_hierarchies(mountinfo: &str) -> Vec<Hierarchy> {
    let mut out = Vec::new();
    for l in mountinfo.lines() {
        let Some((pre, post)) = l.split_once(" - ") else {
            continue;
        };
        let mut post = post.split(' ');
        if post.next() != Some("cgroup") {
            continue;
        }
        let Some(point) = pre.split(' ').nth(4) else {
            continue;
        };
        if !point.starts_with("/sys/fs/cgroup/") {
            continue;
        }
        let data: Vec<&str> = post
            .nth(1)
            .unwrap_or("")
            .split(',')
            .filter(|o| *o != "rw" && *o != "ro")
            .collect();
        out.push(Hierarchy {
            mountpoint: PathBuf::from(point),
            data: data.join(","),
        });
    }
    out
}

/// The controllers a container's cgroup is made in on a v1 host; the other
/// hierarchies' counters are not read and their limits not set.
const V1_CONTROLLERS: [&str; 7] = [
    "memory", "cpu", "cpuacct", "pids", "devices", "freezer", "blkio",
];

/// The cgroup directories a container's processes join.
pub fn cgroup_dirs(cgroup_path: &str, unified: bool, hierarchies: &[Hierarchy]) -> Vec<PathBuf> {
    let rel = cgroup_path.trim_start_matches('/');
    if unified {
        return vec![Path::new("/sys/fs/cgroup").join(rel)];
    }
    hierarchies
        .iter()
        .filter(|h| h.data.split(',').any(|c| V1_CONTROLLERS.contains(&c)))
        .map(|h| h.mountpoint.join(rel))
        .collect()
}

fn write_file(p: &Path, v: &str) -> Res<()> {
    fs::write(p, v).map_err(os(format!("writing {}", p.display())))
}

/// Makes the container's cgroup and writes its limits and device rules.
fn make_cgroup(spec: &Value, cgroup_path: &str, dirs: &[PathBuf], unified: bool) -> Res<()> {
    for d in dirs {
        fs::create_dir_all(d).map_err(os(format!("creating cgroup {}", d.display())))?;
    }
    let r = &spec["linux"]["resources"];
    let num = |v: &Value| v.as_i64().filter(|n| *n != 0);
    let mut limits = berth_runtime::cgroups::Limits {
        memory: num(&r["memory"]["limit"]),
        memory_swap: num(&r["memory"]["swap"]),
        cpu_shares: num(&r["cpu"]["shares"]),
        pids: num(&r["pids"]["limit"]),
        ..Default::default()
    };
    if let Some(q) = num(&r["cpu"]["quota"]) {
        limits.cpu_quota = Some((q, num(&r["cpu"]["period"]).unwrap_or(100_000)));
    }
    berth_runtime::cgroups::update_at(Path::new("/sys/fs/cgroup"), unified, cgroup_path, &limits)
        .map_err(os("setting cgroup limits"))?;
    let rules: Vec<DeviceRule> = r["devices"]
        .as_array()
        .into_iter()
        .flatten()
        .map(DeviceRule::from_spec)
        .collect();
    if unified {
        if let Some(dir) = dirs.first() {
            berth_runtime::cgroups::attach_device_rules(dir, &rules)
                .map_err(os("attaching the device filter"))?;
        }
        return Ok(());
    }
    if let Some(dev) = dirs
        .iter()
        .find(|d| d.starts_with("/sys/fs/cgroup/devices"))
    {
        for rule in &rules {
            let file = if rule.allow {
                "devices.allow"
            } else {
                "devices.deny"
            };
            write_file(&dev.join(file), &rule.v1_line())?;
        }
    }
    Ok(())
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

/// A created container: its init waits for `start`.
pub struct Created {
    pub pid: i32,
    pub pty_master: Option<OwnedFd>,
    start: OwnedFd,
}

impl Created {
    /// Lets the init run its command.
    pub fn start(self) -> Res<()> {
        // SAFETY: a one-byte write to our end of the start pipe.
        let n = unsafe { libc::write(self.start.as_raw_fd(), b"s".as_ptr().cast(), 1) };
        if n != 1 {
            return Err(last_err("starting the container"));
        }
        Ok(())
    }
}

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// fork(2) with namespace flags. The shim is single-threaded, so the child
/// may run ordinary Rust until it execs.
fn clone3(flags: u64) -> Res<i32> {
    let args = CloneArgs {
        flags,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    // SAFETY: clone3 without a stack returns twice, like fork; our process
    // has one thread, so no lock is held by a thread that does not exist in
    // the child.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if pid < 0 {
        return Err(last_err("clone3"));
    }
    Ok(pid as i32)
}

fn seqpacket_pair() -> Res<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: socketpair fills the two-element array.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if r != 0 {
        return Err(last_err("socketpair"));
    }
    // SAFETY: both descriptors are new and ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn send_msg(sock: RawFd, msg: &[u8], fd: Option<RawFd>) {
    let mut iov = libc::iovec {
        iov_base: msg.as_ptr() as *mut _,
        iov_len: msg.len(),
    };
    let mut cbuf = [0u64; 4];
    // SAFETY: a msghdr over live buffers; CMSG macros stay inside `cbuf`.
    unsafe {
        let mut mh: libc::msghdr = std::mem::zeroed();
        mh.msg_iov = &mut iov;
        mh.msg_iovlen = 1;
        if let Some(fd) = fd {
            mh.msg_control = cbuf.as_mut_ptr().cast();
            mh.msg_controllen = libc::CMSG_SPACE(4) as usize;
            let c = libc::CMSG_FIRSTHDR(&mh);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(4) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut RawFd, fd);
        }
        libc::sendmsg(sock, &mh, libc::MSG_NOSIGNAL);
    }
}

/// One message from the child: its bytes and a descriptor it passed.
fn recv_msg(sock: RawFd) -> Res<(Vec<u8>, Option<OwnedFd>)> {
    let mut buf = vec![0u8; 8192];
    let mut cbuf = [0u64; 4];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: as in send_msg; the kernel writes within the given lengths.
    unsafe {
        let mut mh: libc::msghdr = std::mem::zeroed();
        mh.msg_iov = &mut iov;
        mh.msg_iovlen = 1;
        mh.msg_control = cbuf.as_mut_ptr().cast();
        mh.msg_controllen = std::mem::size_of_val(&cbuf);
        let n = loop {
            let n = libc::recvmsg(sock, &mut mh, libc::MSG_CMSG_CLOEXEC);
            if n >= 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                break n;
            }
        };
        if n < 0 {
            return Err(last_err("reading from the container's process"));
        }
        let mut fd = None;
        let c = libc::CMSG_FIRSTHDR(&mh);
        if !c.is_null() && (*c).cmsg_type == libc::SCM_RIGHTS {
            fd = Some(OwnedFd::from_raw_fd(std::ptr::read_unaligned(
                libc::CMSG_DATA(c) as *const RawFd,
            )));
        }
        buf.truncate(n as usize);
        Ok((buf, fd))
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
            let text = String::from_utf8_lossy(msg.strip_prefix(b"err ").unwrap_or(&msg));
            return Err(RuntimeError::Child(if text.is_empty() {
                "the container's process exited during setup".into()
            } else {
                text.into_owned()
            }));
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
    readonly: Vec<String>,
    process: Process,
    seccomp: Option<(Vec<u8>, u32)>,
    cap_last: u32,
    stdio: StdioIn,
}

fn ns_flag(kind: &str) -> Option<i32> {
    Some(match kind {
        "pid" => libc::CLONE_NEWPID,
        "network" => libc::CLONE_NEWNET,
        "mount" => libc::CLONE_NEWNS,
        "ipc" => libc::CLONE_NEWIPC,
        "uts" => libc::CLONE_NEWUTS,
        "cgroup" => libc::CLONE_NEWCGROUP,
        "user" => libc::CLONE_NEWUSER,
        _ => return None,
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
pub fn create(spec: &Value, seccomp: Option<(Vec<u8>, u32)>, stdio: StdioIn) -> Res<Created> {
    let linux = &spec["linux"];
    let cgroup_path = linux["cgroupsPath"].as_str().unwrap_or("").to_string();
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
    for ns in linux["namespaces"].as_array().into_iter().flatten() {
        let kind = ns["type"].as_str().unwrap_or("");
        let flag = ns_flag(kind).ok_or_else(|| RuntimeError::Spec(format!("namespace {kind}")))?;
        match ns["path"].as_str() {
            Some(p) => join.push((p.to_string(), flag)),
            None if flag == libc::CLONE_NEWCGROUP => new_cgroupns = true,
            None => flags |= flag as u64,
        }
    }
    let plan = InitPlan {
        rootfs: cstr(spec["root"]["path"].as_str().unwrap_or(""))?,
        readonly_root: spec["root"]["readonly"].as_bool().unwrap_or(false),
        hostname: spec["hostname"].as_str().map(String::from),
        mounts: spec["mounts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(mount_op)
            .collect(),
        hierarchies,
        unified,
        cgroup_procs: dirs.iter().map(|d| d.join("cgroup.procs")).collect(),
        new_cgroupns,
        new_netns: flags & libc::CLONE_NEWNET as u64 != 0,
        join,
        sysctls: linux["sysctl"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
            .collect(),
        masked: strings(&linux["maskedPaths"]),
        readonly: strings(&linux["readonlyPaths"]),
        process: Process::from_spec(&spec["process"])?,
        seccomp,
        cap_last: cap_last(),
        stdio,
    };
    make_cgroup(spec, &cgroup_path, &dirs, unified)?;
    let made = spawn_init(flags, plan);
    if made.is_err() {
        berth_runtime::cgroups::destroy(&cgroup_path);
    }
    made
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(String::from))
        .collect()
}

fn spawn_init(flags: u64, plan: InitPlan) -> Res<Created> {
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
        child_fail(sock, &err.to_string());
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
    })
}

/// Reports a setup failure to the parent and ends the child.
fn child_fail(sock: RawFd, msg: &str) -> ! {
    send_msg(sock, format!("err {msg}").as_bytes(), None);
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

fn sys_mount(
    src: Option<&CStr>,
    target: &CStr,
    kind: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
    what: &str,
) -> Res<()> {
    // SAFETY: mount(2) with NUL-terminated strings that outlive the call.
    let r = unsafe {
        libc::mount(
            src.map_or(std::ptr::null(), |s| s.as_ptr()),
            target.as_ptr(),
            kind.map_or(std::ptr::null(), |s| s.as_ptr()),
            flags,
            data.map_or(std::ptr::null(), |s| s.as_ptr().cast()),
        )
    };
    check(r, what)
}

fn openat2(dirfd: RawFd, path: &str, flags: i32, resolve: u64) -> io::Result<OwnedFd> {
    let c = CString::new(path).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: an open_how zeroed then filled; the kernel reads `size` bytes.
    let fd = unsafe {
        let mut how: libc::open_how = std::mem::zeroed();
        how.flags = flags as u64;
        how.resolve = resolve;
        libc::syscall(
            libc::SYS_openat2,
            dirfd,
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor, ours.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

const IN_ROOT: u64 = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;

/// Opens `rel` inside the rootfs (symlinks resolved as if the rootfs were /),
/// creating what is missing of it — directories, and an empty file at the end
/// when `file` — along the path a symlink in the image points to, as runc
/// does; never outside the rootfs.
fn ensure_in_root(root: RawFd, rel: &str, file: bool) -> Res<OwnedFd> {
    let flags = libc::O_PATH | libc::O_CLOEXEC;
    let open = |p: &str| openat2(root, if p.is_empty() { "." } else { p }, flags, IN_ROOT);
    match open(rel.trim_matches('/')) {
        Ok(fd) => return Ok(fd),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) => return Err(os(format!("opening {rel} in the rootfs"))(e)),
    }
    let split = |p: &str| -> Vec<String> {
        p.split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .map(String::from)
            .collect()
    };
    let mut todo: std::collections::VecDeque<String> = split(rel).into();
    let mut done: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(c) = todo.pop_front() {
        if c == ".." {
            done.pop();
            continue;
        }
        let parent = done.join("/");
        let here = if parent.is_empty() {
            c.clone()
        } else {
            format!("{parent}/{c}")
        };
        match open(&here) {
            Ok(_) => {
                done.push(c);
                continue;
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(os(format!("opening /{here} in the rootfs"))(e)),
        }
        let pfd = openat2(
            root,
            if parent.is_empty() { "." } else { &parent },
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            IN_ROOT,
        )
        .map_err(os(format!("opening /{parent} in the rootfs")))?;
        let cname = cstr(&c)?;
        // A dangling symlink: go where it points, inside the rootfs.
        let mut buf = [0u8; 4096];
        // SAFETY: readlinkat into a buffer of the stated length.
        let n = unsafe {
            libc::readlinkat(
                pfd.as_raw_fd(),
                cname.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n > 0 {
            links += 1;
            if links > 40 {
                return Err(RuntimeError::Child(format!("too many symlinks in {rel}")));
            }
            let target = String::from_utf8_lossy(&buf[..n as usize]).into_owned();
            if target.starts_with('/') {
                done.clear();
            }
            for (i, t) in split(&target).into_iter().enumerate() {
                todo.insert(i, t);
            }
            continue;
        }
        let last = todo.is_empty();
        // SAFETY: creating a single name (no slashes) under a directory we hold.
        let r = unsafe {
            if last && file {
                let fd = libc::openat(
                    pfd.as_raw_fd(),
                    cname.as_ptr(),
                    libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_WRONLY
                        | libc::O_CLOEXEC
                        | libc::O_NOFOLLOW,
                    0o644,
                );
                if fd >= 0 {
                    libc::close(fd);
                }
                fd
            } else {
                libc::mkdirat(pfd.as_raw_fd(), cname.as_ptr(), 0o755)
            }
        };
        if r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
            return Err(last_err(&format!("creating /{here} in the rootfs")));
        }
        done.push(c);
    }
    open(&done.join("/")).map_err(os(format!("opening {rel} in the rootfs")))
}

fn fd_path(fd: &OwnedFd) -> CString {
    CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("no NUL")
}

/// Mounts `m` inside the rootfs (before pivot_root).
fn mount_in_root(root: RawFd, m: &MountOp, plan: &InitPlan) -> Res<()> {
    if m.kind == "cgroup" {
        return mount_cgroups(root, m, plan);
    }
    let source_is_file = m.bind && fs::metadata(&m.source).is_ok_and(|md| !md.is_dir());
    let target = ensure_in_root(root, &m.destination, source_is_file)?;
    let tpath = fd_path(&target);
    let what = format!("mounting {}", m.destination);
    if m.bind {
        let src = cstr(&m.source)?;
        sys_mount(
            Some(&src),
            &tpath,
            None,
            libc::MS_BIND | (m.flags & libc::MS_REC),
            None,
            &what,
        )?;
        let extra = m.flags & !libc::MS_REC;
        if extra != 0 {
            // Flags on a bind mount take a second, remounting call.
            let t2 = ensure_in_root(root, &m.destination, source_is_file)?;
            sys_mount(
                None,
                &fd_path(&t2),
                None,
                libc::MS_BIND | libc::MS_REMOUNT | extra,
                None,
                &what,
            )?;
        }
    } else {
        let src = cstr(&m.source)?;
        let kind = cstr(&m.kind)?;
        let data = cstr(&m.data)?;
        sys_mount(
            Some(&src),
            &tpath,
            Some(&kind),
            m.flags & !libc::MS_REC,
            (!m.data.is_empty()).then_some(data.as_c_str()),
            &what,
        )?;
    }
    if m.propagation != 0 {
        let t2 = ensure_in_root(root, &m.destination, source_is_file)?;
        sys_mount(None, &fd_path(&t2), None, m.propagation, None, &what)?;
    }
    Ok(())
}

/// /sys/fs/cgroup: cgroup2 on a unified host; on v1, a tmpfs with each
/// hierarchy mounted anew (the cgroup namespace makes the container's own
/// cgroup its root), read-only unless `rw` was asked for.
fn mount_cgroups(root: RawFd, m: &MountOp, plan: &InitPlan) -> Res<()> {
    let target = ensure_in_root(root, &m.destination, false)?;
    let tpath = fd_path(&target);
    let flags = m.flags & !libc::MS_REC;
    let what = "mounting /sys/fs/cgroup";
    if plan.unified {
        return sys_mount(
            Some(c"cgroup2"),
            &tpath,
            Some(c"cgroup2"),
            flags,
            None,
            what,
        );
    }
    sys_mount(
        Some(c"tmpfs"),
        &tpath,
        Some(c"tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        Some(c"mode=755"),
        what,
    )?;
    let base = m.destination.trim_end_matches('/');
    for h in &plan.hierarchies {
        let Some(name) = h.mountpoint.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let dir = ensure_in_root(root, &format!("{base}/{name}"), false)?;
        let data = cstr(&h.data)?;
        sys_mount(
            Some(c"cgroup"),
            &fd_path(&dir),
            Some(c"cgroup"),
            flags,
            Some(&data),
            what,
        )?;
    }
    // The host's aliases (cpu -> cpu,cpuacct), as symlinks beside them.
    let dir = ensure_in_root(root, base, false)?;
    let dfd = openat2(
        dir.as_raw_fd(),
        ".",
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        0,
    )
    .map_err(os(what))?;
    for e in fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let Ok(to) = fs::read_link(e.path()) else {
            continue;
        };
        if let (Ok(name), Ok(to)) = (
            CString::new(e.file_name().as_encoded_bytes()),
            CString::new(to.as_os_str().as_encoded_bytes()),
        ) {
            // SAFETY: symlinkat with NUL-terminated names under a directory we hold.
            unsafe { libc::symlinkat(to.as_ptr(), dfd.as_raw_fd(), name.as_ptr()) };
        }
    }
    if flags & libc::MS_RDONLY != 0 {
        sys_mount(
            None,
            &fd_path(&dir),
            None,
            libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            Some(c"mode=755"),
            what,
        )?;
    }
    Ok(())
}

/// Docker's default device nodes, and the links every /dev has.
fn make_devices(root: RawFd) -> Res<()> {
    let dev = ensure_in_root(root, "dev", false)?;
    let dfd = openat2(
        dev.as_raw_fd(),
        ".",
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        0,
    )
    .map_err(os("opening /dev"))?;
    for (name, major, minor) in [
        (c"null", 1, 3),
        (c"zero", 1, 5),
        (c"full", 1, 7),
        (c"random", 1, 8),
        (c"urandom", 1, 9),
        (c"tty", 5, 0),
    ] {
        // SAFETY: mknodat under our own new /dev tmpfs.
        let r = unsafe {
            libc::mknodat(
                dfd.as_raw_fd(),
                name.as_ptr(),
                libc::S_IFCHR | 0o666,
                libc::makedev(major, minor),
            )
        };
        if r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
            return Err(last_err(&format!(
                "creating /dev/{}",
                name.to_string_lossy()
            )));
        }
    }
    for (name, to) in [
        (c"fd", c"/proc/self/fd"),
        (c"stdin", c"/proc/self/fd/0"),
        (c"stdout", c"/proc/self/fd/1"),
        (c"stderr", c"/proc/self/fd/2"),
        (c"ptmx", c"pts/ptmx"),
        (c"core", c"/proc/kcore"),
    ] {
        // SAFETY: symlinkat with static names under our own /dev.
        unsafe { libc::symlinkat(to.as_ptr(), dfd.as_raw_fd(), name.as_ptr()) };
    }
    Ok(())
}

/// A pty from the container's devpts: the master goes to the shim, the
/// slave becomes the process's stdio and controlling terminal.
fn open_console(root: Option<RawFd>, sock: RawFd, bind_console: bool, uid: u32) -> Res<OwnedFd> {
    let master = match root {
        Some(root) => openat2(
            root,
            "dev/pts/ptmx",
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            IN_ROOT,
        ),
        None => {
            // SAFETY: open(2) of a constant path.
            let fd = unsafe {
                libc::open(
                    c"/dev/pts/ptmx".as_ptr(),
                    libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
                )
            };
            if fd < 0 {
                Err(io::Error::last_os_error())
            } else {
                // SAFETY: a new descriptor, ours.
                Ok(unsafe { OwnedFd::from_raw_fd(fd) })
            }
        }
    }
    .map_err(os("opening /dev/pts/ptmx"))?;
    // SAFETY: ioctls on the master we just opened.
    let slave = unsafe {
        let unlock: libc::c_int = 0;
        check(
            libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock),
            "unlocking the pty",
        )?;
        let fd = libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY,
        );
        check(fd, "opening the pty's peer")?;
        OwnedFd::from_raw_fd(fd)
    };
    // The process's user owns its terminal, as with runc.
    // SAFETY: fchown of the pty we just opened.
    unsafe { libc::fchown(slave.as_raw_fd(), uid, u32::MAX) };
    if let (true, Some(root)) = (bind_console, root) {
        let target = ensure_in_root(root, "dev/console", true)?;
        sys_mount(
            Some(&fd_path(&slave)),
            &fd_path(&target),
            None,
            libc::MS_BIND,
            None,
            "mounting /dev/console",
        )?;
    }
    send_msg(sock, b"pty", Some(master.as_raw_fd()));
    Ok(slave)
}

fn dup_stdio(stdio: &StdioIn, slave: Option<&OwnedFd>) -> Res<()> {
    let fds = match (stdio, slave) {
        (_, Some(s)) => [s.as_raw_fd(); 3],
        (
            StdioIn::Pipes {
                stdin,
                stdout,
                stderr,
            },
            None,
        ) => [stdin.as_raw_fd(), stdout.as_raw_fd(), stderr.as_raw_fd()],
        (StdioIn::Terminal, None) => return Ok(()),
    };
    for (to, from) in fds.into_iter().enumerate() {
        // SAFETY: dup2 onto the standard descriptors of this child; dup2
        // leaves FD_CLOEXEC clear on the copy.
        check(unsafe { libc::dup2(from, to as RawFd) }, "setting up stdio")?;
        if from == to as RawFd {
            set_cloexec(to as RawFd, false);
        }
    }
    if slave.is_some() {
        // SAFETY: making the pty (now fd 0) our controlling terminal.
        check(unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) }, "TIOCSCTTY")?;
    }
    Ok(())
}

fn join_namespaces(join: &[(String, i32)]) -> Res<()> {
    for (path, flag) in join {
        let f = fs::File::open(path).map_err(os(format!("opening namespace {path}")))?;
        check(
            // SAFETY: a plain syscall on descriptors and values we own.
            unsafe { libc::setns(f.as_raw_fd(), *flag) },
            &format!("joining {path}"),
        )?;
    }
    Ok(())
}

/// A network namespace of its own starts with `lo` down; Docker's
/// containers (`--network none` too) have it up, with 127.0.0.1 and ::1.
fn loopback_up() -> Res<()> {
    // SAFETY: an ioctl socket and SIOC[GS]IFFLAGS on a zeroed ifreq naming lo.
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        check(sock, "socket for lo")?;
        let sock = OwnedFd::from_raw_fd(sock);
        let mut req: libc::ifreq = std::mem::zeroed();
        req.ifr_name[..2].copy_from_slice(&[b'l' as libc::c_char, b'o' as libc::c_char]);
        check(
            libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req),
            "reading lo's flags",
        )?;
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        check(
            libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req),
            "bringing lo up",
        )
    }
}

fn join_cgroups(procs: &[PathBuf]) -> Res<()> {
    for p in procs {
        write_file(p, "0")?;
    }
    Ok(())
}

/// The mount flags a path is mounted with now, for remounts that must keep
/// them.
fn mounted_flags(path: &CStr) -> libc::c_ulong {
    // SAFETY: statvfs into a zeroed struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: statvfs writes into `st`, which outlives the call.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return 0;
    }
    let mut f = 0;
    for (st_flag, ms) in [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_RDONLY, libc::MS_RDONLY),
    ] {
        if st.f_flag & st_flag != 0 {
            f |= ms;
        }
    }
    f
}

fn mask_paths(masked: &[String], readonly: &[String]) -> Res<()> {
    for p in readonly {
        let c = cstr(p)?;
        match sys_mount(Some(&c), &c, None, libc::MS_BIND | libc::MS_REC, None, p) {
            Err(RuntimeError::Os { err, .. }) if err.raw_os_error() == Some(libc::ENOENT) => {
                continue
            }
            r => r?,
        }
        let flags = mounted_flags(&c) | libc::MS_RDONLY;
        sys_mount(
            None,
            &c,
            None,
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_REC | flags,
            None,
            p,
        )?;
    }
    for p in masked {
        let c = cstr(p)?;
        let r = match fs::metadata(p) {
            Ok(md) if md.is_dir() => {
                sys_mount(Some(c"tmpfs"), &c, Some(c"tmpfs"), libc::MS_RDONLY, None, p)
            }
            Ok(_) => sys_mount(Some(c"/dev/null"), &c, None, libc::MS_BIND, None, p),
            Err(_) => continue,
        };
        r?;
    }
    Ok(())
}

fn set_rlimits(limits: &[(u32, u64, u64)]) -> Res<()> {
    for &(res, soft, hard) in limits {
        let rl = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: setrlimit with a struct on the stack.
        check(unsafe { libc::setrlimit(res, &rl) }, "setting rlimits")?;
    }
    Ok(())
}

/// Finds the command as execve will, inside the container: Docker's errors
/// for a missing or unexecutable one.
fn resolve_command(p: &Process) -> Res<CString> {
    let cmd = &p.args[0];
    let path_var = p
        .env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    let candidates: Vec<String> = if cmd.contains('/') {
        vec![cmd.clone()]
    } else {
        path_var
            .split(':')
            .map(|d| format!("{}/{cmd}", if d.is_empty() { "." } else { d }))
            .collect()
    };
    let mut denied = false;
    for c in candidates {
        match fs::metadata(&c) {
            Ok(md) if md.is_file() => {
                use std::os::unix::fs::PermissionsExt;
                if md.permissions().mode() & 0o111 != 0 {
                    return cstr(&c);
                }
                denied = true;
            }
            Ok(_) => denied = true,
            Err(_) => {}
        }
    }
    Err(RuntimeError::Child(if denied {
        format!("exec: \"{cmd}\": permission denied")
    } else if cmd.contains('/') {
        format!("exec: \"{cmd}\": stat {cmd}: no such file or directory")
    } else {
        format!("exec: \"{cmd}\": executable file not found in $PATH")
    }))
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn capset(effective: u64, permitted: u64) -> Res<()> {
    let hdr = CapHeader {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let data = [
        CapData {
            effective: effective as u32,
            permitted: permitted as u32,
            inheritable: 0,
        },
        CapData {
            effective: (effective >> 32) as u32,
            permitted: (permitted >> 32) as u32,
            inheritable: 0,
        },
    ];
    // SAFETY: capset with a v3 header and its two data words.
    let r = unsafe { libc::syscall(libc::SYS_capset, &hdr, data.as_ptr()) };
    check(r as libc::c_int, "setting capabilities")
}

fn load_seccomp(bpf: &[u8], flags: u32) -> Res<()> {
    let prog = libc::sock_fprog {
        len: (bpf.len() / 8) as u16,
        filter: bpf.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: the kernel copies the program; `bpf` outlives the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &prog as *const libc::sock_fprog,
        )
    };
    check(r as libc::c_int, "loading the seccomp filter")
}

/// The last steps before exec, shared by inits and execs: capabilities,
/// user and seccomp in the order that lets each step happen (the filter is
/// loaded while CAP_SYS_ADMIN is still there, unless no_new_privs is set).
/// Setting a non-root uid clears the permitted and effective sets, as Docker's
/// processes have them.
fn become_process(p: &Process, seccomp: Option<&(Vec<u8>, u32)>, cap_last: u32) -> Res<()> {
    for cap in 0..=cap_last {
        if p.bounding & (1 << cap) == 0 {
            check(
                // SAFETY: prctl with plain integer arguments.
                unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) },
                "dropping capabilities",
            )?;
        }
    }
    if !p.no_new_privs {
        if let Some((bpf, flags)) = seccomp {
            load_seccomp(bpf, *flags)?;
        }
    }
    // SAFETY: setgroups/setgid with a slice that outlives the call.
    unsafe {
        check(
            libc::setgroups(p.gids.len(), p.gids.as_ptr()),
            "setting groups",
        )?;
        check(libc::setgid(p.gid), "setting the group")?;
    }
    capset(p.effective, p.permitted)?;
    // SAFETY: setuid with a plain id.
    check(unsafe { libc::setuid(p.uid) }, "setting the user")?;
    if p.no_new_privs {
        check(
            // SAFETY: prctl with constant arguments.
            unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) },
            "setting no_new_privs",
        )?;
        if let Some((bpf, flags)) = seccomp {
            load_seccomp(bpf, *flags)?;
        }
    }
    Ok(())
}

/// Signal dispositions and the mask as a new process expects them: the shim
/// ignores SIGPIPE (as every Rust program does), and an ignored signal stays
/// ignored across execve.
fn reset_signals() {
    // SAFETY: raw rt_sigaction/rt_sigprocmask (glibc's wrappers refuse its own
    // two real-time signals) with a zeroed kernel sigaction, i.e. SIG_DFL,
    // and an empty 8-byte mask; no handler of ours runs here from now on.
    unsafe {
        let dfl = [0u64; 4]; // struct kernel_sigaction: handler, flags, restorer, mask
        for sig in 1..=64 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::syscall(libc::SYS_rt_sigaction, sig, dfl.as_ptr(), 0usize, 8usize);
            }
        }
        let empty = 0u64;
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &empty as *const u64,
            0usize,
            8usize,
        );
    }
}

fn exec_process(p: &Process, path: &CStr) -> Res<std::convert::Infallible> {
    let args: Vec<CString> = p.args.iter().map(|a| cstr(a)).collect::<Res<_>>()?;
    let env: Vec<CString> = p.env.iter().map(|a| cstr(a)).collect::<Res<_>>()?;
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|a| a.as_ptr()).collect();
    envp.push(std::ptr::null());
    // SAFETY: close_range only flags descriptors; execve takes
    // NUL-terminated arrays of live C strings.
    unsafe {
        // Whatever the shim had open that is not stdio stays out of the
        // container, even a descriptor someone forgot to mark.
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
        libc::umask(0o022);
        libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr());
    }
    Err(last_err(&format!("exec {}", p.args[0])))
}

fn write_oom_score(adj: Option<i32>) {
    if let Some(a) = adj {
        let _ = fs::write("/proc/self/oom_score_adj", a.to_string());
    }
}

fn init_child(plan: &InitPlan, sock: RawFd, start: RawFd) -> Res<std::convert::Infallible> {
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
            make_devices(root.as_raw_fd())?;
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
    drop(root);
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

fn enter_cwd(p: &Process) -> Res<()> {
    let c = cstr(&p.cwd)?;
    // SAFETY: chdir with a NUL-terminated path.
    if unsafe { libc::chdir(c.as_ptr()) } != 0 {
        return Err(RuntimeError::Child(format!(
            "chdir to cwd (\"{}\") set in config.json failed: {}",
            p.cwd,
            io::Error::last_os_error()
        )));
    }
    Ok(())
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
        child_fail(sock, &err.to_string());
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

fn freezer(cgroup_path: &str) -> (PathBuf, &'static str, &'static str) {
    let rel = cgroup_path.trim_start_matches('/');
    if berth_runtime::cgroups::is_unified() {
        (
            Path::new("/sys/fs/cgroup").join(rel).join("cgroup.freeze"),
            "1",
            "0",
        )
    } else {
        (
            Path::new("/sys/fs/cgroup/freezer")
                .join(rel)
                .join("freezer.state"),
            "FROZEN",
            "THAWED",
        )
    }
}

/// Freezes (or thaws) every process of the container, returning once the
/// cgroup says it is done.
pub fn freeze(cgroup_path: &str, on: bool) -> Res<()> {
    let (file, frozen, thawed) = freezer(cgroup_path);
    let want = if on { frozen } else { thawed };
    for _ in 0..1000 {
        write_file(&file, want)?;
        let state = if file.ends_with("cgroup.freeze") {
            let events =
                fs::read_to_string(file.with_file_name("cgroup.events")).unwrap_or_default();
            let f = events.lines().any(|l| l == "frozen 1");
            if f == on {
                want
            } else {
                ""
            }
        } else {
            let s = fs::read_to_string(&file).unwrap_or_default();
            if s.trim() == want {
                want
            } else {
                ""
            }
        };
        if state == want {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    Err(RuntimeError::Spec(format!(
        "the container's cgroup did not become {want}"
    )))
}

/// Signals the init, or with `all` every process in the container's cgroup.
pub fn kill(init_pid: i32, cgroup_path: &str, signal: i32, all: bool) -> Res<()> {
    let pids = if all {
        berth_runtime::cgroups::pids(cgroup_path)
    } else {
        vec![init_pid]
    };
    let mut sent = false;
    for p in pids {
        // SAFETY: kill(2) of a pid of this container.
        if unsafe { libc::kill(p, signal) } == 0 {
            sent = true;
        }
    }
    if sent {
        Ok(())
    } else {
        Err(RuntimeError::Spec("container not running".into()))
    }
}

/// Removes what is left of a container once its init has exited.
pub fn delete(cgroup_path: &str) {
    let (file, _, thawed) = freezer(cgroup_path);
    // A frozen process cannot die: thaw what is left before killing it.
    let _ = fs::write(file, thawed);
    berth_runtime::cgroups::destroy(cgroup_path);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn mount_options_become_flags_and_data() {
        let op = mount_op(
            &json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        );
        assert_eq!(op.flags, libc::MS_NOSUID | libc::MS_NOEXEC);
        assert_eq!(op.data, "newinstance,ptmxmode=0666,mode=0620,gid=5");
        assert!(!op.bind);
        let op = mount_op(
            &json!({"destination": "/data", "type": "bind", "source": "/v",
            "options": ["rbind", "rprivate", "ro"]}),
        );
        assert!(op.bind);
        assert_eq!(op.flags, libc::MS_REC | libc::MS_RDONLY);
        assert_eq!(op.propagation, libc::MS_PRIVATE | libc::MS_REC);
        let op = mount_op(
            &json!({"destination": "/x", "type": "tmpfs", "source": "tmpfs",
            "options": ["ro", "rw", "size=1k"]}),
        );
        assert_eq!(op.flags, 0, "a later rw wins over an earlier ro");
        assert_eq!(op.data, "size=1k");
    }

    #[test]
    fn finds_v1_hierarchies_and_the_dirs_to_join() {
        let mi = "\
30 1 0:26 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw shared:10 - cgroup2 cgroup2 rw,nsdelegate
32 30 0:28 / /sys/fs/cgroup/systemd rw shared:11 - cgroup cgroup rw,xattr,name=systemd
35 30 0:31 / /sys/fs/cgroup/cpu,cpuacct rw shared:14 - cgroup cgroup rw,cpu,cpuacct
36 30 0:32 / /sys/fs/cgroup/memory rw shared:15 - cgroup cgroup rw,memory
37 30 0:33 / /sys/fs/cgroup/net_cls rw shared:16 - cgroup cgroup rw,net_cls
";
        let h = v1_hierarchies(mi);
        assert_eq!(h.len(), 4);
        assert_eq!(h[0].data, "xattr,name=systemd");
        assert_eq!(h[1].mountpoint, Path::new("/sys/fs/cgroup/cpu,cpuacct"));
        let dirs = cgroup_dirs("/berth/abc", false, &h);
        assert_eq!(
            dirs,
            [
                Path::new("/sys/fs/cgroup/cpu,cpuacct/berth/abc"),
                Path::new("/sys/fs/cgroup/memory/berth/abc")
            ]
        );
        assert_eq!(
            cgroup_dirs("/berth/abc", true, &h),
            [Path::new("/sys/fs/cgroup/berth/abc")]
        );
    }

    #[test]
    fn processes_take_their_capabilities_as_masks() {
        let p = Process::from_spec(&json!({
            "args": ["sh"], "user": {"uid": 1, "gid": 2, "additionalGids": [3]},
            "capabilities": {"bounding": ["CAP_CHOWN", "CAP_KILL"], "effective": ["CAP_KILL"]},
            "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 20}],
        }))
        .unwrap();
        assert_eq!(p.bounding, 1 | 1 << 5);
        assert_eq!(p.effective, 1 << 5);
        assert_eq!((p.uid, p.gid, p.gids.as_slice()), (1, 2, &[3][..]));
        assert_eq!(p.rlimits, [(libc::RLIMIT_NOFILE, 10, 20)]);
        assert!(Process::from_spec(&json!({"args": []})).is_err());
        assert!(
            Process::from_spec(&json!({"args": ["x"], "rlimits": [{"type": "RLIMIT_NOPE"}]}))
                .is_err()
        );
    }
}
