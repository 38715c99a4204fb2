//! The embedded DNS server at 127.0.0.11 (berth_net::dns::serve): one per
//! container on a user-defined network, answering the names of the
//! containers it shares a network with (and its links), relaying the rest to
//! its upstreams.

use crate::{Engine, EngineError, Result};
use std::path::Path;

impl Engine {
    /// Serves DNS at 127.0.0.11 inside a container on a user-defined network:
    /// the names of the containers on its networks, the rest from the host's
    /// resolvers.
    pub(crate) fn start_dns(self: &std::sync::Arc<Self>, id: &str, netns: &Path) -> Result<()> {
        let (udp, tcp) = berth_net::dns::bind_in_netns(netns)?;
        let internal = |e: std::io::Error| EngineError::Internal(e.to_string());
        let udp = tokio::net::UdpSocket::from_std(udp).map_err(internal)?;
        let tcp = tokio::net::TcpListener::from_std(tcp).map_err(internal)?;
        // The container's `--dns` servers, else the host's.
        let upstream: Vec<String> = self
            .find(id)
            .ok()
            .and_then(|c| c.rec.read().expect("rec").host_config.dns.clone())
            .filter(|d| !d.is_empty())
            .unwrap_or_else(berth_net::dns::upstream_servers);
        let names = Box::new(ContainerNames {
            engine: std::sync::Arc::downgrade(self),
            cid: id.to_string(),
        });
        let task = tokio::spawn(berth_net::dns::serve(udp, tcp, names, upstream));
        if let Some(old) = self
            .dns
            .lock()
            .expect("dns")
            .insert(id.to_string(), task.abort_handle())
        {
            old.abort();
        }
        Ok(())
    }

    pub(crate) fn stop_dns(&self, id: &str) {
        if let Some(h) = self.dns.lock().expect("dns").remove(id) {
            h.abort();
        }
    }

    /// The addresses `name` has for container `asker`: running containers
    /// sharing one of its user-defined networks, by name, hostname, alias or
    /// short id. None: not a container's name.
    pub(crate) fn resolve_name(&self, asker: &str, name: &str) -> Option<Vec<std::net::IpAddr>> {
        let cs = self.containers.read().expect("containers");
        let me = cs.get(asker)?;
        let mine: Vec<String> = me
            .state()
            .endpoints
            .values()
            .map(|e| e.network_id.clone())
            .collect();
        // On user-defined networks a link is a name only its container
        // resolves: `--link db:data` makes `data` answer as `db`.
        let linked = {
            let r = me.rec.read().expect("rec");
            let given = r.host_config.links.iter().flatten().cloned();
            let per_net = r
                .endpoint_settings
                .values()
                .flat_map(|s| s.links.clone().unwrap_or_default());
            given
                .chain(per_net)
                .filter_map(|l| crate::links::parse_link(&l).ok())
                .find(|(_, alias)| alias.eq_ignore_ascii_case(name))
                .map(|(target, _)| target)
        };
        let name = linked.as_deref().unwrap_or(name);
        let mut out = Vec::new();
        for c in cs.values() {
            let st = c.state();
            let rec = c.rec.read().expect("rec");
            let matches = rec.name.eq_ignore_ascii_case(name)
                || rec.config.hostname.eq_ignore_ascii_case(name)
                || rec.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
                || rec
                    .extra_networks
                    .iter()
                    .flat_map(|x| x.aliases.iter())
                    .any(|a| a.eq_ignore_ascii_case(name))
                || (name.len() == 12 && rec.id.starts_with(name));
            if !matches {
                continue;
            }
            for e in st
                .endpoints
                .values()
                .filter(|e| mine.contains(&e.network_id))
            {
                for a in [&e.ip, &e.ip6] {
                    if let Ok(ip) = a.parse() {
                        out.push(ip);
                    }
                }
            }
        }
        (!out.is_empty()).then_some(out)
    }
}

/// The names a container's DNS server answers: those `resolve_name` gives.
struct ContainerNames {
    engine: std::sync::Weak<Engine>,
    cid: String,
}

impl berth_net::dns::Names for ContainerNames {
    fn lookup(&self, name: &str) -> Option<Vec<std::net::IpAddr>> {
        self.engine.upgrade()?.resolve_name(&self.cid, name)
    }
}
