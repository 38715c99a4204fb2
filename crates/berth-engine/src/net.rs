//! Containers on networks: which network a container joins, its namespace,
//! veth and address while it runs, the `/networks` endpoints, and what
//! `inspect` shows.

use crate::record::Record;
use crate::{Engine, EngineError, Result};
use berth_net::host::{self, Endpoint};
use berth_net::{CreateOptions, NetError, Network};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// A container's attachment to one bridge network, while it runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct EndpointState {
    pub network_id: String,
    pub endpoint_id: String,
    pub ip: String,
    pub prefix: u8,
    pub gateway: String,
    pub host_if: String,
}

impl From<NetError> for EngineError {
    fn from(e: NetError) -> Self {
        match e {
            NetError::NotFound(_) => EngineError::NotFound(e.to_string()),
            NetError::Conflict(_) => EngineError::Conflict(e.to_string()),
            NetError::Invalid(_) => EngineError::BadRequest(e.to_string()),
            NetError::Host(_) | NetError::Io(_) => EngineError::Internal(e.to_string()),
        }
    }
}

/// The network a container's `NetworkMode` names: `default` is `bridge`.
pub(crate) fn mode_network(mode: &str) -> &str {
    match mode {
        "" | "default" => "bridge",
        m => m,
    }
}

impl Engine {
    fn nets_handle(&self) -> std::sync::Arc<berth_net::NetStore> {
        self.nets.clone()
    }

    /// Checks a new container's network; returns the mode to record.
    pub(crate) fn check_network_mode(&self, mode: &str) -> Result<String> {
        let name = mode_network(mode);
        if name.starts_with("container:") {
            return Err(EngineError::BadRequest(
                "network mode container:<id> is not supported yet".into(),
            ));
        }
        // As dockerd: an unknown network fails the start, not the create (a
        // 404 from create would make the docker CLI try to pull the image).
        Ok(match self.nets.get(name) {
            Ok(n) if n.builtin() => n.name,
            _ => name.to_string(),
        })
    }

    /// Brings the host's side of networking up at start: every bridge and the
    /// nftables table.
    pub(crate) fn restore_networks(&self) {
        for n in self.nets.list().iter().filter(|n| n.is_bridge()) {
            if let Err(e) = host::ensure_bridge(n) {
                tracing::warn!("network {}: {e}", n.name);
            }
        }
        if let Err(e) = host::apply_nft(&self.cfg.nft_table, &self.nets.list()) {
            tracing::warn!("nftables: {e}");
        }
    }

    /// For a container on a bridge network: a namespace with a veth on the
    /// bridge and an address. Returns the namespace path for the runtime.
    pub(crate) async fn setup_network(
        &self,
        rec: &Record,
    ) -> Result<Option<(String, BTreeMap<String, EndpointState>)>> {
        let name = mode_network(&rec.host_config.network_mode).to_string();
        if name == "host" || name == "none" {
            return Ok(None);
        }
        let n = self
            .nets
            .get(&name)
            .map_err(|_| EngineError::NotFound(format!("network {name} not found")))?;
        let ns = host::netns_path(&self.cfg.exec_root, &rec.id);
        if !Path::new("/sys/class/net").join(&n.bridge).exists() {
            let n2 = n.clone();
            tokio::task::spawn_blocking(move || host::ensure_bridge(&n2))
                .await
                .map_err(|e| EngineError::Internal(e.to_string()))??;
        }
        let ip = self.nets.allocate(&n.id, &rec.id, None)?;
        let sub = n
            .subnet()
            .ok_or_else(|| EngineError::Internal("network without subnet".into()))?;
        let ep = Endpoint {
            // Unique per launch: the previous launch's veth may still be
            // going away in the background.
            host_if: format!("vb{}{:04x}", &rec.id[..7], rand::random::<u16>()),
            container_if: "eth0".into(),
            ip,
            prefix: sub.prefix,
            gateway: if n.internal { None } else { n.gateway_ip() },
        };
        let (ns2, bridge, ep2) = (ns.clone(), n.bridge.clone(), ep.clone());
        let res = tokio::task::spawn_blocking(move || -> std::result::Result<(), NetError> {
            // Left by a launch that a crash cut short.
            if ns2.exists() {
                host::remove_netns(&ns2);
            }
            if Path::new("/sys/class/net").join(&ep2.host_if).exists() {
                let _ = host::delete_link(&ep2.host_if);
            }
            host::create_netns(&ns2)?;
            host::attach(&ns2, &bridge, &ep2)
        })
        .await
        .map_err(|e| EngineError::Internal(e.to_string()))?;
        if let Err(e) = res {
            self.nets.release(&n.id, &rec.id);
            host::remove_netns(&ns);
            return Err(e.into());
        }
        let mut eps = BTreeMap::new();
        eps.insert(
            n.name.clone(),
            EndpointState {
                network_id: n.id.clone(),
                endpoint_id: hex::encode(rand::random::<[u8; 32]>()),
                ip: ip.to_string(),
                prefix: sub.prefix,
                gateway: if n.internal {
                    String::new()
                } else {
                    n.gateway.clone()
                },
                host_if: ep.host_if,
            },
        );
        Ok(Some((ns.display().to_string(), eps)))
    }

