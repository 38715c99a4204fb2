//! The `/networks` endpoints: list, inspect, create, remove and prune of
//! networks, and their events.

pub(crate) mod dns;
pub(crate) mod endpoints;
pub(crate) mod links;
mod views;

use crate::{Engine, EngineError, Result};
use berth_api::{
    Ipam, IpamConfig, NetworkContainer, NetworkCreateRequest, NetworkCreateResponse,
    NetworkResource,
};
use berth_net::{CreateOptions, Network};
use endpoints::mode_network;
use std::collections::{BTreeMap, HashMap};

impl Engine {
    /// A network as the API shows it; `verbose` lists its containers.
    pub(crate) fn network_view(&self, n: &Network, verbose: bool) -> NetworkResource {
        let mut containers = BTreeMap::new();
        if verbose {
            for c in self.containers.read().expect("containers").values() {
                let st = c.state();
                if let Some(ep) = st.endpoints.values().find(|e| e.network_id == n.id) {
                    let rec = c.rec.read().expect("rec");
                    let ipv6_address = match ep.ip6.as_str() {
                        "" => String::new(),
                        ip6 => format!("{ip6}/{}", ep.prefix6),
                    };
                    containers.insert(
                        rec.id.clone(),
                        NetworkContainer {
                            name: rec.name.clone(),
                            endpoint_id: ep.endpoint_id.clone(),
                            mac_address: ep.mac.clone(),
                            ipv4_address: format!("{}/{}", ep.ip, ep.prefix),
                            ipv6_address,
                        },
                    );
                }
            }
        }
        let mut config = Vec::new();
        if !n.subnet.is_empty() {
            config.push(IpamConfig {
                subnet: n.subnet.clone(),
                gateway: n.gateway.clone(),
                ip_range: n.ip_range.clone(),
                auxiliary_addresses: n.aux_addresses(),
            });
            if n.enable_ipv6 {
                config.push(IpamConfig {
                    subnet: n.subnet6.clone(),
                    gateway: n.gateway6.clone(),
                    ..Default::default()
                });
            }
        }
        NetworkResource {
            name: n.name.clone(),
            id: n.id.clone(),
            created: n.created.clone(),
            scope: "local".into(),
            driver: n.driver.clone(),
            enable_ipv6: n.enable_ipv6,
            ipam: Ipam {
                driver: "default".into(),
                options: None,
                config,
            },
            internal: n.internal,
            attachable: n.attachable,
            ingress: false,
            config_from: Default::default(),
            config_only: false,
            containers,
            options: n.options.clone(),
            labels: n.labels.clone(),
        }
    }

    pub fn network_list(
        &self,
        filters: &HashMap<String, Vec<String>>,
    ) -> Result<Vec<NetworkResource>> {
        for k in filters.keys() {
            if !matches!(
                k.as_str(),
                "name" | "id" | "driver" | "label" | "type" | "scope" | "dangling"
            ) {
                return Err(EngineError::BadRequest(format!("invalid filter '{k}'")));
            }
        }
        let any = |k: &str, pred: &dyn Fn(&str) -> bool| {
            filters.get(k).is_none_or(|vs| vs.iter().any(|v| pred(v)))
        };
        let list = self
            .nets
            .list()
            .iter()
            .filter(|n| {
                any("name", &|v| n.name.contains(v))
                    && any("id", &|v| n.id.starts_with(v))
                    && any("driver", &|v| n.driver == v)
                    && any("scope", &|v| v == "local")
                    && any("type", &|v| (v == "builtin") == n.builtin())
                    && filters.get("label").is_none_or(|ls| {
                        ls.iter().all(|l| match l.split_once('=') {
                            Some((k, val)) => n.labels.get(k).is_some_and(|x| x == val),
                            None => n.labels.contains_key(l.as_str()),
                        })
                    })
            })
            .map(|n| self.network_view(n, false))
            .collect();
        Ok(list)
    }

