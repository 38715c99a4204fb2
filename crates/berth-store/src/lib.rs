//! Berth's image store: content-addressed blobs, shared unpacked layers, image
//! references, and the tar formats images travel in (import, save, load).
//!
//! Layers are returned as directories (data); mounting them is the caller's job.

pub mod changes;
pub mod content;
pub use berth_util::fs as fsutil;
pub mod layer;
pub mod packed;
pub mod reference;
pub mod sources;
mod transfer;

use berth_api::{History, ImageConfigBlob, ImageRunConfig, RootFs};
use content::{ContentStore, Descriptor};
use fsutil::write_atomic;
use layer::LayerStore;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

pub use transfer::LoadReport;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("No such image: {0}")]
    ImageNotFound(String),
    #[error("blob not found: {0}")]
    BlobNotFound(String),
    #[error("invalid digest: {0}")]
    InvalidDigest(String),
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: String, actual: String },
    #[error("invalid reference format: {0}")]
    InvalidReference(String),
    #[error("refusing unsafe tar entry: {0}")]
    UnsafeTarEntry(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("invalid archive: {0}")]
    InvalidArchive(String),
    #[error(
        "max depth exceeded: an image has at most {MAX_LAYERS} layers, this one would have {0}"
    )]
    MaxDepth(usize),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("invalid json: {0}")]
    Json(#[from] serde_json::Error),
}

/// The most layers an image may have: dockerd's limit (`maxLayerDepth`), so
/// that every image made here also runs under Docker, and one that keeps a
/// container's overlay (these layers, its init layer, its writable layer)
/// within the kernel's mount option page.
pub const MAX_LAYERS: usize = 125;

pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// An image as the engine sees it.
#[derive(Debug, Clone)]
pub struct Image {
    pub id: String,
    pub config: ImageConfigBlob,
    /// Chain ids, base layer first.
    pub chain: Vec<String>,
    pub size: u64,
    pub repo_tags: Vec<String>,
    /// The local image this one was committed or built from, while it exists.
    pub parent: Option<String>,
    /// `repo@sha256:…` at registries.
    pub repo_digests: Vec<String>,
}

/// Was `child` built on `parent`: its history and layers a strict extension
/// of the parent's? (How `docker history` and the build cache relate images.)
pub fn built_on(child: &ImageConfigBlob, parent: &ImageConfigBlob) -> bool {
    child.history.len() > parent.history.len()
        && child.history.starts_with(&parent.history)
        && child.rootfs.diff_ids.starts_with(&parent.rootfs.diff_ids)
}

impl Image {
    pub fn created_unix(&self) -> i64 {
        self.config
            .created
            .as_deref()
            .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
            .map(|t| t.timestamp())
            .unwrap_or(0)
    }
}

/// One line of `docker rmi`'s answer.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub enum DeleteItem {
    Untagged(String),
    Deleted(String),
}

/// How a container uses an image, for `rmi`'s refusals.
#[derive(Debug, Clone)]
pub struct ImageUser {
    pub container_id: String,
    pub running: bool,
}

#[derive(Default, Serialize, Deserialize)]
struct Index {
    /// image id → chain (base first)
    images: BTreeMap<String, IndexEntry>,
    /// `repo:tag` → image id
    refs: BTreeMap<String, String>,
}

#[derive(Clone, Serialize, Deserialize)]
struct IndexEntry {
    chain: Vec<String>,
    size: u64,
    /// The local image it was committed or built from (dockerd's Parent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parent: Option<String>,
    /// `repo@sha256:…` for each registry repository it was pulled from or
    /// pushed to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    repo_digests: Vec<String>,
}

pub struct Store {
    pub content: ContentStore,
    pub layers: LayerStore,
    /// Where layers are at registries, for pushes.
    pub sources: sources::Sources,
    index_path: PathBuf,
    index: RwLock<Index>,
    configs: RwLock<HashMap<String, ImageConfigBlob>>,
}

fn short(id: &str) -> &str {
    let h = id.strip_prefix("sha256:").unwrap_or(id);
    &h[..h.len().min(12)]
}

