//! Running a plan: each needed stage from its base, each step of it, with
//! what a step needs gathered in `Build` (the whole build) and `StageRun`
//! (the stage so far).

use super::meta::Lookup;
use super::*;

/// One build in progress.
pub(super) struct Build<'a> {
    pub(super) engine: &'a Arc<Engine>,
    pub(super) out: Out,
    /// The unpacked context.
    pub(super) ctx: &'a Path,
    pub(super) opts: &'a BuildOptions,
    pub(super) plan: Plan,
    pub(super) cache: Cache,
    /// Build args some ARG declared, for the "were not consumed" warning.
    pub(super) used_args: Vec<String>,
    /// Each stage's image once built.
    pub(super) results: Vec<Option<ImageState>>,
}

/// A stage as its steps see it.
pub(super) struct StageRun {
    pub(super) no: usize,
    pub(super) state: ImageState,
    /// ARGs declared so far, in order.
    pub(super) args: Vec<(String, String)>,
    /// Whether this stage set CMD (an ENTRYPOINT then keeps it).
    pub(super) cmd_set: bool,
}

impl StageRun {
    /// Variables as a step's words see them: the config's ENV over the ARGs.
    fn lookup(&self) -> impl Fn(&str) -> Option<String> + Sync {
        let env = env_map(&self.state.config);
        let args = self.args.clone();
        move |n: &str| {
            env.get(n).cloned().or_else(|| {
                args.iter()
                    .rev()
                    .find(|(k, _)| k == n)
                    .map(|(_, v)| v.clone())
            })
        }
    }
}

