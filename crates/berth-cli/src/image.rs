//! `berth image …`: list, import, load, save, tag, rmi, history.

use crate::args::*;
use crate::client::{query, Client};
use crate::format::{ago, human_size, print_rows};
use crate::stream;
use crate::util::*;
use anyhow::{bail, Context, Result};
use berth_api::JsonMessage;
use serde_json::{json, Value};
use std::io::Read;

pub(crate) fn dispatch(c: &Client, cmd: ImageCmd) -> (Result<i32>, i32) {
    use ImageCmd as I;
    match cmd {
        I::Ls(a) => (images(c, a), 1),
        I::Import(a) => (import(c, a), 1),
        I::Load(a) => (load(c, a), 1),
        I::Pull(a) => (crate::distribution::pull(c, a), 1),
        I::Push(a) => (crate::distribution::push(c, a), 1),
        I::Save(a) => (save(c, a), 1),
        I::Inspect(a) => (crate::system::inspect(c, a, Some("image")), 1),
        I::Tag(a) => (tag(c, a), 1),
        I::Rm(a) => (rmi(c, a), 1),
        I::History(a) => (history(c, a), 1),
        I::Build(a) => (crate::build::build(c, a), 1),
        I::Prune(a) => (crate::system::image_prune(c, a), 1),
    }
}

pub(crate) fn images(c: &Client, a: ImagesArgs) -> Result<i32> {
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
    let list: Vec<berth_api::ImageSummary> =
        c.get(&format!("/images/json{}", query(&q)))?.decode()?;
    let mut rows = Vec::new();
    for v in &list {
        let shown_id = if a.no_trunc {
            v.id.clone()
        } else {
            short_id(&v.id)
        };
        let created = v.created;
        for (repo, tag, digest) in image_rows(v) {
            rows.push(json!({
                "Repository": repo, "Tag": tag, "ID": shown_id,
                "Digest": digest,
                "CreatedSince": ago(created),
                "CreatedAt": chrono::DateTime::from_timestamp(created, 0)
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string()).unwrap_or_default(),
                "Size": human_size(v.size as f64),
                "Containers": v.containers,
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

pub(crate) fn import(c: &Client, a: ImportArgs) -> Result<i32> {
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
    for v in upload_tar(c, &format!("/images/create{}", query(&q)), reader)? {
        if let Some(s) = v.status {
            println!("{s}");
        }
    }
    Ok(0)
}

pub(crate) fn load(c: &Client, a: LoadArgs) -> Result<i32> {
    let reader: Box<dyn Read> = match &a.input {
        Some(p) => Box::new(std::fs::File::open(p).with_context(|| format!("open {p}"))?),
        None => {
            if stream::is_tty(0) {
                bail!("requested load from stdin, but stdin is empty");
            }
            Box::new(std::io::stdin())
        }
    };
    for v in upload_tar(c, &format!("/images/load?quiet={}", a.quiet as u8), reader)? {
        if let Some(s) = v.stream {
            print!("{s}");
        }
    }
    Ok(0)
}

/// (repository, tag, digest) rows of one image, as the docker CLI lists
/// them: each tag with its repository's digest, then repositories known
/// only by digest (an image pulled by digest).
fn image_rows(v: &berth_api::ImageSummary) -> Vec<(String, String, String)> {
    let digest_of = |repo: &str| {
        v.repo_digests
            .iter()
            .filter_map(|d| d.split_once('@'))
            .find(|(r, _)| *r == repo)
            .map(|(_, d)| d.to_string())
    };
    let none = || "<none>".to_string();
    let mut rows: Vec<(String, String, String)> = v
        .repo_tags
        .iter()
        .map(|t| {
            let (repo, tag) = t.rsplit_once(':').unwrap_or((t, "<none>"));
            (
                repo.to_string(),
                tag.to_string(),
                digest_of(repo).unwrap_or_else(none),
            )
        })
        .collect();
    for d in &v.repo_digests {
        if let Some((repo, digest)) = d.split_once('@') {
            if !rows.iter().any(|(r, _, _)| r == repo) {
                rows.push((repo.to_string(), none(), digest.to_string()));
            }
        }
    }
    if rows.is_empty() {
        rows.push((none(), none(), none()));
    }
    rows
}

/// Sends a tar to `path` and reads the JSON messages of the answer; an
/// `error` message is the command's error.
fn upload_tar(c: &Client, path: &str, reader: Box<dyn Read>) -> Result<Vec<JsonMessage>> {
    let body = c.post_stream(path, "application/x-tar", reader)?.bytes()?;
    let mut out = Vec::new();
    for line in String::from_utf8_lossy(&body).lines() {
        if let Ok(v) = serde_json::from_str::<JsonMessage>(line) {
            if let Some(e) = &v.error {
                bail!("{e}");
            }
            out.push(v);
        }
    }
    Ok(out)
}

pub(crate) fn save(c: &Client, a: SaveArgs) -> Result<i32> {
    let q: Vec<(&str, String)> = a.images.iter().map(|i| ("names", i.clone())).collect();
    write_tar(c, &format!("/images/get{}", query(&q)), a.output.as_deref())
}

pub(crate) fn tag(c: &Client, a: TagArgs) -> Result<i32> {
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

pub(crate) fn rmi(c: &Client, a: RmiArgs) -> Result<i32> {
    let mut code = 0;
    for i in &a.images {
        match c
            .delete(&format!(
                "/images/{i}{}",
                query(&[("force", (a.force as u8).to_string())])
            ))
            .and_then(|r| r.decode::<Vec<berth_api::ImageDeleteItem>>())
        {
            Ok(items) => {
                for item in items {
                    if let Some(u) = item.untagged {
                        println!("Untagged: {u}");
                    }
                    if let Some(d) = item.deleted {
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

pub(crate) fn history(c: &Client, a: HistoryArgs) -> Result<i32> {
    let items: Vec<berth_api::HistoryItem> =
        c.get(&format!("/images/{}/history", a.image))?.decode()?;
    let rows: Vec<Value> = items
        .iter()
        .map(|h| {
            let id = h.id.as_str();
            let mut by = h.created_by.clone();
            if !a.no_trunc && by.chars().count() > 45 {
                by = by.chars().take(44).collect::<String>() + "…";
            }
            json!({
                "ID": if id == "<missing>" || a.no_trunc { id.to_string() } else { short_id(id) },
                "CreatedSince": if a.human {
                    ago(h.created)
                } else {
                    chrono::DateTime::from_timestamp(h.created, 0)
                        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, false))
                        .unwrap_or_default()
                },
                "CreatedBy": by,
                "Size": if a.human {
                    human_size(h.size as f64)
                } else {
                    h.size.to_string()
                },
                "Comment": h.comment,
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
