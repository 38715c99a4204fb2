//! `berth pull`, `push`, `login` and `logout`: credentials in a
//! docker-compatible `config.json`, and the progress of pulls and pushes
//! drawn as the docker CLI draws it (a line per layer, redrawn in place on
//! a terminal, with the transfer speed; plain lines otherwise).

use crate::args::{LoginArgs, LogoutArgs, PullArgs, PushArgs};
use crate::client::{query, Client};
use anyhow::{bail, Context, Result};
use berth_api::JsonMessage;
use berth_dist::reference::{domain_of_server, server_key};
use berth_dist::{AuthConfig, Reference};
use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::Instant;

/// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`: shared with
/// the docker CLI, so a login by either serves both.
fn config_path() -> PathBuf {
    let dir = std::env::var_os("DOCKER_CONFIG")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".docker")
        });
    dir.join("config.json")
}

fn read_config() -> Result<serde_json::Value> {
    let p = config_path();
    match std::fs::read(&p) {
        Ok(b) if b.iter().all(u8::is_ascii_whitespace) => Ok(serde_json::json!({})),
        Ok(b) => serde_json::from_slice(&b).with_context(|| format!("reading {}", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(serde_json::json!({})),
        Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
    }
}

/// Written whole through a temporary file, private to its owner.
fn write_config(v: &serde_json::Value) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let p = config_path();
    let dir = p.parent().unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".config.json.{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(v)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &p)?;
    Ok(())
}

/// The stored credentials for registry `domain`, if any.
fn credentials(domain: &str) -> Option<AuthConfig> {
    let cfg = read_config().ok()?;
    let key = server_key(domain);
    let auths = cfg["auths"].as_object()?;
    let entry = auths
        .iter()
        .find(|(k, _)| server_key(k) == key)
        .map(|(_, v)| v)?;
    let mut a: AuthConfig = serde_json::from_value(entry.clone()).ok()?;
    a.fill_from_auth();
    a.serveraddress = key;
    (!a.is_empty()).then_some(a)
}

fn auth_header(domain: &str) -> Vec<(&'static str, String)> {
    credentials(domain)
        .map(|a| vec![("X-Registry-Auth", a.to_header())])
        .unwrap_or_default()
}

fn parse_ref(s: &str) -> Result<Reference> {
    Reference::parse(s).map_err(|_| anyhow::anyhow!("invalid reference format: {s}"))
}

pub(crate) fn pull(c: &Client, a: PullArgs) -> Result<i32> {
    if a.all_tags {
        bail!("pull --all-tags is not supported yet: name the tags to pull");
    }
    if !a.image.contains(':') && !a.image.contains('@') && !a.all_tags {
        println!("Using default tag: latest");
    }
    let r = parse_ref(&a.image)?;
    pull_ref(
        c,
        &r,
        a.platform.as_deref(),
        a.quiet,
        &mut std::io::stdout(),
    )?;
    let full = format!("{}/{}", r.domain, r.repo);
    let shown = match (&r.tag, &r.digest) {
        (_, Some(d)) => format!("{full}@{d}"),
        (Some(t), None) => format!("{full}:{t}"),
        _ => full,
    };
    println!("{shown}");
    Ok(0)
}

/// Pulls `r`, drawing the progress on `out` (nothing but errors when quiet).
pub(crate) fn pull_ref(
    c: &Client,
    r: &Reference,
    platform: Option<&str>,
    quiet: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let mut q = vec![("fromImage", r.familiar_repo())];
    q.push((
        "tag",
        r.digest.clone().or(r.tag.clone()).unwrap_or_default(),
    ));
    if let Some(p) = platform.filter(|p| !p.is_empty()) {
        q.push(("platform", p.to_string()));
    }
    let headers = auth_header(&r.domain);
    let hdrs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let resp = c.post_with(&format!("/images/create{}", query(&q)), &hdrs)?;
    show_progress(resp.body, quiet, out)
}

pub(crate) fn push(c: &Client, a: PushArgs) -> Result<i32> {
    let r = parse_ref(&a.image)?;
    let repo = r.familiar_repo();
    let tag = if a.all_tags {
        String::new()
    } else {
        if !a.image.rsplit('/').next().unwrap_or("").contains(':') {
            println!("Using default tag: latest");
        }
        r.tag.clone().unwrap_or_else(|| "latest".into())
    };
    let headers = auth_header(&r.domain);
    let hdrs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let resp = c.post_with(
        &format!("/images/{repo}/push{}", query(&[("tag", tag)])),
        &hdrs,
    )?;
    show_progress(resp.body, a.quiet, &mut std::io::stdout())?;
    Ok(0)
}

pub(crate) fn login(c: &Client, a: LoginArgs) -> Result<i32> {
    let server = server_key(a.server.as_deref().unwrap_or(""));
    let stdin = std::io::stdin();
    let mut username = a.username.clone().unwrap_or_default();
    let mut password = a.password.clone().unwrap_or_default();
    if a.password.is_some() {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        if a.password_stdin {
            bail!("--password and --password-stdin are mutually exclusive");
        }
    }
    if a.password_stdin {
        if username.is_empty() {
            bail!("Must provide --username with --password-stdin");
        }
        let mut s = String::new();
        stdin.lock().read_to_string(&mut s)?;
        password = s.trim_end_matches(['\n', '\r']).to_string();
    }
    if username.is_empty() {
        if let Some(saved) = credentials(&domain_of_server(&server)) {
            username = saved.username;
            if password.is_empty() {
                password = saved.password;
            }
        }
    }
    if username.is_empty() {
        if !stdin.is_terminal() {
            bail!("Cannot perform an interactive login from a non TTY device");
        }
        eprint!("Username: ");
        std::io::stderr().flush()?;
        stdin.lock().read_line(&mut username)?;
        username = username.trim().to_string();
    }
    if password.is_empty() {
        if !stdin.is_terminal() {
            bail!("Cannot perform an interactive login from a non TTY device");
        }
        password = read_hidden("Password: ")?;
    }
    if username.is_empty() {
        bail!("Error: Non-null Username Required");
    }
    if password.is_empty() {
        bail!("Error: Password Required");
    }
    let creds = AuthConfig {
        username: username.clone(),
        password: password.clone(),
        serveraddress: server.clone(),
        ..AuthConfig::default()
    };
    let answer: berth_api::AuthResponse = c.post_json("/auth", &creds)?.decode()?;
    let mut cfg = read_config()?;
    if !cfg.is_object() {
        cfg = serde_json::json!({});
    }
    use base64::Engine as _;
    let mut entry = serde_json::json!({
        "auth": base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}")),
    });
    if !answer.identity_token.is_empty() {
        entry = serde_json::json!({
            "auth": base64::engine::general_purpose::STANDARD.encode(format!("{username}:")),
            "identitytoken": answer.identity_token,
        });
    }
    cfg["auths"][server.as_str()] = entry;
    write_config(&cfg)?;
    println!("Login Succeeded");
    Ok(0)
}

