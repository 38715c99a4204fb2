//! Legacy `--link` on the default bridge, as dockerd still does it: the
//! parent gets environment variables for the child's exposed ports and an
//! /etc/hosts line for it, and the child gets an extra name
//! (`/parent/alias`). On user-defined networks a link is a name the
//! embedded DNS answers for its container alone, as in dockerd.

use crate::record::{Record, Status};
use crate::{Engine, EngineError, Result};
use serde::{Deserialize, Serialize};

/// A registered link: the child container and the alias the parent knows
/// it by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Link {
    pub child: String,
    pub alias: String,
}

/// `name[:alias]` (names may carry Docker's leading `/`).
pub fn parse_link(s: &str) -> Result<(String, String)> {
    let (name, alias) = s.split_once(':').unwrap_or((s, s));
    let name = name.trim_start_matches('/');
    let alias = alias.trim_start_matches('/');
    if name.is_empty() || alias.is_empty() {
        return Err(EngineError::BadRequest(format!("invalid link format: {s}")));
    }
    // A link path such as `/web/db` names its last element.
    let alias = alias.rsplit('/').next().unwrap_or(alias);
    Ok((name.to_string(), alias.to_string()))
}

/// dockerd's link environment for `name` (`/parent/alias`): the child's
/// exposed ports (TCP first, then by number; ranges of consecutive ports
/// get START/END variables), its name, and its environment but HOME and
/// PATH.
pub fn link_env(name: &str, child_ip: &str, env: &[String], ports: &[String]) -> Vec<String> {
    let alias = name
        .rsplit('/')
        .next()
        .unwrap_or(name)
        .to_uppercase()
        .replace('-', "_");
    let mut ports: Vec<(u16, String)> = ports
        .iter()
        .filter_map(|p| {
            let (n, proto) = p.split_once('/').unwrap_or((p, "tcp"));
            Some((n.parse().ok()?, proto.to_string()))
        })
        .collect();
    ports.sort_by(|a, b| {
        let rank = |p: &(u16, String)| (p.1 != "tcp", p.1.clone(), p.0);
        rank(a).cmp(&rank(b))
    });
    ports.dedup();
    let mut out = Vec::new();
    let mut start: Option<(u16, String)> = None;
    let mut end: Option<(u16, String)> = None;
    for (i, (num, proto)) in ports.iter().enumerate() {
        let url = |n: u16, p: &str| format!("{p}://{child_ip}:{n}");
        if i == 0 {
            start = Some((*num, proto.clone()));
            end = start.clone();
            out.push(format!("{alias}_PORT={}", url(*num, proto)));
        }
        let prefix = format!("{alias}_PORT_{num}_{}", proto.to_uppercase());
        out.push(format!("{prefix}={}", url(*num, proto)));
        out.push(format!("{prefix}_ADDR={child_ip}"));
        out.push(format!("{prefix}_PORT={num}"));
        out.push(format!("{prefix}_PROTO={proto}"));
        let (s, e) = (start.clone().expect("set"), end.clone().expect("set"));
        if *num == e.0.wrapping_add(1) && *proto == e.1 {
            end = Some((*num, proto.clone()));
            if i + 1 < ports.len() {
                continue;
            }
        }
        let e = end.clone().expect("set");
        if e != s {
            let p = format!("{alias}_PORT_{}_{}", s.0, s.1.to_uppercase());
            out.push(format!("{p}_START={}", url(s.0, &s.1)));
            out.push(format!("{p}_PORT_START={}", s.0));
            out.push(format!("{p}_END={}", url(e.0, &e.1)));
            out.push(format!("{p}_PORT_END={}", e.0));
        }
        start = Some((*num, proto.clone()));
        end = start.clone();
    }
    out.push(format!("{alias}_NAME={name}"));
    for v in env {
        let Some((k, val)) = v.split_once('=') else {
            continue;
        };
        if k != "HOME" && k != "PATH" {
            out.push(format!("{alias}_ENV_{k}={val}"));
        }
    }
    out
}

