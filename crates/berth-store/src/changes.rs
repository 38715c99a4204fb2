//! What a container changed: its overlay upper directory read back as Docker's
//! change list (`docker container diff`) and as a layer tar with whiteouts
//! (`commit`, build steps).

use crate::StoreError;
use std::collections::HashMap;
use std::ffi::CString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Modified = 0,
    Added = 1,
    Deleted = 2,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Absolute, as the container sees it.
    pub path: String,
    pub kind: ChangeKind,
}

const OPAQUE: &str = "trusted.overlay.opaque";

fn is_whiteout(m: &fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|e| io::Error::other(e.to_string()))
}

/// The extended attributes of `p` (not following links), by name.
pub fn xattrs(p: &Path) -> io::Result<Vec<(String, Vec<u8>)>> {
    let c = cpath(p)?;
    let mut names = vec![0u8; 4096];
    // SAFETY: valid C string, buffer of the given size.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOTSUP) => Ok(Vec::new()),
            _ => Err(e),
        };
    }
    let mut out = Vec::new();
    for name in names[..n as usize]
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
    {
        let cname = CString::new(name).map_err(|e| io::Error::other(e.to_string()))?;
        let mut val = vec![0u8; 65536];
        // SAFETY: valid C strings, buffer of the given size.
        let len = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                cname.as_ptr(),
                val.as_mut_ptr().cast(),
                val.len(),
            )
        };
        if len >= 0 {
            val.truncate(len as usize);
            out.push((String::from_utf8_lossy(name).into_owned(), val));
        }
    }
    Ok(out)
}

fn is_opaque(p: &Path) -> bool {
    xattrs(p)
        .map(|x| x.iter().any(|(k, v)| k == OPAQUE && v == b"y"))
        .unwrap_or(false)
}

/// Every entry under `root`, parents before children, siblings by name.
/// Iterative: a container's writable layer can nest deeper than a stack.
fn walk(root: &Path) -> io::Result<Vec<PathBuf>> {
    let list = |rel: &Path| -> io::Result<Vec<PathBuf>> {
        let mut names: Vec<_> = fs::read_dir(root.join(rel))?
            .map(|e| e.map(|e| rel.join(e.file_name())))
            .collect::<io::Result<_>>()?;
        // Reversed, so that popping gives them in order.
        names.sort_by(|a, b| b.cmp(a));
        Ok(names)
    };
    let mut out = Vec::new();
    let mut stack = vec![list(Path::new(""))?];
    while let Some(top) = stack.last_mut() {
        let Some(r) = top.pop() else {
            stack.pop();
            continue;
        };
        let is_dir = fs::symlink_metadata(root.join(&r))?.is_dir();
        out.push(r.clone());
        if is_dir {
            stack.push(list(&r)?);
        }
    }
    Ok(out)
}

/// Does `rel` exist in the stacked read-only layers (`lowers`, top first)?
fn in_lowers(lowers: &[PathBuf], rel: &Path) -> bool {
    for l in lowers {
        // An opaque directory on the way hides everything below it.
        let mut hidden = false;
        let mut acc = PathBuf::new();
        for c in rel.parent().into_iter().flat_map(|p| p.components()) {
            acc.push(c);
            if is_opaque(&l.join(&acc)) {
                hidden = true;
            }
        }
        match fs::symlink_metadata(l.join(rel)) {
            Ok(m) if is_whiteout(&m) => return false,
            Ok(_) => return true,
            Err(_) if hidden => return false,
            Err(_) => {}
        }
    }
    false
}

/// Docker's change list for a container whose writable layer is `upper`.
pub fn changes(upper: &Path, lowers: &[PathBuf]) -> io::Result<Vec<Change>> {
    let mut out = Vec::new();
    for rel in walk(upper)? {
        let m = fs::symlink_metadata(upper.join(&rel))?;
        let path = format!("/{}", rel.display());
        let kind = if is_whiteout(&m) {
            ChangeKind::Deleted
        } else if in_lowers(lowers, &rel) {
            ChangeKind::Modified
        } else {
            ChangeKind::Added
        };
        out.push(Change { path, kind });
    }
    Ok(out)
}

