//! What `run` and `create` send: the docker CLI's flags turned into a create request.

use crate::args::*;
use crate::client::{query, Client, DaemonError};
use crate::util::*;
use anyhow::{anyhow, bail, Context, Result};
use berth_api::{
    ContainerConfig, CreateRequest, DeviceMapping, EndpointIpamConfig, EndpointSettings,
    HealthConfig, HostConfig, LogConfig, NetworkingConfig, PortBinding, RestartPolicy, Ulimit,
};
use serde_json::{json, Value};
use std::collections::HashMap;

/// `HostConfig.PortBindings`: `"80/tcp"` → its host bindings.
pub(crate) type PortBindings = HashMap<String, Option<Vec<PortBinding>>>;

/// `-p [ip:][hostPort:]containerPort[/proto]` (ports may be ranges) and
/// `--expose`, as the docker CLI turns them into ExposedPorts and PortBindings.
pub(crate) fn parse_publish(
    publish: &[String],
    expose: &[String],
) -> Result<(HashMap<String, Value>, PortBindings)> {
    let range = |s: &str| -> Result<(u16, u16)> {
        let bad = || anyhow!("invalid port: {s}");
        match s.split_once('-') {
            Some((a, b)) => Ok((a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?)),
            None => {
                let p: u16 = s.parse().map_err(|_| bad())?;
                Ok((p, p))
            }
        }
    };
    let mut exposed = HashMap::new();
    let mut bindings = PortBindings::new();
    for e in expose {
        let (ports, proto) = e.split_once('/').unwrap_or((e, "tcp"));
        let (lo, hi) = range(ports)?;
        for p in lo..=hi {
            exposed.insert(format!("{p}/{proto}"), json!({}));
        }
    }
    for spec in publish {
        let (rest, proto) = spec.rsplit_once('/').unwrap_or((spec, "tcp"));
        let parts: Vec<&str> = rest.rsplitn(3, ':').collect();
        let (cport, hport, hip) = match parts.as_slice() {
            [c] => (*c, "", ""),
            [c, h] => (*c, *h, ""),
            [c, h, ip] => (*c, *h, *ip),
            _ => bail!("invalid port format: {spec}"),
        };
        let (clo, chi) = range(cport)?;
        let host_range = if hport.is_empty() {
            None
        } else {
            Some(range(hport)?)
        };
        for (i, p) in (clo..=chi).enumerate() {
            let key = format!("{p}/{proto}");
            exposed.insert(key.clone(), json!({}));
            let host_port = match host_range {
                None => String::new(),
                // Ranges on both sides map one to one; a host range for one
                // container port lets the daemon pick a free port in it.
                Some((hlo, hhi)) if chi > clo => (hlo as usize + i).min(hhi as usize).to_string(),
                Some((hlo, hhi)) if hhi > hlo => format!("{hlo}-{hhi}"),
                Some((hlo, _)) => hlo.to_string(),
            };
            bindings
                .entry(key)
                .or_default()
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: hip.trim_matches(['[', ']']).to_string(),
                    host_port,
                });
        }
    }
    Ok((exposed, bindings))
}

/// `--ulimit nofile=1024[:2048]` as the API's `Ulimit`.
pub(crate) fn parse_ulimit(s: &str) -> Result<Ulimit> {
    let (name, vals) = s
        .split_once('=')
        .ok_or_else(|| anyhow!("invalid ulimit argument: {s}"))?;
    let (soft, hard) = vals.split_once(':').unwrap_or((vals, vals));
    let num = |v: &str| {
        v.parse::<i64>()
            .map_err(|_| anyhow!("invalid ulimit argument: {s}"))
    };
    Ok(Ulimit {
        name: name.to_string(),
        soft: num(soft)?,
        hard: num(hard)?,
    })
}

/// `no`, `always`, `unless-stopped`, `on-failure[:N]` as the API's policy.
pub(crate) fn restart_policy(s: &str) -> Result<RestartPolicy> {
    let (name, max) = match s.split_once(':') {
        Some((n, m)) => (
            n,
            m.parse::<i64>().map_err(|_| {
                anyhow!("invalid restart policy format: maximum retry count must be an integer")
            })?,
        ),
        None => (s, 0),
    };
    Ok(RestartPolicy {
        name: name.to_string(),
        maximum_retry_count: max,
    })
}