pub(crate) fn logout(a: LogoutArgs) -> Result<i32> {
    let server = server_key(a.server.as_deref().unwrap_or(""));
    let mut cfg = read_config()?;
    let removed = cfg["auths"]
        .as_object_mut()
        .map(|m| {
            let keys: Vec<String> = m
                .keys()
                .filter(|k| server_key(k) == server)
                .cloned()
                .collect();
            for k in &keys {
                m.remove(k);
            }
            !keys.is_empty()
        })
        .unwrap_or(false);
    if !removed {
        println!("Not logged in to {server}");
        return Ok(0);
    }
    println!("Removing login credentials for {server}");
    write_config(&cfg)?;
    Ok(0)
}

/// Reads a line from the terminal without echoing it.
fn read_hidden(prompt: &str) -> Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    eprint!("{prompt}");
    std::io::stderr().flush()?;
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin)?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet)?;
    let mut s = String::new();
    let res = stdin.lock().read_line(&mut s);
    tcsetattr(&stdin, SetArg::TCSANOW, &saved)?;
    eprintln!();
    res?;
    Ok(s.trim_end_matches(['\n', '\r']).to_string())
}

/// Reads a progress stream to its end; an error line is the command's error.
fn show_progress(body: Box<dyn Read + Send>, quiet: bool, out: &mut dyn Write) -> Result<()> {
    let tty = !quiet && std::io::stdout().is_terminal();
    let mut d = Display {
        tty,
        ids: Vec::new(),
        started: HashMap::new(),
    };
    for line in std::io::BufReader::new(body).lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let m: JsonMessage = serde_json::from_str(&line)
            .with_context(|| format!("reading the daemon's progress: {line}"))?;
        if let Some(e) = m
            .error_detail
            .as_ref()
            .map(|e| e.message.clone())
            .or(m.error.clone())
        {
            out.flush()?;
            bail!("{e}");
        }
        if !quiet {
            d.show(&m, out)?;
        }
    }
    out.flush()?;
    Ok(())
}

