//! Dockerfile builds with the classic builder's behaviour and output stream:
//! one image per step (the cache), RUN steps in real containers, COPY/ADD
//! through a temporary overlay of the step's parent, only the stages the
//! target needs.

use crate::rootfs::{secure_join, OverlayMount};
use crate::{merge_env, now, Engine, EngineError, Result};
use berth_api::{
    ContainerConfig, CreateRequest, History, HostConfig, ImageConfigBlob, JsonMessage, RootFs,
};
use berth_build::dockerfile::{self, Instruction};
use berth_build::{lex, BuildError};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::mpsc::Sender;

mod cache;
mod context;
mod copy;
mod meta;
mod plan;
mod run;
mod stages;

use cache::{Cache, SourceHit};
pub use context::extract_context;
use context::*;
use plan::Plan;
use stages::{Build, StageRun};

#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    pub tags: Vec<String>,
    /// The Dockerfile's path inside the context.
    pub dockerfile: String,
    pub build_args: HashMap<String, Option<String>>,
    pub target: String,
    pub no_cache: bool,
    pub labels: HashMap<String, String>,
    pub quiet: bool,
    pub network: String,
    /// `--add-host`s for RUN steps' /etc/hosts.
    pub extra_hosts: Vec<String>,
    /// `--cache-from` images: their history is a cache source.
    pub cache_from: Vec<String>,
    pub force_remove: bool,
    /// Becomes true when the client has gone away.
    pub cancel: Option<tokio::sync::watch::Receiver<bool>>,
}

/// Build args every build knows without an ARG (they reach RUN only).
const PREDEFINED_ARGS: [&str; 8] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
];

impl From<BuildError> for EngineError {
    fn from(e: BuildError) -> Self {
        EngineError::BadRequest(e.to_string())
    }
}

/// The image a stage has built so far.
#[derive(Debug, Clone)]
struct ImageState {
    id: String,
    config: ImageConfigBlob,
    chain: Vec<String>,
}

/// The output stream; a closed receiver means the client went away.
struct Out {
    tx: Sender<JsonMessage>,
    quiet: bool,
    cancel: Option<tokio::sync::watch::Receiver<bool>>,
}

fn cancelled() -> EngineError {
    EngineError::Internal("build cancelled: the client went away".into())
}

impl Out {
    async fn send(&self, v: JsonMessage) -> Result<()> {
        if self.cancel.as_ref().is_some_and(|c| *c.borrow()) {
            return Err(cancelled());
        }
        self.tx.send(v).await.map_err(|_| cancelled())
    }

