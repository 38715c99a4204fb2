//! Docker's hijacked streams: `Upgrade: tcp` answered with 101, then raw bytes
//! both ways between the client and the container's shim.

use crate::{ApiError, ApiResult};
use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use hyper_util::rt::TokioIo;
use std::future::Future;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// `ctrl-p,ctrl-q` → [0x10, 0x11]. None when the client asked for no detach keys.
pub fn detach_keys(spec: Option<&str>) -> ApiResult<Option<Vec<u8>>> {
    let spec = match spec {
        None => "ctrl-p,ctrl-q",
        Some("") => "ctrl-p,ctrl-q",
        Some(s) => s,
    };
    let mut out = Vec::new();
    for k in spec.split(',') {
        let k = k.trim();
        if let Some(c) = k.strip_prefix("ctrl-") {
            let b = match c.as_bytes() {
                [c] if c.is_ascii_alphabetic() => c.to_ascii_lowercase() - b'a' + 1,
                b"@" => 0,
                b"[" => 27,
                b"\\" => 28,
                b"]" => 29,
                b"^" => 30,
                b"_" => 31,
                _ => {
                    return Err(ApiError::bad(format!(
                        "Invalid detach keys ({spec}) provided"
                    )))
                }
            };
            out.push(b);
        } else if k.len() == 1 {
            out.push(k.as_bytes()[0]);
        } else {
            return Err(ApiError::bad(format!(
                "Invalid detach keys ({spec}) provided"
            )));
        }
    }
    Ok(Some(out))
}

pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// Answers `req` with 101 and hands the raw connection to `f`. A client that did
/// not ask to upgrade gets the output as a plain streaming body instead.
pub fn upgrade<F, Fut>(mut req: Request, tty: bool, f: F) -> Response
where
    F: FnOnce(Box<dyn Stream>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let content_type = HeaderValue::from_static(if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    });
    let wants_upgrade = req
        .headers()
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"tcp"));
    if wants_upgrade {
        let conn = req
            .extensions()
            .get::<axum::extract::ConnectInfo<crate::ConnFd>>()
            .map(|c| c.0 .0);
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            match on.await {
                Ok(up) => {
                    if let Some(fd) = conn {
                        response_read(fd).await;
                    }
                    f(Box::new(TokioIo::new(up))).await
                }
                Err(e) => tracing::debug!("upgrade failed: {e}"),
            }
        });
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = r.headers_mut();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("tcp"));
        h.insert(header::CONTENT_TYPE, content_type);
        return r;
    }
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    tokio::spawn(f(Box::new(theirs)));
    let stream = futures_util::stream::unfold(ours, |mut s| async move {
        let mut buf = vec![0u8; 32 * 1024];
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), s))
            }
        }
    });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(header::CONTENT_TYPE, content_type);
    r
}

/// Waits (up to a second) until the client has taken the 101 response out
/// of its socket. Clients such as docker-py read the response through a
/// buffered reader and then the stream from the raw socket: output that
/// arrived together with the response would sit unseen in that buffer. A
/// unix socket counts what the peer has not read yet in the sender's
/// SIOCOUTQ; over TCP the count ends at the peer's kernel, which is as close
/// as TCP can tell.
async fn response_read(fd: std::os::fd::RawFd) {
    for _ in 0..1000 {
        let mut queued: libc::c_int = 0;
        // SAFETY: SIOCOUTQ writes one int; `fd` is the connection whose
        // upgraded stream the caller holds open.
        let r = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut queued) };
        if r != 0 || queued == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

/// How a stream's framing changes between the shim and the client.
#[derive(Debug, Clone, Copy)]
pub enum Reframe {
    /// Raw terminal output becomes stdout frames.
    Frame,
    /// Frames become raw output, stdout and stderr interleaved.
    Deframe,
}

/// The shim's side of an exec whose start request asked for the other
/// framing than the process has (dockerd honours the start's `Tty`).
pub struct Reframed<S> {
    inner: S,
    mode: Reframe,
    buf: Vec<u8>,
    out: Vec<u8>,
    pos: usize,
    /// Deframing: header bytes seen so far, payload bytes still to come.
    header: Vec<u8>,
    remaining: usize,
}

impl<S> Reframed<S> {
    pub fn new(inner: S, mode: Reframe) -> Self {
        Reframed {
            inner,
            mode,
            buf: vec![0; 32 * 1024],
            out: Vec::new(),
            pos: 0,
            header: Vec::with_capacity(8),
            remaining: 0,
        }
    }

