//! `berth registry …`.

use clap::{Args, Subcommand};

#[derive(Subcommand)]
pub enum RegistryCmd {
    /// Serve an OCI distribution registry (a process of its own, as Docker's registry:2)
    Serve(RegistryServeArgs),
}

#[derive(Args)]
pub struct RegistryServeArgs {
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:5000")]
    pub addr: String,
    /// Where blobs, manifests and tags are kept
    #[arg(long, default_value = "/var/lib/berth-registry")]
    pub root: std::path::PathBuf,
}