/// The resource flags `run` and `update` share, into a HostConfig.
pub(crate) fn apply_resources(r: &crate::ResourceArgs, hc: &mut HostConfig) -> Result<()> {
    if let Some(v) = &r.memory {
        hc.memory = ram_bytes(v)?;
    }
    if let Some(v) = &r.memory_swap {
        hc.memory_swap = if v == "-1" { -1 } else { ram_bytes(v)? };
    }
    if let Some(c) = r.cpus {
        hc.nano_cpus = (c * 1e9) as i64;
    }
    if let Some(v) = &r.memory_reservation {
        hc.memory_reservation = ram_bytes(v)?;
    }
    if let Some(v) = &r.cpuset_cpus {
        hc.cpuset_cpus = v.clone();
    }
    if let Some(v) = &r.cpuset_mems {
        hc.cpuset_mems = v.clone();
    }
    if let Some(w) = r.blkio_weight {
        hc.blkio_weight = w;
    }
    hc.cpu_shares = r.cpu_shares.unwrap_or(hc.cpu_shares);
    hc.cpu_period = r.cpu_period.unwrap_or(hc.cpu_period);
    hc.cpu_quota = r.cpu_quota.unwrap_or(hc.cpu_quota);
    if r.pids_limit.is_some() {
        hc.pids_limit = r.pids_limit;
    }
    Ok(())
}

/// `HOST[:CONTAINER][:PERMS]`, as the docker CLI reads `--device`: a
/// second field of only r, w and m letters is the permissions.
pub(crate) fn device_mapping(spec: &str) -> DeviceMapping {
    let parts: Vec<&str> = spec.split(':').collect();
    let perms = |p: &str| !p.is_empty() && p.chars().all(|c| "rwm".contains(c));
    let (host, inside, mode) = match parts[..] {
        [h, c, m] => (h, c, m),
        [h, p] if perms(p) => (h, h, p),
        [h, c] => (h, c, "rwm"),
        _ => (spec, spec, "rwm"),
    };
    DeviceMapping {
        path_on_host: host.to_string(),
        path_in_container: inside.to_string(),
        cgroup_permissions: mode.to_string(),
    }
}

pub(crate) fn env_file(path: &str) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("open {path}"))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            if l.contains('=') {
                l.to_string()
            } else {
                format!("{l}={}", std::env::var(l).unwrap_or_default())
            }
        })
        .collect())
}

pub(crate) fn create_body(a: &RunArgs) -> Result<CreateRequest> {
    let (exposed, port_bindings) = parse_publish(&a.publish, &a.expose)?;
    Ok(CreateRequest {
        config: container_config(a, exposed)?,
        host_config: host_config(a, port_bindings)?,
        networking_config: networking_config(a),
    })
}

/// The create request's `Config`, as the docker CLI fills it.
fn container_config(a: &RunArgs, exposed: HashMap<String, Value>) -> Result<ContainerConfig> {
    let mut env = Vec::new();
    for f in &a.env_file {
        env.extend(env_file(f)?);
    }
    for e in &a.env {
        if e.contains('=') {
            env.push(e.clone());
        } else if let Ok(v) = std::env::var(e) {
            env.push(format!("{e}={v}"));
        }
    }
    let attach = |s: &str| {
        !a.detach && (a.attach.is_empty() || a.attach.iter().any(|x| x.eq_ignore_ascii_case(s)))
    };
    // As the docker CLI: `-v /path` is an anonymous volume (Config.Volumes),
    // anything with a `:` a bind or a named volume (HostConfig.Binds).
    let anon: HashMap<String, Value> = a
        .volume
        .iter()
        .filter(|v| !v.contains(':'))
        .map(|v| (v.clone(), json!({})))
        .collect();
    Ok(ContainerConfig {
        image: a.image().to_string(),
        tty: a.tty,
        open_stdin: a.interactive,
        stdin_once: a.interactive && !a.detach,
        attach_stdin: a.interactive && attach("stdin"),
        attach_stdout: attach("stdout"),
        attach_stderr: attach("stderr"),
        env: Some(env),
        labels: Some(kv_map(&a.label).into_iter().collect()),
        cmd: (!a.cmd().is_empty()).then(|| a.cmd().to_vec()),
        entrypoint: a.entrypoint.as_ref().map(|e| vec![e.clone()]),
        working_dir: a.workdir.clone().unwrap_or_default(),
        user: a.user.clone().unwrap_or_default(),
        hostname: a.hostname.clone().unwrap_or_default(),
        stop_signal: a.stop_signal.clone(),
        stop_timeout: a.stop_timeout,
        healthcheck: healthcheck(a)?,
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        volumes: (!anon.is_empty()).then_some(anon),
        ..ContainerConfig::default()
    })
}

