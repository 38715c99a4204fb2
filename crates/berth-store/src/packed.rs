//! Layers kept as the compressed blobs they were pulled as: unpacked in one
//! pass from the blob, which then becomes content as it is, so a pull writes
//! each byte once beside the unpacked tree (no plain tar), and a push of a
//! pulled layer sends the same blob again without compressing anything.

use crate::layer::Packed;
use crate::{Store, StoreError};
use sha2::{Digest, Sha256};
use std::io::{self, BufRead, Read};
use std::path::Path;

/// The plain tar inside a layer blob: by its media type (`+gzip`,
/// `.gzip`, `+zstd`), or by its first bytes when that says nothing.
pub fn decompress<'a, R: Read + Send + 'a>(
    inner: R,
    media_type: &str,
) -> Result<Box<dyn Read + Send + 'a>, StoreError> {
    let mut inner = io::BufReader::with_capacity(1 << 20, inner);
    let zstd_magic = [0x28, 0xb5, 0x2f, 0xfd];
    let (gzip, zstd) = if media_type.ends_with("gzip") {
        (true, false)
    } else if media_type.ends_with("zstd") {
        (false, true)
    } else {
        let head = inner.fill_buf()?;
        (
            head.starts_with(&[0x1f, 0x8b]),
            head.starts_with(&zstd_magic),
        )
    };
    Ok(if gzip {
        Box::new(flate2::bufread::MultiGzDecoder::new(inner))
    } else if zstd {
        Box::new(zstd::stream::read::Decoder::with_buffer(inner)?)
    } else {
        Box::new(inner)
    })
}

/// Hashes and counts what is read through it.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    n: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.hasher.update(&buf[..k]);
        self.n += k as u64;
        Ok(k)
    }
}

/// Tells `progress` how much of the blob has been read.
struct Counted<'a, R> {
    inner: R,
    n: u64,
    progress: &'a (dyn Fn(u64) + Sync),
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n += k as u64;
        (self.progress)(self.n);
        Ok(k)
    }
}

impl Store {
    /// Unpacks the compressed layer blob at `path` (whose own digest the
    /// caller has checked: `blob`) on top of `parent`. The layer takes its
    /// name only when the plain tar's digest is `diff_id`; then the file
    /// becomes the content blob `blob.digest`. Returns the chain id.
    pub fn add_packed_layer(
        &self,
        parent: Option<&str>,
        diff_id: &str,
        path: &Path,
        blob_digest: &str,
        media_type: &str,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<String, StoreError> {
        let file = std::fs::File::open(path)?;
        let counted = Counted {
            inner: file,
            n: 0,
            progress,
        };
        let plain = Hashing {
            inner: decompress(counted, media_type)?,
            hasher: Sha256::new(),
            n: 0,
        };
        let meta = self
            .layers
            .create_checked(parent, diff_id, plain, |mut rest| {
                io::copy(&mut rest, &mut io::sink())?;
                let got = format!("sha256:{}", hex::encode(rest.hasher.finalize()));
                if got != diff_id {
                    return Err(StoreError::DigestMismatch {
                        expected: diff_id.to_string(),
                        actual: got,
                    });
                }
                self.content.adopt(path, blob_digest)?;
                Ok(Some(Packed {
                    digest: blob_digest.to_string(),
                    media_type: media_type.to_string(),
                    tar_size: rest.n,
                }))
            })?;
        Ok(meta.chain_id)
    }

    /// The plain tar of layer `chain` and its length: its kept tar, or its
    /// compressed blob decompressed as it is read.
    pub fn layer_tar(&self, chain: &str) -> Result<(Box<dyn Read + Send>, u64), StoreError> {
        let meta = self
            .layers
            .get(chain)
            .ok_or_else(|| StoreError::BlobNotFound(chain.to_string()))?;
        if let Ok(f) = self.content.open_blob(&meta.diff_id) {
            let size = f.metadata()?.len();
            return Ok((Box::new(f), size));
        }
        let p = meta
            .packed
            .ok_or_else(|| StoreError::BlobNotFound(meta.diff_id.clone()))?;
        let f = self.content.open_blob(&p.digest)?;
        Ok((decompress(f, &p.media_type)?, p.tar_size))
    }

    /// The compressed blob layer `chain` is kept as, if it is.
    pub fn packed_blob(&self, chain: &str) -> Option<Packed> {
        self.layers.get(chain)?.packed
    }

    /// Deletes blob `digest` unless a layer other than `except` keeps it.
    pub(crate) fn drop_packed(&self, digest: &str) {
        let in_use = self
            .layers
            .list()
            .iter()
            .filter_map(|c| self.layers.get(c))
            .any(|m| m.packed.is_some_and(|p| p.digest == digest));
        if !in_use {
            let _ = self.content.delete(digest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::sha256_digest;
    use crate::layer::chain_id;
    use std::io::Write;

    fn tar_bytes() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        b.append_data(&mut h, "hello.txt", &b"hello"[..]).unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn decompresses_by_type_and_by_sniffing() {
        let tar = tar_bytes();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(&tar[..], 3).unwrap();
        for (bytes, mt) in [
            (&tar, "application/vnd.oci.image.layer.v1.tar"),
            (&gz, "application/vnd.docker.image.rootfs.diff.tar.gzip"),
            (&gz, ""),
            (&zst, "application/vnd.oci.image.layer.v1.tar+zstd"),
            (&zst, "application/octet-stream"),
        ] {
            let mut out = Vec::new();
            decompress(&bytes[..], mt)
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, tar, "{mt}");
        }
    }

    #[test]
    fn packed_layers_keep_their_blob_and_give_back_their_tar() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let tar = tar_bytes();
        let diff = sha256_digest(&tar);
        let gz = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&tar).unwrap();
            e.finish().unwrap()
        };
        let blob = sha256_digest(&gz);
        let mt = "application/vnd.docker.image.rootfs.diff.tar.gzip";
        let path = d.path().join("dl");
        // A tar whose digest is not the diff id: nothing visible, file kept.
        std::fs::write(&path, &gz).unwrap();
        let wrong = format!("sha256:{}", "1".repeat(64));
        assert!(s
            .add_packed_layer(None, &wrong, &path, &blob, mt, &|_| {})
            .is_err());
        assert!(s.layers.list().is_empty() && !s.content.exists(&blob));
        let seen = std::sync::atomic::AtomicU64::new(0);
        let chain = s
            .add_packed_layer(None, &diff, &path, &blob, mt, &|n| {
                seen.store(n, std::sync::atomic::Ordering::Relaxed)
            })
            .unwrap();
        assert_eq!(seen.into_inner(), gz.len() as u64);
        assert!(s.content.exists(&blob) && !s.content.exists(&diff) && !path.exists());
        assert_eq!(s.packed_blob(&chain).unwrap().tar_size, tar.len() as u64);
        let (mut r, n) = s.layer_tar(&chain).unwrap();
        let mut back = Vec::new();
        r.read_to_end(&mut back).unwrap();
        assert_eq!((back, n), (tar.clone(), tar.len() as u64));
        assert_eq!(chain, chain_id(None, &diff));
    }
}
