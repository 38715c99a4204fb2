//! Stopping, killing, pausing, renaming and removing containers, and
//! waiting for them.

use crate::*;

impl Engine {
    pub(crate) async fn wait_exit(&self, c: &Ctr, timeout: Option<Duration>) -> bool {
        let mut rx = c.signals.subscribe();
        let fut = async {
            loop {
                if !c.state().status.is_running() {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        };
        match timeout {
            Some(t) => tokio::time::timeout(t, fut).await.is_ok(),
            None => {
                fut.await;
                true
            }
        }
    }

    pub async fn stop(&self, key: &str, timeout: Option<i64>, signal: Option<&str>) -> Result<()> {
        self.stop_inner(key, timeout, signal).await?;
        if let Ok(c) = self.find(key) {
            self.emit_for(&c, "stop", &[]);
        }
        Ok(())
    }

    pub(crate) async fn stop_inner(
        &self,
        key: &str,
        timeout: Option<i64>,
        signal: Option<&str>,
    ) -> Result<()> {
        let c = self.find(key)?;
        let _op = c.op.lock().await;
        if !c.state().status.is_running() {
            return Err(EngineError::NotModified);
        }
        {
            let mut st = c.state.lock().expect("state");
            let _ = st.apply(Transition::StopRequested);
            // Between runs: cancelling the pending restart is the whole stop.
            if st.apply(Transition::RestartCancelled).is_ok() {
                drop(st);
                let _ = self.persist_state(&c);
                c.bump(|s| s.exits += 1);
                return Ok(());
            }
        }
        let _ = self.persist_state(&c);
        let (stop_signal, default_timeout) = {
            let rec = c.rec.read().expect("rec");
            (
                signal
                    .map(str::to_string)
                    .or_else(|| rec.config.stop_signal.clone())
                    .unwrap_or_else(|| "SIGTERM".into()),
                rec.config.stop_timeout.unwrap_or(10),
            )
        };
        let t = timeout.unwrap_or(default_timeout);
        let id = c.id();
        if c.state().status == Status::Paused {
            let _ = self.shim(&id).call(&Request::Resume).await;
        }
        let sig = parse_signal(&stop_signal)?;
        let _ = self
            .shim(&id)
            .call(&Request::Kill {
                signal: sig,
                all: false,
            })
            .await;
        if t >= 0
            && self
                .wait_exit(&c, Some(Duration::from_secs(t as u64)))
                .await
        {
            return Ok(());
        }
        if t < 0 {
            self.wait_exit(&c, None).await;
            return Ok(());
        }
        let killed = self
            .shim(&id)
            .call(&Request::Kill {
                signal: libc::SIGKILL,
                all: true,
            })
            .await;
        // An error here is most often the container having ended (and its
        // shim with it) since the first signal: then the stop is done.
        let ended = self.wait_exit(&c, Some(Duration::from_secs(10))).await;
        match killed {
            Err(e) if !ended => Err(e.into()),
            _ => Ok(()),
        }
    }

    pub async fn kill(&self, key: &str, signal: &str) -> Result<()> {
        let c = self.find(key)?;
        let sig = parse_signal(if signal.is_empty() { "SIGKILL" } else { signal })?;
        if !c.state().status.is_running() {
            return Err(EngineError::Conflict(format!(
                "cannot kill container: {}: container {} is not running",
                key,
                c.id()
            )));
        }
        if sig == libc::SIGKILL {
            let _ = c
                .state
                .lock()
                .expect("state")
                .apply(Transition::StopRequested);
            let _ = self.persist_state(&c);
        }
        if let Err(e) = self
            .shim(&c.id())
            .call(&Request::Kill {
                signal: sig,
                all: false,
            })
            .await
        {
            // It ended meanwhile: dockerd's answer for a stopped container.
            if !self.wait_exit(&c, Some(Duration::from_secs(1))).await {
                return Err(e.into());
            }
            return Err(EngineError::Conflict(format!(
                "cannot kill container: {}: container {} is not running",
                key,
                c.id()
            )));
        }
        self.emit_for(&c, "kill", &[("signal", sig.to_string())]);
        if sig == libc::SIGKILL {
            self.wait_exit(&c, Some(Duration::from_secs(10))).await;
        }
        Ok(())
    }

    pub async fn restart(self: &Arc<Self>, key: &str, timeout: Option<i64>) -> Result<()> {
        match self.stop(key, timeout, None).await {
            Ok(()) | Err(EngineError::NotModified) => {}
            Err(e) => return Err(e),
        }
        match self.start(key).await {
            Ok(()) | Err(EngineError::NotModified) => {}
            Err(e) => return Err(e),
        }
        if let Ok(c) = self.find(key) {
            self.emit_for(&c, "restart", &[]);
        }
        Ok(())
    }

    pub async fn pause(&self, key: &str, pause: bool) -> Result<()> {
        let c = self.find(key)?;
        let _op = c.op.lock().await;
        let st = c.state().status;
        let id = c.id();
        match (pause, st) {
            (true, Status::Running) => {
                if let Err(e) = self.shim(&id).call(&Request::Pause).await {
                    // The container ending under us (its shim gone, its
                    // cgroup removed) is not a daemon failure.
                    let pid = c.state().pid;
                    let gone = pid <= 0
                        || nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err();
                    if gone {
                        return Err(EngineError::Conflict(format!(
                            "Container {id} is not running"
                        )));
                    }
                    return Err(e.into());
                }
                let _ = c.state.lock().expect("state").apply(Transition::Paused);
                self.emit_for(&c, "pause", &[]);
            }
            (false, Status::Paused) => {
                self.shim(&id).call(&Request::Resume).await?;
                let _ = c.state.lock().expect("state").apply(Transition::Unpaused);
                self.emit_for(&c, "unpause", &[]);
            }
            (true, Status::Paused) => {
                return Err(EngineError::Conflict(format!(
                    "Container {id} is already paused"
                )))
            }
            (false, _) => {
                return Err(EngineError::Conflict(format!(
                    "Container {id} is not paused"
                )))
            }
            (true, _) => {
                return Err(EngineError::Conflict(format!(
                    "Container {id} is not running"
                )))
            }
        }
        self.persist_state(&c)?;
        Ok(())
    }

    // ---------------------------------------------------------------- remove

    pub async fn remove(&self, key: &str, force: bool, volumes: bool) -> Result<()> {
        let c = self.find(key)?;
        let name = c.rec.read().expect("rec").name.clone();
        // A start may be under way: once it holds the container the kill
        // must come again, or the removal would take a running container's
        // network and root away beneath it.
        let mut tries = 0;
        let _op = loop {
            let status = c.state().status;
            if !force {
                refuse_removal(status, &name)?;
            }
            if status == Status::Restarting {
                let mut st = c.state.lock().expect("state");
                let _ = st.apply(Transition::StopRequested);
                let _ = st.apply(Transition::RestartCancelled);
            }
            if c.state().status.is_running() {
                self.kill_for_removal(&c).await?;
            }
            let op = c.op.lock().await;
            if !c.state().status.is_running() {
                break op;
            }
            tries += 1;
            if tries == 5 {
                return Err(EngineError::Internal(format!(
                    "could not kill running container {}, cannot remove",
                    c.id()
                )));
            }
        };
        let id = c.id();
        {
            let mut st = c.state.lock().expect("state");
            if st.apply(Transition::Removing).is_err() {
                return Err(EngineError::Conflict(format!(
                    "removal of container {id} is already in progress"
                )));
            }
        }
        // Atomic, not durable: the directory is discarded next; after a
        // crash in between the container is still there, exited, to remove.
        let _ = self.persist_state_with(&c, false);
        let eps = std::mem::take(&mut c.state.lock().expect("state").endpoints);
        self.teardown_network(&id, &eps).await;
        self.mounter.unmount(&self.rootfs(&id))?;
        self.discard(&self.xdir(&id), &self.cfg.exec_root)?;
        let _ = std::fs::remove_file(self.shim_socket(&id));
        self.discard(&self.cdir(&id), &self.cfg.data_root)?;
        self.containers.write().expect("containers").remove(&id);
        {
            let mut names = self.names.write().expect("names");
            if names.get(&name) == Some(&id) {
                names.remove(&name);
            }
        }
        self.execs
            .lock()
            .expect("execs")
            .retain(|_, e| e.container_id != id);
        c.bump(|s| s.removed = true);
        let rec = c.rec.read().expect("rec").clone();
        self.emit_container(&rec, "destroy", &[]);
        if volumes {
            self.remove_anonymous_volumes(&rec);
        }
        if self.store.get(&rec.image_id).is_err() {
            // Its image went with `rmi -f`: the layers may now be free.
            self.store.gc_layers(&rec.layers, &self.held_layers());
        }
        Ok(())
    }

    /// `rm -f` of a running container: SIGKILL to all of it, and its end.
    async fn kill_for_removal(&self, c: &Arc<Ctr>) -> Result<()> {
        let _ = c
            .state
            .lock()
            .expect("state")
            .apply(Transition::StopRequested);
        let _ = self
            .shim(&c.id())
            .call(&Request::Kill {
                signal: libc::SIGKILL,
                all: true,
            })
            .await;
        // A frozen process cannot take its SIGKILL until thawed.
        if c.state().status == Status::Paused {
            let _ = self.shim(&c.id()).call(&Request::Resume).await;
        }
        if !self.wait_exit(c, Some(Duration::from_secs(15))).await {
            return Err(EngineError::Internal(format!(
                "could not kill running container {}, cannot remove",
                c.id()
            )));
        }
        Ok(())
    }

    /// Every layer some container mounts.
    pub(crate) fn held_layers(&self) -> std::collections::HashSet<String> {
        self.containers
            .read()
            .expect("containers")
            .values()
            .flat_map(|c| c.rec.read().expect("rec").layers.clone())
            .collect()
    }

    pub async fn prune(
        &self,
        filters: &HashMap<String, Vec<String>>,
    ) -> Result<(Vec<String>, u64)> {
        let filter = prune::PruneFilter::parse(filters, &[])?;
        let ids: Vec<String> = self
            .containers
            .read()
            .expect("containers")
            .values()
            .filter(|c| {
                matches!(
                    c.state().status,
                    Status::Exited | Status::Created | Status::Dead
                )
            })
            .filter(|c| {
                let r = c.rec.read().expect("rec");
                let labels = r.config.labels.clone().unwrap_or_default();
                filter.matches(prune::rfc3339_unix(&r.created), &labels)
            })
            .map(|c| c.id())
            .collect();
        let mut out = Vec::new();
        let mut space = 0;
        for id in ids {
            space += dir_size(&self.cdir(&id).join("rw/upper"));
            if self.remove(&id, false, false).await.is_ok() {
                out.push(id);
            }
        }
        Ok((out, space))
    }

    pub fn rename(&self, key: &str, new: &str) -> Result<()> {
        let c = self.find(key)?;
        let new = new.trim_start_matches('/');
        if !names::valid(new) {
            return Err(EngineError::BadRequest(format!(
                "Invalid container name ({new}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        let mut names = self.names.write().expect("names");
        if let Some(other) = names.get(new) {
            return Err(EngineError::Conflict(format!(
                "Conflict. The container name \"/{new}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
            )));
        }
        let mut rec = c.rec.write().expect("rec");
        names.remove(&rec.name);
        names.insert(new.to_string(), rec.id.clone());
        let old = std::mem::replace(&mut rec.name, new.to_string());
        self.persist_record(&rec)?;
        self.emit_container(&rec, "rename", &[("oldName", format!("/{old}"))]);
        Ok(())
    }

    // ---------------------------------------------------------------- wait

    /// `POST /containers/{id}/wait`: `not-running` (default), `next-exit`, `removed`.
    /// The condition's baseline is taken now, before the returned future runs, so a
    /// client that waits and then starts never misses the exit.
    pub fn wait(
        &self,
        key: &str,
        condition: &str,
    ) -> Result<impl std::future::Future<Output = i64> + Send + 'static> {
        let c = self.find(key)?;
        let mut rx = c.signals.subscribe();
        let start = rx.borrow_and_update().clone();
        let condition = condition.to_string();
        Ok(async move {
            loop {
                let st = c.state();
                let sig = rx.borrow().clone();
                let done = match condition.as_str() {
                    "next-exit" => sig.exits > start.exits,
                    "removed" => sig.removed,
                    _ => {
                        (!st.status.is_running() && st.status != Status::Created)
                            || sig.exits > start.exits
                    }
                };
                if done {
                    return st.exit_code as i64;
                }
                if rx.changed().await.is_err() {
                    return c.state().exit_code as i64;
                }
            }
        })
    }
}

/// dockerd's refusal to remove a container that runs, without `-f`.
fn refuse_removal(status: Status, name: &str) -> Result<()> {
    let why = match status {
        Status::Restarting => {
            "container is restarting: stop the container before removing or force remove"
        }
        Status::Paused => "container is paused and must be unpaused first",
        s if s.is_running() => {
            "container is running: stop the container before removing or force remove"
        }
        _ => return Ok(()),
    };
    Err(EngineError::Conflict(format!(
        "cannot remove container \"/{name}\": {why}"
    )))
}
