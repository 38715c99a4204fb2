//! `berth registry …`.

use clap::{Args, Subcommand};

#[derive(Subcommand)]
pub enum RegistryCmd {
    /// Serve an OCI distribution registry (a process of its own, as Docker's registry:2)
    Serve(RegistryServeArgs),
    /// Delete blobs no repository refers to, and abandoned uploads
    Gc(RegistryGcArgs),
}

#[derive(Args)]
pub struct RegistryGcArgs {
    /// The registry's storage
    #[arg(long, default_value = "/var/lib/berth-registry")]
    pub root: std::path::PathBuf,
    /// Spare what is younger than this many seconds: a blob uploaded just
    /// now may not be linked yet by a running server
    #[arg(long, default_value_t = 3600)]
    pub grace: u64,
}

#[derive(Args)]
pub struct RegistryServeArgs {
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:5000")]
    pub addr: String,
    /// Where blobs, manifests and tags are kept
    #[arg(long, default_value = "/var/lib/berth-registry")]
    pub root: std::path::PathBuf,
    /// Require basic authentication by the users of this file (bcrypt, `htpasswd -B`)
    #[arg(long)]
    pub htpasswd: Option<std::path::PathBuf>,
    /// Serve HTTPS with this PEM certificate (chain)
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The certificate's PEM private key
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
}
