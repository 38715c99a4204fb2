//! Where a registry keeps blobs, uploads, manifests and tags: the
//! [`Storage`] trait, and [`FsStorage`] on a local directory.
//!
//! Layout of an `FsStorage` root:
//! `blobs/sha256/<hex>` — every blob and manifest, content-addressed;
//! `uploads/<id>` — uploads in progress, moved into `blobs/` only once their
//! digest checked out, so nothing half-written is ever served;
//! `repos/<name>/_blobs/<hex>` — the blobs a repository may serve;
//! `repos/<name>/_manifests/<hex>` — its manifests (the file holds the media type);
//! `repos/<name>/_tags/<tag>` — its tags (the file holds the digest);
//! `repos/<name>/_referrers/<subject hex>/<hex>` — the descriptor of a
//! manifest whose `subject` is that digest.
//! Repository components never start with `_`, so these cannot clash with
//! nested repository names.

use sha2::{Digest, Sha256};
use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Why an upload could not become a blob.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("no such upload")]
    UnknownUpload,
    #[error("the upload's content has digest {actual}")]
    DigestMismatch { actual: String },
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A blob to send: its size and its bytes from the offset asked for.
pub struct BlobReader {
    pub size: u64,
    pub body: BlobBody,
}

pub enum BlobBody {
    /// Bytes that are already addressable (a mapped file): sent without
    /// being copied through a buffer.
    Mapped(bytes::Bytes),
    Reader(Box<dyn Read + Send>),
}

/// Below this a blob is read, not mapped: a mapping costs more than it saves.
const MAP_AT_LEAST: u64 = 256 << 10;

pub trait Storage: Send + Sync + 'static {
    fn blob_size(&self, digest: &str) -> io::Result<Option<u64>>;
    /// The blob's bytes from `offset` on.
    fn open_blob(&self, digest: &str, offset: u64) -> io::Result<Option<BlobReader>>;
    fn delete_blob(&self, digest: &str) -> io::Result<bool>;

    fn start_upload(&self) -> io::Result<String>;
    /// Appends to an upload; its new size.
    fn append_upload(&self, id: &str, data: &[u8]) -> io::Result<Option<u64>>;
    fn upload_size(&self, id: &str) -> io::Result<Option<u64>>;
    /// Checks the whole upload against `digest` and makes it that blob.
    fn commit_upload(&self, id: &str, digest: &str) -> Result<u64, CommitError>;
    fn cancel_upload(&self, id: &str) -> io::Result<bool>;

    fn link_blob(&self, repo: &str, digest: &str) -> io::Result<()>;
    fn blob_in_repo(&self, repo: &str, digest: &str) -> bool;
    fn unlink_blob(&self, repo: &str, digest: &str) -> io::Result<bool>;

    /// Stores a manifest (as a blob) and links it in `repo`.
    fn put_manifest(
        &self,
        repo: &str,
        digest: &str,
        media_type: &str,
        body: &[u8],
    ) -> io::Result<()>;
    /// A manifest of `repo` by digest: its media type and bytes.
    fn get_manifest(&self, repo: &str, digest: &str) -> io::Result<Option<(String, Vec<u8>)>>;
    /// Unlinks a manifest and the tags that point at it.
    fn delete_manifest(&self, repo: &str, digest: &str) -> io::Result<bool>;
    fn set_tag(&self, repo: &str, tag: &str, digest: &str) -> io::Result<()>;
    fn resolve_tag(&self, repo: &str, tag: &str) -> io::Result<Option<String>>;
    fn delete_tag(&self, repo: &str, tag: &str) -> io::Result<bool>;
    /// The repository's tags, sorted.
    fn tags(&self, repo: &str) -> io::Result<Option<Vec<String>>>;
    /// Every repository holding a manifest, sorted.
    fn repositories(&self) -> io::Result<Vec<String>>;

    /// Records that the manifest `descriptor` (JSON) refers to `subject`.
    fn add_referrer(
        &self,
        repo: &str,
        subject: &str,
        referrer: &str,
        descriptor: &[u8],
    ) -> io::Result<()>;
    /// The descriptors (JSON) of the manifests of `repo` that refer to
    /// `subject` and are still there.
    fn referrers(&self, repo: &str, subject: &str) -> io::Result<Vec<Vec<u8>>>;

    /// Deletes the blobs no repository links (as a blob or a manifest) and
    /// that are older than `grace` — an upload committed just now is not
    /// linked yet — and uploads abandoned for longer than it.
    fn collect_garbage(&self, grace: std::time::Duration) -> io::Result<GcReport>;
}

