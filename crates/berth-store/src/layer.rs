//! Unpacked layers, shared by every image and container: `layers/<chain-hex>/diff`.
//! Tars are untrusted: entries that escape the root are refused, whiteouts become
//! overlayfs whiteouts (0/0 character devices and the opaque xattr).

use crate::content::{digest_hex, sha256_digest};
use crate::fsutil::{remove_tree, write_atomic};
use crate::StoreError;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerMeta {
    pub chain_id: String,
    pub diff_id: String,
    pub parent: Option<String>,
    pub size: u64,
    /// A pulled layer keeps the compressed blob it came as instead of its
    /// plain tar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packed: Option<Packed>,
}

/// A layer's compressed blob in the content store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Packed {
    pub digest: String,
    pub media_type: String,
    /// The plain tar's length, for archives that must say it up front.
    pub tar_size: u64,
}

#[derive(Debug, Clone)]
pub struct LayerStore {
    root: PathBuf,
}

/// OCI chain id: the digest of the parent chain id, a space and the diff id.
pub fn chain_id(parent: Option<&str>, diff_id: &str) -> String {
    match parent {
        None => diff_id.to_string(),
        Some(p) => sha256_digest(format!("{p} {diff_id}").as_bytes()),
    }
}

/// Turns a tar entry name into a relative path, refusing absolute paths and `..`.
pub fn clean_entry_path(raw: &Path) -> Result<PathBuf, StoreError> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::CurDir => {}
            Component::Normal(p) => out.push(p),
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(StoreError::UnsafeTarEntry(raw.display().to_string()))
            }
        }
    }
    Ok(out)
}

/// Makes sure every directory above `rel` inside `root` is a real directory (never a
/// symlink that could lead out), creating missing ones.
fn ensure_parents(root: &Path, rel: &Path) -> Result<(), StoreError> {
    let mut cur = root.to_path_buf();
    let Some(parent) = rel.parent() else {
        return Ok(());
    };
    for c in parent.components() {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(StoreError::UnsafeTarEntry(rel.display().to_string()))
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                fs::remove_file(&cur)?;
                fs::create_dir(&cur)?;
            }
            Err(_) => fs::create_dir(&cur)?,
        }
    }
    Ok(())
}

/// Unpacks a layer tar into `dst` (which must exist), whiteouts included.
/// Returns the bytes of content.
pub fn unpack_layer<R: Read>(reader: R, dst: &Path) -> Result<u64, StoreError> {
    unpack(reader, dst, true, false)
}

/// Unpacks an ordinary tar into the directory `dst` (`docker cp` into a
/// container): `.wh.` names are plain files, and with
/// `no_overwrite_dir_non_dir` a directory never replaces a non-directory or
/// the other way round.
pub fn unpack_into<R: Read>(
    reader: R,
    dst: &Path,
    no_overwrite_dir_non_dir: bool,
) -> Result<u64, StoreError> {
    unpack(reader, dst, false, no_overwrite_dir_non_dir)
}

/// What an entry or an existing path is, for [`check_into`].
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Dir,
    Symlink,
    Other,
}