impl Store {
    pub fn open(data_root: &Path) -> Result<Self, StoreError> {
        let content = ContentStore::open(&data_root.join("content"))?;
        let layers = LayerStore::open(&data_root.join("layers"))?;
        let index_path = data_root.join("images/index.json");
        let index: Index = match std::fs::read(&index_path) {
            Ok(b) => serde_json::from_slice(&b)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Index::default(),
            Err(e) => return Err(e.into()),
        };
        let mut configs = HashMap::new();
        for id in index.images.keys() {
            if let Ok(b) = content.read(id) {
                configs.insert(id.clone(), serde_json::from_slice(&b)?);
            }
        }
        let sources = sources::Sources::open(data_root.join("images/sources.json"))?;
        Ok(Self {
            content,
            layers,
            sources,
            index_path,
            index: RwLock::new(index),
            configs: RwLock::new(configs),
        })
    }

    fn persist(&self, idx: &Index) -> Result<(), StoreError> {
        write_atomic(&self.index_path, &serde_json::to_vec(idx)?)?;
        Ok(())
    }

    fn image_of(&self, idx: &Index, id: &str) -> Option<Image> {
        let e = idx.images.get(id)?;
        let config = self.configs.read().ok()?.get(id)?.clone();
        let repo_tags = idx
            .refs
            .iter()
            .filter(|(_, v)| *v == id)
            .map(|(k, _)| k.clone())
            .collect();
        Some(Image {
            id: id.to_string(),
            config,
            chain: e.chain.clone(),
            size: e.size,
            repo_tags,
            parent: e.parent.clone().filter(|p| idx.images.contains_key(p)),
            repo_digests: e.repo_digests.clone(),
        })
    }

    /// Every image, newest first.
    pub fn list(&self) -> Vec<Image> {
        let idx = self.index.read().expect("index lock");
        let mut v: Vec<Image> = idx
            .images
            .keys()
            .filter_map(|id| self.image_of(&idx, id))
            .collect();
        v.sort_by_key(|i| std::cmp::Reverse(i.created_unix()));
        v
    }

    fn resolve_id(idx: &Index, name: &str) -> Option<String> {
        if let Some((repo, digest)) = name.split_once('@') {
            let want = format!("{}@{digest}", reference::familiar_repo(repo));
            return idx
                .images
                .iter()
                .find(|(_, e)| e.repo_digests.contains(&want))
                .map(|(id, _)| id.clone());
        }
        if let Ok(r) = reference::normalize(name) {
            if let Some(id) = idx.refs.get(&r) {
                return Some(id.clone());
            }
        }
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut hits = idx
            .images
            .keys()
            .filter(|id| id.strip_prefix("sha256:").unwrap_or(id).starts_with(hex));
        let first = hits.next()?;
        hits.next().is_none().then(|| first.clone())
    }

    pub fn get(&self, name: &str) -> Result<Image, StoreError> {
        let idx = self.index.read().expect("index lock");
        Self::resolve_id(&idx, name)
            .and_then(|id| self.image_of(&idx, &id))
            .ok_or_else(|| StoreError::ImageNotFound(name.to_string()))
    }

    /// Layer directories for an overlay mount, topmost first.
    pub fn lower_dirs(&self, image: &Image) -> Result<Vec<PathBuf>, StoreError> {
        self.chain_dirs(&image.chain)
    }

    /// Registers an image whose layers are already unpacked. Returns its id.
    pub fn register(
        &self,
        config: &ImageConfigBlob,
        tags: &[String],
    ) -> Result<String, StoreError> {
        self.register_child(config, tags, None)
    }

    /// `register` for an image committed or built from the local image
    /// `parent`.
    pub fn register_child(
        &self,
        config: &ImageConfigBlob,
        tags: &[String],
        parent_image: Option<&str>,
    ) -> Result<String, StoreError> {
        self.register_raw(&serde_json::to_vec(config)?, tags, parent_image)
    }

