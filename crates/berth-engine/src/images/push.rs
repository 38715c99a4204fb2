//! `docker push`: for each layer, what the registry already has is skipped
//! (`Layer already exists`) or linked from another repository (`Mounted
//! from`); the rest is compressed (gzip, the Docker schema 2 layer type)
//! and streamed from a file. Then the config and a schema 2 manifest.

use super::registry::{dist_error, short_digest, Sink};
use crate::{Engine, EngineError, Result};
use berth_api::JsonMessage;
use berth_dist::manifest::{self, Descriptor, ImageManifest};
use berth_dist::{AuthConfig, Reference, Session};
use berth_store::sources::LayerSource;
use futures_util::{StreamExt, TryStreamExt};
use sha2::Digest;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct PushOptions {
    /// The repository, `127.0.0.1:5000/app` (a `:tag` here counts as the tag).
    pub name: String,
    /// None: every tag of the repository.
    pub tag: Option<String>,
    pub auth: Option<AuthConfig>,
}

impl Engine {
    pub async fn push(&self, opts: PushOptions, tx: Sink) -> Result<()> {
        let parsed =
            Reference::parse(&opts.name).map_err(|e| EngineError::BadRequest(e.to_string()))?;
        let named_tag = opts
            .name
            .rsplit('/')
            .next()
            .is_some_and(|l| l.contains(':'));
        let tag = opts
            .tag
            .filter(|t| !t.is_empty())
            .or_else(|| named_tag.then(|| parsed.tag.clone()).flatten());
        let r = Reference {
            tag: None,
            digest: None,
            ..parsed
        };
        let repo = r.familiar_repo();
        let tags: Vec<String> = match tag {
            Some(t) => vec![t],
            None => {
                let prefix = format!("{repo}:");
                let mut v: Vec<String> = self
                    .store
                    .list()
                    .iter()
                    .flat_map(|i| i.repo_tags.clone())
                    .filter_map(|t| t.strip_prefix(&prefix).map(str::to_string))
                    .collect();
                v.sort();
                v
            }
        };
        let missing = || {
            EngineError::NotFound(format!(
                "An image does not exist locally with the tag: {repo}"
            ))
        };
        if tags.is_empty() {
            return Err(missing());
        }
        for t in &tags {
            self.store
                .get(&format!("{repo}:{t}"))
                .map_err(|_| missing())?;
        }
        tx.send(JsonMessage::status(
            None,
            format!("The push refers to repository [{}/{}]", r.domain, r.repo),
        ))
        .await;
        let session = self
            .dist
            .session(&r.domain, &r.repo, opts.auth, true)
            .await
            .map_err(|e| push_error(e, &r))?;
        for t in &tags {
            self.push_tag(&session, &r, t, &tx).await?;
        }
        Ok(())
    }

    async fn push_tag(&self, session: &Session, r: &Reference, tag: &str, tx: &Sink) -> Result<()> {
        let repo = r.familiar_repo();
        let image = self.store.get(&format!("{repo}:{tag}"))?;
        let config = self.store.content.read(&image.id)?;
        let diffs = &image.config.rootfs.diff_ids;
        let n = self.registry.max_concurrent_uploads.max(1);
        // As the docker CLI lists them: the top layer first.
        for d in diffs.iter().rev() {
            tx.send(JsonMessage::status(Some(&short_digest(d)), "Preparing"))
                .await;
        }
        for d in diffs.iter().rev().skip(n) {
            tx.send(JsonMessage::status(Some(&short_digest(d)), "Waiting"))
                .await;
        }
        // Collected first, as in pull.rs (Send).
        let futs: Vec<_> = diffs
            .iter()
            .zip(&image.chain)
            .map(|(d, c)| self.push_layer(session, r, d, c, tx))
            .collect();
        let layers: Vec<Descriptor> = futures_util::stream::iter(futs)
            .buffered(n)
            .try_collect()
            .await?;
        if !session
            .blob_exists(&image.id)
            .await
            .map_err(|e| push_error(e, r))?
        {
            session
                .upload_bytes(&config, &image.id)
                .await
                .map_err(|e| push_error(e, r))?;
        }
        let m = ImageManifest {
            schema_version: 2,
            media_type: manifest::DOCKER_MANIFEST.into(),
            config: Descriptor {
                media_type: manifest::DOCKER_CONFIG.into(),
                digest: image.id.clone(),
                size: config.len() as u64,
                ..Default::default()
            },
            layers,
        };
        let body =
            serde_json::to_vec_pretty(&m).map_err(|e| EngineError::Internal(e.to_string()))?;
        let digest = session
            .put_manifest(tag, &body, manifest::DOCKER_MANIFEST)
            .await
            .map_err(|e| push_error(e, r))?;
        self.store.add_repo_digest(&image.id, &repo, &digest)?;
        self.emit_image("push", &image.id, &format!("{repo}:{tag}"));
        tx.send(JsonMessage::status(
            None,
            format!("{tag}: digest: {digest} size: {}", body.len()),
        ))
        .await;
        tx.send(JsonMessage {
            aux: Some(serde_json::json!({"Tag": tag, "Digest": digest, "Size": body.len()})),
            ..JsonMessage::default()
        })
        .await;
        Ok(())
    }

