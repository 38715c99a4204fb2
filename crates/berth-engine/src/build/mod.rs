//! Dockerfile builds with the classic builder's behaviour and output stream:
//! one image per step (the cache), RUN steps in real containers, COPY/ADD
//! through a temporary overlay of the step's parent, only the stages the
//! target needs.

use crate::rootfs::{secure_join, OverlayMount};
use crate::{merge_env, now, Engine, EngineError, Result};
use berth_api::{ContainerConfig, CreateRequest, History, HostConfig, ImageConfigBlob, RootFs};
use berth_build::dockerfile::{self, Instruction};
use berth_build::{lex, BuildError};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::mpsc::Sender;

mod cache;
mod context;
mod copy;
mod run;

use cache::{Cache, SourceHit};
pub use context::extract_context;
use context::*;

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

struct Stage {
    name: Option<String>,
    from: Instruction,
    body: Vec<Instruction>,
}

/// The output stream; a closed receiver means the client went away.
struct Out {
    tx: Sender<Value>,
    quiet: bool,
    cancel: Option<tokio::sync::watch::Receiver<bool>>,
}

fn cancelled() -> EngineError {
    EngineError::Internal("build cancelled: the client went away".into())
}

impl Out {
    async fn send(&self, v: Value) -> Result<()> {
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
        self.send(json!({"stream": s.into()})).await
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
        tx: Sender<Value>,
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
        let df = dockerfile::parse(&text)?;
        let escape = df.escape;

        // Global ARGs (before the first FROM) parameterise FROM lines.
        let mut global_args: BTreeMap<String, String> = BTreeMap::new();
        let mut stages: Vec<Stage> = Vec::new();
        for inst in df.instructions {
            if inst.keyword == "FROM" {
                stages.push(Stage {
                    name: None,
                    from: inst,
                    body: Vec::new(),
                });
            } else if let Some(s) = stages.last_mut() {
                s.body.push(inst);
            } else if inst.keyword == "ARG" {
                let (k, v) = inst.rest.split_once('=').unwrap_or((inst.rest.trim(), ""));
                let k = k.trim().to_string();
                let val = match opts.build_args.get(&k) {
                    Some(Some(v)) => v.clone(),
                    _ => lex::expand(v, escape, &|n| global_args.get(n).cloned())?,
                };
                global_args.insert(k, val);
            } else {
                return Err(EngineError::BadRequest(
                    inst.error(format!(
                    "{} is not allowed before the first FROM (no build stage in current context)",
                    inst.keyword
                ))
                    .to_string(),
                ));
            }
        }
        if stages.is_empty() {
            return Err(EngineError::BadRequest(
                "Dockerfile: no build stage: the Dockerfile has no FROM".into(),
            ));
        }
        let mut bases = Vec::new();
        for s in &mut stages {
            let words = lex::expand_words(&s.from.rest, escape, &|n| global_args.get(n).cloned())?;
            match words.as_slice() {
                [b] => bases.push(b.clone()),
                [b, as_, n] if as_.eq_ignore_ascii_case("as") => {
                    s.name = Some(n.to_ascii_lowercase());
                    bases.push(b.clone());
                }
                _ => {
                    return Err(s
                        .from
                        .error("FROM requires either one or three arguments")
                        .into())
                }
            }
        }
        let stage_index = |name: &str, before: usize| -> Option<usize> {
            let lname = name.to_ascii_lowercase();
            (0..before)
                .find(|&i| stages[i].name.as_deref() == Some(lname.as_str()))
                .or_else(|| name.parse::<usize>().ok().filter(|&i| i < before))
        };
        let target = if opts.target.is_empty() {
            stages.len() - 1
        } else {
            stage_index(&opts.target, stages.len()).ok_or_else(|| {
                EngineError::BadRequest(format!(
                    "failed to reach build target {} in Dockerfile",
                    opts.target
                ))
            })?
        };
        // Only the stages the target needs: FROM <stage> and COPY --from=<stage>.
        let mut needed = vec![false; stages.len()];
        let mut todo = vec![target];
        while let Some(i) = todo.pop() {
            if needed[i] {
                continue;
            }
            needed[i] = true;
            if let Some(j) = stage_index(&bases[i], i) {
                todo.push(j);
            }
            for inst in &stages[i].body {
                if let Some(f) = inst.flag("from") {
                    if let Some(j) = stage_index(f, i) {
                        todo.push(j);
                    }
                }
            }
        }
        let total: usize = (0..stages.len())
            .filter(|&i| needed[i])
            .map(|i| 1 + stages[i].body.len())
            .sum();
        let mut cache = Cache::load(&self.cfg.data_root);
        // Unknown images are skipped, as dockerd does.
        cache.sources = opts
            .cache_from
            .iter()
            .filter_map(|r| self.store.get(r).ok())
            .collect();
        let mut used_args: Vec<String> = Vec::new();
        let mut results: Vec<Option<ImageState>> = vec![None; stages.len()];
        let mut step = 0;
        for i in 0..stages.len() {
            if !needed[i] {
                continue;
            }
            step += 1;
            let stage = &stages[i];
            out.line(format!("Step {step}/{total} : {}\n", stage.from.original))
                .await?;
            let base = &bases[i];
            let mut state = if let Some(j) = stage_index(base, i) {
                results[j]
                    .clone()
                    .expect("needed stages are built in order")
            } else if base.eq_ignore_ascii_case("scratch") {
                ImageState {
                    id: String::new(),
                    config: ImageConfigBlob {
                        architecture: berth_store::host_arch().into(),
                        os: "linux".into(),
                        rootfs: RootFs {
                            kind: "layers".into(),
                            diff_ids: vec![],
                        },
                        ..Default::default()
                    },
                    chain: vec![],
                }
            } else {
                let img = self.store.get(base).map_err(|_| {
                    EngineError::NotFound(format!(
                        "pull access denied for {base}: no such image here and no registry to pull from"
                    ))
                })?;
                ImageState {
                    id: img.id,
                    config: img.config,
                    chain: img.chain,
                }
            };
            if state.id.is_empty() {
                out.line(" ---> \n").await?;
            } else {
                out.line(format!(" ---> {}\n", short(&state.id))).await?;
            }
            let mut args: Vec<(String, String)> = Vec::new();
            let mut body: Vec<Instruction> = Vec::new();
            // ONBUILD triggers of the base run first.
            let triggers = state.config.config.on_build.take().unwrap_or_default();
            if !triggers.is_empty() {
                out.line(format!(
                    "# Executing {} build trigger{}\n",
                    triggers.len(),
                    if triggers.len() == 1 { "" } else { "s" }
                ))
                .await?;
                for t in &triggers {
                    let parsed = dockerfile::parse(&format!("FROM scratch\n{t}\n"))?;
                    body.extend(parsed.instructions.into_iter().skip(1));
                }
            }
            let triggered = body.len();
            body.extend(stage.body.iter().cloned());
            let mut cmd_set = false;
            for (n, inst) in body.iter().enumerate() {
                if n >= triggered {
                    step += 1;
                    out.line(format!("Step {step}/{total} : {}\n", inst.original))
                        .await?;
                }
                state = self
                    .step(
                        &out,
                        ctx,
                        escape,
                        inst,
                        state,
                        &mut args,
                        &mut used_args,
                        &opts,
                        &results,
                        &mut cache,
                        &mut cmd_set,
                        &stages,
                        i,
                        &global_args,
                    )
                    .await
                    .map_err(|e| match e {
                        EngineError::BadRequest(m) if !m.starts_with("Dockerfile:") => {
                            EngineError::BadRequest(format!("Dockerfile:{}: {m}", inst.line))
                        }
                        e => e,
                    })?;
            }
            if i == target && !opts.labels.is_empty() {
                let mut labels: Vec<(&String, &String)> = opts.labels.iter().collect();
                labels.sort();
                let text = labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ");
                let mut cfg = state.config.clone();
                cfg.config
                    .labels
                    .get_or_insert_with(Default::default)
                    .extend(opts.labels.clone());
                state = self
                    .metadata_step(
                        &mut cache,
                        &state,
                        cfg,
                        &format!("LABEL {text}"),
                        opts.no_cache,
                    )?
                    .0;
            }
            results[i] = Some(state);
        }
        let unused: Vec<&String> = opts
            .build_args
            .keys()
            .filter(|k| {
                !used_args.contains(k)
                    && !global_args.contains_key(*k)
                    && !PREDEFINED_ARGS.contains(&k.as_str())
            })
            .collect();
        if !unused.is_empty() {
            let mut u: Vec<&str> = unused.iter().map(|s| s.as_str()).collect();
            u.sort();
            out.line(format!(
                "[Warning] One or more build-args [{}] were not consumed\n",
                u.join(" ")
            ))
            .await?;
        }
        let fin = results[target].clone().expect("target built");
        if fin.id.is_empty() {
            return Err(EngineError::BadRequest(
                "No image was generated. Is your Dockerfile empty?".into(),
            ));
        }
        out.send(json!({"aux": {"ID": fin.id}})).await?;
        if opts.quiet {
            out.send(json!({"stream": format!("{}\n", fin.id)})).await?;
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

    #[allow(clippy::too_many_arguments)]
    async fn step(
        self: &Arc<Self>,
        out: &Out,
        ctx: &Path,
        escape: char,
        inst: &Instruction,
        state: ImageState,
        args: &mut Vec<(String, String)>,
        used_args: &mut Vec<String>,
        opts: &BuildOptions,
        results: &[Option<ImageState>],
        cache: &mut Cache,
        cmd_set: &mut bool,
        stages: &[Stage],
        stage_no: usize,
        globals: &BTreeMap<String, String>,
    ) -> Result<ImageState> {
        let env = env_map(&state.config);
        let declared = args.clone();
        let lookup = |n: &str| -> Option<String> {
            env.get(n).cloned().or_else(|| {
                declared
                    .iter()
                    .rev()
                    .find(|(k, _)| k == n)
                    .map(|(_, v)| v.clone())
            })
        };
        let mut cfg = state.config.clone();
        let kw = inst.keyword.as_str();
        let no_flags = || inst.check_flags(&[]);
        let mut meta_hit: Option<bool> = None;
        let mut finish_meta =
            |cfg: ImageConfigBlob, text: String, cache: &mut Cache| -> Result<ImageState> {
                let (s, hit) = self.metadata_step(cache, &state, cfg, &text, opts.no_cache)?;
                meta_hit = Some(hit);
                Ok(s)
            };
        let result = match kw {
            "ENV" => {
                no_flags()?;
                let words = lex::expand_words(&inst.rest, escape, &lookup)?;
                let mut pairs = Vec::new();
                if words.len() >= 2 && !words[0].contains('=') {
                    // Legacy `ENV key value with spaces`.
                    let key = &words[0];
                    let raw = inst.rest.trim_start()[key.len()..].trim_start();
                    pairs.push((key.clone(), lex::expand(raw, escape, &lookup)?));
                } else {
                    for w in words {
                        let Some((k, v)) = w.split_once('=') else {
                            return Err(inst
                                .error(format!(
                                    "ENV names can not be blank or missing a value: {w}"
                                ))
                                .into());
                        };
                        if k.is_empty() {
                            return Err(inst.error("ENV names can not be blank").into());
                        }
                        pairs.push((k.to_string(), v.to_string()));
                    }
                }
                let text = pairs
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ");
                for (k, v) in &pairs {
                    set_env(&mut cfg, k, v);
                }
                finish_meta(cfg, format!("ENV {text}"), cache)?
            }
            "LABEL" => {
                no_flags()?;
                let words = lex::expand_words(&inst.rest, escape, &lookup)?;
                let labels = cfg.config.labels.get_or_insert_with(Default::default);
                let mut text = Vec::new();
                for w in words {
                    let (k, v) = w
                        .split_once('=')
                        .ok_or_else(|| inst.error(format!("LABEL requires key=value: {w}")))?;
                    labels.insert(k.to_string(), v.to_string());
                    text.push(format!("{k}={v}"));
                }
                finish_meta(cfg, format!("LABEL {}", text.join(" ")), cache)?
            }
            "ARG" => {
                no_flags()?;
                let mut text = Vec::new();
                for w in inst.rest.split_whitespace() {
                    let (k, default) = match w.split_once('=') {
                        Some((k, d)) => (k.to_string(), Some(lex::expand(d, escape, &lookup)?)),
                        None => (w.to_string(), None),
                    };
                    let val = match opts.build_args.get(&k) {
                        Some(Some(v)) => Some(v.clone()),
                        Some(None) => std::env::var(&k).ok().or(default),
                        // A global ARG redeclared without a value takes the global value.
                        None => default.or_else(|| globals.get(&k).cloned()),
                    };
                    used_args.push(k.clone());
                    if let Some(v) = val {
                        args.push((k.clone(), v));
                    }
                    text.push(w.to_string());
                }
                finish_meta(cfg, format!("ARG {}", text.join(" ")), cache)?
            }
            "WORKDIR" => {
                no_flags()?;
                let p = lex::expand(inst.rest.trim(), escape, &lookup)?;
                let wd = if p.starts_with('/') {
                    p
                } else {
                    let base = if cfg.config.working_dir.is_empty() {
                        "/"
                    } else {
                        &cfg.config.working_dir
                    };
                    Path::new(base).join(p).display().to_string()
                };
                cfg.config.working_dir = wd.clone();
                finish_meta(cfg, format!("WORKDIR {wd}"), cache)?
            }
            "USER" => {
                no_flags()?;
                let u = lex::expand(inst.rest.trim(), escape, &lookup)?;
                cfg.config.user = u.clone();
                finish_meta(cfg, format!("USER {u}"), cache)?
            }
            "EXPOSE" => {
                no_flags()?;
                let ports = cfg
                    .config
                    .exposed_ports
                    .get_or_insert_with(Default::default);
                let mut text = Vec::new();
                for p in lex::expand_words(&inst.rest, escape, &lookup)? {
                    let (port, proto) = p.split_once('/').unwrap_or((&p, "tcp"));
                    let proto = proto.to_ascii_lowercase();
                    let valid = port.split('-').all(|n| n.parse::<u16>().is_ok())
                        && matches!(proto.as_str(), "tcp" | "udp" | "sctp");
                    if !valid {
                        return Err(inst.error(format!("invalid containerPort: {p}")).into());
                    }
                    let key = format!("{port}/{proto}");
                    ports.insert(key.clone(), json!({}));
                    text.push(key);
                }
                finish_meta(cfg, format!("EXPOSE {}", text.join(" ")), cache)?
            }
            "VOLUME" => {
                no_flags()?;
                let vols = match inst.json_args() {
                    Some(v) => v,
                    None => lex::expand_words(&inst.rest, escape, &lookup)?,
                };
                let map = cfg.config.volumes.get_or_insert_with(Default::default);
                for v in &vols {
                    if v.trim().is_empty() {
                        return Err(inst
                            .error("VOLUME specified can not be an empty string")
                            .into());
                    }
                    map.insert(v.clone(), json!({}));
                }
                finish_meta(cfg, format!("VOLUME {}", json!(vols)), cache)?
            }
            "STOPSIGNAL" => {
                no_flags()?;
                let s = lex::expand(inst.rest.trim(), escape, &lookup)?;
                cfg.config.stop_signal = Some(s.clone());
                finish_meta(cfg, format!("STOPSIGNAL {s}"), cache)?
            }
            "MAINTAINER" => {
                cfg.author = Some(inst.rest.trim().to_string());
                finish_meta(cfg, format!("MAINTAINER {}", inst.rest.trim()), cache)?
            }
            "SHELL" => {
                let sh = inst
                    .json_args()
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| inst.error("SHELL requires the arguments to be in JSON form"))?;
                cfg.config.shell = Some(sh.clone());
                finish_meta(cfg, format!("SHELL {}", json!(sh)), cache)?
            }
            "CMD" | "ENTRYPOINT" => {
                no_flags()?;
                let v = match inst.json_args() {
                    Some(v) => v,
                    None => {
                        let mut sh = cfg
                            .config
                            .shell
                            .clone()
                            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
                        sh.push(inst.rest.clone());
                        sh
                    }
                };
                let text = format!("{kw} {}", json!(v));
                if kw == "CMD" {
                    cfg.config.cmd = Some(v);
                    *cmd_set = true;
                } else {
                    cfg.config.entrypoint = Some(v);
                    // An ENTRYPOINT drops a CMD inherited from the base image.
                    if !*cmd_set {
                        cfg.config.cmd = None;
                    }
                }
                finish_meta(cfg, text, cache)?
            }
            "HEALTHCHECK" => {
                inst.check_flags(&[
                    "interval",
                    "timeout",
                    "start-period",
                    "start-interval",
                    "retries",
                ])?;
                let rest = inst.rest.trim();
                let hc = if rest.eq_ignore_ascii_case("none") {
                    json!({"Test": ["NONE"]})
                } else {
                    let (word, cmd) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                    if !word.eq_ignore_ascii_case("cmd") {
                        return Err(inst.error("HEALTHCHECK requires CMD or NONE").into());
                    }
                    let probe = Instruction {
                        rest: cmd.to_string(),
                        ..inst.clone()
                    };
                    let test = match probe.json_args() {
                        Some(v) => std::iter::once("CMD".to_string())
                            .chain(v)
                            .collect::<Vec<_>>(),
                        None => vec!["CMD-SHELL".to_string(), cmd.to_string()],
                    };
                    let mut hc = json!({"Test": test});
                    for (flag, key) in [
                        ("interval", "Interval"),
                        ("timeout", "Timeout"),
                        ("start-period", "StartPeriod"),
                        ("start-interval", "StartInterval"),
                    ] {
                        if let Some(v) = inst.flag(flag) {
                            hc[key] =
                                json!(berth_build::duration_ns(v).map_err(|e| inst.error(e))?);
                        }
                    }
                    if let Some(r) = inst.flag("retries") {
                        hc["Retries"] = json!(r
                            .parse::<i64>()
                            .map_err(|_| inst.error(format!("invalid retries {r}")))?);
                    }
                    hc
                };
                cfg.config.healthcheck = Some(hc.clone());
                finish_meta(cfg, format!("HEALTHCHECK {hc}"), cache)?
            }
            "ONBUILD" => {
                let t = inst.original["ONBUILD".len()..].trim().to_string();
                let first = t
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_ascii_uppercase();
                if matches!(first.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
                    return Err(inst
                        .error(format!("{first} isn't allowed as an ONBUILD trigger"))
                        .into());
                }
                cfg.config
                    .on_build
                    .get_or_insert_with(Vec::new)
                    .push(t.clone());
                finish_meta(cfg, format!("ONBUILD {t}"), cache)?
            }
            "RUN" => {
                inst.check_flags(&["network", "mount", "security"])?;
                self.run_step(out, inst, &state, args, opts, cache).await?
            }
            "COPY" | "ADD" => {
                if kw == "COPY" {
                    inst.check_flags(&["from", "chown", "chmod", "link", "parents", "exclude"])?;
                } else {
                    inst.check_flags(&[
                        "chown",
                        "chmod",
                        "link",
                        "checksum",
                        "keep-git-dir",
                        "exclude",
                    ])?;
                }
                self.copy_step(
                    out, ctx, escape, inst, &state, &lookup, opts, results, cache, stages, stage_no,
                )
                .await?
            }
            other => return Err(inst.error(format!("unknown instruction: {other}")).into()),
        };
        if let Some(hit) = meta_hit {
            if hit {
                out.line(" ---> Using cache\n").await?;
            }
            out.line(format!(" ---> {}\n", short(&result.id))).await?;
        }
        Ok(result)
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