    /// Registers the image whose config blob is exactly `bytes` (a pulled or
    /// loaded image keeps its id: the digest of the config as it travelled).
    pub fn register_raw(
        &self,
        bytes: &[u8],
        tags: &[String],
        parent_image: Option<&str>,
    ) -> Result<String, StoreError> {
        let config: ImageConfigBlob = serde_json::from_slice(bytes)
            .map_err(|e| StoreError::InvalidArchive(format!("image config: {e}")))?;
        if config.rootfs.diff_ids.len() > MAX_LAYERS {
            return Err(StoreError::MaxDepth(config.rootfs.diff_ids.len()));
        }
        let desc = self.content.write(bytes)?;
        let mut chain = Vec::new();
        let mut size = 0;
        let mut parent: Option<String> = None;
        for diff in &config.rootfs.diff_ids {
            let c = layer::chain_id(parent.as_deref(), diff);
            let meta = self
                .layers
                .get(&c)
                .ok_or_else(|| StoreError::InvalidArchive(format!("missing layer {diff}")))?;
            size += meta.size;
            chain.push(c.clone());
            parent = Some(c);
        }
        let tags = tags
            .iter()
            .map(|t| reference::normalize(t))
            .collect::<Result<Vec<_>, _>>()?;
        self.configs
            .write()
            .expect("configs lock")
            .insert(desc.digest.clone(), config);
        let mut idx = self.index.write().expect("index lock");
        let old = idx.images.get(&desc.digest);
        // Registering an image again keeps the parent it was first given,
        // and the registry digests it had.
        let parent_image = parent_image
            .map(str::to_string)
            .or_else(|| old.and_then(|e| e.parent.clone()))
            .filter(|p| !p.is_empty() && *p != desc.digest);
        let repo_digests = old.map(|e| e.repo_digests.clone()).unwrap_or_default();
        idx.images.insert(
            desc.digest.clone(),
            IndexEntry {
                chain,
                size,
                parent: parent_image,
                repo_digests,
            },
        );
        for t in tags {
            idx.refs.insert(t, desc.digest.clone());
        }
        self.persist(&idx)?;
        Ok(desc.digest)
    }

    /// Records that image `id` is `repo@digest` at a registry (`RepoDigests`);
    /// a repository keeps one digest per image, the latest.
    pub fn add_repo_digest(&self, id: &str, repo: &str, digest: &str) -> Result<(), StoreError> {
        let mut idx = self.index.write().expect("index lock");
        let e = idx
            .images
            .get_mut(id)
            .ok_or_else(|| StoreError::ImageNotFound(id.to_string()))?;
        let prefix = format!("{repo}@");
        e.repo_digests.retain(|d| !d.starts_with(&prefix));
        e.repo_digests.push(format!("{repo}@{digest}"));
        e.repo_digests.sort();
        self.persist(&idx)
    }

    /// Stores a layer tar (plain or gzip) on top of `parent`, keeping the
    /// uncompressed tar as a blob. Returns the blob (diff id) and the layer's chain id.
    pub fn add_layer<R: Read>(
        &self,
        parent: Option<&str>,
        reader: R,
    ) -> Result<(Descriptor, String), StoreError> {
        let desc = self.content.ingest(transfer::maybe_gunzip(reader)?, None)?;
        let blob = self.content.open_blob(&desc.digest)?;
        let meta = self.layers.create(parent, &desc.digest, blob)?;
        Ok((desc, meta.chain_id))
    }

    /// Stores a plain layer tar on top of `parent` in one pass (unpacked
    /// while its bytes are kept and hashed), refusing it unless its digest is
    /// `diff_id` — what the image's config says it is. Returns the chain id.
    pub fn add_verified_layer<R: Read>(
        &self,
        parent: Option<&str>,
        reader: R,
        diff_id: &str,
    ) -> Result<String, StoreError> {
        let mut blob = self.content.writer()?;
        let tee = Tee {
            inner: reader,
            out: &mut blob,
        };
        let meta = self
            .layers
            .create_checked(parent, diff_id, tee, |mut rest| {
                // A tar's end-of-archive padding is hashed too.
                std::io::copy(&mut rest, &mut std::io::sink())?;
                rest.out.commit(Some(diff_id)).map(|_| None)
            })?;
        Ok(meta.chain_id)
    }

    /// Stores the changes in a container's writable directory as a layer on
    /// top of `parent` (a chain id). Returns the layer blob and its chain id.
    pub fn add_layer_from_dir(
        &self,
        parent: Option<&str>,
        upper: &Path,
    ) -> Result<(Descriptor, String), StoreError> {
        // Spooled: the tar's digest is known only at its end, and the layer is
        // unpacked from the verified blob, never from the live directory.
        let mut spool = tempfile_in(self.index_path.parent().unwrap_or(Path::new("/tmp")))?;
        changes::write_layer_tar(upper, &mut spool)?;
        std::io::Seek::seek(&mut spool, std::io::SeekFrom::Start(0))?;
        self.add_layer(parent, spool)
    }

