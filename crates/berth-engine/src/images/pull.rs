//! `docker pull`: a manifest (an index's entry for the platform), its
//! config, and each layer not already here — downloaded a few at a time
//! into `content/partial/` with the digest checked as bytes arrive, then
//! decompressed and unpacked in one pass that checks the diff id, the
//! compressed blob kept as the layer's content.

use super::registry::{dist_error, short_digest, Sink};
use crate::{Engine, EngineError, Result};
use berth_api::JsonMessage;
use berth_dist::manifest::{self, Descriptor, Fetched, ImageManifest, Platform};
use berth_dist::{AuthConfig, Reference, Session};
use berth_store::layer::chain_id;
use berth_store::sources::LayerSource;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct PullOptions {
    /// `name[:tag][@digest]`
    pub reference: String,
    /// `--platform` (`linux/arm64`); None: the daemon's.
    pub platform: Option<String>,
    pub auth: Option<AuthConfig>,
}

/// One layer of the image being pulled.
struct Layer {
    desc: Descriptor,
    diff_id: String,
    chain: String,
    parent: Option<String>,
    /// The id the progress lines use: the blob digest's first 12 hex digits.
    short: String,
}

impl Engine {
    /// Pulls an image, telling `tx` how it goes. Fails before the first
    /// message for what is wrong with the request or the reference (the
    /// caller answers those with a status); after it, the caller reports
    /// the error inside the stream.
    pub async fn pull(&self, opts: PullOptions, tx: Sink) -> Result<String> {
        let r = Reference::parse(&opts.reference)
            .map_err(|e| EngineError::BadRequest(e.to_string()))?;
        let want = match &opts.platform {
            Some(p) if !p.is_empty() => Platform::parse(p).ok_or_else(|| {
                EngineError::BadRequest(format!(
                    "\"{p}\": unknown operating system or architecture: invalid argument"
                ))
            })?,
            _ => Platform::host(),
        };
        let session = self
            .dist
            .session(&r.domain, &r.repo, opts.auth, false)
            .await
            .map_err(|e| dist_error(e, &r))?;
        let (top_digest, m) = self.resolve_manifest(&session, &r, &want).await?;
        let id_label = r.tag.clone().unwrap_or_else(|| r.target().to_string());
        tx.send(JsonMessage::status(
            Some(&id_label),
            format!("Pulling from {}", r.repo),
        ))
        .await;
        let config_bytes = session
            .blob_bytes(&m.config.digest)
            .await
            .map_err(|e| match e {
                berth_dist::DistError::DigestMismatch { .. } => EngineError::Internal(format!(
                    "image config verification failed for digest {}",
                    m.config.digest
                )),
                e => dist_error(e, &r),
            })?;
        let config: berth_api::ImageConfigBlob = serde_json::from_slice(&config_bytes)
            .map_err(|e| EngineError::Internal(format!("image config: {e}")))?;
        if config.rootfs.diff_ids.len() != m.layers.len() {
            return Err(EngineError::Internal(format!(
                "image config has {} layers and its manifest {}",
                config.rootfs.diff_ids.len(),
                m.layers.len()
            )));
        }
        let layers = plan_layers(&m, &config.rootfs.diff_ids);
        let source_repo = format!("{}/{}", r.domain, r.repo);
        let mut missing = Vec::new();
        for l in &layers {
            if self.store.layers.get(&l.chain).is_some() {
                tx.send(JsonMessage::status(Some(&l.short), "Already exists"))
                    .await;
                self.remember_source(l, &source_repo);
            } else {
                tx.send(JsonMessage::status(Some(&l.short), "Pulling fs layer"))
                    .await;
                missing.push(l);
            }
        }
        let n = self.registry.max_concurrent_downloads.max(1);
        for l in missing.iter().skip(n) {
            tx.send(JsonMessage::status(Some(&l.short), "Waiting"))
                .await;
        }
        self.fetch_layers(&session, &missing, n, &tx, &r).await?;
        for l in &missing {
            self.remember_source(l, &source_repo);
        }

        let familiar = r.familiar();
        let tags: Vec<String> = match (&r.tag, &r.digest) {
            (Some(_), None) => vec![familiar.clone()],
            _ => Vec::new(),
        };
        let before = self.store.get(&familiar).ok().map(|i| i.id);
        let store = self.store.clone();
        let id =
            tokio::task::spawn_blocking(move || store.register_raw(&config_bytes, &tags, None))
                .await
                .map_err(|e| EngineError::Internal(e.to_string()))??;
        self.store
            .add_repo_digest(&id, &r.familiar_repo(), &top_digest)?;
        self.emit_image("pull", &id, &familiar);
        tx.send(JsonMessage::status(None, format!("Digest: {top_digest}")))
            .await;
        let news = if before.as_deref() == Some(id.as_str()) {
            "Image is up to date for"
        } else {
            "Downloaded newer image for"
        };
        tx.send(JsonMessage::status(
            None,
            format!("Status: {news} {familiar}"),
        ))
        .await;
        Ok(id)
    }