    /// One layer to the registry, the cheapest way it can get there.
    async fn push_layer(
        &self,
        session: &Session,
        r: &Reference,
        diff: &str,
        chain: &str,
        tx: &Sink,
    ) -> Result<Descriptor> {
        let short = short_digest(diff);
        let here = format!("{}/{}", r.domain, r.repo);
        let err = |e| push_error(e, r);
        for src in self.store.sources.of(diff) {
            let Some((domain, path)) = src.repo.split_once('/') else {
                continue;
            };
            if domain != r.domain {
                continue;
            }
            let desc = Descriptor {
                media_type: src.media_type.clone(),
                digest: src.digest.clone(),
                size: src.size,
                ..Default::default()
            };
            if session.blob_exists(&src.digest).await.map_err(err)? {
                tx.send(JsonMessage::status(Some(&short), "Layer already exists"))
                    .await;
                self.add_source(diff, &desc, &here);
                return Ok(desc);
            }
            if path != r.repo && session.mount(&src.digest, path).await.map_err(err)? {
                tx.send(JsonMessage::status(
                    Some(&short),
                    format!("Mounted from {path}"),
                ))
                .await;
                self.add_source(diff, &desc, &here);
                return Ok(desc);
            }
        }
        let store = self.store.clone();
        let chain_owned = chain.to_string();
        let (tmp, desc) = tokio::task::spawn_blocking(move || gzip_blob(&store, &chain_owned))
            .await
            .map_err(|e| EngineError::Internal(e.to_string()))??;
        let res = async {
            if session.blob_exists(&desc.digest).await.map_err(err)? {
                tx.send(JsonMessage::status(Some(&short), "Layer already exists"))
                    .await;
                return Ok(());
            }
            let last = std::sync::Mutex::new(Instant::now() - Duration::from_secs(1));
            let report = |n: u64| {
                let mut t = last.lock().expect("progress lock");
                if n < desc.size && t.elapsed() < Duration::from_millis(100) {
                    return;
                }
                *t = Instant::now();
                tx.try_send(JsonMessage::progress(&short, "Pushing", n, desc.size));
            };
            session
                .upload_file(tmp.path(), &desc.digest, desc.size, &report)
                .await
                .map_err(err)?;
            tx.send(JsonMessage::status(Some(&short), "Pushed")).await;
            Ok::<(), EngineError>(())
        }
        .await;
        res?;
        self.add_source(diff, &desc, &here);
        Ok(desc)
    }

    fn add_source(&self, diff: &str, d: &Descriptor, repo: &str) {
        let src = LayerSource {
            digest: d.digest.clone(),
            size: d.size,
            media_type: d.media_type.clone(),
            repo: repo.to_string(),
        };
        if let Err(e) = self.store.sources.add(diff, src) {
            tracing::warn!("recording where layer {diff} went: {e}");
        }
    }
}

/// A push failure as dockerd words them.
fn push_error(e: berth_dist::DistError, r: &Reference) -> EngineError {
    use berth_dist::DistError as D;
    match e {
        // In the stream after "The push refers to…", in the registry's
        // words: "unauthorized: authentication required".
        D::Unauthorized(m) | D::Denied(m) => EngineError::Internal(m),
        e => dist_error(e, r),
    }
}

/// A layer's gzip blob on disk: the one it was pulled as, or a scratch
/// file compressed for this push (gone when dropped).
struct Blob {
    path: std::path::PathBuf,
    scratch: bool,
}

impl Blob {
    fn path(&self) -> &std::path::Path {
        &self.path
    }
}

impl Drop for Blob {
    fn drop(&mut self) {
        if self.scratch {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Layer `chain` as gzip: the blob it was pulled as when that is gzip (no
/// work at all), else its tar compressed into a scratch file. Gzip's
/// header carries no time here, so a layer always compresses to the same
/// blob: a second push finds it at the registry.
fn gzip_blob(store: &Arc<berth_store::Store>, chain: &str) -> Result<(Blob, Descriptor)> {
    if let Some(p) = store
        .packed_blob(chain)
        .filter(|p| p.media_type.ends_with("gzip"))
    {
        let path = store.content.path(&p.digest)?;
        let size = std::fs::metadata(&path)?.len();
        let desc = Descriptor {
            media_type: manifest::DOCKER_LAYER_GZIP.into(),
            digest: p.digest,
            size,
            ..Default::default()
        };
        return Ok((
            Blob {
                path,
                scratch: false,
            },
            desc,
        ));
    }
    let (mut src, _) = store.layer_tar(chain).map_err(|e| {
        EngineError::Internal(format!("the bytes of layer {chain} are not here: {e}"))
    })?;
    let tmp = Blob {
        path: store.content.scratch_path(),
        scratch: true,
    };
    let file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(tmp.path())?);
    let hashing = HashWriter {
        inner: file,
        hasher: sha2::Sha256::new(),
        n: 0,
    };
    let mut gz = flate2::GzBuilder::new().write(hashing, flate2::Compression::fast());
    std::io::copy(&mut src, &mut gz)?;
    let mut hashing = gz.finish()?;
    hashing.inner.flush()?;
    let desc = Descriptor {
        media_type: manifest::DOCKER_LAYER_GZIP.into(),
        digest: format!("sha256:{}", hex::encode(hashing.hasher.finalize())),
        size: hashing.n,
        ..Default::default()
    };
    Ok((tmp, desc))
}

struct HashWriter<W> {
    inner: W,
    hasher: sha2::Sha256,
    n: u64,
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let k = self.inner.write(buf)?;
        self.hasher.update(&buf[..k]);
        self.n += k as u64;
        Ok(k)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
