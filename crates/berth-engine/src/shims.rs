//! Starting a container's shim, behind a trait: `ProcessShims` runs the
//! berth-shim binary; tests hand the engine a fake that serves the shim
//! protocol in-process.

use crate::{EngineError, Result};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;

pub trait ShimLauncher: Send + Sync {
    /// Starts the shim for the container whose state directory is `xdir`
    /// (its settings in `xdir/shim.json`); done when the shim has created the
    /// container and listens on its socket, or has said why it cannot.
    fn spawn<'a>(&'a self, xdir: &'a Path)
        -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;
}

/// The berth-shim binary at `path`.
pub struct ProcessShims {
    pub path: PathBuf,
}

impl ShimLauncher for ProcessShims {
    fn spawn<'a>(
        &'a self,
        xdir: &'a Path,
    ) -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>> {
        Box::pin(self.spawn_shim(xdir))
    }
}

impl ProcessShims {
    async fn spawn_shim(&self, xdir: &Path) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(xdir.join("shim.log"))?;
        let mut child = tokio::process::Command::new(&self.path)
            .arg(xdir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|e| EngineError::Internal(format!("spawning shim: {e}")))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        let mut reader = tokio::io::BufReader::new(stdout);
        // A shim that dies without a word must not hang us: a process it left
        // behind may still hold the other end of the pipe.
        let exited_early = tokio::select! {
            r = reader.read_line(&mut line) => { r?; false }
            _ = child.wait() => true,
            _ = tokio::time::sleep(Duration::from_secs(60)) => {
                let _ = child.start_kill();
                true
            }
        };
        if exited_early && line.is_empty() {
            // It may have exited just after writing its answer, which the
            // pipe still holds.
            let _ =
                tokio::time::timeout(Duration::from_millis(200), reader.read_line(&mut line)).await;
        }
        if exited_early && line.is_empty() {
            let log = std::fs::read_to_string(xdir.join("shim.log")).unwrap_or_default();
            return Err(EngineError::Internal(format!(
                "failed to create task for container: shim exited: {}",
                log.lines().last().unwrap_or("no output")
            )));
        }
        // Reap the shim whenever it ends; it outlives us if we go first.
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        let line = line.trim();
        if line == "ready" {
            return Ok(());
        }
        // "error KIND MESSAGE"
        let rest = line.strip_prefix("error ").unwrap_or(line);
        let (kind, msg) = rest.split_once(' ').unwrap_or((rest, ""));
        let msg = if msg.is_empty() { "shim exited" } else { msg };
        Err(EngineError::StartFailed {
            exit_code: berth_runtime::proto::ErrorKind::parse(kind).exit_code(),
            message: format!("failed to create task for container: {msg}"),
        })
    }
}
