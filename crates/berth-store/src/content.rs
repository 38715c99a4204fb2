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

impl ContentStore {
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        fs::create_dir_all(root.join("blobs/sha256"))?;
        fs::create_dir_all(root.join("ingest"))?;
        // Partial writes from a crash are never visible; drop them.
        for e in fs::read_dir(root.join("ingest"))? {
            let _ = fs::remove_file(e?.path());
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
        let tmp = self
            .root
            .join("ingest")
            .join(format!("{:016x}", rand::random::<u64>()));
        let res = (|| {
            let mut f = File::create(&tmp)?;
            let mut h = Sha256::new();
            let mut buf = vec![0u8; 256 * 1024];
            let mut size = 0u64;
            loop {
                let n = reader.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
                f.write_all(&buf[..n])?;
                size += n as u64;
            }
            let digest = format!("sha256:{}", hex::encode(h.finalize()));
            if let Some(exp) = expected {
                if exp != digest {
                    return Err(StoreError::DigestMismatch {
                        expected: exp.to_string(),
                        actual: digest,
                    });
                }
            }
            f.sync_all()?;
            let dst = self.path(&digest)?;
            if !dst.exists() {
                fs::rename(&tmp, &dst)?;
                sync_dir(dst.parent().unwrap_or(&self.root))?;
            }
            Ok(Descriptor { digest, size })
        })();
        let _ = fs::remove_file(&tmp);
        res
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
