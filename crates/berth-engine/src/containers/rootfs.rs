//! The container's root filesystem: an overlay of the image's layers and a
//! writable layer of its own. Mounts go through a trait so that the engine's
//! logic runs without root in tests.

use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayMount {
    /// Read-only layers, top first.
    pub lower: Vec<PathBuf>,
    /// The writable layer and overlay's work directory; none for a
    /// read-only view.
    pub upper: Option<(PathBuf, PathBuf)>,
    pub target: PathBuf,
}

/// mount(2) copies one page of options.
const MOUNT_DATA_MAX: usize = 4095;

impl OverlayMount {
    /// The mount options, with `lower` named as given.
    pub fn options(&self, lower: &[String]) -> String {
        let mut o = format!("lowerdir={}", lower.join(":"));
        if let Some((upper, work)) = &self.upper {
            o += &format!(",upperdir={},workdir={}", upper.display(), work.display());
        }
        o
    }
}

pub trait Mounter: Send + Sync {
    fn mount_overlay(&self, m: &OverlayMount) -> std::io::Result<()>;
    fn unmount(&self, target: &Path) -> std::io::Result<()>;
    fn is_mounted(&self, target: &Path) -> bool;
}

/// The host's mount(2).
pub struct HostMounter;

impl Mounter for HostMounter {
    fn mount_overlay(&self, m: &OverlayMount) -> std::io::Result<()> {
        std::fs::create_dir_all(&m.target)?;
        if let Some((upper, work)) = &m.upper {
            std::fs::create_dir_all(upper)?;
            std::fs::create_dir_all(work)?;
        }
        let mut names: Vec<String> = m.lower.iter().map(|p| p.display().to_string()).collect();
        // Deep images do not fit one page by their paths (~38 layers under
        // /var/lib/berth). Then each layer is named by a descriptor of this
        // process (`/proc/self/fd/N`, ~18 bytes: room for ~200 layers, past
        // the 125 an image may have); the kernel resolves the names during
        // the mount, after which the descriptors can go.
        let mut held = Vec::new();
        if m.options(&names).len() > MOUNT_DATA_MAX {
            names.clear();
            for p in &m.lower {
                let fd = nix::fcntl::open(
                    p,
                    nix::fcntl::OFlag::O_PATH
                        | nix::fcntl::OFlag::O_DIRECTORY
                        | nix::fcntl::OFlag::O_CLOEXEC,
                    nix::sys::stat::Mode::empty(),
                )?;
                // SAFETY: `open` just returned this descriptor; nothing else owns it.
                held.push(unsafe {
                    <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd)
                });
                names.push(format!("/proc/self/fd/{fd}"));
            }
        }
        let opts = m.options(&names);
        if opts.len() > MOUNT_DATA_MAX {
            return Err(std::io::Error::other(format!(
                "max depth exceeded: {} layers do not fit one overlay mount",
                m.lower.len()
            )));
        }
        let flags = if m.upper.is_none() {
            nix::mount::MsFlags::MS_RDONLY
        } else {
            nix::mount::MsFlags::empty()
        };
        let r = nix::mount::mount(
            Some("overlay"),
            &m.target,
            Some("overlay"),
            flags,
            Some(opts.as_str()),
        );
        drop(held);
        r.map_err(std::io::Error::from)
    }

    fn unmount(&self, target: &Path) -> std::io::Result<()> {
        match nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn is_mounted(&self, target: &Path) -> bool {
        let t = target.display().to_string();
        std::fs::read_to_string("/proc/self/mountinfo")
            .map(|s| s.lines().any(|l| l.split(' ').nth(4) == Some(t.as_str())))
            .unwrap_or(false)
    }
}

/// The layer between a container's image and its writable layer, as dockerd
/// keeps one: the mount points the engine binds over, present from the start
/// so that they never show up as the container's own changes.
pub fn make_init_layer(dir: &Path) -> std::io::Result<()> {
    let tmp = dir.with_extension("tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    for d in ["etc", "dev/pts", "dev/shm", "proc", "sys"] {
        std::fs::create_dir_all(tmp.join(d))?;
    }
    for f in ["etc/hostname", "etc/hosts", "etc/resolv.conf", ".dockerenv"] {
        std::fs::write(tmp.join(f), b"")?;
    }
    std::fs::rename(&tmp, dir)
}

/// Resolves `path` inside `root` as the container would see it: symlinks are
/// followed with `root` as `/`, and `..` never climbs above it. Components that
/// do not exist yet are appended as they are. (The image is untrusted: a link
/// such as `/etc/passwd -> /../../host/file` must not lead out.)
pub fn secure_join(root: &Path, path: &str) -> std::io::Result<PathBuf> {
    let mut pending: Vec<std::ffi::OsString> = Path::new(path)
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut cur = PathBuf::new();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            cur.pop();
            continue;
        }
        let candidate = cur.join(&part);
        match std::fs::symlink_metadata(root.join(&candidate)) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    return Err(std::io::Error::other(format!(
                        "too many levels of symbolic links in {path}"
                    )));
                }
                let target = std::fs::read_link(root.join(&candidate))?;
                if target.is_absolute() {
                    cur = PathBuf::new();
                }
                for c in target.components().rev() {
                    match c {
                        Component::Normal(n) => pending.push(n.to_os_string()),
                        Component::ParentDir => pending.push("..".into()),
                        _ => {}
                    }
                }
            }
            _ => cur = candidate,
        }
    }
    Ok(root.join(cur))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_and_dotdot_stay_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir_all(root.join("etc/real")).unwrap();
        symlink("/../../../", root.join("escape")).unwrap();
        symlink("real", root.join("etc/rel")).unwrap();
        symlink("/etc/real", root.join("abs")).unwrap();
        symlink("loop", root.join("loop")).unwrap();
        assert_eq!(secure_join(&root, "/escape/etc").unwrap(), root.join("etc"));
        assert_eq!(
            secure_join(&root, "../../etc/rel/x").unwrap(),
            root.join("etc/real/x")
        );
        assert_eq!(
            secure_join(&root, "/abs/new/dir").unwrap(),
            root.join("etc/real/new/dir")
        );
        assert_eq!(secure_join(&root, "/").unwrap(), root.join(""));
        assert!(secure_join(&root, "/loop/x").is_err());
    }
}

/// A fake mount table for tests without root: records what is mounted.
#[derive(Default)]
pub struct RecordingMounter {
    mounted: Mutex<Vec<PathBuf>>,
}

impl RecordingMounter {
    pub fn mounted(&self) -> Vec<PathBuf> {
        self.mounted.lock().expect("mounted").clone()
    }
}

impl Mounter for RecordingMounter {
    fn mount_overlay(&self, m: &OverlayMount) -> std::io::Result<()> {
        std::fs::create_dir_all(&m.target)?;
        self.mounted.lock().expect("mounted").push(m.target.clone());
        Ok(())
    }
    fn unmount(&self, target: &Path) -> std::io::Result<()> {
        self.mounted
            .lock()
            .expect("mounted")
            .retain(|p| p != target);
        Ok(())
    }
    fn is_mounted(&self, target: &Path) -> bool {
        self.mounted
            .lock()
            .expect("mounted")
            .iter()
            .any(|p| p == target)
    }
}
