//! The container's filesystem view: the spec's mounts under the rootfs
//! (targets resolved inside it), /sys/fs/cgroup, device nodes, the console
//! pty, masked and read-only paths.

use super::*;

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
pub fn mount_op(m: &Mount) -> MountOp {
    let mut op = MountOp {
        destination: m.destination().to_string_lossy().into_owned(),
        kind: m.typ().clone().unwrap_or_default(),
        source: m
            .source()
            .as_ref()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        ..Default::default()
    };
    let mut data = Vec::new();
    for o in m.options().iter().flatten() {
        let o = o.as_str();
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

pub(super) fn sys_mount(
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

pub(super) fn openat2(dirfd: RawFd, path: &str, flags: i32, resolve: u64) -> io::Result<OwnedFd> {
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

pub(super) const IN_ROOT: u64 = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;

/// Opens `rel` inside the rootfs (symlinks resolved as if the rootfs were /),
/// creating what is missing of it — directories, and an empty file at the end
/// when `file` — along the path a symlink in the image points to, as runc
/// does; never outside the rootfs.
pub(super) fn ensure_in_root(root: RawFd, rel: &str, file: bool) -> Res<OwnedFd> {
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
                return Err(RuntimeError::child(format!("too many symlinks in {rel}")));
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

pub(super) fn fd_path(fd: &OwnedFd) -> CString {
    CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("no NUL")
}

/// Mounts `m` inside the rootfs (before pivot_root).
pub(super) fn mount_in_root(root: RawFd, m: &MountOp, plan: &InitPlan) -> Res<()> {
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
pub(super) fn mount_cgroups(root: RawFd, m: &MountOp, plan: &InitPlan) -> Res<()> {
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
pub(super) fn make_devices(root: RawFd, extra: &[(String, u32, u64, u32, u32)]) -> Res<()> {
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
    // `--device`s: made where asked (parents resolved inside the root), as
    // the host has them.
    for (path, mode, dev, uid, gid) in extra {
        let (parent, name) = path
            .trim_end_matches('/')
            .rsplit_once('/')
            .unwrap_or(("", path));
        let what = format!("creating the device {path}");
        let pfd = ensure_in_root(root, parent, false)?;
        let dir = openat2(
            pfd.as_raw_fd(),
            ".",
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            0,
        )
        .map_err(os(what.clone()))?;
        let cname = cstr(name)?;
        // SAFETY: unlinkat/mknodat/fchownat on a name under a directory we hold.
        unsafe {
            libc::unlinkat(dir.as_raw_fd(), cname.as_ptr(), 0);
            if libc::mknodat(dir.as_raw_fd(), cname.as_ptr(), *mode, *dev) < 0 {
                return Err(last_err(&what));
            }
            libc::fchownat(
                dir.as_raw_fd(),
                cname.as_ptr(),
                *uid,
                *gid,
                libc::AT_SYMLINK_NOFOLLOW,
            );
        }
    }
    Ok(())
}

/// A pty from the container's devpts: the master goes to the shim, the
/// slave becomes the process's stdio and controlling terminal.
pub(super) fn open_console(
    root: Option<RawFd>,
    sock: RawFd,
    bind_console: bool,
    uid: u32,
) -> Res<OwnedFd> {
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

/// The mount flags a path is mounted with now, for remounts that must keep
/// them.
pub(super) fn mounted_flags(path: &CStr) -> libc::c_ulong {
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

pub(super) fn mask_paths(masked: &[String], readonly: &[String]) -> Res<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(v: serde_json::Value) -> Mount {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn mount_options_become_flags_and_data() {
        let op = mount_op(&m(
            json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        ));
        assert_eq!(op.flags, libc::MS_NOSUID | libc::MS_NOEXEC);
        assert_eq!(op.data, "newinstance,ptmxmode=0666,mode=0620,gid=5");
        assert!(!op.bind);
        let op = mount_op(&m(
            json!({"destination": "/data", "type": "bind", "source": "/v",
            "options": ["rbind", "rprivate", "ro"]}),
        ));
        assert!(op.bind);
        assert_eq!(op.flags, libc::MS_REC | libc::MS_RDONLY);
        assert_eq!(op.propagation, libc::MS_PRIVATE | libc::MS_REC);
        let op = mount_op(&m(
            json!({"destination": "/x", "type": "tmpfs", "source": "tmpfs",
            "options": ["ro", "rw", "size=1k"]}),
        ));
        assert_eq!(op.flags, 0, "a later rw wins over an earlier ro");
        assert_eq!(op.data, "size=1k");
    }
}
