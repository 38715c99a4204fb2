//! `berth build`: the context as a tar (after `.dockerignore`), sent to the
//! classic builder endpoint, its message stream printed.

use crate::args::*;
use crate::client::{query, Client};
use anyhow::{anyhow, bail, Context, Result};
use berth_api::JsonMessage;
use berth_build::ignore::Ignore;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

/// The context directory as a tar, without what `.dockerignore` excludes
/// (the Dockerfile and `.dockerignore` always go, as the docker CLI sends them).
fn context_tar(dir: &Path, dockerfile: &str, extra: Option<(&str, &[u8])>) -> Result<Vec<u8>> {
    let ig = std::fs::read_to_string(dir.join(".dockerignore"))
        .map(|t| Ignore::parse(&t))
        .unwrap_or_default();
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    let mut stack = vec![std::path::PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let mut names: Vec<_> = std::fs::read_dir(dir.join(&rel))
            .with_context(|| format!("reading {}", dir.join(&rel).display()))?
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        names.sort();
        for n in names {
            let r = rel.join(&n);
            let s = r.to_string_lossy().into_owned();
            let full = dir.join(&r);
            let is_dir = std::fs::symlink_metadata(&full)?.is_dir();
            let keep = s == dockerfile || s == ".dockerignore";
            if ig.excluded(&s) && !keep {
                // Its subtree may hold `!` exceptions.
                if is_dir {
                    stack.push(r);
                }
                continue;
            }
            b.append_path_with_name(&full, &r)?;
            if is_dir {
                stack.push(r);
            }
        }
    }
    if let Some((name, data)) = extra {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        b.append_data(&mut h, name, data)?;
    }
    Ok(b.into_inner()?)
}

pub fn build(c: &Client, a: BuildArgs) -> Result<i32> {
    let mut q: Vec<(&str, String)> = Vec::new();
    for t in &a.tag {
        q.push(("t", t.clone()));
    }
    let body = context(&a, &mut q)?;
    options(&a, &mut q)?;
    let resp = c.post_stream(
        &format!("/build{}", query(&q)),
        "application/x-tar",
        Box::new(std::io::Cursor::new(body)),
    )?;
    let id = match progress(resp.body, a.quiet)? {
        Ok(id) => id,
        Err(code) => return Ok(code),
    };
    if let Some(f) = &a.iidfile {
        std::fs::write(f, &id).with_context(|| format!("writing {f}"))?;
    }
    Ok(0)
}

/// The build context as a tar (from a directory, or stdin), the Dockerfile
/// in it named in `q`.
fn context(a: &BuildArgs, q: &mut Vec<(&str, String)>) -> Result<Vec<u8>> {
    let stdin_dockerfile = a.file.as_deref() == Some("-");
    Ok(if a.context == "-" {
        if stdin_dockerfile {
            bail!("invalid argument: can't use stdin for both build context and dockerfile");
        }
        let mut v = Vec::new();
        std::io::stdin().read_to_end(&mut v)?;
        v
    } else {
        let dir = Path::new(&a.context);
        if !dir.is_dir() {
            bail!(
                "unable to prepare context: path \"{}\" not found",
                a.context
            );
        }
        if stdin_dockerfile {
            let mut df = Vec::new();
            std::io::stdin().read_to_end(&mut df)?;
            let name = format!(".dockerfile.{:012x}", std::process::id());
            q.push(("dockerfile", name.clone()));
            context_tar(dir, &name, Some((&name, &df)))?
        } else {
            // -f names a file on the client; inside the context it keeps its
            // relative path, outside it travels under a private name.
            let df = a
                .file
                .clone()
                .unwrap_or_else(|| dir.join("Dockerfile").display().to_string());
            let df_path = Path::new(&df);
            let abs_ctx = std::fs::canonicalize(dir)?;
            let abs_df = std::fs::canonicalize(df_path).with_context(|| {
                format!("unable to prepare context: the Dockerfile ({df}) cannot be found")
            })?;
            match abs_df.strip_prefix(&abs_ctx) {
                Ok(rel) => {
                    let rel = rel.to_string_lossy().into_owned();
                    q.push(("dockerfile", rel.clone()));
                    context_tar(dir, &rel, None)?
                }
                Err(_) => {
                    let data = std::fs::read(&abs_df)?;
                    let name = format!(".dockerfile.{:012x}", std::process::id());
                    q.push(("dockerfile", name.clone()));
                    context_tar(dir, &name, Some((&name, &data)))?
                }
            }
        }
    })
}

/// The query parameters for the build's flags.
fn options(a: &BuildArgs, q: &mut Vec<(&str, String)>) -> Result<()> {
    let mut args = serde_json::Map::new();
    for ba in &a.build_arg {
        match ba.split_once('=') {
            Some((k, v)) => args.insert(k.to_string(), Value::from(v)),
            // `--build-arg NAME` takes the value from the client's environment.
            None => args.insert(
                ba.clone(),
                std::env::var(ba).map(Value::from).unwrap_or(Value::Null),
            ),
        };
    }
    if !args.is_empty() {
        q.push(("buildargs", Value::Object(args).to_string()));
    }
    let labels = crate::util::kv_map(&a.label);
    if !labels.is_empty() {
        q.push(("labels", serde_json::to_string(&labels)?));
    }
    if let Some(t) = &a.target {
        q.push(("target", t.clone()));
    }
    if a.no_cache {
        q.push(("nocache", "1".into()));
    }
    if a.quiet {
        q.push(("q", "1".into()));
    }
    if let Some(n) = &a.network {
        q.push(("networkmode", n.clone()));
    }
    if a.force_rm {
        q.push(("forcerm", "1".into()));
    }
    for h in &a.add_host {
        q.push(("extrahosts", h.clone()));
    }
    if !a.cache_from.is_empty() {
        q.push(("cachefrom", serde_json::json!(a.cache_from).to_string()));
    }
    q.push(("rm", if a.rm { "1" } else { "0" }.into()));
    Ok(())
}

/// Prints the daemon's progress; the image id, or the exit code of a failed
/// build (a failed RUN's own).
fn progress(body: impl Read, quiet: bool) -> Result<std::result::Result<String, i32>> {
    let mut id = String::new();
    let mut out = std::io::stdout();
    for line in BufReader::new(body).lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let v: JsonMessage =
            serde_json::from_str(&line).map_err(|e| anyhow!("bad message from daemon: {e}"))?;
        if let Some(err) = &v.error {
            let _ = out.flush();
            eprintln!("{err}");
            return Ok(Err(v
                .error_detail
                .and_then(|d| d.code)
                .filter(|c| *c > 0)
                .map_or(1, |c| c as i32)));
        }
        if let Some(aux) = v.aux.as_ref().and_then(|a| a["ID"].as_str()) {
            id = aux.to_string();
        }
        if let Some(s) = &v.stream {
            if !quiet {
                out.write_all(s.as_bytes())?;
                out.flush()?;
            }
        }
    }
    if quiet {
        println!("{id}");
    }
    Ok(Ok(id))
}
