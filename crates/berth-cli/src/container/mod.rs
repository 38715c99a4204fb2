//! `berth container …`: the everyday commands on containers.

mod cp;
mod create;
mod run;
mod stats;

use create::*;
use run::*;

use crate::args::*;
use crate::client::{query, urlencode, Client};
use crate::format::{ago, human_size, print_rows};
use crate::stream;
use crate::util::*;
use anyhow::{bail, Result};
use berth_api::{
    ContainerInspect, ContainerPruneReport, ContainerSummary, ContainerTopResponse, Port,
};
use serde_json::{json, Value};

pub(crate) fn dispatch(c: &Client, cmd: ContainerCmd) -> (Result<i32>, i32) {
    use ContainerCmd as C;
    match cmd {
        C::Run(a) => (run(c, a, true), 125),
        C::Create(a) => (run(c, a, false), 125),
        C::Start(a) => (start(c, a), 1),
        C::Ls(a) => (ps(c, a), 1),
        C::Logs(a) => (logs(c, a), 1),
        C::Inspect(a) => (crate::system::inspect(c, a, Some("container")), 1),
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
        C::Cp(a) => (cp::cp(c, a), 1),
        C::Stats(a) => (stats::stats(c, a), 1),
        C::Pause(a) => (each(c, &a.containers, "pause"), 1),
        C::Unpause(a) => (each(c, &a.containers, "unpause"), 1),
        C::Prune(a) => (prune(c, a), 1),
    }
}

