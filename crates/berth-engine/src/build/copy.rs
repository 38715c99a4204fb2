//! COPY and ADD steps: sources resolved inside the context (or a stage),
//! copied into a writable overlay of the step's image, stored as a layer.

use super::meta::Lookup;
use super::*;

/// What a COPY or ADD names: its sources, heredoc files and destination.
struct CopyArgs {
    kw: String,
    words: Vec<String>,
    heredocs: Vec<(String, String)>,
    dest_raw: String,
    /// The destination, absolute (a relative one is under WORKDIR).
    dest: String,
    from: Option<String>,
}

/// What the step copies, resolved.
struct Sources {
    paths: Vec<PathBuf>,
    /// More than one source (or a wildcard): the destination is a directory.
    multi: bool,
}

impl CopyArgs {
    fn parse(inst: &Instruction, state: &ImageState, esc: char, lookup: &Lookup) -> Result<Self> {
        let kw = inst.keyword.clone();
        let mut words = match inst.json_args() {
            Some(v) => v,
            None => lex::expand_words(&inst.rest, esc, lookup)?,
        };
        let heredocs = inst
            .heredocs
            .iter()
            .map(|h| {
                let body = if h.quoted {
                    h.body.clone()
                } else {
                    lex::expand(&h.body, esc, lookup).unwrap_or_else(|_| h.body.clone())
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
        let wd = match state.config.config.working_dir.as_str() {
            "" => "/",
            wd => wd,
        };
        let dest = if dest_raw.starts_with('/') {
            dest_raw.clone()
        } else {
            Path::new(wd).join(&dest_raw).display().to_string()
        };
        Ok(Self {
            kw,
            words,
            heredocs,
            dest_raw,
            dest,
            from: inst.flag("from").map(str::to_string),
        })
    }

    /// The flags as the cache key and the history show them.
    fn flags_text(&self, inst: &Instruction) -> String {
        let flag =
            |name: &str, v: Option<&str>| v.map(|v| format!("--{name}={v} ")).unwrap_or_default();
        format!(
            "{}{}{}",
            flag("chown", inst.flag("chown")),
            flag("chmod", inst.flag("chmod")),
            flag("from", self.from.as_deref())
        )
    }
}

impl Build<'_> {
    pub(super) async fn copy_step(
        &mut self,
        st: &StageRun,
        inst: &Instruction,
        lookup: &Lookup<'_>,
    ) -> Result<ImageState> {
        let a = CopyArgs::parse(inst, &st.state, self.plan.escape, lookup)?;
        // Where the sources come from: the context, or an earlier stage / an image.
        let (src_root, from_id, mounted) = match &a.from {
            None => (self.ctx.to_path_buf(), String::new(), false),
            Some(f) => {
                let img = self.copy_from(st.no, inst, &a.kw, f)?;
                let (dir, mounted) = self.engine.mount_readonly(&img.chain)?;
                (dir, img.id, mounted)
            }
        };
        let result = self.copy_into(st, inst, &a, &src_root, &from_id).await;
        if mounted {
            let _ = self.engine.mounter.unmount(&src_root);
            let _ = std::fs::remove_dir(&src_root);
        }
        result
    }

    /// The image `--from=f` names: an earlier stage or an image.
    fn copy_from(
        &self,
        stage_no: usize,
        inst: &Instruction,
        kw: &str,
        f: &str,
    ) -> Result<ImageState> {
        if let Some(j) = self.plan.stage_index(f, stage_no) {
            return self.results[j]
                .clone()
                .ok_or_else(|| inst.error(format!("stage {f} was not built")).into());
        }
        let img = self.engine.store.get(f).map_err(|_| {
            EngineError::NotFound(format!("{kw} --from: no such image or stage: {f}"))
        })?;
        Ok(ImageState {
            id: img.id,
            config: img.config,
            chain: img.chain,
        })
    }

    /// Every source resolved under `src_root`, wildcards expanded.
    fn copy_sources(&self, inst: &Instruction, a: &CopyArgs, src_root: &Path) -> Result<Sources> {
        let kw = &a.kw;
        let in_image = a.from.is_some();
        let mut paths: Vec<PathBuf> = Vec::new();
        let mut wild = false;
        for s in &a.words {
            if s.starts_with("http://") || s.starts_with("https://") {
                if kw == "ADD" {
                    return Err(inst.error(format!("ADD from a URL ({s}) failed: the network is not reachable from this builder")).into());
                }
                return Err(inst.error(format!("COPY does not take URLs: {s}")).into());
            }
            if a.heredocs.iter().any(|(n, _)| n == s) {
                continue;
            }
            if berth_build::has_wildcards(s) {
                wild = true;
                let hits = berth_build::wildcard_matches(src_root, s)?;
                if hits.is_empty() {
                    return Err(inst
                        .error(format!("no source files were specified: {s}"))
                        .into());
                }
                for h in hits {
                    paths.push(self.engine.resolve_source(src_root, &h, in_image)?);
                }
            } else {
                let p = self.engine.resolve_source(src_root, s, in_image)?;
                if std::fs::symlink_metadata(&p).is_err() {
                    return Err(inst.error(format!("{kw} failed: file not found in build context or excluded by .dockerignore: stat {s}: file does not exist")).into());
                }
                paths.push(p);
            }
        }
        let multi = paths.len() + a.heredocs.len() > 1 || wild;
        if multi && !a.dest_raw.ends_with('/') {
            return Err(inst.error(format!("When using {kw} with more than one source file, the destination must be a directory and end with a /")).into());
        }
        Ok(Sources { paths, multi })
    }

    async fn copy_into(
        &mut self,
        st: &StageRun,
        inst: &Instruction,
        a: &CopyArgs,
        src_root: &Path,
        from_id: &str,
    ) -> Result<ImageState> {
        let state = &st.state;
        let sources = self.copy_sources(inst, a, src_root)?;
        let inputs = {
            let s = sources.paths.clone();
            let mut d = tokio::task::spawn_blocking(move || digest_sources(&s))
                .await
                .map_err(|e| EngineError::Internal(e.to_string()))??;
            for (n, b) in &a.heredocs {
                d.push_str(&format!(
                    "{n}:{}",
                    hex::encode(Sha256::digest(b.as_bytes()))
                ));
            }
            format!("{from_id}{d}")
        };
        let (kw, dest, flags) = (&a.kw, &a.dest, a.flags_text(inst));
        let text = format!("{kw} {flags}{} in {dest}", a.words.join(" "));
        let key = berth_build::cache_key(&state.id, &text, &inputs);
        // As dockerd's history: what was copied is named by its digest,
        // which is what lets `--cache-from` trust the step.
        let kind = match (sources.multi, sources.paths.first().map(|p| p.is_dir())) {
            (false, Some(true)) => "dir",
            (false, _) => "file",
            (true, _) => "multi",
        };
        let created_by = format!(
            "/bin/sh -c #(nop) {kw} {flags}{kind}:{} in {dest}",
            hex::encode(Sha256::digest(inputs.as_bytes()))
        );
        if let Some(hit) = self.cached_layer(&key, state, &created_by).await? {
            return Ok(hit);
        }
        let chmod = match inst.flag("chmod") {
            Some(m) => Some(
                u32::from_str_radix(m, 8).map_err(|_| inst.error(format!("invalid chmod {m}")))?,
            ),
            None => None,
        };
        let next = self
            .engine
            .write_layer(
                state,
                |root| write_copy(root, inst, a, &sources, chmod),
                &created_by,
            )
            .await?;
        self.cache.put(key, &next.id)?;
        self.out
            .line(format!(" ---> {}\n", short(&next.id)))
            .await?;
        Ok(next)
    }
}

/// The copy itself, into the step's writable layer mounted at `root`.
fn write_copy(
    root: &Path,
    inst: &Instruction,
    a: &CopyArgs,
    sources: &Sources,
    chmod: Option<u32>,
) -> std::io::Result<()> {
    let owner = match inst.flag("chown") {
        Some(spec) => crate::user::resolve(root, spec)
            .map(|u| (u.uid, u.gid))
            .map_err(std::io::Error::other)?,
        None => (0, 0),
    };
    let dest_is_dir_hint =
        a.dest_raw.ends_with('/') || a.dest_raw == "." || a.dest_raw.ends_with("/.");
    let dst = secure_join(root, &a.dest)?;
    let dst_is_dir = sources.multi || dest_is_dir_hint || dst.is_dir();
    if dst_is_dir {
        mkdir_root(&dst)?;
    } else if let Some(p) = dst.parent() {
        mkdir_root(p)?;
    }
    for src in &sources.paths {
        let m = std::fs::metadata(src)?;
        if a.kw == "ADD" && m.is_file() && a.from.is_none() {
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
            let target = match dst_is_dir {
                true => dst.join(src.file_name().unwrap_or_default()),
                false => dst.clone(),
            };
            copy_tree(src, &target, owner, chmod)?;
        }
    }
    for (name, body) in &a.heredocs {
        use std::os::unix::fs::PermissionsExt;
        let target = match dst_is_dir {
            true => dst.join(name.trim_start_matches("<<")),
            false => dst.clone(),
        };
        std::fs::write(&target, body)?;
        std::fs::set_permissions(
            &target,
            std::fs::Permissions::from_mode(chmod.unwrap_or(0o644)),
        )?;
        std::os::unix::fs::lchown(&target, Some(owner.0), Some(owner.1))?;
    }
    Ok(())
}

impl Engine {
    /// A source path inside the context (refusing escapes) or inside a stage's
    /// filesystem (resolved as that image would see it).
    pub(super) fn resolve_source(
        &self,
        root: &Path,
        path: &str,
        in_image: bool,
    ) -> Result<PathBuf> {
        if in_image {
            Ok(secure_join(root, path)?)
        } else {
            Ok(berth_build::resolve_in_context(root, path)?)
        }
    }

    /// A read-only view of a layer chain: the single layer itself, or an
    /// overlay of them (unmounted by the caller when `.1` is true).
    pub(super) fn mount_readonly(&self, chain: &[String]) -> Result<(PathBuf, bool)> {
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
    pub(super) async fn write_layer(
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