/// What a garbage collection removed.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct GcReport {
    pub blobs: usize,
    pub bytes: u64,
    pub uploads: usize,
}

pub struct FsStorage {
    root: PathBuf,
}

fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// A missing file as None, not an error.
fn found<T>(r: io::Result<T>) -> io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn gone_is_false(r: io::Result<()>) -> io::Result<bool> {
    match r {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

impl FsStorage {
    pub fn open(root: &Path) -> io::Result<FsStorage> {
        for d in ["blobs/sha256", "uploads", "repos"] {
            fs::create_dir_all(root.join(d))?;
        }
        Ok(FsStorage {
            root: root.to_path_buf(),
        })
    }

    fn blob_path(&self, digest: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(hex_of(digest))
    }

    fn upload_path(&self, id: &str) -> PathBuf {
        self.root.join("uploads").join(id)
    }

    fn repo(&self, repo: &str, part: &str) -> PathBuf {
        self.root.join("repos").join(repo).join(part)
    }

    fn mark(path: &Path, content: &str) -> io::Result<()> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        berth_util::fs::write_atomic(path, content.as_bytes())
    }

    fn list(dir: &Path) -> io::Result<Option<Vec<String>>> {
        let Some(rd) = found(fs::read_dir(dir))? else {
            return Ok(None);
        };
        let mut out: Vec<String> = rd
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| !n.starts_with('.'))
            .collect();
        out.sort();
        Ok(Some(out))
    }
}

/// Upload ids are random and only ever hex, so never a path.
fn valid_upload_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|c| c.is_ascii_hexdigit())
}

impl Storage for FsStorage {
    fn blob_size(&self, digest: &str) -> io::Result<Option<u64>> {
        Ok(found(fs::metadata(self.blob_path(digest)))?.map(|m| m.len()))
    }

    fn open_blob(&self, digest: &str, offset: u64) -> io::Result<Option<BlobReader>> {
        let Some(mut f) = found(fs::File::open(self.blob_path(digest)))? else {
            return Ok(None);
        };
        let size = f.metadata()?.len();
        if size >= MAP_AT_LEAST && offset < size {
            // SAFETY: blobs are immutable once committed: nothing writes to
            // or truncates this file (gc unlinks it, which leaves the
            // mapping valid), so the mapped bytes cannot change under us.
            let map = unsafe { memmap2::Mmap::map(&f)? };
            let bytes = bytes::Bytes::from_owner(map).slice(offset as usize..);
            return Ok(Some(BlobReader {
                size,
                body: BlobBody::Mapped(bytes),
            }));
        }
        f.seek(SeekFrom::Start(offset))?;
        Ok(Some(BlobReader {
            size,
            body: BlobBody::Reader(Box::new(f)),
        }))
    }

    fn delete_blob(&self, digest: &str) -> io::Result<bool> {
        gone_is_false(fs::remove_file(self.blob_path(digest)))
    }

    fn start_upload(&self) -> io::Result<String> {
        let id = hex::encode(rand::random::<[u8; 16]>());
        fs::File::create(self.upload_path(&id))?;
        Ok(id)
    }

    fn append_upload(&self, id: &str, data: &[u8]) -> io::Result<Option<u64>> {
        if !valid_upload_id(id) {
            return Ok(None);
        }
        let opened = fs::OpenOptions::new()
            .append(true)
            .open(self.upload_path(id));
        let Some(mut f) = found(opened)? else {
            return Ok(None);
        };
        f.write_all(data)?;
        Ok(Some(f.metadata()?.len()))
    }

