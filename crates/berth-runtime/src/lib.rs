//! Container config → OCI runtime spec, the shim's wire protocol and its client,
//! and cgroup readings.

pub mod bpf;
pub mod cgroups;
pub mod proto;
pub mod seccomp;
pub mod shim_client;
pub mod spec;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("shim: {0}")]
    Shim(String),
    #[error("invalid capability: {0}")]
    InvalidCapability(String),
    #[error("invalid security option: {0}")]
    InvalidSecurityOpt(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}
