//! `image prune`, `system df`, `system prune`.

use crate::args::*;
use crate::client::Client;
use crate::client::{urlencode, DaemonError};
use crate::format::{human_size, print_rows};
use crate::util::{confirm, filters_query, print_deleted};
use anyhow::Result;
use berth_api::{
    BuildCachePruneReport, ContainerPruneReport, ContainerSummary, DiskUsage, EventMessage,
    ImagePruneReport, NetworkPruneReport, SystemInfo, SystemVersion, Volume, VolumePruneReport,
};
use serde_json::{json, Value};

/// Prunes images; returns the bytes freed. Prints Docker's "Deleted Images:" list.
fn prune_images(c: &Client, all: bool, filters: &[String]) -> Result<u64> {
    let mut f = filters.to_vec();
    if all {
        f.push("dangling=false".into());
    }
    let q = filters_query(&f)?;
    let r: ImagePruneReport = c.post(&format!("/images/prune{q}"))?.decode()?;
    let items = r.images_deleted.unwrap_or_default();
    if !items.is_empty() {
        println!("Deleted Images:");
        for i in items {
            if let Some(t) = i.untagged {
                println!("untagged: {t}");
            }
            if let Some(d) = i.deleted {
                println!("deleted: {d}");
            }
        }
        println!();
    }
    Ok(r.space_reclaimed)
}

pub fn image_prune(c: &Client, a: ImagePruneArgs) -> Result<i32> {
    let warning = if a.all {
        "WARNING! This will remove all images without at least one container associated to them."
    } else {
        "WARNING! This will remove all dangling images."
    };
    if !a.force && !confirm(&format!("{warning}\nAre you sure you want to continue?")) {
        return Ok(0);
    }
    let space = prune_images(c, a.all, &a.filter)?;
    println!("Total reclaimed space: {}", human_size(space as f64));
    Ok(0)
}

pub fn system_prune(c: &Client, a: SystemPruneArgs) -> Result<i32> {
    if !a.force {
        let images = if a.all {
            "  - all images without at least one container associated to them"
        } else {
            "  - all dangling images"
        };
        let prompt = format!(
            "WARNING! This will remove:\n  - all stopped containers\n  - all networks not used by at least one container\n{images}\n  - unused build cache\n\nAre you sure you want to continue?"
        );
        if !confirm(&prompt) {
            return Ok(0);
        }
    }
    let mut space = 0u64;
    let q = filters_query(&a.filter)?;
    let r: ContainerPruneReport = c.post(&format!("/containers/prune{q}"))?.decode()?;
    print_deleted("Containers", &r.containers_deleted);
    space += r.space_reclaimed;
    let r: NetworkPruneReport = c.post(&format!("/networks/prune{q}"))?.decode()?;
    print_deleted("Networks", &r.networks_deleted);
    if a.volumes {
        let r: VolumePruneReport = c.post(&format!("/volumes/prune{q}"))?.decode()?;
        print_deleted("Volumes", &r.volumes_deleted);
        space += r.space_reclaimed;
    }
    space += prune_images(c, a.all, &a.filter)?;
    let r: BuildCachePruneReport = c.post("/build/prune")?.decode()?;
    space += r.space_reclaimed;
    println!("Total reclaimed space: {}", human_size(space as f64));
    Ok(0)
}

