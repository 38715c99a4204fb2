//! The host effects the engine's networking needs, behind one trait: `Linux`
//! does them (netlink, nftables, bind-mounted namespaces); `Recording` keeps
//! a model of links and records every call, for tests without root. The same
//! conformance checks run against both (see the tests below and
//! berth-engine's network tests).

use crate::host::{self, Endpoint, Forward};
use crate::{NetError, Network};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub trait NetHost: Send + Sync {
    /// A new network namespace, bind-mounted at `path`.
    fn create_netns(&self, path: &Path) -> Result<(), NetError>;
    fn remove_netns(&self, path: &Path);
    /// `n`'s bridge, with its gateway address, up.
    fn ensure_bridge(&self, n: &Network) -> Result<(), NetError>;
    /// Deletes a link (bridge or veth); none by that name is not an error.
    fn delete_link(&self, name: &str) -> Result<(), NetError>;
    /// The interfaces enslaved to `bridge`.
    fn bridge_ports(&self, bridge: &str) -> Vec<String>;
    fn link_exists(&self, name: &str) -> bool;
    /// A veth pair from the namespace at `netns` to `bridge`.
    fn attach(&self, netns: &Path, bridge: &str, ep: &Endpoint) -> Result<(), NetError>;
    /// Replaces Berth's nftables table.
    fn apply_nft(
        &self,
        table: &str,
        nets: &[Network],
        forwards: &[Forward],
    ) -> Result<(), NetError>;
}

/// The host's own networking.
pub struct Linux;

impl NetHost for Linux {
    fn create_netns(&self, path: &Path) -> Result<(), NetError> {
        host::create_netns(path)
    }
    fn remove_netns(&self, path: &Path) {
        host::remove_netns(path)
    }
    fn ensure_bridge(&self, n: &Network) -> Result<(), NetError> {
        host::ensure_bridge(n)
    }
    fn delete_link(&self, name: &str) -> Result<(), NetError> {
        host::delete_link(name)
    }
    fn bridge_ports(&self, bridge: &str) -> Vec<String> {
        host::bridge_ports(bridge)
    }
    fn link_exists(&self, name: &str) -> bool {
        Path::new("/sys/class/net").join(name).exists()
    }
    fn attach(&self, netns: &Path, bridge: &str, ep: &Endpoint) -> Result<(), NetError> {
        host::attach(netns, bridge, ep)
    }
    fn apply_nft(
        &self,
        table: &str,
        nets: &[Network],
        forwards: &[Forward],
    ) -> Result<(), NetError> {
        host::apply_nft(table, nets, forwards)
    }
}

/// One recorded call.
#[derive(Debug, Clone, PartialEq)]
pub enum NetCall {
    CreateNetns(PathBuf),
    RemoveNetns(PathBuf),
    EnsureBridge {
        bridge: String,
        subnet: String,
    },
    DeleteLink(String),
    Attach {
        netns: PathBuf,
        bridge: String,
        host_if: String,
    },
    /// The bridges the table covers and its published-port forwards.
    ApplyNft {
        table: String,
        bridges: Vec<String>,
        forwards: Vec<Forward>,
    },
}

/// A fake host: records calls and keeps which links exist and what is
/// enslaved to each bridge, so that its answers stay consistent.
#[derive(Default)]
pub struct Recording {
    calls: Mutex<Vec<NetCall>>,
    /// bridge → ports; veths on no bridge are not kept.
    bridges: Mutex<BTreeMap<String, Vec<String>>>,
}

impl Recording {
    pub fn calls(&self) -> Vec<NetCall> {
        self.calls.lock().expect("calls").clone()
    }

    /// The calls since the last look.
    pub fn take_calls(&self) -> Vec<NetCall> {
        std::mem::take(&mut *self.calls.lock().expect("calls"))
    }

    pub fn bridges(&self) -> Vec<String> {
        self.bridges
            .lock()
            .expect("bridges")
            .keys()
            .cloned()
            .collect()
    }

    fn record(&self, c: NetCall) {
        self.calls.lock().expect("calls").push(c);
    }
}

