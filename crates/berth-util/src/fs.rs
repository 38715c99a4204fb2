//! Durable file writes: temp file → fsync → rename → fsync of the directory.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Writes `data` to `path` so that a crash leaves either the old or the new content.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    write_via_temp(path, data, true)
}

/// Atomic against a crash of this process, not of the machine: for the exec
/// root, whose files a reboot makes meaningless anyway. Saves two fsyncs.
pub fn write_replace(path: &Path, data: &[u8]) -> io::Result<()> {
    write_via_temp(path, data, false)
}

/// As `write_atomic` (or `write_replace` when not `durable`), but only into
/// a directory that exists: a late write must not bring back a directory
/// that was removed meanwhile.
pub fn write_in_existing_dir(path: &Path, data: &[u8], durable: bool) -> io::Result<()> {
    write_into(path, data, durable)
}

fn write_via_temp(path: &Path, data: &[u8], durable: bool) -> io::Result<()> {
    fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
    write_into(path, data, durable)
}

fn write_into(path: &Path, data: &[u8], durable: bool) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("f"),
        rand::random::<u32>()
    ));
    let res = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        if durable {
            f.sync_all()?;
        }
        fs::rename(&tmp, path)?;
        if durable {
            sync_dir(dir)?;
        }
        Ok(())
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Removes a tree, however deep. Trees come from images and containers, so
/// their depth is untrusted: a container can nest directories far past
/// `PATH_MAX` and past what a recursive walk's stack can hold. This walk holds
/// one directory open at a time, goes down by name and back up through `..`,
/// and keeps only the names on the way in memory.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    use nix::dir::{Dir, Type};
    use nix::fcntl::{AtFlags, OFlag};
    use nix::sys::stat::Mode;
    use nix::unistd::UnlinkatFlags;
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
        Ok(m) if !m.is_dir() => return fs::remove_file(path),
        Ok(_) => {}
    }
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut dir = Dir::open(path, flags, Mode::empty())?;
    let mut down: Vec<std::ffi::OsString> = Vec::new();
    loop {
        let fd = std::os::fd::AsRawFd::as_raw_fd(&dir);
        let mut child = None;
        for e in dir.iter() {
            let e = e?;
            let name = e.file_name();
            if name.to_bytes() == b"." || name.to_bytes() == b".." {
                continue;
            }
            let is_dir = match e.file_type() {
                Some(t) => t == Type::Directory,
                None => nix::sys::stat::fstatat(Some(fd), name, AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)?,
            };
            if is_dir {
                child = Some(name.to_owned());
                break;
            }
            match nix::unistd::unlinkat(Some(fd), name, UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(name) = child {
            let next = Dir::openat(Some(fd), name.as_c_str(), flags, Mode::empty())?;
            down.push(std::ffi::OsStr::from_bytes(name.to_bytes()).to_os_string());
            dir = next;
            continue;
        }
        // `dir` is empty now: remove it from its parent, and go on there.
        let Some(name) = down.pop() else { break };
        let parent = Dir::openat(Some(fd), "..", flags, Mode::empty())?;
        let pfd = std::os::fd::AsRawFd::as_raw_fd(&parent);
        match nix::unistd::unlinkat(Some(pfd), name.as_os_str(), UnlinkatFlags::RemoveDir) {
            Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(e.into()),
        }
        dir = parent;
    }
    drop(dir);
    match fs::remove_dir(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Bytes of the regular files under `p` (not following links). Iterative:
/// see [`remove_tree`] on depth.
pub fn dir_size(p: &Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![p.to_path_buf()];
    while let Some(d) = pending.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => pending.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chain of `depth` directories under `root`, made relative to each
    /// level so that it can go past PATH_MAX; a file in the deepest.
    fn deep_chain(root: &Path, depth: usize) {
        use nix::fcntl::{open, openat, OFlag};
        use nix::sys::stat::{mkdirat, Mode};
        let dir = OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
        let mut fd = open(root, dir, Mode::empty()).unwrap();
        for _ in 0..depth {
            mkdirat(Some(fd), "dd", Mode::from_bits_truncate(0o755)).unwrap();
            let next = openat(Some(fd), "dd", dir, Mode::empty()).unwrap();
            nix::unistd::close(fd).unwrap();
            fd = next;
        }
        let f = openat(
            Some(fd),
            "leaf",
            OFlag::O_CREAT | OFlag::O_WRONLY,
            Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        nix::unistd::close(f).unwrap();
        nix::unistd::close(fd).unwrap();
    }

    #[test]
    fn remove_tree_takes_trees_deeper_than_path_max_and_the_stack() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("t");
        fs::create_dir(&root).unwrap();
        fs::write(root.join("a"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc", root.join("link")).unwrap();
        fs::create_dir_all(root.join("b/c")).unwrap();
        fs::write(root.join("b/c/f"), b"y").unwrap();
        // 3 bytes a level: 20,000 levels is 60 KB of path, past PATH_MAX.
        deep_chain(&root, 20_000);
        remove_tree(&root).unwrap();
        assert!(!root.exists());
        assert!(
            Path::new("/etc").exists(),
            "links are removed, not followed"
        );
        remove_tree(&root).unwrap();
        let f = d.path().join("file");
        fs::write(&f, b"z").unwrap();
        remove_tree(&f).unwrap();
        assert!(!f.exists());
    }

    #[test]
    fn dir_size_counts_regular_files() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("x/y")).unwrap();
        fs::write(d.path().join("x/y/f"), vec![0; 100]).unwrap();
        fs::write(d.path().join("g"), vec![0; 20]).unwrap();
        assert_eq!(dir_size(d.path()), 120);
    }
}