    /// `docker import`: a rootfs tar becomes a one-layer image.
    pub fn import<R: Read>(
        &self,
        reader: R,
        run_config: ImageRunConfig,
        message: Option<String>,
        tag: Option<&str>,
    ) -> Result<String, StoreError> {
        if let Some(t) = tag {
            reference::normalize(t)?;
        }
        let (desc, _) = self.add_layer(None, reader)?;
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let config = ImageConfigBlob {
            created: Some(now.clone()),
            author: None,
            architecture: host_arch().to_string(),
            os: "linux".into(),
            config: run_config,
            rootfs: RootFs {
                kind: "layers".into(),
                diff_ids: vec![desc.digest],
            },
            history: vec![History {
                created: Some(now),
                created_by: None,
                comment: Some(message.unwrap_or_else(|| "Imported from -".into())),
                empty_layer: false,
            }],
            comment: None,
        };
        let tags: Vec<String> = tag.into_iter().map(str::to_string).collect();
        self.register(&config, &tags)
    }

    pub fn tag(&self, source: &str, target: &str) -> Result<(), StoreError> {
        let t = reference::normalize(target)?;
        let mut idx = self.index.write().expect("index lock");
        let id = Self::resolve_id(&idx, source)
            .ok_or_else(|| StoreError::ImageNotFound(source.to_string()))?;
        idx.refs.insert(t, id);
        self.persist(&idx)
    }

    /// `docker rmi`: untag first; delete the image once no tag and no container
    /// refers to it; free its layers once no other image shares them.
    /// Docker's `rmi`: untags, and deletes the image once no name is left.
    /// `users` tells which containers run from an image; `held` is every layer
    /// (chain id) that some container still mounts, which survives even when
    /// its image goes (`rmi -f` of an image a stopped container uses).
    pub fn delete(
        &self,
        name: &str,
        force: bool,
        users: &dyn Fn(&str) -> Vec<ImageUser>,
        held: &HashSet<String>,
    ) -> Result<Vec<DeleteItem>, StoreError> {
        let mut idx = self.index.write().expect("index lock");
        let id = Self::resolve_id(&idx, name)
            .ok_or_else(|| StoreError::ImageNotFound(name.to_string()))?;
        let by_ref = reference::normalize(name)
            .ok()
            .filter(|r| idx.refs.contains_key(r));
        let tags: Vec<String> = idx
            .refs
            .iter()
            .filter(|(_, v)| **v == id)
            .map(|(k, _)| k.clone())
            .collect();
        let using = users(&id);
        let mut out = Vec::new();
        if let Some(r) = by_ref
            .clone()
            .filter(|_| tags.len() > 1 || !using.is_empty())
        {
            // More names remain, or a container holds it: untagging is all we do.
            if tags.len() == 1 {
                if let Some(u) = using.iter().find(|u| u.running || !force) {
                    return Err(StoreError::Conflict(format!(
                        "unable to remove repository reference \"{name}\" (must force) - container {} is using its referenced image {}",
                        short(&u.container_id),
                        short(&id)
                    )));
                }
            }
            idx.refs.remove(&r);
            out.push(DeleteItem::Untagged(r));
            self.persist(&idx)?;
            return Ok(out);
        }
        if let Some(u) = using.iter().find(|u| u.running) {
            return Err(StoreError::Conflict(format!(
                "unable to delete {} (cannot be forced) - image is being used by running container {}",
                short(&id),
                short(&u.container_id)
            )));
        }
        if let Some(u) = using.first() {
            if !force {
                return Err(StoreError::Conflict(format!(
                    "unable to delete {} (must be forced) - image is being used by stopped container {}",
                    short(&id),
                    short(&u.container_id)
                )));
            }
        }
        if tags.len() > 1 && !force && by_ref.is_none() {
            return Err(StoreError::Conflict(format!(
                "unable to delete {} (must be forced) - image is referenced in multiple repositories",
                short(&id)
            )));
        }
        for t in &tags {
            idx.refs.remove(t);
            out.push(DeleteItem::Untagged(t.clone()));
        }
        let entry = idx.images.remove(&id);
        self.persist(&idx)?;
        let deleted_config = self.configs.write().expect("configs lock").remove(&id);
        out.push(DeleteItem::Deleted(id.clone()));
        let _ = self.content.delete(&id);
        if let Some(e) = entry {
            self.collect_layers(&idx, &e.chain, held);
        }
        // As dockerd (without --no-prune): untagged parents that nothing else
        // needs go with their child.
        let mut child = deleted_config;
        while let Some(cfg) = child {
            let Some(pid) = self.parent_of(&idx, &cfg) else {
                break;
            };
            let tagged = idx.refs.values().any(|v| *v == pid);
            let has_children = self.children_of(&idx, &pid) > 0;
            if tagged || has_children || !users(&pid).is_empty() {
                break;
            }
            let entry = idx.images.remove(&pid);
            self.persist(&idx)?;
            let pcfg = self.configs.write().expect("configs lock").remove(&pid);
            let _ = self.content.delete(&pid);
            out.push(DeleteItem::Deleted(pid.clone()));
            if let Some(e) = entry {
                self.collect_layers(&idx, &e.chain, held);
            }
            child = pcfg;
        }
        Ok(out)
    }

