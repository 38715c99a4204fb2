//! `berth cp`: files between a container and the local filesystem, with the
//! docker CLI's rules for where they land (an existing directory receives the
//! source by its own name; a missing destination becomes the source; `SRC/.`
//! copies a directory's contents).

use crate::args::*;
use crate::client::{urlencode, Client};
use anyhow::{anyhow, bail, Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

/// `CONTAINER:PATH` → (container, path); None for a local path.
fn split_spec(s: &str) -> Option<(&str, &str)> {
    if s.starts_with('/') || s.starts_with('.') {
        return None;
    }
    s.split_once(':').filter(|(c, _)| !c.is_empty())
}

fn base_name(p: &str) -> String {
    let t = p.trim_end_matches('/');
    if t.ends_with("/.") || t == "." {
        return ".".into();
    }
    Path::new(t)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| ".".into())
}

/// The path's stat from the daemon, or None when it does not exist.
fn stat(c: &Client, ctr: &str, path: &str) -> Result<Option<serde_json::Value>> {
    let q = format!(
        "/containers/{}/archive?path={}",
        urlencode(ctr),
        urlencode(path)
    );
    match c.head(&q) {
        Ok(r) => {
            use base64::Engine as _;
            let raw = r.header("X-Docker-Container-Path-Stat").unwrap_or("e30=");
            let json = base64::engine::general_purpose::STANDARD
                .decode(raw)
                .context("decoding the path stat")?;
            Ok(Some(serde_json::from_slice(&json)?))
        }
        Err(e) if crate::client::is_not_found(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn cp(c: &Client, a: CpArgs) -> Result<i32> {
    match (split_spec(&a.src), split_spec(&a.dest)) {
        (Some((ctr, src)), None) => from_container(c, ctr, src, &a.dest),
        (None, Some((ctr, dest))) => to_container(c, &a.src, ctr, dest),
        (Some(_), Some(_)) => bail!("copying between containers is not supported"),
        (None, None) => bail!("must specify at least one container source"),
    }
}

fn from_container(c: &Client, ctr: &str, src: &str, dest: &str) -> Result<i32> {
    let q = format!(
        "/containers/{}/archive?path={}",
        urlencode(ctr),
        urlencode(src)
    );
    let mut r = c.get(&q)?;
    if dest == "-" {
        std::io::copy(&mut r.body, &mut std::io::stdout().lock())?;
        return Ok(0);
    }
    let dest_path = PathBuf::from(dest);
    let from = base_name(src);
    let dest_is_dir = dest_path.is_dir();
    // Unpack beside the destination, then move into place.
    let parent = if dest_is_dir {
        dest_path.clone()
    } else {
        dest_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    };
    let tmp = tempfile::Builder::new()
        .prefix(".berth-cp-")
        .tempdir_in(&parent)
        .with_context(|| format!("creating a scratch directory in {}", parent.display()))?;
    let mut ar = tar::Archive::new(&mut r.body);
    ar.set_preserve_permissions(true);
    ar.set_preserve_mtime(true);
    ar.unpack(tmp.path())?;
    let item = if from == "." {
        tmp.path().to_path_buf()
    } else {
        tmp.path().join(&from)
    };
    if !dest_path.exists() && dest.ends_with('/') && !item.is_dir() {
        bail!("destination directory {dest} does not exist");
    }
    let target = if dest_is_dir && from != "." {
        dest_path.join(&from)
    } else {
        dest_path
    };
    merge(&item, &target)?;
    Ok(0)
}

/// Moves `src` to `dst`, merging directories into existing ones.
fn merge(src: &Path, dst: &Path) -> Result<()> {
    match (
        std::fs::symlink_metadata(dst),
        std::fs::symlink_metadata(src),
    ) {
        (Ok(d), Ok(s)) if d.is_dir() && s.is_dir() => {
            for e in std::fs::read_dir(src)? {
                let e = e?;
                merge(&e.path(), &dst.join(e.file_name()))?;
            }
            Ok(())
        }
        (Ok(d), Ok(s)) if d.is_dir() != s.is_dir() => Err(anyhow!(
            "cannot overwrite {} with {}",
            if d.is_dir() { "a directory" } else { "a file" },
            if s.is_dir() { "a directory" } else { "a file" }
        )),
        _ => {
            std::fs::rename(src, dst).with_context(|| format!("moving into {}", dst.display()))?;
            Ok(())
        }
    }
}

fn to_container(c: &Client, src: &str, ctr: &str, dest: &str) -> Result<i32> {
    let put = |path: &str, body: Box<dyn Read>| -> Result<()> {
        let q = format!(
            "/containers/{}/archive?path={}&noOverwriteDirNonDir=true",
            urlencode(ctr),
            urlencode(path)
        );
        c.put_stream(&q, "application/x-tar", body)?.bytes()?;
        Ok(())
    };
    if src == "-" {
        return put(dest, Box::new(std::io::stdin())).map(|_| 0);
    }
    let local = Path::new(src);
    let meta =
        std::fs::symlink_metadata(local).map_err(|e| anyhow!("could not stat {src}: {e}"))?;
    let (dir, name) = match stat(c, ctr, dest)? {
        Some(st) if st["mode"].as_u64().unwrap_or(0) & (1 << 31) != 0 => {
            (dest.to_string(), base_name(src))
        }
        Some(_) if meta.is_dir() => {
            bail!("cannot copy a directory to a file: {dest}")
        }
        Some(_) | None => {
            if dest.ends_with('/') && !meta.is_dir() {
                bail!("destination directory {dest} does not exist");
            }
            let d = dest.trim_end_matches('/');
            let parent = Path::new(d)
                .parent()
                .map(|p| p.to_string_lossy().into_owned())
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "/".into());
            (parent, base_name(d))
        }
    };
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    if meta.is_dir() {
        if name == "." {
            b.append_dir_all(".", local)?;
        } else {
            b.append_dir_all(&name, local)?;
        }
    } else {
        b.append_path_with_name(local, &name)?;
    }
    let data = b.into_inner()?;
    put(&dir, Box::new(std::io::Cursor::new(data)))?;
    Ok(0)
}
