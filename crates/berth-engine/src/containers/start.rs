//! Starting a container: its rootfs, network, OCI spec and shim; watching
//! it run; exit handling and restart policies.

use crate::*;

impl Engine {
    pub async fn start(self: &Arc<Self>, key: &str) -> Result<()> {
        let c = self.find(key)?;
        let _op = c.op.lock().await;
        match c.state().status {
            Status::Running | Status::Paused => return Err(EngineError::NotModified),
            Status::Removing | Status::Dead => {
                return Err(EngineError::Conflict(format!(
                    "container {} is marked for removal and cannot be started",
                    c.id()
                )))
            }
            _ => {}
        }
        {
            let mut st = c.state.lock().expect("state");
            let _ = st.apply(Transition::StartRequested);
        }
        self.start_locked(&c).await
    }

    pub(crate) fn prepare_rootfs(&self, rec: &Record) -> Result<PathBuf> {
        let target = self.rootfs(&rec.id);
        if !self.mounter.is_mounted(&target) {
            let init = self.cdir(&rec.id).join("init");
            if !init.exists() {
                rootfs::make_init_layer(&init)?;
            }
            let m = OverlayMount {
                lower: self.lower_dirs_of(rec)?,
                upper: Some((
                    self.cdir(&rec.id).join("rw/upper"),
                    self.cdir(&rec.id).join("rw/work"),
                )),
                target: target.clone(),
            };
            self.mounter
                .mount_overlay(&m)
                .map_err(|e| EngineError::Internal(format!("mounting rootfs: {e}")))?;
        }
        Ok(target)
    }

    /// The read-only layers under a container's writable one, top first: its
    /// init layer (mount points the engine needs), then the image's layers.
    pub(crate) fn lower_dirs_of(&self, rec: &Record) -> Result<Vec<PathBuf>> {
        let mut dirs = vec![self.cdir(&rec.id).join("init")];
        if rec.layers.is_empty() {
            dirs.extend(self.store.lower_dirs(&self.store.get(&rec.image_id)?)?);
        } else {
            dirs.extend(self.store.chain_dirs(&rec.layers)?);
        }
        Ok(dirs)
    }

    pub(crate) async fn start_locked(self: &Arc<Self>, c: &Arc<Ctr>) -> Result<()> {
        let rec = c.rec.read().expect("rec").clone();
        let res = self.launch(c, &rec).await;
        if let Err(e) = &res {
            let exit_code = match e {
                EngineError::StartFailed { exit_code, .. } => *exit_code,
                _ => berth_runtime::proto::ErrorKind::Other.exit_code(),
            };
            let failed = Transition::StartFailed {
                error: e.to_string(),
                exit_code,
            };
            let _ = c.state.lock().expect("state").apply(failed);
            let _ = self.persist_state(c);
            let _ = self.mounter.unmount(&self.rootfs(&rec.id));
            c.bump(|s| s.exits += 1);
            // As dockerd does: `run --rm` whose start fails leaves nothing behind,
            // and the CLI waits for that removal before it exits.
            if rec.host_config.auto_remove {
                self.spawn_auto_remove(rec.id.clone());
            }
        }
        res
    }

    pub(crate) async fn launch(self: &Arc<Self>, c: &Arc<Ctr>, rec: &Record) -> Result<()> {
        let (netns, eps) = match self.setup_network(rec).await? {
            Some((p, e)) => (Some(p), e),
            None => (None, Default::default()),
        };
        c.state.lock().expect("state").endpoints = eps.clone();
        if let Some(ns) = &netns {
            if self.on_user_network(&eps) {
                if let Err(e) = self.start_dns(&rec.id, Path::new(ns)) {
                    self.teardown_network(&rec.id, &eps).await;
                    c.state.lock().expect("state").endpoints.clear();
                    return Err(e);
                }
            }
        }
        let publishes = eps.values().any(|e| !e.ports.is_empty());
        if publishes {
            self.sync_nft_async().await;
        }
        let res = self.launch_in(c, rec, netns.as_deref(), &eps).await;
        if res.is_err() {
            c.state.lock().expect("state").endpoints.clear();
            self.teardown_network(&rec.id, &eps).await;
            if publishes {
                self.sync_nft_async().await;
            }
        }
        res
    }

