//! COPY and ADD steps: sources resolved inside the context (or a stage),
//! copied into a writable overlay of the step's image, stored as a layer.

use super::*;

impl Engine {
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn copy_step(
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
