//! Docker's json-file log format, capped and rotated. Dependency-free: the
//! idle monitor writes these lines too, and every crate it links costs
//! resident memory in every container's supervisor.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

pub struct JsonLog {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    max_size: u64,
    max_files: u32,
    partial: [Vec<u8>; 2],
}

/// `data` as a JSON string, invalid UTF-8 replaced, escaped as serde_json
/// escapes (the daemon reads these lines with serde_json).
pub fn escape(out: &mut Vec<u8>, data: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let s = String::from_utf8_lossy(data);
    out.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0..=0x1f => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 15) as usize]);
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// `t` as RFC 3339 in UTC with nanoseconds, as Docker stamps log lines.
pub fn rfc3339_nanos(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_nanos()
    )
}

impl JsonLog {
    /// An empty `path` keeps nothing (`--log-driver none`).
    pub fn open(path: &str, max_size: u64, max_files: u32) -> std::io::Result<Self> {
        let (file, size) = if path.is_empty() {
            (None, 0)
        } else {
            let f = OpenOptions::new().create(true).append(true).open(path)?;
            let size = f.metadata()?.len();
            (Some(f), size)
        };
        Ok(Self {
            path: PathBuf::from(path),
            file,
            size,
            max_size,
            max_files: max_files.max(1),
            partial: [Vec::new(), Vec::new()],
        })
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file = None;
        if self.max_files <= 1 {
            fs::remove_file(&self.path)?;
        } else {
            let name = |i: u32| PathBuf::from(format!("{}.{i}", self.path.display()));
            let _ = fs::remove_file(name(self.max_files - 1));
            for i in (1..self.max_files - 1).rev() {
                let _ = fs::rename(name(i), name(i + 1));
            }
            fs::rename(&self.path, name(1))?;
        }
        self.file = Some(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?,
        );
        self.size = 0;
        Ok(())
    }

    fn entry(&mut self, stream: usize, line: &[u8]) {
        if self.path.as_os_str().is_empty() {
            return;
        }
        let mut rec = Vec::with_capacity(line.len() + 80);
        rec.extend_from_slice(b"{\"log\":");
        escape(&mut rec, line);
        rec.extend_from_slice(if stream == 0 {
            b",\"stream\":\"stdout\",\"time\":\""
        } else {
            b",\"stream\":\"stderr\",\"time\":\""
        });
        rec.extend_from_slice(rfc3339_nanos(SystemTime::now()).as_bytes());
        rec.extend_from_slice(b"\"}\n");
        if self.max_size > 0 && self.size > 0 && self.size + rec.len() as u64 > self.max_size {
            if let Err(e) = self.rotate() {
                eprintln!("berth: log rotation failed: {e}");
            }
        }
        if let Some(f) = self.file.as_mut() {
            if f.write_all(&rec).is_ok() {
                self.size += rec.len() as u64;
            }
        }
    }

    /// Logs `data` from stream 0 (stdout) or 1 (stderr), one entry per line.
    pub fn write(&mut self, stream: usize, data: &[u8]) {
        let mut buf = std::mem::take(&mut self.partial[stream]);
        buf.extend_from_slice(data);
        let mut start = 0;
        while let Some(i) = buf[start..].iter().position(|&b| b == b'\n') {
            let end = start + i + 1;
            self.entry(stream, &buf[start..end]);
            start = end;
        }
        let rest = buf.split_off(start);
        // Docker cuts lines longer than 16 KiB into several entries.
        if rest.len() >= 16 * 1024 {
            self.entry(stream, &rest);
        } else {
            self.partial[stream] = rest;
        }
    }

    /// Unfinished lines, to carry over to the next image of the supervisor.
    pub fn take_partial(&mut self) -> [Vec<u8>; 2] {
        std::mem::take(&mut self.partial)
    }

    pub fn set_partial(&mut self, partial: [Vec<u8>; 2]) {
        self.partial = partial;
    }

    pub fn flush(&mut self) {
        for s in 0..2 {
            let rest = std::mem::take(&mut self.partial[s]);
            if !rest.is_empty() {
                self.entry(s, &rest);
            }
        }
        if let Some(f) = self.file.as_mut() {
            let _ = f.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_as_serde_json_does() {
        let mut all: Vec<u8> = (0u8..=255).collect();
        all.extend_from_slice("héllo \u{2028} ✓ \"q\" \\".as_bytes());
        let mut ours = Vec::new();
        escape(&mut ours, &all);
        let theirs = serde_json::to_string(&String::from_utf8_lossy(&all)).unwrap();
        assert_eq!(String::from_utf8(ours).unwrap(), theirs);
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_nanoseconds() {
        let t = |s: u64, n: u32| rfc3339_nanos(UNIX_EPOCH + std::time::Duration::new(s, n));
        assert_eq!(t(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(t(951_782_400, 5), "2000-02-29T00:00:00.000000005Z");
        assert_eq!(
            t(1_795_993_630, 123_456_789),
            "2026-11-29T23:07:10.123456789Z"
        );
        assert_eq!(
            t(4_102_444_799, 999_999_999),
            "2099-12-31T23:59:59.999999999Z"
        );
    }

    #[test]
    fn lines_split_rotate_and_carry_partials() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let p = path.to_str().unwrap();
        let mut log = JsonLog::open(p, 300, 2).unwrap();
        log.write(0, b"one\ntw");
        log.write(1, b"err\n");
        let carried = log.take_partial();
        let mut log = JsonLog::open(p, 300, 2).unwrap();
        log.set_partial(carried);
        log.write(0, b"o\n");
        let lines: Vec<serde_json::Value> = fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let logs: Vec<&str> = lines.iter().map(|v| v["log"].as_str().unwrap()).collect();
        assert_eq!(logs, ["one\n", "err\n", "two\n"]);
        assert_eq!(lines[1]["stream"], "stderr");
        // Past 300 bytes the file rotates to .1, and only one old file is kept.
        for i in 0..10 {
            log.write(0, format!("line {i}\n").as_bytes());
        }
        assert!(fs::metadata(format!("{p}.1")).is_ok());
        assert!(fs::metadata(format!("{p}.2")).is_err());
        assert!(fs::metadata(&path).unwrap().len() <= 300);
    }
}
