//! Attaching to a container's stdio.

use crate::*;

impl Engine {
    /// Connects to the container's stdio. Before the container starts (`docker run`
    /// attaches first), the returned future waits for its shim; the container's
    /// start waits for such attaches, which register here, synchronously.
    /// dockerd's refusals of any attach, with or without a live stream.
    pub fn check_attach(&self, key: &str) -> Result<()> {
        match self.find(key)?.state().status {
            Status::Paused => Err(EngineError::Conflict(format!(
                "container {key} is paused, unpause the container before attach"
            ))),
            Status::Restarting => Err(EngineError::Conflict(format!(
                "container {key} is restarting, wait until the container is running"
            ))),
            _ => Ok(()),
        }
    }

    pub fn attach(
        &self,
        key: &str,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> Result<(
        impl std::future::Future<Output = Result<tokio::io::BufReader<UnixStream>>> + Send + 'static,
        bool,
    )> {
        let c = self.find(key)?;
        let tty = c.rec.read().expect("rec").config.tty;
        let st = c.state().status;
        let shim = self.shim(&c.id());
        let req = Request::Attach {
            stdin,
            stdout,
            stderr,
        };
        self.check_attach(key)?;
        let pending = !st.is_running();
        if pending && st != Status::Created && st != Status::Exited {
            return Err(EngineError::Conflict(
                "You cannot attach to a stopped container, start it first".into(),
            ));
        }
        let mut rx = c.signals.subscribe();
        let base = rx.borrow_and_update().shims;
        if pending {
            c.attach_pending.fetch_add(1, Ordering::SeqCst);
        }
        let fut = async move {
            if pending {
                let ready = tokio::time::timeout(Duration::from_secs(3600), async {
                    loop {
                        if rx.borrow().shims > base || rx.borrow().removed {
                            return;
                        }
                        if rx.changed().await.is_err() {
                            return;
                        }
                    }
                })
                .await;
                let removed = rx.borrow().removed;
                let res = if ready.is_ok() && !removed {
                    shim.open(&req)
                        .await
                        .map(|(_, s)| s)
                        .map_err(EngineError::from)
                } else {
                    Err(EngineError::Conflict("container was removed".into()))
                };
                c.attach_pending.fetch_sub(1, Ordering::SeqCst);
                c.bump(|_| {});
                return res;
            }
            Ok(shim.open(&req).await?.1)
        };
        Ok((fut, tty))
    }

    pub async fn resize(&self, key: &str, height: u16, width: u16) -> Result<()> {
        let c = self.find(key)?;
        if !c.state().status.is_running() {
            return Err(EngineError::Conflict(format!(
                "Container {} is not running",
                c.id()
            )));
        }
        self.shim(&c.id())
            .call(&Request::Resize {
                exec_id: None,
                height,
                width,
            })
            .await?;
        Ok(())
    }
}