pub fn df(c: &Client, a: DfArgs) -> Result<i32> {
    let v: DiskUsage = c.get("/system/df")?.decode()?;
    if a.verbose {
        df_verbose(&v)?;
        return Ok(0);
    }
    let (images, containers, vols) = (&v.images, &v.containers, &v.volumes);
    let img_size = v.layers_size as f64;
    let img_unused = images
        .iter()
        .filter(|i| i.containers == 0)
        .map(|i| i.size as f64)
        .sum::<f64>()
        .min(img_size);
    let rw = |c: &ContainerSummary| c.size_rw.unwrap_or(0) as f64;
    let c_size: f64 = containers.iter().map(rw).sum();
    let c_unused: f64 = containers
        .iter()
        .filter(|c| c.state != "running")
        .map(rw)
        .sum();
    let vol_size = |v: &Volume| v.usage_data.as_ref().map_or(0, |u| u.size) as f64;
    let vol_used = |v: &Volume| v.usage_data.as_ref().is_some_and(|u| u.ref_count > 0);
    let vol_total: f64 = vols.iter().map(vol_size).sum();
    let vol_unused: f64 = vols.iter().filter(|v| !vol_used(v)).map(vol_size).sum();
    let pct = |part: f64, whole: f64| {
        if whole > 0.0 {
            format!("{} ({:.0}%)", human_size(part), part * 100.0 / whole)
        } else {
            human_size(part)
        }
    };
    let rows = vec![
        json!({"Type": "Images", "TotalCount": images.len(),
            "Active": images.iter().filter(|i| i.containers > 0).count(),
            "Size": human_size(img_size), "Reclaimable": pct(img_unused, img_size)}),
        json!({"Type": "Containers", "TotalCount": containers.len(),
            "Active": containers.iter().filter(|c| c.state == "running").count(),
            "Size": human_size(c_size), "Reclaimable": pct(c_unused, c_size)}),
        json!({"Type": "Local Volumes", "TotalCount": vols.len(),
            "Active": vols.iter().filter(|v| vol_used(v)).count(),
            "Size": human_size(vol_total), "Reclaimable": pct(vol_unused, vol_total)}),
        json!({"Type": "Build Cache", "TotalCount": 0, "Active": 0, "Size": "0B", "Reclaimable": "0B"}),
    ];
    print_rows(
        &a.format,
        "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}",
        &rows,
        &[
            ("Type", "TYPE"),
            ("TotalCount", "TOTAL"),
            ("Active", "ACTIVE"),
            ("Size", "SIZE"),
            ("Reclaimable", "RECLAIMABLE"),
        ],
    )?;
    Ok(0)
}

/// `system df -v`: images and containers one by one.
fn df_verbose(v: &DiskUsage) -> Result<()> {
    println!("Images space usage:\n");
    let rows: Vec<Value> = v
        .images
        .iter()
        .map(|i| {
            let tag = i.repo_tags.first().map_or("<none>:<none>", String::as_str);
            let (repo, t) = tag.rsplit_once(':').unwrap_or((tag, ""));
            json!({"Repository": repo, "Tag": t,
                "ID": i.id.trim_start_matches("sha256:").chars().take(12).collect::<String>(),
                "Size": human_size(i.size as f64),
                "Containers": i.containers})
        })
        .collect();
    print_rows(
        "",
        "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.Size}}\t{{.Containers}}",
        &rows,
        &[
            ("Repository", "REPOSITORY"),
            ("Tag", "TAG"),
            ("ID", "IMAGE ID"),
            ("Size", "SIZE"),
            ("Containers", "CONTAINERS"),
        ],
    )?;
    println!("\nContainers space usage:\n");
    let rows: Vec<Value> = v
        .containers
        .iter()
        .map(|c| {
            json!({"ID": c.id.chars().take(12).collect::<String>(),
                "Image": c.image, "Size": human_size(c.size_rw.unwrap_or(0) as f64),
                "Status": c.status,
                "Names": c.names.first().map_or("", |n| n.trim_start_matches('/'))})
        })
        .collect();
    print_rows(
        "",
        "table {{.ID}}\t{{.Image}}\t{{.Size}}\t{{.Status}}\t{{.Names}}",
        &rows,
        &[
            ("ID", "CONTAINER ID"),
            ("Image", "IMAGE"),
            ("Size", "SIZE"),
            ("Status", "STATUS"),
            ("Names", "NAMES"),
        ],
    )?;
    println!(
        "\nLocal Volumes space usage:\n\nVOLUME NAME   LINKS     SIZE\n\nBuild cache usage: 0B\n"
    );
    Ok(())
}

