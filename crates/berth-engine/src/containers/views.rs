//! What inspect and list show of containers.

use crate::*;

impl Engine {
    pub fn container_tty(&self, key: &str) -> Result<bool> {
        Ok(self.find(key)?.rec.read().expect("rec").config.tty)
    }

    /// `docker inspect` of a container.
    pub fn inspect(&self, key: &str, size: bool) -> Result<Value> {
        let c = self.find(key)?;
        let rec = c.rec.read().expect("rec").clone();
        let st = c.state();
        let dir = self.cdir(&rec.id);
        let mut config = serde_json::to_value(&rec.config).unwrap_or_default();
        config["Image"] = json!(rec.image);
        let net_mode = net::mode_network(&rec.host_config.network_mode).to_string();
        let mut host_config = serde_json::to_value(&rec.host_config).unwrap_or_default();
        host_config["NetworkMode"] = json!(net_mode);
        host_config["Links"] = json!(self.links_json(&rec));
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
        let mut v = json!({
            "Id": rec.id,
            "Created": rec.created,
            "Path": rec.path,
            "Args": rec.args,
            "State": {
                "Status": st.status.as_str(),
                "Running": st.status.is_running(),
                "Paused": st.status == Status::Paused,
                "Restarting": st.status == Status::Restarting,
                "OOMKilled": st.oom_killed,
                "Dead": st.status == Status::Dead,
                "Pid": st.pid,
                "ExitCode": st.exit_code,
                "Error": st.error,
                "StartedAt": st.started_at.clone().unwrap_or_else(|| ZERO_TIME.into()),
                "FinishedAt": st.finished_at.clone().unwrap_or_else(|| ZERO_TIME.into()),
            },
            "Image": rec.image_id,
            "ResolvConfPath": dir.join("resolv.conf"),
            "HostnamePath": dir.join("hostname"),
            "HostsPath": dir.join("hosts"),
            "LogPath": rec.log_path,
            "Name": format!("/{}", rec.name),
            "RestartCount": st.restart_count,
            "Driver": "overlay2",
            "Platform": "linux",
            "MountLabel": "",
            "ProcessLabel": "",
            "AppArmorProfile": "",
            "ExecIDs": if exec_ids.is_empty() { Value::Null } else { json!(exec_ids) },
            "HostConfig": host_config,
            "GraphDriver": {
                "Name": "overlay2",
                "Data": {
                    "LowerDir": lower,
                    "UpperDir": dir.join("rw/upper"),
                    "WorkDir": dir.join("rw/work"),
                    "MergedDir": self.rootfs(&rec.id),
                }
            },
            "Mounts": self.mounts_json(&rec),
            "Config": config,
            "NetworkSettings": self.network_settings(&rec, &st.endpoints),
        });
        if let Some(h) = &st.health {
            v["State"]["Health"] = json!(h);
        }
        if size {
            let rw = dir_size(&dir.join("rw/upper"));
            let root = self.store.get(&rec.image_id).map(|i| i.size).unwrap_or(0);
            v["SizeRw"] = json!(rw);
            v["SizeRootFs"] = json!(rw + root);
        }
        Ok(v)
    }

    /// `GET /containers/json`, from memory.
    pub fn list(
        &self,
        all: bool,
        limit: Option<usize>,
        size: bool,
        filters: &HashMap<String, Vec<String>>,
    ) -> Result<Vec<Value>> {
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
            let net_mode = net::mode_network(&rec.host_config.network_mode).to_string();
            let created = chrono::DateTime::parse_from_rfc3339(&rec.created)
                .map(|t| t.timestamp())
                .unwrap_or(0);
            let mut v = json!({
                "Id": rec.id,
                "Names": std::iter::once(format!("/{}", rec.name))
                    .chain(link_names.get(&rec.id).into_iter().flatten().cloned())
                    .collect::<Vec<_>>(),
                "Image": rec.image,
                "ImageID": rec.image_id,
                "Command": command,
                "Created": created,
                "Ports": self.ports_list(&rec, &st.endpoints),
                "Labels": rec.config.labels.clone().unwrap_or_default(),
                "State": st.status.as_str(),
                "Status": record::status_text(&st),
                "HostConfig": {"NetworkMode": net_mode},
                "NetworkSettings": {"Networks": self.networks_json(&rec, &st.endpoints)},
                "Mounts": self.mounts_json(&rec),
            });
            if size {
                let rw = dir_size(&self.cdir(&rec.id).join("rw/upper"));
                let root = self.store.get(&rec.image_id).map(|i| i.size).unwrap_or(0);
                v["SizeRw"] = json!(rw);
                v["SizeRootFs"] = json!(rw + root);
            }
            out.push(v);
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
