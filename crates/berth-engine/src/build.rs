//! Dockerfile builds with the classic builder's behaviour and output stream:
//! one image per step (the cache), RUN steps in real containers, COPY/ADD
//! through a temporary overlay of the step's parent, only the stages the
//! target needs.

use crate::rootfs::{secure_join, OverlayMount};
use crate::{merge_env, now, Engine, EngineError, Result};
use berth_api::{ContainerConfig, CreateRequest, History, HostConfig, ImageConfigBlob, RootFs};
use berth_build::dockerfile::{self, Instruction};
use berth_build::{ignore::Ignore, lex, BuildError};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::mpsc::Sender;

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

/// The build cache: step key → image id, kept across daemon restarts.
struct Cache {
    path: PathBuf,
    map: BTreeMap<String, String>,
    /// `--cache-from` images. When there are any, they are the cache: a
    /// step hits when one of them was built from the same image by the same
    /// step (its history says so), as the classic builder does.
    sources: Vec<berth_store::Image>,
}

/// A step found in a `--cache-from` image: its history entry and, for a
/// step with a layer, that layer's diff id.
struct SourceHit {
    entry: History,
    diff_id: Option<String>,
}

impl Cache {
    fn load(data_root: &Path) -> Cache {
        let path = data_root.join("build/cache.json");
        let map = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Cache {
            path,
            map,
            sources: Vec::new(),
        }
    }

    /// The local cache entry for `key`, unless `--cache-from` images stand
    /// in for the local cache.
    fn local(&self, store: &berth_store::Store, key: &str) -> Option<berth_store::Image> {
        if !self.sources.is_empty() {
            return None;
        }
        self.map.get(key).and_then(|id| store.get(id).ok())
    }

    fn source_hit(&self, parent: &ImageState, created_by: &str, empty: bool) -> Option<SourceHit> {
        let (ph, pd) = (&parent.config.history, &parent.config.rootfs.diff_ids);
        self.sources.iter().find_map(|s| {
            let (h, d) = (&s.config.history, &s.config.rootfs.diff_ids);
            let e = h.get(ph.len())?;
            let fits = h.starts_with(ph)
                && d.starts_with(pd)
                && e.created_by.as_deref() == Some(created_by)
                && e.empty_layer == empty;
            if !fits {
                return None;
            }
            let diff_id = match empty {
                true => None,
                false => Some(d.get(pd.len())?.clone()),
            };
            Some(SourceHit {
                entry: e.clone(),
                diff_id,
            })
        })
    }
    fn put(&mut self, key: String, id: &str) -> Result<()> {
        self.map.insert(key, id.to_string());
        let bytes =
            serde_json::to_vec(&self.map).map_err(|e| EngineError::Internal(e.to_string()))?;
        berth_store::fsutil::write_atomic(&self.path, &bytes)?;
        Ok(())
    }
}

/// dockerd's one server-side use of `.dockerignore`: once the Dockerfile
/// is read, it and `.dockerignore` leave the context when the patterns name
/// them, so `COPY .` does not copy them. (Clients apply the other patterns
/// before they send the context; the docker CLI lists a Dockerfile from
/// outside the context, which it sends under a generated name, there too.)
fn remove_ignored_build_files(ctx: &Path, dockerfile: &str) -> std::io::Result<()> {
    let Ok(text) = std::fs::read_to_string(ctx.join(".dockerignore")) else {
        return Ok(());
    };
    let ig = Ignore::parse(&text);
    for f in [".dockerignore", dockerfile.trim_start_matches("./")] {
        if ig.excluded(f) {
            // Within the context: `dockerfile` was resolved in it already.
            if let Ok(p) = berth_build::resolve_in_context(ctx, f) {
                if std::fs::symlink_metadata(&p).is_ok_and(|m| !m.is_dir()) {
                    std::fs::remove_file(p)?;
                }
            }
        }
    }
    Ok(())
}