    pub(crate) async fn launch_in(
        self: &Arc<Self>,
        c: &Arc<Ctr>,
        rec: &Record,
        netns: Option<&str>,
        eps: &BTreeMap<String, endpoints::EndpointState>,
    ) -> Result<()> {
        let id = &rec.id;
        let rootfs = self.prepare_rootfs(rec)?;
        if !rec.config.working_dir.is_empty() {
            // As dockerd does: a missing working directory is created (root, 0755).
            rootfs::secure_join(&rootfs, &rec.config.working_dir)
                .and_then(std::fs::create_dir_all)
                .map_err(|e| {
                    EngineError::BadRequest(format!(
                        "cannot create working directory {}: {e}",
                        rec.config.working_dir
                    ))
                })?;
        }
        let rs = self.run_spec(rec, &rootfs, netns, eps)?;
        let oci = spec::build(&rs).map_err(|e| EngineError::BadRequest(e.to_string()))?;
        let xdir = self.xdir(id);
        std::fs::create_dir_all(xdir.join("bundle"))?;
        // The previous shim of this container may still be tearing down its
        // cgroups after reporting the exit: let it finish first.
        wait_for_old_shim(&xdir).await;
        for stale in ["exit", "init.pid"] {
            let _ = std::fs::remove_file(xdir.join(stale));
        }
        let _ = std::fs::remove_file(self.shim_socket(id));
        write_replace(
            &xdir.join("bundle/config.json"),
            &serde_json::to_vec(&oci).map_err(|e| EngineError::Internal(e.to_string()))?,
        )?;
        let shim_cfg = self.shim_config(rec, &rs.cgroup_path);
        write_replace(
            &xdir.join("shim.json"),
            &serde_json::to_vec(&shim_cfg).map_err(|e| EngineError::Internal(e.to_string()))?,
        )?;
        self.shims.spawn(&xdir).await?;
        let mut rx = c.signals.subscribe();
        c.bump(|s| s.shims += 1);
        // `docker run` attaches before it starts: let those attaches connect
        // first (each one bumps the signals when it has), for at most 2 s.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while c.attach_pending.load(Ordering::SeqCst) > 0 {
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        // berthd's waiter is in place before the process runs.
        let waiter = self.shim(id).begin_wait().await.ok();
        let resp = match self.shim(id).call(&Request::Start).await {
            Ok(r) => r,
            Err(e) => {
                if kill_stale_shim(&xdir) {
                    self.destroy_cgroup(id).await;
                }
                return Err(e.into());
            }
        };
        {
            let started = Transition::Started {
                pid: resp.pid.unwrap_or(0),
                at: now(),
            };
            if let Err(e) = c.state.lock().expect("state").apply(started) {
                tracing::warn!("{}: {e}", c.id());
            }
        }
        self.start_health(c, true);
        self.persist_state_soon(c);
        self.emit_for(c, "start", &[]);
        let me = self.clone();
        let c2 = c.clone();
        tokio::spawn(async move { me.monitor(c2, waiter).await });
        Ok(())
    }