    /// The image this one was built on: the local image whose history and
    /// layers are the longest strict prefix of `cfg`'s.
    fn parent_of(&self, idx: &Index, cfg: &ImageConfigBlob) -> Option<String> {
        let configs = self.configs.read().expect("configs lock");
        idx.images
            .keys()
            .filter_map(|id| configs.get(id).map(|c| (id, c)))
            .filter(|(_, c)| built_on(cfg, c))
            .max_by_key(|(_, c)| c.history.len())
            .map(|(id, _)| id.clone())
    }

    /// How many local images were built on `id`.
    fn children_of(&self, idx: &Index, id: &str) -> usize {
        let configs = self.configs.read().expect("configs lock");
        let Some(p) = configs.get(id) else { return 0 };
        idx.images
            .keys()
            .filter(|o| *o != id)
            .filter_map(|o| configs.get(o))
            .filter(|c| built_on(c, p))
            .count()
    }

    /// Frees those of `candidates` (a container's layers, once it is removed)
    /// that no image and no container (`held`) refers to any more. Only named
    /// candidates are considered: an import in flight has layers that no
    /// index entry names yet.
    pub fn gc_layers(&self, candidates: &[String], held: &HashSet<String>) {
        let idx = self.index.write().expect("index lock");
        self.collect_layers(&idx, candidates, held);
    }

    fn collect_layers(&self, idx: &Index, candidates: &[String], held: &HashSet<String>) {
        let used: HashSet<&String> = idx.images.values().flat_map(|e| e.chain.iter()).collect();
        let diffs_kept: HashSet<String> = self
            .configs
            .read()
            .expect("configs lock")
            .values()
            .flat_map(|c| c.rootfs.diff_ids.iter().cloned())
            .collect();
        for c in candidates {
            if used.contains(c) || held.contains(c) {
                continue;
            }
            let meta = self.layers.get(c);
            if self.layers.remove(c).is_ok() {
                let Some(meta) = meta else { continue };
                if !diffs_kept.contains(&meta.diff_id) {
                    let _ = self.content.delete(&meta.diff_id);
                }
                if let Some(p) = meta.packed {
                    self.drop_packed(&p.digest);
                }
            }
        }
    }

    /// The directories of a layer chain (base first in `chain`), top layer first.
    pub fn chain_dirs(&self, chain: &[String]) -> Result<Vec<PathBuf>, StoreError> {
        chain
            .iter()
            .rev()
            .map(|c| self.layers.diff_path(c))
            .collect()
    }
}

/// Reads from `inner`, writing what it reads to `out`.
struct Tee<'a, R, W> {
    inner: R,
    out: &'a mut W,
}

impl<R: Read, W: std::io::Write> Read for Tee<'_, R, W> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// An unnamed temporary file under `dir` (same filesystem as the store).
fn tempfile_in(dir: &Path) -> std::io::Result<std::fs::File> {
    std::fs::create_dir_all(dir)?;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .open(dir)
}