impl Build<'_> {
    /// Builds every needed stage in order; the target's image at the end.
    pub(super) async fn run(&mut self) -> Result<ImageState> {
        let mut step = 0;
        for i in 0..self.plan.stages.len() {
            if self.plan.needed[i] {
                let state = self.stage(i, &mut step).await?;
                self.results[i] = Some(state);
            }
        }
        self.warn_unused_args().await?;
        Ok(self.results[self.plan.target]
            .clone()
            .expect("the target is built"))
    }

    async fn stage(&mut self, i: usize, step: &mut usize) -> Result<ImageState> {
        let total = self.plan.total;
        *step += 1;
        let from = self.plan.stages[i].from.original.clone();
        self.out
            .line(format!("Step {step}/{total} : {from}\n"))
            .await?;
        let mut st = StageRun {
            no: i,
            state: self.base(i)?,
            args: Vec::new(),
            cmd_set: false,
        };
        let shown = if st.state.id.is_empty() {
            String::new()
        } else {
            short(&st.state.id).to_string()
        };
        self.out.line(format!(" ---> {shown}\n")).await?;
        // ONBUILD triggers of the base run first, without step lines.
        let mut body = self.triggers(&mut st).await?;
        let triggered = body.len();
        body.extend(self.plan.stages[i].body.iter().cloned());
        for (n, inst) in body.iter().enumerate() {
            if n >= triggered {
                *step += 1;
                self.out
                    .line(format!("Step {step}/{total} : {}\n", inst.original))
                    .await?;
            }
            self.step(&mut st, inst).await.map_err(|e| match e {
                EngineError::BadRequest(m) if !m.starts_with("Dockerfile:") => {
                    EngineError::BadRequest(format!("Dockerfile:{}: {m}", inst.line))
                }
                e => e,
            })?;
        }
        if i == self.plan.target && !self.opts.labels.is_empty() {
            self.label_target(&mut st)?;
        }
        Ok(st.state)
    }

    /// The image stage `i` starts from: an earlier stage, scratch or an image.
    fn base(&self, i: usize) -> Result<ImageState> {
        let base = &self.plan.stages[i].base;
        if let Some(j) = self.plan.stage_index(base, i) {
            return Ok(self.results[j]
                .clone()
                .expect("needed stages are built in order"));
        }
        if base.eq_ignore_ascii_case("scratch") {
            return Ok(ImageState {
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
            });
        }
        let img = self.engine.store.get(base).map_err(|_| {
            EngineError::NotFound(format!(
                "pull access denied for {base}: no such image here and no registry to pull from"
            ))
        })?;
        Ok(ImageState {
            id: img.id,
            config: img.config,
            chain: img.chain,
        })
    }

    /// The base image's ONBUILD triggers, parsed, taken off the config.
    async fn triggers(&self, st: &mut StageRun) -> Result<Vec<Instruction>> {
        let triggers = st.state.config.config.on_build.take().unwrap_or_default();
        let mut body = Vec::new();
        if triggers.is_empty() {
            return Ok(body);
        }
        let s = if triggers.len() == 1 { "" } else { "s" };
        self.out
            .line(format!("# Executing {} build trigger{s}\n", triggers.len()))
            .await?;
        for t in &triggers {
            let parsed = dockerfile::parse(&format!("FROM scratch\n{t}\n"))?;
            body.extend(parsed.instructions.into_iter().skip(1));
        }
        Ok(body)
    }

    async fn step(&mut self, st: &mut StageRun, inst: &Instruction) -> Result<()> {
        let lookup = st.lookup();
        if let Some((cfg, text)) = self.metadata(st, inst, &lookup)? {
            let no_cache = self.opts.no_cache;
            let (next, hit) =
                self.engine
                    .metadata_step(&mut self.cache, &st.state, cfg, &text, no_cache)?;
            if hit {
                self.out.line(" ---> Using cache\n").await?;
            }
            self.out
                .line(format!(" ---> {}\n", short(&next.id)))
                .await?;
            st.state = next;
            return Ok(());
        }
        st.state = match inst.keyword.as_str() {
            "RUN" => {
                inst.check_flags(&["network", "mount", "security"])?;
                self.run_step(st, inst).await?
            }
            "COPY" => {
                inst.check_flags(&["from", "chown", "chmod", "link", "parents", "exclude"])?;
                self.copy_step(st, inst, &lookup as &Lookup).await?
            }
            "ADD" => {
                inst.check_flags(&[
                    "chown",
                    "chmod",
                    "link",
                    "checksum",
                    "keep-git-dir",
                    "exclude",
                ])?;
                self.copy_step(st, inst, &lookup as &Lookup).await?
            }
            other => return Err(inst.error(format!("unknown instruction: {other}")).into()),
        };
        Ok(())
    }

    /// A layer step's image from the cache — this daemon's, else a
    /// `--cache-from` image's — announced as dockerd does; None: run it.
    pub(super) async fn cached_layer(
        &mut self,
        key: &str,
        state: &ImageState,
        created_by: &str,
    ) -> Result<Option<ImageState>> {
        if self.opts.no_cache {
            return Ok(None);
        }
        let hit = match self.cache.local(&self.engine.store, key) {
            Some(img) => Some(ImageState {
                id: img.id,
                config: img.config,
                chain: img.chain,
            }),
            None => self
                .engine
                .layer_from_source(&self.cache, state, created_by)?,
        };
        if let Some(hit) = &hit {
            self.out.line(" ---> Using cache\n").await?;
            self.out.line(format!(" ---> {}\n", short(&hit.id))).await?;
        }
        Ok(hit)
    }

    /// `--label`s land on the target as one more LABEL step.
    fn label_target(&mut self, st: &mut StageRun) -> Result<()> {
        let mut labels: Vec<(&String, &String)> = self.opts.labels.iter().collect();
        labels.sort();
        let text: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut cfg = st.state.config.clone();
        cfg.config
            .labels
            .get_or_insert_with(Default::default)
            .extend(self.opts.labels.clone());
        let text = format!("LABEL {}", text.join(" "));
        let no_cache = self.opts.no_cache;
        st.state = self
            .engine
            .metadata_step(&mut self.cache, &st.state, cfg, &text, no_cache)?
            .0;
        Ok(())
    }

    async fn warn_unused_args(&self) -> Result<()> {
        let mut unused: Vec<&str> = self
            .opts
            .build_args
            .keys()
            .filter(|k| {
                !self.used_args.contains(k)
                    && !self.plan.globals.contains_key(*k)
                    && !PREDEFINED_ARGS.contains(&k.as_str())
            })
            .map(String::as_str)
            .collect();
        if unused.is_empty() {
            return Ok(());
        }
        unused.sort();
        self.out
            .line(format!(
                "[Warning] One or more build-args [{}] were not consumed\n",
                unused.join(" ")
            ))
            .await
    }
}
