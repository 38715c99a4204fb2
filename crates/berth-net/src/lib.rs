//! Networks on one host: the `bridge`, `host` and `none` networks and
//! user-defined bridges, their address pools (IPAM, persisted), and the host
//! effects behind them (`host.rs`: bridges, veths and addresses over netlink,
//! network namespaces, one nftables table).

pub mod dns;
pub mod effects;
pub mod host;
pub mod ipam;
pub mod redirect;

use berth_util::fs::{write_atomic, write_replace};
use ipam::{Pool, Subnet, Subnet6};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("network {0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Host(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Network {
    pub id: String,
    pub name: String,
    /// `bridge`, `host` or `null`.
    pub driver: String,
    /// The Linux bridge (bridge driver only).
    #[serde(default)]
    pub bridge: String,
    #[serde(default)]
    pub subnet: String,
    #[serde(default)]
    pub gateway: String,
    #[serde(default)]
    pub ip_range: String,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub attachable: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    pub created: String,
    #[serde(default)]
    pub pool: Pool,
    /// Dual stack (`--ipv6`): the IPv6 subnet and gateway, and the IPv6
    /// addresses taken (address → owner).
    #[serde(default)]
    pub enable_ipv6: bool,
    #[serde(default)]
    pub subnet6: String,
    #[serde(default)]
    pub gateway6: String,
    #[serde(default)]
    pub pool6: BTreeMap<String, String>,
}

impl Network {
    /// The auxiliary addresses the network was made with.
    pub fn aux_addresses(&self) -> BTreeMap<String, String> {
        self.pool
            .taken
            .iter()
            .filter_map(|(ip, o)| Some((o.strip_prefix(AUX_OWNER)?.to_string(), ip.to_string())))
            .collect()
    }

    pub fn is_bridge(&self) -> bool {
        self.driver == "bridge"
    }
    pub fn subnet(&self) -> Option<Subnet> {
        Subnet::parse(&self.subnet).ok()
    }
    pub fn gateway_ip(&self) -> Option<Ipv4Addr> {
        self.gateway.parse().ok()
    }
    pub fn subnet6(&self) -> Option<Subnet6> {
        Subnet6::parse(&self.subnet6)
            .ok()
            .filter(|_| self.enable_ipv6)
    }
    pub fn gateway6_ip(&self) -> Option<std::net::Ipv6Addr> {
        self.gateway6.parse().ok().filter(|_| self.enable_ipv6)
    }
    /// Predefined networks cannot be removed.
    pub fn builtin(&self) -> bool {
        matches!(self.name.as_str(), "bridge" | "host" | "none")
    }
}

/// How the address pool marks a network's auxiliary addresses.
const AUX_OWNER: &str = "aux:";

/// What `network create` asks for.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// `--ipv6`, with an IPv6 subnet and gateway of its own or not.
    pub enable_ipv6: bool,
    pub subnet6: Option<String>,
    pub gateway6: Option<String>,
    pub name: String,
    /// `IPAM.Config[].AuxiliaryAddresses`: host name to address.
    pub aux_addresses: BTreeMap<String, String>,
    pub driver: String,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub ip_range: Option<String>,
    pub internal: bool,
    pub attachable: bool,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
}