pub(crate) fn ps(c: &Client, a: PsArgs) -> Result<i32> {
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
    let list: Vec<ContainerSummary> = c.get(&format!("/containers/json{}", query(&q)))?.decode()?;
    if a.quiet {
        let mut out = String::new();
        for v in &list {
            out.push_str(if a.no_trunc {
                &v.id
            } else {
                &v.id[..12.min(v.id.len())]
            });
            out.push('\n');
        }
        print!("{out}");
        return Ok(0);
    }
    let rows: Vec<Value> = list
        .iter()
        .map(|v| {
            let mut cmd = v.command.clone();
            if !a.no_trunc && cmd.chars().count() > 20 {
                cmd = cmd.chars().take(19).collect::<String>() + "…";
            }
            let names: Vec<&str> = v.names.iter().map(|n| n.trim_start_matches('/')).collect();
            let labels: std::collections::BTreeMap<_, _> = v.labels.iter().collect();
            let labels = labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            let size = if a.size {
                format!(
                    "{} (virtual {})",
                    human_size(v.size_rw.unwrap_or(0) as f64),
                    human_size(v.size_root_fs.unwrap_or(0) as f64)
                )
            } else {
                String::new()
            };
            json!({
                "ID": if a.no_trunc { v.id.clone() } else { short_id(&v.id) },
                "Image": v.image,
                "Command": format!("\"{cmd}\""),
                "CreatedAt": chrono::DateTime::from_timestamp(v.created, 0)
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string()).unwrap_or_default(),
                "RunningFor": ago(v.created),
                "Ports": ports_text(&v.ports),
                "Status": v.status,
                "State": v.state,
                "Size": size,
                "Names": names.join(","),
                "Labels": labels,
                "Mounts": "",
                "Networks": v.host_config.network_mode,
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

pub(crate) fn logs(c: &Client, a: LogsArgs) -> Result<i32> {
    let tty = inspect(c, &a.container)?.config.tty;
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

/// A container's inspect, for the commands that act on what it is.
pub(crate) fn inspect(c: &Client, key: &str) -> Result<ContainerInspect> {
    c.get(&format!("/containers/{}/json", urlencode(key)))?
        .decode()
}

pub(crate) fn top(c: &Client, a: TopArgs) -> Result<i32> {
    let q = if a.ps_args.is_empty() {
        String::new()
    } else {
        query(&[("ps_args", a.ps_args.join(" "))])
    };
    let v: ContainerTopResponse = c
        .get(&format!("/containers/{}/top{q}", urlencode(&a.container)))?
        .decode()?;
    let mut lines = vec![v.titles.join("\t")];
    lines.extend(v.processes.iter().map(|p| p.join("\t")));
    print!("{}", crate::format::align(&lines));
    Ok(0)
}

pub(crate) fn stop(c: &Client, a: StopArgs, restart: bool) -> Result<i32> {
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

pub(crate) fn kill(c: &Client, a: KillArgs) -> Result<i32> {
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

pub(crate) fn rm(c: &Client, a: RmArgs) -> Result<i32> {
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

pub(crate) fn wait(c: &Client, a: NamesArgs) -> Result<i32> {
    let mut code = 0;
    for n in &a.containers {
        match c
            .post(&format!("/containers/{}/wait", urlencode(n)))
            .and_then(|r| r.decode::<berth_api::ContainerWaitResponse>())
        {
            Ok(w) => println!("{}", w.status_code),
            Err(e) => {
                eprintln!("{e}");
                code = 1;
            }
        }
    }
    Ok(code)
}

pub(crate) fn rename(c: &Client, a: RenameArgs) -> Result<i32> {
    c.post(&format!(
        "/containers/{}/rename{}",
        urlencode(&a.container),
        query(&[("name", a.new_name.clone())])
    ))?;
    Ok(0)
}

pub(crate) fn commit(c: &Client, a: CommitArgs) -> Result<i32> {
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

pub(crate) fn diff(c: &Client, a: DiffArgs) -> Result<i32> {
    let changes: Option<Vec<berth_api::FilesystemChange>> = c
        .get(&format!("/containers/{}/changes", urlencode(&a.container)))?
        .decode()?;
    let mut out = String::new();
    for ch in changes.unwrap_or_default() {
        let kind = match ch.kind {
            0 => 'C',
            1 => 'A',
            _ => 'D',
        };
        out.push_str(&format!("{kind} {}\n", ch.path));
    }
    print!("{out}");
    Ok(0)
}

pub(crate) fn prune(c: &Client, a: PruneArgs) -> Result<i32> {
    if !a.force
        && !confirm(
            "WARNING! This will remove all stopped containers.\nAre you sure you want to continue?",
        )
    {
        return Ok(0);
    }
    let q = filters_query(&a.filter)?;
    let r: ContainerPruneReport = c.post(&format!("/containers/prune{q}"))?.decode()?;
    print_deleted("Containers", &r.containers_deleted);
    println!(
        "Total reclaimed space: {}",
        human_size(r.space_reclaimed as f64)
    );
    Ok(0)
}

pub(crate) fn export(c: &Client, a: ExportArgs) -> Result<i32> {
    let path = format!("/containers/{}/export", urlencode(&a.container));
    write_tar(c, &path, a.output.as_deref())
}

pub(crate) fn update(c: &Client, a: crate::UpdateArgs) -> Result<i32> {
    let mut body = berth_api::HostConfig::default();
    apply_resources(&a.resources, &mut body)?;
    if let Some(r) = &a.restart {
        body.restart_policy = restart_policy(r)?;
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

/// Docker's PORTS column: `127.0.0.1:8080->80/tcp, 443/tcp`.
pub(crate) fn ports_text(ports: &[Port]) -> String {
    let mut items: Vec<(u16, String)> = ports
        .iter()
        .map(|p| {
            let (private, proto) = (p.private_port, &p.kind);
            let text = match p.public_port {
                Some(public) => format!(
                    "{}:{public}->{private}/{proto}",
                    p.ip.as_deref().unwrap_or("0.0.0.0")
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

pub(crate) fn port(c: &Client, a: PortArgs) -> Result<i32> {
    let v = inspect(c, &a.container)?;
    let want = a.private.as_deref().map(|p| {
        if p.contains('/') {
            p.to_string()
        } else {
            format!("{p}/tcp")
        }
    });
    let mut rows: Vec<String> = Vec::new();
    for (k, binds) in &v.network_settings.ports {
        if want.as_ref().is_some_and(|w| w != k) {
            continue;
        }
        for b in binds.iter().flatten() {
            let addr = format!("{}:{}", b.host_ip, b.host_port);
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
