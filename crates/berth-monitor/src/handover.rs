//! What one image of a container's supervisor passes to the next when it
//! execs (the full shim to the monitor when idle, the monitor back to the
//! shim when something needs it): descriptors by number, open across the
//! exec, and the state around them. A line-based text file, so the monitor
//! needs no serialization crate.

use std::fmt::Write as _;
use std::os::fd::RawFd;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Handover {
    /// How many images this supervisor has had before this one.
    pub generation: u32,
    /// The full shim, for the monitor to hand back to.
    pub shim: String,
    pub listener: RawFd,
    pub init_pid: i32,
    pub init_stdin: Option<RawFd>,
    pub init_tty: Option<RawFd>,
    pub init_open_streams: usize,
    /// The container's output: (fd, 0 stdout / 1 stderr).
    pub sources: Vec<(RawFd, usize)>,
    pub clients: Vec<HandedClient>,
    pub log_path: String,
    pub log_max_size: u64,
    pub log_max_files: u32,
    pub tty: bool,
    pub log_partial: [Vec<u8>; 2],
    /// The compiled seccomp program and its flags, for execs.
    pub seccomp: Option<(Vec<u8>, u32)>,
    pub finished_execs: Vec<(String, i32)>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct HandedClient {
    pub fd: RawFd,
    pub waiting: bool,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub read_closed: bool,
    /// Output not yet written to it.
    pub outbuf: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
#[error("bad handover line {line}: {what}")]
pub struct DecodeError {
    line: usize,
    what: String,
}

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2 + 1);
    s.push('x'); // never an empty word
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

fn unhex(s: &str) -> Result<Vec<u8>, String> {
    let s = s.strip_prefix('x').ok_or("hex without its x")?;
    if s.len() % 2 != 0 {
        return Err("odd hex".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| e.to_string()))
        .collect()
}

fn opt_fd(fd: Option<RawFd>) -> String {
    fd.map_or_else(|| "-".into(), |f| f.to_string())
}

impl Handover {
    /// Every descriptor the next image must find open.
    pub fn fds(&self) -> Vec<RawFd> {
        let mut v = vec![self.listener];
        v.extend(self.sources.iter().map(|s| s.0));
        v.extend(self.clients.iter().map(|c| c.fd));
        v.extend(self.init_stdin);
        v.extend(self.init_tty);
        v
    }

    pub fn encode(&self) -> String {
        let mut s = String::new();
        let b = |x: bool| u8::from(x);
        let _ = writeln!(s, "generation {}", self.generation);
        let _ = writeln!(s, "shim {}", hex(self.shim.as_bytes()));
        let _ = writeln!(s, "listener {}", self.listener);
        let _ = writeln!(
            s,
            "init {} {} {} {}",
            self.init_pid,
            opt_fd(self.init_stdin),
            opt_fd(self.init_tty),
            self.init_open_streams
        );
        for (fd, stream) in &self.sources {
            let _ = writeln!(s, "source {fd} {stream}");
        }
        for c in &self.clients {
            let _ = writeln!(
                s,
                "client {} {} {} {} {} {} {}",
                c.fd,
                b(c.waiting),
                b(c.stdin),
                b(c.stdout),
                b(c.stderr),
                b(c.read_closed),
                hex(&c.outbuf)
            );
        }
        let _ = writeln!(
            s,
            "log {} {} {} {} {} {}",
            hex(self.log_path.as_bytes()),
            self.log_max_size,
            self.log_max_files,
            b(self.tty),
            hex(&self.log_partial[0]),
            hex(&self.log_partial[1])
        );
        if let Some((prog, flags)) = &self.seccomp {
            let _ = writeln!(s, "seccomp {flags} {}", hex(prog));
        }
        for (id, code) in &self.finished_execs {
            let _ = writeln!(s, "finished {} {code}", hex(id.as_bytes()));
        }
        s
    }

    pub fn decode(text: &str) -> Result<Handover, DecodeError> {
        let mut h = Handover::default();
        for (i, line) in text.lines().enumerate() {
            let err = |what: String| DecodeError { line: i + 1, what };
            let w: Vec<&str> = line.split(' ').collect();
            let num = |k: usize| -> Result<i64, DecodeError> {
                w.get(k)
                    .ok_or_else(|| err("too few words".into()))?
                    .parse()
                    .map_err(|e| err(format!("{e}")))
            };
            let flag = |k: usize| num(k).map(|n| n != 0);
            let bytes = |k: usize| unhex(w.get(k).copied().unwrap_or("")).map_err(err);
            let text = |k: usize| {
                bytes(k).and_then(|b| String::from_utf8(b).map_err(|e| err(e.to_string())))
            };
            let fd = |k: usize| match w.get(k) {
                Some(&"-") => Ok(None),
                _ => num(k).map(|n| Some(n as RawFd)),
            };
            match w[0] {
                "generation" => h.generation = num(1)? as u32,
                "shim" => h.shim = text(1)?,
                "listener" => h.listener = num(1)? as RawFd,
                "init" => {
                    h.init_pid = num(1)? as i32;
                    h.init_stdin = fd(2)?;
                    h.init_tty = fd(3)?;
                    h.init_open_streams = num(4)? as usize;
                }
                "source" => h.sources.push((num(1)? as RawFd, num(2)? as usize)),
                "client" => h.clients.push(HandedClient {
                    fd: num(1)? as RawFd,
                    waiting: flag(2)?,
                    stdin: flag(3)?,
                    stdout: flag(4)?,
                    stderr: flag(5)?,
                    read_closed: flag(6)?,
                    outbuf: bytes(7)?,
                }),
                "log" => {
                    h.log_path = text(1)?;
                    h.log_max_size = num(2)? as u64;
                    h.log_max_files = num(3)? as u32;
                    h.tty = flag(4)?;
                    h.log_partial = [bytes(5)?, bytes(6)?];
                }
                "seccomp" => h.seccomp = Some((bytes(2)?, num(1)? as u32)),
                "finished" => h.finished_execs.push((text(1)?, num(2)? as i32)),
                "" => {}
                other => return Err(err(format!("unknown key {other:?}"))),
            }
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let h = Handover {
            generation: 3,
            shim: "/usr/lib/berth/berth shim".into(),
            listener: 3,
            init_pid: 4242,
            init_stdin: Some(7),
            init_tty: None,
            init_open_streams: 2,
            sources: vec![(8, 0), (9, 1)],
            clients: vec![
                HandedClient {
                    fd: 10,
                    waiting: true,
                    ..Default::default()
                },
                HandedClient {
                    fd: 11,
                    stdin: true,
                    stdout: true,
                    outbuf: vec![1, 0, 0, 0, 0, 0, 0, 2, b'h', b'i'],
                    ..Default::default()
                },
            ],
            log_path: "/var/lib/berth/containers/x/x-json.log".into(),
            log_max_size: 10 << 20,
            log_max_files: 3,
            tty: false,
            log_partial: [b"half a li".to_vec(), vec![]],
            seccomp: Some((vec![0x20, 0, 0, 0, 4, 0, 0, 0], 1)),
            finished_execs: vec![("abc".into(), 0), ("def".into(), 127)],
        };
        let back = Handover::decode(&h.encode()).unwrap();
        assert_eq!(back, h);
        assert_eq!(back.fds(), vec![3, 8, 9, 10, 11, 7]);
    }

    #[test]
    fn refuses_garbage() {
        assert!(Handover::decode("listener x\n").is_err());
        assert!(Handover::decode("client 1 0\n").is_err());
        assert!(Handover::decode("log x0 1 1 0 xz x\n").is_err());
        assert!(Handover::decode("what 1\n").is_err());
    }
}
