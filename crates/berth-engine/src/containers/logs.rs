//! Reading the json-file logs that shims write, for `docker logs`.

use crate::{Engine, Result};
use berth_runtime::proto::{frame_header, STDERR, STDOUT};
use serde::Deserialize;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::time::Duration;
use tokio::sync::mpsc;

#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub stdout: bool,
    pub stderr: bool,
    pub follow: bool,
    pub timestamps: bool,
    /// Lines from the end; None for all.
    pub tail: Option<usize>,
    pub since: Option<f64>,
    pub until: Option<f64>,
}

#[derive(Deserialize)]
struct Entry {
    log: String,
    stream: String,
    time: String,
}

fn render(e: &Entry, opts: &LogOptions, tty: bool) -> Option<Vec<u8>> {
    let stream = if e.stream == "stderr" { STDERR } else { STDOUT };
    if (stream == STDOUT && !opts.stdout) || (stream == STDERR && !opts.stderr) {
        return None;
    }
    let t = chrono::DateTime::parse_from_rfc3339(&e.time).ok()?;
    let ts = t.timestamp() as f64 + t.timestamp_subsec_nanos() as f64 / 1e9;
    if opts.since.is_some_and(|s| ts < s) || opts.until.is_some_and(|u| ts > u) {
        return None;
    }
    let mut payload = Vec::new();
    if opts.timestamps {
        payload.extend_from_slice(
            t.with_timezone(&chrono::Utc)
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
                .as_bytes(),
        );
        payload.push(b' ');
    }
    payload.extend_from_slice(e.log.as_bytes());
    if tty {
        return Some(payload);
    }
    let mut out = frame_header(stream, payload.len()).to_vec();
    out.extend_from_slice(&payload);
    Some(out)
}

/// Docker's `--since` / `--until` values: unix seconds (with fraction) or RFC 3339.
pub fn parse_time(s: &str) -> Option<f64> {
    if s.is_empty() {
        return None;
    }
    if let Ok(f) = s.parse::<f64>() {
        return Some(f);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp() as f64 + t.timestamp_subsec_nanos() as f64 / 1e9)
}

impl Engine {
    /// Streams a container's logs as frames (or raw, with a TTY).
    pub fn logs(&self, key: &str, opts: LogOptions) -> Result<mpsc::Receiver<Vec<u8>>> {
        let c = self.find(key)?;
        let (path, tty) = {
            let r = c.rec.read().expect("rec");
            if r.host_config.log_config.kind == "none" {
                return Err(crate::EngineError::NotImplemented(
                    "configured logging driver does not support reading".into(),
                ));
            }
            (r.log_path.clone(), r.config.tty)
        };
        let (tx, rx) = mpsc::channel(64);
        tokio::task::spawn_blocking(move || {
            let (lines, pos, ino) = read_history(&path, &opts, tty);
            let skip = opts
                .tail
                .map(|t| lines.len().saturating_sub(t))
                .unwrap_or(0);
            for b in lines.into_iter().skip(skip) {
                if tx.blocking_send(b).is_err() {
                    return;
                }
            }
            if opts.follow {
                follow(&path, pos, ino, &opts, tty, &tx, &c);
            }
        });
        Ok(rx)
    }
}

/// Every line the log files hold (rotated ones first), rendered; and where
/// the current file ends, and which file that is, for a follow.
fn read_history(path: &str, opts: &LogOptions, tty: bool) -> (Vec<Vec<u8>>, u64, u64) {
    let max_files = 20;
    let mut files: Vec<String> = (1..max_files)
        .rev()
        .map(|i| format!("{path}.{i}"))
        .filter(|p| std::path::Path::new(p).exists())
        .collect();
    files.push(path.to_string());
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut pos = 0u64;
    let mut ino = 0u64;
    for f in &files {
        let Ok(file) = std::fs::File::open(f) else {
            continue;
        };
        if f == path {
            ino = file.metadata().map(|m| m.ino()).unwrap_or(0);
        }
        let mut r = BufReader::new(file);
        let mut l = String::new();
        while r.read_line(&mut l).unwrap_or(0) > 0 {
            if !l.ends_with('\n') {
                break; // a partial record being written; follow picks it up
            }
            if let Ok(e) = serde_json::from_str::<Entry>(&l) {
                if let Some(b) = render(&e, opts, tty) {
                    lines.push(b);
                }
            }
            if f == path {
                pos += l.len() as u64;
            }
            l.clear();
        }
    }
    (lines, pos, ino)
}

/// `logs -f`: new lines as they come, across rotations, until the
/// container ends or the client goes.
fn follow(
    path: &str,
    mut pos: u64,
    ino: u64,
    opts: &LogOptions,
    tty: bool,
    tx: &mpsc::Sender<Vec<u8>>,
    c: &crate::Ctr,
) {
    // Follow through the open file, not its path: a container removed
    // right after it exits (`docker-py run(remove=True)`) takes the
    // path away before a client has read the last lines.
    let Ok(file) = std::fs::File::open(path) else {
        return;
    };
    if file.metadata().map(|m| m.ino()).ok() != Some(ino) {
        pos = 0;
    }
    let mut r = BufReader::new(file);
    let _ = r.seek(SeekFrom::Start(pos));
    let mut l = String::new();
    loop {
        let running = c.state().status.is_running();
        loop {
            let n = r.read_line(&mut l).unwrap_or(0);
            if n == 0 || !l.ends_with('\n') {
                // Nothing more, or a record still being written: keep
                // the partial line and read its rest next time.
                break;
            }
            if let Ok(e) = serde_json::from_str::<Entry>(&l) {
                if let Some(b) = render(&e, opts, tty) {
                    if tx.blocking_send(b).is_err() {
                        return;
                    }
                }
            }
            l.clear();
        }
        // Rotated: the old file is drained; carry on in the new one.
        if let Ok(m) = std::fs::metadata(path) {
            if m.ino() != r.get_ref().metadata().map(|m| m.ino()).unwrap_or(0) {
                if let Ok(f) = std::fs::File::open(path) {
                    r = BufReader::new(f);
                    l.clear();
                    continue;
                }
            }
        }
        if !running || tx.is_closed() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_filters() {
        let e = Entry {
            log: "hi\n".into(),
            stream: "stderr".into(),
            time: "2026-01-01T00:00:00.5Z".into(),
        };
        let all = LogOptions {
            stdout: true,
            stderr: true,
            ..Default::default()
        };
        assert_eq!(
            render(&e, &all, false).unwrap(),
            b"\x02\0\0\0\0\0\0\x03hi\n"
        );
        assert_eq!(render(&e, &all, true).unwrap(), b"hi\n");
        let only_out = LogOptions {
            stdout: true,
            ..Default::default()
        };
        assert!(render(&e, &only_out, false).is_none());
        let late = LogOptions {
            since: parse_time("2026-01-02T00:00:00Z"),
            ..all.clone()
        };
        assert!(render(&e, &late, false).is_none());
    }
}
