//! The container's root filesystem: an overlay of the image's layers and a
//! writable layer of its own. Mounts go through a trait so that the engine's
//! logic runs without root in tests.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayMount {
    pub lower: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub target: PathBuf,
}

impl OverlayMount {
    pub fn options(&self) -> String {
        let lower: Vec<String> = self.lower.iter().map(|p| p.display().to_string()).collect();
        format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            self.upper.display(),
            self.work.display()
        )
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
        std::fs::create_dir_all(&m.upper)?;
        std::fs::create_dir_all(&m.work)?;
        let opts = m.options();
        if opts.len() >= 4000 {
            // The kernel takes one page of options; deep images need shorter paths.
            return Err(std::io::Error::other(
                "too many layers for one overlay mount",
            ));
        }
        nix::mount::mount(
            Some("overlay"),
            &m.target,
            Some("overlay"),
            nix::mount::MsFlags::empty(),
            Some(opts.as_str()),
        )
        .map_err(std::io::Error::from)
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
