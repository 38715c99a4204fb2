//! Helpers every command module shares.

use crate::client::{query, urlencode, Client, DaemonError};
use crate::stream;
use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::io::Write;

/// Docker's RAMInBytes: sizes in binary units (`64m`, `1g`).
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

pub(crate) fn short_id(id: &str) -> String {
    id.trim_start_matches("sha256:").chars().take(12).collect()
}

/// Runs `POST /containers/{id}/{action}` for each name, printing each as docker does.
pub(crate) fn each(c: &Client, names: &[String], action: &str) -> Result<i32> {
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

pub(crate) fn filters_query(filters: &[String]) -> Result<String> {
    if filters.is_empty() {
        return Ok(String::new());
    }
    Ok(query(&[("filters", filters_json(filters)?)]))
}

/// `key=value` flags (labels, options) as a map; a bare key maps to "".
pub(crate) fn kv_map(list: &[String]) -> std::collections::BTreeMap<String, String> {
    list.iter()
        .map(|s| {
            let (k, v) = s.split_once('=').unwrap_or((s, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// A prune's "Deleted …:" list, as the docker CLI prints it.
pub(crate) fn print_deleted(title: &str, items: &[String]) {
    if !items.is_empty() {
        println!("Deleted {title}:");
        for i in items {
            println!("{i}");
        }
        println!();
    }
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
    let ns =
        berth_util::gotime::duration_ns(s).map_err(|_| anyhow!("invalid value for since: {s}"))?;
    let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
    Ok(format!("{:.3}", now - ns as f64 / 1e9))
}

/// `repo[:tag]`, where a `:` inside a registry's host:port is not a tag.
pub(crate) fn split_reference(r: &str) -> (String, String) {
    match r.rfind(':') {
        Some(i) if !r[i + 1..].contains('/') => (r[..i].to_string(), r[i + 1..].to_string()),
        _ => (r.to_string(), String::new()),
    }
}

pub(crate) fn confirm(prompt: &str) -> bool {
    eprint!("{prompt} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut s = String::new();
    let _ = std::io::stdin().read_line(&mut s);
    matches!(s.trim(), "y" | "Y" | "yes")
}

/// A tar from the daemon to `output` (whole or not at all) or to stdout,
/// never to a terminal.
pub(crate) fn write_tar(c: &Client, path: &str, output: Option<&str>) -> Result<i32> {
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

/// Waits for the container in the background; the answer's headers arrive
/// before we start it, so its exit cannot be missed.
/// Ends the command with the error's words and a status of its own.
#[derive(Debug)]
pub struct ExitWith(pub i32, pub anyhow::Error);

impl std::fmt::Display for ExitWith {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&error_text(&self.1))
    }
}

/// What a failed command prints: the daemon's words as they are, anything
/// else with its chain of causes.
pub fn error_text(e: &anyhow::Error) -> String {
    match e.downcast_ref::<DaemonError>() {
        Some(d) => d.to_string(),
        None => format!("{e:#}"),
    }
}

impl std::error::Error for ExitWith {}
