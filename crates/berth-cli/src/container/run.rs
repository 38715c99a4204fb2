//! `run`, `start`, `attach` and `exec`: hijacked streams, waiting, exit statuses.

use super::create::create;
use super::inspect;
use crate::args::*;
use crate::client::{query, urlencode, Client};
use crate::stream;
use crate::util::*;
use anyhow::{bail, Result};
use berth_api::{ExecConfig, ExecInspect};
use serde_json::json;

/// A start that failed: as the docker CLI, 127 or 126 when the daemon ended
/// the container with that status (command not found, not executable), else 125.
pub(crate) fn start_failed(e: anyhow::Error, exit_code: Option<i64>) -> anyhow::Error {
    let code = match exit_code {
        Some(c @ (126 | 127)) => c as i32,
        _ => 125,
    };
    ExitWith(code, e).into()
}

pub(crate) fn wait_handle(
    c: &Client,
    id: &str,
    cond: &str,
) -> Result<std::thread::JoinHandle<i32>> {
    let resp = c.post(&format!("/containers/{id}/wait?condition={cond}"))?;
    Ok(std::thread::spawn(move || {
        resp.decode::<berth_api::ContainerWaitResponse>()
            .map_or(125, |w| w.status_code as i32)
    }))
}

pub struct Session {
    out: std::thread::JoinHandle<()>,
    detached: std::sync::mpsc::Receiver<bool>,
}

/// Starts moving bytes between our terminal and a hijacked stream.
pub(crate) fn session(
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

pub(crate) fn detach_key_bytes(spec: Option<&str>) -> Vec<u8> {
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

pub(crate) fn resize_loop(c: &Client, path: String) {
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

/// A hijacked attach to all of the container's output, and its input when
/// `stdin`, with the detach keys (docker's `ctrl-p,ctrl-q` by default).
fn open_attach(
    c: &Client,
    id: &str,
    stdin: bool,
    detach_keys: Option<&str>,
) -> Result<(crate::client::Response, crate::client::Conn)> {
    let q = query(&[
        ("stream", "1".into()),
        ("stdin", if stdin { "1" } else { "0" }.into()),
        ("stdout", "1".into()),
        ("stderr", "1".into()),
        ("detachKeys", detach_keys.unwrap_or("ctrl-p,ctrl-q").into()),
    ]);
    c.hijack(&format!("/containers/{id}/attach{q}"), None)
}

pub(crate) fn run(c: &Client, a: RunArgs, start_it: bool) -> Result<i32> {
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
            let code = inspect(c, &id).ok().map(|v| v.state.exit_code);
            return Err(start_failed(e, code));
        }
        println!("{id}");
        return Ok(0);
    }
    let tty = a.tty && stream::is_tty(0);
    let stdin = a.interactive;
    let keys = detach_key_bytes(a.detach_keys.as_deref());
    let (resp, conn) = open_attach(c, &id, stdin, a.detach_keys.as_deref())?;
    let waiter = wait_handle(c, &id, if a.rm { "removed" } else { "next-exit" })?;
    let _raw = stream::RawMode::when(a.tty && stdin);
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

pub(crate) fn start(c: &Client, a: StartArgs) -> Result<i32> {
    if a.attach || a.interactive {
        let id = a.containers[0].clone();
        let info = inspect(c, &id)?;
        let tty = info.config.tty;
        let stdin = a.interactive && info.config.open_stdin;
        let q = query(&[
            ("stream", "1".into()),
            ("stdin", if stdin { "1" } else { "0" }.into()),
            ("stdout", "1".into()),
            ("stderr", "1".into()),
        ]);
        let (resp, conn) = c.hijack(&format!("/containers/{id}/attach{q}"), None)?;
        let waiter = wait_handle(c, &id, "next-exit")?;
        let _raw = stream::RawMode::when(tty && stdin);
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

pub(crate) fn attach(c: &Client, a: AttachArgs) -> Result<i32> {
    let info = inspect(c, &a.container)?;
    if !info.state.running {
        bail!("You cannot attach to a stopped container, start it first");
    }
    let id = info.id;
    let tty = info.config.tty;
    let stdin = !a.no_stdin && info.config.open_stdin;
    let (resp, conn) = open_attach(c, &id, stdin, a.detach_keys.as_deref())?;
    let _raw = stream::RawMode::when(tty && stdin);
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
    Ok(inspect(c, &id)?.state.exit_code as i32)
}

pub(crate) fn exec(c: &Client, a: ExecArgs) -> Result<i32> {
    let tty = a.tty && stream::is_tty(0);
    let body = ExecConfig {
        attach_stdin: a.interactive && !a.detach,
        attach_stdout: !a.detach,
        attach_stderr: !a.detach,
        tty: a.tty,
        env: Some(a.env.clone()),
        cmd: a.cmd().to_vec(),
        privileged: a.privileged,
        user: a.user.clone().unwrap_or_default(),
        working_dir: a.workdir.clone().unwrap_or_default(),
        detach_keys: a.detach_keys.clone().unwrap_or_default(),
        console_size: if tty {
            stream::window_size().map(|(h, w)| vec![h, w])
        } else {
            None
        },
    };
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
    let _raw = stream::RawMode::when(a.tty && a.interactive);
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
    let v: ExecInspect = c.get(&format!("/exec/{exec_id}/json"))?.decode()?;
    Ok(v.exit_code.unwrap_or(0))
}
