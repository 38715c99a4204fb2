//! Published ports for the host's own connections, at the socket layer.
//!
//! A connection from the host to `127.0.0.1:8080` normally reaches a published
//! container port through nftables DNAT plus masquerade, and every packet of
//! it pays for the translation. Here a cgroup `connect4` BPF program, attached
//! to the root of the cgroup2 hierarchy, rewrites such a `connect()` to the
//! container's address before the first packet exists, so the connection runs
//! exactly as one made to the container's IP. The DNAT rules stay in place:
//! they serve other hosts, unconnected UDP, sockets bound to an address, and
//! the host itself while berthd is down (the program goes with berthd's link).
//!
//! The program is ~30 instructions, assembled here rather than compiled: a
//! BPF toolchain (clang, bpf-linker) in the build would cost far more than it
//! saves. A `getpeername4` program answers with the address the client
//! dialled, so the redirect is invisible to it.

use crate::host::Forward;
use crate::NetError;
use berth_util::bpf::asm;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Key of the forward map: destination address and port as dialled
/// (network byte order) and the IP protocol. Address 0: any loopback address.
type Key = [u8; 8];
/// Value: the container's address and port, laid out as `bpf_sock_addr`'s
/// `user_ip4` and `user_port` are.
type Value = [u8; 8];

fn key(proto: u8, ip: Ipv4Addr, port: u16) -> Key {
    let [a, b, c, d] = ip.octets();
    let [p, q] = port.to_be_bytes();
    [a, b, c, d, p, q, proto, 0]
}

fn value(ip: Ipv4Addr, port: u16) -> Value {
    let [a, b, c, d] = ip.octets();
    let [p, q] = port.to_be_bytes();
    [a, b, c, d, p, q, 0, 0]
}

fn proto_number(p: &str) -> Option<u8> {
    match p {
        "tcp" => Some(libc::IPPROTO_TCP as u8),
        "udp" => Some(libc::IPPROTO_UDP as u8),
        _ => None,
    }
}

/// The map entries for a set of forwards: only those the host can dial on
/// loopback (bound to 0.0.0.0 or to a 127/8 address).
fn entries(forwards: &[Forward]) -> HashMap<Key, Value> {
    let mut out = HashMap::new();
    for f in forwards {
        let (Some(proto), Ok(host), Ok(cip)) = (
            proto_number(&f.proto),
            f.host_ip.parse::<Ipv4Addr>(),
            f.container_ip.parse::<Ipv4Addr>(),
        ) else {
            continue;
        };
        if host.is_unspecified() || host.is_loopback() {
            out.insert(key(proto, host, f.host_port), value(cip, f.container_port));
        }
    }
    out
}

/// The attached programs and their map. Dropping it detaches them.
pub struct LocalRedirect {
    map: OwnedFd,
    _links: Vec<OwnedFd>,
    current: Mutex<HashMap<Key, Value>>,
}

impl LocalRedirect {
    /// Loads and attaches the programs to the cgroup2 root. Fails on kernels
    /// or hosts without cgroup2, BPF links or the helpers used (Linux ≥ 5.7).
    pub fn attach() -> Result<Self, NetError> {
        let cgroup = cgroup2_root()
            .ok_or_else(|| NetError::Host("no cgroup2 hierarchy is mounted".into()))?;
        let cg = std::fs::File::open(&cgroup)
            .map_err(|e| NetError::Host(format!("{}: {e}", cgroup.display())))?;
        let map = sys::map_create(MAP_TYPE_HASH, 8, 8, 65536, MAP_F_NO_PREALLOC)?;
        // Sockets the connect program redirected, by cookie, with what they dialled.
        let dialled = sys::map_create(MAP_TYPE_LRU_HASH, 8, 8, 65536, 0)?;
        let netns = host_netns_cookie()?;
        let connect = sys::prog_load(
            &connect_program(map.as_raw_fd(), dialled.as_raw_fd(), netns),
            ATTACH_INET4_CONNECT,
        )?;
        let getpeername = sys::prog_load(
            &getpeername_program(dialled.as_raw_fd()),
            ATTACH_INET4_GETPEERNAME,
        )?;
        let links = vec![
            sys::link_create(connect.as_raw_fd(), cg.as_raw_fd(), ATTACH_INET4_CONNECT)?,
            sys::link_create(
                getpeername.as_raw_fd(),
                cg.as_raw_fd(),
                ATTACH_INET4_GETPEERNAME,
            )?,
        ];
        Ok(LocalRedirect {
            map,
            _links: links,
            current: Mutex::new(HashMap::new()),
        })
    }

