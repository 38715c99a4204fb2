//! `docker cp`: a path inside a container, stat'ed, read as a tar, or written
//! from one (`/containers/{id}/archive`).
//!
//! Paths resolve as the container sees them (symlinks followed with its root
//! as `/`, `..` never above it) over the host-side view of its filesystem:
//! the overlay rootfs (mounted for the copy when the container is stopped),
//! and volumes and binds at their host paths. Writes then go through the tar
//! crate's own check that every entry lands inside the target directory; a
//! running container is frozen during a copy, so it cannot swap a directory
//! for a symlink underneath (Docker's CVE-2018-15664).

use crate::record::{Record, Status};
use crate::rootfs::secure_join;
use crate::{Ctr, Engine, EngineError, Result};
use berth_runtime::proto::Request;
use serde::Serialize;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `X-Docker-Container-Path-Stat`: Go's `os.FileMode` bits in `mode`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PathStat {
    pub name: String,
    pub size: i64,
    pub mode: u32,
    pub mtime: String,
    #[serde(rename = "linkTarget")]
    pub link_target: String,
}

impl PathStat {
    /// The header's value: the JSON, base64-encoded.
    pub fn header_value(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .encode(serde_json::to_vec(self).unwrap_or_default())
    }
}

/// Go's `os.FileMode` for a file's metadata.
fn go_mode(m: &fs::Metadata) -> u32 {
    use std::os::unix::fs::FileTypeExt;
    let ft = m.file_type();
    let mode = m.permissions().mode();
    let mut out = mode & 0o777;
    if ft.is_dir() {
        out |= 1 << 31;
    }
    if ft.is_symlink() {
        out |= 1 << 27;
    }
    if ft.is_block_device() {
        out |= 1 << 26;
    }
    if ft.is_char_device() {
        out |= (1 << 26) | (1 << 21);
    }
    if ft.is_fifo() {
        out |= 1 << 25;
    }
    if ft.is_socket() {
        out |= 1 << 24;
    }
    if mode & 0o4000 != 0 {
        out |= 1 << 23;
    }
    if mode & 0o2000 != 0 {
        out |= 1 << 22;
    }
    if mode & 0o1000 != 0 {
        out |= 1 << 20;
    }
    out
}

/// `path` as an absolute container path, keeping a trailing `/` or `/.`
/// (they ask for a directory, or its contents).
fn abs_path(path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    }
}

/// Where a container path lives on the host, given the container's rootfs
/// and mounts: (host root to resolve in, path below it, writable).
fn locate(
    rec: &Record,
    rootfs: &Path,
    volumes: &berth_volume::VolumeStore,
    abs: &str,
) -> Result<(PathBuf, String, bool)> {
    let clean = Path::new(abs);
    let best = rec
        .mounts
        .iter()
        .filter(|m| clean.starts_with(&m.destination))
        .max_by_key(|m| m.destination.len());
    let Some(m) = best else {
        let rw = !rec.host_config.readonly_rootfs;
        return Ok((rootfs.to_path_buf(), abs.to_string(), rw));
    };
    let rest = abs[m.destination.len().min(abs.len())..].to_string();
    let root = match m.kind.as_str() {
        "bind" => PathBuf::from(&m.source),
        "volume" => {
            volumes
                .get(&m.name)
                .map_err(|e| EngineError::NotFound(e.to_string()))?
                .mountpoint
        }
        _ => {
            return Err(EngineError::BadRequest(format!(
                "copying to or from {} ({} mount) is not supported",
                m.destination, m.kind
            )))
        }
    };
    let rest = if rest.is_empty() { "/".into() } else { rest };
    Ok((root, rest, m.rw))
}

/// Resolves like dockerd's `ResolvePath`: every component but the last is
/// followed; the last too when the path ends in `/` or `/.`.
fn resolve(root: &Path, rel: &str) -> Result<PathBuf> {
    let follow_last = rel.ends_with('/') || rel.ends_with("/.");
    let p = Path::new(rel);
    let out = match (follow_last, p.file_name(), p.parent()) {
        (false, Some(last), Some(parent)) => {
            secure_join(root, &parent.to_string_lossy())?.join(last)
        }
        _ => secure_join(root, rel)?,
    };
    Ok(out)
}

