//! `berth volume …`.

use clap::{Args, Subcommand};

#[derive(Subcommand)]
pub enum VolumeCmd {
    /// Create a volume
    Create(VolumeCreateArgs),
    /// List volumes
    #[command(alias = "list")]
    Ls(VolumeLsArgs),
    /// Display detailed information on one or more volumes
    Inspect(VolumeInspectArgs),
    /// Remove one or more volumes
    #[command(alias = "remove")]
    Rm(VolumeRmArgs),
    /// Remove unused local volumes
    Prune(VolumePruneArgs),
}

#[derive(Args)]
pub struct VolumeCreateArgs {
    #[arg(short = 'd', long, default_value = "local")]
    pub driver: String,
    #[arg(short = 'o', long = "opt")]
    pub opt: Vec<String>,
    #[arg(long)]
    pub label: Vec<String>,
    pub name: Option<String>,
}

#[derive(Args)]
pub struct VolumeLsArgs {
    #[arg(short = 'q', long)]
    pub quiet: bool,
    #[arg(short = 'f', long)]
    pub filter: Vec<String>,
    #[arg(long, default_value = "")]
    pub format: String,
}

#[derive(Args)]
pub struct VolumeInspectArgs {
    #[arg(short = 'f', long, default_value = "")]
    pub format: String,
    #[arg(required = true)]
    pub volumes: Vec<String>,
}

#[derive(Args)]
pub struct VolumeRmArgs {
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(required = true)]
    pub volumes: Vec<String>,
}

#[derive(Args)]
pub struct VolumePruneArgs {
    /// Remove all unused volumes, not just anonymous ones
    #[arg(short = 'a', long)]
    pub all: bool,
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(long)]
    pub filter: Vec<String>,
}
