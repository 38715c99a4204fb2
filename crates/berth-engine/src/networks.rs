//! The `/networks` endpoints: list, inspect, create, remove and prune of
//! networks, and their events.

use crate::net::mode_network;
use crate::{Engine, EngineError, Result};
use berth_net::{CreateOptions, Network};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};

impl Engine {
    pub(crate) fn network_json(&self, n: &Network, verbose: bool) -> Value {
        let mut containers = serde_json::Map::new();
        if verbose {
            for c in self.containers.read().expect("containers").values() {
                let st = c.state();
                if let Some(ep) = st.endpoints.values().find(|e| e.network_id == n.id) {
                    let rec = c.rec.read().expect("rec");
                    containers.insert(
                        rec.id.clone(),
                        json!({"Name": rec.name, "EndpointID": ep.endpoint_id, "MacAddress": ep.mac,
                               "IPv4Address": format!("{}/{}", ep.ip, ep.prefix),
                               "IPv6Address": if ep.ip6.is_empty() { String::new() } else { format!("{}/{}", ep.ip6, ep.prefix6) }}),
                    );
                }
            }
        }
        let ipam = if n.subnet.is_empty() {
            json!([])
        } else {
            let mut c = json!({"Subnet": n.subnet, "Gateway": n.gateway});
            if !n.ip_range.is_empty() {
                c["IPRange"] = json!(n.ip_range);
            }
            let aux = n.aux_addresses();
            if !aux.is_empty() {
                c["AuxiliaryAddresses"] = json!(aux);
            }
            let mut list = vec![c];
            if n.enable_ipv6 {
                list.push(json!({"Subnet": n.subnet6, "Gateway": n.gateway6}));
            }
            json!(list)
        };
        json!({
            "Name": n.name, "Id": n.id, "Created": n.created, "Scope": "local", "Driver": n.driver,
            "EnableIPv6": n.enable_ipv6, "IPAM": {"Driver": "default", "Options": null, "Config": ipam},
            "Internal": n.internal, "Attachable": n.attachable, "Ingress": false,
            "ConfigFrom": {"Network": ""}, "ConfigOnly": false,
            "Containers": containers, "Options": n.options, "Labels": n.labels,
        })
    }

    pub fn network_list(&self, filters: &HashMap<String, Vec<String>>) -> Result<Value> {
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
        let list: Vec<Value> = self
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
            .map(|n| self.network_json(n, false))
            .collect();
        Ok(json!(list))
    }

    pub fn network_inspect(&self, key: &str) -> Result<Value> {
        let n = self.nets.get(key)?;
        Ok(self.network_json(&n, true))
    }

    pub fn network_create(&self, body: &Value) -> Result<Value> {
        let name = body["Name"].as_str().unwrap_or_default().to_string();
        // One IPv4 and (with EnableIPv6) one IPv6 configuration.
        let configs = body["IPAM"]["Config"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let is6 = |c: &&Value| c["Subnet"].as_str().is_some_and(|s| s.contains(':'));
        let cfg = configs
            .iter()
            .find(|c| !is6(c))
            .cloned()
            .unwrap_or(Value::Null);
        let cfg6 = configs.iter().find(is6).cloned().unwrap_or(Value::Null);
        let s = |v: &Value| v.as_str().filter(|x| !x.is_empty()).map(str::to_string);
        let map = |v: &Value| -> BTreeMap<String, String> {
            v.as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default()
        };
        let n = self.nets.create(CreateOptions {
            name,
            enable_ipv6: body["EnableIPv6"].as_bool().unwrap_or(false),
            subnet6: s(&cfg6["Subnet"]),
            gateway6: s(&cfg6["Gateway"]),
            aux_addresses: map(&cfg["AuxiliaryAddresses"]),
            driver: body["Driver"].as_str().unwrap_or_default().to_string(),
            subnet: s(&cfg["Subnet"]),
            gateway: s(&cfg["Gateway"]),
            ip_range: s(&cfg["IPRange"]),
            internal: body["Internal"].as_bool().unwrap_or(false),
            attachable: body["Attachable"].as_bool().unwrap_or(false),
            labels: map(&body["Labels"]),
            options: map(&body["Options"]),
        })?;
        let made = self.net_host.ensure_bridge(&n);
        self.sync_nft();
        if let Err(e) = made {
            let _ = self.nets.remove(&n.id);
            let _ = self.net_host.delete_link(&n.bridge);
            return Err(e.into());
        }
        self.emit_network(&n, "create", None);
        Ok(json!({"Id": n.id, "Warning": ""}))
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
