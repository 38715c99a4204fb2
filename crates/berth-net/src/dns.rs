//! The embedded DNS server's wire format (queries in, A answers out) and its
//! socket at 127.0.0.11:53 inside a container's network namespace.

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
