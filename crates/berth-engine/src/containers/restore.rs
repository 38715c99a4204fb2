//! After a (re)start of berthd: every container record read back, live
//! shims reconnected, what ended while the daemon was away finished, and
//! restart policies applied.

use crate::record::{Record, State, Status, Transition};
use crate::{kill_stale_shim, now, remove_tree, Ctr, Engine};
use berth_runtime::proto::{ExitStatus, Request};
use std::path::Path;
use std::sync::Arc;

impl Engine {
    /// Re-reads every record and reconnects to live shims.
    pub(crate) async fn restore(self: Arc<Self>) {
        let Ok(rd) = std::fs::read_dir(self.cfg.data_root.join("containers")) else {
            return;
        };
        let mut to_start = Vec::new();
        for e in rd.flatten() {
            if let Some(id) = self.clone().restore_one(&e.path()).await {
                to_start.push(id);
            }
        }
        self.tidy_address_pools();
        for id in to_start {
            if let Err(e) = self.start(&id).await {
                tracing::warn!("restart policy: starting {id}: {e}");
            }
        }
    }

    /// One container's record back in memory; its id when its restart
    /// policy wants it started.
    async fn restore_one(self: Arc<Self>, dir: &Path) -> Option<String> {
        let Some(rec) = std::fs::read(dir.join("config.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Record>(&b).ok())
        else {
            tracing::warn!("dropping unreadable container record {}", dir.display());
            return None;
        };
        let mut st: State = std::fs::read(dir.join("state.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let id = rec.id.clone();
        if st.status == Status::Removing {
            let _ = self.mounter.unmount(&self.rootfs(&id));
            let _ = remove_tree(&self.xdir(&id));
            let _ = remove_tree(dir);
            return None;
        }
        // A record still `created` may belong to a container that started
        // just before a crash (its `running` write is made off the start
        // path): the shim knows.
        let live = (st.status.is_running() || st.status == Status::Created)
            && self.shim_reports_live(&id, &mut st).await;
        let policy = rec.host_config.restart_policy.name.clone();
        let was_running = st.status.is_running();
        let never_started = st.status == Status::Created;
        let c = self.insert(rec, st);
        if live {
            self.reattach(&c);
        } else if was_running {
            // The container ended while we were away: its shim left the status.
            let exit = std::fs::read(self.xdir(&id).join("exit"))
                .ok()
                .and_then(|b| serde_json::from_slice::<ExitStatus>(&b).ok())
                .unwrap_or(ExitStatus {
                    exit_code: 255,
                    oom_killed: false,
                    finished_at: now(),
                });
            self.clone().handle_exit(c.clone(), exit, false).await;
        } else {
            self.reclaim_cut_launch(&c, never_started).await;
        }
        let st = c.state();
        let wants_start = !st.status.is_running()
            && !st.manually_stopped
            && (policy == "always" || policy == "unless-stopped")
            && st.started_at.is_some();
        wants_start.then_some(id)
    }

    /// Asks the container's shim; a running or paused answer goes into `st`.
    async fn shim_reports_live(&self, id: &str, st: &mut State) -> bool {
        match self.shim(id).call(&Request::State).await {
            Ok(r) if matches!(r.status.as_deref(), Some("running" | "paused")) => st
                .apply(Transition::Restored {
                    pid: r.pid,
                    paused: r.status.as_deref() == Some("paused"),
                    at: now(),
                })
                .is_ok(),
            _ => false,
        }
    }

    /// A live container's DNS, healthcheck and exit monitor, again.
    fn reattach(self: &Arc<Self>, c: &Arc<Ctr>) {
        let id = c.id();
        if self.on_user_network(&c.state().endpoints) {
            let ns = berth_net::host::netns_path(&self.cfg.exec_root, &id);
            if let Err(e) = self.start_dns(&id, &ns) {
                tracing::warn!("dns for {id}: {e}");
            }
        }
        self.start_health(c, false);
        let me = self.clone();
        let c2 = c.clone();
        tokio::spawn(async move { me.monitor(c2, None).await });
    }

    /// A launch cut short by a crash may have left a shim waiting to start
    /// its container, its cgroup (also when that shim died since, killed
    /// outright), and an endpoint.
    async fn reclaim_cut_launch(&self, c: &Arc<Ctr>, never_started: bool) {
        let id = c.id();
        kill_stale_shim(&self.xdir(&id));
        if never_started {
            self.destroy_cgroup(&id).await;
        }
        let eps = std::mem::take(&mut c.state.lock().expect("state").endpoints);
        self.teardown_network(&id, &eps).await;
        if !eps.is_empty() {
            let _ = self.persist_state(c);
        }
    }

    /// Addresses are written without sync; after a crash of the machine a
    /// pool may still list containers that hold none now.
    fn tidy_address_pools(&self) {
        let held: std::collections::HashSet<(String, String)> = self
            .containers
            .read()
            .expect("containers")
            .values()
            .flat_map(|c| {
                let id = c.id();
                c.state()
                    .endpoints
                    .values()
                    .map(|e| (e.network_id.clone(), id.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        if let Err(e) = self
            .nets
            .retain_addresses(|net, owner| held.contains(&(net.to_string(), owner.to_string())))
        {
            tracing::warn!("tidying address pools: {e}");
        }
    }
}
