//! `berth image …` and `build`.

use super::InspectArgs;
use clap::{ArgAction, Args, Subcommand};

#[derive(Subcommand)]
pub enum ImageCmd {
    #[command(alias = "list")]
    Ls(ImagesArgs),
    Import(ImportArgs),
    Load(LoadArgs),
    Pull(PullArgs),
    Push(PushArgs),
    Save(SaveArgs),
    Inspect(InspectArgs),
    Tag(TagArgs),
    #[command(alias = "remove")]
    Rm(RmiArgs),
    History(HistoryArgs),
    Build(BuildArgs),
    /// Remove unused images
    Prune(ImagePruneArgs),
}

#[derive(Args)]
pub struct ImagePruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Provide filter values (e.g. "until=<timestamp>")
    #[arg(long)]
    pub filter: Vec<String>,
}

#[derive(Args)]
pub struct BuildArgs {
    /// Name and optionally a tag in the "name:tag" format
    #[arg(short = 't', long = "tag")]
    pub tag: Vec<String>,
    /// Name of the Dockerfile (default: "PATH/Dockerfile"; "-" reads stdin)
    #[arg(short = 'f', long = "file")]
    pub file: Option<String>,
    /// Set build-time variables
    #[arg(long = "build-arg")]
    pub build_arg: Vec<String>,
    /// Set the target build stage to build
    #[arg(long)]
    pub target: Option<String>,
    /// Do not use cache when building the image
    #[arg(long = "no-cache")]
    pub no_cache: bool,
    /// Set metadata for an image
    #[arg(long)]
    pub label: Vec<String>,
    /// Suppress the build output and print image ID on success
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Write the image ID to the file
    #[arg(long)]
    pub iidfile: Option<String>,
    /// Networking mode for the RUN instructions during build
    #[arg(long)]
    pub network: Option<String>,
    /// Always attempt to pull a newer version of the image (no registry here: ignored)
    #[arg(long)]
    pub pull: bool,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    pub platform: Option<String>,
    /// Remove intermediate containers after a successful build
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub rm: bool,
    /// Always remove intermediate containers
    #[arg(long = "force-rm")]
    pub force_rm: bool,
    /// Add a custom host-to-IP mapping (host:ip) for RUN steps
    #[arg(long = "add-host")]
    pub add_host: Vec<String>,
    /// Images to consider as cache sources
    #[arg(long = "cache-from")]
    pub cache_from: Vec<String>,
    /// PATH | URL | -
    pub context: String,
}

#[derive(Args)]
pub struct ImagesArgs {
    #[arg(short = 'a', long)]
    pub all: bool,
    #[arg(short = 'q', long)]
    pub quiet: bool,
    #[arg(long)]
    pub digests: bool,
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    #[arg(long, default_value = "")]
    pub format: String,
    pub reference: Option<String>,
}

#[derive(Args)]
pub struct ImportArgs {
    #[arg(short = 'c', long = "change")]
    pub change: Vec<String>,
    #[arg(short = 'm', long)]
    pub message: Option<String>,
    #[arg(long)]
    pub platform: Option<String>,
    /// A tar file, or - for STDIN
    pub file: String,
    pub reference: Option<String>,
}

#[derive(Args)]
pub struct PullArgs {
    /// Download every tagged image in the repository (refused: not built yet)
    #[arg(short = 'a', long = "all-tags")]
    pub all_tags: bool,
    /// Set platform if server is multi-platform capable (os/arch[/variant])
    #[arg(long)]
    pub platform: Option<String>,
    /// Suppress verbose output
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// NAME[:TAG|@DIGEST]
    pub image: String,
}

#[derive(Args)]
pub struct PushArgs {
    /// Push all tags of the repository
    #[arg(short = 'a', long = "all-tags")]
    pub all_tags: bool,
    /// Suppress verbose output
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// NAME[:TAG]
    pub image: String,
}

#[derive(Args)]
pub struct LoginArgs {
    #[arg(short = 'u', long)]
    pub username: Option<String>,
    #[arg(short = 'p', long)]
    pub password: Option<String>,
    /// Take the password from STDIN
    #[arg(long = "password-stdin")]
    pub password_stdin: bool,
    /// The registry (default: Docker Hub)
    pub server: Option<String>,
}

#[derive(Args)]
pub struct LogoutArgs {
    /// The registry (default: Docker Hub)
    pub server: Option<String>,
}

#[derive(Args)]
pub struct LoadArgs {
    #[arg(short = 'i', long)]
    pub input: Option<String>,
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

#[derive(Args)]
pub struct SaveArgs {
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Args)]
pub struct TagArgs {
    pub source: String,
    pub target: String,
}

#[derive(Args)]
pub struct RmiArgs {
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(long = "no-prune")]
    pub no_prune: bool,
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Args)]
pub struct HistoryArgs {
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Print sizes and dates in human readable format
    #[arg(short = 'H', long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub human: bool,
    #[arg(long, default_value = "")]
    pub format: String,
    pub image: String,
}
