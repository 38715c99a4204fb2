//! What each command does, over the Engine API.

use crate::client::{query, urlencode, Client, DaemonError};
use crate::format::{ago, human_size, print_rows};
use crate::stream;
use crate::*;
use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::io::{Read, Write};

pub fn dispatch(c: &Client, cmd: Cmd) -> i32 {
    let (res, fail_code) = match cmd {
        Cmd::Container { cmd } => container(c, cmd),
        Cmd::Image { cmd } => image(c, cmd),
        Cmd::Volume { cmd } => (crate::volume::dispatch(c, cmd), 1),
        Cmd::Network { cmd } => (crate::network::dispatch(c, cmd), 1),
        Cmd::System { cmd } => match cmd {
            SystemCmd::Df(a) => (crate::system::df(c, a), 1),
            SystemCmd::Prune(a) => (crate::system::system_prune(c, a), 1),
            SystemCmd::Info(a) => (info(c, a), 1),
        },
        Cmd::Short(s) => short(c, s),
    };
    match res {
        Ok(code) => code,
        Err(e) => {
            let daemon = e.downcast_ref::<DaemonError>();
            let msg = match daemon {
                Some(d) => d.to_string(),
                None => format!("{e:#}"),
            };
            eprintln!("{msg}");
            e.downcast_ref::<ExitWith>().map_or(fail_code, |x| x.0)
        }
    }
}

fn container(c: &Client, cmd: ContainerCmd) -> (Result<i32>, i32) {
    use ContainerCmd as C;
    match cmd {
        C::Run(a) => (run(c, a, true), 125),
        C::Create(a) => (run(c, a, false), 125),
        C::Start(a) => (start(c, a), 1),
        C::Ls(a) => (ps(c, a), 1),
        C::Logs(a) => (logs(c, a), 1),
        C::Inspect(a) => (inspect(c, a, Some("container")), 1),
        C::Top(a) => (top(c, a), 1),
        C::Stop(a) => (stop(c, a, false), 1),
        C::Kill(a) => (kill(c, a), 1),
        C::Restart(a) => (stop(c, a, true), 1),
        C::Rm(a) => (rm(c, a), 1),
        C::Wait(a) => (wait(c, a), 1),
        C::Attach(a) => (attach(c, a), 1),
        C::Exec(a) => (exec(c, a), 126),
        C::Rename(a) => (rename(c, a), 1),
        C::Port(a) => (port(c, a), 1),
        C::Commit(a) => (commit(c, a), 1),
        C::Diff(a) => (diff(c, a), 1),
        C::Export(a) => (export(c, a), 1),
        C::Update(a) => (update(c, a), 1),
        C::Cp(a) => (crate::cp::cp(c, a), 1),
        C::Stats(a) => (crate::stats::stats(c, a), 1),
        C::Pause(a) => (each(c, &a.containers, "pause"), 1),
        C::Unpause(a) => (each(c, &a.containers, "unpause"), 1),
        C::Prune(a) => (prune(c, a), 1),
    }
}

fn image(c: &Client, cmd: ImageCmd) -> (Result<i32>, i32) {
    use ImageCmd as I;
    match cmd {
        I::Ls(a) => (images(c, a), 1),
        I::Import(a) => (import(c, a), 1),
        I::Load(a) => (load(c, a), 1),
        I::Save(a) => (save(c, a), 1),
        I::Inspect(a) => (inspect(c, a, Some("image")), 1),
        I::Tag(a) => (tag(c, a), 1),
        I::Rm(a) => (rmi(c, a), 1),
        I::History(a) => (history(c, a), 1),
        I::Build(a) => (crate::build::build(c, a), 1),
        I::Prune(a) => (crate::system::image_prune(c, a), 1),
    }
}

fn short(c: &Client, cmd: ShortCmd) -> (Result<i32>, i32) {
    use ShortCmd as S;
    match cmd {
        S::Run(a) => container(c, ContainerCmd::Run(a)),
        S::Create(a) => container(c, ContainerCmd::Create(a)),
        S::Start(a) => container(c, ContainerCmd::Start(a)),
        S::Ps(a) => container(c, ContainerCmd::Ls(a)),
        S::Logs(a) => container(c, ContainerCmd::Logs(a)),
        S::Inspect(a) => (inspect(c, a, None), 1),
        S::Top(a) => container(c, ContainerCmd::Top(a)),
        S::Stop(a) => container(c, ContainerCmd::Stop(a)),
        S::Kill(a) => container(c, ContainerCmd::Kill(a)),
        S::Restart(a) => container(c, ContainerCmd::Restart(a)),
        S::Rm(a) => container(c, ContainerCmd::Rm(a)),
        S::Wait(a) => container(c, ContainerCmd::Wait(a)),
        S::Attach(a) => container(c, ContainerCmd::Attach(a)),
        S::Exec(a) => container(c, ContainerCmd::Exec(a)),
        S::Rename(a) => container(c, ContainerCmd::Rename(a)),
        S::Port(a) => container(c, ContainerCmd::Port(a)),
        S::Commit(a) => container(c, ContainerCmd::Commit(a)),
        S::Build(a) => image(c, ImageCmd::Build(a)),
        S::Diff(a) => container(c, ContainerCmd::Diff(a)),
        S::Export(a) => container(c, ContainerCmd::Export(a)),
        S::Update(a) => container(c, ContainerCmd::Update(a)),
        S::Cp(a) => container(c, ContainerCmd::Cp(a)),
        S::Stats(a) => container(c, ContainerCmd::Stats(a)),
        S::Pause(a) => container(c, ContainerCmd::Pause(a)),
        S::Unpause(a) => container(c, ContainerCmd::Unpause(a)),
        S::Images(a) => image(c, ImageCmd::Ls(a)),
        S::Import(a) => image(c, ImageCmd::Import(a)),
        S::Load(a) => image(c, ImageCmd::Load(a)),
        S::Save(a) => image(c, ImageCmd::Save(a)),
        S::Tag(a) => image(c, ImageCmd::Tag(a)),
        S::Rmi(a) => image(c, ImageCmd::Rm(a)),
        S::Version(a) => (version(c, a), 1),
        S::Events(a) => (crate::system::events(c, a), 1),
        S::Info(a) => (info(c, a), 1),
    }
}