/// Networks and their address pools, persisted as one JSON file.
pub struct NetStore {
    path: PathBuf,
    nets: Mutex<BTreeMap<String, Network>>,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

impl NetStore {
    /// Opens the store and makes sure `bridge` (on `bridge_name`, `bip`),
    /// `host` and `none` exist.
    pub fn open(data_root: &Path, bridge_name: &str, bip: &str) -> Result<Self, NetError> {
        let path = data_root.join("network/networks.json");
        let nets: BTreeMap<String, Network> = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| NetError::Invalid(format!("{}: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e.into()),
        };
        let s = NetStore {
            path,
            nets: Mutex::new(nets),
        };
        {
            let mut nets = s.nets.lock().expect("nets");
            let has =
                |nets: &BTreeMap<String, Network>, n: &str| nets.values().any(|x| x.name == n);
            for (name, driver) in [("host", "host"), ("none", "null")] {
                if !has(&nets, name) {
                    let id = new_id();
                    nets.insert(
                        id.clone(),
                        Network {
                            id,
                            name: name.into(),
                            driver: driver.into(),
                            created: now(),
                            ..Default::default()
                        },
                    );
                }
            }
            if !has(&nets, "bridge") {
                let sub = Subnet::parse(bip).map_err(NetError::Invalid)?;
                let gw = bip
                    .split('/')
                    .next()
                    .and_then(|a| a.parse::<Ipv4Addr>().ok())
                    .filter(|a| *a != sub.network)
                    .unwrap_or(sub.first_host());
                let mut pool = Pool::default();
                pool.taken.insert(gw, "gateway".into());
                let id = new_id();
                nets.insert(
                    id.clone(),
                    Network {
                        id,
                        name: "bridge".into(),
                        driver: "bridge".into(),
                        bridge: bridge_name.into(),
                        subnet: sub.to_string(),
                        gateway: gw.to_string(),
                        created: now(),
                        pool,
                        options: [
                            (
                                "com.docker.network.bridge.name".to_string(),
                                bridge_name.to_string(),
                            ),
                            (
                                "com.docker.network.bridge.default_bridge".to_string(),
                                "true".to_string(),
                            ),
                        ]
                        .into(),
                        ..Default::default()
                    },
                );
            }
            s.persist(&nets)?;
        }
        Ok(s)
    }

    fn persist(&self, nets: &BTreeMap<String, Network>) -> Result<(), NetError> {
        self.persist_with(nets, true)
    }

    /// Addresses are written atomically but not synced: they matter only
    /// for running containers, which do not outlive the machine, and
    /// `retain_addresses` drops what a lost write left behind.
    fn persist_with(
        &self,
        nets: &BTreeMap<String, Network>,
        durable: bool,
    ) -> Result<(), NetError> {
        let b = serde_json::to_vec(nets).map_err(|e| NetError::Invalid(e.to_string()))?;
        if durable {
            write_atomic(&self.path, &b)?;
        } else {
            write_replace(&self.path, &b)?;
        }
        Ok(())
    }

    /// Releases every container address for which `live(network id, owner)`
    /// is false: after a restart, those of containers that are not running.
    pub fn retain_addresses(&self, live: impl Fn(&str, &str) -> bool) -> Result<(), NetError> {
        let mut nets = self.nets.lock().expect("nets");
        let mut changed = false;
        for n in nets.values_mut() {
            let before = n.pool.taken.len();
            n.pool.taken.retain(|_, owner| {
                owner == "gateway" || owner.starts_with(AUX_OWNER) || live(&n.id, owner)
            });
            let before6 = n.pool6.len();
            let id = n.id.clone();
            n.pool6
                .retain(|_, owner| owner == "gateway" || live(&id, owner));
            changed |= n.pool.taken.len() != before || n.pool6.len() != before6;
        }
        if changed {
            self.persist(&nets)?;
        }
        Ok(())
    }

    pub fn list(&self) -> Vec<Network> {
        self.nets.lock().expect("nets").values().cloned().collect()
    }

    /// By exact name, full id, or unique id prefix.
    pub fn get(&self, key: &str) -> Result<Network, NetError> {
        let nets = self.nets.lock().expect("nets");
        find(&nets, key).cloned()
    }

    pub fn create(&self, o: CreateOptions) -> Result<Network, NetError> {
        let driver = if o.driver.is_empty() {
            "bridge".to_string()
        } else {
            o.driver.clone()
        };
        if driver != "bridge" {
            return Err(NetError::Invalid(format!(
                "plugin \"{driver}\" not found: only the bridge driver can make new networks"
            )));
        }
        // dockerd takes any name but an empty one (spaces included): the
        // name is only ever a key, never a path or an interface name.
        if o.name.is_empty() {
            return Err(NetError::Invalid("invalid name: name is empty".into()));
        }
        let mut nets = self.nets.lock().expect("nets");
        if nets.values().any(|n| n.name == o.name) {
            return Err(NetError::Conflict(format!(
                "network with name {} already exists",
                o.name
            )));
        }
        let taken: Vec<Subnet> = nets.values().filter_map(|n| n.subnet()).collect();
        let sub = subnet(&o, &taken)?;
        let (gw, range) = gateway_and_range(&o, &sub)?;
        let id = new_id();
        let bridge = o
            .options
            .get("com.docker.network.bridge.name")
            .cloned()
            .unwrap_or_else(|| format!("br-{}", &id[..12]));
        if bridge.len() > 15 || nets.values().any(|n| n.bridge == bridge) {
            return Err(NetError::Invalid(format!(
                "bridge name {bridge} is too long or already used"
            )));
        }
        let taken6: Vec<Subnet6> = nets.values().filter_map(|n| n.subnet6()).collect();
        let (subnet6, gateway6) = ipv6(&o, &taken6)?;
        let pool = first_pool(&o, &sub, gw)?;
        let n = Network {
            id: id.clone(),
            name: o.name,
            driver,
            bridge,
            subnet: sub.to_string(),
            gateway: gw.to_string(),
            ip_range: range,
            internal: o.internal,
            attachable: o.attachable,
            labels: o.labels,
            options: o.options,
            created: now(),
            pool,
            enable_ipv6: subnet6.is_some(),
            subnet6: subnet6.map(|s| s.to_string()).unwrap_or_default(),
            gateway6: gateway6.map(|g| g.to_string()).unwrap_or_default(),
            pool6: gateway6
                .map(|g| BTreeMap::from([(g.to_string(), "gateway".to_string())]))
                .unwrap_or_default(),
        };
        nets.insert(id, n.clone());
        self.persist(&nets)?;
        Ok(n)
    }

    pub fn remove(&self, key: &str) -> Result<Network, NetError> {
        let mut nets = self.nets.lock().expect("nets");
        let n = find(&nets, key)?.clone();
        if n.builtin() {
            return Err(NetError::Conflict(format!(
                "{} is a pre-defined network and cannot be removed",
                n.name
            )));
        }
        nets.remove(&n.id);
        self.persist(&nets)?;
        Ok(n)
    }

    /// An address for `owner` on `net` (the one asked for, if free).
    pub fn allocate(
        &self,
        net: &str,
        owner: &str,
        want: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, NetError> {
        let mut nets = self.nets.lock().expect("nets");
        let id = find(&nets, net)?.id.clone();
        let n = nets.get_mut(&id).expect("found");
        let sub = n
            .subnet()
            .ok_or_else(|| NetError::Invalid(format!("network {} has no subnet", n.name)))?;
        let range = Subnet::parse(&n.ip_range).unwrap_or(sub);
        let ip = n
            .pool
            .allocate(&sub, &range, owner, want)
            .map_err(NetError::Conflict)?;
        self.persist_with(&nets, false)?;
        Ok(ip)
    }

    /// Dual stack on the default `bridge` network (berthd `--ipv6`, with
    /// `--fixed-cidr-v6` or a random ULA /64), or IPv4 only again. Takes
    /// effect for endpoints made from now on.
    pub fn set_default_ipv6(&self, enable: bool, subnet: Option<&str>) -> Result<(), NetError> {
        let mut nets = self.nets.lock().expect("nets");
        let id = find(&nets, "bridge")?.id.clone();
        let others: Vec<Subnet6> = nets
            .values()
            .filter(|n| n.id != id)
            .filter_map(|n| n.subnet6())
            .collect();
        let n = nets.get_mut(&id).expect("found");
        if !enable {
            if !n.enable_ipv6 {
                return Ok(());
            }
            n.enable_ipv6 = false;
        } else {
            let sub6 = match subnet {
                Some(s) => Subnet6::parse(s).map_err(NetError::Invalid)?,
                // Keep the one it has, so addresses stay put across restarts.
                None => match Subnet6::parse(&n.subnet6) {
                    Ok(s) => s,
                    Err(_) => Subnet6::random_ula(),
                },
            };
            if let Some(t) = others.iter().find(|t| t.overlaps(&sub6)) {
                return Err(NetError::Conflict(format!(
                    "--fixed-cidr-v6 {sub6} overlaps the network on {t}"
                )));
            }
            if n.enable_ipv6 && n.subnet6 == sub6.to_string() {
                return Ok(());
            }
            let gw6 = sub6.first_host();
            n.enable_ipv6 = true;
            n.subnet6 = sub6.to_string();
            n.gateway6 = gw6.to_string();
            n.pool6 = BTreeMap::from([(gw6.to_string(), "gateway".to_string())]);
        }
        self.persist(&nets)
    }

    /// An IPv6 address for `owner` on a dual-stack network (None on an
    /// IPv4-only one).
    pub fn allocate6(
        &self,
        net: &str,
        owner: &str,
        want: Option<std::net::Ipv6Addr>,
    ) -> Result<Option<std::net::Ipv6Addr>, NetError> {
        let mut nets = self.nets.lock().expect("nets");
        let id = find(&nets, net)?.id.clone();
        let n = nets.get_mut(&id).expect("found");
        let Some(sub6) = n.subnet6() else {
            return match want {
                Some(ip) => Err(NetError::Invalid(format!(
                    "invalid IPv6 address {ip}: network {} does not have IPv6 enabled",
                    n.name
                ))),
                None => Ok(None),
            };
        };
        let ip = sub6
            .allocate(&mut n.pool6, owner, want)
            .map_err(NetError::Conflict)?;
        self.persist_with(&nets, false)?;
        Ok(Some(ip))
    }

    pub fn release(&self, net: &str, owner: &str) {
        let mut nets = self.nets.lock().expect("nets");
        let Ok(id) = find(&nets, net).map(|n| n.id.clone()) else {
            return;
        };
        if let Some(n) = nets.get_mut(&id) {
            n.pool.release(owner);
            n.pool6.retain(|_, o| o != owner);
        }
        let _ = self.persist_with(&nets, false);
    }
}

fn find<'a>(nets: &'a BTreeMap<String, Network>, key: &str) -> Result<&'a Network, NetError> {
    if let Some(n) = nets.values().find(|n| n.name == key) {
        return Ok(n);
    }
    if let Some(n) = nets.get(key) {
        return Ok(n);
    }
    let hits: Vec<&Network> = nets
        .values()
        .filter(|n| !key.is_empty() && n.id.starts_with(key))
        .collect();
    match hits.as_slice() {
        [one] => Ok(one),
        [] => Err(NetError::NotFound(key.to_string())),
        _ => Err(NetError::Invalid(format!(
            "network {key} is ambiguous ({} matches found based on ID prefix)",
            hits.len()
        ))),
    }
}

fn new_id() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// The subnet a new network asks for, or the first free one of Berth's
/// default pool (10.89.N.0/24, as dockerd's default pools but our own).
fn subnet(o: &CreateOptions, taken: &[Subnet]) -> Result<Subnet, NetError> {
    Ok(match &o.subnet {
        Some(s) => {
            let sub = Subnet::parse(s).map_err(NetError::Invalid)?;
            if let Some(t) = taken.iter().find(|t| t.overlaps(&sub)) {
                return Err(NetError::Conflict(format!("invalid pool request: Pool overlaps with other one on this address space ({t})")));
            }
            sub
        }
        // Like dockerd's default pools, from our own range: 10.89.N.0/24.
        None => (0..=255u32)
            .map(|n| Subnet {
                network: Ipv4Addr::new(10, 89, n as u8, 0),
                prefix: 24,
            })
            .find(|c| !taken.iter().any(|t| t.overlaps(c)))
            .ok_or_else(|| {
                NetError::Conflict(
                    "could not find an available, non-overlapping IPv4 address pool".into(),
                )
            })?,
    })
}

/// `--gateway` (else the subnet's first host) and `--ip-range`, checked
/// against the subnet.
fn gateway_and_range(o: &CreateOptions, sub: &Subnet) -> Result<(Ipv4Addr, String), NetError> {
    let gw = match &o.gateway {
        Some(g) => {
            let ip: Ipv4Addr = g
                .parse()
                .map_err(|_| NetError::Invalid(format!("invalid gateway {g}")))?;
            if !sub.contains(ip) {
                return Err(NetError::Invalid(format!(
                    "gateway {ip} is not in subnet {sub}"
                )));
            }
            ip
        }
        None => sub.first_host(),
    };
    let range = match &o.ip_range {
        Some(r) => {
            let r2 = Subnet::parse(r).map_err(NetError::Invalid)?;
            if !sub.overlaps(&r2) || r2.prefix < sub.prefix {
                return Err(NetError::Invalid(format!(
                    "ip-range {r} is not inside subnet {sub}"
                )));
            }
            r2.to_string()
        }
        None => String::new(),
    };
    Ok((gw, range))
}

/// `--ipv6` with `--subnet`/`--gateway` for it, or a random ULA /64.
fn ipv6(
    o: &CreateOptions,
    taken6: &[Subnet6],
) -> Result<(Option<Subnet6>, Option<std::net::Ipv6Addr>), NetError> {
    Ok(match (o.enable_ipv6, &o.subnet6) {
        (false, Some(s)) => {
            return Err(NetError::Invalid(format!(
                "the IPv6 subnet {s} needs IPv6 enabled on the network (--ipv6)"
            )))
        }
        (false, None) => (None, None),
        (true, given) => {
            let sub6 = match given {
                Some(s) => {
                    let sub6 = Subnet6::parse(s).map_err(NetError::Invalid)?;
                    if let Some(t) = taken6.iter().find(|t| t.overlaps(&sub6)) {
                        return Err(NetError::Conflict(format!("invalid pool request: Pool overlaps with other one on this address space ({t})")));
                    }
                    sub6
                }
                None => (0..16)
                    .map(|_| Subnet6::random_ula())
                    .find(|c| !taken6.iter().any(|t| t.overlaps(c)))
                    .ok_or_else(|| {
                        NetError::Conflict("could not find an available IPv6 address pool".into())
                    })?,
            };
            let gw6 = match &o.gateway6 {
                Some(g) => {
                    let ip: std::net::Ipv6Addr = g
                        .parse()
                        .map_err(|_| NetError::Invalid(format!("invalid gateway {g}")))?;
                    if !sub6.contains(ip) {
                        return Err(NetError::Invalid(format!(
                            "gateway {ip} is not in subnet {sub6}"
                        )));
                    }
                    ip
                }
                None => sub6.first_host(),
            };
            (Some(sub6), Some(gw6))
        }
    })
}

/// The address pool of a new network: its gateway and the auxiliary
/// addresses the user keeps for hosts outside Docker, never handed out.
fn first_pool(o: &CreateOptions, sub: &Subnet, gw: Ipv4Addr) -> Result<Pool, NetError> {
    let mut pool = Pool::default();
    pool.taken.insert(gw, "gateway".into());
    // Addresses the user keeps for hosts outside Docker: never handed out.
    for (host, a) in &o.aux_addresses {
        let ip: Ipv4Addr = a
            .parse()
            .map_err(|_| NetError::Invalid(format!("invalid auxiliary address {host}={a}")))?;
        if !sub.contains(ip) {
            return Err(NetError::Invalid(format!(
                "invalid pool request: auxiliary address {host}={ip} is not in subnet {sub}"
            )));
        }
        pool.taken.insert(ip, format!("{AUX_OWNER}{host}"));
    }
    Ok(pool)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_user_networks_and_addresses_survive_reopen() {
        let d = tempfile::tempdir().unwrap();
        let s = NetStore::open(d.path(), "berth0", "10.88.0.1/16").unwrap();
        let names: Vec<String> = s.list().into_iter().map(|n| n.name).collect();
        for n in ["bridge", "host", "none"] {
            assert!(names.contains(&n.to_string()));
        }
        let b = s.get("bridge").unwrap();
        assert_eq!(
            (b.subnet.as_str(), b.gateway.as_str(), b.bridge.as_str()),
            ("10.88.0.0/16", "10.88.0.1", "berth0")
        );
        let ip = s.allocate("bridge", "c1", None).unwrap();
        assert_eq!(ip.to_string(), "10.88.0.2");
        let u = s
            .create(CreateOptions {
                name: "appnet".into(),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(u.subnet, "10.89.0.0/24");
        assert!(u.bridge.starts_with("br-"));
        assert!(matches!(
            s.create(CreateOptions {
                name: "appnet".into(),
                ..Default::default()
            }),
            Err(NetError::Conflict(_))
        ));
        assert!(matches!(
            s.create(CreateOptions {
                name: "clash".into(),
                subnet: Some("10.88.5.0/24".into()),
                ..Default::default()
            }),
            Err(NetError::Conflict(_))
        ));
        let v = s
            .create(CreateOptions {
                name: "v".into(),
                subnet: Some("10.90.0.0/24".into()),
                gateway: Some("10.90.0.254".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            s.allocate("v", "c1", None).unwrap().to_string(),
            "10.90.0.1"
        );
        // Reopened: the same networks, the same taken addresses.
        let s = NetStore::open(d.path(), "berth0", "10.88.0.1/16").unwrap();
        assert_eq!(
            s.allocate("bridge", "c2", None).unwrap().to_string(),
            "10.88.0.3"
        );
        assert_eq!(s.get(&v.id[..8]).unwrap().name, "v");
        assert!(matches!(s.remove("bridge"), Err(NetError::Conflict(_))));
        s.remove("appnet").unwrap();
        assert!(matches!(s.get("appnet"), Err(NetError::NotFound(_))));
    }

    #[test]
    fn auxiliary_addresses_are_never_handed_out_and_kept() {
        let d = tempfile::tempdir().unwrap();
        let s = NetStore::open(d.path(), "berth0", "10.88.0.1/16").unwrap();
        let aux = |a: &str| BTreeMap::from([("router".to_string(), a.to_string())]);
        let n = s
            .create(CreateOptions {
                name: "with spaces".into(),
                subnet: Some("10.91.0.0/24".into()),
                aux_addresses: aux("10.91.0.2"),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(n.aux_addresses(), aux("10.91.0.2"));
        assert_eq!(
            s.allocate("with spaces", "c1", None).unwrap().to_string(),
            "10.91.0.3"
        );
        s.retain_addresses(|_, _| false).unwrap();
        assert_eq!(
            s.get("with spaces").unwrap().aux_addresses(),
            aux("10.91.0.2")
        );
        assert!(s
            .create(CreateOptions {
                name: "bad".into(),
                subnet: Some("10.92.0.0/24".into()),
                aux_addresses: aux("10.93.0.2"),
                ..Default::default()
            })
            .is_err());
        assert!(s
            .create(CreateOptions {
                name: "".into(),
                ..Default::default()
            })
            .is_err());
    }

    #[test]
    fn addresses_of_containers_no_longer_running_are_dropped() {
        let d = tempfile::tempdir().unwrap();
        let s = NetStore::open(d.path(), "berth0", "10.88.0.1/16").unwrap();
        let bridge = s.get("bridge").unwrap().id;
        assert_eq!(
            s.allocate("bridge", "gone", None).unwrap().to_string(),
            "10.88.0.2"
        );
        assert_eq!(
            s.allocate("bridge", "alive", None).unwrap().to_string(),
            "10.88.0.3"
        );
        s.retain_addresses(|net, owner| net == bridge && owner == "alive")
            .unwrap();
        // Kept on disk: the freed address is the next one handed out, the
        // gateway and the live container keep theirs.
        let s = NetStore::open(d.path(), "berth0", "10.88.0.1/16").unwrap();
        assert_eq!(
            s.allocate("bridge", "new", None).unwrap().to_string(),
            "10.88.0.2"
        );
        assert_eq!(
            s.allocate("bridge", "alive", None).unwrap().to_string(),
            "10.88.0.3"
        );
        assert_eq!(
            s.allocate("bridge", "next", None).unwrap().to_string(),
            "10.88.0.4"
        );
    }
}