/// Reads a whole tar for [`unpack_into`] without writing anything: every
/// header and every byte of content, each name, each hard link's target and
/// each parent directory, against `dst` as the entries before would leave
/// it. A tar that passes fails to unpack only on the host's own errors
/// (a full disk), so a rejected `docker cp` leaves no half-extracted tree.
pub fn check_into<R: Read>(
    reader: R,
    dst: &Path,
    no_overwrite_dir_non_dir: bool,
) -> Result<(), StoreError> {
    let mut seen: std::collections::HashMap<PathBuf, Kind> = Default::default();
    let on_disk = |rel: &Path| -> Option<Kind> {
        let m = fs::symlink_metadata(dst.join(rel)).ok()?;
        Some(if m.file_type().is_symlink() {
            Kind::Symlink
        } else if m.is_dir() {
            Kind::Dir
        } else {
            Kind::Other
        })
    };
    let parents = |seen: &mut std::collections::HashMap<PathBuf, Kind>,
                   rel: &Path|
     -> Result<(), StoreError> {
        let mut cur = PathBuf::new();
        for c in rel.parent().into_iter().flat_map(|p| p.components()) {
            cur.push(c);
            match seen.get(&cur).copied().or_else(|| on_disk(&cur)) {
                Some(Kind::Symlink) => {
                    return Err(StoreError::UnsafeTarEntry(rel.display().to_string()))
                }
                Some(Kind::Dir) => {}
                // unpack makes (or remakes) it a directory.
                _ => {
                    seen.insert(cur.clone(), Kind::Dir);
                }
            }
        }
        Ok(())
    };
    // Anything unreadable is the tar's fault here: nothing is written yet.
    let bad = |e: std::io::Error| StoreError::InvalidArchive(e.to_string());
    let mut ar = tar::Archive::new(reader);
    for entry in ar.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let rel = clean_entry_path(&entry.path().map_err(bad)?)?;
        std::io::copy(&mut entry, &mut std::io::sink()).map_err(bad)?;
        if rel.as_os_str().is_empty() {
            continue;
        }
        parents(&mut seen, &rel)?;
        let kind = entry.header().entry_type();
        if kind.is_hard_link() {
            let link = entry
                .link_name()
                .map_err(bad)?
                .ok_or_else(|| StoreError::UnsafeTarEntry(rel.display().to_string()))?;
            let link_rel = clean_entry_path(&link)?;
            parents(&mut seen, &link_rel)?;
            if seen
                .get(&link_rel)
                .copied()
                .or_else(|| on_disk(&link_rel))
                .is_none()
            {
                return Err(StoreError::UnsafeTarEntry(format!(
                    "{}: hard link to missing {}",
                    rel.display(),
                    link.display()
                )));
            }
        }
        let existing = seen.get(&rel).copied().or_else(|| on_disk(&rel));
        if let (true, Some(e)) = (no_overwrite_dir_non_dir, existing) {
            let shown = Path::new("/").join(&rel);
            if e == Kind::Dir && !kind.is_dir() {
                return Err(StoreError::InvalidArchive(format!(
                    "cannot overwrite directory {shown:?} with non-directory {shown:?}"
                )));
            }
            if e != Kind::Dir && kind.is_dir() {
                return Err(StoreError::InvalidArchive(format!(
                    "cannot overwrite non-directory {shown:?} with directory {shown:?}"
                )));
            }
        }
        let k = if kind.is_dir() {
            Kind::Dir
        } else if kind.is_symlink() {
            Kind::Symlink
        } else {
            Kind::Other
        };
        seen.insert(rel, k);
    }
    Ok(())
}