impl Engine {
    /// At create: the links of a container on the default bridge, each to an
    /// existing container that is not on the host's network.
    pub(crate) fn register_links(&self, links: &[String], network_mode: &str) -> Result<Vec<Link>> {
        if network_mode != "bridge" {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for l in links {
            let (name, alias) = parse_link(l)?;
            let child = self.find(&name).map_err(|_| {
                EngineError::BadRequest(format!(
                    "could not get container for {name}: No such container: {name}"
                ))
            })?;
            let crec = child.rec.read().expect("rec");
            if crec.host_config.network_mode == "host" {
                return Err(EngineError::BadRequest(
                    "conflicting options: host type networking can't be used with links. This would result in undefined behavior".into(),
                ));
            }
            out.push(Link {
                child: crec.id.clone(),
                alias,
            });
        }
        Ok(out)
    }

    /// At start: the link environment and /etc/hosts lines of `rec`'s links.
    /// Every child must be running, as dockerd requires.
    pub(crate) fn link_setup(&self, rec: &Record) -> Result<(Vec<String>, Vec<String>)> {
        let (mut env, mut hosts) = (Vec::new(), Vec::new());
        for l in &rec.links {
            let path = format!("/{}/{}", rec.name, l.alias);
            let child = self.find(&l.child).map_err(|_| {
                EngineError::Internal(format!(
                    "Cannot link to a non running container: {} AS {path}",
                    l.child
                ))
            })?;
            let crec = child.rec.read().expect("rec").clone();
            let st = child.state();
            let ip = st.endpoints.get("bridge").map(|e| e.ip.clone());
            let (Some(ip), true) = (ip, st.status == Status::Running) else {
                return Err(EngineError::Internal(format!(
                    "Cannot link to a non running container: /{} AS {path}",
                    crec.name
                )));
            };
            let ports: Vec<String> = crec
                .config
                .exposed_ports
                .iter()
                .flat_map(|p| p.keys().cloned())
                .collect();
            env.extend(link_env(
                &path,
                &ip,
                crec.config.env.as_deref().unwrap_or_default(),
                &ports,
            ));
            // The alias, the child's hostname and, when it differs from the
            // alias, its name.
            let mut names = vec![l.alias.clone(), crec.config.hostname.clone()];
            if l.alias != crec.name {
                names.push(crec.name.clone());
            }
            hosts.push(format!("{ip}\t{}", names.join(" ")));
        }
        Ok((env, hosts))
    }

    /// `HostConfig.Links` in inspect: `/child:/parent/alias`, as dockerd
    /// shows registered links.
    pub(crate) fn links_json(&self, rec: &Record) -> Option<Vec<String>> {
        if rec.links.is_empty() {
            return rec.host_config.links.clone();
        }
        Some(
            rec.links
                .iter()
                .map(|l| {
                    let child = self
                        .find(&l.child)
                        .map(|c| c.rec.read().expect("rec").name.clone())
                        .unwrap_or_else(|_| l.child.clone());
                    format!("/{child}:/{}/{}", rec.name, l.alias)
                })
                .collect(),
        )
    }

    /// `DELETE /containers/{/parent/alias}?link=1`: drops the link, leaves
    /// both containers.
    pub async fn remove_link(&self, path: &str) -> Result<()> {
        let p = path.trim_start_matches('/');
        let Some((parent, alias)) = p.rsplit_once('/') else {
            return Err(EngineError::Conflict(
                "Conflict, cannot remove the default link name of the container".into(),
            ));
        };
        let c = self.find(parent)?;
        let _op = c.op.lock().await;
        let mut rec = c.rec.read().expect("rec").clone();
        let before = rec.links.len();
        rec.links.retain(|l| l.alias != alias);
        if rec.links.len() == before {
            return Err(EngineError::NotFound(format!("Could not find link {path}")));
        }
        let keep: Vec<String> = rec
            .host_config
            .links
            .iter()
            .flatten()
            .filter(|l| parse_link(l).map(|(_, a)| a != alias).unwrap_or(true))
            .cloned()
            .collect();
        rec.host_config.links = Some(keep).filter(|k| !k.is_empty());
        self.persist_record(&rec)?;
        *c.rec.write().expect("rec") = rec;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_parse_as_docker_writes_them() {
        assert_eq!(parse_link("db").unwrap(), ("db".into(), "db".into()));
        assert_eq!(parse_link("db:data").unwrap(), ("db".into(), "data".into()));
        assert_eq!(
            parse_link("/db:/web/data").unwrap(),
            ("db".into(), "data".into())
        );
        assert!(parse_link(":x").is_err());
    }

    #[test]
    fn link_environment_as_dockerd() {
        let env = link_env(
            "/web/my-db",
            "10.88.0.5",
            &[
                "PATH=/bin".into(),
                "PASSWORD=pw".into(),
                "HOME=/root".into(),
            ],
            &[
                "5432/tcp".into(),
                "53/udp".into(),
                "8000/tcp".into(),
                "8001/tcp".into(),
            ],
        );
        let want = [
            "MY_DB_PORT=tcp://10.88.0.5:5432",
            "MY_DB_PORT_5432_TCP=tcp://10.88.0.5:5432",
            "MY_DB_PORT_5432_TCP_ADDR=10.88.0.5",
            "MY_DB_PORT_5432_TCP_PORT=5432",
            "MY_DB_PORT_5432_TCP_PROTO=tcp",
            "MY_DB_PORT_8000_TCP=tcp://10.88.0.5:8000",
            "MY_DB_PORT_8000_TCP_ADDR=10.88.0.5",
            "MY_DB_PORT_8000_TCP_PORT=8000",
            "MY_DB_PORT_8000_TCP_PROTO=tcp",
            "MY_DB_PORT_8001_TCP=tcp://10.88.0.5:8001",
            "MY_DB_PORT_8001_TCP_ADDR=10.88.0.5",
            "MY_DB_PORT_8001_TCP_PORT=8001",
            "MY_DB_PORT_8001_TCP_PROTO=tcp",
            // dockerd closes a range when the next port breaks it.
            "MY_DB_PORT_53_UDP=udp://10.88.0.5:53",
            "MY_DB_PORT_53_UDP_ADDR=10.88.0.5",
            "MY_DB_PORT_53_UDP_PORT=53",
            "MY_DB_PORT_53_UDP_PROTO=udp",
            "MY_DB_PORT_8000_TCP_START=tcp://10.88.0.5:8000",
            "MY_DB_PORT_8000_TCP_PORT_START=8000",
            "MY_DB_PORT_8000_TCP_END=tcp://10.88.0.5:8001",
            "MY_DB_PORT_8000_TCP_PORT_END=8001",
            "MY_DB_NAME=/web/my-db",
            "MY_DB_ENV_PASSWORD=pw",
        ];
        assert_eq!(env, want);
    }
}
