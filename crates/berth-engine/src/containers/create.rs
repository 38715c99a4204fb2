//! Creating a container: dockerd's checks and defaults, the merge of the
//! image's config into the request, names, mounts and network settings.

use crate::*;
use berth_api::{EndpointSettings, NetworkingConfig};

/// What a create request's `EndpointsConfig` asks.
struct Endpoints {
    /// The settings for the network mode's own network.
    primary: EndpointSettings,
    /// Networks to join at start besides it.
    extra: Vec<record::ExtraNetwork>,
    /// Every network's settings as given, for inspect.
    settings: BTreeMap<String, EndpointSettings>,
}

impl Engine {
    /// Makes a container; answers its id and dockerd's warnings about
    /// settings this host cannot honour.
    pub async fn create(
        &self,
        name: Option<&str>,
        req: CreateRequest,
    ) -> Result<(String, Vec<String>)> {
        let CreateRequest {
            mut config,
            mut host_config,
            networking_config,
        } = req;
        let warnings = self.check_request(&mut config, &mut host_config)?;
        if config.image.is_empty() {
            return Err(EngineError::BadRequest("No image specified".into()));
        }
        let image = self.store.get(&config.image).map_err(|e| match e {
            berth_store::StoreError::ImageNotFound(_) => {
                EngineError::missing(Kind::Image, &config.image)
            }
            e => e.into(),
        })?;
        host_config.network_mode = self.check_network_mode(&host_config.network_mode)?;
        validate::check_host_options(&host_config)?;
        let Endpoints {
            primary: endpoint_cfg,
            extra: extra_networks,
            settings: endpoint_settings,
        } = self.endpoints_config(&host_config.network_mode, networking_config.as_ref())?;
        let (aliases, requested_ip) = record::endpoint_aliases_and_ip(&endpoint_cfg);
        let mac_address = Some(endpoint_cfg.mac_address.clone())
            .filter(|s| !s.is_empty())
            .or_else(|| Some(config.mac_address.clone()).filter(|m| !m.is_empty()));
        if let Some(m) = &mac_address {
            endpoints::parse_mac(m)?;
        }
        for c in host_config
            .cap_add
            .iter()
            .flatten()
            .chain(host_config.cap_drop.iter().flatten())
        {
            spec::normalize_cap(c).map_err(|e| EngineError::BadRequest(e.to_string()))?;
        }
        let ic = &image.config.config;
        let argv = merge_image_config(&mut config, ic)?;
        let id = new_id();
        if config.hostname.is_empty() {
            config.hostname = if host_config.network_mode == "host" {
                nix::unistd::gethostname()
                    .ok()
                    .and_then(|h| h.into_string().ok())
                    .unwrap_or_else(|| id[..12].to_string())
            } else {
                id[..12].to_string()
            };
        }
        let name = self.container_name(name, &id)?;
        let mounts = self.resolve_mounts(&config, &host_config)?;
        let links = self.register_links(
            host_config.links.as_deref().unwrap_or_default(),
            &host_config.network_mode,
        )?;
        // `none` keeps nothing: the shim logs nowhere, and inspect shows
        // an empty LogPath as dockerd's.
        let log_path = match host_config.log_config.kind.as_str() {
            "none" => String::new(),
            _ => self
                .cdir(&id)
                .join(format!("{id}-json.log"))
                .display()
                .to_string(),
        };
        let rec = Record {
            id: id.clone(),
            name: name.clone(),
            created: now(),
            image: config.image.clone(),
            image_id: image.id.clone(),
            path: argv[0].clone(),
            args: argv[1..].to_vec(),
            config,
            host_config,
            log_path,
            layers: image.chain.clone(),
            mounts,
            aliases,
            requested_ip,
            mac_address,
            extra_networks,
            endpoint_settings,
            links,
        };
        self.claim_and_persist(&rec)?;
        self.emit_container(&rec, "create", &[]);
        self.insert(rec, State::default());
        Ok((id, warnings))
    }

    /// dockerd's checks and defaults for a create request; its warnings.
    fn check_request(
        &self,
        config: &mut berth_api::ContainerConfig,
        host_config: &mut berth_api::HostConfig,
    ) -> Result<Vec<String>> {
        let bad = EngineError::BadRequest;
        validate::config(config).map_err(bad)?;
        let mut warnings = validate::host_config(host_config).map_err(bad)?;
        warnings.extend(validate::resources(host_config, &self.sys, false).map_err(bad)?);
        validate::apply_defaults(host_config, &self.sys);
        match host_config.log_config.kind.as_str() {
            "" => host_config.log_config.kind = "json-file".into(),
            // `local` keeps its logs in our json-file format, which reads
            // back the same; only its defaults differ.
            "json-file" | "local" | "none" => {}
            other => {
                return Err(EngineError::BadRequest(format!(
                    "logger: no log driver named '{other}' is registered"
                )))
            }
        }
        Ok(warnings)
    }

