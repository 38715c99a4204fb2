//! `berth network …`.

use super::{VolumeInspectArgs, VolumeLsArgs};
use clap::{Args, Subcommand};

#[derive(Subcommand)]
pub enum NetworkCmd {
    /// Create a network
    Create(NetworkCreateArgs),
    /// List networks
    #[command(alias = "list")]
    Ls(VolumeLsArgs),
    /// Display detailed information on one or more networks
    Inspect(VolumeInspectArgs),
    /// Remove one or more networks
    #[command(alias = "remove")]
    Rm(NetworkRmArgs),
    /// Remove all unused networks
    Prune(NetworkPruneArgs),
    /// Connect a container to a network
    Connect(NetworkConnectArgs),
    /// Disconnect a container from a network
    Disconnect(NetworkDisconnectArgs),
}

#[derive(Args)]
pub struct NetworkConnectArgs {
    #[arg(long)]
    pub alias: Vec<String>,
    #[arg(long)]
    pub ip: Option<String>,
    pub network: String,
    pub container: String,
}

#[derive(Args)]
pub struct NetworkDisconnectArgs {
    #[arg(short = 'f', long)]
    pub force: bool,
    pub network: String,
    pub container: String,
}

#[derive(Args)]
pub struct NetworkCreateArgs {
    #[arg(short = 'd', long, default_value = "bridge")]
    pub driver: String,
    /// Subnets in CIDR form (one IPv4 and, with --ipv6, one IPv6)
    #[arg(long)]
    pub subnet: Vec<String>,
    #[arg(long)]
    pub gateway: Vec<String>,
    #[arg(long = "ip-range")]
    pub ip_range: Vec<String>,
    /// Auxiliary addresses the network keeps (host=ip)
    #[arg(long = "aux-address")]
    pub aux_address: Vec<String>,
    /// Enable IPv6 (dual stack)
    #[arg(long)]
    pub ipv6: bool,
    #[arg(long)]
    pub internal: bool,
    #[arg(long)]
    pub attachable: bool,
    #[arg(long)]
    pub label: Vec<String>,
    #[arg(short = 'o', long = "opt")]
    pub opt: Vec<String>,
    pub name: String,
}

#[derive(Args)]
pub struct NetworkRmArgs {
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(required = true)]
    pub networks: Vec<String>,
}

#[derive(Args)]
pub struct NetworkPruneArgs {
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Provide filter values (e.g. "until=<timestamp>")
    #[arg(long)]
    pub filter: Vec<String>,
}