impl Engine {
    /// Runs `f` over the container's files, mounting its rootfs for the
    /// duration when it is not running; `freeze`: a running container is
    /// frozen meanwhile (copies in and out, as dockerd does).
    async fn with_files<T: Send + 'static>(
        self: &Arc<Self>,
        key: &str,
        freeze: bool,
        f: impl FnOnce(&Record, &Path, &berth_volume::VolumeStore) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let c: Arc<Ctr> = self.find(key)?;
        let _op = c.op.lock().await;
        let rec = c.rec.read().expect("rec").clone();
        let status = c.state().status;
        let running = status.is_running();
        let freeze = freeze && status == Status::Running;
        if freeze {
            self.shim(&rec.id).call(&Request::Pause).await?;
        }
        let me = self.clone();
        let res = tokio::task::spawn_blocking(move || -> Result<T> {
            let rootfs = if running {
                me.rootfs(&rec.id)
            } else {
                me.prepare_rootfs(&rec)?
            };
            let out = f(&rec, &rootfs, &me.volumes);
            if !running {
                let _ = me.mounter.unmount(&rootfs);
            }
            out
        })
        .await
        .map_err(|e| EngineError::Internal(e.to_string()));
        if freeze {
            self.shim(&c.id()).call(&Request::Resume).await?;
        }
        res?
    }

    /// `HEAD /containers/{id}/archive`.
    pub async fn archive_stat(self: &Arc<Self>, key: &str, path: &str) -> Result<PathStat> {
        let (key2, path) = (key.to_string(), path.to_string());
        self.with_files(key, false, move |rec, rootfs, vols| {
            stat_in(rec, rootfs, vols, &key2, &path).map(|(s, _)| s)
        })
        .await
    }

    /// `GET /containers/{id}/archive`: the path as a tar written to `out`,
    /// its top entry named after the path's last component.
    pub async fn archive_get(
        self: &Arc<Self>,
        key: &str,
        path: &str,
        out: fs::File,
    ) -> Result<(PathStat, fs::File)> {
        let (key2, path) = (key.to_string(), path.to_string());
        self.with_files(key, true, move |rec, rootfs, vols| {
            let (st, host) = stat_in(rec, rootfs, vols, &key2, &path)?;
            let abs = abs_path(&path);
            let base = match Path::new(abs.trim_end_matches("/.")).file_name() {
                Some(n) if !abs.ends_with("/.") => n.to_string_lossy().into_owned(),
                _ => ".".to_string(),
            };
            let mut b = tar::Builder::new(std::io::BufWriter::new(out));
            append_tree(&mut b, &host, &base)?;
            let w = b.into_inner()?;
            let f = w.into_inner().map_err(|e| e.into_error())?;
            Ok((st, f))
        })
        .await
    }

    /// `GET /containers/{id}/export`: the container's whole filesystem (its
    /// image and its changes, not its volumes) as a tar written to `out`.
    pub async fn export(self: &Arc<Self>, key: &str, out: fs::File) -> Result<fs::File> {
        self.with_files(key, true, move |_, rootfs, _| {
            let mut b = tar::Builder::new(std::io::BufWriter::new(out));
            b.follow_symlinks(false);
            b.append_dir_all(".", rootfs)?;
            let w = b.into_inner()?;
            Ok(w.into_inner().map_err(|e| e.into_error())?)
        })
        .await
    }

    /// `PUT /containers/{id}/archive`: a tar unpacked into the directory at `path`.
    pub async fn archive_put(
        self: &Arc<Self>,
        key: &str,
        path: &str,
        tar: fs::File,
        no_overwrite_dir_non_dir: bool,
    ) -> Result<()> {
        let (key2, path) = (key.to_string(), path.to_string());
        self.with_files(key, true, move |rec, rootfs, vols| {
            let abs = abs_path(&path);
            let (root, rel, rw) = locate(rec, rootfs, vols, &abs)?;
            if !rw {
                return Err(EngineError::Forbidden(if root == rootfs {
                    "container rootfs is marked read-only".into()
                } else {
                    format!("mounted volume is marked read-only: {path}")
                }));
            }
            let dir = secure_join(&root, &rel)?;
            match fs::metadata(&dir) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(EngineError::BadRequest(
                        "extraction point is not a directory".into(),
                    ))
                }
                Err(_) => {
                    return Err(EngineError::NotFound(format!(
                        "Could not find the file {path} in container {key2}"
                    )))
                }
            }
            let mut tar = tar;
            berth_store::layer::check_into(
                std::io::BufReader::new(&mut tar),
                &dir,
                no_overwrite_dir_non_dir,
            )?;
            use std::io::Seek;
            tar.rewind()?;
            berth_store::layer::unpack_into(
                std::io::BufReader::new(tar),
                &dir,
                no_overwrite_dir_non_dir,
            )?;
            Ok(())
        })
        .await
    }
}