/// Writes `upper` as a layer tar: whiteout devices become `.wh.` files, opaque
/// directories get `.wh..wh..opq`, hard links stay links; ownership, modes,
/// times and (non-overlay) xattrs are kept.
pub fn write_layer_tar<W: Write>(upper: &Path, w: W) -> Result<(), StoreError> {
    let mut b = tar::Builder::new(w);
    b.mode(tar::HeaderMode::Complete);
    b.follow_symlinks(false);
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    for rel in walk(upper)? {
        let full = upper.join(&rel);
        let m = fs::symlink_metadata(&full)?;
        if is_whiteout(&m) {
            let name = rel.file_name().unwrap_or_default();
            let mut wh = std::ffi::OsString::from(".wh.");
            wh.push(name);
            let p = rel.with_file_name(wh);
            append_empty(&mut b, &p, &m)?;
            continue;
        }
        let xs: Vec<(String, Vec<u8>)> = xattrs(&full)?
            .into_iter()
            .filter(|(k, _)| !k.starts_with("trusted.overlay."))
            .collect();
        if !xs.is_empty() {
            let pax: Vec<(String, Vec<u8>)> = xs
                .iter()
                .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.clone()))
                .collect();
            b.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
        }
        if m.is_file() && m.nlink() > 1 {
            if let Some(first) = links.get(&(m.dev(), m.ino())) {
                let mut h = header_for(&m, tar::EntryType::Link);
                h.set_size(0);
                b.append_link(&mut h, &rel, first)?;
                continue;
            }
            links.insert((m.dev(), m.ino()), rel.clone());
        }
        b.append_path_with_name(&full, &rel)?;
        if m.is_dir() && is_opaque(&full) {
            append_empty(&mut b, &rel.join(".wh..wh..opq"), &m)?;
        }
    }
    b.finish()?;
    Ok(())
}

fn header_for(m: &fs::Metadata, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(m.mode() & 0o7777);
    h.set_uid(m.uid() as u64);
    h.set_gid(m.gid() as u64);
    h.set_mtime(m.mtime().max(0) as u64);
    h
}

fn append_empty<W: Write>(
    b: &mut tar::Builder<W>,
    path: &Path,
    m: &fs::Metadata,
) -> io::Result<()> {
    let mut h = header_for(m, tar::EntryType::Regular);
    h.set_mode(0o600);
    h.set_size(0);
    b.append_data(&mut h, path, io::empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::unpack_layer;

    fn root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn walk_puts_parents_first_and_subtrees_together() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("a/b")).unwrap();
        fs::write(d.path().join("a/b/f"), "x").unwrap();
        fs::write(d.path().join("a/z"), "x").unwrap();
        fs::write(d.path().join("c"), "x").unwrap();
        let names: Vec<String> = walk(d.path())
            .unwrap()
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        assert_eq!(names, ["a", "a/b", "a/b/f", "a/z", "c"]);
    }

    #[test]
    fn added_modified_deleted_and_the_tar_round_trip() {
        if !root() {
            return; // whiteouts are 0/0 character devices
        }
        let d = tempfile::tempdir().unwrap();
        let lower = d.path().join("lower");
        let upper = d.path().join("upper");
        fs::create_dir_all(lower.join("etc")).unwrap();
        fs::write(lower.join("etc/passwd"), "root").unwrap();
        fs::write(lower.join("etc/gone"), "x").unwrap();
        fs::create_dir_all(upper.join("etc")).unwrap();
        fs::write(upper.join("etc/passwd"), "root\nme").unwrap();
        fs::write(upper.join("etc/new"), "n").unwrap();
        fs::hard_link(upper.join("etc/new"), upper.join("etc/new2")).unwrap();
        nix::sys::stat::mknod(
            &upper.join("etc/gone"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .unwrap();
        let got = changes(&upper, std::slice::from_ref(&lower)).unwrap();
        let want = [
            ("/etc", ChangeKind::Modified),
            ("/etc/gone", ChangeKind::Deleted),
            ("/etc/new", ChangeKind::Added),
            ("/etc/new2", ChangeKind::Added),
            ("/etc/passwd", ChangeKind::Modified),
        ];
        let got: Vec<(&str, ChangeKind)> = got.iter().map(|c| (c.path.as_str(), c.kind)).collect();
        assert_eq!(got, want);

        let mut tar = Vec::new();
        write_layer_tar(&upper, &mut tar).unwrap();
        let mut ar = tar::Archive::new(&tar[..]);
        let entries: Vec<(String, tar::EntryType)> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().entry_type(),
                )
            })
            .collect();
        assert!(entries.contains(&("etc/.wh.gone".into(), tar::EntryType::Regular)));
        assert!(entries.contains(&("etc/new2".into(), tar::EntryType::Link)));
        // Unpacking the tar gives back the same upper directory.
        let back = d.path().join("back");
        fs::create_dir_all(&back).unwrap();
        unpack_layer(&tar[..], &back).unwrap();
        assert!(is_whiteout(
            &fs::symlink_metadata(back.join("etc/gone")).unwrap()
        ));
        assert_eq!(
            fs::read_to_string(back.join("etc/passwd")).unwrap(),
            "root\nme"
        );
        assert_eq!(
            fs::metadata(back.join("etc/new")).unwrap().ino(),
            fs::metadata(back.join("etc/new2")).unwrap().ino()
        );
    }
}