/// Docker's RAMInBytes: binary units.
/// `-p [ip:][hostPort:]containerPort[/proto]` (ports may be ranges) and
/// `--expose`, as the docker CLI turns them into ExposedPorts and PortBindings.
fn parse_publish(
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
fn parse_ulimit(s: &str) -> Result<Value> {
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
fn restart_policy(s: &str) -> Result<Value> {
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
fn resource_fields(r: &crate::ResourceArgs) -> Result<serde_json::Map<String, Value>> {
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

fn update(c: &Client, a: crate::UpdateArgs) -> Result<i32> {
    let mut body = Value::Object(resource_fields(&a.resources)?);
    if let Some(r) = &a.restart {
        body["RestartPolicy"] = restart_policy(r)?;
    }
    let mut code = 0;
    for n in &a.containers {
        match c.post_json(&format!("/containers/{}/update", urlencode(n)), &body) {
            Ok(_) => println!("{n}"),
            Err(e) => {
                eprintln!("{e}");
                code = 1;
            }
        }
    }
    Ok(code)
}

/// `HOST[:CONTAINER][:PERMS]`, as the docker CLI reads `--device`: a
/// second field of only r, w and m letters is the permissions.
fn device_mapping(spec: &str) -> Value {
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

pub(crate) fn ram_bytes(s: &str) -> Result<i64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.trim_end_matches('b');
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num.parse().map_err(|_| anyhow!("invalid size: '{s}'"))?;
    Ok((n * mult as f64) as i64)
}

fn env_file(path: &str) -> Result<Vec<String>> {
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

fn create_body(a: &RunArgs) -> Result<Value> {
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

/// Docker's PORTS column: `127.0.0.1:8080->80/tcp, 443/tcp`.
fn ports_text(ports: &Value) -> String {
    let mut items: Vec<(u64, String)> = ports
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let private = p["PrivatePort"].as_u64().unwrap_or(0);
            let proto = p["Type"].as_str().unwrap_or("tcp");
            let text = match p["PublicPort"].as_u64() {
                Some(public) => format!(
                    "{}:{public}->{private}/{proto}",
                    p["IP"].as_str().unwrap_or("0.0.0.0")
                ),
                None => format!("{private}/{proto}"),
            };
            (private, text)
        })
        .collect();
    items.sort();
    items
        .into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join(", ")
}

fn port(c: &Client, a: PortArgs) -> Result<i32> {
    let v = c
        .get(&format!("/containers/{}/json", urlencode(&a.container)))?
        .json()?;
    let want = a.private.as_deref().map(|p| {
        if p.contains('/') {
            p.to_string()
        } else {
            format!("{p}/tcp")
        }
    });
    let mut rows: Vec<String> = Vec::new();
    for (k, binds) in v["NetworkSettings"]["Ports"]
        .as_object()
        .into_iter()
        .flatten()
    {
        if want.as_ref().is_some_and(|w| w != k) {
            continue;
        }
        for b in binds.as_array().into_iter().flatten() {
            let addr = format!(
                "{}:{}",
                b["HostIp"].as_str().unwrap_or(""),
                b["HostPort"].as_str().unwrap_or("")
            );
            rows.push(if want.is_some() {
                addr
            } else {
                format!("{k} -> {addr}")
            });
        }
    }
    if rows.is_empty() && want.is_some() {
        bail!(
            "Error: No public port '{}' published for {}",
            want.unwrap_or_default(),
            a.container
        );
    }
    rows.sort();
    for r in rows {
        println!("{r}");
    }
    Ok(0)
}

fn short_id(id: &str) -> String {
    id.trim_start_matches("sha256:").chars().take(12).collect()
}

fn create(c: &Client, a: &RunArgs) -> Result<String> {
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

/// Waits for the container in the background; the answer's headers arrive
/// before we start it, so its exit cannot be missed.
/// Ends the command with the error's words and a status of its own.
#[derive(Debug)]
struct ExitWith(i32, anyhow::Error);

impl std::fmt::Display for ExitWith {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.1.downcast_ref::<DaemonError>() {
            Some(d) => write!(f, "{d}"),
            None => write!(f, "{:#}", self.1),
        }
    }
}

impl std::error::Error for ExitWith {}

/// A start that failed: as the docker CLI, 127 or 126 when the daemon ended
/// the container with that status (command not found, not executable), else 125.
fn start_failed(e: anyhow::Error, exit_code: Option<i64>) -> anyhow::Error {
    let code = match exit_code {
        Some(c @ (126 | 127)) => c as i32,
        _ => 125,
    };
    ExitWith(code, e).into()
}

fn wait_handle(c: &Client, id: &str, cond: &str) -> Result<std::thread::JoinHandle<i32>> {
    let resp = c.post(&format!("/containers/{id}/wait?condition={cond}"))?;
    Ok(std::thread::spawn(move || {
        resp.json()
            .ok()
            .and_then(|v| v["StatusCode"].as_i64())
            .map(|n| n as i32)
            .unwrap_or(125)
    }))
}

struct Session {
    out: std::thread::JoinHandle<()>,
    detached: std::sync::mpsc::Receiver<bool>,
}

/// Starts moving bytes between our terminal and a hijacked stream.
fn session(
    resp: crate::client::Response,
    conn: crate::client::Conn,
    tty: bool,
    stdin: bool,
    keys: Vec<u8>,
) -> Session {
    let (tx, rx) = std::sync::mpsc::channel();
    if stdin {
        std::thread::spawn(move || {
            let d = stream::pump_stdin(conn, &keys);
            let _ = tx.send(d);
        });
    }
    let out = std::thread::spawn(move || {
        let body = resp.body;
        let _ = if tty {
            stream::raw_copy(body)
        } else {
            stream::demux(body)
        };
    });
    Session { out, detached: rx }
}

impl Session {
    /// True when the user detached rather than the stream ending.
    fn finish(self) -> bool {
        loop {
            if let Ok(true) = self.detached.try_recv() {
                return true;
            }
            if self.out.is_finished() {
                let _ = self.out.join();
                return matches!(self.detached.try_recv(), Ok(true));
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

fn detach_key_bytes(spec: Option<&str>) -> Vec<u8> {
    let spec = spec.unwrap_or("ctrl-p,ctrl-q");
    spec.split(',')
        .filter_map(|k| {
            let k = k.trim();
            match k.strip_prefix("ctrl-") {
                Some(c) if c.len() == 1 && c.as_bytes()[0].is_ascii_alphabetic() => {
                    Some(c.as_bytes()[0].to_ascii_lowercase() - b'a' + 1)
                }
                Some("@") => Some(0),
                Some("[") => Some(27),
                Some(_) => None,
                None => k.bytes().next(),
            }
        })
        .collect()
}

fn resize_loop(c: &Client, path: String) {
    let c = c.clone();
    let send = move |c: &Client| {
        if let Some((h, w)) = stream::window_size() {
            let _ = c.post(&format!("{path}?h={h}&w={w}"));
        }
    };
    send(&c);
    std::thread::spawn(move || {
        if let Ok(mut sig) = signal_hook::iterator::Signals::new([signal_hook::consts::SIGWINCH]) {
            for _ in sig.forever() {
                send(&c);
            }
        }
    });
}

fn run(c: &Client, a: RunArgs, start_it: bool) -> Result<i32> {
    if a.rm && a.detach && a.restart != "no" {
        bail!("conflicting options: cannot specify both --restart and --rm");
    }
    let id = create(c, &a)?;
    if !start_it {
        println!("{id}");
        return Ok(0);
    }
    if a.detach {
        if let Err(e) = c.post(&format!("/containers/{id}/start")) {
            let v = c
                .get(&format!("/containers/{id}/json"))
                .and_then(|r| r.json());
            let code = v.ok().and_then(|v| v["State"]["ExitCode"].as_i64());
            return Err(start_failed(e, code));
        }
        println!("{id}");
        return Ok(0);
    }
    let tty = a.tty && stream::is_tty(0);
    let stdin = a.interactive;
    let keys = detach_key_bytes(a.detach_keys.as_deref());
    let q = query(&[
        ("stream", "1".into()),
        ("stdin", if stdin { "1" } else { "0" }.into()),
        ("stdout", "1".into()),
        ("stderr", "1".into()),
        (
            "detachKeys",
            a.detach_keys
                .clone()
                .unwrap_or_else(|| "ctrl-p,ctrl-q".into()),
        ),
    ]);
    let (resp, conn) = c.hijack(&format!("/containers/{id}/attach{q}"), None)?;
    let waiter = wait_handle(c, &id, if a.rm { "removed" } else { "next-exit" })?;
    let _raw = if a.tty && stdin && stream::is_tty(0) {
        Some(stream::RawMode::enable())
    } else {
        None
    };
    let sess = session(resp, conn, a.tty, stdin, keys);
    if let Err(e) = c.post(&format!("/containers/{id}/start")) {
        drop(_raw);
        // The daemon ends a container whose process could not start with
        // Docker's status for it, and the waiter hears that.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !waiter.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let code = match waiter.is_finished() {
            true => waiter.join().ok().map(i64::from),
            false => None,
        };
        return Err(start_failed(e, code));
    }
    if tty {
        resize_loop(c, format!("/containers/{id}/resize"));
    }
    if sess.finish() {
        drop(_raw);
        return Ok(0);
    }
    drop(_raw);
    Ok(waiter.join().unwrap_or(125))
}

fn start(c: &Client, a: StartArgs) -> Result<i32> {
    if a.attach || a.interactive {
        let id = a.containers[0].clone();
        let info = c
            .get(&format!("/containers/{}/json", urlencode(&id)))?
            .json()?;
        let tty = info["Config"]["Tty"].as_bool().unwrap_or(false);
        let stdin = a.interactive && info["Config"]["OpenStdin"].as_bool().unwrap_or(false);
        let q = query(&[
            ("stream", "1".into()),
            ("stdin", if stdin { "1" } else { "0" }.into()),
            ("stdout", "1".into()),
            ("stderr", "1".into()),
        ]);
        let (resp, conn) = c.hijack(&format!("/containers/{id}/attach{q}"), None)?;
        let waiter = wait_handle(c, &id, "next-exit")?;
        let _raw = if tty && stdin && stream::is_tty(0) {
            Some(stream::RawMode::enable())
        } else {
            None
        };
        let sess = session(
            resp,
            conn,
            tty,
            stdin,
            detach_key_bytes(a.detach_keys.as_deref()),
        );
        c.post(&format!("/containers/{id}/start"))?;
        if sess.finish() {
            return Ok(0);
        }
        drop(_raw);
        return Ok(waiter.join().unwrap_or(1));
    }
    each(c, &a.containers, "start")
}

/// Runs `POST /containers/{id}/{action}` for each name, printing each as docker does.
fn each(c: &Client, names: &[String], action: &str) -> Result<i32> {
    let mut code = 0;
    for n in names {
        match c.post(&format!("/containers/{}/{action}", urlencode(n))) {
            Ok(_) => println!("{n}"),
            Err(e) => {
                eprintln!("{e}");
                code = 1;
            }
        }
    }
    Ok(code)
}

pub(crate) fn filters_json(filters: &[String]) -> Result<String> {
    let mut m: serde_json::Map<String, Value> = serde_json::Map::new();
    for f in filters {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| anyhow!("bad format of filter (expected name=value)"))?;
        m.entry(k.to_string())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .map(|o| o.insert(v.to_string(), json!(true)));
    }
    Ok(Value::Object(m).to_string())
}

/// `?filters=…` for a list of `key=value` filters, or nothing.
/// `--health-*` and `--no-healthcheck` as the API's `Healthcheck`, the
/// docker CLI's way: a test only with `--health-cmd`, timings on their own
/// keep the image's test.
fn healthcheck(a: &RunArgs) -> Result<Option<Value>> {
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
            let ns = berth_build::duration_ns(v).map_err(|e| anyhow!("--health flag: {e}"))?;
            h[key] = json!(ns);
        }
    }
    if let Some(r) = a.health_retries {
        h["Retries"] = json!(r);
    }
    Ok(Some(h))
}

pub(crate) fn filters_query(filters: &[String]) -> Result<String> {
    if filters.is_empty() {
        return Ok(String::new());
    }
    Ok(query(&[("filters", filters_json(filters)?)]))
}

/// `key=value` flags (labels, options) as a JSON object; a bare key maps to "".
pub(crate) fn kv_map(list: &[String]) -> serde_json::Map<String, Value> {
    list.iter()
        .map(|s| {
            let (k, v) = s.split_once('=').unwrap_or((s, ""));
            (k.to_string(), json!(v))
        })
        .collect()
}

/// A prune's "Deleted …:" list, as the docker CLI prints it.
pub(crate) fn print_deleted(title: &str, items: &Value) {
    let items = items.as_array().cloned().unwrap_or_default();
    if !items.is_empty() {
        println!("Deleted {title}:");
        for i in items {
            println!("{}", i.as_str().unwrap_or_default());
        }
        println!();
    }
}

fn ps(c: &Client, a: PsArgs) -> Result<i32> {
    let mut q = vec![];
    if a.all {
        q.push(("all", "1".to_string()));
    }
    if a.latest {
        q.push(("limit", "1".to_string()));
    } else if let Some(n) = a.last {
        q.push(("limit", n.to_string()));
    }
    if a.size {
        q.push(("size", "1".to_string()));
    }
    if !a.filter.is_empty() {
        q.push(("filters", filters_json(&a.filter)?));
    }
    let list = c.get(&format!("/containers/json{}", query(&q)))?.json()?;
    let list = list.as_array().cloned().unwrap_or_default();
    if a.quiet {
        let mut out = String::new();
        for v in &list {
            let id = v["Id"].as_str().unwrap_or_default();
            out.push_str(if a.no_trunc {
                id
            } else {
                &id[..12.min(id.len())]
            });
            out.push('\n');
        }
        print!("{out}");
        return Ok(0);
    }
    let rows: Vec<Value> = list
        .iter()
        .map(|v| {
            let id = v["Id"].as_str().unwrap_or_default();
            let mut cmd = v["Command"].as_str().unwrap_or_default().to_string();
            if !a.no_trunc && cmd.chars().count() > 20 {
                cmd = cmd.chars().take(19).collect::<String>() + "…";
            }
            let names: Vec<String> = v["Names"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|n| n.as_str().map(|s| s.trim_start_matches('/').to_string()))
                .collect();
            let created = v["Created"].as_i64().unwrap_or(0);
            let labels = v["Labels"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            let size = if a.size {
                format!(
                    "{} (virtual {})",
                    human_size(v["SizeRw"].as_f64().unwrap_or(0.0)),
                    human_size(v["SizeRootFs"].as_f64().unwrap_or(0.0))
                )
            } else {
                String::new()
            };
            json!({
                "ID": if a.no_trunc { id.to_string() } else { short_id(id) },
                "Image": v["Image"],
                "Command": format!("\"{cmd}\""),
                "CreatedAt": chrono::DateTime::from_timestamp(created, 0)
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string()).unwrap_or_default(),
                "RunningFor": ago(created),
                "Ports": ports_text(&v["Ports"]),
                "Status": v["Status"],
                "State": v["State"],
                "Size": size,
                "Names": names.join(","),
                "Labels": labels,
                "Mounts": "",
                "Networks": v["HostConfig"]["NetworkMode"],
            })
        })
        .collect();
    let default = if a.size {
        "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}\t{{.Size}}"
    } else {
        "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
    };
    print_rows(
        &a.format,
        default,
        &rows,
        &[
            ("ID", "CONTAINER ID"),
            ("Image", "IMAGE"),
            ("Command", "COMMAND"),
            ("CreatedAt", "CREATED AT"),
            ("RunningFor", "CREATED"),
            ("Ports", "PORTS"),
            ("Status", "STATUS"),
            ("State", "STATE"),
            ("Size", "SIZE"),
            ("Names", "NAMES"),
            ("Labels", "LABELS"),
            ("Mounts", "MOUNTS"),
            ("Networks", "NETWORKS"),
        ],
    )?;
    Ok(0)
}

fn logs(c: &Client, a: LogsArgs) -> Result<i32> {
    let info = c
        .get(&format!("/containers/{}/json", urlencode(&a.container)))?
        .json()?;
    let tty = info["Config"]["Tty"].as_bool().unwrap_or(false);
    let mut q = vec![
        ("stdout", "1".to_string()),
        ("stderr", "1".to_string()),
        ("tail", a.tail.clone()),
    ];
    if a.follow {
        q.push(("follow", "1".into()));
    }
    if a.timestamps {
        q.push(("timestamps", "1".into()));
    }
    if let Some(s) = &a.since {
        q.push(("since", to_unix(s)?));
    }
    if let Some(u) = &a.until {
        q.push(("until", to_unix(u)?));
    }
    let resp = c.get(&format!(
        "/containers/{}/logs{}",
        urlencode(&a.container),
        query(&q)
    ))?;
    if tty {
        stream::raw_copy(resp.body)?;
    } else {
        stream::demux(resp.body)?;
    }
    Ok(0)
}

/// `--since 10m`, `--since 2026-01-01T00:00:00Z` or unix seconds → unix seconds.
pub(crate) fn to_unix(s: &str) -> Result<String> {
    if s.parse::<f64>().is_ok() {
        return Ok(s.to_string());
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(format!(
            "{}.{:09}",
            t.timestamp(),
            t.timestamp_subsec_nanos()
        ));
    }
    let ns = berth_build::duration_ns(s).map_err(|_| anyhow!("invalid value for since: {s}"))?;
    let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
    Ok(format!("{:.3}", now - ns as f64 / 1e9))
}

fn inspect(c: &Client, a: InspectArgs, kind: Option<&str>) -> Result<i32> {
    let kind = kind.or(a.kind.as_deref());
    let mut out = Vec::new();
    let mut code = 0;
    for n in &a.names {
        let enc = urlencode(n);
        let got = match kind {
            Some("container") => c.get(&format!("/containers/{enc}/json?size={}", a.size as u8)),
            Some("image") => c.get(&format!("/images/{n}/json")),
            _ => c
                .get(&format!("/containers/{enc}/json?size={}", a.size as u8))
                .or_else(|_| c.get(&format!("/images/{n}/json"))),
        };
        match got.and_then(|r| r.json()) {
            Ok(v) => out.push(v),
            Err(e) => {
                let missing = kind
                    .map(|k| if k == "image" { "image" } else { "container" })
                    .unwrap_or("object");
                match e.downcast_ref::<DaemonError>() {
                    Some(d) if d.status == 404 => eprintln!("Error: No such {missing}: {n}"),
                    _ => eprintln!("{e}"),
                }
                code = 1;
            }
        }
    }
    if a.format.is_empty() {
        let mut buf = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
        serde::Serialize::serialize(&Value::Array(out), &mut ser)?;
        println!("{}", String::from_utf8_lossy(&buf));
    } else {
        let f = if a.format == "json" {
            "{{json .}}".to_string()
        } else {
            a.format.clone()
        };
        for v in &out {
            println!("{}", crate::format::render(&f, v)?);
        }
    }
    Ok(code)
}

fn top(c: &Client, a: TopArgs) -> Result<i32> {
    let q = if a.ps_args.is_empty() {
        String::new()
    } else {
        query(&[("ps_args", a.ps_args.join(" "))])
    };
    let v = c
        .get(&format!("/containers/{}/top{q}", urlencode(&a.container)))?
        .json()?;
    let mut lines = vec![v["Titles"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| t.as_str().unwrap_or_default().to_string())
        .collect::<Vec<_>>()
        .join("\t")];
    for p in v["Processes"].as_array().into_iter().flatten() {
        lines.push(
            p.as_array()
                .into_iter()
                .flatten()
                .map(|x| x.as_str().unwrap_or_default().to_string())
                .collect::<Vec<_>>()
                .join("\t"),
        );
    }
    print!("{}", crate::format::align(&lines));
    Ok(0)
}

fn stop(c: &Client, a: StopArgs, restart: bool) -> Result<i32> {
    let mut q = vec![];
    if let Some(t) = a.time {
        q.push(("t", t.to_string()));
    }
    if let Some(s) = &a.signal {
        q.push(("signal", s.clone()));
    }
    let action = if restart { "restart" } else { "stop" };
    let mut code = 0;
    for n in &a.containers {
        match c.post(&format!(
            "/containers/{}/{action}{}",
            urlencode(n),
            query(&q)
        )) {
            Ok(_) => println!("{n}"),
            Err(e) => {
                eprintln!("{e}");
                code = 1;
            }
        }
    }
    Ok(code)
}

fn kill(c: &Client, a: KillArgs) -> Result<i32> {
    let mut code = 0;
    for n in &a.containers {
        match c.post(&format!(
            "/containers/{}/kill{}",
            urlencode(n),
            query(&[("signal", a.signal.clone())])
        )) {
            Ok(_) => println!("{n}"),
            Err(e) => {
                eprintln!("{e}");
                code = 1;
            }
        }
    }
    Ok(code)
}

fn rm(c: &Client, a: RmArgs) -> Result<i32> {
    let mut code = 0;
    for n in &a.containers {
        let q = query(&[
            ("force", (a.force as u8).to_string()),
            ("v", (a.volumes as u8).to_string()),
        ]);
        match c.delete(&format!("/containers/{}{q}", urlencode(n))) {
            Ok(_) => println!("{n}"),
            Err(e) => {
                eprintln!("{e}");
                code = 1;
            }
        }
    }
    Ok(code)
}

fn wait(c: &Client, a: NamesArgs) -> Result<i32> {
    let mut code = 0;
    for n in &a.containers {
        match c
            .post(&format!("/containers/{}/wait", urlencode(n)))
            .and_then(|r| r.json())
        {
            Ok(v) => println!("{}", v["StatusCode"]),
            Err(e) => {
                eprintln!("{e}");
                code = 1;
            }
        }
    }
    Ok(code)
}

fn attach(c: &Client, a: AttachArgs) -> Result<i32> {
    let info = c
        .get(&format!("/containers/{}/json", urlencode(&a.container)))?
        .json()?;
    if !info["State"]["Running"].as_bool().unwrap_or(false) {
        bail!("You cannot attach to a stopped container, start it first");
    }
    let id = info["Id"].as_str().unwrap_or_default().to_string();
    let tty = info["Config"]["Tty"].as_bool().unwrap_or(false);
    let stdin = !a.no_stdin && info["Config"]["OpenStdin"].as_bool().unwrap_or(false);
    let q = query(&[
        ("stream", "1".into()),
        ("stdin", if stdin { "1" } else { "0" }.into()),
        ("stdout", "1".into()),
        ("stderr", "1".into()),
        (
            "detachKeys",
            a.detach_keys
                .clone()
                .unwrap_or_else(|| "ctrl-p,ctrl-q".into()),
        ),
    ]);
    let (resp, conn) = c.hijack(&format!("/containers/{id}/attach{q}"), None)?;
    let _raw = if tty && stdin && stream::is_tty(0) {
        Some(stream::RawMode::enable())
    } else {
        None
    };
    if tty && stream::is_tty(0) {
        resize_loop(c, format!("/containers/{id}/resize"));
    }
    let sess = session(
        resp,
        conn,
        tty,
        stdin,
        detach_key_bytes(a.detach_keys.as_deref()),
    );
    if sess.finish() {
        return Ok(0);
    }
    drop(_raw);
    let v = c.get(&format!("/containers/{id}/json"))?.json()?;
    Ok(v["State"]["ExitCode"].as_i64().unwrap_or(0) as i32)
}

fn exec(c: &Client, a: ExecArgs) -> Result<i32> {
    let tty = a.tty && stream::is_tty(0);
    let body = json!({
        "AttachStdin": a.interactive && !a.detach,
        "AttachStdout": !a.detach,
        "AttachStderr": !a.detach,
        "Tty": a.tty,
        "Env": a.env,
        "Cmd": a.cmd(),
        "Privileged": a.privileged,
        "User": a.user.clone().unwrap_or_default(),
        "WorkingDir": a.workdir.clone().unwrap_or_default(),
        "DetachKeys": a.detach_keys.clone().unwrap_or_default(),
        "ConsoleSize": if tty { stream::window_size().map(|(h, w)| json!([h, w])).unwrap_or(Value::Null) } else { Value::Null },
    });
    let v = c
        .post_json(
            &format!("/containers/{}/exec", urlencode(a.container())),
            &body,
        )?
        .json()?;
    let exec_id = v["Id"].as_str().unwrap_or_default().to_string();
    if a.detach {
        c.post_json(
            &format!("/exec/{exec_id}/start"),
            &json!({"Detach": true, "Tty": a.tty}),
        )?;
        return Ok(0);
    }
    let (resp, conn) = c.hijack(
        &format!("/exec/{exec_id}/start"),
        Some(json!({"Detach": false, "Tty": a.tty})),
    )?;
    let _raw = if a.tty && a.interactive && stream::is_tty(0) {
        Some(stream::RawMode::enable())
    } else {
        None
    };
    if tty {
        resize_loop(c, format!("/exec/{exec_id}/resize"));
    }
    let sess = session(
        resp,
        conn,
        a.tty,
        a.interactive,
        detach_key_bytes(a.detach_keys.as_deref()),
    );
    sess.finish();
    drop(_raw);
    let v = c.get(&format!("/exec/{exec_id}/json"))?.json()?;
    Ok(v["ExitCode"].as_i64().unwrap_or(0) as i32)
}

fn rename(c: &Client, a: RenameArgs) -> Result<i32> {
    c.post(&format!(
        "/containers/{}/rename{}",
        urlencode(&a.container),
        query(&[("name", a.new_name.clone())])
    ))?;
    Ok(0)
}

fn commit(c: &Client, a: CommitArgs) -> Result<i32> {
    let mut q = vec![("container", a.container.clone())];
    if let Some(r) = &a.reference {
        let (repo, tag) = split_reference(r);
        q.push(("repo", repo));
        q.push(("tag", tag));
    }
    if let Some(m) = &a.message {
        q.push(("comment", m.clone()));
    }
    if let Some(au) = &a.author {
        q.push(("author", au.clone()));
    }
    for ch in &a.change {
        q.push(("changes", ch.clone()));
    }
    q.push(("pause", if a.pause { "1" } else { "0" }.to_string()));
    let v = c
        .post_json(&format!("/commit{}", query(&q)), &json!({}))?
        .json()?;
    println!("{}", v["Id"].as_str().unwrap_or_default());
    Ok(0)
}

/// `repo[:tag]`, where a `:` inside a registry's host:port is not a tag.
fn split_reference(r: &str) -> (String, String) {
    match r.rfind(':') {
        Some(i) if !r[i + 1..].contains('/') => (r[..i].to_string(), r[i + 1..].to_string()),
        _ => (r.to_string(), String::new()),
    }
}

fn diff(c: &Client, a: DiffArgs) -> Result<i32> {
    let v = c
        .get(&format!("/containers/{}/changes", urlencode(&a.container)))?
        .json()?;
    let mut out = String::new();
    for ch in v.as_array().into_iter().flatten() {
        let kind = match ch["Kind"].as_u64() {
            Some(0) => 'C',
            Some(1) => 'A',
            _ => 'D',
        };
        out.push_str(&format!(
            "{kind} {}\n",
            ch["Path"].as_str().unwrap_or_default()
        ));
    }
    print!("{out}");
    Ok(0)
}

pub(crate) fn confirm(prompt: &str) -> bool {
    eprint!("{prompt} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut s = String::new();
    let _ = std::io::stdin().read_line(&mut s);
    matches!(s.trim(), "y" | "Y" | "yes")
}

fn prune(c: &Client, a: PruneArgs) -> Result<i32> {
    if !a.force
        && !confirm(
            "WARNING! This will remove all stopped containers.\nAre you sure you want to continue?",
        )
    {
        return Ok(0);
    }
    let q = filters_query(&a.filter)?;
    let v = c.post(&format!("/containers/prune{q}"))?.json()?;
    print_deleted("Containers", &v["ContainersDeleted"]);
    println!(
        "Total reclaimed space: {}",
        human_size(v["SpaceReclaimed"].as_f64().unwrap_or(0.0))
    );
    Ok(0)
}

fn images(c: &Client, a: ImagesArgs) -> Result<i32> {
    let mut filters = a.filter.clone();
    if let Some(r) = &a.reference {
        filters.push(format!("reference={r}"));
    }
    let mut q = vec![];
    if a.all {
        q.push(("all", "1".to_string()));
    }
    if !filters.is_empty() {
        q.push(("filters", filters_json(&filters)?));
    }
    let list = c.get(&format!("/images/json{}", query(&q)))?.json()?;
    let mut rows = Vec::new();
    for v in list.as_array().into_iter().flatten() {
        let id = v["Id"].as_str().unwrap_or_default();
        let shown_id = if a.no_trunc {
            id.to_string()
        } else {
            short_id(id)
        };
        let created = v["Created"].as_i64().unwrap_or(0);
        let tags: Vec<String> = v["RepoTags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect();
        let tags = if tags.is_empty() {
            vec!["<none>:<none>".to_string()]
        } else {
            tags
        };
        for t in tags {
            let (repo, tag) = t.rsplit_once(':').unwrap_or((&t, "<none>"));
            rows.push(json!({
                "Repository": repo, "Tag": tag, "ID": shown_id,
                "Digest": "<none>",
                "CreatedSince": ago(created),
                "CreatedAt": chrono::DateTime::from_timestamp(created, 0)
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string()).unwrap_or_default(),
                "Size": human_size(v["Size"].as_f64().unwrap_or(0.0)),
                "Containers": v["Containers"],
            }));
        }
    }
    if a.quiet {
        let mut seen = std::collections::HashSet::new();
        for r in &rows {
            let id = r["ID"].as_str().unwrap_or_default().to_string();
            if seen.insert(id.clone()) {
                println!("{id}");
            }
        }
        return Ok(0);
    }
    let default = if a.digests {
        "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    } else {
        "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    };
    print_rows(
        &a.format,
        default,
        &rows,
        &[
            ("Repository", "REPOSITORY"),
            ("Tag", "TAG"),
            ("ID", "IMAGE ID"),
            ("Digest", "DIGEST"),
            ("CreatedSince", "CREATED"),
            ("CreatedAt", "CREATED AT"),
            ("Size", "SIZE"),
            ("Containers", "CONTAINERS"),
        ],
    )?;
    Ok(0)
}

fn import(c: &Client, a: ImportArgs) -> Result<i32> {
    let reader: Box<dyn Read> = if a.file == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(&a.file).with_context(|| format!("open {}", a.file))?)
    };
    let mut q: Vec<(&str, String)> = vec![("fromSrc", "-".into())];
    if let Some(r) = &a.reference {
        let (repo, tag) = split_reference(r);
        q.push(("repo", repo));
        if !tag.is_empty() {
            q.push(("tag", tag));
        }
    }
    for ch in &a.change {
        q.push(("changes", ch.clone()));
    }
    if let Some(m) = &a.message {
        q.push(("message", m.clone()));
    }
    let resp = c.post_stream(
        &format!("/images/create{}", query(&q)),
        "application/x-tar",
        reader,
    )?;
    let body = resp.bytes()?;
    for line in String::from_utf8_lossy(&body).lines() {
        if let Ok(v) = serde_json::from_str::<Value>(line) {
            if let Some(e) = v["error"].as_str() {
                bail!("{e}");
            }
            if let Some(s) = v["status"].as_str() {
                println!("{s}");
            }
        }
    }
    Ok(0)
}

fn load(c: &Client, a: LoadArgs) -> Result<i32> {
    let reader: Box<dyn Read> = match &a.input {
        Some(p) => Box::new(std::fs::File::open(p).with_context(|| format!("open {p}"))?),
        None => {
            if stream::is_tty(0) {
                bail!("requested load from stdin, but stdin is empty");
            }
            Box::new(std::io::stdin())
        }
    };
    let resp = c.post_stream(
        &format!("/images/load?quiet={}", a.quiet as u8),
        "application/x-tar",
        reader,
    )?;
    let body = resp.bytes()?;
    for line in String::from_utf8_lossy(&body).lines() {
        if let Ok(v) = serde_json::from_str::<Value>(line) {
            if let Some(e) = v["error"].as_str() {
                bail!("{e}");
            }
            if let Some(s) = v["stream"].as_str() {
                print!("{s}");
            }
        }
    }
    Ok(0)
}

fn save(c: &Client, a: SaveArgs) -> Result<i32> {
    let q: Vec<(&str, String)> = a.images.iter().map(|i| ("names", i.clone())).collect();
    write_tar(c, &format!("/images/get{}", query(&q)), a.output.as_deref())
}

fn export(c: &Client, a: ExportArgs) -> Result<i32> {
    let path = format!("/containers/{}/export", urlencode(&a.container));
    write_tar(c, &path, a.output.as_deref())
}

/// A tar from the daemon to `output` (whole or not at all) or to stdout,
/// never to a terminal.
fn write_tar(c: &Client, path: &str, output: Option<&str>) -> Result<i32> {
    if output.is_none() && stream::is_tty(1) {
        bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
    }
    let mut resp = c.get(path)?;
    match output {
        Some(p) => {
            let tmp = format!("{p}.berth-tmp");
            let mut f = std::fs::File::create(&tmp).with_context(|| format!("create {p}"))?;
            std::io::copy(&mut resp.body, &mut f)?;
            f.sync_all()?;
            std::fs::rename(&tmp, p)?;
        }
        None => {
            std::io::copy(&mut resp.body, &mut std::io::stdout().lock())?;
        }
    }
    Ok(0)
}

fn tag(c: &Client, a: TagArgs) -> Result<i32> {
    let (repo, tag) = match a
        .target
        .rfind(':')
        .filter(|&i| !a.target[i + 1..].contains('/'))
    {
        Some(i) => (a.target[..i].to_string(), a.target[i + 1..].to_string()),
        None => (a.target.clone(), "latest".to_string()),
    };
    c.post(&format!(
        "/images/{}/tag{}",
        a.source,
        query(&[("repo", repo), ("tag", tag)])
    ))?;
    Ok(0)
}

fn rmi(c: &Client, a: RmiArgs) -> Result<i32> {
    let mut code = 0;
    for i in &a.images {
        match c
            .delete(&format!(
                "/images/{i}{}",
                query(&[("force", (a.force as u8).to_string())])
            ))
            .and_then(|r| r.json())
        {
            Ok(v) => {
                for item in v.as_array().into_iter().flatten() {
                    if let Some(u) = item["Untagged"].as_str() {
                        println!("Untagged: {u}");
                    }
                    if let Some(d) = item["Deleted"].as_str() {
                        println!("Deleted: {d}");
                    }
                }
            }
            Err(e) => {
                eprintln!("{e}");
                code = 1;
            }
        }
    }
    Ok(code)
}

fn history(c: &Client, a: HistoryArgs) -> Result<i32> {
    let v = c.get(&format!("/images/{}/history", a.image))?.json()?;
    let rows: Vec<Value> = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| {
            let id = h["Id"].as_str().unwrap_or_default();
            let mut by = h["CreatedBy"].as_str().unwrap_or_default().to_string();
            if !a.no_trunc && by.chars().count() > 45 {
                by = by.chars().take(44).collect::<String>() + "…";
            }
            json!({
                "ID": if id == "<missing>" || a.no_trunc { id.to_string() } else { short_id(id) },
                "CreatedSince": if a.human {
                    ago(h["Created"].as_i64().unwrap_or(0))
                } else {
                    chrono::DateTime::from_timestamp(h["Created"].as_i64().unwrap_or(0), 0)
                        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, false))
                        .unwrap_or_default()
                },
                "CreatedBy": by,
                "Size": if a.human {
                    human_size(h["Size"].as_f64().unwrap_or(0.0))
                } else {
                    h["Size"].as_i64().unwrap_or(0).to_string()
                },
                "Comment": h["Comment"],
            })
        })
        .collect();
    if a.quiet {
        for r in rows {
            println!("{}", r["ID"].as_str().unwrap_or_default());
        }
        return Ok(0);
    }
    print_rows(
        &a.format,
        "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}",
        &rows,
        &[
            ("ID", "IMAGE"),
            ("CreatedSince", "CREATED"),
            ("CreatedBy", "CREATED BY"),
            ("Size", "SIZE"),
            ("Comment", "COMMENT"),
        ],
    )?;
    Ok(0)
}

fn version(c: &Client, a: FormatArgs) -> Result<i32> {
    let server = c.get("/version")?.json()?;
    let v = json!({
        "Client": {"Version": env!("CARGO_PKG_VERSION"), "ApiVersion": "1.45", "Os": "linux", "Arch": std::env::consts::ARCH},
        "Server": server,
    });
    if !a.format.is_empty() {
        println!("{}", crate::format::render(&a.format, &v)?);
        return Ok(0);
    }
    println!("Client:\n Version:\t{}\n API version:\t1.45\n\nServer: Berth Engine\n Version:\t{}\n API version:\t{} (minimum version {})\n Kernel:\t{}",
        env!("CARGO_PKG_VERSION"), server["Version"].as_str().unwrap_or_default(),
        server["ApiVersion"].as_str().unwrap_or_default(), server["MinAPIVersion"].as_str().unwrap_or_default(),
        server["KernelVersion"].as_str().unwrap_or_default());
    Ok(0)
}

fn info(c: &Client, a: FormatArgs) -> Result<i32> {
    let v = c.get("/info")?.json()?;
    if !a.format.is_empty() {
        println!("{}", crate::format::render(&a.format, &v)?);
        return Ok(0);
    }
    println!("Server:");
    println!(" Containers: {}", v["Containers"]);
    println!("  Running: {}", v["ContainersRunning"]);
    println!("  Paused: {}", v["ContainersPaused"]);
    println!("  Stopped: {}", v["ContainersStopped"]);
    println!(" Images: {}", v["Images"]);
    println!(
        " Server Version: {}",
        v["ServerVersion"].as_str().unwrap_or_default()
    );
    println!(
        " Storage Driver: {}",
        v["Driver"].as_str().unwrap_or_default()
    );
    println!(
        " Logging Driver: {}",
        v["LoggingDriver"].as_str().unwrap_or_default()
    );
    println!(
        " Cgroup Driver: {}",
        v["CgroupDriver"].as_str().unwrap_or_default()
    );
    println!(
        " Cgroup Version: {}",
        v["CgroupVersion"].as_str().unwrap_or_default()
    );
    println!(
        " Kernel Version: {}",
        v["KernelVersion"].as_str().unwrap_or_default()
    );
    println!(
        " Operating System: {}",
        v["OperatingSystem"].as_str().unwrap_or_default()
    );
    println!(" CPUs: {}", v["NCPU"]);
    println!(
        " Total Memory: {}",
        human_size(v["MemTotal"].as_f64().unwrap_or(0.0))
    );
    println!(" Name: {}", v["Name"].as_str().unwrap_or_default());
    println!(" ID: {}", v["ID"].as_str().unwrap_or_default());
    println!(
        " Berth Root Dir: {}",
        v["DockerRootDir"].as_str().unwrap_or_default()
    );
    println!(" Live Restore Enabled: {}", v["LiveRestoreEnabled"]);
    Ok(0)
}