    /// `NetworkingConfig.EndpointsConfig` (API 1.44+): the settings for the
    /// network mode's network, the other networks to join at start (as after
    /// `network connect`; an unknown one fails the start, as dockerd), and
    /// every network's settings as given, for inspect.
    fn endpoints_config(
        &self,
        network_mode: &str,
        networking_config: Option<&NetworkingConfig>,
    ) -> Result<Endpoints> {
        let net_name = endpoints::mode_network(network_mode).to_string();
        // Every network of `EndpointsConfig` (API 1.44+): the mode's is the
        // primary one, the others are joined at start as after `network
        // connect`. An unknown one fails the start, as dockerd.
        let primary = self
            .nets
            .get(&net_name)
            .map(|n| n.name)
            .unwrap_or_else(|_| net_name.clone());
        let mut endpoint_cfg = EndpointSettings::default();
        let mut extra_networks = Vec::new();
        let mut endpoint_settings = BTreeMap::new();
        let endpoints = networking_config
            .map(|n| n.endpoints_config.clone())
            .unwrap_or_default();
        for (k, v) in endpoints {
            // The docker CLI names the default network `default`.
            let k = endpoints::mode_network(&k).to_string();
            let name = self.nets.get(&k).map(|n| n.name).unwrap_or(k);
            if name == primary {
                endpoint_cfg = v.clone();
            } else if net_name == "host" {
                return Err(EngineError::BadRequest(
                    "container cannot be disconnected from host network or connected to host network".into(),
                ));
            } else if net_name == "none" {
                return Err(EngineError::BadRequest(
                    "container cannot be connected to multiple networks with one of the networks in private (none) mode".into(),
                ));
            } else {
                let (aliases, ip) = record::endpoint_aliases_and_ip(&v);
                extra_networks.push(record::ExtraNetwork {
                    name: name.clone(),
                    aliases,
                    ip,
                });
            }
            endpoint_settings.insert(name, record::endpoint_settings_as_given(&v));
        }
        Ok(Endpoints {
            primary: endpoint_cfg,
            extra: extra_networks,
            settings: endpoint_settings,
        })
    }

