//! `berth registry serve`: an OCI distribution server (the spec's v1.1 API)
//! over content-addressed storage behind the [`storage::Storage`] trait.

pub mod auth;
pub mod names;
pub mod server;
pub mod storage;

pub use server::router;
pub use storage::{FsStorage, Storage};

use std::path::Path;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Htpasswd(#[from] auth::HtpasswdError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Serves the registry stored under `root` on `addr` until the process
/// ends; with `htpasswd`, to its users only.
pub async fn serve(addr: &str, root: &Path, htpasswd: Option<&Path>) -> Result<(), RegistryError> {
    let store: Arc<dyn Storage> = Arc::new(FsStorage::open(root)?);
    let auth = match htpasswd {
        Some(p) => Some(Arc::new(auth::Htpasswd::load(p)?)),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| RegistryError::Listen {
            addr: addr.to_string(),
            source,
        })?;
    tracing::info!(
        "registry listening on {addr}, storage in {}",
        root.display()
    );
    axum::serve(listener, router(store, auth)).await?;
    Ok(())
}
