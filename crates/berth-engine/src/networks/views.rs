//! What inspect and `ps` show of a container's networks and ports.

use super::endpoints::{mode_network, EndpointState};
use crate::record::Record;
use crate::Engine;
use berth_api::{DefaultNetworkSettings, EndpointSettings, NetworkSettings, Port, PortBinding};
use berth_net::host;
use std::collections::BTreeMap;

impl Engine {
    /// `NetworkSettings.Networks`: one entry per network the container is on.
    pub(crate) fn networks_json(
        &self,
        rec: &Record,
        eps: &BTreeMap<String, EndpointState>,
    ) -> BTreeMap<String, EndpointSettings> {
        let mode = mode_network(&rec.host_config.network_mode);
        let mut names: Vec<String> = vec![mode.to_string()];
        names.extend(rec.extra_networks.iter().map(|x| x.name.clone()));
        let short_id = &rec.id[..rec.id.len().min(12)];
        let mut nets = BTreeMap::new();
        for name in names {
            let net = self.nets.get(&name).ok();
            let ep = eps.get(&name).cloned().unwrap_or_default();
            let aliases: Vec<String> = if name == mode {
                rec.aliases.clone()
            } else {
                rec.extra_networks
                    .iter()
                    .filter(|x| x.name == name)
                    .flat_map(|x| x.aliases.clone())
                    .collect()
            };
            // The names the embedded DNS answers to on user-defined networks.
            let dns_names = match &net {
                Some(n) if !n.builtin() => {
                    let mut d = vec![rec.name.trim_start_matches('/').to_string()];
                    d.extend(aliases.iter().cloned());
                    d.push(short_id.to_string());
                    Some(d)
                }
                _ => None,
            };
            // What the client asked for at create or connect.
            let given = rec
                .endpoint_settings
                .get(&name)
                .cloned()
                .unwrap_or_default();
            let settings = EndpointSettings {
                aliases: (!aliases.is_empty()).then_some(aliases),
                mac_address: match ep.mac.as_str() {
                    "" => given.mac_address.clone(),
                    m => m.to_string(),
                },
                network_id: net.as_ref().map(|n| n.id.clone()).unwrap_or_default(),
                endpoint_id: ep.endpoint_id,
                gateway: ep.gateway,
                ip_address: ep.ip,
                ip_prefix_len: ep.prefix,
                ipv6_gateway: ep.gateway6,
                global_ipv6_address: ep.ip6,
                global_ipv6_prefix_len: ep.prefix6,
                dns_names,
                ..given
            };
            nets.insert(name, settings);
        }
        nets
    }

    /// `NetworkSettings` for inspect.
    pub(crate) fn network_settings(
        &self,
        rec: &Record,
        eps: &BTreeMap<String, EndpointState>,
    ) -> NetworkSettings {
        let mode = mode_network(&rec.host_config.network_mode);
        let mut ports: BTreeMap<String, Option<Vec<PortBinding>>> = BTreeMap::new();
        for k in rec.config.exposed_ports.iter().flat_map(|e| e.keys()) {
            ports.insert(k.clone(), None);
        }
        for p in eps.values().flat_map(|e| e.ports.iter()) {
            let key = format!("{}/{}", p.container_port, p.proto);
            ports
                .entry(key)
                .or_default()
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: p.host_ip.clone(),
                    host_port: p.host_port.to_string(),
                });
        }
        // The top-level copy is the default bridge's endpoint only.
        let ep = match eps.get(mode) {
            Some(ep) if mode == "bridge" => ep.clone(),
            _ => EndpointState::default(),
        };
        NetworkSettings {
            sandbox_key: if eps.is_empty() {
                String::new()
            } else {
                host::netns_path(&self.cfg.exec_root, &rec.id)
                    .display()
                    .to_string()
            },
            ports,
            default_network: DefaultNetworkSettings {
                endpoint_id: ep.endpoint_id,
                gateway: ep.gateway,
                ip_address: ep.ip,
                ip_prefix_len: ep.prefix,
                mac_address: ep.mac,
                ..DefaultNetworkSettings::default()
            },
            networks: self.networks_json(rec, eps),
            ..NetworkSettings::default()
        }
    }

    /// `ps`'s `Ports` list.
    pub(crate) fn ports_list(
        &self,
        rec: &Record,
        eps: &BTreeMap<String, EndpointState>,
    ) -> Vec<Port> {
        let mut out: Vec<Port> = eps
            .values()
            .flat_map(|e| e.ports.iter())
            .map(|p| Port {
                ip: Some(p.host_ip.clone()),
                private_port: p.container_port,
                public_port: Some(p.host_port),
                kind: p.proto.clone(),
            })
            .collect();
        for k in rec.config.exposed_ports.iter().flat_map(|e| e.keys()) {
            let (port, proto) = k.split_once('/').unwrap_or((k, "tcp"));
            let port: u16 = port.parse().unwrap_or(0);
            if !out
                .iter()
                .any(|o| o.private_port == port && o.kind == proto)
            {
                out.push(Port {
                    private_port: port,
                    kind: proto.to_string(),
                    ..Port::default()
                });
            }
        }
        out
    }
}
