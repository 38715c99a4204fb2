//! The build context on disk: unpacked safely, the Dockerfile and
//! `.dockerignore` taken out when named, COPY's sources digested and copied.

use crate::{EngineError, Result};
use berth_build::ignore::Ignore;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// dockerd's one server-side use of `.dockerignore`: once the Dockerfile
/// is read, it and `.dockerignore` leave the context when the patterns name
/// them, so `COPY .` does not copy them. (Clients apply the other patterns
/// before they send the context; the docker CLI lists a Dockerfile from
/// outside the context, which it sends under a generated name, there too.)
pub(super) fn remove_ignored_build_files(ctx: &Path, dockerfile: &str) -> std::io::Result<()> {
    let Ok(text) = std::fs::read_to_string(ctx.join(".dockerignore")) else {
        return Ok(());
    };
    let ig = Ignore::parse(&text);
    for f in [".dockerignore", dockerfile.trim_start_matches("./")] {
        if ig.excluded(f) {
            // Within the context: `dockerfile` was resolved in it already.
            if let Ok(p) = berth_build::resolve_in_context(ctx, f) {
                if std::fs::symlink_metadata(&p).is_ok_and(|m| !m.is_dir()) {
                    std::fs::remove_file(p)?;
                }
            }
        }
    }
    Ok(())
}

/// Content digest of COPY sources for the cache: paths, types, modes, link
/// targets and file contents, not times.
pub(super) fn digest_sources(paths: &[PathBuf]) -> std::io::Result<String> {
    use std::os::unix::fs::MetadataExt;
    let mut h = Sha256::new();
    for p in paths {
        let mut stack = vec![(p.clone(), PathBuf::new())];
        while let Some((full, rel)) = stack.pop() {
            let m = std::fs::symlink_metadata(&full)?;
            h.update(rel.as_os_str().as_encoded_bytes());
            h.update(m.mode().to_le_bytes());
            if m.file_type().is_symlink() {
                h.update(std::fs::read_link(&full)?.as_os_str().as_encoded_bytes());
            } else if m.is_dir() {
                let mut names: Vec<_> = std::fs::read_dir(&full)?
                    .filter_map(|e| e.ok().map(|e| e.file_name()))
                    .collect();
                names.sort();
                for n in names.into_iter().rev() {
                    stack.push((full.join(&n), rel.join(&n)));
                }
            } else {
                let mut f = std::fs::File::open(&full)?;
                std::io::copy(&mut f, &mut h)?;
            }
            h.update([0]);
        }
    }
    Ok(hex::encode(h.finalize()))
}

/// Copies `src` to `dst` (both host paths), as COPY does: directories
/// recursively, symlinks as links, modes and times kept, owner set.
/// Iterative: a context or a stage can nest deeper than berthd's stack.
pub(super) fn copy_tree(
    src: &Path,
    dst: &Path,
    owner: (u32, u32),
    chmod: Option<u32>,
) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mut pending = vec![(src.to_path_buf(), dst.to_path_buf())];
    // Directories get their modes once everything below them is written.
    let mut dirs = Vec::new();
    while let Some((src, dst)) = pending.pop() {
        let m = std::fs::symlink_metadata(&src)?;
        let ft = m.file_type();
        let mode = chmod.unwrap_or(m.mode() & 0o7777);
        if ft.is_symlink() {
            let _ = std::fs::remove_file(&dst);
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else if ft.is_dir() {
            if !dst.is_dir() {
                let _ = std::fs::remove_file(&dst);
                std::fs::create_dir(&dst)?;
            }
            for e in std::fs::read_dir(&src)? {
                let e = e?;
                pending.push((e.path(), dst.join(e.file_name())));
            }
            dirs.push((dst.clone(), mode));
        } else if ft.is_file() {
            if dst.is_dir() {
                berth_store::fsutil::remove_tree(&dst)?;
            }
            std::fs::copy(&src, &dst)?;
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(mode))?;
            let f = std::fs::File::options().write(true).open(&dst)?;
            f.set_modified(m.modified()?)?;
        } else {
            // Devices, fifos and sockets are not part of a build context.
            continue;
        }
        std::os::unix::fs::lchown(&dst, Some(owner.0), Some(owner.1))?;
    }
    for (d, mode) in dirs.into_iter().rev() {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Creates the missing directories of `dir` (root, 0755), as COPY does.
pub(super) fn mkdir_root(dir: &Path) -> std::io::Result<()> {
    let missing: Vec<&Path> = dir.ancestors().take_while(|p| !p.is_dir()).collect();
    for d in missing.into_iter().rev() {
        std::fs::create_dir(d)?;
        std::os::unix::fs::lchown(d, Some(0), Some(0))?;
    }
    Ok(())
}

/// Is `path` a tar archive (plain or gzip)? ADD extracts those.
pub(super) fn tar_reader(path: &Path) -> Option<Box<dyn std::io::Read>> {
    use std::io::Read;
    let mut head = [0u8; 512];
    let mut f = std::fs::File::open(path).ok()?;
    let n = f.read(&mut head).ok()?;
    let f = std::fs::File::open(path).ok()?;
    if n >= 2 && head[0] == 0x1f && head[1] == 0x8b {
        let mut gz = flate2::read::GzDecoder::new(f);
        let mut h = [0u8; 512];
        gz.read_exact(&mut h).ok()?;
        if &h[257..262] == b"ustar" {
            return Some(Box::new(flate2::read::GzDecoder::new(
                std::fs::File::open(path).ok()?,
            )));
        }
        return None;
    }
    (n == 512 && &head[257..262] == b"ustar").then(|| Box::new(f) as Box<dyn std::io::Read>)
}

/// Unpacks a build context tar (plain or gzip) into `dir`. Entries that
/// would land outside `dir` (`..`, absolute paths, through links) are refused.
pub fn extract_context<R: std::io::Read>(reader: R, dir: &Path) -> Result<()> {
    use std::io::{BufRead, BufReader};
    let mut r = BufReader::new(reader);
    let head = r.fill_buf()?;
    let gz = head.len() >= 2 && head[0] == 0x1f && head[1] == 0x8b;
    let inner: Box<dyn std::io::Read> = if gz {
        Box::new(flate2::read::GzDecoder::new(r))
    } else {
        Box::new(r)
    };
    std::fs::create_dir_all(dir)?;
    let mut ar = tar::Archive::new(inner);
    ar.set_preserve_permissions(true);
    ar.set_overwrite(true);
    for e in ar
        .entries()
        .map_err(|e| EngineError::BadRequest(format!("build context: {e}")))?
    {
        let mut e = match e {
            Ok(e) => e,
            // The docker CLI ends a context that carries a `-f -` Dockerfile
            // without padding or end blocks; dockerd reads it, so do we.
            Err(err)
                if err.kind() == std::io::ErrorKind::UnexpectedEof
                    || err.to_string().contains("unexpected EOF") =>
            {
                break
            }
            Err(err) => return Err(EngineError::BadRequest(format!("build context: {err}"))),
        };
        let path = e
            .path()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let inside = e
            .unpack_in(dir)
            .map_err(|err| EngineError::BadRequest(format!("build context: {path}: {err}")))?;
        if !inside {
            return Err(EngineError::BadRequest(format!(
                "build context: forbidden path outside the build context: {path}"
            )));
        }
    }
    Ok(())
}