/// Content digest of COPY sources for the cache: paths, types, modes, link
/// targets and file contents, not times.
fn digest_sources(paths: &[PathBuf]) -> std::io::Result<String> {
    use std::os::unix::fs::MetadataExt;
    let mut h = Sha256::new();
    for p in paths {
        let mut stack = vec![(p.clone(), PathBuf::new())];
        while let Some((full, rel)) = stack.pop() {
            let m = std::fs::symlink_metadata(&full)?;
            h.update(rel.as_os_str().as_encoded_bytes());
            h.update(m.mode().to_le_bytes());
            if m.file_type().is_symlink() {
                h.update(std::fs::read_link(&full)?.as_os_str().as_encoded_bytes());
            } else if m.is_dir() {
                let mut names: Vec<_> = std::fs::read_dir(&full)?
                    .filter_map(|e| e.ok().map(|e| e.file_name()))
                    .collect();
                names.sort();
                for n in names.into_iter().rev() {
                    stack.push((full.join(&n), rel.join(&n)));
                }
            } else {
                let mut f = std::fs::File::open(&full)?;
                std::io::copy(&mut f, &mut h)?;
            }
            h.update([0]);
        }
    }
    Ok(hex::encode(h.finalize()))
}

/// Copies `src` to `dst` (both host paths), as COPY does: directories
/// recursively, symlinks as links, modes and times kept, owner set.
/// Iterative: a context or a stage can nest deeper than berthd's stack.
fn copy_tree(src: &Path, dst: &Path, owner: (u32, u32), chmod: Option<u32>) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mut pending = vec![(src.to_path_buf(), dst.to_path_buf())];
    // Directories get their modes once everything below them is written.
    let mut dirs = Vec::new();
    while let Some((src, dst)) = pending.pop() {
        let m = std::fs::symlink_metadata(&src)?;
        let ft = m.file_type();
        let mode = chmod.unwrap_or(m.mode() & 0o7777);
        if ft.is_symlink() {
            let _ = std::fs::remove_file(&dst);
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else if ft.is_dir() {
            if !dst.is_dir() {
                let _ = std::fs::remove_file(&dst);
                std::fs::create_dir(&dst)?;
            }
            for e in std::fs::read_dir(&src)? {
                let e = e?;
                pending.push((e.path(), dst.join(e.file_name())));
            }
            dirs.push((dst.clone(), mode));
        } else if ft.is_file() {
            if dst.is_dir() {
                berth_store::fsutil::remove_tree(&dst)?;
            }
            std::fs::copy(&src, &dst)?;
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(mode))?;
            let f = std::fs::File::options().write(true).open(&dst)?;
            f.set_modified(m.modified()?)?;
        } else {
            // Devices, fifos and sockets are not part of a build context.
            continue;
        }
        std::os::unix::fs::lchown(&dst, Some(owner.0), Some(owner.1))?;
    }
    for (d, mode) in dirs.into_iter().rev() {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Creates the missing directories of `dir` (root, 0755), as COPY does.
fn mkdir_root(dir: &Path) -> std::io::Result<()> {
    let missing: Vec<&Path> = dir.ancestors().take_while(|p| !p.is_dir()).collect();
    for d in missing.into_iter().rev() {
        std::fs::create_dir(d)?;
        std::os::unix::fs::lchown(d, Some(0), Some(0))?;
    }
    Ok(())
}

/// Is `path` a tar archive (plain or gzip)? ADD extracts those.
fn tar_reader(path: &Path) -> Option<Box<dyn std::io::Read>> {
    use std::io::Read;
    let mut head = [0u8; 512];
    let mut f = std::fs::File::open(path).ok()?;
    let n = f.read(&mut head).ok()?;
    let f = std::fs::File::open(path).ok()?;
    if n >= 2 && head[0] == 0x1f && head[1] == 0x8b {
        let mut gz = flate2::read::GzDecoder::new(f);
        let mut h = [0u8; 512];
        gz.read_exact(&mut h).ok()?;
        if &h[257..262] == b"ustar" {
            return Some(Box::new(flate2::read::GzDecoder::new(
                std::fs::File::open(path).ok()?,
            )));
        }
        return None;
    }
    (n == 512 && &head[257..262] == b"ustar").then(|| Box::new(f) as Box<dyn std::io::Read>)
}

/// Unpacks a build context tar (plain or gzip) into `dir`. Entries that
/// would land outside `dir` (`..`, absolute paths, through links) are refused.
pub fn extract_context<R: std::io::Read>(reader: R, dir: &Path) -> Result<()> {
    use std::io::{BufRead, BufReader};
    let mut r = BufReader::new(reader);
    let head = r.fill_buf()?;
    let gz = head.len() >= 2 && head[0] == 0x1f && head[1] == 0x8b;
    let inner: Box<dyn std::io::Read> = if gz {
        Box::new(flate2::read::GzDecoder::new(r))
    } else {
        Box::new(r)
    };
    std::fs::create_dir_all(dir)?;
    let mut ar = tar::Archive::new(inner);
    ar.set_preserve_permissions(true);
    ar.set_overwrite(true);
    for e in ar
        .entries()
        .map_err(|e| EngineError::BadRequest(format!("build context: {e}")))?
    {
        let mut e = match e {
            Ok(e) => e,
            // The docker CLI ends a context that carries a `-f -` Dockerfile
            // without padding or end blocks; dockerd reads it, so do we.
            Err(err)
                if err.kind() == std::io::ErrorKind::UnexpectedEof
                    || err.to_string().contains("unexpected EOF") =>
            {
                break
            }
            Err(err) => return Err(EngineError::BadRequest(format!("build context: {err}"))),
        };
        let path = e
            .path()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let inside = e
            .unpack_in(dir)
            .map_err(|err| EngineError::BadRequest(format!("build context: {path}: {err}")))?;
        if !inside {
            return Err(EngineError::BadRequest(format!(
                "build context: forbidden path outside the build context: {path}"
            )));
        }
    }
    Ok(())
}

impl Engine {
    /// A fresh directory for a build context, under the data root.
    pub fn new_context_dir(&self) -> PathBuf {
        self.cfg
            .data_root
            .join("build")
            .join(format!("ctx-{:016x}", rand::random::<u64>()))
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
                        EngineError::BadRequest(m)
                            if !m.starts_with("Dockerfile:") && !m.starts_with("The command") =>
                        {
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

    async fn run_step(
        self: &Arc<Self>,
        out: &Out,
        inst: &Instruction,
        state: &ImageState,
        args: &[(String, String)],
        opts: &BuildOptions,
        cache: &mut Cache,
    ) -> Result<ImageState> {
        let shell = state
            .config
            .config
            .shell
            .clone()
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
        let cmd: Vec<String> = match inst.json_args() {
            Some(v) => v,
            None => {
                let rest = inst.rest.trim();
                let script = if inst.heredocs.len() == 1
                    && rest.starts_with("<<")
                    && !rest.contains(char::is_whitespace)
                {
                    inst.heredocs[0].body.clone()
                } else {
                    let mut s = rest.to_string();
                    for h in &inst.heredocs {
                        s.push('\n');
                        s.push_str(&h.body);
                        s.push_str(&h.name);
                    }
                    s
                };
                let mut c = shell.clone();
                c.push(script);
                c
            }
        };
        // Build args reach RUN as environment (below ENV of the same name).
        let predefined: Vec<(String, String)> = opts
            .build_args
            .iter()
            .filter(|(k, _)| PREDEFINED_ARGS.contains(&k.as_str()))
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect();
        let arg_env: Vec<String> = args
            .iter()
            .chain(predefined.iter())
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let prefix = if arg_env.is_empty() {
            String::new()
        } else {
            format!("|{} {} ", arg_env.len(), arg_env.join(" "))
        };
        let created_by = format!("{prefix}{}", cmd.join(" "));
        let key = berth_build::cache_key(&state.id, &format!("RUN {created_by}"), "");
        if !opts.no_cache {
            let hit = match cache.local(&self.store, &key) {
                Some(img) => Some(ImageState {
                    id: img.id,
                    config: img.config,
                    chain: img.chain,
                }),
                None => self.layer_from_source(cache, state, &created_by)?,
            };
            if let Some(st) = hit {
                out.line(" ---> Using cache\n").await?;
                out.line(format!(" ---> {}\n", short(&st.id))).await?;
                return Ok(st);
            }
        }
        if state.chain.is_empty() {
            return Err(EngineError::BadRequest(
                "RUN needs a filesystem: this stage has no layers (FROM scratch)".into(),
            ));
        }
        if state.chain.len() >= berth_store::MAX_LAYERS {
            return Err(berth_store::StoreError::MaxDepth(state.chain.len() + 1).into());
        }
        let image_env = state.config.config.env.clone().unwrap_or_default();
        let req = CreateRequest {
            config: ContainerConfig {
                image: state.id.clone(),
                cmd: Some(cmd.clone()),
                entrypoint: Some(vec![String::new()]),
                env: Some(merge_env(&arg_env, &image_env)),
                user: state.config.config.user.clone(),
                working_dir: state.config.config.working_dir.clone(),
                attach_stdout: true,
                attach_stderr: true,
                ..Default::default()
            },
            networking_config: None,
            host_config: HostConfig {
                network_mode: if opts.network.is_empty() || opts.network == "default" {
                    "none".into()
                } else {
                    opts.network.clone()
                },
                extra_hosts: Some(opts.extra_hosts.clone()).filter(|h| !h.is_empty()),
                ..Default::default()
            },
        };
        let (cid, _) = self.create(None, req).await?;
        out.line(format!(" ---> Running in {}\n", short(&cid)))
            .await?;
        let res = self
            .run_and_commit(out, &cid, state, &cmd, &created_by)
            .await;
        let keep = res.is_err()
            && !opts.force_remove
            && !matches!(&res, Err(EngineError::Internal(m)) if m.starts_with("build cancelled"));
        if !keep {
            let _ = self.remove(&cid, true, false).await;
            if res.is_ok() {
                out.line(format!("Removing intermediate container {}\n", short(&cid)))
                    .await?;
            }
        }
        let st = res?;
        cache.put(key, &st.id)?;
        out.line(format!(" ---> {}\n", short(&st.id))).await?;
        Ok(st)
    }

    async fn run_and_commit(
        self: &Arc<Self>,
        out: &Out,
        cid: &str,
        state: &ImageState,
        cmd: &[String],
        created_by: &str,
    ) -> Result<ImageState> {
        let (stream, _) = self.attach(cid, false, true, true)?;
        let exited = self.wait(cid, "next-exit")?;
        let tx = out.tx.clone();
        let quiet = out.quiet;
        let pump = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let Ok(mut s) = stream.await else { return };
            let mut hdr = [0u8; 8];
            while s.read_exact(&mut hdr).await.is_ok() {
                let len = u32::from_be_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]) as usize;
                let mut buf = vec![0u8; len];
                if s.read_exact(&mut buf).await.is_err() {
                    break;
                }
                if !quiet {
                    let text = String::from_utf8_lossy(&buf);
                    // As the classic builder: stderr in red.
                    let text = match hdr[0] {
                        2 => format!("\x1b[91m{text}\x1b[0m"),
                        _ => text.into_owned(),
                    };
                    let _ = tx.send(json!({ "stream": text })).await;
                }
            }
        });
        if let Err(e) = self.start(cid).await {
            // The pump would wait for a stream that never comes, holding the
            // build's output channel, and the client's response would never end.
            pump.abort();
            return Err(e);
        }
        let code = tokio::select! {
            code = exited => code,
            _ = out.gone() => {
                let _ = self.kill(cid, "SIGKILL").await;
                pump.abort();
                return Err(cancelled());
            }
        };
        let _ = pump.await;
        if code != 0 {
            return Err(EngineError::BadRequest(format!(
                "The command '{}' returned a non-zero code: {code}",
                cmd.join(" ")
            )));
        }
        let upper = self.cdir(cid).join("rw/upper");
        std::fs::create_dir_all(&upper)?;
        let store = self.store.clone();
        let parent = state.chain.last().cloned();
        let (desc, chain_id) = tokio::task::spawn_blocking(move || {
            store.add_layer_from_dir(parent.as_deref(), &upper)
        })
        .await
        .map_err(|e| EngineError::Internal(e.to_string()))??;
        self.stack_layer(state, desc.digest, chain_id, created_by)
    }

    #[allow(clippy::too_many_arguments)]
    async fn copy_step(
        self: &Arc<Self>,
        out: &Out,
        ctx: &Path,
        escape: char,
        inst: &Instruction,
        state: &ImageState,
        lookup: &(dyn Fn(&str) -> Option<String> + Sync),
        opts: &BuildOptions,
        results: &[Option<ImageState>],
        cache: &mut Cache,
        stages: &[Stage],
        stage_no: usize,
    ) -> Result<ImageState> {
        let kw = inst.keyword.as_str();
        let mut words = match inst.json_args() {
            Some(v) => v,
            None => lex::expand_words(&inst.rest, escape, lookup)?,
        };
        let heredoc_files: Vec<(String, String)> = inst
            .heredocs
            .iter()
            .map(|h| {
                let body = if h.quoted {
                    h.body.clone()
                } else {
                    lex::expand(&h.body, escape, lookup).unwrap_or_else(|_| h.body.clone())
                };
                (format!("<<{}", h.name), body)
            })
            .collect();
        if words.len() < 2 {
            return Err(inst
                .error(format!("{kw} requires at least two arguments"))
                .into());
        }
        let dest_raw = words.pop().expect("two words");
        let wd = if state.config.config.working_dir.is_empty() {
            "/".to_string()
        } else {
            state.config.config.working_dir.clone()
        };
        let dest_is_dir_hint =
            dest_raw.ends_with('/') || dest_raw == "." || dest_raw.ends_with("/.");
        let dest = if dest_raw.starts_with('/') {
            dest_raw.clone()
        } else {
            Path::new(&wd).join(&dest_raw).display().to_string()
        };
        // Where the sources come from: the context, or an earlier stage / an image.
        let from = inst.flag("from").map(str::to_string);
        let mut from_mount: Option<(PathBuf, bool)> = None;
        let (src_root, from_id): (PathBuf, String) = match &from {
            None => (ctx.to_path_buf(), String::new()),
            Some(f) => {
                let lname = f.to_ascii_lowercase();
                let img = match (0..stage_no)
                    .find(|&i| stages[i].name.as_deref() == Some(lname.as_str()))
                    .or_else(|| f.parse::<usize>().ok().filter(|&i| i < stage_no))
                {
                    Some(j) => results[j]
                        .clone()
                        .ok_or_else(|| inst.error(format!("stage {f} was not built")))?,
                    None => {
                        let img = self.store.get(f).map_err(|_| {
                            EngineError::NotFound(format!(
                                "{kw} --from: no such image or stage: {f}"
                            ))
                        })?;
                        ImageState {
                            id: img.id,
                            config: img.config,
                            chain: img.chain,
                        }
                    }
                };
                let (dir, mounted) = self.mount_readonly(&img.chain)?;
                from_mount = Some((dir.clone(), mounted));
                (dir, img.id)
            }
        };
        let result = async {
            // Resolve every source.
            let mut sources: Vec<PathBuf> = Vec::new();
            let mut wild = false;
            for s in &words {
                if s.starts_with("http://") || s.starts_with("https://") {
                    if kw == "ADD" {
                        return Err(inst.error(format!("ADD from a URL ({s}) failed: the network is not reachable from this builder")).into());
                    }
                    return Err(inst.error(format!("COPY does not take URLs: {s}")).into());
                }
                if let Some((_, _)) = heredoc_files.iter().find(|(n, _)| n == s) {
                    continue;
                }
                if berth_build::has_wildcards(s) {
                    wild = true;
                    let base = if from.is_some() { src_root.clone() } else { ctx.to_path_buf() };
                    let hits = berth_build::wildcard_matches(&base, s)?;
                    if hits.is_empty() {
                        return Err(inst.error(format!("no source files were specified: {s}")).into());
                    }
                    for h in hits {
                        sources.push(self.resolve_source(&src_root, &h, from.is_some())?);
                    }
                } else {
                    let p = self.resolve_source(&src_root, s, from.is_some())?;
                    if std::fs::symlink_metadata(&p).is_err() {
                        return Err(inst.error(format!("{kw} failed: file not found in build context or excluded by .dockerignore: stat {s}: file does not exist")).into());
                    }
                    sources.push(p);
                }
            }
            let multi = sources.len() + heredoc_files.len() > 1 || wild;
            if multi && !dest_raw.ends_with('/') {
                return Err(inst.error(format!("When using {kw} with more than one source file, the destination must be a directory and end with a /")).into());
            }
            let inputs = {
                let s = sources.clone();
                let mut d = tokio::task::spawn_blocking(move || digest_sources(&s)).await.map_err(|e| EngineError::Internal(e.to_string()))??;
                for (n, b) in &heredoc_files {
                    d.push_str(&format!("{n}:{}", hex::encode(Sha256::digest(b.as_bytes()))));
                }
                format!("{from_id}{d}")
            };
            let flags = format!("{}{}{}",
                inst.flag("chown").map(|c| format!("--chown={c} ")).unwrap_or_default(),
                inst.flag("chmod").map(|c| format!("--chmod={c} ")).unwrap_or_default(),
                if from.is_some() { format!("--from={} ", from.clone().unwrap_or_default()) } else { String::new() });
            let text = format!("{kw} {flags}{} in {dest}", words.join(" "));
            let key = berth_build::cache_key(&state.id, &text, &inputs);
            // As dockerd's history: what was copied is named by its digest,
            // which is what lets `--cache-from` trust the step.
            let kind = match (multi, sources.first().map(|p| p.is_dir())) {
                (false, Some(true)) => "dir",
                (false, _) => "file",
                (true, _) => "multi",
            };
            let created_by = format!("/bin/sh -c #(nop) {kw} {flags}{kind}:{} in {dest}",
                hex::encode(Sha256::digest(inputs.as_bytes())));
            if !opts.no_cache {
                let hit = match cache.local(&self.store, &key) {
                    Some(img) => Some(ImageState { id: img.id, config: img.config, chain: img.chain }),
                    None => self.layer_from_source(cache, state, &created_by)?,
                };
                if let Some(st) = hit {
                    out.line(" ---> Using cache\n").await?;
                    out.line(format!(" ---> {}\n", short(&st.id))).await?;
                    return Ok(st);
                }
            }
            let chmod = match inst.flag("chmod") {
                Some(m) => Some(u32::from_str_radix(m, 8).map_err(|_| inst.error(format!("invalid chmod {m}")))?),
                None => None,
            };
            let st = self
                .write_layer(state, |root| {
                    let owner = match inst.flag("chown") {
                        Some(spec) => crate::user::resolve(root, spec).map(|u| (u.uid, u.gid)).map_err(std::io::Error::other)?,
                        None => (0, 0),
                    };
                    let dst = secure_join(root, &dest)?;
                    let dst_is_dir = multi || dest_is_dir_hint || dst.is_dir();
                    if dst_is_dir {
                        mkdir_root(&dst)?;
                    } else if let Some(p) = dst.parent() {
                        mkdir_root(p)?;
                    }
                    for src in &sources {
                        let m = std::fs::metadata(src)?;
                        if kw == "ADD" && m.is_file() && from.is_none() {
                            if let Some(r) = tar_reader(src) {
                                mkdir_root(&dst)?;
                                let mut ar = tar::Archive::new(r);
                                ar.set_preserve_permissions(true);
                                ar.set_overwrite(true);
                                for e in ar.entries()? {
                                    e?.unpack_in(&dst)?;
                                }
                                continue;
                            }
                        }
                        if m.is_dir() {
                            mkdir_root(&dst)?;
                            for e in std::fs::read_dir(src)? {
                                let e = e?;
                                copy_tree(&e.path(), &dst.join(e.file_name()), owner, chmod)?;
                            }
                        } else {
                            let target = if dst_is_dir { dst.join(src.file_name().unwrap_or_default()) } else { dst.clone() };
                            copy_tree(src, &target, owner, chmod)?;
                        }
                    }
                    for (name, body) in &heredoc_files {
                        let _ = name;
                        let target = if dst_is_dir { dst.join(name.trim_start_matches("<<")) } else { dst.clone() };
                        std::fs::write(&target, body)?;
                        use std::os::unix::fs::PermissionsExt;
                        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(chmod.unwrap_or(0o644)))?;
                        std::os::unix::fs::lchown(&target, Some(owner.0), Some(owner.1))?;
                    }
                    Ok(())
                }, &created_by)
                .await?;
            cache.put(key, &st.id)?;
            out.line(format!(" ---> {}\n", short(&st.id))).await?;
            Ok(st)
        }
        .await;
        if let Some((dir, true)) = from_mount {
            let _ = self.mounter.unmount(&dir);
            let _ = std::fs::remove_dir(&dir);
        }
        result
    }

    /// A source path inside the context (refusing escapes) or inside a stage's
    /// filesystem (resolved as that image would see it).
    fn resolve_source(&self, root: &Path, path: &str, in_image: bool) -> Result<PathBuf> {
        if in_image {
            Ok(secure_join(root, path)?)
        } else {
            Ok(berth_build::resolve_in_context(root, path)?)
        }
    }

    /// A read-only view of a layer chain: the single layer itself, or an
    /// overlay of them (unmounted by the caller when `.1` is true).
    fn mount_readonly(&self, chain: &[String]) -> Result<(PathBuf, bool)> {
        let dirs = self.store.chain_dirs(chain)?;
        match dirs.len() {
            0 => {
                let d = self
                    .cfg
                    .data_root
                    .join("build")
                    .join(format!("empty-{:016x}", rand::random::<u64>()));
                std::fs::create_dir_all(&d)?;
                Ok((d, false))
            }
            1 => Ok((dirs[0].clone(), false)),
            _ => {
                let d = self
                    .cfg
                    .data_root
                    .join("build")
                    .join(format!("ro-{:016x}", rand::random::<u64>()));
                std::fs::create_dir_all(&d)?;
                let m = OverlayMount {
                    lower: dirs,
                    upper: None,
                    target: d.clone(),
                };
                self.mounter.mount_overlay(&m).map_err(|e| {
                    EngineError::Internal(format!("mounting a stage's filesystem: {e}"))
                })?;
                Ok((d, true))
            }
        }
    }

    /// Applies `f` to a writable overlay of `state` and stores what changed
    /// as one new layer.
    async fn write_layer(
        self: &Arc<Self>,
        state: &ImageState,
        f: impl FnOnce(&Path) -> std::io::Result<()>,
        created_by: &str,
    ) -> Result<ImageState> {
        if state.chain.len() >= berth_store::MAX_LAYERS {
            return Err(berth_store::StoreError::MaxDepth(state.chain.len() + 1).into());
        }
        let work = self
            .cfg
            .data_root
            .join("build")
            .join(format!("step-{:016x}", rand::random::<u64>()));
        let upper = work.join("upper");
        std::fs::create_dir_all(&upper)?;
        let res = (|| -> Result<()> {
            if state.chain.is_empty() {
                f(&upper).map_err(|e| EngineError::BadRequest(e.to_string()))
            } else {
                let merged = work.join("merged");
                let m = OverlayMount {
                    lower: self.store.chain_dirs(&state.chain)?,
                    upper: Some((upper.clone(), work.join("work"))),
                    target: merged.clone(),
                };
                self.mounter.mount_overlay(&m).map_err(|e| {
                    EngineError::Internal(format!("mounting the step's filesystem: {e}"))
                })?;
                let r = f(&merged).map_err(|e| EngineError::BadRequest(e.to_string()));
                let _ = self.mounter.unmount(&merged);
                r
            }
        })();
        let out = match res {
            Ok(()) => {
                let store = self.store.clone();
                let parent = state.chain.last().cloned();
                let up = upper.clone();
                tokio::task::spawn_blocking(move || {
                    store.add_layer_from_dir(parent.as_deref(), &up)
                })
                .await
                .map_err(|e| EngineError::Internal(e.to_string()))?
                .map_err(EngineError::from)
            }
            Err(e) => Err(e),
        };
        let _ = berth_store::fsutil::remove_tree(&work);
        let (desc, chain_id) = out?;
        self.stack_layer(state, desc.digest, chain_id, created_by)
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
