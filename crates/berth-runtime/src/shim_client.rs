//! berthd's side of the shim protocol.

use crate::proto::{ExitStatus, Request, Response};
use crate::RuntimeError;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

#[derive(Debug, Clone)]
pub struct ShimClient {
    sock: PathBuf,
}

impl ShimClient {
    pub fn new(sock: &Path) -> Self {
        Self {
            sock: sock.to_path_buf(),
        }
    }

    /// Sends `req`; returns the response and the connection (for streams).
    pub async fn open(
        &self,
        req: &Request,
    ) -> Result<(Response, BufReader<UnixStream>), RuntimeError> {
        let mut s = UnixStream::connect(&self.sock).await?;
        let mut line = serde_json::to_vec(req)?;
        line.push(b'\n');
        s.write_all(&line).await?;
        let mut r = BufReader::new(s);
        let mut resp = String::new();
        r.read_line(&mut resp).await?;
        if resp.is_empty() {
            return Err(RuntimeError::shim("connection closed"));
        }
        let resp: Response = serde_json::from_str(&resp)?;
        if !resp.ok {
            return Err(RuntimeError::Shim {
                kind: resp.kind.unwrap_or_default(),
                msg: resp.error.unwrap_or_default(),
            });
        }
        Ok((resp, r))
    }

    pub async fn call(&self, req: &Request) -> Result<Response, RuntimeError> {
        Ok(self.open(req).await?.0)
    }

    pub async fn wait(&self) -> Result<ExitStatus, RuntimeError> {
        self.begin_wait().await?.exit().await
    }

    /// Registers as the container's waiter without waiting yet: connected
    /// before `Start`, the exit status is pushed the moment the container
    /// ends, ahead of the shim's cleanup.
    pub async fn begin_wait(&self) -> Result<PendingWait, RuntimeError> {
        let mut s = UnixStream::connect(&self.sock).await?;
        let mut line = serde_json::to_vec(&Request::Wait)?;
        line.push(b'\n');
        s.write_all(&line).await?;
        Ok(PendingWait(BufReader::new(s)))
    }

    pub async fn exec_wait(&self, exec_id: &str) -> Result<ExitStatus, RuntimeError> {
        self.call(&Request::ExecWait {
            exec_id: exec_id.to_string(),
        })
        .await?
        .exit
        .ok_or_else(|| RuntimeError::shim("exec wait: no exit status"))
    }
}

/// A `Wait` sent to a shim, its answer still to come.
#[derive(Debug)]
pub struct PendingWait(BufReader<UnixStream>);

impl PendingWait {
    pub async fn exit(mut self) -> Result<ExitStatus, RuntimeError> {
        let mut resp = String::new();
        self.0.read_line(&mut resp).await?;
        if resp.is_empty() {
            return Err(RuntimeError::shim("connection closed"));
        }
        let resp: Response = serde_json::from_str(&resp)?;
        if !resp.ok {
            return Err(RuntimeError::Shim {
                kind: resp.kind.unwrap_or_default(),
                msg: resp.error.unwrap_or_default(),
            });
        }
        resp.exit
            .ok_or_else(|| RuntimeError::shim("wait: no exit status"))
    }
}