/// The create request's `HostConfig`: lists given as flags are sent even
/// when empty, as inspect shows them back.
fn host_config(a: &RunArgs, port_bindings: PortBindings) -> Result<HostConfig> {
    let binds = a
        .volume
        .iter()
        .filter(|v| v.contains(':'))
        .cloned()
        .collect();
    let tmpfs = a
        .tmpfs
        .iter()
        .map(|t| {
            let (p, o) = t.split_once(':').unwrap_or((t, ""));
            (p.to_string(), o.to_string())
        })
        .collect();
    let mut hc = HostConfig {
        auto_remove: a.rm,
        restart_policy: restart_policy(&a.restart)?,
        network_mode: a.network.clone().unwrap_or_else(|| "default".into()),
        privileged: a.privileged,
        cap_add: Some(a.cap_add.clone()),
        cap_drop: Some(a.cap_drop.clone()),
        security_opt: Some(a.security_opt.clone()),
        readonly_rootfs: a.read_only,
        log_config: LogConfig {
            kind: a.log_driver.clone().unwrap_or_else(|| "json-file".into()),
            config: Some(
                a.log_opt
                    .iter()
                    .filter_map(|o| o.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
        },
        extra_hosts: Some(a.add_host.clone()),
        dns: Some(a.dns.clone()),
        dns_search: Some(a.dns_search.clone()),
        dns_options: Some(a.dns_option.clone()),
        group_add: Some(a.group_add.clone()),
        ulimits: Some(
            a.ulimit
                .iter()
                .map(|u| parse_ulimit(u))
                .collect::<Result<_>>()?,
        ),
        sysctls: Some(kv_map(&a.sysctl).into_iter().collect()),
        pid_mode: a.pid.clone().unwrap_or_default(),
        ipc_mode: a.ipc.clone().unwrap_or_default(),
        uts_mode: a.uts.clone().unwrap_or_default(),
        cgroupns_mode: a.cgroupns.clone().unwrap_or_default(),
        device_cgroup_rules: Some(a.device_cgroup_rule.clone()),
        oom_score_adj: a.oom_score_adj.unwrap_or(0),
        oom_kill_disable: Some(a.oom_kill_disable),
        memory_swappiness: Some(a.memory_swappiness.unwrap_or(-1)),
        runtime: a.runtime.clone().unwrap_or_default(),
        links: (!a.link.is_empty()).then(|| a.link.clone()),
        devices: (!a.device.is_empty())
            .then(|| a.device.iter().map(|d| device_mapping(d)).collect()),
        binds: Some(binds),
        mounts: Some(
            a.mount
                .iter()
                .map(|m| crate::volume::parse_mount(m))
                .collect::<Result<_>>()?,
        ),
        tmpfs: Some(tmpfs),
        volumes_from: Some(a.volumes_from.clone()),
        port_bindings: Some(port_bindings),
        publish_all_ports: a.publish_all,
        ..HostConfig::default()
    };
    if let Some(s) = &a.shm_size {
        hc.shm_size = ram_bytes(s)?;
    }
    apply_resources(&a.resources, &mut hc)?;
    Ok(hc)
}

/// `--network-alias`, `--ip`, `--ip6`, `--mac-address` for the network run joins.
fn networking_config(a: &RunArgs) -> Option<NetworkingConfig> {
    if a.network_alias.is_empty() && a.ip.is_none() && a.ip6.is_none() && a.mac_address.is_none() {
        return None;
    }
    let net = a.network.clone().unwrap_or_else(|| "bridge".into());
    let ipam = (a.ip.is_some() || a.ip6.is_some()).then(|| EndpointIpamConfig {
        ipv4_address: a.ip.clone().unwrap_or_default(),
        ipv6_address: a.ip6.clone().unwrap_or_default(),
        ..EndpointIpamConfig::default()
    });
    let ep = EndpointSettings {
        aliases: Some(a.network_alias.clone()),
        ipam_config: ipam,
        mac_address: a.mac_address.clone().unwrap_or_default(),
        ..EndpointSettings::default()
    };
    Some(NetworkingConfig {
        endpoints_config: [(net, ep)].into(),
    })
}

/// `--health-*` and `--no-healthcheck` as the API's `Healthcheck`, the
/// docker CLI's way: a test only with `--health-cmd`, timings on their own
/// keep the image's test.
pub(crate) fn healthcheck(a: &RunArgs) -> Result<Option<HealthConfig>> {
    let any = a.health_cmd.is_some()
        || a.health_retries.is_some()
        || [
            &a.health_interval,
            &a.health_timeout,
            &a.health_start_period,
            &a.health_start_interval,
        ]
        .iter()
        .any(|v| v.is_some());
    if a.no_healthcheck {
        if any {
            bail!("--no-healthcheck conflicts with --health-* options");
        }
        return Ok(Some(HealthConfig {
            test: vec!["NONE".into()],
            ..HealthConfig::default()
        }));
    }
    if !any {
        return Ok(None);
    }
    let ns = |v: &Option<String>| -> Result<i64> {
        match v {
            Some(v) => {
                berth_util::gotime::duration_ns(v).map_err(|e| anyhow!("--health flag: {e}"))
            }
            None => Ok(0),
        }
    };
    Ok(Some(HealthConfig {
        test: match &a.health_cmd {
            Some(c) => vec!["CMD-SHELL".into(), c.clone()],
            None => Vec::new(),
        },
        interval: ns(&a.health_interval)?,
        timeout: ns(&a.health_timeout)?,
        start_period: ns(&a.health_start_period)?,
        start_interval: ns(&a.health_start_interval)?,
        retries: a.health_retries.map_or(0, i64::from),
    }))
}

pub(crate) fn create(c: &Client, a: &RunArgs) -> Result<String> {
    let body = create_body(a)?;
    let q = match &a.name {
        Some(n) => query(&[("name", n.clone())]),
        None => String::new(),
    };
    let path = format!("/containers/create{q}");
    let pull = |c: &Client| -> Result<()> {
        let r = berth_dist::Reference::parse(a.image())
            .map_err(|_| anyhow::anyhow!("invalid reference format: {}", a.image()))?;
        crate::distribution::pull_ref(c, &r, a.platform.as_deref(), false, &mut std::io::stderr())
    };
    match a.pull.as_str() {
        "missing" | "never" => {}
        "always" => pull(c)?,
        other => anyhow::bail!(
            "invalid pull option: '{other}': must be one of \"always\", \"missing\" or \"never\""
        ),
    }
    let resp = match c.post_json(&path, &body) {
        Ok(r) => r,
        Err(e) => {
            let missing = e
                .downcast_ref::<DaemonError>()
                .is_some_and(|d| d.status == 404 && d.message.starts_with("No such image"));
            if !missing || a.pull == "always" {
                return Err(e);
            }
            eprintln!("Unable to find image '{}' locally", a.image());
            if a.pull == "never" {
                return Err(e);
            }
            // As the docker CLI: pull, then create again.
            pull(c)?;
            c.post_json(&path, &body)?
        }
    };
    let created: berth_api::ContainerCreateResponse = resp.decode()?;
    for w in &created.warnings {
        eprintln!("WARNING: {w}");
    }
    Ok(created.id)
}
