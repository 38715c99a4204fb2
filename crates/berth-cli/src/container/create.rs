//! What `run` and `create` send: the docker CLI's flags turned into a create request.

use crate::args::*;
use crate::client::{query, Client, DaemonError};
use crate::util::*;
use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

/// `-p [ip:][hostPort:]containerPort[/proto]` (ports may be ranges) and
/// `--expose`, as the docker CLI turns them into ExposedPorts and PortBindings.
pub(crate) fn parse_publish(
    publish: &[String],
    expose: &[String],
) -> Result<(serde_json::Map<String, Value>, Value)> {
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
    let mut exposed = serde_json::Map::new();
    let mut bindings = serde_json::Map::new();
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
            let entry = bindings.entry(key).or_insert_with(|| json!([]));
            if let Some(a) = entry.as_array_mut() {
                a.push(json!({"HostIp": hip.trim_matches(['[', ']']), "HostPort": host_port}));
            }
        }
    }
    Ok((exposed, Value::Object(bindings)))
}

/// `--ulimit nofile=1024[:2048]` as the API's `Ulimit`.
pub(crate) fn parse_ulimit(s: &str) -> Result<Value> {
    let (name, vals) = s
        .split_once('=')
        .ok_or_else(|| anyhow!("invalid ulimit argument: {s}"))?;
    let (soft, hard) = vals.split_once(':').unwrap_or((vals, vals));
    let num = |v: &str| {
        v.parse::<i64>()
            .map_err(|_| anyhow!("invalid ulimit argument: {s}"))
    };
    Ok(json!({"Name": name, "Soft": num(soft)?, "Hard": num(hard)?}))
}

/// `no`, `always`, `unless-stopped`, `on-failure[:N]` as the API's policy.
pub(crate) fn restart_policy(s: &str) -> Result<Value> {
    let (name, max) = match s.split_once(':') {
        Some((n, m)) => (
            n,
            m.parse::<i64>().map_err(|_| {
                anyhow!("invalid restart policy format: maximum retry count must be an integer")
            })?,
        ),
        None => (s, 0),
    };
    Ok(json!({"Name": name, "MaximumRetryCount": max}))
}

/// The resource flags `run` and `update` share, as HostConfig fields.
pub(crate) fn resource_fields(r: &crate::ResourceArgs) -> Result<serde_json::Map<String, Value>> {
    let mut m = serde_json::Map::new();
    if let Some(v) = &r.memory {
        m.insert("Memory".into(), json!(ram_bytes(v)?));
    }
    if let Some(v) = &r.memory_swap {
        m.insert(
            "MemorySwap".into(),
            json!(if v == "-1" { -1 } else { ram_bytes(v)? }),
        );
    }
    if let Some(c) = r.cpus {
        m.insert("NanoCpus".into(), json!((c * 1e9) as i64));
    }
    if let Some(v) = &r.memory_reservation {
        m.insert("MemoryReservation".into(), json!(ram_bytes(v)?));
    }
    for (k, v) in [
        ("CpusetCpus", &r.cpuset_cpus),
        ("CpusetMems", &r.cpuset_mems),
    ] {
        if let Some(v) = v {
            m.insert(k.into(), json!(v));
        }
    }
    if let Some(w) = r.blkio_weight {
        m.insert("BlkioWeight".into(), json!(w));
    }
    for (k, v) in [
        ("CpuShares", r.cpu_shares),
        ("CpuPeriod", r.cpu_period),
        ("CpuQuota", r.cpu_quota),
        ("PidsLimit", r.pids_limit),
    ] {
        if let Some(v) = v {
            m.insert(k.into(), json!(v));
        }
    }
    Ok(m)
}