    fn take(&mut self, n: usize) {
        let data = &self.buf[..n];
        match self.mode {
            Reframe::Frame => {
                self.out.extend_from_slice(&berth_api::stream::frame_header(
                    berth_api::stream::STDOUT,
                    n,
                ));
                self.out.extend_from_slice(data);
            }
            Reframe::Deframe => {
                let mut i = 0;
                while i < n {
                    if self.remaining > 0 {
                        let k = self.remaining.min(n - i);
                        self.out.extend_from_slice(&data[i..i + k]);
                        self.remaining -= k;
                        i += k;
                    } else {
                        let k = (8 - self.header.len()).min(n - i);
                        self.header.extend_from_slice(&data[i..i + k]);
                        i += k;
                        if self.header.len() == 8 {
                            let h = &self.header;
                            self.remaining = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
                            self.header.clear();
                        }
                    }
                }
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Reframed<S> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let me = self.get_mut();
        loop {
            if me.pos < me.out.len() {
                let n = (me.out.len() - me.pos).min(buf.remaining());
                buf.put_slice(&me.out[me.pos..me.pos + n]);
                me.pos += n;
                return Poll::Ready(Ok(()));
            }
            me.out.clear();
            me.pos = 0;
            let mut rb = tokio::io::ReadBuf::new(&mut me.buf);
            match std::pin::Pin::new(&mut me.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    if n == 0 {
                        return Poll::Ready(Ok(()));
                    }
                    me.take(n);
                }
                other => return other,
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Reframed<S> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Finds the detach sequence in client input; holds back a partial match.
struct DetachScanner {
    keys: Vec<u8>,
    matched: usize,
}

impl DetachScanner {
    /// Returns the bytes to forward, and whether the sequence was completed.
    fn feed(&mut self, data: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(data.len());
        for &b in data {
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    return (out, true);
                }
            } else {
                out.extend_from_slice(&self.keys[..self.matched]);
                self.matched = 0;
                if b == self.keys[0] {
                    self.matched = 1;
                } else {
                    out.push(b);
                }
            }
        }
        (out, false)
    }
}

/// Moves bytes both ways until the container's side ends or the client detaches.
/// `before_close` runs after the container's output ended and before the client
/// sees EOF: exec uses it to record the exit code the client asks for next.
pub async fn pump<S, F>(client: Box<dyn Stream>, shim: S, detach: Option<Vec<u8>>, before_close: F)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    F: Future<Output = ()>,
{
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut sr, mut sw) = tokio::io::split(shim);
    let out = async {
        let _ = tokio::io::copy(&mut sr, &mut cw).await;
        before_close.await;
        let _ = cw.shutdown().await;
    };
    let input = async {
        let mut scan = detach
            .filter(|k| !k.is_empty())
            .map(|keys| DetachScanner { keys, matched: 0 });
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match cr.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = sw.shutdown().await;
                    // Input is done; output goes on until the container's side ends.
                    std::future::pending::<()>().await;
                }
                Ok(n) => {
                    let (fwd, detached) = match scan.as_mut() {
                        Some(s) => s.feed(&buf[..n]),
                        None => (buf[..n].to_vec(), false),
                    };
                    if !fwd.is_empty() && sw.write_all(&fwd).await.is_err() {
                        std::future::pending::<()>().await;
                    }
                    if detached {
                        return;
                    }
                }
            }
        }
    };
    tokio::select! {
        _ = out => {}
        _ = input => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_parse() {
        assert_eq!(detach_keys(None).unwrap(), Some(vec![0x10, 0x11]));
        assert_eq!(detach_keys(Some("ctrl-a,x")).unwrap(), Some(vec![1, b'x']));
        assert!(detach_keys(Some("ctrl-ab")).is_err());
    }

    #[tokio::test]
    async fn reframing_both_ways() {
        let mut framed = Vec::new();
        for (stream, data) in [(1u8, &b"out"[..]), (2, b"err!"), (1, b"")] {
            framed.extend_from_slice(&berth_api::stream::frame_header(stream, data.len()));
            framed.extend_from_slice(data);
        }
        // Deframing survives any split of the input.
        let (mut a, b) = tokio::io::duplex(3);
        let writer = tokio::spawn(async move {
            for chunk in framed.chunks(3) {
                a.write_all(chunk).await.unwrap();
            }
        });
        let mut raw = Vec::new();
        Reframed::new(b, Reframe::Deframe)
            .read_to_end(&mut raw)
            .await
            .unwrap();
        writer.await.unwrap();
        assert_eq!(raw, b"outerr!");
        let mut out = Vec::new();
        Reframed::new(&b"tty"[..], Reframe::Frame)
            .read_to_end(&mut out)
            .await
            .unwrap();
        assert_eq!(out, [&[1u8, 0, 0, 0, 0, 0, 0, 3][..], b"tty"].concat());
    }

    #[test]
    fn scanner_holds_partial_matches() {
        let mut s = DetachScanner {
            keys: vec![0x10, 0x11],
            matched: 0,
        };
        assert_eq!(s.feed(b"ab\x10"), (b"ab".to_vec(), false));
        assert_eq!(s.feed(b"c"), (b"\x10c".to_vec(), false));
        assert_eq!(s.feed(b"\x10\x11rest"), (vec![], true));
    }
}