struct Display {
    tty: bool,
    /// Lines drawn for each id, in order, to redraw them in place.
    ids: Vec<String>,
    /// When each id's transfer began, and from how many bytes: its speed.
    started: HashMap<(String, String), (Instant, u64)>,
}

impl Display {
    fn show(&mut self, m: &JsonMessage, out: &mut dyn Write) -> Result<()> {
        let status = m.status.clone().unwrap_or_default();
        let Some(id) = m.id.as_deref().filter(|i| !i.is_empty()) else {
            if let Some(s) = &m.stream {
                write!(out, "{s}")?;
            } else if !status.is_empty() {
                writeln!(out, "{status}")?;
            }
            return Ok(());
        };
        let detail = m.progress_detail.as_ref();
        let current = detail.and_then(|d| d["current"].as_u64());
        let total = detail.and_then(|d| d["total"].as_u64()).unwrap_or(0);
        if !self.tty {
            // Plain output keeps the events and leaves the bars out.
            if current.is_none() {
                writeln!(out, "{id}: {status}")?;
            }
            return Ok(());
        }
        let text = match current {
            Some(cur) => {
                let key = (id.to_string(), status.clone());
                let (t0, b0) = *self.started.entry(key).or_insert((Instant::now(), cur));
                let secs = t0.elapsed().as_secs_f64();
                let speed = if secs > 0.2 && cur > b0 {
                    format!("  {}/s", berth_api::human_size((cur - b0) as f64 / secs))
                } else {
                    String::new()
                };
                format!(
                    "{id}: {status} {}{speed}",
                    berth_api::progress_bar(cur, total)
                )
            }
            None => format!("{id}: {status}"),
        };
        match self.ids.iter().position(|i| i == id) {
            Some(i) => {
                let up = self.ids.len() - i;
                write!(out, "\x1b[{up}A\r\x1b[2K{text}\x1b[{up}B\r")?;
            }
            None => {
                self.ids.push(id.to_string());
                writeln!(out, "{text}")?;
            }
        }
        out.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(tty: bool, lines: &[JsonMessage]) -> String {
        let mut d = Display {
            tty,
            ids: Vec::new(),
            started: HashMap::new(),
        };
        let mut out = Vec::new();
        for m in lines {
            d.show(m, &mut out).unwrap();
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn plain_lines_leave_bars_out_and_terminals_redraw_in_place() {
        let msgs = vec![
            JsonMessage::status(Some("v1"), "Pulling from app"),
            JsonMessage::status(Some("aaa"), "Pulling fs layer"),
            JsonMessage::status(Some("bbb"), "Pulling fs layer"),
            JsonMessage::progress("aaa", "Downloading", 5, 10),
            JsonMessage::status(Some("aaa"), "Pull complete"),
            JsonMessage::status(None, "Digest: sha256:x"),
        ];
        assert_eq!(
            render(false, &msgs),
            "v1: Pulling from app\naaa: Pulling fs layer\nbbb: Pulling fs layer\naaa: Pull complete\nDigest: sha256:x\n"
        );
        let t = render(true, &msgs);
        // aaa is two lines up when its progress and completion come.
        assert!(t.contains("\x1b[2A\r\x1b[2Kaaa: Downloading [="), "{t:?}");
        assert!(
            t.contains("\x1b[2A\r\x1b[2Kaaa: Pull complete\x1b[2B\r"),
            "{t:?}"
        );
        assert!(t.ends_with("Digest: sha256:x\n"));
    }
}