/// `HOST[:CONTAINER][:PERMS]`, as the docker CLI reads `--device`: a
/// second field of only r, w and m letters is the permissions.
pub(crate) fn device_mapping(spec: &str) -> Value {
    let parts: Vec<&str> = spec.split(':').collect();
    let perms = |p: &str| !p.is_empty() && p.chars().all(|c| "rwm".contains(c));
    let (host, inside, mode) = match parts[..] {
        [h, c, m] => (h, c, m),
        [h, p] if perms(p) => (h, h, p),
        [h, c] => (h, c, "rwm"),
        _ => (spec, spec, "rwm"),
    };
    json!({"PathOnHost": host, "PathInContainer": inside, "CgroupPermissions": mode})
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

pub(crate) fn create_body(a: &RunArgs) -> Result<Value> {
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
    let labels = kv_map(&a.label);
    let log_cfg: serde_json::Map<String, Value> = a
        .log_opt
        .iter()
        .filter_map(|o| o.split_once('=').map(|(k, v)| (k.to_string(), json!(v))))
        .collect();
    let attach = |s: &str| {
        !a.detach && (a.attach.is_empty() || a.attach.iter().any(|x| x.eq_ignore_ascii_case(s)))
    };
    let mut cfg = json!({
        "Image": a.image(),
        "Tty": a.tty,
        "OpenStdin": a.interactive,
        "StdinOnce": a.interactive && !a.detach,
        "AttachStdin": a.interactive && attach("stdin"),
        "AttachStdout": attach("stdout"),
        "AttachStderr": attach("stderr"),
        "Env": env,
        "Labels": labels,
        "HostConfig": {
            "AutoRemove": a.rm,
            "RestartPolicy": restart_policy(&a.restart)?,
            "NetworkMode": a.network.clone().unwrap_or_else(|| "default".into()),
            "Privileged": a.privileged,
            "CapAdd": a.cap_add,
            "CapDrop": a.cap_drop,
            "SecurityOpt": a.security_opt,
            "ReadonlyRootfs": a.read_only,
            "LogConfig": {"Type": a.log_driver.clone().unwrap_or_else(|| "json-file".into()), "Config": log_cfg},
            "ExtraHosts": a.add_host,
            "Dns": a.dns,
        },
    });
    if !a.cmd().is_empty() {
        cfg["Cmd"] = json!(a.cmd());
    }
    if let Some(e) = &a.entrypoint {
        cfg["Entrypoint"] = json!([e]);
    }
    if let Some(w) = &a.workdir {
        cfg["WorkingDir"] = json!(w);
    }
    if let Some(u) = &a.user {
        cfg["User"] = json!(u);
    }
    if let Some(h) = &a.hostname {
        cfg["Hostname"] = json!(h);
    }
    if let Some(s) = &a.stop_signal {
        cfg["StopSignal"] = json!(s);
    }
    if let Some(t) = a.stop_timeout {
        cfg["StopTimeout"] = json!(t);
    }
    if let Some(h) = healthcheck(a)? {
        cfg["Healthcheck"] = h;
    }
    let hc = &mut cfg["HostConfig"];
    for (k, v) in resource_fields(&a.resources)? {
        hc[k] = v;
    }
    hc["GroupAdd"] = json!(a.group_add);
    hc["Ulimits"] = json!(a
        .ulimit
        .iter()
        .map(|u| parse_ulimit(u))
        .collect::<Result<Vec<_>>>()?);
    hc["Sysctls"] = json!(kv_map(&a.sysctl));
    if let Some(s) = &a.shm_size {
        hc["ShmSize"] = json!(ram_bytes(s)?);
    }
    hc["PidMode"] = json!(a.pid.clone().unwrap_or_default());
    hc["IpcMode"] = json!(a.ipc.clone().unwrap_or_default());
    hc["UTSMode"] = json!(a.uts.clone().unwrap_or_default());
    hc["CgroupnsMode"] = json!(a.cgroupns.clone().unwrap_or_default());
    hc["DeviceCgroupRules"] = json!(a.device_cgroup_rule);
    hc["OomScoreAdj"] = json!(a.oom_score_adj.unwrap_or(0));
    hc["OomKillDisable"] = json!(a.oom_kill_disable);
    hc["MemorySwappiness"] = json!(a.memory_swappiness.unwrap_or(-1));
    hc["Runtime"] = json!(a.runtime.clone().unwrap_or_default());
    if !a.link.is_empty() {
        hc["Links"] = json!(a.link);
    }
    if !a.device.is_empty() {
        hc["Devices"] = json!(a
            .device
            .iter()
            .map(|d| device_mapping(d))
            .collect::<Vec<_>>());
    }
    hc["DnsSearch"] = json!(a.dns_search);
    hc["DnsOptions"] = json!(a.dns_option);
    // As the docker CLI: `-v /path` is an anonymous volume (Config.Volumes),
    // anything with a `:` a bind or a named volume (HostConfig.Binds).
    let (anon, binds): (Vec<&String>, Vec<&String>) =
        a.volume.iter().partition(|v| !v.contains(':'));
    hc["Binds"] = json!(binds);
    let mounts = a
        .mount
        .iter()
        .map(|m| crate::volume::parse_mount(m))
        .collect::<Result<Vec<_>>>()?;
    hc["Mounts"] = json!(mounts);
    let tmpfs: serde_json::Map<String, Value> = a
        .tmpfs
        .iter()
        .map(|t| {
            let (p, o) = t.split_once(':').unwrap_or((t, ""));
            (p.to_string(), json!(o))
        })
        .collect();
    hc["Tmpfs"] = Value::Object(tmpfs);
    hc["VolumesFrom"] = json!(a.volumes_from);
    let (exposed, bindings) = parse_publish(&a.publish, &a.expose)?;
    hc["PortBindings"] = bindings;
    hc["PublishAllPorts"] = json!(a.publish_all);
    if !exposed.is_empty() {
        cfg["ExposedPorts"] = Value::Object(exposed);
    }
    if !a.network_alias.is_empty() || a.ip.is_some() || a.ip6.is_some() || a.mac_address.is_some() {
        let net = a.network.clone().unwrap_or_else(|| "bridge".into());
        let mut ep = json!({"Aliases": a.network_alias});
        if let Some(ip) = &a.ip {
            ep["IPAMConfig"]["IPv4Address"] = json!(ip);
        }
        if let Some(ip) = &a.ip6 {
            ep["IPAMConfig"]["IPv6Address"] = json!(ip);
        }
        if let Some(m) = &a.mac_address {
            ep["MacAddress"] = json!(m);
        }
        cfg["NetworkingConfig"] = json!({"EndpointsConfig": {net: ep}});
    }

    if !anon.is_empty() {
        let vols: serde_json::Map<String, Value> =
            anon.iter().map(|v| (v.to_string(), json!({}))).collect();
        cfg["Volumes"] = Value::Object(vols);
    }
    Ok(cfg)
}

/// `?filters=…` for a list of `key=value` filters, or nothing.
/// `--health-*` and `--no-healthcheck` as the API's `Healthcheck`, the
/// docker CLI's way: a test only with `--health-cmd`, timings on their own
/// keep the image's test.
pub(crate) fn healthcheck(a: &RunArgs) -> Result<Option<Value>> {
    let timings = [
        ("Interval", &a.health_interval),
        ("Timeout", &a.health_timeout),
        ("StartPeriod", &a.health_start_period),
        ("StartInterval", &a.health_start_interval),
    ];
    let any = a.health_cmd.is_some()
        || a.health_retries.is_some()
        || timings.iter().any(|(_, v)| v.is_some());
    if a.no_healthcheck {
        if any {
            bail!("--no-healthcheck conflicts with --health-* options");
        }
        return Ok(Some(json!({"Test": ["NONE"]})));
    }
    if !any {
        return Ok(None);
    }
    let mut h = json!({});
    if let Some(c) = &a.health_cmd {
        h["Test"] = json!(["CMD-SHELL", c]);
    }
    for (key, v) in timings {
        if let Some(v) = v {
            let ns =
                berth_util::gotime::duration_ns(v).map_err(|e| anyhow!("--health flag: {e}"))?;
            h[key] = json!(ns);
        }
    }
    if let Some(r) = a.health_retries {
        h["Retries"] = json!(r);
    }
    Ok(Some(h))
}

pub(crate) fn create(c: &Client, a: &RunArgs) -> Result<String> {
    let body = create_body(a)?;
    let q = match &a.name {
        Some(n) => query(&[("name", n.clone())]),
        None => String::new(),
    };
    let resp = match c.post_json(&format!("/containers/create{q}"), &body) {
        Ok(r) => r,
        Err(e) => {
            if let Some(d) = e.downcast_ref::<DaemonError>() {
                if d.status == 404 && d.message.starts_with("No such image") {
                    eprintln!("Unable to find image '{}' locally", a.image());
                }
            }
            return Err(e);
        }
    };
    let v = resp.json()?;
    for w in v["Warnings"].as_array().into_iter().flatten() {
        eprintln!("WARNING: {}", w.as_str().unwrap_or_default());
    }
    Ok(v["Id"].as_str().unwrap_or_default().to_string())
}
