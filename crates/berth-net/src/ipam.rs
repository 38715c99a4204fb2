//! IPv4 and IPv6 address management: subnets in CIDR form, the gateway, and which
//! addresses are taken. Never hands out an address twice.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    pub fn parse(s: &str) -> Result<Subnet, String> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("invalid CIDR address: {s}"))?;
        let addr: Ipv4Addr = a
            .parse()
            .map_err(|_| format!("invalid CIDR address: {s}"))?;
        let prefix: u8 = p
            .parse()
            .ok()
            .filter(|p| (8..=30).contains(p))
            .ok_or_else(|| format!("invalid CIDR prefix in {s}: use /8 to /30"))?;
        let mask = u32::MAX << (32 - prefix);
        Ok(Subnet {
            network: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        })
    }

    fn mask(&self) -> u32 {
        u32::MAX << (32 - self.prefix)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network)
    }

    pub fn overlaps(&self, o: &Subnet) -> bool {
        let m = self.mask() & o.mask();
        u32::from(self.network) & m == u32::from(o.network) & m
    }

    /// The first usable address (Docker's default gateway).
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    fn broadcast(&self) -> u32 {
        u32::from(self.network) | !self.mask()
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// Addresses taken in one network, by owner (container id, or "gateway").
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Pool {
    pub taken: BTreeMap<Ipv4Addr, String>,
}

impl Pool {
    /// Gives `owner` an address: `want` if it is free and inside `range`, else the lowest free one.
    pub fn allocate(
        &mut self,
        subnet: &Subnet,
        range: &Subnet,
        owner: &str,
        want: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, String> {
        if let Some((ip, _)) = self.taken.iter().find(|(_, o)| *o == owner) {
            return Ok(*ip);
        }
        if let Some(ip) = want {
            if !subnet.contains(ip) {
                return Err(format!(
                    "no available IPv4 addresses: {ip} is not in {subnet}"
                ));
            }
            if self.taken.contains_key(&ip) {
                return Err(format!("Address already in use: {ip}"));
            }
            self.taken.insert(ip, owner.to_string());
            return Ok(ip);
        }
        let lo = u32::from(range.network).max(u32::from(subnet.network)) + 1;
        let hi = range.broadcast().min(subnet.broadcast());
        for n in lo..hi {
            let ip = Ipv4Addr::from(n);
            if let std::collections::btree_map::Entry::Vacant(e) = self.taken.entry(ip) {
                e.insert(owner.to_string());
                return Ok(ip);
            }
        }
        Err(format!(
            "no available IPv4 addresses on this network's address pools: {subnet}"
        ))
    }

    pub fn release(&mut self, owner: &str) {
        self.taken.retain(|_, o| o != owner);
    }
}

/// An IPv6 subnet (`--ipv6 --subnet fd00:1::/64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet6 {
    pub network: Ipv6Addr,
    pub prefix: u8,
}

impl Subnet6 {
    pub fn parse(s: &str) -> Result<Subnet6, String> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("invalid CIDR address: {s}"))?;
        let addr: Ipv6Addr = a
            .parse()
            .map_err(|_| format!("invalid CIDR address: {s}"))?;
        let prefix: u8 = p
            .parse()
            .ok()
            .filter(|p| (16..=124).contains(p))
            .ok_or_else(|| format!("invalid CIDR prefix in {s}: use /16 to /124"))?;
        Ok(Subnet6 {
            network: Ipv6Addr::from(u128::from(addr) & Self::mask_of(prefix)),
            prefix,
        })
    }

    fn mask_of(prefix: u8) -> u128 {
        u128::MAX << (128 - prefix)
    }

    pub fn contains(&self, ip: Ipv6Addr) -> bool {
        u128::from(ip) & Self::mask_of(self.prefix) == u128::from(self.network)
    }

    pub fn overlaps(&self, o: &Subnet6) -> bool {
        let m = Self::mask_of(self.prefix.min(o.prefix));
        u128::from(self.network) & m == u128::from(o.network) & m
    }

    pub fn first_host(&self) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.network) + 1)
    }

    /// A random /64 of the unique local range (fd00::/8), for a network
    /// that asked for IPv6 without a subnet.
    pub fn random_ula() -> Subnet6 {
        let r: u64 = rand::random::<u64>() & 0x00ff_ffff_ffff_ffff;
        let hi = (0xfdu128 << 120) | ((r as u128) << 64);
        Subnet6 {
            network: Ipv6Addr::from(hi),
            prefix: 64,
        }
    }

    /// Gives `owner` an address of the subnet: `want` if free, else the
    /// lowest free one; `taken` maps addresses to owners.
    pub fn allocate(
        &self,
        taken: &mut BTreeMap<String, String>,
        owner: &str,
        want: Option<Ipv6Addr>,
    ) -> Result<Ipv6Addr, String> {
        if let Some((ip, _)) = taken.iter().find(|(_, o)| *o == owner) {
            return ip.parse().map_err(|_| format!("bad address {ip}"));
        }
        if let Some(ip) = want {
            if !self.contains(ip) {
                return Err(format!(
                    "no available IPv6 addresses: {ip} is not in {self}"
                ));
            }
            if taken.contains_key(&ip.to_string()) {
                return Err(format!("Address already in use: {ip}"));
            }
            taken.insert(ip.to_string(), owner.to_string());
            return Ok(ip);
        }
        let base = u128::from(self.network);
        let size = 1u128 << (128 - self.prefix).min(20);
        for n in 1..size {
            let ip = Ipv6Addr::from(base + n);
            if let std::collections::btree_map::Entry::Vacant(e) = taken.entry(ip.to_string()) {
                e.insert(owner.to_string());
                return Ok(ip);
            }
        }
        Err(format!(
            "no available IPv6 addresses on this network's address pools: {self}"
        ))
    }
}