    /// The manifest to pull: the reference's own, or its index's entry for
    /// `want`. Returns the digest the reference resolves to (an index's
    /// when there is one, as `RepoDigests` shows) and the image manifest.
    async fn resolve_manifest(
        &self,
        session: &Session,
        r: &Reference,
        want: &Platform,
    ) -> Result<(String, ImageManifest)> {
        let (bytes, mt, top) = session.manifest(r.target()).await.map_err(|e| match e {
            berth_dist::DistError::NotFound(_) => EngineError::NotFound(format!(
                "manifest for {} not found: manifest unknown: manifest unknown",
                r.familiar()
            )),
            e => dist_error(e, r),
        })?;
        let m = match manifest::parse(&bytes, &mt).map_err(|e| dist_error(e, r))? {
            Fetched::Image(m) => m,
            Fetched::Index(ix) => {
                let d = ix.pick(want).ok_or_else(|| {
                    EngineError::NotFound(format!(
                        "no matching manifest for {want} in the manifest list entries"
                    ))
                })?;
                let (b, mt, _) = session
                    .manifest(&d.digest)
                    .await
                    .map_err(|e| dist_error(e, r))?;
                match manifest::parse(&b, &mt).map_err(|e| dist_error(e, r))? {
                    Fetched::Image(m) => m,
                    Fetched::Index(_) => {
                        return Err(EngineError::Internal(
                            "an index inside an index is not an image".into(),
                        ))
                    }
                }
            }
        };
        Ok((top, m))
    }

    /// Downloads `layers` (at most `n` at a time) and unpacks each as soon
    /// as it is whole: layers are directories of their own (whiteouts are
    /// files in them until overlayfs reads them), so they need not wait for
    /// the ones below. The first failure cancels the rest; their bytes stay
    /// in `content/partial/` for the next pull.
    async fn fetch_layers(
        &self,
        session: &Session,
        layers: &[&Layer],
        n: usize,
        tx: &Sink,
        r: &Reference,
    ) -> Result<()> {
        let slots = tokio::sync::Semaphore::new(n);
        // Collected first: a lazy map's closure would make the future not
        // Send (a higher-ranked lifetime rustc cannot prove).
        let futs: Vec<_> = layers
            .iter()
            .map(|l| self.fetch_layer(session, l, &slots, tx, r))
            .collect();
        futures_util::future::try_join_all(futs).await?;
        Ok(())
    }

    async fn fetch_layer(
        &self,
        session: &Session,
        l: &Layer,
        slots: &tokio::sync::Semaphore,
        tx: &Sink,
        r: &Reference,
    ) -> Result<()> {
        // One pull of a blob at a time: a second waits, then finds the
        // layer made.
        let _held = self.pull_lock(&l.desc.digest).lock_owned().await;
        if self.store.layers.get(&l.chain).is_some() {
            tx.send(JsonMessage::status(Some(&l.short), "Pull complete"))
                .await;
            return Ok(());
        }
        let path = {
            let _slot = slots.acquire().await;
            self.download(session, l, tx, r).await?
        };
        self.extract(l, &path, tx).await
    }

    /// One layer's blob into `content/partial/`, resumed from what an
    /// earlier attempt left there.
    async fn download(
        &self,
        session: &Session,
        l: &Layer,
        tx: &Sink,
        r: &Reference,
    ) -> Result<std::path::PathBuf> {
        let path = self.store.content.partial_path(&l.desc.digest)?;
        let total = l.desc.size;
        let last = std::sync::Mutex::new(Instant::now() - Duration::from_secs(1));
        let report = |n: u64| {
            let mut t = last.lock().expect("progress lock");
            if n < total && t.elapsed() < Duration::from_millis(100) {
                return;
            }
            *t = Instant::now();
            tx.try_send(JsonMessage::progress(&l.short, "Downloading", n, total));
        };
        session
            .download(&l.desc, &path, &report)
            .await
            .map_err(|e| match e {
                berth_dist::DistError::DigestMismatch { .. } => EngineError::Internal(format!(
                    "filesystem layer verification failed for digest {}",
                    l.desc.digest
                )),
                e => dist_error(e, r),
            })?;
        tx.send(JsonMessage::status(Some(&l.short), "Verifying Checksum"))
            .await;
        tx.send(JsonMessage::status(Some(&l.short), "Download complete"))
            .await;
        Ok(path)
    }

