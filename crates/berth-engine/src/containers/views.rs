//! What inspect and list show of containers.

use crate::*;
use berth_api::{
    ContainerInspect, ContainerState, ContainerSummary, GraphDriver, SummaryHostConfig,
    SummaryNetworkSettings,
};

impl Engine {
    pub fn container_tty(&self, key: &str) -> Result<bool> {
        Ok(self.find(key)?.rec.read().expect("rec").config.tty)
    }

    /// `docker inspect` of a container.
    pub fn inspect(&self, key: &str, size: bool) -> Result<ContainerInspect> {
        let c = self.find(key)?;
        let rec = c.rec.read().expect("rec").clone();
        let st = c.state();
        let dir = self.cdir(&rec.id);
        let path_text = |p: PathBuf| p.display().to_string();
        let mut config = rec.config.clone();
        config.image = rec.image.clone();
        let mut host_config = rec.host_config.clone();
        host_config.network_mode =
            endpoints::mode_network(&rec.host_config.network_mode).to_string();
        host_config.links = self.links_json(&rec);
        let exec_ids: Vec<String> = self
            .execs
            .lock()
            .expect("execs")
            .values()
            .filter(|e| e.container_id == rec.id && e.running)
            .map(|e| e.id.clone())
            .collect();
        let lower = self
            .store
            .get(&rec.image_id)
            .ok()
            .and_then(|i| self.store.lower_dirs(&i).ok())
            .map(|d| {
                d.iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(":")
            })
            .unwrap_or_default();
        let (size_rw, size_root_fs) = self.sizes(&rec, size);
        Ok(ContainerInspect {
            id: rec.id.clone(),
            created: rec.created.clone(),
            path: rec.path.clone(),
            args: rec.args.clone(),
            state: ContainerState {
                status: st.status.as_str().to_string(),
                running: st.status.is_running(),
                paused: st.status == Status::Paused,
                restarting: st.status == Status::Restarting,
                oom_killed: st.oom_killed,
                dead: st.status == Status::Dead,
                pid: st.pid.into(),
                exit_code: st.exit_code.into(),
                error: st.error.clone(),
                started_at: st.started_at.clone().unwrap_or_else(|| ZERO_TIME.into()),
                finished_at: st.finished_at.clone().unwrap_or_else(|| ZERO_TIME.into()),
                health: st.health.clone(),
            },
            image: rec.image_id.clone(),
            resolv_conf_path: path_text(dir.join("resolv.conf")),
            hostname_path: path_text(dir.join("hostname")),
            hosts_path: path_text(dir.join("hosts")),
            log_path: rec.log_path.clone(),
            name: format!("/{}", rec.name),
            restart_count: st.restart_count,
            driver: "overlay2".into(),
            platform: "linux".into(),
            mount_label: String::new(),
            process_label: String::new(),
            app_armor_profile: String::new(),
            exec_ids: (!exec_ids.is_empty()).then_some(exec_ids),
            host_config,
            graph_driver: GraphDriver {
                name: "overlay2".into(),
                data: [
                    ("LowerDir", lower),
                    ("UpperDir", path_text(dir.join("rw/upper"))),
                    ("WorkDir", path_text(dir.join("rw/work"))),
                    ("MergedDir", path_text(self.rootfs(&rec.id))),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            },
            size_rw,
            size_root_fs,
            mounts: self.mount_points(&rec),
            config,
            network_settings: self.network_settings(&rec, &st.endpoints),
        })
    }

    /// `SizeRw` and `SizeRootFs`, when asked for.
    fn sizes(&self, rec: &Record, size: bool) -> (Option<i64>, Option<i64>) {
        if !size {
            return (None, None);
        }
        let rw = dir_size(&self.cdir(&rec.id).join("rw/upper")) as i64;
        let root = self.store.get(&rec.image_id).map(|i| i.size).unwrap_or(0) as i64;
        (Some(rw), Some(rw + root))
    }

    /// `GET /containers/json`, from memory.
    pub fn list(
        &self,
        all: bool,
        limit: Option<usize>,
        size: bool,
        filters: &HashMap<String, Vec<String>>,
    ) -> Result<Vec<ContainerSummary>> {
        check_list_filters(filters)?;
        let cs: Vec<Arc<Ctr>> = self
            .containers
            .read()
            .expect("containers")
            .values()
            .cloned()
            .collect();
        let mut rows: Vec<(Record, State)> = cs
            .iter()
            .map(|c| (c.rec.read().expect("rec").clone(), c.state()))
            .collect();
        rows.sort_by(|a, b| b.0.created.cmp(&a.0.created));
        // `/parent/alias` names of linked containers, gathered in one pass.
        let mut link_names: HashMap<String, Vec<String>> = HashMap::new();
        for (r, _) in &rows {
            for l in &r.links {
                link_names
                    .entry(l.child.clone())
                    .or_default()
                    .push(format!("/{}/{}", r.name, l.alias));
            }
        }
        let ancestors: Vec<String> = filters
            .get("ancestor")
            .into_iter()
            .flatten()
            .filter_map(|a| self.store.get(a).ok().map(|i| i.id))
            .collect();
        let explicit_status = filters.contains_key("status") || filters.contains_key("exited");
        let mut out = Vec::new();
        for (rec, st) in rows {
            if !all && limit.is_none() && !explicit_status && !st.status.is_running() {
                continue;
            }
            if !matches_filters(&rec, &st, filters, &ancestors) {
                continue;
            }
            if let Some(n) = limit {
                if out.len() >= n {
                    break;
                }
            }
            let mut command = std::iter::once(rec.path.clone())
                .chain(rec.args.iter().cloned())
                .collect::<Vec<_>>()
                .join(" ");
            if command.is_empty() {
                command = String::new();
            }
            let net_mode = endpoints::mode_network(&rec.host_config.network_mode).to_string();
            let created = chrono::DateTime::parse_from_rfc3339(&rec.created)
                .map(|t| t.timestamp())
                .unwrap_or(0);
            let (size_rw, size_root_fs) = self.sizes(&rec, size);
            out.push(ContainerSummary {
                names: std::iter::once(format!("/{}", rec.name))
                    .chain(link_names.get(&rec.id).into_iter().flatten().cloned())
                    .collect(),
                image: rec.image.clone(),
                image_id: rec.image_id.clone(),
                command,
                created,
                ports: self.ports_list(&rec, &st.endpoints),
                size_rw,
                size_root_fs,
                labels: rec.config.labels.clone().unwrap_or_default(),
                state: st.status.as_str().to_string(),
                status: record::status_text(&st),
                host_config: SummaryHostConfig {
                    network_mode: net_mode,
                },
                network_settings: SummaryNetworkSettings {
                    networks: self.networks_json(&rec, &st.endpoints),
                },
                mounts: self.mount_points(&rec),
                id: rec.id,
            });
        }
        Ok(out)
    }

    /// Which containers use an image, for `rmi`.
    pub(crate) fn image_users(&self, image_id: &str) -> Vec<berth_store::ImageUser> {
        self.containers
            .read()
            .expect("containers")
            .values()
            .filter_map(|c| {
                let running = c.state().status.is_running();
                let rec = c.rec.read().expect("rec");
                (rec.image_id == image_id).then(|| berth_store::ImageUser {
                    container_id: rec.id.clone(),
                    running,
                })
            })
            .collect()
    }

    pub fn container_count(&self) -> (usize, usize, usize, usize) {
        let cs = self.containers.read().expect("containers");
        let mut r = (cs.len(), 0, 0, 0);
        for c in cs.values() {
            match c.state().status {
                Status::Running | Status::Restarting => r.1 += 1,
                Status::Paused => r.2 += 1,
                _ => r.3 += 1,
            }
        }
        r
    }

    pub fn data_root(&self) -> &Path {
        &self.cfg.data_root
    }
}

/// dockerd's refusals of filters `ps` does not know.
fn check_list_filters(filters: &HashMap<String, Vec<String>>) -> Result<()> {
    for k in filters.keys() {
        if !matches!(
            k.as_str(),
            "id" | "name"
                | "label"
                | "status"
                | "exited"
                | "ancestor"
                | "before"
                | "since"
                | "network"
                | "volume"
                | "health"
                | "is-task"
                | "publish"
                | "expose"
        ) {
            return Err(EngineError::BadRequest(format!("invalid filter '{k}'")));
        }
    }
    for s in filters.get("status").into_iter().flatten() {
        if !matches!(
            s.as_str(),
            "created" | "restarting" | "running" | "removing" | "paused" | "exited" | "dead"
        ) {
            return Err(EngineError::BadRequest(format!(
                "invalid filter 'status={s}'"
            )));
        }
    }
    Ok(())
}

pub(crate) fn matches_filters(
    rec: &Record,
    st: &State,
    f: &HashMap<String, Vec<String>>,
    ancestors: &[String],
) -> bool {
    let any = |key: &str, pred: &dyn Fn(&str) -> bool| -> bool {
        match f.get(key) {
            None => true,
            Some(vals) if vals.is_empty() => true,
            Some(vals) => vals.iter().any(|v| pred(v)),
        }
    };
    let labels = rec.config.labels.clone().unwrap_or_default();
    any("id", &|v| rec.id.starts_with(v))
        && any("name", &|v| rec.name.contains(v.trim_start_matches('/')))
        && any("status", &|v| v == st.status.as_str())
        && any("health", &|v| match &st.health {
            Some(h) => v == h.status,
            None => v == "none",
        })
        && any("exited", &|v| {
            st.status == Status::Exited && v.parse::<i32>().ok() == Some(st.exit_code)
        })
        && f.get("label").is_none_or(|vals| {
            vals.iter().all(|v| match v.split_once('=') {
                Some((k, val)) => labels.get(k).map(|x| x == val).unwrap_or(false),
                None => labels.contains_key(v.as_str()),
            })
        })
        && (f.get("ancestor").is_none_or(|v| v.is_empty())
            || ancestors.contains(&rec.image_id)
            || f["ancestor"].iter().any(|a| a == &rec.image))
}
