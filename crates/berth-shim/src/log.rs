//! Docker's json-file log format, capped and rotated.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

pub struct JsonLog {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    max_size: u64,
    max_files: u32,
    partial: [Vec<u8>; 2],
}

fn escape(out: &mut Vec<u8>, data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    out.extend_from_slice(serde_json::to_string(&s).unwrap_or_default().as_bytes());
}

impl JsonLog {
    pub fn open(path: &str, max_size: u64, max_files: u32) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: PathBuf::from(path),
            file: Some(file),
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
        let mut rec = Vec::with_capacity(line.len() + 80);
        rec.extend_from_slice(b"{\"log\":");
        escape(&mut rec, line);
        rec.extend_from_slice(if stream == 0 {
            b",\"stream\":\"stdout\",\"time\":\""
        } else {
            b",\"stream\":\"stderr\",\"time\":\""
        });
        rec.extend_from_slice(
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
                .as_bytes(),
        );
        rec.extend_from_slice(b"\"}\n");
        if self.max_size > 0 && self.size > 0 && self.size + rec.len() as u64 > self.max_size {
            if let Err(e) = self.rotate() {
                eprintln!("berth-shim: log rotation failed: {e}");
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

    /// Unfinished lines, to carry over to a re-executed shim.
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
