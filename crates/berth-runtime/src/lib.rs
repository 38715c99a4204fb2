//! Container config → OCI runtime spec, the shim's wire protocol and its client,
//! and cgroup readings.

pub use berth_util::bpf;
pub mod cgroups;
pub mod proto;
pub mod seccomp;
pub mod shim_client;
pub mod spec;

/// The OCI runtime spec types the engine writes and the shim reads.
pub use oci_spec::runtime as oci;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("shim: {msg}")]
    Shim { kind: proto::ErrorKind, msg: String },
    #[error("invalid capability: {0}")]
    InvalidCapability(String),
    #[error("invalid security option: {0}")]
    InvalidSecurityOpt(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("OCI spec: {0}")]
    Oci(#[from] oci_spec::OciSpecError),
}

impl RuntimeError {
    pub(crate) fn shim(msg: impl Into<String>) -> Self {
        RuntimeError::Shim {
            kind: proto::ErrorKind::Other,
            msg: msg.into(),
        }
    }
}