fn unpack<R: Read>(
    reader: R,
    dst: &Path,
    whiteouts: bool,
    no_overwrite_dir_non_dir: bool,
) -> Result<u64, StoreError> {
    let mut ar = tar::Archive::new(reader);
    ar.set_preserve_permissions(true);
    ar.set_preserve_ownerships(true);
    ar.set_unpack_xattrs(true);
    ar.set_preserve_mtime(true);
    ar.set_overwrite(true);
    let mut size = 0u64;
    let mut dirs_mtime = Vec::new();
    for entry in ar.entries()? {
        let mut entry = entry?;
        let rel = clean_entry_path(&entry.path()?)?;
        if rel.as_os_str().is_empty() {
            continue;
        }
        ensure_parents(dst, &rel)?;
        let name = rel
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if whiteouts && name == ".wh..wh..opq" {
            let dir = dst.join(rel.parent().unwrap_or(Path::new("")));
            fs::create_dir_all(&dir)?;
            set_opaque(&dir)?;
            continue;
        }
        if let Some(hidden) = name.strip_prefix(".wh.").filter(|_| whiteouts) {
            let target = dst.join(rel.with_file_name(hidden));
            let _ = remove_tree(&target);
            let _ = fs::remove_file(&target);
            make_whiteout(&target)?;
            continue;
        }
        let kind = entry.header().entry_type();
        if kind.is_hard_link() {
            let link = entry
                .link_name()?
                .ok_or_else(|| StoreError::UnsafeTarEntry(rel.display().to_string()))?;
            let link_rel = clean_entry_path(&link)?;
            ensure_parents(dst, &link_rel)?;
            let src = dst.join(&link_rel);
            if fs::symlink_metadata(&src).is_err() {
                return Err(StoreError::UnsafeTarEntry(format!(
                    "{}: hard link to missing {}",
                    rel.display(),
                    link.display()
                )));
            }
        }
        let target = dst.join(&rel);
        if no_overwrite_dir_non_dir {
            if let Ok(m) = fs::symlink_metadata(&target) {
                let shown = Path::new("/").join(&rel);
                if m.is_dir() && !kind.is_dir() {
                    return Err(StoreError::InvalidArchive(format!(
                        "cannot overwrite directory {shown:?} with non-directory {shown:?}"
                    )));
                }
                if !m.is_dir() && kind.is_dir() {
                    return Err(StoreError::InvalidArchive(format!(
                        "cannot overwrite non-directory {shown:?} with directory {shown:?}"
                    )));
                }
            }
        }
        if kind.is_dir() {
            if let Ok(m) = fs::symlink_metadata(&target) {
                if !m.is_dir() {
                    fs::remove_file(&target)?;
                }
            }
        } else if let Ok(m) = fs::symlink_metadata(&target) {
            if m.is_dir() && !m.file_type().is_symlink() {
                remove_tree(&target)?;
            }
        }
        size += entry.header().size().unwrap_or(0);
        if !entry.unpack_in(dst)? {
            return Err(StoreError::UnsafeTarEntry(rel.display().to_string()));
        }
        if kind.is_dir() {
            if let Ok(mtime) = entry.header().mtime() {
                dirs_mtime.push((target, mtime));
            }
        }
    }
    // Creating entries inside a directory bumps its mtime; restore the tar's.
    for (dir, mtime) in dirs_mtime.into_iter().rev() {
        let t = nix::sys::time::TimeVal::new(mtime as i64, 0);
        let _ = nix::sys::stat::lutimes(&dir, &t, &t);
    }
    Ok(size)
}

fn make_whiteout(path: &Path) -> Result<(), StoreError> {
    nix::sys::stat::mknod(
        path,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::empty(),
        0,
    )
    .map_err(|e| StoreError::Io(e.into()))
}

fn set_opaque(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| StoreError::UnsafeTarEntry(dir.display().to_string()))?;
    // SAFETY: both strings are NUL-terminated and outlive the call.
    let r = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            b"y".as_ptr().cast(),
            1,
            0,
        )
    };
    if r != 0 {
        return Err(StoreError::Io(std::io::Error::last_os_error()));
    }
    Ok(())
}

impl LayerStore {
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        fs::create_dir_all(root)?;
        // Unpacks interrupted by a crash leave `tmp-*` directories behind.
        for e in fs::read_dir(root)? {
            let e = e?;
            if e.file_name().to_string_lossy().starts_with("tmp-") {
                let _ = remove_tree(&e.path());
            }
        }
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    fn dir(&self, chain: &str) -> Result<PathBuf, StoreError> {
        Ok(self.root.join(digest_hex(chain)?))
    }

    pub fn diff_path(&self, chain: &str) -> Result<PathBuf, StoreError> {
        Ok(self.dir(chain)?.join("diff"))
    }

    pub fn get(&self, chain: &str) -> Option<LayerMeta> {
        let p = self.dir(chain).ok()?.join("meta.json");
        serde_json::from_slice(&fs::read(p).ok()?).ok()
    }

    /// Unpacks the layer tar `reader` (whose digest is `diff_id`) on top of `parent`.
    /// A layer already present is reused.
    pub fn create<R: Read>(
        &self,
        parent: Option<&str>,
        diff_id: &str,
        reader: R,
    ) -> Result<LayerMeta, StoreError> {
        self.create_checked(parent, diff_id, reader, |_| Ok(None))
    }