impl std::fmt::Display for Subnet6 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ipv6_subnets_and_allocation() {
        let s = Subnet6::parse("fd00:db8:1::7/64").unwrap();
        assert_eq!(s.to_string(), "fd00:db8:1::/64");
        assert!(s.contains("fd00:db8:1::ffff".parse().unwrap()));
        assert!(!s.contains("fd00:db8:2::1".parse().unwrap()));
        assert!(s.overlaps(&Subnet6::parse("fd00:db8::/32").unwrap()));
        assert!(!s.overlaps(&Subnet6::parse("fd00:db8::/48").unwrap()));
        assert!(Subnet6::parse("fd00::/8").is_err());
        let mut taken = BTreeMap::from([(s.first_host().to_string(), "gateway".to_string())]);
        assert_eq!(
            s.allocate(&mut taken, "a", None).unwrap().to_string(),
            "fd00:db8:1::2"
        );
        assert_eq!(
            s.allocate(&mut taken, "a", None).unwrap().to_string(),
            "fd00:db8:1::2"
        );
        let want = "fd00:db8:1::99".parse().unwrap();
        assert_eq!(s.allocate(&mut taken, "b", Some(want)).unwrap(), want);
        assert!(s.allocate(&mut taken, "c", Some(want)).is_err());
        let u = Subnet6::random_ula();
        assert_eq!((u.network.segments()[0] >> 8, u.prefix), (0xfd, 64));
    }

    use super::*;

    #[test]
    fn parse_and_contain() {
        let s = Subnet::parse("10.88.3.7/16").unwrap();
        assert_eq!(s.to_string(), "10.88.0.0/16");
        assert!(s.contains("10.88.255.1".parse().unwrap()));
        assert!(!s.contains("10.89.0.1".parse().unwrap()));
        assert!(s.overlaps(&Subnet::parse("10.88.5.0/24").unwrap()));
        assert!(!s.overlaps(&Subnet::parse("10.89.0.0/24").unwrap()));
        assert!(
            Subnet::parse("10.0.0.0").is_err()
                && Subnet::parse("x/24").is_err()
                && Subnet::parse("10.0.0.0/31").is_err()
        );
    }

    #[test]
    fn never_twice_and_ranges() {
        let s = Subnet::parse("10.89.0.0/29").unwrap();
        let mut p = Pool::default();
        p.allocate(&s, &s, "gateway", Some(s.first_host())).unwrap();
        let a = p.allocate(&s, &s, "a", None).unwrap();
        let b = p.allocate(&s, &s, "b", None).unwrap();
        assert_eq!(
            (a.to_string().as_str(), b.to_string().as_str()),
            ("10.89.0.2", "10.89.0.3")
        );
        assert_eq!(
            p.allocate(&s, &s, "a", None).unwrap(),
            a,
            "an owner keeps its address"
        );
        assert!(p.allocate(&s, &s, "c", Some(b)).is_err());
        for o in ["c", "d", "e"] {
            p.allocate(&s, &s, o, None).unwrap();
        }
        assert!(
            p.allocate(&s, &s, "f", None)
                .unwrap_err()
                .contains("no available"),
            "the broadcast address is never given"
        );
        p.release("a");
        assert_eq!(p.allocate(&s, &s, "f", None).unwrap(), a);
        let range = Subnet::parse("10.89.0.4/30").unwrap();
        let mut q = Pool::default();
        assert_eq!(
            q.allocate(&s, &range, "x", None).unwrap().to_string(),
            "10.89.0.5"
        );
    }
}
