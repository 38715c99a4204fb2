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
    #[error("TLS: {0}")]
    Tls(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// TLS for the server: a PEM certificate chain and its private key.
pub struct TlsFiles<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
}

/// Serves the registry stored under `root` on `addr` until the process
/// ends; with `htpasswd`, to its users only; with `tls`, over HTTPS.
pub async fn serve(
    addr: &str,
    root: &Path,
    htpasswd: Option<&Path>,
    tls: Option<TlsFiles<'_>>,
) -> Result<(), RegistryError> {
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
    let app = router(store, auth);
    match tls {
        None => axum::serve(listener, app).await?,
        Some(files) => serve_tls(listener, app, tls_acceptor(&files)?).await?,
    }
    Ok(())
}

fn tls_acceptor(files: &TlsFiles) -> Result<tokio_rustls::TlsAcceptor, RegistryError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &str, p: &Path, e: &dyn std::fmt::Display| {
        RegistryError::Tls(format!("{what} {}: {e}", p.display()))
    };
    let certs = CertificateDer::pem_file_iter(files.cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad("certificate", files.cert, &e))?;
    let key = PrivateKeyDer::from_pem_file(files.key).map_err(|e| bad("key", files.key, &e))?;
    // ring, not aws-lc-rs (rustls's default, whose build needs cmake): no
    // post-quantum key exchange, which is why rustls marks this deprecated.
    #[allow(deprecated)]
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| RegistryError::Tls(e.to_string()))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// HTTP/1.1 over TLS, one task per connection.
async fn serve_tls(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    acceptor: tokio_rustls::TlsAcceptor,
) -> std::io::Result<()> {
    loop {
        let (tcp, peer) = listener.accept().await?;
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!("TLS handshake with {peer}: {e}");
                    return;
                }
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service);
            if let Err(e) = conn.await {
                tracing::debug!("connection from {peer}: {e}");
            }
        });
    }
}
