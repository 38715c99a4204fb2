//! Containers on networks: which network a container joins, its namespace,
//! veth and address while it runs, the `/networks` endpoints, and what
//! `inspect` shows.

use crate::record::Record;
use crate::{Engine, EngineError, Kind, Result};
use berth_net::host::{self, Endpoint};
use berth_net::NetError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
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
    #[serde(default)]
    pub mac: String,
    /// On a dual-stack network: the IPv6 address, its prefix and gateway.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ip6: String,
    #[serde(default)]
    pub prefix6: u8,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub gateway6: String,
    /// Published ports, forwarded by the kernel to this endpoint.
    #[serde(default)]
    pub ports: Vec<PortMap>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PortMap {
    pub proto: String,
    pub container_port: u16,
    pub host_ip: String,
    pub host_port: u16,
}

fn overlapping(a: &str, b: &str) -> bool {
    a == b || a == "0.0.0.0" || b == "0.0.0.0" || a.is_empty() || b.is_empty()
}

/// Is `ip:port` free on the host for `proto`? (A DNAT rule holds no socket,
/// so a host process that owns the port must be noticed here.)
fn host_port_free(proto: &str, ip: &str, port: u16) -> bool {
    let ip = if ip.is_empty() { "0.0.0.0" } else { ip };
    let addr = format!("{ip}:{port}");
    match proto {
        "udp" => std::net::UdpSocket::bind(&addr).is_ok(),
        _ => std::net::TcpListener::bind(&addr).is_ok(),
    }
}

/// A port the kernel hands out as free right now.
fn ephemeral_port(proto: &str, ip: &str) -> Option<u16> {
    let ip = if ip.is_empty() { "0.0.0.0" } else { ip };
    match proto {
        "udp" => std::net::UdpSocket::bind(format!("{ip}:0"))
            .ok()?
            .local_addr()
            .ok()
            .map(|a| a.port()),
        _ => std::net::TcpListener::bind(format!("{ip}:0"))
            .ok()?
            .local_addr()
            .ok()
            .map(|a| a.port()),
    }
}

impl From<NetError> for EngineError {
    fn from(e: NetError) -> Self {
        match e {
            NetError::NotFound(key) => EngineError::Missing {
                kind: Kind::Network,
                id: key,
            },
            NetError::Conflict(_) => EngineError::Conflict(e.to_string()),
            NetError::Invalid(_) => EngineError::BadRequest(e.to_string()),
            NetError::Host(_) | NetError::Io(_) => EngineError::Internal(e.to_string()),
        }
    }
}

/// `aa:bb:cc:dd:ee:ff` → bytes; a unicast address only.
pub(crate) fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let bad = || EngineError::BadRequest(format!("invalid MAC address: {s}"));
    let parts: Vec<u8> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16).map_err(|_| bad()))
        .collect::<Result<_>>()?;
    let mac: [u8; 6] = parts.try_into().map_err(|_| bad())?;
    if mac[0] & 1 == 1 {
        return Err(bad());
    }
    Ok(mac)
}

