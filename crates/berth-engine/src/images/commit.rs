//! `docker container diff` and `docker commit`: a container's writable layer
//! read back as changes, or stored as a new image layer.

use crate::images::apply_changes;
use crate::{now, Engine, EngineError, Kind, Result};
use berth_api::{ContainerConfig, History, ImageRunConfig};
use berth_store::changes::{self, Change};
use std::sync::Arc;

#[derive(Debug, Default, Clone)]
pub struct CommitOptions {
    /// `repo[:tag]`, empty for an untagged image.
    pub reference: String,
    pub comment: String,
    pub author: String,
    /// Dockerfile instructions (`-c`).
    pub changes: Vec<String>,
    pub pause: bool,
    /// Config fields the caller sets over the container's own.
    pub config: Option<ContainerConfig>,
}

/// The image config a committed container gets: its own, as Docker keeps it.
pub(crate) fn run_config_of(c: &ContainerConfig) -> ImageRunConfig {
    ImageRunConfig {
        user: c.user.clone(),
        exposed_ports: c.exposed_ports.clone(),
        env: c.env.clone(),
        entrypoint: c.entrypoint.clone(),
        cmd: c.cmd.clone(),
        volumes: c.volumes.clone(),
        working_dir: c.working_dir.clone(),
        labels: c.labels.clone().filter(|l| !l.is_empty()),
        stop_signal: c.stop_signal.clone(),
        on_build: c.on_build.clone().filter(|o| !o.is_empty()),
        ..Default::default()
    }
}

impl Engine {
    fn upper_and_lowers(&self, key: &str) -> Result<(std::path::PathBuf, Vec<std::path::PathBuf>)> {
        let c = self.find(key)?;
        let rec = c.rec.read().expect("rec").clone();
        Ok((
            self.cdir(&rec.id).join("rw/upper"),
            self.lower_dirs_of(&rec)?,
        ))
    }

    /// `GET /containers/{id}/changes`.
    pub fn changes(&self, key: &str) -> Result<Vec<Change>> {
        let (upper, lowers) = self.upper_and_lowers(key)?;
        if !upper.exists() {
            return Ok(Vec::new());
        }
        changes::changes(&upper, &lowers).map_err(EngineError::from)
    }

    /// `POST /commit`: the container's changes become one new layer over its
    /// image; the config is the container's, with `changes` applied.
    pub async fn commit(self: &Arc<Self>, key: &str, opts: CommitOptions) -> Result<String> {
        let c = self.find(key)?;
        let rec = c.rec.read().expect("rec").clone();
        let mut cfg = rec.config.clone();
        if let Some(over) = &opts.config {
            merge_config(&mut cfg, over);
        }
        let mut run = run_config_of(&cfg);
        apply_changes(&mut run, &opts.changes)?;
        if !opts.reference.is_empty() {
            berth_store::reference::normalize(&opts.reference)
                .map_err(|e| EngineError::BadRequest(e.to_string()))?;
        }
        let base = self
            .store
            .get(&rec.image_id)
            .map_err(|_| EngineError::missing(Kind::Image, &rec.image_id))?;
        if base.chain.len() >= berth_store::MAX_LAYERS {
            return Err(berth_store::StoreError::MaxDepth(base.chain.len() + 1).into());
        }
        // What a container's config does not carry comes from its image.
        if run.healthcheck.is_none() {
            run.healthcheck = base.config.config.healthcheck.clone();
        }
        if run.shell.is_none() {
            run.shell = base.config.config.shell.clone();
        }
        let mut paused = opts.pause && c.state().status == crate::record::Status::Running;
        if paused {
            match self.pause(key, true).await {
                Ok(()) => {}
                // It stopped on its own meanwhile: nothing moves any more,
                // so the commit goes on without the freeze.
                Err(EngineError::Conflict(_)) => paused = false,
                Err(e) => return Err(e),
            }
        }
        let upper = self.cdir(&rec.id).join("rw/upper");
        // Never started: no upper directory yet. (Made only while the
        // container's own directory is there: a removal may be racing.)
        if self.cdir(&rec.id).exists() {
            std::fs::create_dir_all(&upper)?;
        }
        let store = self.store.clone();
        let parent = base.chain.last().cloned();
        let layer = tokio::task::spawn_blocking(move || {
            store.add_layer_from_dir(parent.as_deref(), &upper)
        })
        .await
        .map_err(|e| EngineError::Internal(e.to_string()))?;
        if paused {
            let _ = self.pause(key, false).await;
        }
        let gone = || EngineError::missing(Kind::Container, key);
        let (desc, _) = match layer {
            Ok(l) => l,
            // Removed while its changes were read: a 404, not the I/O error.
            Err(_) if self.find(&rec.id).is_err() => return Err(gone()),
            Err(e) => return Err(e.into()),
        };
        if self.find(&rec.id).is_err() {
            return Err(gone());
        }
        let mut config = base.config.clone();
        config.config = run;
        config.created = Some(now());
        config.author = (!opts.author.is_empty()).then(|| opts.author.clone());
        config.rootfs.diff_ids.push(desc.digest);
        let mut created_by = rec.path.clone();
        for a in &rec.args {
            created_by.push(' ');
            created_by.push_str(a);
        }
        config.history.push(History {
            created: config.created.clone(),
            created_by: Some(created_by),
            comment: (!opts.comment.is_empty()).then(|| opts.comment.clone()),
            empty_layer: false,
        });
        config.comment = None;
        let tags: Vec<String> = if opts.reference.is_empty() {
            vec![]
        } else {
            vec![opts.reference.clone()]
        };
        Ok(self
            .store
            .register_child(&config, &tags, Some(&rec.image_id))?)
    }
}

/// Docker's commit merge: fields set in the request win over the container's.
fn merge_config(cfg: &mut ContainerConfig, over: &ContainerConfig) {
    if over.cmd.as_ref().is_some_and(|c| !c.is_empty()) {
        cfg.cmd = over.cmd.clone();
    }
    if over.entrypoint.is_some() {
        cfg.entrypoint = over.entrypoint.clone();
    }
    if let Some(env) = &over.env {
        cfg.env = Some(crate::merge_env(
            cfg.env.as_deref().unwrap_or_default(),
            env,
        ));
    }
    if !over.user.is_empty() {
        cfg.user = over.user.clone();
    }
    if !over.working_dir.is_empty() {
        cfg.working_dir = over.working_dir.clone();
    }
    if let Some(l) = &over.labels {
        cfg.labels
            .get_or_insert_with(Default::default)
            .extend(l.clone());
    }
    if over.exposed_ports.is_some() {
        cfg.exposed_ports = over.exposed_ports.clone();
    }
}
