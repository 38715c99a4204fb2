//! Host effects of networking: network namespaces (bind-mounted files),
//! bridges, veth pairs, addresses and routes over netlink (rtnetlink), and
//! one nftables table of Berth's own, replaced in a single transaction.

use crate::{NetError, Network};
use futures_util::TryStreamExt;
use rtnetlink::packet_route::link::{InfoData, InfoVeth};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

fn host_err(what: &str, e: impl std::fmt::Display) -> NetError {
    NetError::Host(format!("{what}: {e}"))
}

/// Runs `body` on a thread of its own with a current-thread runtime: `setns`
/// changes only the calling thread, and a netlink socket keeps the
/// namespace it was made in.
fn on_netlink_thread<T, B, Fut>(body: B) -> Result<T, NetError>
where
    T: Send + 'static,
    B: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, NetError>>,
{
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| host_err("runtime", e))?;
        rt.block_on(body())
    })
    .join()
    .map_err(|_| NetError::Host("netlink thread panicked".into()))?
}

/// A netlink handle in the calling thread's network namespace (inside a runtime).
fn connect() -> Result<Handle, NetError> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| host_err("netlink", e))?;
    tokio::spawn(conn);
    Ok(handle)
}

/// Runs `f` with a netlink handle in the host's network namespace.
pub fn with_netlink<T, F, Fut>(f: F) -> Result<T, NetError>
where
    T: Send + 'static,
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, NetError>>,
{
    on_netlink_thread(move || async move { f(connect()?).await })
}

/// Runs `f` with two netlink handles on one thread: one in the host's
/// network namespace and one in the namespace at `netns` (the second is made
/// after a setns).
fn with_netlink_pair<T, F, Fut>(netns: &Path, f: F) -> Result<T, NetError>
where
    T: Send + 'static,
    F: FnOnce(Handle, Handle) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, NetError>>,
{
    let netns = netns.to_path_buf();
    on_netlink_thread(move || async move {
        let host = connect()?;
        let ns = std::fs::File::open(&netns)
            .map_err(|e| host_err(&format!("opening {}", netns.display()), e))?;
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| host_err("setns", e))?;
        let inside = connect()?;
        f(host, inside).await
    })
}

async fn link_index(h: &Handle, name: &str) -> Result<Option<u32>, NetError> {
    let mut links = h.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(l)) => Ok(Some(l.header.index)),
        Ok(None) => Ok(None),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
        Err(e) => Err(host_err(&format!("looking up {name}"), e)),
    }
}

/// A new network namespace, kept alive by a bind mount at `path`.
pub fn create_netns(path: &Path) -> Result<(), NetError> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::File::create(path)?;
    let target = path.to_path_buf();
    std::thread::spawn(move || -> Result<(), NetError> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| host_err("unshare", e))?;
        let tid = nix::unistd::gettid();
        nix::mount::mount(
            Some(format!("/proc/self/task/{tid}/ns/net").as_str()),
            &target,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| host_err("binding the netns", e))
    })
    .join()
    .map_err(|_| NetError::Host("netns thread panicked".into()))?
    .inspect_err(|_| {
        let _ = std::fs::remove_file(path);
    })
}

pub fn remove_netns(path: &Path) {
    let _ = nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH);
    let _ = std::fs::remove_file(path);
}

/// Makes sure `n`'s bridge exists, has its gateway address, and is up.
pub fn ensure_bridge(n: &Network) -> Result<(), NetError> {
    let sub = n
        .subnet()
        .ok_or_else(|| NetError::Invalid("no subnet".into()))?;
    let gw = n
        .gateway_ip()
        .ok_or_else(|| NetError::Invalid("no gateway".into()))?;
    let name = n.bridge.clone();
    let (gw6, sub6) = (n.gateway6_ip(), n.subnet6());
    with_netlink(move |h| async move {
        let idx = match link_index(&h, &name).await? {
            Some(i) => i,
            None => {
                h.link()
                    .add(LinkBridge::new(&name).build())
                    .execute()
                    .await
                    .map_err(|e| host_err(&format!("creating bridge {name}"), e))?;
                link_index(&h, &name)
                    .await?
                    .ok_or_else(|| NetError::Host(format!("bridge {name} vanished")))?
            }
        };
        let mut addrs = vec![(IpAddr::V4(gw), sub.prefix)];
        if let (Some(g6), Some(s6)) = (gw6, sub6) {
            addrs.push((IpAddr::V6(g6), s6.prefix));
        }
        for (ip, prefix) in addrs {
            match add_address(&h, idx, ip, prefix).await {
                Ok(()) => {}
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => {}
                Err(e) => return Err(host_err(&format!("addressing {name}"), e)),
            }
        }
        h.link()
            .set(LinkUnspec::new_with_index(idx).up().build())
            .execute()
            .await
            .map_err(|e| host_err(&format!("raising {name}"), e))?;
        Ok(())
    })?;
    // Containers on a bridge reach the world through the host, as with dockerd.
    let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", "1");
    Ok(())
}