    /// `create`, with `check` given the reader once the tar is unpacked and
    /// before the layer takes its name: a layer whose bytes turn out wrong
    /// is never visible. `check` says which compressed blob, if any, keeps
    /// the layer's bytes.
    pub fn create_checked<R: Read>(
        &self,
        parent: Option<&str>,
        diff_id: &str,
        mut reader: R,
        check: impl FnOnce(R) -> Result<Option<Packed>, StoreError>,
    ) -> Result<LayerMeta, StoreError> {
        let chain = chain_id(parent, diff_id);
        if let Some(m) = self.get(&chain) {
            return Ok(m);
        }
        let tmp = self
            .root
            .join(format!("tmp-{:016x}", rand::random::<u64>()));
        let res = (|| {
            fs::create_dir_all(tmp.join("diff"))?;
            let size = unpack_layer(&mut reader, &tmp.join("diff"))?;
            let packed = check(reader)?;
            let meta = LayerMeta {
                chain_id: chain.clone(),
                diff_id: diff_id.to_string(),
                parent: parent.map(str::to_string),
                size,
                packed,
            };
            write_atomic(&tmp.join("meta.json"), &serde_json::to_vec(&meta)?)?;
            let dst = self.dir(&chain)?;
            fs::rename(&tmp, &dst)?;
            crate::fsutil::sync_dir(&self.root)?;
            Ok(meta)
        })();
        if res.is_err() {
            let _ = remove_tree(&tmp);
        }
        res
    }

    pub fn remove(&self, chain: &str) -> Result<(), StoreError> {
        let dir = self.dir(chain)?;
        // Rename first so a crash mid-delete never leaves a half layer under its name.
        let trash = self
            .root
            .join(format!("tmp-{:016x}", rand::random::<u64>()));
        if fs::rename(&dir, &trash).is_ok() {
            remove_tree(&trash)?;
        }
        Ok(())
    }

    pub fn list(&self) -> Vec<String> {
        let Ok(rd) = fs::read_dir(&self.root) else {
            return vec![];
        };
        rd.filter_map(|e| e.ok())
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().to_string();
                (n.len() == 64).then(|| format!("sha256:{n}"))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;

    /// (name, type, content, link target).
    type Entry<'a> = (&'a str, tar::EntryType, &'a [u8], Option<&'a str>);

    fn tar_of(entries: &[Entry]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
            if let Some(l) = link {
                h.set_link_name(l).unwrap();
            }
            // Bypass the builder's own path checks: hostile tars are what we test.
            let bytes = name.as_bytes();
            h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn unpacks_files_dirs_and_links() {
        let d = tempfile::tempdir().unwrap();
        let t = tar_of(&[
            ("./bin/", tar::EntryType::Directory, b"", None),
            ("./bin/sh", tar::EntryType::Regular, b"#!", None),
            ("bin/ls", tar::EntryType::Symlink, b"", Some("/bin/sh")),
            ("bin/hl", tar::EntryType::Link, b"", Some("bin/sh")),
        ]);
        unpack_layer(&t[..], d.path()).unwrap();
        assert_eq!(fs::read(d.path().join("bin/sh")).unwrap(), b"#!");
        assert_eq!(
            fs::read_link(d.path().join("bin/ls")).unwrap(),
            Path::new("/bin/sh")
        );
        assert_eq!(fs::read(d.path().join("bin/hl")).unwrap(), b"#!");
    }

    #[test]
    fn check_into_sees_what_unpack_would_refuse_and_writes_nothing() {
        use tar::EntryType as E;
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("dir")).unwrap();
        fs::write(d.path().join("file"), "x").unwrap();
        std::os::unix::fs::symlink("/etc", d.path().join("out")).unwrap();
        let ok = ("a/b", E::Regular, &b"1"[..], None);
        let refused: [&[Entry]; 5] = [
            &[ok, ("../x", E::Regular, b"", None)],
            &[
                ok,
                ("l", E::Symlink, b"", Some("/etc")),
                ("l/passwd", E::Regular, b"", None),
            ],
            &[ok, ("out/passwd", E::Regular, b"", None)],
            &[ok, ("h", E::Link, b"", Some("nothing"))],
            &[ok, ("dir", E::Regular, b"", None)],
        ];
        for t in refused {
            assert!(check_into(&tar_of(t)[..], d.path(), true).is_err());
        }
        assert!(!d.path().join("a").exists());
        // Without the flag a file may replace a directory; a hard link may
        // point at an earlier entry.
        let fine = tar_of(&[
            ok,
            ("dir", E::Regular, b"", None),
            ("h", E::Link, b"", Some("a/b")),
        ]);
        check_into(&fine[..], d.path(), false).unwrap();
        assert!(check_into(&fine[..], d.path(), true).is_err());
        unpack_into(&fine[..], d.path(), false).unwrap();
        assert_eq!(fs::read(d.path().join("h")).unwrap(), b"1");
    }

