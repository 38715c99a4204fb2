//! A small synchronous HTTP/1.1 client for the Engine API over a unix socket or
//! TCP. No async runtime: the CLI starts in a millisecond and `ps` stays cheap.

use anyhow::{anyhow, bail, Context, Result};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;

pub enum Conn {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Conn {
    pub fn try_clone(&self) -> std::io::Result<Conn> {
        Ok(match self {
            Conn::Unix(s) => Conn::Unix(s.try_clone()?),
            Conn::Tcp(s) => Conn::Tcp(s.try_clone()?),
        })
    }
    pub fn shutdown_write(&self) {
        let _ = match self {
            Conn::Unix(s) => s.shutdown(Shutdown::Write),
            Conn::Tcp(s) => s.shutdown(Shutdown::Write),
        };
    }
}

impl Read for Conn {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Unix(s) => s.read(b),
            Conn::Tcp(s) => s.read(b),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Unix(s) => s.write(b),
            Conn::Tcp(s) => s.write(b),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[derive(Clone)]
pub struct Client {
    host: String,
    /// The API version asked for: ours, or `DOCKER_API_VERSION` as the
    /// docker CLI honours it (to talk to an older daemon).
    version: String,
}

pub struct Response {
    pub body: Box<dyn Read + Send>,
    pub headers: Vec<(String, String)>,
}

impl Response {
    pub fn header(&self, k: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(a, _)| a.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    }
    pub fn bytes(mut self) -> Result<Vec<u8>> {
        let mut v = Vec::new();
        self.body.read_to_end(&mut v)?;
        Ok(v)
    }
    pub fn json(self) -> Result<serde_json::Value> {
        let b = self.bytes()?;
        if b.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&b).context("decoding the daemon's answer")
    }

    /// The answer as one of the API's types.
    pub fn decode<T: serde::de::DeserializeOwned>(self) -> Result<T> {
        let b = self.bytes()?;
        serde_json::from_slice(&b).context("decoding the daemon's answer")
    }
}

/// An error the daemon answered with; `docker` prints these as
/// "Error response from daemon: …".
#[derive(Debug)]
pub struct DaemonError {
    pub status: u16,
    pub message: String,
}

/// True when `e` is the daemon answering 404.
pub fn is_not_found(e: &anyhow::Error) -> bool {
    e.downcast_ref::<DaemonError>()
        .is_some_and(|d| d.status == 404)
}

impl std::fmt::Display for DaemonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Error response from daemon: {}", self.message)
    }
}

impl std::error::Error for DaemonError {}

struct Chunked<R> {
    inner: R,
    left: usize,
    done: bool,
}

impl<R: BufRead> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        if self.left == 0 {
            let mut line = String::new();
            self.inner.read_line(&mut line)?;
            if line.trim().is_empty() {
                line.clear();
                self.inner.read_line(&mut line)?;
            }
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16)
                .map_err(|_| std::io::Error::other("bad chunk size"))?;
            if size == 0 {
                self.done = true;
                return Ok(0);
            }
            self.left = size;
        }
        let n = buf.len().min(self.left);
        let got = self.inner.read(&mut buf[..n])?;
        if got == 0 {
            self.done = true;
        }
        self.left -= got;
        Ok(got)
    }
}