    /// Unpacks a downloaded layer, which then stays as its compressed
    /// blob; its diff id is checked before the layer becomes visible.
    async fn extract(&self, l: &Layer, path: &std::path::Path, tx: &Sink) -> Result<()> {
        let store = self.store.clone();
        let total = l.desc.size;
        let read = Arc::new(AtomicU64::new(0));
        let counter = read.clone();
        let (parent, diff_id, short) = (l.parent.clone(), l.diff_id.clone(), l.short.clone());
        let (file, digest, media_type) = (
            path.to_path_buf(),
            l.desc.digest.clone(),
            l.desc.media_type.clone(),
        );
        let work = tokio::task::spawn_blocking(move || -> Result<String> {
            let progress = |n: u64| counter.store(n, Ordering::Relaxed);
            store
                .add_packed_layer(parent.as_deref(), &diff_id, &file, &digest, &media_type, &progress)
                .map_err(|e| match e {
                    berth_store::StoreError::DigestMismatch { .. } => EngineError::Internal(format!(
                        "failed to register layer: layer {short} does not match the diff id its image names ({diff_id})"
                    )),
                    e => e.into(),
                })
        });
        tokio::pin!(work);
        let res = loop {
            tokio::select! {
                res = &mut work => break res,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {
                    let n = read.load(Ordering::Relaxed);
                    tx.try_send(JsonMessage::progress(&l.short, "Extracting", n, total));
                }
            }
        };
        if let Err(e) = res.map_err(|e| EngineError::Internal(e.to_string()))? {
            // Bytes that are the blob but not the layer the config names
            // would fail the same way next time.
            let _ = tokio::fs::remove_file(path).await;
            return Err(e);
        }
        tx.send(JsonMessage::progress(&l.short, "Extracting", total, total))
            .await;
        tx.send(JsonMessage::status(Some(&l.short), "Pull complete"))
            .await;
        Ok(())
    }

    /// The lock for one blob digest while it is downloaded and unpacked.
    fn pull_lock(&self, digest: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.pulls.lock().expect("pull locks");
        // Locks nobody holds any more go; the table stays small.
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        locks.entry(digest.to_string()).or_default().clone()
    }

    fn remember_source(&self, l: &Layer, repo: &str) {
        let src = LayerSource {
            digest: l.desc.digest.clone(),
            size: l.desc.size,
            media_type: l.desc.media_type.clone(),
            repo: repo.to_string(),
        };
        if let Err(e) = self.store.sources.add(&l.diff_id, src) {
            tracing::warn!("recording where layer {} came from: {e}", l.diff_id);
        }
    }
}

fn plan_layers(m: &ImageManifest, diff_ids: &[String]) -> Vec<Layer> {
    let mut parent: Option<String> = None;
    m.layers
        .iter()
        .zip(diff_ids)
        .map(|(desc, diff)| {
            let chain = chain_id(parent.as_deref(), diff);
            Layer {
                desc: desc.clone(),
                diff_id: diff.clone(),
                chain: chain.clone(),
                parent: parent.replace(chain),
                short: short_digest(&desc.digest),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_chain_on_each_other() {
        let d = |n: u8| format!("sha256:{}", hex::encode([n; 32]));
        let m = ImageManifest {
            schema_version: 2,
            layers: vec![
                Descriptor {
                    digest: d(1),
                    ..Default::default()
                },
                Descriptor {
                    digest: d(2),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let ls = plan_layers(&m, &[d(11), d(12)]);
        assert_eq!(ls[0].parent, None);
        assert_eq!(ls[0].chain, d(11));
        assert_eq!(ls[1].parent.as_deref(), Some(d(11).as_str()));
        assert_eq!(ls[1].chain, chain_id(Some(&d(11)), &d(12)));
        assert_eq!(ls[1].short, hex::encode([2u8; 6]));
    }
}