/// As dockerd: 02:42 followed by the IPv4 address.
fn mac_for(ip: std::net::Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

fn mac_text(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The MAC address a container asked for on a network (`--mac-address` for
/// its first one).
fn asked_mac(rec: &Record, net: &str, primary: bool) -> Option<String> {
    match primary {
        true => rec.mac_address.clone(),
        false => rec
            .endpoint_settings
            .get(net)
            .map(|s| s.mac_address.clone())
            .filter(|m| !m.is_empty()),
    }
}

/// `--ip6` for a network, checked.
fn asked_ip6(rec: &Record, net: &str) -> Result<Option<std::net::Ipv6Addr>> {
    rec.endpoint_settings
        .get(net)
        .and_then(|s| s.ipam_config.as_ref())
        .map(|c| c.ipv6_address.as_str())
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<std::net::Ipv6Addr>()
                .map_err(|_| EngineError::BadRequest(format!("invalid IPv6 address {s}")))
        })
        .transpose()
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

    /// Brings the host's side of networking up at start: every bridge. (The
    /// nftables table follows once the containers are known: `sync_nft`.)
    pub(crate) fn restore_networks(&self) {
        for n in self.nets.list().iter().filter(|n| n.is_bridge()) {
            if let Err(e) = self.net_host.ensure_bridge(n) {
                tracing::warn!("network {}: {e}", n.name);
            }
        }
    }

    /// Every container's current endpoints, but those of container `skip`.
    fn endpoints_except(&self, skip: Option<&str>) -> Vec<EndpointState> {
        self.containers
            .read()
            .expect("containers")
            .iter()
            .filter(|(id, _)| Some(id.as_str()) != skip)
            .flat_map(|(_, c)| c.state().endpoints.into_values())
            .collect()
    }

    /// Deletes veths on our bridges that no running container owns: a kill -9
    /// of berthd can cut a background teardown short.
    pub(crate) fn remove_orphan_links(&self) {
        self.remove_orphan_netns();
        let owned: Vec<String> = self
            .endpoints_except(None)
            .into_iter()
            .map(|e| e.host_if)
            .collect();
        for n in self.nets.list().iter().filter(|n| n.is_bridge()) {
            for port in self.net_host.bridge_ports(&n.bridge) {
                if port.starts_with("vb") && !owned.contains(&port) {
                    let _ = self.net_host.delete_link(&port);
                }
            }
        }
    }

    /// Network namespaces of containers that are gone or not running: a
    /// launch cut short before its endpoints were on disk leaves one.
    fn remove_orphan_netns(&self) {
        let dir = self.cfg.exec_root.join("netns");
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            let busy = self
                .containers
                .read()
                .expect("containers")
                .get(&id)
                .is_some_and(|c| {
                    // A start or stop under way owns its namespace.
                    c.op.try_lock().is_err() || c.state().status.is_running()
                });
            if !busy {
                self.net_host.remove_netns(&e.path());
            }
        }
    }

    /// `sync_nft` off the async threads (it runs `nft`).
    pub(crate) async fn sync_nft_async(self: &std::sync::Arc<Self>) {
        let me = self.clone();
        let _ = tokio::task::spawn_blocking(move || me.sync_nft()).await;
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
            .map_err(|_| EngineError::missing(Kind::Network, &name))?;
        if let (Some(ip), true) = (&rec.requested_ip, n.builtin()) {
            return Err(EngineError::BadRequest(format!(
                "user specified IP address ({ip}) is supported on user defined networks only"
            )));
        }
        let ns = host::netns_path(&self.cfg.exec_root, &rec.id);
        let ns2 = ns.clone();
        let net = self.net_host.clone();
        tokio::task::spawn_blocking(move || -> std::result::Result<(), NetError> {
            // Left by a launch that a crash cut short.
            if ns2.exists() {
                net.remove_netns(&ns2);
            }
            net.create_netns(&ns2)
        })
        .await
        .map_err(|e| EngineError::Internal(e.to_string()))??;
        let mut eps = BTreeMap::new();
        let joined = self
            .join_network(rec, &ns, &n.name, "eth0", rec.requested_ip.as_deref(), true)
            .await;
        let primary = match joined {
            Ok(ep) => ep,
            Err(e) => {
                self.net_host.remove_netns(&ns);
                return Err(e);
            }
        };
        eps.insert(n.name.clone(), primary);
        match self.resolve_ports(rec) {
            Ok(ports) => eps.get_mut(&n.name).expect("just inserted").ports = ports,
            Err(e) => {
                self.teardown_network(&rec.id, &eps).await;
                return Err(e);
            }
        }
        // Networks joined with `network connect` come back at each start.
        for (i, x) in rec.extra_networks.iter().enumerate() {
            let ifname = format!("eth{}", i + 1);
            match self
                .join_network(rec, &ns, &x.name, &ifname, x.ip.as_deref(), false)
                .await
            {
                Ok(ep) => {
                    let name = self
                        .nets
                        .get(&x.name)
                        .map(|n| n.name)
                        .unwrap_or_else(|_| x.name.clone());
                    eps.insert(name, ep);
                }
                Err(e) => {
                    self.teardown_network(&rec.id, &eps).await;
                    return Err(e);
                }
            }
        }
        Ok(Some((ns.display().to_string(), eps)))
    }

    /// An endpoint on `net` for a container whose namespace is at `ns`: an
    /// address, and a veth named `ifname` inside. The primary endpoint gets
    /// the default route (unless the network is internal) and `--mac-address`.
    async fn join_network(
        &self,
        rec: &Record,
        ns: &Path,
        net: &str,
        ifname: &str,
        ip: Option<&str>,
        primary: bool,
    ) -> Result<EndpointState> {
        let n = self
            .nets
            .get(net)
            .map_err(|_| EngineError::missing(Kind::Network, net))?;
        if !n.is_bridge() {
            return Err(EngineError::Conflict(format!(
                "container cannot be disconnected from host network or connected to host network (network {})",
                n.name
            )));
        }
        let want = match ip {
            Some(ip) => Some(
                ip.parse()
                    .map_err(|_| EngineError::BadRequest(format!("invalid IP address {ip}")))?,
            ),
            None => None,
        };
        let addr = self.nets.allocate(&n.id, &rec.id, want)?;
        let sub = n
            .subnet()
            .ok_or_else(|| EngineError::Internal("network without subnet".into()))?;
        let gateway = if primary && !n.internal {
            n.gateway_ip()
        } else {
            None
        };
        let mac = match asked_mac(rec, &n.name, primary) {
            Some(m) => parse_mac(&m)?,
            None => mac_for(addr),
        };
        let want6 = asked_ip6(rec, &n.name)?;
        let addr6 = match self.nets.allocate6(&n.id, &rec.id, want6) {
            Ok(a) => a,
            Err(e) => {
                self.nets.release(&n.id, &rec.id);
                return Err(e.into());
            }
        };
        let sub6 = n.subnet6();
        let gateway6 = n.gateway6_ip().filter(|_| primary && !n.internal);
        let ep = Endpoint {
            // Unique per launch: the previous launch's veth may still be
            // going away in the background.
            host_if: format!("vb{}{:04x}", &rec.id[..7], rand::random::<u16>()),
            container_if: ifname.to_string(),
            ip: addr,
            prefix: sub.prefix,
            gateway,
            mac,
            ip6: addr6.zip(sub6.map(|s| s.prefix)),
            gateway6,
        };
        let (ns2, n2, ep2) = (ns.to_path_buf(), n.clone(), ep.clone());
        let net = self.net_host.clone();
        let res = tokio::task::spawn_blocking(move || -> std::result::Result<(), NetError> {
            if !net.link_exists(&n2.bridge) {
                net.ensure_bridge(&n2)?;
            }
            net.attach(&ns2, &n2.bridge, &ep2)
        })
        .await
        .map_err(|e| EngineError::Internal(e.to_string()))?;
        if let Err(e) = res {
            self.nets.release(&n.id, &rec.id);
            return Err(e.into());
        }
        Ok(EndpointState {
            network_id: n.id.clone(),
            endpoint_id: hex::encode(rand::random::<[u8; 32]>()),
            ip: addr.to_string(),
            prefix: sub.prefix,
            gateway: gateway.map(|g| g.to_string()).unwrap_or_default(),
            mac: mac_text(&ep.mac),
            host_if: ep.host_if,
            ip6: addr6.map(|a| a.to_string()).unwrap_or_default(),
            prefix6: ep.ip6.map(|(_, p)| p).unwrap_or(0),
            gateway6: gateway6.map(|g| g.to_string()).unwrap_or_default(),
            ports: Vec::new(),
        })
    }

    /// `POST /networks/{id}/connect` with the client's `EndpointConfig`.
    pub async fn network_connect(
        self: &std::sync::Arc<Self>,
        net: &str,
        container: &str,
        endpoint: &berth_api::EndpointSettings,
    ) -> Result<()> {
        let (aliases, ip) = crate::record::endpoint_aliases_and_ip(endpoint);
        let n = self.nets.get(net)?;
        let c = self.find(container)?;
        let _op = c.op.lock().await;
        let mut rec = c.rec.read().expect("rec").clone();
        let mode = mode_network(&rec.host_config.network_mode).to_string();
        if mode == "host" || !n.is_bridge() {
            return Err(EngineError::Conflict(
                "container cannot be disconnected from host network or connected to host network"
                    .into(),
            ));
        }
        if mode == n.name || rec.extra_networks.iter().any(|x| x.name == n.name) {
            return Err(EngineError::Forbidden(format!(
                "endpoint with name {} already exists in network {}",
                rec.name, n.name
            )));
        }
        let st = c.state();
        // A container that is not running and on no network (it was
        // disconnected from its only one, as docker-compose does before it
        // reconnects with its aliases) takes this network as its primary.
        rec.endpoint_settings.insert(
            n.name.clone(),
            crate::record::endpoint_settings_as_given(endpoint),
        );
        if mode == "none" && rec.extra_networks.is_empty() && !st.status.is_running() {
            rec.host_config.network_mode = n.name.clone();
            rec.aliases = aliases;
            rec.requested_ip = ip;
            self.persist_record(&rec)?;
            self.emit_network(&n, "connect", Some(&rec.id));
            *c.rec.write().expect("rec") = rec;
            return Ok(());
        }
        if st.status.is_running() {
            let file = host::netns_path(&self.cfg.exec_root, &rec.id);
            let ns = if file.exists() {
                file
            } else {
                std::path::PathBuf::from(format!("/proc/{}/ns/net", st.pid))
            };
            let ifname = format!("eth{}", st.endpoints.len() + usize::from(mode == "none"));
            let ep = self
                .join_network(&rec, &ns, &n.name, &ifname, ip.as_deref(), false)
                .await?;
            c.state
                .lock()
                .expect("state")
                .endpoints
                .insert(n.name.clone(), ep);
            self.persist_state(&c)?;
            if !n.builtin() && !self.dns.lock().expect("dns").contains_key(&rec.id) {
                if let Err(e) = self.start_dns(&rec.id, &ns) {
                    tracing::warn!("dns for {}: {e}", rec.id);
                }
            }
        }
        rec.extra_networks.push(crate::record::ExtraNetwork {
            name: n.name.clone(),
            aliases,
            ip,
        });
        self.persist_record(&rec)?;
        self.emit_network(&n, "connect", Some(&rec.id));
        *c.rec.write().expect("rec") = rec;
        Ok(())
    }

    /// `POST /networks/{id}/disconnect`.
    pub async fn network_disconnect(&self, net: &str, container: &str) -> Result<()> {
        let n = self.nets.get(net)?;
        let c = self.find(container)?;
        let _op = c.op.lock().await;
        let mut rec = c.rec.read().expect("rec").clone();
        let mode = mode_network(&rec.host_config.network_mode).to_string();
        let is_extra = rec.extra_networks.iter().any(|x| x.name == n.name);
        if mode != n.name && !is_extra {
            // Refused with `Force` too, as dockerd does.
            let the = if c.state().status.is_running() {
                ""
            } else {
                "the "
            };
            return Err(EngineError::Forbidden(format!(
                "container {} is not connected to {the}network {}",
                rec.id, n.name
            )));
        }
        if mode == "host" || n.name == "host" {
            return Err(EngineError::Conflict(
                "container cannot be disconnected from host network or connected to host network"
                    .into(),
            ));
        }
        let ep = c.state.lock().expect("state").endpoints.remove(&n.name);
        if let Some(ep) = ep {
            let _ = self.persist_state(&c);
            let store = self.nets.clone();
            let id = rec.id.clone();
            let net = self.net_host.clone();
            tokio::task::spawn_blocking(move || {
                let _ = net.delete_link(&ep.host_if);
                store.release(&ep.network_id, &id);
            });
            if !ep.ports.is_empty() {
                self.sync_nft();
            }
        }
        rec.endpoint_settings.remove(&n.name);
        if is_extra {
            rec.extra_networks.retain(|x| x.name != n.name);
        } else if !rec.extra_networks.is_empty() && !c.state().status.is_running() {
            // The next network becomes the primary one (eth0 at the next start).
            let next = rec.extra_networks.remove(0);
            rec.host_config.network_mode = next.name;
            rec.aliases = next.aliases;
            rec.requested_ip = next.ip;
        } else {
            rec.host_config.network_mode = "none".into();
        }
        self.persist_record(&rec)?;
        self.emit_network(&n, "disconnect", Some(&rec.id));
        *c.rec.write().expect("rec") = rec;
        Ok(())
    }

    /// The host ports a starting container publishes: its bindings, random
    /// ports for empty ones and for `-P`, refusing ports already taken by
    /// another container or by a host socket.
    fn resolve_ports(&self, rec: &Record) -> Result<Vec<PortMap>> {
        let hc = &rec.host_config;
        let mut wanted: Vec<(String, u16, String, String)> = Vec::new();
        for (key, binds) in hc.port_bindings.iter().flatten() {
            let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
            let cport: u16 = port
                .parse()
                .map_err(|_| EngineError::BadRequest(format!("invalid port {key}")))?;
            for b in binds.iter().flatten() {
                wanted.push((
                    proto.to_string(),
                    cport,
                    b.host_ip.clone(),
                    b.host_port.clone(),
                ));
            }
        }
        if hc.publish_all_ports {
            for key in rec.config.exposed_ports.iter().flat_map(|e| e.keys()) {
                let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
                let Ok(cport) = port.parse::<u16>() else {
                    continue;
                };
                if !wanted.iter().any(|w| w.0 == proto && w.1 == cport) {
                    wanted.push((proto.to_string(), cport, String::new(), String::new()));
                }
            }
        }
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let taken: Vec<PortMap> = self
            .endpoints_except(Some(&rec.id))
            .into_iter()
            .flat_map(|e| e.ports)
            .collect();
        let mut out: Vec<PortMap> = Vec::new();
        for (proto, cport, hip, hport) in wanted {
            let hip = if hip.is_empty() {
                "0.0.0.0".to_string()
            } else {
                hip
            };
            let in_use = |p: u16, out: &[PortMap]| {
                taken
                    .iter()
                    .chain(out.iter())
                    .any(|t| t.proto == proto && t.host_port == p && overlapping(&t.host_ip, &hip))
            };
            let (lo, hi) = match hport.split_once('-') {
                Some((a, b)) => (a.parse::<u16>().unwrap_or(0), b.parse::<u16>().unwrap_or(0)),
                None => {
                    let p = if hport.is_empty() {
                        0
                    } else {
                        hport.parse::<u16>().map_err(|_| {
                            EngineError::BadRequest(format!("invalid host port {hport}"))
                        })?
                    };
                    (p, p)
                }
            };
            let port = if lo == 0 {
                (0..50)
                    .filter_map(|_| ephemeral_port(&proto, &hip))
                    .find(|p| !in_use(*p, &out))
                    .ok_or_else(|| EngineError::Internal("no free host port".into()))?
            } else {
                let mut found = None;
                for p in lo..=hi.max(lo) {
                    if !in_use(p, &out) && host_port_free(&proto, &hip, p) {
                        found = Some(p);
                        break;
                    }
                }
                found.ok_or_else(|| {
                    EngineError::Conflict(format!(
                        "driver failed programming external connectivity on endpoint {}: Bind for {hip}:{hport} failed: port is already allocated",
                        rec.name
                    ))
                })?
            };
            out.push(PortMap {
                proto: proto.clone(),
                container_port: cport,
                host_ip: hip,
                host_port: port,
            });
        }
        Ok(out)
    }

    /// Rewrites Berth's nftables table from the networks and the ports of
    /// running containers.
    pub(crate) fn sync_nft(&self) {
        let forwards: Vec<host::Forward> = self
            .endpoints_except(None)
            .into_iter()
            .flat_map(|e| {
                e.ports
                    .iter()
                    .map(|p| host::Forward {
                        proto: p.proto.clone(),
                        host_ip: p.host_ip.clone(),
                        host_port: p.host_port,
                        container_ip: e.ip.clone(),
                        container_port: p.container_port,
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        if let Err(e) = self
            .net_host
            .apply_nft(&self.cfg.nft_table, &self.nets.list(), &forwards)
        {
            tracing::warn!("nftables: {e}");
        }
        if let Some(r) = &self.redirect {
            if let Err(e) = r.sync(&forwards) {
                tracing::warn!("published ports: {e}");
            }
        }
    }

    /// Undoes `setup_network`; safe to call for a container that has none.
    /// The namespace goes now; deleting the veth waits for RCU grace periods
    /// (tens of ms), so it and the address's release happen in the background.
    pub(crate) async fn teardown_network(&self, id: &str, eps: &BTreeMap<String, EndpointState>) {
        self.stop_dns(id);
        // Even with no endpoint left (all disconnected while it ran) the
        // namespace may be there.
        let ns = host::netns_path(&self.cfg.exec_root, id);
        if ns.exists() {
            self.net_host.remove_netns(&ns);
        }
        if eps.is_empty() {
            return;
        }
        let links: Vec<String> = eps.values().map(|e| e.host_if.clone()).collect();
        let nets: Vec<String> = eps.values().map(|e| e.network_id.clone()).collect();
        let store = self.nets_handle();
        let id = id.to_string();
        let net = self.net_host.clone();
        tokio::task::spawn_blocking(move || {
            for l in links {
                let _ = net.delete_link(&l);
            }
            for n in nets {
                store.release(&n, &id);
            }
        });
    }
}

impl Engine {
    /// Does any of these endpoints sit on a user-defined network?
    pub(crate) fn on_user_network(&self, eps: &BTreeMap<String, EndpointState>) -> bool {
        eps.keys()
            .any(|n| !matches!(n.as_str(), "bridge" | "host" | "none"))
    }
}