pub fn delete_link(name: &str) -> Result<(), NetError> {
    let name = name.to_string();
    with_netlink(move |h| async move {
        if let Some(idx) = link_index(&h, &name).await? {
            h.link()
                .del(idx)
                .execute()
                .await
                .map_err(|e| host_err(&format!("deleting {name}"), e))?;
        }
        Ok(())
    })
}

/// The interfaces enslaved to `bridge` (from sysfs).
pub fn bridge_ports(bridge: &str) -> Vec<String> {
    std::fs::read_dir(format!("/sys/class/net/{bridge}/brif"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// What a container's end of a veth pair gets.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host_if: String,
    pub container_if: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    /// None on an internal network: no default route.
    pub gateway: Option<Ipv4Addr>,
    pub mac: [u8; 6],
    /// Dual stack: the IPv6 address with its prefix, and the gateway the
    /// default IPv6 route goes through.
    pub ip6: Option<(Ipv6Addr, u8)>,
    pub gateway6: Option<Ipv6Addr>,
}

/// Adds an address without duplicate address detection: a new veth's
/// IPv6 address would otherwise be unusable ("tentative") for a second or
/// two, and the subnet's addresses are ours to hand out.
async fn add_address(h: &Handle, idx: u32, ip: IpAddr, prefix: u8) -> Result<(), rtnetlink::Error> {
    let mut req = h.address().add(idx, ip, prefix);
    if ip.is_ipv6() {
        req.message_mut().header.flags =
            rtnetlink::packet_route::address::AddressHeaderFlags::Nodad;
    }
    req.execute().await
}

/// Connects the namespace at `netns` to `bridge` with a veth pair. The
/// container's end is created inside the namespace under its final name, and
/// the host's end on the bridge and up, in one request: moving or renaming
/// an interface afterwards costs an RCU grace period each.
pub fn attach(netns: &Path, bridge: &str, ep: &Endpoint) -> Result<(), NetError> {
    let ns_file = std::fs::File::open(netns)?;
    let bridge_name = bridge.to_string();
    let ep2 = ep.clone();
    with_netlink_pair(netns, move |h, inside| async move {
        let br = link_index(&h, &bridge_name)
            .await?
            .ok_or_else(|| NetError::Host(format!("no bridge {bridge_name}")))?;
        let peer = LinkUnspec::new_with_name(&ep2.container_if)
            .setns_by_fd(ns_file.as_raw_fd())
            .address(ep2.mac.to_vec())
            .build();
        let msg = LinkVeth::new(&ep2.host_if, &ep2.container_if)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .controller(br)
            .up()
            .build();
        h.link()
            .add(msg)
            .execute()
            .await
            .map_err(|e| host_err(&format!("creating veth {}", ep2.host_if), e))?;
        drop(ns_file);
        let h = inside;
        if let Some(lo) = link_index(&h, "lo").await? {
            h.link()
                .set(LinkUnspec::new_with_index(lo).up().build())
                .execute()
                .await
                .map_err(|e| host_err("raising lo", e))?;
        }
        let pi = link_index(&h, &ep2.container_if)
            .await?
            .ok_or_else(|| NetError::Host("the veth did not arrive".into()))?;
        add_address(&h, pi, IpAddr::V4(ep2.ip), ep2.prefix)
            .await
            .map_err(|e| host_err("addressing the interface", e))?;
        if let Some((ip6, prefix6)) = ep2.ip6 {
            add_address(&h, pi, IpAddr::V6(ip6), prefix6)
                .await
                .map_err(|e| host_err("addressing the interface (IPv6)", e))?;
        }
        h.link()
            .set(LinkUnspec::new_with_index(pi).up().build())
            .execute()
            .await
            .map_err(|e| host_err("raising the interface", e))?;
        let mut routes = Vec::new();
        if let Some(gw) = ep2.gateway {
            routes.push(RouteMessageBuilder::<Ipv4Addr>::new().gateway(gw).build());
        }
        if let Some(gw6) = ep2.gateway6 {
            routes.push(RouteMessageBuilder::<Ipv6Addr>::new().gateway(gw6).build());
        }
        for route in routes {
            match h.route().add(route).execute().await {
                Ok(()) => {}
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => {}
                Err(e) => return Err(host_err("adding the default route", e)),
            }
        }
        Ok(())
    })
    .inspect_err(|_| {
        let _ = delete_link(&ep.host_if);
    })
}

/// A published port as the kernel forwards it.
#[derive(Debug, Clone, PartialEq)]
pub struct Forward {
    pub proto: String,
    /// `0.0.0.0` for every local address.
    pub host_ip: String,
    pub host_port: u16,
    pub container_ip: String,
    pub container_port: u16,
}

/// Berth's nftables table: masquerade for each non-internal bridge network,
/// isolation between networks, no forwarding out of internal ones, and DNAT
/// for published ports (from outside, and from the host itself, including
/// 127.0.0.1). Replaced whole, atomically.
pub fn apply_nft(table: &str, nets: &[Network], forwards: &[Forward]) -> Result<(), NetError> {
    let mut rules = String::new();
    let mut fwd = String::new();
    let bridges: Vec<String> = nets
        .iter()
        .filter(|n| n.is_bridge())
        .map(|n| format!("\"{}\"", n.bridge))
        .collect();
    for n in nets.iter().filter(|n| n.is_bridge()) {
        fwd.push_str(&isolation(n, &bridges));
        if !n.internal {
            rules.push_str(&format!(
                "    ip saddr {} oifname != \"{}\" masquerade\n",
                n.subnet, n.bridge
            ));
        }
        // Connections the host makes to 127.0.0.1:PORT leave with a loopback
        // source; the container must see (and answer) a routable one.
        rules.push_str(&format!(
            "    ip saddr 127.0.0.0/8 oifname \"{}\" masquerade\n",
            n.bridge
        ));
        let _ = std::fs::write(
            format!("/proc/sys/net/ipv4/conf/{}/route_localnet", n.bridge),
            "1",
        );
    }
    let mut pre = String::new();
    let mut out = String::new();
    for f in forwards {
        let target = format!(
            "{} dport {} dnat to {}:{}",
            f.proto, f.host_port, f.container_ip, f.container_port
        );
        if f.host_ip == "0.0.0.0" || f.host_ip.is_empty() {
            pre.push_str(&format!("    fib daddr type local {target}\n"));
            out.push_str(&format!("    fib daddr type local {target}\n"));
        } else {
            pre.push_str(&format!("    ip daddr {} {target}\n", f.host_ip));
            out.push_str(&format!("    ip daddr {} {target}\n", f.host_ip));
        }
    }
    // route_localnet lets 127/8 be routed via the bridges; a container must
    // not use that to reach the host's loopback-only services.
    let guard = if bridges.is_empty() {
        String::new()
    } else {
        format!("  chain guard {{\n    type filter hook prerouting priority raw; policy accept;\n    iifname {{ {} }} ip daddr 127.0.0.0/8 drop\n  }}\n", bridges.join(", "))
    };
    // IPv6 of dual-stack networks: the same isolation, and masquerade.
    // (Forwarding IPv6 off the host is the host's to enable, as it changes
    // how the host itself takes router advertisements.)
    let mut fwd6 = String::new();
    let mut post6 = String::new();
    for n in nets.iter().filter(|n| n.is_bridge() && n.enable_ipv6) {
        fwd6.push_str(&isolation(n, &bridges));
        if !n.internal {
            post6.push_str(&format!(
                "    ip6 saddr {} oifname != \"{}\" masquerade\n",
                n.subnet6, n.bridge
            ));
        }
    }
    let v6 = format!(
        "add table ip6 {table}\ndelete table ip6 {table}\ntable ip6 {table} {{\n  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n{post6}  }}\n  chain forward {{\n    type filter hook forward priority filter; policy accept;\n{fwd6}  }}\n}}\n"
    );
    let script = format!(
        "{v6}add table ip {table}\ndelete table ip {table}\ntable ip {table} {{\n{guard}  chain prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;\n{pre}  }}\n  chain output {{\n    type nat hook output priority -100; policy accept;\n{out}  }}\n  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n{rules}  }}\n  chain forward {{\n    type filter hook forward priority filter; policy accept;\n{fwd}  }}\n}}\n"
    );
    run_nft(&script)
}

/// Forward rules of one bridge network: isolated from the other bridges, as
/// dockerd's isolation chains do, and with no way in or out when internal.
fn isolation(n: &Network, bridges: &[String]) -> String {
    let mut out = String::new();
    if bridges.len() > 1 {
        out.push_str(&format!(
            "    iifname \"{0}\" oifname != \"{0}\" oifname {{ {1} }} drop\n",
            n.bridge,
            bridges.join(", ")
        ));
    }
    if n.internal {
        out.push_str(&format!("    iifname \"{0}\" oifname != \"{0}\" drop\n    oifname \"{0}\" iifname != \"{0}\" drop\n", n.bridge));
    }
    out
}

pub fn delete_nft(table: &str) -> Result<(), NetError> {
    run_nft(&format!(
        "add table ip {table}\ndelete table ip {table}\nadd table ip6 {table}\ndelete table ip6 {table}\n"
    ))
}

fn run_nft(script: &str) -> Result<(), NetError> {
    use std::io::Write;
    let mut child = std::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| host_err("running nft (is the nftables package installed?)", e))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(NetError::Host(format!(
            "nft: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Where a container's network namespace file lives.
pub fn netns_path(exec_root: &Path, id: &str) -> PathBuf {
    exec_root.join("netns").join(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The real thing, as root: a bridge, a namespace, a veth between them, and
    /// a ping from inside to the gateway. Cleans up even when it fails.
    #[test]
    fn bridge_veth_and_namespace() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let ns = d.path().join("ns1");
        let net = Network {
            name: "unit".into(),
            driver: "bridge".into(),
            bridge: format!("btu{}", std::process::id() % 100000),
            subnet: "10.123.45.0/24".into(),
            gateway: "10.123.45.1".into(),
            enable_ipv6: true,
            subnet6: "fd00:7b:2d::/64".into(),
            gateway6: "fd00:7b:2d::1".into(),
            ..Default::default()
        };
        let host_if = format!("vbu{}", std::process::id() % 100000);
        let res = std::panic::catch_unwind(|| {
            ensure_bridge(&net).unwrap();
            ensure_bridge(&net).unwrap();
            create_netns(&ns).unwrap();
            let ep = Endpoint {
                host_if: host_if.clone(),
                container_if: "eth0".into(),
                ip: "10.123.45.2".parse().unwrap(),
                prefix: 24,
                gateway: Some("10.123.45.1".parse().unwrap()),
                mac: [0x02, 0x42, 10, 123, 45, 2],
                ip6: Some(("fd00:7b:2d::2".parse().unwrap(), 64)),
                gateway6: Some("fd00:7b:2d::1".parse().unwrap()),
            };
            attach(&ns, &net.bridge, &ep).unwrap();
            // Both stacks reach the gateway; IPv6 at once (no DAD wait).
            for gw in ["10.123.45.1", "fd00:7b:2d::1"] {
                let out = std::process::Command::new("nsenter")
                    .arg(format!("--net={}", ns.display()))
                    .args(["/bin/busybox", "ping", "-c", "1", "-W", "2", gw])
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{gw}: {}",
                    String::from_utf8_lossy(&out.stdout)
                );
            }
        });
        let _ = delete_link(&host_if);
        remove_netns(&ns);
        let _ = delete_link(&net.bridge);
        res.unwrap();
    }
}