/// Appends `host` (not following links) and, for a directory, everything
/// below it, named `name/...` — with a literal `./` prefix when `name` is
/// `.`, which the docker CLI's rebasing of `cp SRC/.` relies on (the tar
/// crate's own path setters would normalise it away).
///
/// Iterative (a stack of sibling lists): a container's tree can nest deeper
/// than berthd's stack.
fn append_tree<W: std::io::Write>(b: &mut tar::Builder<W>, host: &Path, name: &str) -> Result<()> {
    let mut stack = vec![vec![(host.to_path_buf(), name.to_string())]];
    while let Some(top) = stack.last_mut() {
        let Some((host, name)) = top.pop() else {
            stack.pop();
            continue;
        };
        let meta = fs::symlink_metadata(&host)?;
        let ft = meta.file_type();
        let mut h = tar::Header::new_gnu();
        h.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
        let entry_name = if ft.is_dir() && name != "." {
            format!("{name}/")
        } else {
            name.clone()
        };
        append_named(b, &mut h, &entry_name, &host, &meta)?;
        if ft.is_dir() {
            let mut children: Vec<_> = fs::read_dir(&host)?.filter_map(|e| e.ok()).collect();
            // Reversed, so that popping gives them in name order.
            children.sort_by_key(|e| std::cmp::Reverse(e.file_name()));
            stack.push(
                children
                    .into_iter()
                    .map(|c| {
                        (
                            c.path(),
                            format!("{name}/{}", c.file_name().to_string_lossy()),
                        )
                    })
                    .collect(),
            );
        }
    }
    Ok(())
}

/// One entry under a name written byte for byte (GNU long-name records for
/// names past 100 bytes).
fn append_named<W: std::io::Write>(
    b: &mut tar::Builder<W>,
    h: &mut tar::Header,
    name: &str,
    host: &Path,
    meta: &fs::Metadata,
) -> Result<()> {
    let bytes = name.as_bytes();
    if bytes.len() > 100 {
        let mut long = tar::Header::new_gnu();
        long.as_gnu_mut().expect("gnu").name[..13].copy_from_slice(b"././@LongLink");
        long.set_mode(0o644);
        long.set_entry_type(tar::EntryType::GNULongName);
        let mut data = bytes.to_vec();
        data.push(0);
        long.set_size(data.len() as u64);
        long.set_cksum();
        b.append(&long, data.as_slice())?;
    }
    let gnu = h.as_gnu_mut().expect("gnu");
    gnu.name = [0; 100];
    let n = bytes.len().min(100);
    gnu.name[..n].copy_from_slice(&bytes[..n]);
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target = fs::read_link(host)?;
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_link_name(&target)?;
        h.set_cksum();
        b.append(h, std::io::empty())?;
    } else if ft.is_file() {
        h.set_cksum();
        use std::io::Read;
        b.append(h, fs::File::open(host)?.take(meta.len()))?;
    } else {
        h.set_size(0);
        h.set_cksum();
        b.append(h, std::io::empty())?;
    }
    Ok(())
}

/// The stat of a container path and where it is on the host.
fn stat_in(
    rec: &Record,
    rootfs: &Path,
    vols: &berth_volume::VolumeStore,
    key: &str,
    path: &str,
) -> Result<(PathStat, PathBuf)> {
    let abs = abs_path(path);
    let (root, rel, _) = locate(rec, rootfs, vols, &abs)?;
    let host = resolve(&root, &rel)?;
    let not_found =
        || EngineError::NotFound(format!("Could not find the file {path} in container {key}"));
    let meta = fs::symlink_metadata(&host).map_err(|_| not_found())?;
    let link_target = if meta.file_type().is_symlink() {
        let target = secure_join(&root, &rel)?;
        format!(
            "/{}",
            target.strip_prefix(&root).unwrap_or(&target).display()
        )
    } else {
        String::new()
    };
    let name = Path::new(abs.trim_end_matches("/."))
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/".into());
    let mtime = chrono::DateTime::from_timestamp(meta.mtime(), meta.mtime_nsec() as u32)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
        .unwrap_or_default();
    Ok((
        PathStat {
            name,
            size: meta.len() as i64,
            mode: go_mode(&meta),
            mtime,
            link_target,
        },
        host,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_file_modes() {
        let d = tempfile::tempdir().unwrap();
        let m = fs::symlink_metadata(d.path()).unwrap();
        assert_eq!(go_mode(&m) & (1 << 31), 1 << 31);
        let f = d.path().join("f");
        fs::write(&f, "x").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o4755)).unwrap();
        assert_eq!(
            go_mode(&fs::symlink_metadata(&f).unwrap()),
            0o755 | (1 << 23)
        );
        std::os::unix::fs::symlink("f", d.path().join("l")).unwrap();
        let l = fs::symlink_metadata(d.path().join("l")).unwrap();
        assert_eq!(go_mode(&l) & (1 << 27), 1 << 27);
    }

    #[test]
    fn resolving_keeps_or_follows_the_last_link() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        fs::create_dir_all(root.join("real")).unwrap();
        std::os::unix::fs::symlink("/real", root.join("link")).unwrap();
        assert_eq!(resolve(root, "/link").unwrap(), root.join("link"));
        assert_eq!(resolve(root, "/link/").unwrap(), root.join("real"));
        assert_eq!(resolve(root, "/link/.").unwrap(), root.join("real"));
        assert_eq!(resolve(root, "/../../link/x").unwrap(), root.join("real/x"));
    }
}