    /// The name asked for, checked, or a generated one no container has.
    fn container_name(&self, name: Option<&str>, id: &str) -> Result<String> {
        Ok(match name {
            Some(n) if !n.is_empty() => {
                let n = n.trim_start_matches('/');
                if !names::valid(n) {
                    return Err(EngineError::BadRequest(format!(
                        "Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                    )));
                }
                n.to_string()
            }
            _ => {
                let taken = self.names.read().expect("names");
                (0..)
                    .map(names::generate)
                    .find(|n| !taken.contains_key(n))
                    .unwrap_or_else(|| id[..12].to_string())
            }
        })
    }

    /// Claims the name and writes the record and a fresh state; undone when
    /// the disk refuses.
    fn claim_and_persist(&self, rec: &Record) -> Result<()> {
        let (id, name) = (&rec.id, &rec.name);
        {
            // Check and claim the name in one step: two creates race for it.
            let mut names = self.names.write().expect("names");
            if let Some(other) = names.get(name) {
                return Err(EngineError::Conflict(format!(
                    "Conflict. The container name \"/{name}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
                )));
            }
            names.insert(name.clone(), id.clone());
        }
        let res = (|| {
            std::fs::create_dir_all(self.cdir(id))?;
            self.persist_record(rec)?;
            // The default state: also what a record without state.json
            // loads as, so this one need not reach the disk first.
            write_replace(
                &self.cdir(id).join("state.json"),
                &serde_json::to_vec(&State::default()).unwrap_or_default(),
            )?;
            Ok::<_, EngineError>(())
        })();
        if let Err(e) = res {
            self.names.write().expect("names").remove(name);
            let _ = remove_tree(&self.cdir(id));
            return Err(e);
        }
        Ok(())
    }
}

/// The image's config merged into a create request, as dockerd merges it:
/// environment by key, entrypoint and command (an empty entrypoint clears
/// the image's, a new entrypoint drops the image's command), working dir,
/// user, labels, exposed ports, stop signal, healthcheck (an empty `Test`
/// keeps the image's command with the request's timings) and the image's
/// VOLUMEs. Returns the command line to run.
pub(crate) fn merge_image_config(
    config: &mut berth_api::ContainerConfig,
    ic: &berth_api::ImageRunConfig,
) -> Result<Vec<String>> {
    config.env = Some(merge_env(
        ic.env.as_deref().unwrap_or_default(),
        config.env.as_deref().unwrap_or_default(),
    ));
    let entrypoint = match &config.entrypoint {
        Some(e) if e.len() == 1 && e[0].is_empty() => vec![],
        Some(e) => e.clone(),
        None => ic.entrypoint.clone().unwrap_or_default(),
    };
    let cmd = match &config.cmd {
        Some(c) if !c.is_empty() => c.clone(),
        _ if config.entrypoint.is_some() => vec![],
        _ => ic.cmd.clone().unwrap_or_default(),
    };
    if config.cmd.as_ref().is_none_or(|c| c.is_empty()) && config.entrypoint.is_none() {
        config.cmd = ic.cmd.clone();
    }
    if config.entrypoint.is_none() {
        config.entrypoint = ic.entrypoint.clone();
    }
    let mut argv = entrypoint;
    argv.extend(cmd);
    if argv.is_empty() {
        return Err(EngineError::BadRequest("no command specified".into()));
    }
    if config.working_dir.is_empty() {
        config.working_dir = ic.working_dir.clone();
    }
    if config.user.is_empty() {
        config.user = ic.user.clone();
    }
    let mut labels = ic.labels.clone().unwrap_or_default();
    labels.extend(config.labels.clone().unwrap_or_default());
    config.labels = Some(labels);
    if config.exposed_ports.is_none() {
        config.exposed_ports = ic.exposed_ports.clone();
    }
    if config.stop_signal.is_none() {
        config.stop_signal = ic.stop_signal.clone();
    }
    // The container's healthcheck replaces the image's; `Test` left
    // empty keeps the image's command with the container's timings.
    config.healthcheck = match (config.healthcheck.take(), &ic.healthcheck) {
        (Some(mut c), Some(i)) if c.test.is_empty() => {
            c.test = i.test.clone();
            Some(c)
        }
        (Some(c), _) => Some(c),
        (None, i) => i.clone(),
    };
    // The image's VOLUMEs become anonymous volumes too.
    if let Some(iv) = &ic.volumes {
        let v = config.volumes.get_or_insert_with(Default::default);
        for (k, val) in iv {
            v.entry(k.clone()).or_insert_with(|| val.clone());
        }
    }
    Ok(argv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::{ContainerConfig, HealthConfig, ImageRunConfig};

    fn image() -> ImageRunConfig {
        ImageRunConfig {
            env: Some(vec!["PATH=/bin".into(), "A=image".into()]),
            entrypoint: Some(vec!["/entry".into()]),
            cmd: Some(vec!["serve".into()]),
            working_dir: "/app".into(),
            user: "nobody".into(),
            labels: Some([("l".to_string(), "image".to_string())].into()),
            volumes: Some([("/data".to_string(), serde_json::json!({}))].into()),
            healthcheck: Some(HealthConfig {
                test: vec!["CMD".into(), "check".into()],
                interval: 1,
                ..HealthConfig::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_image_fills_what_the_request_leaves_out() {
        let mut c = ContainerConfig {
            env: Some(vec!["A=mine".into()]),
            labels: Some([("m".to_string(), "mine".to_string())].into()),
            healthcheck: Some(HealthConfig {
                interval: 5,
                ..HealthConfig::default()
            }),
            ..Default::default()
        };
        let argv = merge_image_config(&mut c, &image()).unwrap();
        assert_eq!(argv, ["/entry", "serve"]);
        assert_eq!(c.env.as_deref().unwrap(), ["PATH=/bin", "A=mine"]);
        assert_eq!(
            (c.working_dir.as_str(), c.user.as_str()),
            ("/app", "nobody")
        );
        assert_eq!(c.labels.as_ref().unwrap().len(), 2);
        assert!(c.volumes.as_ref().unwrap().contains_key("/data"));
        let h = c.healthcheck.unwrap();
        assert_eq!((h.test[1].as_str(), h.interval), ("check", 5));
    }

    #[test]
    fn entrypoints_and_commands_as_dockerd() {
        // A new command keeps the image's entrypoint.
        let mut c = ContainerConfig {
            cmd: Some(vec!["other".into()]),
            ..Default::default()
        };
        assert_eq!(
            merge_image_config(&mut c, &image()).unwrap(),
            ["/entry", "other"]
        );
        // A new entrypoint drops the image's command.
        let mut c = ContainerConfig {
            entrypoint: Some(vec!["/bin/sh".into()]),
            ..Default::default()
        };
        assert_eq!(merge_image_config(&mut c, &image()).unwrap(), ["/bin/sh"]);
        // An empty entrypoint clears the image's; nothing left is an error.
        let mut c = ContainerConfig {
            entrypoint: Some(vec![String::new()]),
            ..Default::default()
        };
        assert!(merge_image_config(&mut c, &image()).is_err());
    }
}
