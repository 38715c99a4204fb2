//! `berth system …`, `version`, `info`, `events` and `inspect`.

use clap::{Args, Subcommand};

#[derive(Subcommand)]
pub enum SystemCmd {
    /// Show Berth disk usage
    Df(DfArgs),
    /// Remove unused data
    Prune(SystemPruneArgs),
    /// Display system-wide information
    Info(FormatArgs),
}

#[derive(Args)]
pub struct DfArgs {
    /// Show detailed information on space usage
    #[arg(short = 'v', long)]
    pub verbose: bool,
    #[arg(long, default_value = "")]
    pub format: String,
}

#[derive(Args)]
pub struct SystemPruneArgs {
    /// Remove all unused images not just dangling ones
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Prune anonymous volumes
    #[arg(long)]
    pub volumes: bool,
    #[arg(long)]
    pub filter: Vec<String>,
}

#[derive(Args)]
pub struct EventsArgs {
    /// Show all events created since timestamp
    #[arg(long)]
    pub since: Option<String>,
    /// Stream events until this timestamp
    #[arg(long)]
    pub until: Option<String>,
    /// Filter output based on conditions provided
    #[arg(short = 'f', long)]
    pub filter: Vec<String>,
    #[arg(long, default_value = "")]
    pub format: String,
}

#[derive(Args)]
pub struct FormatArgs {
    #[arg(short = 'f', long, default_value = "")]
    pub format: String,
}

#[derive(Args)]
pub struct InspectArgs {
    #[arg(short = 'f', long, default_value = "")]
    pub format: String,
    #[arg(short = 's', long)]
    pub size: bool,
    #[arg(long = "type")]
    pub kind: Option<String>,
    #[arg(required = true)]
    pub names: Vec<String>,
}