    fn upload_size(&self, id: &str) -> io::Result<Option<u64>> {
        if !valid_upload_id(id) {
            return Ok(None);
        }
        Ok(found(fs::metadata(self.upload_path(id)))?.map(|m| m.len()))
    }

    fn commit_upload(&self, id: &str, digest: &str) -> Result<u64, CommitError> {
        if !valid_upload_id(id) {
            return Err(CommitError::UnknownUpload);
        }
        let path = self.upload_path(id);
        let mut f = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(CommitError::UnknownUpload)
            }
            Err(e) => return Err(e.into()),
        };
        let mut hasher = Sha256::new();
        let size = io::copy(&mut f, &mut hasher)?;
        let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
        if actual != digest {
            let _ = fs::remove_file(&path);
            return Err(CommitError::DigestMismatch { actual });
        }
        // Durable before it is visible: a crash leaves the blob whole or absent.
        f.sync_all()?;
        fs::rename(&path, self.blob_path(digest))?;
        berth_util::fs::sync_dir(&self.root.join("blobs/sha256"))?;
        Ok(size)
    }

    fn cancel_upload(&self, id: &str) -> io::Result<bool> {
        if !valid_upload_id(id) {
            return Ok(false);
        }
        gone_is_false(fs::remove_file(self.upload_path(id)))
    }

    fn link_blob(&self, repo: &str, digest: &str) -> io::Result<()> {
        Self::mark(&self.repo(repo, "_blobs").join(hex_of(digest)), "")
    }

    fn blob_in_repo(&self, repo: &str, digest: &str) -> bool {
        self.repo(repo, "_blobs").join(hex_of(digest)).exists() && self.blob_path(digest).exists()
    }

    fn unlink_blob(&self, repo: &str, digest: &str) -> io::Result<bool> {
        gone_is_false(fs::remove_file(
            self.repo(repo, "_blobs").join(hex_of(digest)),
        ))
    }

    fn put_manifest(
        &self,
        repo: &str,
        digest: &str,
        media_type: &str,
        body: &[u8],
    ) -> io::Result<()> {
        let blob = self.blob_path(digest);
        if !blob.exists() {
            berth_util::fs::write_atomic(&blob, body)?;
        }
        Self::mark(
            &self.repo(repo, "_manifests").join(hex_of(digest)),
            media_type,
        )
    }

    fn get_manifest(&self, repo: &str, digest: &str) -> io::Result<Option<(String, Vec<u8>)>> {
        let link = self.repo(repo, "_manifests").join(hex_of(digest));
        let Some(media_type) = found(fs::read_to_string(link))? else {
            return Ok(None);
        };
        Ok(found(fs::read(self.blob_path(digest)))?.map(|b| (media_type, b)))
    }

    fn delete_manifest(&self, repo: &str, digest: &str) -> io::Result<bool> {
        let removed = gone_is_false(fs::remove_file(
            self.repo(repo, "_manifests").join(hex_of(digest)),
        ))?;
        for tag in self.tags(repo)?.unwrap_or_default() {
            if self.resolve_tag(repo, &tag)?.as_deref() == Some(digest) {
                self.delete_tag(repo, &tag)?;
            }
        }
        Ok(removed)
    }

    fn set_tag(&self, repo: &str, tag: &str, digest: &str) -> io::Result<()> {
        Self::mark(&self.repo(repo, "_tags").join(tag), digest)
    }

    fn resolve_tag(&self, repo: &str, tag: &str) -> io::Result<Option<String>> {
        found(fs::read_to_string(self.repo(repo, "_tags").join(tag)))
    }

    fn delete_tag(&self, repo: &str, tag: &str) -> io::Result<bool> {
        gone_is_false(fs::remove_file(self.repo(repo, "_tags").join(tag)))
    }

    fn tags(&self, repo: &str) -> io::Result<Option<Vec<String>>> {
        if !self
            .root
            .join("repos")
            .join(repo)
            .join("_manifests")
            .is_dir()
        {
            return Ok(None);
        }
        Ok(Some(
            Self::list(&self.repo(repo, "_tags"))?.unwrap_or_default(),
        ))
    }

    fn repositories(&self) -> io::Result<Vec<String>> {
        let base = self.root.join("repos");
        let mut out = Vec::new();
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            let Ok(rd) = fs::read_dir(base.join(&rel)) else {
                continue;
            };
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name == "_manifests" {
                    out.push(rel.to_string_lossy().into_owned());
                } else if !name.starts_with('_') && e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(rel.join(&name));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn add_referrer(
        &self,
        repo: &str,
        subject: &str,
        referrer: &str,
        descriptor: &[u8],
    ) -> io::Result<()> {
        let path = self
            .repo(repo, "_referrers")
            .join(hex_of(subject))
            .join(hex_of(referrer));
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        berth_util::fs::write_atomic(&path, descriptor)
    }

    fn referrers(&self, repo: &str, subject: &str) -> io::Result<Vec<Vec<u8>>> {
        let dir = self.repo(repo, "_referrers").join(hex_of(subject));
        let mut out = Vec::new();
        for name in Self::list(&dir)?.unwrap_or_default() {
            let live = self.repo(repo, "_manifests").join(&name).exists();
            if live {
                out.push(fs::read(dir.join(&name))?);
            }
        }
        Ok(out)
    }

    fn collect_garbage(&self, grace: std::time::Duration) -> io::Result<GcReport> {
        // What any repository links, as a blob or as a manifest.
        let mut live = std::collections::HashSet::new();
        let mut stack = vec![self.root.join("repos")];
        while let Some(dir) = stack.pop() {
            for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name == "_blobs" || name == "_manifests" {
                    live.extend(Self::list(&e.path())?.unwrap_or_default());
                } else if !name.starts_with('_') && e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
        let old = |m: &fs::Metadata| {
            m.modified()
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age >= grace)
        };
        let mut report = GcReport::default();
        let blobs = self.root.join("blobs/sha256");
        for name in Self::list(&blobs)?.unwrap_or_default() {
            let path = blobs.join(&name);
            let meta = fs::metadata(&path)?;
            if !live.contains(&name) && old(&meta) && fs::remove_file(&path).is_ok() {
                report.blobs += 1;
                report.bytes += meta.len();
            }
        }
        let uploads = self.root.join("uploads");
        for name in Self::list(&uploads)?.unwrap_or_default() {
            let path = uploads.join(&name);
            if fs::metadata(&path).is_ok_and(|m| old(&m)) && fs::remove_file(&path).is_ok() {
                report.uploads += 1;
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gc_removes_only_what_nothing_links() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStorage::open(dir.path()).unwrap();
        let put = |data: &[u8]| {
            let id = s.start_upload().unwrap();
            s.append_upload(&id, data).unwrap();
            let d = format!("sha256:{}", hex::encode(Sha256::digest(data)));
            s.commit_upload(&id, &d).unwrap();
            d
        };
        let kept = put(b"kept layer");
        s.link_blob("app", &kept).unwrap();
        let orphan = put(b"orphan");
        let unlinked = put(b"was in a repo");
        s.link_blob("gone", &unlinked).unwrap();
        s.unlink_blob("gone", &unlinked).unwrap();
        let manifest = br#"{"schemaVersion":2}"#;
        let md = format!("sha256:{}", hex::encode(Sha256::digest(manifest)));
        s.put_manifest(
            "app",
            &md,
            "application/vnd.oci.image.manifest.v1+json",
            manifest,
        )
        .unwrap();
        let _abandoned = s.start_upload().unwrap();
        // Within the grace period nothing goes: a fresh blob may be about to be linked.
        let r = s
            .collect_garbage(std::time::Duration::from_secs(3600))
            .unwrap();
        assert_eq!(r, GcReport::default());
        let r = s.collect_garbage(std::time::Duration::ZERO).unwrap();
        assert_eq!((r.blobs, r.uploads), (2, 1));
        assert_eq!(r.bytes, (b"orphan".len() + b"was in a repo".len()) as u64);
        assert!(s.blob_in_repo("app", &kept));
        assert!(s.get_manifest("app", &md).unwrap().is_some());
        assert_eq!(s.blob_size(&orphan).unwrap(), None);
    }
}
