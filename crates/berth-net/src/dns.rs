//! The embedded DNS server: its wire format (queries in, A/AAAA answers
//! out), its sockets at 127.0.0.11:53 inside a container's network
//! namespace, and the server itself — names it knows from a `Names` source,
//! the rest relayed to upstream resolvers over UDP or TCP.

use crate::NetError;
use std::net::{IpAddr, Ipv4Addr, TcpListener, UdpSocket};
use std::path::Path;

pub const TYPE_A: u16 = 1;
pub const TYPE_AAAA: u16 = 28;

#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub id: u16,
    /// Lower case, without the trailing dot.
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
    /// Where the question section ends in the packet.
    pub question_end: usize,
}

/// Parses a standard query with one question; None for anything else.
pub fn parse_query(b: &[u8]) -> Option<Query> {
    if b.len() < 12 {
        return None;
    }
    let id = u16::from_be_bytes([b[0], b[1]]);
    let qr_opcode = b[2] & 0xf8;
    let qdcount = u16::from_be_bytes([b[4], b[5]]);
    if qr_opcode != 0 || qdcount != 1 {
        return None;
    }
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = *b.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None; // compression is not used in questions
        }
        labels.push(String::from_utf8_lossy(b.get(i..i + len)?).to_ascii_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]);
    let qclass = u16::from_be_bytes([*b.get(i + 2)?, *b.get(i + 3)?]);
    Some(Query {
        id,
        name: labels.join("."),
        qtype,
        qclass,
        question_end: i + 4,
    })
}

/// An answer to `q` (whose packet is `packet`): the addresses as A and AAAA
/// records, NOERROR with none (a name we know without that record type), or
/// NXDOMAIN.
pub fn answer(packet: &[u8], q: &Query, ips: &[IpAddr], nxdomain: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(q.question_end + ips.len() * 16);
    out.extend_from_slice(&packet[..2]);
    let rd = packet[2] & 0x01;
    out.push(0x84 | rd); // QR, AA, RD as asked
    out.push(0x80 | if nxdomain { 3 } else { 0 }); // RA, RCODE
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(ips.len() as u16).to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&packet[12..q.question_end]);
    for ip in ips {
        let (kind, data) = match ip {
            IpAddr::V4(a) => (TYPE_A, a.octets().to_vec()),
            IpAddr::V6(a) => (TYPE_AAAA, a.octets().to_vec()),
        };
        out.extend_from_slice(&[0xc0, 0x0c]); // the name in the question
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&600u32.to_be_bytes());
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(&data);
    }
    out
}

/// UDP and TCP sockets on 127.0.0.11:53 inside the namespace at `netns`;
/// they keep that namespace (sockets stay where they were made) and serve
/// from ours.
pub fn bind_in_netns(netns: &Path) -> Result<(UdpSocket, TcpListener), NetError> {
    let p = netns.to_path_buf();
    std::thread::spawn(move || -> Result<(UdpSocket, TcpListener), NetError> {
        let f = std::fs::File::open(&p)?;
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| NetError::Host(format!("setns: {e}")))?;
        let bind_err = |e: std::io::Error| NetError::Host(format!("binding 127.0.0.11:53: {e}"));
        let u = UdpSocket::bind("127.0.0.11:53").map_err(bind_err)?;
        u.set_nonblocking(true)?;
        let t = TcpListener::bind("127.0.0.11:53").map_err(bind_err)?;
        t.set_nonblocking(true)?;
        Ok((u, t))
    })
    .join()
    .map_err(|_| NetError::Host("dns thread panicked".into()))?
}

/// The host's resolvers, for names that are not containers'.
pub fn upstream_servers() -> Vec<String> {
    std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("nameserver"))
        .map(|s| s.trim().to_string())
        .filter(|s| s.parse::<Ipv4Addr>().is_ok())
        .collect()
}

/// Where the server learns the names it answers itself.
pub trait Names: Send + Sync {
    /// The addresses of `name` as the asking container sees them; None when
    /// the name is not one of ours (the query is relayed).
    fn lookup(&self, name: &str) -> Option<Vec<IpAddr>>;
}

/// Serves DNS on the sockets `bind_in_netns` made until the task is aborted.
pub async fn serve(
    udp: tokio::net::UdpSocket,
    tcp: tokio::net::TcpListener,
    names: Box<dyn Names>,
    upstream: Vec<String>,
) {
    let r = std::sync::Arc::new(Resolver { names, upstream });
    tokio::join!(serve_udp(udp, r.clone()), serve_tcp(tcp, r));
}

/// One container's view: its names, then its upstream resolvers.
struct Resolver {
    names: Box<dyn Names>,
    upstream: Vec<String>,
}

impl Resolver {
    /// The answer when `pkt` asks for one of our names; None: relay it.
    fn local_answer(&self, pkt: &[u8]) -> Option<Vec<u8>> {
        let q = parse_query(pkt)?;
        let ips = self.names.lookup(&q.name)?;
        // A for IPv4, AAAA for IPv6; a known name without that record
        // type answers NOERROR with nothing.
        let ips: Vec<IpAddr> = ips
            .into_iter()
            .filter(|ip| match q.qtype {
                TYPE_A => ip.is_ipv4(),
                TYPE_AAAA => ip.is_ipv6(),
                _ => false,
            })
            .collect();
        Some(answer(pkt, &q, &ips, false))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut b = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            b.push(l.len() as u8);
            b.extend_from_slice(l.as_bytes());
        }
        b.push(0);
        b.extend_from_slice(&qtype.to_be_bytes());
        b.extend_from_slice(&1u16.to_be_bytes());
        b
    }

    #[test]
    fn round_trip() {
        let pkt = query("Web.Example", TYPE_A);
        let q = parse_query(&pkt).unwrap();
        assert_eq!(
            (q.id, q.name.as_str(), q.qtype),
            (0x1234, "web.example", TYPE_A)
        );
        let ip: Ipv4Addr = "10.89.0.2".parse().unwrap();
        let a = answer(&pkt, &q, &[IpAddr::V4(ip)], false);
        assert_eq!(&a[..2], &[0x12, 0x34]);
        assert_eq!(a[2] & 0x80, 0x80, "a response");
        assert_eq!(a[3] & 0x0f, 0, "NOERROR");
        assert_eq!(u16::from_be_bytes([a[6], a[7]]), 1, "one answer");
        assert_eq!(&a[a.len() - 4..], &ip.octets());
        let nx = answer(&pkt, &q, &[], true);
        let q6 = parse_query(&query("web", TYPE_AAAA)).unwrap();
        let v6: IpAddr = "fd00::2".parse().unwrap();
        let a6 = answer(&query("web", TYPE_AAAA), &q6, &[v6], false);
        assert_eq!(&a6[a6.len() - 18..a6.len() - 16], &16u16.to_be_bytes());
        let IpAddr::V6(v6) = v6 else { unreachable!() };
        assert_eq!(&a6[a6.len() - 16..], &v6.octets());
        assert_eq!(nx[3] & 0x0f, 3);
        assert!(parse_query(&pkt[..8]).is_none());
        let mut resp = pkt.clone();
        resp[2] |= 0x80;
        assert!(parse_query(&resp).is_none(), "responses are not queries");
    }
}