    /// Makes the map hold exactly these forwards.
    pub fn sync(&self, forwards: &[Forward]) -> Result<(), NetError> {
        let want = entries(forwards);
        let mut cur = self.current.lock().expect("redirect map");
        let stale: Vec<Key> = cur
            .iter()
            .filter(|(k, v)| want.get(*k) != Some(*v))
            .map(|(k, _)| *k)
            .collect();
        for k in stale {
            sys::map_delete(self.map.as_raw_fd(), &k)?;
            cur.remove(&k);
        }
        for (k, v) in want {
            if cur.get(&k) != Some(&v) {
                sys::map_update(self.map.as_raw_fd(), &k, &v)?;
                cur.insert(k, v);
            }
        }
        Ok(())
    }
}

/// Where the cgroup2 hierarchy's root is mounted (`/sys/fs/cgroup` on a
/// unified host, `/sys/fs/cgroup/unified` on a hybrid one).
fn cgroup2_root() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        let f: Vec<&str> = pre.split(' ').collect();
        if post.split(' ').next() != Some("cgroup2") || f.get(3) != Some(&"/") {
            return None;
        }
        Some(Path::new(f.get(4)?).to_path_buf())
    })
}

/// The cookie of the network namespace berthd runs in: only sockets made
/// there are redirected (a container's 127.0.0.1 is its own).
fn host_netns_cookie() -> Result<u64, NetError> {
    let s = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let mut cookie = 0u64;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cookie`.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(NetError::Host(format!(
            "SO_NETNS_COOKIE: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(cookie)
}

const SO_NETNS_COOKIE: libc::c_int = 71;
const MAP_TYPE_HASH: u32 = 1;
const MAP_TYPE_LRU_HASH: u32 = 9;
const MAP_F_NO_PREALLOC: u32 = 1;
const ATTACH_INET4_CONNECT: u32 = 10;
const ATTACH_INET4_GETPEERNAME: u32 = 29;

// bpf_sock_addr and bpf_sock field offsets (uapi/linux/bpf.h).
const CTX_USER_IP4: i16 = 4;
const CTX_USER_PORT: i16 = 24;
const CTX_PROTOCOL: i16 = 36;
const CTX_SK: i16 = 64;
const SK_SRC_IP4: i16 = 24;

const FN_GET_SOCKET_COOKIE: i32 = 46;
const FN_GET_NETNS_COOKIE: i32 = 122;

/// `connect4`: for an unbound socket in the host's namespace dialling a
/// published (address, port, protocol) — or any loopback address for ports
/// published on 0.0.0.0 — rewrite the destination to the container's, and
/// remember what was dialled for `getpeername`. Always allows the connect.
fn connect_program(map: i32, dialled: i32, netns: u64) -> Vec<u64> {
    use asm::*;
    let mut a = Asm::default();
    a.mov_reg(R6, R1);
    // Sockets bound to an address keep the DNAT path (their source would not
    // fit the bridge).
    a.ldx(DW, R2, R6, CTX_SK);
    a.ldx(W, R2, R2, SK_SRC_IP4);
    a.jne_imm(R2, 0, "out");
    a.mov_reg(R1, R6);
    a.call(FN_GET_NETNS_COOKIE);
    a.ld_imm64(R1, 0, netns as i64);
    a.jne_reg(R0, R1, "out");
    // The key at fp-8: address, port, protocol, 0.
    a.ldx(W, R2, R6, CTX_USER_IP4);
    a.stx(W, R10, R2, -8);
    a.ldx(W, R2, R6, CTX_USER_PORT);
    a.stx(H, R10, R2, -4);
    a.ldx(W, R2, R6, CTX_PROTOCOL);
    a.stx(B, R10, R2, -2);
    a.st(B, R10, -1, 0);
    // The dialled address and port, kept at fp-16 for `getpeername`.
    a.ldx(W, R2, R6, CTX_USER_IP4);
    a.stx(W, R10, R2, -16);
    a.ldx(W, R2, R6, CTX_USER_PORT);
    a.stx(W, R10, R2, -12);
    a.lookup(map, -8);
    a.jne_imm(R0, 0, "found");
    // Not published on that address: on loopback, try the 0.0.0.0 entry.
    a.ldx(W, R2, R10, -8);
    a.and_imm(R2, u32::from_ne_bytes([0xff, 0, 0, 0]) as i32);
    a.jne_imm(R2, u32::from_ne_bytes([127, 0, 0, 0]) as i32, "out");
    a.st(W, R10, -8, 0);
    a.lookup(map, -8);
    a.jeq_imm(R0, 0, "out");
    a.label("found");
    a.ldx(W, R2, R0, 0);
    a.stx(W, R6, R2, CTX_USER_IP4);
    a.ldx(W, R2, R0, 4);
    a.stx(W, R6, R2, CTX_USER_PORT);
    // dialled[cookie] = what the client asked for.
    a.mov_reg(R1, R6);
    a.call(FN_GET_SOCKET_COOKIE);
    a.stx(DW, R10, R0, -24);
    a.ld_map(R1, dialled);
    a.mov_reg(R2, R10);
    a.add_imm(R2, -24);
    a.mov_reg(R3, R10);
    a.add_imm(R3, -16);
    a.mov_imm(R4, 0);
    a.call(FN_MAP_UPDATE_ELEM);
    a.label("out");
    a.mov_imm(R0, 1);
    a.exit();
    a.finish()
}

/// `getpeername4`: a redirected socket's peer is what it dialled.
fn getpeername_program(dialled: i32) -> Vec<u64> {
    use asm::*;
    let mut a = Asm::default();
    a.mov_reg(R6, R1);
    a.call(FN_GET_SOCKET_COOKIE);
    a.stx(DW, R10, R0, -8);
    a.lookup(dialled, -8);
    a.jeq_imm(R0, 0, "out");
    a.ldx(W, R2, R0, 0);
    a.stx(W, R6, R2, CTX_USER_IP4);
    a.ldx(W, R2, R0, 4);
    a.stx(W, R6, R2, CTX_USER_PORT);
    a.label("out");
    a.mov_imm(R0, 1);
    a.exit();
    a.finish()
}

/// bpf(2), with this crate's error.
mod sys {
    use super::NetError;
    use berth_util::bpf;
    use std::os::fd::OwnedFd;

    fn host(what: &str) -> impl FnOnce(std::io::Error) -> NetError + '_ {
        move |e| NetError::Host(format!("bpf {what}: {e}"))
    }

    pub fn map_create(
        kind: u32,
        key: u32,
        value: u32,
        max: u32,
        flags: u32,
    ) -> Result<OwnedFd, NetError> {
        bpf::map_create(kind, key, value, max, flags).map_err(host("map create"))
    }

    pub fn map_update(map: i32, key: &[u8; 8], value: &[u8; 8]) -> Result<(), NetError> {
        bpf::map_update(map, key, value).map_err(host("map update"))
    }

    pub fn map_delete(map: i32, key: &[u8; 8]) -> Result<(), NetError> {
        bpf::map_delete(map, key).map_err(host("map delete"))
    }

    pub fn prog_load(insns: &[u64], attach: u32) -> Result<OwnedFd, NetError> {
        bpf::prog_load(bpf::PROG_TYPE_CGROUP_SOCK_ADDR, insns, attach).map_err(host("prog load"))
    }

    pub fn link_create(prog: i32, target: i32, attach: u32) -> Result<OwnedFd, NetError> {
        bpf::link_create(prog, target, attach).map_err(host("link create"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fwd(proto: &str, host_ip: &str, host_port: u16, cip: &str, cport: u16) -> Forward {
        Forward {
            proto: proto.into(),
            host_ip: host_ip.into(),
            host_port,
            container_ip: cip.into(),
            container_port: cport,
        }
    }

    #[test]
    fn entries_cover_loopback_and_wildcard_bindings_only() {
        let e = entries(&[
            fwd("tcp", "127.0.0.1", 8080, "10.88.0.2", 80),
            fwd("udp", "0.0.0.0", 5353, "10.88.0.3", 53),
            fwd("tcp", "192.0.2.7", 9090, "10.88.0.4", 90),
            fwd("sctp", "0.0.0.0", 1, "10.88.0.5", 1),
        ]);
        assert_eq!(e.len(), 2);
        assert_eq!(
            e[&[127, 0, 0, 1, 0x1f, 0x90, 6, 0]],
            [10, 88, 0, 2, 0, 80, 0, 0]
        );
        assert_eq!(
            e[&[0, 0, 0, 0, 0x14, 0xe9, 17, 0]],
            [10, 88, 0, 3, 0, 53, 0, 0]
        );
    }

    #[test]
    fn jumps_land_on_their_labels() {
        let p = connect_program(3, 4, 0x1122_3344_5566_7788);
        // Ends in `r0 = 1; exit`, and every jump lands inside the program.
        assert_eq!(p[p.len() - 1] & 0xff, 0x95);
        assert_eq!(p[p.len() - 2] & 0xff, 0xb7);
        for (i, insn) in p.iter().enumerate() {
            let b = insn.to_le_bytes();
            if b[0] & 0x07 == 0x05 && b[0] != 0x85 && b[0] != 0x95 {
                let off = i16::from_le_bytes([b[2], b[3]]) as i64;
                let to = i as i64 + 1 + off;
                assert!(off > 0 && (to as usize) < p.len(), "insn {i} jumps to {to}");
            }
        }
        // The netns cookie is split over the two halves of ld_imm64.
        let at = p
            .iter()
            .position(|i| i & 0xff == 0x18 && (i >> 8) & 0xf == 1 && (i >> 12) & 0xf == 0)
            .unwrap();
        assert_eq!((p[at] >> 32) as u32, 0x5566_7788);
        assert_eq!((p[at + 1] >> 32) as u32, 0x1122_3344);
    }

    /// Against the kernel (root with cgroup2, else skipped): a connect to an
    /// unused loopback port lands on a listener elsewhere, and the client
    /// still sees the address it dialled.
    #[test]
    fn redirects_a_loopback_connect() {
        let r = match LocalRedirect::attach() {
            Ok(r) => r,
            Err(e) => {
                eprintln!("skipped: {e}");
                return;
            }
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = listener.local_addr().unwrap();
        let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dialled = unused.local_addr().unwrap();
        drop(unused);
        let f = fwd("tcp", "0.0.0.0", dialled.port(), "127.0.0.1", target.port());
        r.sync(&[f]).unwrap();
        let c = std::net::TcpStream::connect(dialled).unwrap();
        let (_s, from) = listener.accept().unwrap();
        assert_eq!(from, c.local_addr().unwrap());
        assert_eq!(
            c.peer_addr().unwrap(),
            dialled,
            "getpeername shows what was dialled"
        );
        // Gone from the map: the connect is no longer redirected.
        r.sync(&[]).unwrap();
        assert!(std::net::TcpStream::connect(dialled).is_err());
    }
}
