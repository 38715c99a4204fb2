//! The process itself: its spec, its stdio, and the last steps before
//! execve (rlimits, signals, capabilities, user, seccomp).

use super::*;
use berth_runtime::oci::{self, Capabilities};

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

pub(super) fn cap_mask(caps: &Option<Capabilities>) -> Res<u64> {
    let mut m = 0u64;
    for c in caps.iter().flatten() {
        let name = format!("CAP_{c}");
        let bit = berth_runtime::spec::ALL_CAPS
            .iter()
            .position(|k| *k == name)
            .ok_or_else(|| RuntimeError::Spec(format!("unknown capability {name}")))?;
        m |= 1 << bit;
    }
    Ok(m)
}

pub(super) fn rlimit_resource(name: &str) -> Option<u32> {
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
    pub fn from_spec(p: &oci::Process) -> Res<Process> {
        let mut rlimits = Vec::new();
        for r in p.rlimits().iter().flatten() {
            // The spec's names for them are the kernel's.
            let name = r.typ().to_string();
            let res = rlimit_resource(&name)
                .ok_or_else(|| RuntimeError::Spec(format!("unknown rlimit {name}")))?;
            rlimits.push((res, r.soft(), r.hard()));
        }
        let args = p.args().clone().unwrap_or_default();
        if args.is_empty() {
            return Err(RuntimeError::Spec("no command given".into()));
        }
        let none = oci::LinuxCapabilities::default();
        let caps = p.capabilities().as_ref().unwrap_or(&none);
        let user = p.user();
        Ok(Process {
            args,
            env: p.env().clone().unwrap_or_default(),
            cwd: p.cwd().to_string_lossy().into_owned(),
            uid: user.uid(),
            gid: user.gid(),
            gids: user.additional_gids().clone().unwrap_or_default(),
            bounding: cap_mask(caps.bounding())?,
            effective: cap_mask(caps.effective())?,
            permitted: cap_mask(caps.permitted())?,
            rlimits,
            no_new_privs: p.no_new_privileges().unwrap_or(false),
            oom_score_adj: p.oom_score_adj(),
            terminal: p.terminal().unwrap_or(false),
        })
    }
}

pub(super) fn dup_stdio(stdio: &StdioIn, slave: Option<&OwnedFd>) -> Res<()> {
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

pub(super) fn join_namespaces(join: &[(String, i32)]) -> Res<()> {
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
pub(super) fn loopback_up() -> Res<()> {
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

pub(super) fn set_rlimits(limits: &[(u32, u64, u64)]) -> Res<()> {
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
pub(super) fn resolve_command(p: &Process) -> Res<CString> {
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
    let (kind, msg) = if denied {
        (
            ErrorKind::PermissionDenied,
            format!("exec: \"{cmd}\": permission denied"),
        )
    } else if cmd.contains('/') {
        (
            ErrorKind::NotFound,
            format!("exec: \"{cmd}\": stat {cmd}: no such file or directory"),
        )
    } else {
        (
            ErrorKind::NotFound,
            format!("exec: \"{cmd}\": executable file not found in $PATH"),
        )
    };
    Err(RuntimeError::Child { kind, msg })
}

#[repr(C)]
pub(super) struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

pub(super) fn capset(effective: u64, permitted: u64) -> Res<()> {
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

pub(super) fn load_seccomp(bpf: &[u8], flags: u32) -> Res<()> {
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
pub(super) fn become_process(
    p: &Process,
    seccomp: Option<&(Vec<u8>, u32)>,
    cap_last: u32,
) -> Res<()> {
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
pub(super) fn reset_signals() {
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

pub(super) fn exec_process(p: &Process, path: &CStr) -> Res<std::convert::Infallible> {
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

pub(super) fn write_oom_score(adj: Option<i32>) {
    if let Some(a) = adj {
        let _ = fs::write("/proc/self/oom_score_adj", a.to_string());
    }
}

pub(super) fn enter_cwd(p: &Process) -> Res<()> {
    let c = cstr(&p.cwd)?;
    // SAFETY: chdir with a NUL-terminated path.
    if unsafe { libc::chdir(c.as_ptr()) } != 0 {
        return Err(RuntimeError::child(format!(
            "chdir to cwd (\"{}\") set in config.json failed: {}",
            p.cwd,
            io::Error::last_os_error()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn processes_take_their_capabilities_as_masks() {
        let parse = |v| serde_json::from_value::<oci::Process>(v);
        let p = Process::from_spec(
            &parse(json!({
                "args": ["sh"], "cwd": "/", "user": {"uid": 1, "gid": 2, "additionalGids": [3]},
                "capabilities": {"bounding": ["CAP_CHOWN", "CAP_KILL"], "effective": ["CAP_KILL"]},
                "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 20}],
            }))
            .unwrap(),
        )
        .unwrap();
        assert_eq!(p.bounding, 1 | 1 << 5);
        assert_eq!(p.effective, 1 << 5);
        assert_eq!((p.uid, p.gid, p.gids.as_slice()), (1, 2, &[3][..]));
        assert_eq!(p.rlimits, [(libc::RLIMIT_NOFILE, 10, 20)]);
        let no_args = parse(json!({"args": [], "cwd": "/", "user": {"uid": 0, "gid": 0}}));
        assert!(Process::from_spec(&no_args.unwrap()).is_err());
        // A spec the shim cannot read is refused before anything runs.
        let bad_rlimit = json!({"args": ["x"], "cwd": "/", "user": {"uid": 0, "gid": 0},
            "rlimits": [{"type": "RLIMIT_NOPE"}]});
        assert!(parse(bad_rlimit).is_err());
    }
}
