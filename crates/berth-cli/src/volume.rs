//! `berth volume …` and the `--mount` syntax.

use crate::args::*;
use crate::client::{urlencode, Client};
use crate::format::{human_size, print_rows, render};
use crate::util::{confirm, filters_query, kv_map, print_deleted};
use anyhow::{anyhow, bail, Result};
use berth_api::{DriverConfig, MountRequest, TmpfsOptions, VolumeOptions};
use serde_json::{json, Value};
use std::collections::HashMap;

/// `--mount type=volume,source=v,target=/d,readonly,volume-opt=k=v,…` as the API's Mount.
pub fn parse_mount(spec: &str) -> Result<MountRequest> {
    let mut m = MountRequest {
        kind: "volume".into(),
        ..MountRequest::default()
    };
    let mut target = None;
    let mut vol = VolumeOptions::default();
    let (mut labels, mut vol_opts) = (HashMap::new(), HashMap::new());
    let mut tmpfs = None::<TmpfsOptions>;
    let flag = |v: &str| v.is_empty() || matches!(v, "1" | "true");
    for field in spec.split(',') {
        let (k, v) = field.split_once('=').unwrap_or((field, ""));
        match k.to_ascii_lowercase().as_str() {
            "type" => m.kind = v.to_string(),
            "source" | "src" => m.source = v.to_string(),
            "target" | "destination" | "dst" => target = Some(v.to_string()),
            "readonly" | "ro" => m.read_only = flag(v),
            "volume-nocopy" => vol.no_copy = flag(v),
            "volume-subpath" => vol.subpath = v.to_string(),
            "volume-label" => {
                let (lk, lv) = v.split_once('=').unwrap_or((v, ""));
                labels.insert(lk.to_string(), lv.to_string());
            }
            "volume-opt" => {
                let (ok, ov) = v
                    .split_once('=')
                    .ok_or_else(|| anyhow!("invalid volume-opt: {v}"))?;
                vol_opts.insert(ok.to_string(), ov.to_string());
            }
            "volume-driver" => {}
            "tmpfs-size" => tmpfs.get_or_insert_default().size_bytes = crate::util::ram_bytes(v)?,
            "tmpfs-mode" => {
                tmpfs.get_or_insert_default().mode =
                    u32::from_str_radix(v, 8).map_err(|_| anyhow!("invalid tmpfs-mode: {v}"))?;
            }
            "bind-propagation" | "consistency" => {}
            other => bail!("invalid field '{other}' must be a key=value pair"),
        }
    }
    m.target = target.ok_or_else(|| {
        anyhow!("invalid argument \"{spec}\" for \"--mount\" flag: target is required")
    })?;
    if m.kind == "volume" {
        vol.labels = Some(labels);
        vol.driver_config = Some(DriverConfig {
            name: "local".into(),
            options: Some(vol_opts),
        });
        m.volume_options = Some(vol);
    }
    if m.kind == "tmpfs" {
        m.tmpfs_options = tmpfs;
    }
    Ok(m)
}

pub fn dispatch(c: &Client, cmd: VolumeCmd) -> Result<i32> {
    match cmd {
        VolumeCmd::Create(a) => create(c, a),
        VolumeCmd::Ls(a) => ls(c, a),
        VolumeCmd::Inspect(a) => inspect(c, a),
        VolumeCmd::Rm(a) => rm(c, a),
        VolumeCmd::Prune(a) => prune(c, a),
    }
}

fn create(c: &Client, a: VolumeCreateArgs) -> Result<i32> {
    let body = json!({
        "Name": a.name.clone().unwrap_or_default(),
        "Driver": a.driver,
        "DriverOpts": kv_map(&a.opt),
        "Labels": kv_map(&a.label),
    });
    let v: berth_api::Volume = c.post_json("/volumes/create", &body)?.decode()?;
    println!("{}", v.name);
    Ok(0)
}

fn ls(c: &Client, a: VolumeLsArgs) -> Result<i32> {
    let q = filters_query(&a.filter)?;
    let list: berth_api::VolumeList = c.get(&format!("/volumes{q}"))?.decode()?;
    if a.quiet {
        for v in &list.volumes {
            println!("{}", v.name);
        }
        return Ok(0);
    }
    // Templates see the API's fields, with the labels as the docker CLI
    // shows them (`k=v,…`).
    let rows: Vec<Value> = list
        .volumes
        .iter()
        .map(|v| {
            let labels: Vec<String> = v.labels.iter().map(|(k, x)| format!("{k}={x}")).collect();
            let mut r = serde_json::to_value(v).unwrap_or_default();
            r["Labels"] = json!(labels.join(","));
            r
        })
        .collect();
    print_rows(
        &a.format,
        "table {{.Driver}}\t{{.Name}}",
        &rows,
        &[
            ("Driver", "DRIVER"),
            ("Name", "VOLUME NAME"),
            ("Mountpoint", "MOUNTPOINT"),
            ("Labels", "LABELS"),
            ("Scope", "SCOPE"),
        ],
    )?;
    Ok(0)
}

fn inspect(c: &Client, a: VolumeInspectArgs) -> Result<i32> {
    inspect_objects(c, "/volumes", &a.volumes, &a.format)
}

/// `inspect` of named objects under `base` (volumes, networks): a JSON array,
/// or the `--format` template per object; 1 when any was missing.
pub fn inspect_objects(c: &Client, base: &str, names: &[String], format: &str) -> Result<i32> {
    let mut out = Vec::new();
    let mut code = 0;
    for n in names {
        match c
            .get(&format!("{base}/{}", urlencode(n)))
            .and_then(|r| r.json())
        {
            Ok(v) => out.push(v),
            Err(e) => {
                eprintln!("{e}");
                code = 1;
            }
        }
    }
    if format.is_empty() {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for v in &out {
            println!("{}", render(format, v)?);
        }
    }
    Ok(code)
}

fn rm(c: &Client, a: VolumeRmArgs) -> Result<i32> {
    let mut code = 0;
    for n in &a.volumes {
        let q = if a.force { "?force=1" } else { "" };
        match c.delete(&format!("/volumes/{}{q}", urlencode(n))) {
            Ok(_) => println!("{n}"),
            Err(e) => {
                eprintln!("{e}");
                code = 1;
            }
        }
    }
    Ok(code)
}

fn prune(c: &Client, a: VolumePruneArgs) -> Result<i32> {
    let warning = if a.all {
        "WARNING! This will remove all local volumes not used by at least one container."
    } else {
        "WARNING! This will remove anonymous local volumes not used by at least one container."
    };
    if !a.force && !confirm(&format!("{warning}\nAre you sure you want to continue?")) {
        return Ok(0);
    }
    let mut f = a.filter.clone();
    if a.all {
        f.push("all=true".into());
    }
    let q = filters_query(&f)?;
    let r: berth_api::VolumePruneReport = c.post(&format!("/volumes/prune{q}"))?.decode()?;
    print_deleted("Volumes", &r.volumes_deleted);
    println!(
        "Total reclaimed space: {}",
        human_size(r.space_reclaimed as f64)
    );
    Ok(0)
}