pub use berth_api::host_arch;

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs_tar() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(3);
        h.set_mode(0o755);
        b.append_data(&mut h, "bin/true", &b"abc"[..]).unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn verified_layers_and_raw_configs() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let tar = rootfs_tar();
        let diff = content::sha256_digest(&tar);
        let wrong = format!("sha256:{}", "0".repeat(64));
        assert!(matches!(
            s.add_verified_layer(None, &tar[..], &wrong),
            Err(StoreError::DigestMismatch { .. })
        ));
        assert!(
            s.layers.list().is_empty(),
            "a refused layer is never visible"
        );
        assert!(!s.content.exists(&diff));
        let chain = s.add_verified_layer(None, &tar[..], &diff).unwrap();
        assert_eq!(chain, layer::chain_id(None, &diff));
        assert!(s
            .layers
            .diff_path(&chain)
            .unwrap()
            .join("bin/true")
            .exists());
        assert_eq!(s.content.read(&diff).unwrap(), tar);
        // A config keeps its bytes, so the image keeps its id; unknown
        // members included.
        let cfg = format!(
            r#"{{"architecture":"amd64","os":"linux","os.version":"x","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{diff}"]}}}}"#
        );
        let id = s
            .register_raw(cfg.as_bytes(), &["reg.lan/app:v1".into()], None)
            .unwrap();
        assert_eq!(id, content::sha256_digest(cfg.as_bytes()));
        s.add_repo_digest(&id, "reg.lan/app", &wrong).unwrap();
        assert_eq!(s.get(&format!("reg.lan/app@{wrong}")).unwrap().id, id);
        assert_eq!(
            s.get("reg.lan/app:v1").unwrap().repo_digests,
            vec![format!("reg.lan/app@{wrong}")]
        );
    }

    #[test]
    fn import_tag_and_delete() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let id = s
            .import(
                &rootfs_tar()[..],
                ImageRunConfig::default(),
                None,
                Some("busybox"),
            )
            .unwrap();
        let img = s.get("busybox").unwrap();
        assert_eq!(img.id, id);
        assert_eq!(img.repo_tags, vec!["busybox:latest"]);
        assert_eq!(s.get(&id[7..15]).unwrap().id, id);
        s.tag("busybox", "mine:v1").unwrap();
        // Reopening reads the same state back from disk.
        let s = Store::open(d.path()).unwrap();
        assert_eq!(s.get("mine:v1").unwrap().id, id);
        let none = |_: &str| Vec::new();
        let held = HashSet::new();
        let err = s.delete(&id, false, &none, &held).unwrap_err();
        assert!(err.to_string().contains("multiple repositories"), "{err}");
        assert_eq!(
            s.delete("mine:v1", false, &none, &held).unwrap(),
            vec![DeleteItem::Untagged("mine:v1".into())]
        );
        let dir = s.lower_dirs(&img).unwrap()[0].clone();
        assert!(dir.exists());
        let out = s.delete("busybox", false, &none, &held).unwrap();
        assert_eq!(out.len(), 2);
        assert!(!dir.exists(), "layer freed");
        assert!(matches!(
            s.get("busybox"),
            Err(StoreError::ImageNotFound(_))
        ));
    }

    #[test]
    fn image_in_use_is_protected() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let id = s
            .import(
                &rootfs_tar()[..],
                ImageRunConfig::default(),
                None,
                Some("a"),
            )
            .unwrap();
        let running = |_: &str| {
            vec![ImageUser {
                container_id: "c0ffee".repeat(10),
                running: true,
            }]
        };
        let held: HashSet<String> = s.get("a").unwrap().chain.into_iter().collect();
        let err = s.delete(&id, true, &running, &held).unwrap_err();
        assert!(err.to_string().contains("cannot be forced"), "{err}");
        assert!(s.get("a").is_ok());
        // A stopped user only yields to force; its layers outlive the image.
        let stopped = |_: &str| {
            vec![ImageUser {
                container_id: "c0ffee".repeat(10),
                running: false,
            }]
        };
        let err = s.delete(&id, false, &stopped, &held).unwrap_err();
        assert!(err.to_string().contains("must be forced"), "{err}");
        let chain: Vec<String> = held.iter().cloned().collect();
        s.delete(&id, true, &stopped, &held).unwrap();
        assert!(s.get(&id).is_err());
        let dirs = s.chain_dirs(&chain).unwrap();
        assert!(dirs[0].exists(), "held layers stay");
        s.gc_layers(&chain, &HashSet::new());
        assert!(!dirs[0].exists(), "and go once nothing holds them");
    }
}