    pub fn network_inspect(&self, key: &str) -> Result<NetworkResource> {
        let n = self.nets.get(key)?;
        Ok(self.network_view(&n, true))
    }

    pub fn network_create(&self, req: NetworkCreateRequest) -> Result<NetworkCreateResponse> {
        // One IPv4 and (with EnableIPv6) one IPv6 configuration.
        let configs = req.ipam.map(|i| i.config).unwrap_or_default();
        let is6 = |c: &&IpamConfig| c.subnet.contains(':');
        let cfg = configs
            .iter()
            .find(|c| !is6(c))
            .cloned()
            .unwrap_or_default();
        let cfg6 = configs.iter().find(is6).cloned().unwrap_or_default();
        let given = |s: &str| (!s.is_empty()).then(|| s.to_string());
        let n = self.nets.create(CreateOptions {
            name: req.name,
            enable_ipv6: req.enable_ipv6,
            subnet6: given(&cfg6.subnet),
            gateway6: given(&cfg6.gateway),
            aux_addresses: cfg.auxiliary_addresses.clone(),
            driver: req.driver,
            subnet: given(&cfg.subnet),
            gateway: given(&cfg.gateway),
            ip_range: given(&cfg.ip_range),
            internal: req.internal,
            attachable: req.attachable,
            labels: req.labels,
            options: req.options,
        })?;
        let made = self.net_host.ensure_bridge(&n);
        self.sync_nft();
        if let Err(e) = made {
            let _ = self.nets.remove(&n.id);
            let _ = self.net_host.delete_link(&n.bridge);
            return Err(e.into());
        }
        self.emit_network(&n, "create", None);
        Ok(NetworkCreateResponse {
            id: n.id,
            warning: String::new(),
        })
    }

    /// A network event; `container` for connect and disconnect.
    pub(crate) fn emit_network(&self, n: &Network, action: &str, container: Option<&str>) {
        let mut pairs = vec![("name", n.name.clone()), ("type", n.driver.clone())];
        if let Some(c) = container {
            pairs.push(("container", c.to_string()));
        }
        let attrs = crate::events::attributes(&pairs, []);
        self.events.emit("network", action, &n.id, attrs);
    }

    pub(crate) fn network_users(&self, n: &Network) -> Vec<String> {
        self.containers
            .read()
            .expect("containers")
            .values()
            .filter(|c| {
                let mode = c.rec.read().expect("rec").host_config.network_mode.clone();
                let target = mode_network(&mode);
                target == n.name
                    || target == n.id
                    || c.rec
                        .read()
                        .expect("rec")
                        .extra_networks
                        .iter()
                        .any(|x| x.name == n.name)
                    || c.state().endpoints.values().any(|e| e.network_id == n.id)
            })
            .map(|c| c.id())
            .collect()
    }

    pub fn network_remove(&self, key: &str) -> Result<()> {
        let n = self.nets.get(key)?;
        if n.builtin() {
            return Err(EngineError::Conflict(format!(
                "{} is a pre-defined network and cannot be removed",
                n.name
            )));
        }
        if !self.network_users(&n).is_empty() {
            return Err(EngineError::Conflict(format!(
                "error while removing network: network {} id {} has active endpoints",
                n.name, n.id
            )));
        }
        self.nets.remove(&n.id)?;
        let _ = self.net_host.delete_link(&n.bridge);
        self.sync_nft();
        self.emit_network(&n, "destroy", None);
        Ok(())
    }

    pub fn network_prune(&self, filters: &HashMap<String, Vec<String>>) -> Result<Vec<String>> {
        let filter = crate::prune::PruneFilter::parse(filters, &[])?;
        let mut out = Vec::new();
        for n in self.nets.list() {
            if !n.builtin()
                && filter.matches(crate::prune::rfc3339_unix(&n.created), &n.labels)
                && self.network_users(&n).is_empty()
                && self.network_remove(&n.id).is_ok()
            {
                out.push(n.name);
            }
        }
        Ok(out)
    }
}