impl NetHost for Recording {
    fn create_netns(&self, path: &Path) -> Result<(), NetError> {
        self.record(NetCall::CreateNetns(path.to_path_buf()));
        Ok(())
    }
    fn remove_netns(&self, path: &Path) {
        self.record(NetCall::RemoveNetns(path.to_path_buf()));
    }
    fn ensure_bridge(&self, n: &Network) -> Result<(), NetError> {
        if n.subnet().is_none() {
            return Err(NetError::Invalid("no subnet".into()));
        }
        let subnet = n.subnet.clone();
        self.record(NetCall::EnsureBridge {
            bridge: n.bridge.clone(),
            subnet,
        });
        self.bridges
            .lock()
            .expect("bridges")
            .entry(n.bridge.clone())
            .or_default();
        Ok(())
    }
    fn delete_link(&self, name: &str) -> Result<(), NetError> {
        self.record(NetCall::DeleteLink(name.to_string()));
        let mut b = self.bridges.lock().expect("bridges");
        b.remove(name);
        for ports in b.values_mut() {
            ports.retain(|p| p != name);
        }
        Ok(())
    }
    fn bridge_ports(&self, bridge: &str) -> Vec<String> {
        self.bridges
            .lock()
            .expect("bridges")
            .get(bridge)
            .cloned()
            .unwrap_or_default()
    }
    fn link_exists(&self, name: &str) -> bool {
        let b = self.bridges.lock().expect("bridges");
        b.contains_key(name) || b.values().any(|ports| ports.iter().any(|p| p == name))
    }
    fn attach(&self, netns: &Path, bridge: &str, ep: &Endpoint) -> Result<(), NetError> {
        self.record(NetCall::Attach {
            netns: netns.to_path_buf(),
            bridge: bridge.to_string(),
            host_if: ep.host_if.clone(),
        });
        match self.bridges.lock().expect("bridges").get_mut(bridge) {
            Some(ports) => {
                ports.push(ep.host_if.clone());
                Ok(())
            }
            None => Err(NetError::Host(format!("no bridge {bridge}"))),
        }
    }
    fn apply_nft(
        &self,
        table: &str,
        nets: &[Network],
        forwards: &[Forward],
    ) -> Result<(), NetError> {
        self.record(NetCall::ApplyNft {
            table: table.to_string(),
            bridges: nets
                .iter()
                .filter(|n| n.is_bridge())
                .map(|n| n.bridge.clone())
                .collect(),
            forwards: forwards.to_vec(),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What any `NetHost` must do; run against the fake always and against
    /// the host's networking when the tests run as root.
    fn conformance(h: &dyn NetHost, bridge: &str) {
        let n = Network {
            name: "conformance".into(),
            driver: "bridge".into(),
            bridge: bridge.into(),
            subnet: "10.96.250.0/24".into(),
            gateway: "10.96.250.1".into(),
            ..Default::default()
        };
        assert!(!h.link_exists(bridge));
        h.ensure_bridge(&n).unwrap();
        h.ensure_bridge(&n).unwrap();
        assert!(h.link_exists(bridge), "ensure_bridge made it");
        assert!(h.bridge_ports(bridge).is_empty());
        h.delete_link(bridge).unwrap();
        assert!(!h.link_exists(bridge));
        h.delete_link(bridge).unwrap();
        let no_subnet = Network {
            subnet: String::new(),
            ..n
        };
        assert!(h.ensure_bridge(&no_subnet).is_err());
    }

    #[test]
    fn the_fake_conforms_and_records() {
        let r = Recording::default();
        conformance(&r, "btconf0");
        let calls = r.calls();
        assert_eq!(
            calls[0],
            NetCall::EnsureBridge {
                bridge: "btconf0".into(),
                subnet: "10.96.250.0/24".into()
            }
        );
        assert!(calls.contains(&NetCall::DeleteLink("btconf0".into())));
    }

    #[test]
    fn the_host_conforms_when_root() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: the host's networking needs root");
            return;
        }
        /// Deletes the test's bridge however the test ends.
        struct Cleanup(String);
        impl Drop for Cleanup {
            fn drop(&mut self) {
                let _ = Linux.delete_link(&self.0);
            }
        }
        let bridge = Cleanup(format!("btc{}", std::process::id() % 100000));
        let _ = Linux.delete_link(&bridge.0);
        conformance(&Linux, &bridge.0);
    }
}