    /// Resolves when the client is gone (its stream dropped or its socket hung up).
    async fn gone(&self) {
        let hangup = async {
            match self.cancel.clone() {
                Some(mut c) => {
                    while !*c.borrow() {
                        if c.changed().await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    }
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = self.tx.closed() => {}
            _ = hangup => {}
        }
    }
    async fn line(&self, s: impl Into<String>) -> Result<()> {
        if self.quiet {
            return Ok(());
        }
        self.send(JsonMessage::text(s)).await
    }
}

fn short(id: &str) -> &str {
    let h = id.strip_prefix("sha256:").unwrap_or(id);
    &h[..h.len().min(12)]
}

/// Docker's "#(nop)" history text for a step that changes only metadata.
fn nop(text: &str) -> String {
    format!("/bin/sh -c #(nop)  {text}")
}

fn env_map(config: &ImageConfigBlob) -> BTreeMap<String, String> {
    config
        .config
        .env
        .iter()
        .flatten()
        .filter_map(|e| {
            e.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

fn set_env(config: &mut ImageConfigBlob, key: &str, val: &str) {
    let env = config.config.env.get_or_insert_with(Vec::new);
    let item = format!("{key}={val}");
    match env.iter_mut().find(|e| e.split('=').next() == Some(key)) {
        Some(slot) => *slot = item,
        None => env.push(item),
    }
}

/// A build context unpacked under the data root; removed when dropped.
pub struct BuildContext(PathBuf);

impl BuildContext {
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for BuildContext {
    fn drop(&mut self) {
        let _ = berth_store::fsutil::remove_tree(&self.0);
    }
}

impl Engine {
    /// Unpacks a build context tar (spooled) into a fresh directory.
    pub async fn build_context(&self, tar: std::fs::File) -> Result<BuildContext> {
        let dir = self
            .cfg
            .data_root
            .join("build")
            .join(format!("ctx-{:016x}", rand::random::<u64>()));
        let ctx = BuildContext(dir.clone());
        tokio::task::spawn_blocking(move || extract_context(tar, &dir))
            .await
            .map_err(|e| EngineError::Internal(e.to_string()))??;
        Ok(ctx)
    }

    /// Runs a build over the extracted context `ctx`, streaming Docker's
    /// messages to `tx`. Returns the final image id.
    pub async fn build(
        self: &Arc<Self>,
        ctx: &Path,
        opts: BuildOptions,
        tx: Sender<JsonMessage>,
    ) -> Result<String> {
        let out = Out {
            tx,
            quiet: opts.quiet,
            cancel: opts.cancel.clone(),
        };
        let _serial = self.build_lock.lock().await;
        for t in &opts.tags {
            berth_store::reference::normalize(t).map_err(|e| {
                EngineError::BadRequest(format!("invalid reference format: {t}: {e}"))
            })?;
        }
        let dockerfile_name = if opts.dockerfile.is_empty() {
            "Dockerfile".to_string()
        } else {
            opts.dockerfile.clone()
        };
        let df_path = berth_build::resolve_in_context(ctx, &dockerfile_name)?;
        let text = std::fs::read_to_string(&df_path).map_err(|_| {
            EngineError::BadRequest(format!(
                "Cannot locate specified Dockerfile: {dockerfile_name}"
            ))
        })?;
        {
            let ctx = ctx.to_path_buf();
            let name = dockerfile_name.clone();
            tokio::task::spawn_blocking(move || remove_ignored_build_files(&ctx, &name))
                .await
                .map_err(|e| EngineError::Internal(e.to_string()))??;
        }
        let plan = Plan::new(&text, &opts)?;
        let mut cache = Cache::load(&self.cfg.data_root);
        // Unknown images are skipped, as dockerd does.
        cache.sources = opts
            .cache_from
            .iter()
            .filter_map(|r| self.store.get(r).ok())
            .collect();
        let results = vec![None; plan.stages.len()];
        let mut b = Build {
            engine: self,
            out,
            ctx,
            opts: &opts,
            plan,
            cache,
            used_args: Vec::new(),
            results,
        };
        let fin = b.run().await?;
        let out = b.out;
        if fin.id.is_empty() {
            return Err(EngineError::BadRequest(
                "No image was generated. Is your Dockerfile empty?".into(),
            ));
        }
        out.send(JsonMessage {
            aux: Some(serde_json::json!({ "ID": fin.id })),
            ..JsonMessage::default()
        })
        .await?;
        if opts.quiet {
            out.send(JsonMessage::text(format!("{}\n", fin.id))).await?;
        }
        out.line(format!("Successfully built {}\n", short(&fin.id)))
            .await?;
        for t in &opts.tags {
            self.store.tag(&fin.id, t)?;
            self.emit_image("tag", &fin.id, t);
            let norm = berth_store::reference::normalize(t)?;
            out.line(format!("Successfully tagged {norm}\n")).await?;
        }
        Ok(fin.id)
    }

    /// Registers `config` as the image after a metadata-only step (cached, so
    /// that rebuilds give the same ids and later steps hit the cache too).
    fn metadata_step(
        &self,
        cache: &mut Cache,
        parent: &ImageState,
        mut config: ImageConfigBlob,
        text: &str,
        no_cache: bool,
    ) -> Result<(ImageState, bool)> {
        let key = berth_build::cache_key(&parent.id, text, "");
        if !no_cache {
            if let Some(img) = cache.local(&self.store, &key) {
                let st = ImageState {
                    id: img.id,
                    config: img.config,
                    chain: img.chain,
                };
                return Ok((st, true));
            }
        }
        let hit = match no_cache {
            true => None,
            false => cache.source_hit(parent, &nop(text), true),
        };
        let from_source = hit.is_some();
        let entry = hit.map(|h| h.entry).unwrap_or_else(|| History {
            created: Some(now()),
            created_by: Some(nop(text)),
            comment: None,
            empty_layer: true,
        });
        config.created = entry.created.clone();
        config.history.push(entry);
        let id = self.store.register_child(&config, &[], Some(&parent.id))?;
        if !from_source {
            cache.put(key, &id)?;
        }
        let st = ImageState {
            id,
            config,
            chain: parent.chain.clone(),
        };
        Ok((st, from_source))
    }

    /// The image of a step that added one layer on top of `state`.
    fn stack_layer(
        &self,
        state: &ImageState,
        diff_id: String,
        chain_id: String,
        created_by: &str,
    ) -> Result<ImageState> {
        let mut config = state.config.clone();
        config.created = Some(now());
        config.rootfs.diff_ids.push(diff_id);
        config.history.push(History {
            created: config.created.clone(),
            created_by: Some(created_by.to_string()),
            comment: None,
            empty_layer: false,
        });
        let id = self.store.register_child(&config, &[], Some(&state.id))?;
        let mut chain = state.chain.clone();
        chain.push(chain_id);
        Ok(ImageState { id, config, chain })
    }

    /// A step with a layer found in a `--cache-from` image: registered over
    /// `state` with that image's layer and history entry, never run.
    fn layer_from_source(
        &self,
        cache: &Cache,
        state: &ImageState,
        created_by: &str,
    ) -> Result<Option<ImageState>> {
        let Some(SourceHit {
            entry,
            diff_id: Some(diff),
        }) = cache.source_hit(state, created_by, false)
        else {
            return Ok(None);
        };
        let chain_id = berth_store::layer::chain_id(state.chain.last().map(String::as_str), &diff);
        if self.store.layers.get(&chain_id).is_none() {
            return Ok(None);
        }
        let mut config = state.config.clone();
        config.created = entry.created.clone();
        config.rootfs.diff_ids.push(diff);
        config.history.push(entry);
        let id = self.store.register_child(&config, &[], Some(&state.id))?;
        let mut chain = state.chain.clone();
        chain.push(chain_id);
        Ok(Some(ImageState { id, config, chain }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerignore_removes_only_the_dockerfile_and_itself() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("sub")).unwrap();
        for f in ["index.js", "debug.log", "Dockerfile", "sub/Dockerfile"] {
            std::fs::write(r.join(f), "").unwrap();
        }
        std::fs::write(
            r.join(".dockerignore"),
            "*.log\nDockerfile\n.dockerignore\n",
        )
        .unwrap();
        remove_ignored_build_files(r, "Dockerfile").unwrap();
        assert!(!r.join("Dockerfile").exists() && !r.join(".dockerignore").exists());
        // The client's to apply: dockerd leaves the rest as sent.
        assert!(r.join("debug.log").exists() && r.join("index.js").exists());
        // Named through a parent directory.
        std::fs::write(r.join(".dockerignore"), "sub\n").unwrap();
        remove_ignored_build_files(r, "sub/Dockerfile").unwrap();
        assert!(!r.join("sub/Dockerfile").exists() && r.join(".dockerignore").exists());
    }

    #[test]
    fn source_digest_follows_content_not_times() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, "one").unwrap();
        let a = digest_sources(std::slice::from_ref(&f)).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(std::time::SystemTime::UNIX_EPOCH)
            .unwrap();
        assert_eq!(digest_sources(std::slice::from_ref(&f)).unwrap(), a);
        std::fs::write(&f, "two").unwrap();
        assert_ne!(digest_sources(std::slice::from_ref(&f)).unwrap(), a);
    }
}