pub fn urlencode(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

pub fn query(pairs: &[(&str, String)]) -> String {
    let q: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", k, urlencode(v)))
        .collect();
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

impl Client {
    pub fn new(host: &str) -> Self {
        let version = std::env::var("DOCKER_API_VERSION")
            .ok()
            .filter(|v| !v.is_empty())
            .map(|v| v.trim_start_matches('v').to_string())
            .unwrap_or_else(|| "1.45".to_string());
        Self {
            host: host.to_string(),
            version,
        }
    }

    pub fn connect(&self) -> Result<Conn> {
        if let Some(p) = self.host.strip_prefix("unix://") {
            UnixStream::connect(p).map(Conn::Unix).map_err(|e| {
                anyhow!(
                    "Cannot connect to the Berth daemon at {}. Is berthd running? ({e})",
                    self.host
                )
            })
        } else if let Some(a) = self.host.strip_prefix("tcp://") {
            TcpStream::connect(a).map(Conn::Tcp).map_err(|e| {
                anyhow!(
                    "Cannot connect to the Berth daemon at {}. Is berthd running? ({e})",
                    self.host
                )
            })
        } else {
            bail!("unsupported host {}: use unix:// or tcp://", self.host)
        }
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, Body)>,
        upgrade: bool,
    ) -> Result<(Response, Option<Conn>)> {
        self.send_with(method, path, body, upgrade, &[])
    }

    fn send_with(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, Body)>,
        upgrade: bool,
        extra: &[(&str, &str)],
    ) -> Result<(Response, Option<Conn>)> {
        let mut conn = self.connect()?;
        self.write_request(&mut conn, method, path, body, upgrade, extra)?;
        let raw = conn.try_clone()?;
        let mut r = BufReader::new(conn);
        let (status, headers) = read_head(&mut r)?;
        let get = |k: &str| {
            headers
                .iter()
                .find(|(a, _): &&(String, String)| a.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.clone())
        };
        if status == 101 {
            // Anything already buffered belongs to the stream.
            let buffered = r.buffer().to_vec();
            let body: Box<dyn Read + Send> =
                Box::new(std::io::Cursor::new(buffered).chain(r.into_inner()));
            return Ok((Response { body, headers }, Some(raw)));
        }
        let body: Box<dyn Read + Send> = if method == "HEAD" {
            Box::new(std::io::empty())
        } else if get("Transfer-Encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            Box::new(Chunked {
                inner: r,
                left: 0,
                done: false,
            })
        } else if let Some(n) = get("Content-Length").and_then(|v| v.parse::<u64>().ok()) {
            Box::new(r.take(n))
        } else {
            Box::new(r)
        };
        let resp = Response { body, headers };
        if status >= 400 {
            let b = resp.bytes().unwrap_or_default();
            let message = serde_json::from_slice::<serde_json::Value>(&b)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&b).trim().to_string());
            return Err(DaemonError { status, message }.into());
        }
        Ok((resp, Some(raw)))
    }

    /// The request line, headers and body (chunked when streamed).
    fn write_request(
        &self,
        conn: &mut Conn,
        method: &str,
        path: &str,
        body: Option<(&str, Body)>,
        upgrade: bool,
        extra: &[(&str, &str)],
    ) -> Result<()> {
        let mut head = format!(
            "{method} /v{}{path} HTTP/1.1\r\nHost: berth\r\nUser-Agent: berth-cli/{}\r\n",
            self.version,
            env!("CARGO_PKG_VERSION")
        );
        for (k, v) in extra {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if upgrade {
            head.push_str("Connection: Upgrade\r\nUpgrade: tcp\r\n");
        }
        match &body {
            Some((ct, Body::Bytes(b))) => {
                head.push_str(&format!(
                    "Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
                    b.len()
                ));
                conn.write_all(head.as_bytes())?;
                conn.write_all(b)?;
            }
            Some((ct, Body::Stream(_))) => {
                head.push_str(&format!(
                    "Content-Type: {ct}\r\nTransfer-Encoding: chunked\r\n\r\n"
                ));
                conn.write_all(head.as_bytes())?;
            }
            None => {
                head.push_str("Content-Length: 0\r\n\r\n");
                conn.write_all(head.as_bytes())?;
            }
        }
        if let Some((_, Body::Stream(mut r))) = body {
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = r.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                conn.write_all(format!("{n:x}\r\n").as_bytes())?;
                conn.write_all(&buf[..n])?;
                conn.write_all(b"\r\n")?;
            }
            conn.write_all(b"0\r\n\r\n")?;
        }
        Ok(())
    }

    pub fn get(&self, path: &str) -> Result<Response> {
        Ok(self.send("GET", path, None, false)?.0)
    }
    pub fn head(&self, path: &str) -> Result<Response> {
        Ok(self.send("HEAD", path, None, false)?.0)
    }
    pub fn put_stream(&self, path: &str, ct: &str, r: Box<dyn Read>) -> Result<Response> {
        Ok(self
            .send("PUT", path, Some((ct, Body::Stream(r))), false)?
            .0)
    }
    pub fn delete(&self, path: &str) -> Result<Response> {
        Ok(self.send("DELETE", path, None, false)?.0)
    }
    pub fn post(&self, path: &str) -> Result<Response> {
        Ok(self.send("POST", path, None, false)?.0)
    }
    /// A POST with headers of its own (`X-Registry-Auth`).
    pub fn post_with(&self, path: &str, headers: &[(&str, &str)]) -> Result<Response> {
        Ok(self.send_with("POST", path, None, false, headers)?.0)
    }
    pub fn post_json(&self, path: &str, v: &impl serde::Serialize) -> Result<Response> {
        let b = serde_json::to_vec(v)?;
        Ok(self
            .send(
                "POST",
                path,
                Some(("application/json", Body::Bytes(b))),
                false,
            )?
            .0)
    }
    pub fn post_stream(&self, path: &str, ct: &str, r: Box<dyn Read>) -> Result<Response> {
        Ok(self
            .send("POST", path, Some((ct, Body::Stream(r))), false)?
            .0)
    }
    /// Sends with `Upgrade: tcp`; returns the stream's reader and a handle to write.
    pub fn hijack(&self, path: &str, body: Option<serde_json::Value>) -> Result<(Response, Conn)> {
        let b = body.map(|v| {
            (
                "application/json",
                Body::Bytes(serde_json::to_vec(&v).unwrap_or_default()),
            )
        });
        let (resp, raw) = self.send("POST", path, b, true)?;
        Ok((resp, raw.ok_or_else(|| anyhow!("no connection"))?))
    }
}

pub enum Body {
    Bytes(Vec<u8>),
    Stream(Box<dyn Read>),
}

/// The status and headers of an HTTP/1.1 answer.
fn read_head(r: &mut impl BufRead) -> Result<(u16, Vec<(String, String)>)> {
    let mut status_line = String::new();
    r.read_line(&mut status_line)?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad response from the daemon: {status_line:?}"))?;
    let mut headers = Vec::new();
    loop {
        let mut l = String::new();
        r.read_line(&mut l)?;
        let l = l.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Ok((status, headers))
}
