//! Durable file writes: temp file → fsync → rename → fsync of the directory.

use std::fs::{self, File};
use std::io::{self, Write};
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

/// Removes a tree that may hold read-only directories or immutable-looking modes.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Bytes of the regular files under `p` (not following links).
pub fn dir_size(p: &Path) -> u64 {
    let Ok(rd) = fs::read_dir(p) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