/// `berth events`: the daemon's event stream, one line per event, in
/// Docker's default layout or `--format`.
pub fn events(c: &Client, a: EventsArgs) -> Result<i32> {
    let mut q: Vec<(&str, String)> = Vec::new();
    if let Some(s) = &a.since {
        q.push(("since", crate::util::to_unix(s)?));
    }
    if let Some(u) = &a.until {
        q.push(("until", crate::util::to_unix(u)?));
    }
    if !a.filter.is_empty() {
        q.push(("filters", crate::util::filters_json(&a.filter)?));
    }
    let qs = crate::client::query(&q);
    let resp = c.get(&format!("/events{qs}"))?;
    let tmpl = crate::format::line_template(&a.format)?;
    use std::io::{BufRead, Write};
    let mut out = std::io::stdout().lock();
    for line in std::io::BufReader::new(resp.body).lines() {
        let line = line?;
        let Ok(ev) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let text = match &tmpl {
            Some(t) => t.render(&ev)?,
            None => default_event_line(&serde_json::from_value(ev)?),
        };
        writeln!(out, "{text}")?;
        out.flush()?;
    }
    Ok(0)
}

/// `2026-11-29T22:00:00.000000000Z container start ID (image=busybox, name=web)`.
fn default_event_line(ev: &EventMessage) -> String {
    let nanos = ev.time_nano;
    let t = chrono::DateTime::from_timestamp(nanos / 1_000_000_000, (nanos % 1_000_000_000) as u32)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string())
        .unwrap_or_default();
    let attrs: Vec<String> = ev
        .actor
        .attributes
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!(
        "{t} {} {} {} ({})",
        ev.kind,
        ev.action,
        ev.actor.id,
        attrs.join(", ")
    )
}

pub(crate) fn version(c: &Client, a: FormatArgs) -> Result<i32> {
    let server = c.get("/version")?.json()?;
    let mut v = json!({
        "Client": {"Version": env!("CARGO_PKG_VERSION"), "ApiVersion": "1.45", "Os": "linux", "Arch": std::env::consts::ARCH},
        "Server": server,
    });
    if !a.format.is_empty() {
        println!("{}", crate::format::render(&a.format, &v)?);
        return Ok(0);
    }
    let server: SystemVersion = serde_json::from_value(v["Server"].take())?;
    println!("Client:\n Version:\t{}\n API version:\t1.45\n\nServer: Berth Engine\n Version:\t{}\n API version:\t{} (minimum version {})\n Kernel:\t{}",
        env!("CARGO_PKG_VERSION"), server.version, server.api_version, server.min_api_version,
        server.kernel_version);
    Ok(0)
}

pub(crate) fn info(c: &Client, a: FormatArgs) -> Result<i32> {
    let v = c.get("/info")?.json()?;
    if !a.format.is_empty() {
        println!("{}", crate::format::render(&a.format, &v)?);
        return Ok(0);
    }
    let i: SystemInfo = serde_json::from_value(v)?;
    println!("Server:");
    println!(" Containers: {}", i.containers);
    println!("  Running: {}", i.containers_running);
    println!("  Paused: {}", i.containers_paused);
    println!("  Stopped: {}", i.containers_stopped);
    println!(" Images: {}", i.images);
    println!(" Server Version: {}", i.server_version);
    println!(" Storage Driver: {}", i.driver);
    println!(" Logging Driver: {}", i.logging_driver);
    println!(" Cgroup Driver: {}", i.cgroup_driver);
    println!(" Cgroup Version: {}", i.cgroup_version);
    println!(" Kernel Version: {}", i.kernel_version);
    println!(" Operating System: {}", i.operating_system);
    println!(" CPUs: {}", i.ncpu);
    println!(" Total Memory: {}", human_size(i.mem_total as f64));
    println!(" Name: {}", i.name);
    println!(" ID: {}", i.id);
    println!(" Berth Root Dir: {}", i.docker_root_dir);
    println!(" Live Restore Enabled: {}", i.live_restore_enabled);
    Ok(0)
}

pub(crate) fn inspect(c: &Client, a: InspectArgs, kind: Option<&str>) -> Result<i32> {
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
