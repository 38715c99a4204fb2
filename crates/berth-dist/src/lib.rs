//! Berth's distribution client: references, credentials and the registry
//! protocol (OCI distribution v1.1 and Docker registry v2) over HTTP —
//! manifests and indexes, blobs downloaded into a file with their digest
//! checked as they stream and resumed by `Range` after a cut, uploads
//! streamed from a file, cross-repository mounts, basic and bearer-token
//! authentication. No image store here: the engine decides what a blob
//! becomes.

pub mod auth;
mod client;
pub mod manifest;
pub mod reference;
mod session;

pub use auth::AuthConfig;
pub use client::{Client, Options};
pub use reference::Reference;
pub use session::{Progress, Session};

#[derive(Debug, thiserror::Error)]
pub enum DistError {
    #[error("invalid reference format: {0}")]
    InvalidReference(String),
    #[error("{0}")]
    NotAllowed(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Denied(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Registry(String),
    #[error("{0}")]
    Http(String),
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: String, actual: String },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The host's architecture as images name it.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}
