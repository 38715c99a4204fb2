//! Content-addressed blobs: `blobs/sha256/<hex>`, partial writes under `ingest/`.

use crate::fsutil::sync_dir;
use crate::StoreError;
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub digest: String,
    pub size: u64,
}

#[derive(Debug, Clone)]
pub struct ContentStore {
    root: PathBuf,
}

/// Checks `sha256:<64 hex>` and returns the hex part.
pub fn digest_hex(digest: &str) -> Result<&str, StoreError> {
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| StoreError::InvalidDigest(digest.to_string()))?;
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return Err(StoreError::InvalidDigest(digest.to_string()));
    }
    Ok(hex)
}

pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

pub struct Writer<'a> {
    store: &'a ContentStore,
    tmp: PathBuf,
    file: Option<io::BufWriter<File>>,
    hasher: Sha256,
    size: u64,
}

impl Write for Writer<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let f = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("blob committed"))?;
        let n = f.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().map_or(Ok(()), |f| f.flush())
    }
}

impl Writer<'_> {
    /// Makes the blob visible under its digest, unless `expected` says
    /// another; synced first.
    pub fn commit(&mut self, expected: Option<&str>) -> Result<Descriptor, StoreError> {
        let digest = format!("sha256:{}", hex::encode(self.hasher.clone().finalize()));
        if let Some(exp) = expected {
            if exp != digest {
                return Err(StoreError::DigestMismatch {
                    expected: exp.to_string(),
                    actual: digest,
                });
            }
        }
        let f = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("blob committed"))?;
        f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        let dst = self.store.path(&digest)?;
        if !dst.exists() {
            fs::rename(&self.tmp, &dst)?;
            sync_dir(dst.parent().unwrap_or(&self.store.root))?;
        }
        Ok(Descriptor {
            digest,
            size: self.size,
        })
    }
}

impl Drop for Writer<'_> {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.tmp);
    }
}

impl ContentStore {
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        fs::create_dir_all(root.join("blobs/sha256"))?;
        fs::create_dir_all(root.join("ingest"))?;
        // Partial writes from a crash are never visible; drop them.
        for e in fs::read_dir(root.join("ingest"))? {
            let _ = fs::remove_file(e?.path());
        }
        // Downloads cut by a crash stay for the next pull to resume, but
        // not for ever.
        fs::create_dir_all(root.join("partial"))?;
        for e in fs::read_dir(root.join("partial"))?.flatten() {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() > 24 * 3600);
            if old {
                let _ = fs::remove_file(e.path());
            }
        }
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    pub fn path(&self, digest: &str) -> Result<PathBuf, StoreError> {
        Ok(self.root.join("blobs/sha256").join(digest_hex(digest)?))
    }

    pub fn exists(&self, digest: &str) -> bool {
        self.path(digest).map(|p| p.exists()).unwrap_or(false)
    }

    pub fn read(&self, digest: &str) -> Result<Vec<u8>, StoreError> {
        let p = self.path(digest)?;
        fs::read(&p).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::BlobNotFound(digest.to_string()),
            _ => e.into(),
        })
    }

    pub fn open_blob(&self, digest: &str) -> Result<File, StoreError> {
        File::open(self.path(digest)?).map_err(|_| StoreError::BlobNotFound(digest.to_string()))
    }

    pub fn write(&self, data: &[u8]) -> Result<Descriptor, StoreError> {
        self.ingest(data, None)
    }

    /// Streams `reader` into the store; with `expected`, refuses content whose
    /// digest differs. The blob becomes visible only once complete and verified.
    pub fn ingest<R: Read>(
        &self,
        mut reader: R,
        expected: Option<&str>,
    ) -> Result<Descriptor, StoreError> {
        let mut w = self.writer()?;
        io::copy(&mut reader, &mut w)?;
        w.commit(expected)
    }

    /// A blob being written: hashed as it goes, under `ingest/` until
    /// [`Writer::commit`] (dropped uncommitted, it leaves nothing).
    pub fn writer(&self) -> Result<Writer<'_>, StoreError> {
        let tmp = self
            .root
            .join("ingest")
            .join(format!("{:016x}", rand::random::<u64>()));
        let file = io::BufWriter::with_capacity(256 << 10, File::create(&tmp)?);
        Ok(Writer {
            store: self,
            tmp,
            file: Some(file),
            hasher: Sha256::new(),
            size: 0,
        })
    }

    /// Makes the file at `path` (synced, on this filesystem, its digest
    /// checked by the caller) the blob `digest`.
    pub fn adopt(&self, path: &Path, digest: &str) -> Result<(), StoreError> {
        let dst = self.path(digest)?;
        if dst.exists() {
            let _ = fs::remove_file(path);
        } else {
            fs::rename(path, &dst)?;
            sync_dir(dst.parent().unwrap_or(&self.root))?;
        }
        Ok(())
    }

    /// A fresh name under `ingest/`, for scratch files (gone at the next open).
    pub fn scratch_path(&self) -> PathBuf {
        self.root
            .join("ingest")
            .join(format!("scratch-{:016x}", rand::random::<u64>()))
    }

    /// Where a download of `digest` keeps its bytes until they are whole:
    /// kept across restarts, so that the next pull resumes from them.
    pub fn partial_path(&self, digest: &str) -> Result<PathBuf, StoreError> {
        Ok(self.root.join("partial").join(digest_hex(digest)?))
    }

    pub fn delete(&self, digest: &str) -> Result<(), StoreError> {
        match fs::remove_file(self.path(digest)?) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_is_content_addressed_and_verified() {
        let d = tempfile::tempdir().unwrap();
        let cs = ContentStore::open(d.path()).unwrap();
        let desc = cs.write(b"hello").unwrap();
        assert_eq!(desc.digest, sha256_digest(b"hello"));
        assert_eq!(desc.size, 5);
        assert_eq!(cs.read(&desc.digest).unwrap(), b"hello");
        let wrong = sha256_digest(b"other");
        assert!(matches!(
            cs.ingest(&b"hello"[..], Some(&wrong)),
            Err(StoreError::DigestMismatch { .. })
        ));
        assert!(!cs.exists(&wrong));
        assert_eq!(fs::read_dir(d.path().join("ingest")).unwrap().count(), 0);
    }

    #[test]
    fn bad_digests_are_refused() {
        assert!(digest_hex("sha256:../../etc").is_err());
        assert!(digest_hex("md5:abc").is_err());
    }
}