    #[test]
    fn refuses_parent_dir_entries() {
        let d = tempfile::tempdir().unwrap();
        let t = tar_of(&[("../evil", tar::EntryType::Regular, b"x", None)]);
        assert!(matches!(
            unpack_layer(&t[..], &d.path().join("")),
            Err(StoreError::UnsafeTarEntry(_))
        ));
    }

    #[test]
    fn refuses_absolute_entries() {
        let d = tempfile::tempdir().unwrap();
        let t = tar_of(&[("/etc/evil", tar::EntryType::Regular, b"x", None)]);
        assert!(unpack_layer(&t[..], d.path()).is_err());
    }

    #[test]
    fn refuses_writes_through_symlinks() {
        let outside = tempfile::tempdir().unwrap();
        let d = tempfile::tempdir().unwrap();
        let target = outside.path().to_str().unwrap().to_string();
        let t = tar_of(&[
            ("link", tar::EntryType::Symlink, b"", Some(&target)),
            ("link/pwned", tar::EntryType::Regular, b"x", None),
        ]);
        assert!(unpack_layer(&t[..], d.path()).is_err());
        assert!(!outside.path().join("pwned").exists());
    }

    #[test]
    fn refuses_hardlinks_out() {
        let d = tempfile::tempdir().unwrap();
        let t = tar_of(&[("hl", tar::EntryType::Link, b"", Some("../../etc/passwd"))]);
        assert!(unpack_layer(&t[..], d.path()).is_err());
    }

    #[test]
    fn whiteouts_become_overlay_whiteouts() {
        if !nix::unistd::geteuid().is_root() {
            return; // mknod of a 0/0 device and trusted.* xattrs need root
        }
        let d = tempfile::tempdir().unwrap();
        let t = tar_of(&[
            ("etc/", tar::EntryType::Directory, b"", None),
            ("etc/.wh.passwd", tar::EntryType::Regular, b"", None),
            ("var/.wh..wh..opq", tar::EntryType::Regular, b"", None),
        ]);
        unpack_layer(&t[..], d.path()).unwrap();
        let m = fs::symlink_metadata(d.path().join("etc/passwd")).unwrap();
        assert!(m.file_type().is_char_device());
        let mut buf = [0u8; 4];
        let c = std::ffi::CString::new(d.path().join("var").to_str().unwrap()).unwrap();
        // SAFETY: valid C strings and a buffer of the given length.
        let n = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                c"trusted.overlay.opaque".as_ptr(),
                buf.as_mut_ptr().cast(),
                4,
            )
        };
        assert_eq!(n, 1);
        assert_eq!(buf[0], b'y');
    }

    #[test]
    fn layers_are_shared_by_chain_id() {
        let d = tempfile::tempdir().unwrap();
        let ls = LayerStore::open(d.path()).unwrap();
        let t = tar_of(&[("f", tar::EntryType::Regular, b"1", None)]);
        let diff = sha256_digest(&t);
        let a = ls.create(None, &diff, &t[..]).unwrap();
        let b = ls.create(None, &diff, &b""[..]).unwrap();
        assert_eq!(a.chain_id, b.chain_id);
        assert_eq!(ls.list().len(), 1);
        let child = chain_id(Some(&a.chain_id), &diff);
        assert_ne!(child, a.chain_id);
    }
}
