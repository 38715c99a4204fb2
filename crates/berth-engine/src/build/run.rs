//! RUN steps: a container from the step's image, its output streamed, its
//! writable layer stored as the step's layer.

use super::*;

impl Build<'_> {
    pub(super) async fn run_step(
        &mut self,
        st: &StageRun,
        inst: &Instruction,
    ) -> Result<ImageState> {
        let (state, opts) = (&st.state, self.opts);
        let cmd = run_command(inst, state);
        // Build args reach RUN as environment (below ENV of the same name).
        let predefined: Vec<(String, String)> = opts
            .build_args
            .iter()
            .filter(|(k, _)| PREDEFINED_ARGS.contains(&k.as_str()))
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect();
        let arg_env: Vec<String> = st
            .args
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
        if let Some(hit) = self.cached_layer(&key, state, &created_by).await? {
            return Ok(hit);
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
        let (cid, _) = self.engine.create(None, req).await?;
        self.out
            .line(format!(" ---> Running in {}\n", short(&cid)))
            .await?;
        let res = self
            .engine
            .run_and_commit(&self.out, &cid, state, &cmd, &created_by)
            .await;
        let keep = res.is_err()
            && !opts.force_remove
            && !matches!(&res, Err(EngineError::Internal(m)) if m.starts_with("build cancelled"));
        if !keep {
            let _ = self.engine.remove(&cid, true, false).await;
            if res.is_ok() {
                self.out
                    .line(format!("Removing intermediate container {}\n", short(&cid)))
                    .await?;
            }
        }
        let next = res?;
        self.cache.put(key, &next.id)?;
        self.out
            .line(format!(" ---> {}\n", short(&next.id)))
            .await?;
        Ok(next)
    }
}

impl Engine {
    pub(super) async fn run_and_commit(
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
                    let _ = tx.send(JsonMessage::text(text)).await;
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
            return Err(EngineError::BuildStep {
                cmd: cmd.join(" "),
                code,
            });
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
}

/// RUN's command: its JSON form, or its text (heredocs joined in) through
/// the stage's SHELL.
fn run_command(inst: &Instruction, state: &ImageState) -> Vec<String> {
    let shell = state
        .config
        .config
        .shell
        .clone()
        .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
    match inst.json_args() {
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
    }
}
