//! The embedded DNS server at 127.0.0.11: one per container on a
//! user-defined network, answering the names of the containers it shares a
//! network with (and its links), relaying the rest to its upstreams.

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
        let resolver = std::sync::Arc::new(Resolver {
            engine: std::sync::Arc::downgrade(self),
            cid: id.to_string(),
            upstream,
        });
        let task = tokio::spawn(async move {
            tokio::join!(serve_udp(udp, resolver.clone()), serve_tcp(tcp, resolver));
        });
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
                .flat_map(|s| s["Links"].as_array().cloned().unwrap_or_default())
                .filter_map(|l| l.as_str().map(str::to_string));
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

/// One container's view of the embedded DNS: its networks' names, then its
/// upstream resolvers.
struct Resolver {
    engine: std::sync::Weak<Engine>,
    cid: String,
    upstream: Vec<String>,
}

impl Resolver {
    /// The answer when `pkt` asks for a container's name; None: relay it.
    fn local_answer(&self, pkt: &[u8]) -> Option<Vec<u8>> {
        let q = berth_net::dns::parse_query(pkt)?;
        let ips = self.engine.upgrade()?.resolve_name(&self.cid, &q.name)?;
        // A for IPv4, AAAA for IPv6; a known name without that record
        // type answers NOERROR with nothing.
        let ips: Vec<std::net::IpAddr> = ips
            .into_iter()
            .filter(|ip| match q.qtype {
                berth_net::dns::TYPE_A => ip.is_ipv4(),
                berth_net::dns::TYPE_AAAA => ip.is_ipv6(),
                _ => false,
            })
            .collect();
        Some(berth_net::dns::answer(pkt, &q, &ips, false))
    }
}

const UPSTREAM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

async fn serve_udp(sock: tokio::net::UdpSocket, r: std::sync::Arc<Resolver>) {
    let sock = std::sync::Arc::new(sock);
    let mut buf = vec![0u8; 1500];
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf).await else {
            return;
        };
        let pkt = buf[..n].to_vec();
        if let Some(reply) = r.local_answer(&pkt) {
            let _ = sock.send_to(&reply, from).await;
            continue;
        }
        let (sock, r) = (sock.clone(), r.clone());
        tokio::spawn(async move {
            if let Some(reply) = forward_udp(&pkt, &r.upstream).await {
                let _ = sock.send_to(&reply, from).await;
            }
        });
    }
}

/// DNS over TCP (RFC 7766): length-prefixed messages, several per connection;
/// clients fall back to it when a UDP answer comes back truncated.
async fn serve_tcp(listener: tokio::net::TcpListener, r: std::sync::Arc<Resolver>) {
    use tokio::io::AsyncWriteExt;
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            return;
        };
        let r = r.clone();
        tokio::spawn(async move {
            let idle = std::time::Duration::from_secs(10);
            while let Ok(Ok(pkt)) = tokio::time::timeout(idle, read_framed(&mut conn)).await {
                let reply = match r.local_answer(&pkt) {
                    Some(a) => a,
                    None => match forward_tcp(&pkt, &r.upstream).await {
                        Some(a) => a,
                        None => return,
                    },
                };
                let mut out = (reply.len() as u16).to_be_bytes().to_vec();
                out.extend_from_slice(&reply);
                if conn.write_all(&out).await.is_err() {
                    return;
                }
            }
            let _ = conn.shutdown().await;
        });
    }
}

async fn read_framed<R: tokio::io::AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut len = [0u8; 2];
    r.read_exact(&mut len).await?;
    let mut pkt = vec![0u8; u16::from_be_bytes(len) as usize];
    r.read_exact(&mut pkt).await?;
    Ok(pkt)
}

/// Relays a query to the first upstream resolver that answers (3 s each).
async fn forward_udp(pkt: &[u8], upstream: &[String]) -> Option<Vec<u8>> {
    for server in upstream {
        let Ok(sock) = tokio::net::UdpSocket::bind("0.0.0.0:0").await else {
            continue;
        };
        if sock.send_to(pkt, format!("{server}:53")).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; 4096];
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(UPSTREAM_TIMEOUT, sock.recv_from(&mut buf)).await
        {
            buf.truncate(n);
            return Some(buf);
        }
    }
    None
}

/// The same over TCP, for queries that came over TCP.
async fn forward_tcp(pkt: &[u8], upstream: &[String]) -> Option<Vec<u8>> {
    use tokio::io::AsyncWriteExt;
    for server in upstream {
        let exchange = async {
            let mut s = tokio::net::TcpStream::connect(format!("{server}:53")).await?;
            let mut out = (pkt.len() as u16).to_be_bytes().to_vec();
            out.extend_from_slice(pkt);
            s.write_all(&out).await?;
            read_framed(&mut s).await
        };
        if let Ok(Ok(reply)) = tokio::time::timeout(UPSTREAM_TIMEOUT, exchange).await {
            return Some(reply);
        }
    }
    None
}