    /// What the container's shim is told in `shim.json`.
    fn shim_config(&self, rec: &Record, cgroup_path: &str) -> berth_runtime::proto::ShimConfig {
        let id = &rec.id;
        let log_opts = rec
            .host_config
            .log_config
            .config
            .clone()
            .unwrap_or_default();
        // dockerd's `local` driver keeps 5 files of 20 MB unless told.
        let local = rec.host_config.log_config.kind == "local";
        let (default_size, default_files) = if local { (20 << 20, 5) } else { (10 << 20, 3) };
        berth_runtime::proto::ShimConfig {
            id: id.clone(),
            bundle: self.xdir(id).join("bundle").display().to_string(),
            runtime_root: self.cfg.exec_root.join("runtime").display().to_string(),
            log_path: rec.log_path.clone(),
            log_max_size: log_opts
                .get("max-size")
                .and_then(|s| parse_size(s))
                .unwrap_or(default_size),
            log_max_files: log_opts
                .get("max-file")
                .and_then(|s| s.parse().ok())
                .unwrap_or(default_files),
            tty: rec.config.tty,
            open_stdin: rec.config.open_stdin,
            stdin_once: rec.config.stdin_once,
            height: 0,
            width: 0,
            cgroup_path: cgroup_path.to_string(),
            socket: self.shim_socket(id).display().to_string(),
            seccomp_cache: self.cfg.exec_root.join("seccomp").display().to_string(),
            slim_after_ms: self.cfg.shim_slim_after_ms,
            monitor: self
                .cfg
                .monitor_path
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned()),
        }
    }

    pub(crate) async fn monitor(
        self: Arc<Self>,
        c: Arc<Ctr>,
        waiter: Option<berth_runtime::shim_client::PendingWait>,
    ) {
        let id = c.id();
        let exit = match waiter {
            Some(w) => w.exit().await,
            None => self.shim(&id).wait().await,
        };
        let exit = match exit {
            Ok(e) => e,
            Err(_) => {
                // The shim is gone, usually because a short-lived container ended
                // before we asked; it writes its exit file before it closes its
                // socket. Without the file it died: look once more, then give up.
                let path = self.xdir(&id).join("exit");
                let read = || {
                    std::fs::read(&path)
                        .ok()
                        .and_then(|b| serde_json::from_slice::<ExitStatus>(&b).ok())
                };
                let found = match read() {
                    Some(e) => Some(e),
                    None => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        read()
                    }
                };
                found.unwrap_or(ExitStatus {
                    exit_code: 255,
                    oom_killed: false,
                    finished_at: now(),
                })
            }
        };
        self.handle_exit(c, exit, true).await;
    }

    /// Boxed: exit handling may restart the container, whose monitor ends here again.
    pub(crate) fn handle_exit(
        self: Arc<Self>,
        c: Arc<Ctr>,
        exit: ExitStatus,
        policies: bool,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(self.handle_exit_inner(c, exit, policies))
    }

    pub(crate) async fn handle_exit_inner(
        self: Arc<Self>,
        c: Arc<Ctr>,
        exit: ExitStatus,
        policies: bool,
    ) {
        let id = c.id();
        self.stop_health(&id);
        // The network goes first, its published ports with it: whoever sees
        // the container exited (`rm -f`, `stop`) must find no rule left.
        let eps = {
            let mut st = c.state.lock().expect("state");
            if !st.status.is_running() {
                return;
            }
            std::mem::take(&mut st.endpoints)
        };
        self.teardown_network(&id, &eps).await;
        if eps.values().any(|e| !e.ports.is_empty()) {
            self.sync_nft_async().await;
        }
        // Lock order: never the record while holding the state (see
        // ARCHITECTURE.md); what the record says is read first.
        let (rp, auto_remove) = {
            let rec = c.rec.read().expect("rec");
            (
                rec.host_config.restart_policy.clone(),
                rec.host_config.auto_remove,
            )
        };
        let (restart, remove) = {
            let mut st = c.state.lock().expect("state");
            let exited = Transition::Exited {
                exit_code: exit.exit_code,
                oom_killed: exit.oom_killed,
                finished_at: if exit.finished_at.is_empty() {
                    now()
                } else {
                    exit.finished_at.clone()
                },
            };
            // Not running any more: another path recorded this exit already.
            if st.apply(exited).is_err() {
                return;
            }
            let restart = policies && st.should_restart(&rp);
            if restart {
                let _ = st.apply(Transition::Restarting);
            }
            (restart, auto_remove && !restart)
        };
        // Removal follows at once for `--rm`: atomic is enough; a crash in
        // between leaves an exited container, or a running one whose shim
        // is gone, which the next start of berthd marks exited.
        let _ = self.persist_state_with(&c, !remove);
        let _ = self.mounter.unmount(&self.rootfs(&id));
        if exit.oom_killed {
            self.emit_for(&c, "oom", &[]);
        }
        self.emit_for(&c, "die", &[("exitCode", exit.exit_code.to_string())]);
        c.bump(|s| s.exits += 1);
        if restart {
            let fails = c.state().failure_count.min(10);
            let delay = Duration::from_millis(100u64 << fails.saturating_sub(1))
                .min(Duration::from_secs(60));
            let me = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _op = c.op.lock().await;
                let st = c.state();
                if st.status != Status::Restarting {
                    return;
                }
                if st.manually_stopped {
                    let _ = c
                        .state
                        .lock()
                        .expect("state")
                        .apply(Transition::RestartCancelled);
                    let _ = me.persist_state(&c);
                    c.bump(|s| s.exits += 1);
                } else if let Err(e) = me.start_locked(&c).await {
                    tracing::warn!("restarting {id}: {e}");
                }
            });
        } else if remove {
            self.spawn_auto_remove(id);
        }
    }

    /// Removal runs apart: the caller may hold the container's op lock.
    pub(crate) fn spawn_auto_remove(self: &Arc<Self>, id: String) {
        let me = self.clone();
        tokio::spawn(async move {
            // As `docker run --rm`: anonymous volumes go with the container.
            if let Err(e) = me.remove(&id, true, true).await {
                tracing::warn!("auto-remove {id}: {e}");
            }
        });
    }
}

/// Waits (up to 5 s) for the shim whose pid `xdir/shim.pid` names to exit.
pub(crate) async fn wait_for_old_shim(xdir: &Path) {
    let Some(pid) = std::fs::read_to_string(xdir.join("shim.pid"))
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
    else {
        return;
    };
    let ours = |pid: i32| {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains(&*xdir.to_string_lossy()))
            .unwrap_or(false)
    };
    for _ in 0..5000 {
        if !ours(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