    /// Undoes `setup_network`; safe to call for a container that has none.
    /// The namespace goes now; deleting the veth waits for RCU grace periods
    /// (tens of ms), so it and the address's release happen in the background.
    pub(crate) async fn teardown_network(&self, id: &str, eps: &BTreeMap<String, EndpointState>) {
        if eps.is_empty() {
            return;
        }
        let ns = host::netns_path(&self.cfg.exec_root, id);
        host::remove_netns(&ns);
        let links: Vec<String> = eps.values().map(|e| e.host_if.clone()).collect();
        let nets: Vec<String> = eps.values().map(|e| e.network_id.clone()).collect();
        let store = self.nets_handle();
        let id = id.to_string();
        tokio::task::spawn_blocking(move || {
            for l in links {
                let _ = host::delete_link(&l);
            }
            for n in nets {
                store.release(&n, &id);
            }
        });
    }

    /// `NetworkSettings` for inspect.
    pub(crate) fn network_settings(
        &self,
        rec: &Record,
        eps: &BTreeMap<String, EndpointState>,
    ) -> Value {
        let mode = mode_network(&rec.host_config.network_mode);
        let mut nets = serde_json::Map::new();
        let net_id = self.nets.get(mode).map(|n| n.id).unwrap_or_default();
        let ep = eps.get(mode).cloned().unwrap_or_default();
        nets.insert(
            mode.to_string(),
            json!({
                "IPAMConfig": null, "Links": null, "Aliases": null, "MacAddress": "",
                "NetworkID": net_id, "EndpointID": ep.endpoint_id, "Gateway": ep.gateway,
                "IPAddress": ep.ip, "IPPrefixLen": ep.prefix, "IPv6Gateway": "",
                "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DriverOpts": null, "DNSNames": null,
            }),
        );
        json!({
            "Bridge": "", "SandboxID": "", "SandboxKey": if eps.is_empty() { String::new() } else {
                host::netns_path(&self.cfg.exec_root, &rec.id).display().to_string() },
            "Ports": {}, "HairpinMode": false, "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
            "SecondaryIPAddresses": null, "SecondaryIPv6Addresses": null,
            "EndpointID": if mode == "bridge" { ep.endpoint_id.clone() } else { String::new() },
            "Gateway": if mode == "bridge" { ep.gateway.clone() } else { String::new() },
            "IPAddress": if mode == "bridge" { ep.ip.clone() } else { String::new() },
            "IPPrefixLen": if mode == "bridge" { ep.prefix } else { 0 },
            "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "IPv6Gateway": "", "MacAddress": "",
            "Networks": nets,
        })
    }

    // ------------------------------------------------------------ /networks

    fn network_json(&self, n: &Network, verbose: bool) -> Value {
        let mut containers = serde_json::Map::new();
        if verbose {
            for c in self.containers.read().expect("containers").values() {
                let st = c.state();
                if let Some(ep) = st.endpoints.values().find(|e| e.network_id == n.id) {
                    let rec = c.rec.read().expect("rec");
                    containers.insert(
                        rec.id.clone(),
                        json!({"Name": rec.name, "EndpointID": ep.endpoint_id, "MacAddress": "",
                               "IPv4Address": format!("{}/{}", ep.ip, ep.prefix), "IPv6Address": ""}),
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
            json!([c])
        };
        json!({
            "Name": n.name, "Id": n.id, "Created": n.created, "Scope": "local", "Driver": n.driver,
            "EnableIPv6": false, "IPAM": {"Driver": "default", "Options": null, "Config": ipam},
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
        let cfg = body["IPAM"]["Config"]
            .get(0)
            .cloned()
            .unwrap_or(Value::Null);
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
            driver: body["Driver"].as_str().unwrap_or_default().to_string(),
            subnet: s(&cfg["Subnet"]),
            gateway: s(&cfg["Gateway"]),
            ip_range: s(&cfg["IPRange"]),
            internal: body["Internal"].as_bool().unwrap_or(false),
            attachable: body["Attachable"].as_bool().unwrap_or(false),
            labels: map(&body["Labels"]),
            options: map(&body["Options"]),
        })?;
        let made = host::ensure_bridge(&n)
            .and_then(|_| host::apply_nft(&self.cfg.nft_table, &self.nets.list()));
        if let Err(e) = made {
            let _ = self.nets.remove(&n.id);
            let _ = host::delete_link(&n.bridge);
            return Err(e.into());
        }
        Ok(json!({"Id": n.id, "Warning": ""}))
    }

    fn network_users(&self, n: &Network) -> Vec<String> {
        self.containers
            .read()
            .expect("containers")
            .values()
            .filter(|c| {
                let mode = c.rec.read().expect("rec").host_config.network_mode.clone();
                let target = mode_network(&mode);
                target == n.name
                    || target == n.id
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
        let _ = host::delete_link(&n.bridge);
        host::apply_nft(&self.cfg.nft_table, &self.nets.list())?;
        Ok(())
    }

    pub fn network_prune(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for n in self.nets.list() {
            if !n.builtin()
                && self.network_users(&n).is_empty()
                && self.network_remove(&n.id).is_ok()
            {
                out.push(n.name);
            }
        }
        Ok(out)
    }
}
