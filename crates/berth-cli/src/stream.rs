//! Attached sessions: raw terminals, window sizes, and Docker's stream framing.

use crate::client::Conn;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;

/// Copies Docker's multiplexed frames to our stdout and stderr.
pub fn demux<R: Read>(mut r: R) -> std::io::Result<()> {
    let mut head = [0u8; 8];
    let mut buf = vec![0u8; 32 * 1024];
    let out = std::io::stdout();
    let err = std::io::stderr();
    loop {
        if let Err(e) = r.read_exact(&mut head) {
            return if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Ok(())
            } else {
                Err(e)
            };
        }
        let mut n = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
        while n > 0 {
            let k = n.min(buf.len());
            r.read_exact(&mut buf[..k])?;
            if head[0] == 2 {
                let mut e = err.lock();
                e.write_all(&buf[..k])?;
                e.flush()?;
            } else {
                let mut o = out.lock();
                o.write_all(&buf[..k])?;
                o.flush()?;
            }
            n -= k;
        }
    }
}

/// Copies a raw (TTY) stream to stdout.
pub fn raw_copy<R: Read>(mut r: R) -> std::io::Result<()> {
    let mut buf = vec![0u8; 32 * 1024];
    let mut out = std::io::stdout();
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        out.write_all(&buf[..n])?;
        out.flush()?;
    }
}

pub fn is_tty(fd: i32) -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(fd) == 1 }
}

pub fn window_size() -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ fills the struct we pass.
    let r = unsafe { libc::ioctl(std::io::stdout().as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_row > 0).then_some((ws.ws_row, ws.ws_col))
}

/// Puts stdin in raw mode until dropped.
pub struct RawMode(Option<nix::sys::termios::Termios>);

impl RawMode {
    /// Raw mode for our terminal when `wanted` and stdin is one.
    pub fn when(wanted: bool) -> Option<Self> {
        (wanted && is_tty(0)).then(Self::enable)
    }

    pub fn enable() -> Self {
        use nix::sys::termios;
        let stdin = std::io::stdin();
        match termios::tcgetattr(&stdin) {
            Ok(orig) => {
                let mut raw = orig.clone();
                termios::cfmakeraw(&mut raw);
                let _ = termios::tcsetattr(&stdin, termios::SetArg::TCSANOW, &raw);
                RawMode(Some(orig))
            }
            Err(_) => RawMode(None),
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(orig) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                orig,
            );
        }
    }
}

/// Sends our stdin to the stream. Returns true when the detach keys were typed.
pub fn pump_stdin(mut conn: Conn, detach: &[u8]) -> bool {
    let mut buf = [0u8; 4096];
    let mut matched = 0usize;
    let mut stdin = std::io::stdin();
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) | Err(_) => {
                conn.shutdown_write();
                return false;
            }
            Ok(n) => n,
        };
        let mut fwd = Vec::with_capacity(n);
        for &b in &buf[..n] {
            if !detach.is_empty() && b == detach[matched] {
                matched += 1;
                if matched == detach.len() {
                    let _ = conn.write_all(&fwd);
                    return true;
                }
                continue;
            }
            fwd.extend_from_slice(&detach[..matched]);
            matched = 0;
            fwd.push(b);
        }
        if conn.write_all(&fwd).is_err() {
            return false;
        }
    }
}
