//! berth: the command-line client, with Docker's command grammar.

mod build;
mod client;
mod commands;
mod cp;
mod format;
mod gotmpl;
mod network;
mod stats;
mod stream;
mod system;
mod volume;

use clap::{ArgAction, Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "A container engine, Docker-compatible"
)]
pub struct Cli {
    /// Daemon socket to connect to (BERTH_HOST, then DOCKER_HOST)
    #[arg(short = 'H', long = "host")]
    host: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Manage containers
    Container {
        #[command(subcommand)]
        cmd: ContainerCmd,
    },
    /// Manage images
    Image {
        #[command(subcommand)]
        cmd: ImageCmd,
    },
    /// Manage networks
    Network {
        #[command(subcommand)]
        cmd: NetworkCmd,
    },
    /// Manage volumes
    Volume {
        #[command(subcommand)]
        cmd: VolumeCmd,
    },
    /// Manage Berth
    System {
        #[command(subcommand)]
        cmd: SystemCmd,
    },
    #[command(flatten)]
    Short(ShortCmd),
}

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

/// The top-level short forms (`berth run`, `berth ps`, `berth images`, …).
#[derive(Subcommand)]
pub enum ShortCmd {
    /// Create and run a new container from an image
    Run(RunArgs),
    /// Create a new container
    Create(RunArgs),
    /// Start one or more stopped containers
    Start(StartArgs),
    /// List containers
    Ps(PsArgs),
    /// Fetch the logs of a container
    Logs(LogsArgs),
    /// Return low-level information on objects
    Inspect(InspectArgs),
    /// Display the running processes of a container
    Top(TopArgs),
    /// Stop one or more running containers
    Stop(StopArgs),
    /// Kill one or more running containers
    Kill(KillArgs),
    /// Restart one or more containers
    Restart(StopArgs),
    /// Remove one or more containers
    Rm(RmArgs),
    /// Block until containers stop, then print their exit codes
    Wait(NamesArgs),
    /// Attach to a running container
    Attach(AttachArgs),
    /// Execute a command in a running container
    Exec(ExecArgs),
    /// Rename a container
    Rename(RenameArgs),
    /// List port mappings or a specific mapping for the container
    Port(PortArgs),
    /// Build an image from a Dockerfile
    Build(BuildArgs),
    /// Create a new image from a container's changes
    Commit(CommitArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(DiffArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(CpArgs),
    /// Export a container's filesystem as a tar archive
    Export(ExportArgs),
    /// Update configuration of one or more containers
    Update(UpdateArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(StatsArgs),
    /// Pause all processes within one or more containers
    Pause(NamesArgs),
    /// Unpause all processes within one or more containers
    Unpause(NamesArgs),
    /// List images
    Images(ImagesArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(ImportArgs),
    /// Load an image from a tar archive or STDIN
    Load(LoadArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(SaveArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(TagArgs),
    /// Remove one or more images
    Rmi(RmiArgs),
    /// Show the Berth version information
    Version(FormatArgs),
    /// Get real time events from the server
    Events(EventsArgs),
    /// Display system-wide information
    Info(FormatArgs),
}

#[derive(Subcommand)]
pub enum ContainerCmd {
    Run(RunArgs),
    Create(RunArgs),
    Start(StartArgs),
    #[command(alias = "list", alias = "ps")]
    Ls(PsArgs),
    Logs(LogsArgs),
    Inspect(InspectArgs),
    Top(TopArgs),
    Stop(StopArgs),
    Kill(KillArgs),
    Restart(StopArgs),
    #[command(alias = "remove")]
    Rm(RmArgs),
    Wait(NamesArgs),
    Attach(AttachArgs),
    Exec(ExecArgs),
    Rename(RenameArgs),
    Port(PortArgs),
    Commit(CommitArgs),
    Diff(DiffArgs),
    Cp(CpArgs),
    Export(ExportArgs),
    Update(UpdateArgs),
    Stats(StatsArgs),
    Pause(NamesArgs),
    Unpause(NamesArgs),
    /// Remove all stopped containers
    Prune(PruneArgs),
}

#[derive(Subcommand)]
pub enum ImageCmd {
    #[command(alias = "list")]
    Ls(ImagesArgs),
    Import(ImportArgs),
    Load(LoadArgs),
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

#[derive(Args, Clone, Default)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    #[arg(long, action = ArgAction::Help)]
    help: Option<bool>,
    /// Run container in background and print container ID
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Automatically remove the container when it exits
    #[arg(long)]
    pub rm: bool,
    #[arg(long)]
    pub name: Option<String>,
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    #[arg(long = "env-file")]
    pub env_file: Vec<String>,
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    #[arg(long)]
    pub entrypoint: Option<String>,
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    #[arg(short = 'l', long = "label")]
    pub label: Vec<String>,
    #[arg(long, default_value = "no")]
    pub restart: String,
    #[arg(long = "network", alias = "net")]
    pub network: Option<String>,
    #[command(flatten)]
    pub resources: ResourceArgs,
    /// Add additional groups to join
    #[arg(long = "group-add")]
    pub group_add: Vec<String>,
    /// Ulimit options (name=soft[:hard])
    #[arg(long)]
    pub ulimit: Vec<String>,
    /// Sysctl options (key=value)
    #[arg(long)]
    pub sysctl: Vec<String>,
    /// Size of /dev/shm
    #[arg(long = "shm-size")]
    pub shm_size: Option<String>,
    /// PID namespace to use (host)
    #[arg(long)]
    pub pid: Option<String>,
    /// IPC mode to use
    #[arg(long)]
    pub ipc: Option<String>,
    /// UTS namespace to use (host)
    #[arg(long)]
    pub uts: Option<String>,
    /// Cgroup namespace to use (host|private)
    #[arg(long)]
    pub cgroupns: Option<String>,
    /// Add a rule to the cgroup allowed devices list
    #[arg(long = "device-cgroup-rule")]
    pub device_cgroup_rule: Vec<String>,
    /// Tune host's OOM preferences (-1000 to 1000)
    #[arg(long = "oom-score-adj", allow_hyphen_values = true)]
    pub oom_score_adj: Option<i64>,
    /// Disable OOM Killer
    #[arg(long = "oom-kill-disable")]
    pub oom_kill_disable: bool,
    /// Tune container memory swappiness (0 to 100)
    #[arg(long = "memory-swappiness", allow_hyphen_values = true)]
    pub memory_swappiness: Option<i64>,
    /// Runtime to use for this container
    #[arg(long)]
    pub runtime: Option<String>,
    /// Add link to another container (name[:alias])
    #[arg(long)]
    pub link: Vec<String>,
    /// Add a host device to the container (HOST[:CONTAINER][:PERMS])
    #[arg(long)]
    pub device: Vec<String>,
    /// Set custom DNS search domains
    #[arg(long = "dns-search")]
    pub dns_search: Vec<String>,
    /// Set DNS options
    #[arg(long = "dns-option")]
    pub dns_option: Vec<String>,
    /// Add network-scoped alias for the container
    #[arg(long = "network-alias")]
    pub network_alias: Vec<String>,
    /// IPv4 address (e.g., 172.30.100.104)
    #[arg(long)]
    pub ip: Option<String>,
    /// IPv6 address (e.g., fd00:1::10)
    #[arg(long)]
    pub ip6: Option<String>,
    /// Container MAC address (e.g., 92:d0:c6:0a:29:33)
    #[arg(long = "mac-address")]
    pub mac_address: Option<String>,
    /// Publish a container's port(s) to the host ([ip:][hostPort:]containerPort[/proto])
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// Publish all exposed ports to random ports
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Expose a port or a range of ports
    #[arg(long)]
    pub expose: Vec<String>,
    /// Bind mount a volume (name:/path[:ro], /host:/path[:ro], or /path)
    #[arg(short = 'v', long = "volume")]
    pub volume: Vec<String>,
    /// Attach a filesystem mount (type=volume|bind|tmpfs,source=…,target=…,readonly)
    #[arg(long)]
    pub mount: Vec<String>,
    /// Mount a tmpfs directory (/path[:options])
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Mount volumes from the specified container(s)
    #[arg(long = "volumes-from")]
    pub volumes_from: Vec<String>,
    #[arg(long)]
    pub privileged: bool,
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    #[arg(long = "security-opt")]
    pub security_opt: Vec<String>,
    #[arg(long = "read-only")]
    pub read_only: bool,
    #[arg(long = "log-driver")]
    pub log_driver: Option<String>,
    #[arg(long = "log-opt")]
    pub log_opt: Vec<String>,
    #[arg(long = "add-host")]
    pub add_host: Vec<String>,
    #[arg(long)]
    pub dns: Vec<String>,
    #[arg(long = "stop-signal")]
    pub stop_signal: Option<String>,
    #[arg(long = "stop-timeout")]
    pub stop_timeout: Option<i64>,
    /// Command to run to check health
    #[arg(long = "health-cmd")]
    pub health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h)
    #[arg(long = "health-interval")]
    pub health_interval: Option<String>,
    /// Maximum time to allow one check to run (ms|s|m|h)
    #[arg(long = "health-timeout")]
    pub health_timeout: Option<String>,
    /// Consecutive failures needed to report unhealthy
    #[arg(long = "health-retries")]
    pub health_retries: Option<u32>,
    /// Start period for the container to initialize before counting retries
    #[arg(long = "health-start-period")]
    pub health_start_period: Option<String>,
    /// Time between running the check during the start period
    #[arg(long = "health-start-interval")]
    pub health_start_interval: Option<String>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long = "no-healthcheck")]
    pub no_healthcheck: bool,
    /// Attach to STDIN, STDOUT or STDERR
    #[arg(short = 'a', long)]
    pub attach: Vec<String>,
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    /// Accepted for compatibility; Berth runs the image's platform.
    #[arg(long)]
    pub platform: Option<String>,
    /// Accepted for compatibility: images never come from a registry yet.
    #[arg(long)]
    pub pull: Option<String>,
    /// IMAGE [COMMAND] [ARG...]: options end at the image, as in docker.
    #[arg(
        required = true,
        trailing_var_arg = true,
        value_name = "IMAGE [COMMAND] [ARG...]"
    )]
    pub image_and_cmd: Vec<String>,
}

impl RunArgs {
    pub fn image(&self) -> &str {
        &self.image_and_cmd[0]
    }
    pub fn cmd(&self) -> &[String] {
        &self.image_and_cmd[1..]
    }
}

#[derive(Args)]
pub struct StartArgs {
    #[arg(short = 'a', long)]
    pub attach: bool,
    #[arg(short = 'i', long)]
    pub interactive: bool,
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args)]
pub struct PsArgs {
    #[arg(short = 'a', long)]
    pub all: bool,
    #[arg(short = 'q', long)]
    pub quiet: bool,
    #[arg(short = 'n', long = "last")]
    pub last: Option<i64>,
    #[arg(short = 'l', long)]
    pub latest: bool,
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    #[arg(short = 's', long)]
    pub size: bool,
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    #[arg(long, default_value = "")]
    pub format: String,
}

#[derive(Args)]
pub struct LogsArgs {
    #[arg(short = 'f', long)]
    pub follow: bool,
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    #[arg(short = 't', long)]
    pub timestamps: bool,
    #[arg(long)]
    pub since: Option<String>,
    #[arg(long)]
    pub until: Option<String>,
    #[arg(long)]
    pub details: bool,
    pub container: String,
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

#[derive(Args)]
pub struct TopArgs {
    pub container: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

#[derive(Args)]
pub struct StopArgs {
    #[arg(short = 't', long = "time", alias = "timeout")]
    pub time: Option<i64>,
    #[arg(short = 's', long)]
    pub signal: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args)]
pub struct KillArgs {
    #[arg(short = 's', long, default_value = "KILL")]
    pub signal: String,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args)]
pub struct RmArgs {
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(short = 'v', long)]
    pub volumes: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args)]
pub struct NamesArgs {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args)]
pub struct AttachArgs {
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    #[arg(long = "no-stdin")]
    pub no_stdin: bool,
    #[arg(long = "sig-proxy", default_value_t = true)]
    pub sig_proxy: bool,
    pub container: String,
}

#[derive(Args)]
pub struct ExecArgs {
    #[arg(short = 'd', long)]
    pub detach: bool,
    #[arg(short = 'i', long)]
    pub interactive: bool,
    #[arg(short = 't', long)]
    pub tty: bool,
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    #[arg(long)]
    pub privileged: bool,
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    /// CONTAINER COMMAND [ARG...]: options end at the container.
    #[arg(required = true, num_args = 2.., trailing_var_arg = true, value_name = "CONTAINER COMMAND [ARG...]")]
    pub container_and_cmd: Vec<String>,
}

impl ExecArgs {
    pub fn container(&self) -> &str {
        &self.container_and_cmd[0]
    }
    pub fn cmd(&self) -> &[String] {
        &self.container_and_cmd[1..]
    }
}

#[derive(Args)]
pub struct RenameArgs {
    pub container: String,
    pub new_name: String,
}

#[derive(Args)]
pub struct CommitArgs {
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short = 'a', long)]
    pub author: Option<String>,
    /// Apply Dockerfile instruction to the created image
    #[arg(short = 'c', long = "change")]
    pub change: Vec<String>,
    /// Commit message
    #[arg(short = 'm', long)]
    pub message: Option<String>,
    /// Pause container during commit
    #[arg(short = 'p', long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub pause: bool,
    pub container: String,
    pub reference: Option<String>,
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
pub struct PortArgs {
    pub container: String,
    /// PRIVATE_PORT[/PROTO]
    pub private: Option<String>,
}

/// The limits `run` and `update` share.
#[derive(Args, Clone, Default)]
pub struct ResourceArgs {
    /// Memory limit
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Swap limit equal to memory plus swap: -1 to enable unlimited swap
    #[arg(long = "memory-swap")]
    pub memory_swap: Option<String>,
    /// Number of CPUs
    #[arg(long)]
    pub cpus: Option<f64>,
    /// CPU shares (relative weight)
    #[arg(long = "cpu-shares", short = 'c')]
    pub cpu_shares: Option<i64>,
    /// Limit CPU CFS (Completely Fair Scheduler) period
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<i64>,
    /// Limit CPU CFS (Completely Fair Scheduler) quota
    #[arg(long = "cpu-quota")]
    pub cpu_quota: Option<i64>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long = "pids-limit")]
    pub pids_limit: Option<i64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// MEMs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    /// Memory soft limit
    #[arg(long = "memory-reservation")]
    pub memory_reservation: Option<String>,
    /// Block IO (relative weight), between 10 and 1000, or 0 to disable
    #[arg(long = "blkio-weight")]
    pub blkio_weight: Option<u16>,
}

#[derive(Args)]
pub struct UpdateArgs {
    pub containers: Vec<String>,
    #[command(flatten)]
    pub resources: ResourceArgs,
    /// Restart policy to apply when a container exits
    #[arg(long)]
    pub restart: Option<String>,
}

#[derive(Args)]
pub struct ExportArgs {
    pub container: String,
    /// Write to a file, instead of STDOUT
    #[arg(short = 'o', long)]
    pub output: Option<String>,
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
pub struct StatsArgs {
    pub containers: Vec<String>,
    /// Show all containers (default shows just running)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Disable streaming stats and only pull the first result
    #[arg(long = "no-stream")]
    pub no_stream: bool,
    /// Do not truncate output; accepted
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    #[arg(long, default_value = "")]
    pub format: String,
}

#[derive(Args)]
pub struct CpArgs {
    /// CONTAINER:SRC_PATH, or a local path (`-` for a tar on stdin)
    pub src: String,
    /// CONTAINER:DEST_PATH, or a local path (`-` for a tar on stdout)
    pub dest: String,
    /// Archive mode (copy all uid/gid information); accepted, ownership is kept
    #[arg(short = 'a', long)]
    pub archive: bool,
    /// Always follow symbol link in SRC_PATH; accepted
    #[arg(short = 'L', long = "follow-link")]
    pub follow_link: bool,
    /// Suppress progress output during copy; accepted, there is none
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

#[derive(Args)]
pub struct DiffArgs {
    pub container: String,
}

#[derive(Args)]
pub struct PruneArgs {
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(long = "filter")]
    pub filter: Vec<String>,
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

#[derive(Args)]
pub struct FormatArgs {
    #[arg(short = 'f', long, default_value = "")]
    pub format: String,
}

/// Building clap's whole command tree costs ~0.6 ms of every start of the
/// CLI. The commands on a container's everyday path parse against their own
/// arguments only; anything else, and any error or help request, takes the
/// full parse, so what users see is the same.
fn quick_parse() -> Option<Cli> {
    use clap::{Args, FromArgMatches};
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let (host, at) = match args.get(1)?.to_str()? {
        "-H" | "--host" => (Some(args.get(2)?.to_str()?.to_string()), 3),
        a if a.starts_with("--host=") => (Some(a["--host=".len()..].to_string()), 2),
        a if a.starts_with('-') => return None,
        _ => (None, 1),
    };
    let name = args.get(at)?.to_str()?;
    macro_rules! quick {
        ($($name:literal => $variant:ident($args:ty)),* $(,)?) => {
            match name {
                $($name => {
                    let m = <$args>::augment_args(clap::Command::new($name))
                        .try_get_matches_from(&args[at..])
                        .ok()?;
                    ShortCmd::$variant(<$args>::from_arg_matches(&m).ok()?)
                })*
                _ => return None,
            }
        };
    }
    let cmd = quick! {
        "run" => Run(RunArgs),
        "create" => Create(RunArgs),
        "start" => Start(StartArgs),
        "exec" => Exec(ExecArgs),
        "ps" => Ps(PsArgs),
        "rm" => Rm(RmArgs),
        "stop" => Stop(StopArgs),
        "logs" => Logs(LogsArgs),
        "inspect" => Inspect(InspectArgs),
        "kill" => Kill(KillArgs),
        "restart" => Restart(StopArgs),
        "wait" => Wait(NamesArgs),
        "attach" => Attach(AttachArgs),
        "top" => Top(TopArgs),
        "pause" => Pause(NamesArgs),
        "unpause" => Unpause(NamesArgs),
        "images" => Images(ImagesArgs),
        "version" => Version(FormatArgs),
    };
    Some(Cli {
        host,
        cmd: Cmd::Short(cmd),
    })
}

fn main() {
    let cli = quick_parse().unwrap_or_else(Cli::parse);
    let host = cli
        .host
        .clone()
        .or_else(|| std::env::var("BERTH_HOST").ok().filter(|s| !s.is_empty()))
        .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "unix:///run/berth/berth.sock".into());
    let c = client::Client::new(&host);
    let code = commands::dispatch(&c, cli.cmd);
    std::process::exit(code);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_parses_match_the_full_parse() {
        use clap::Parser;
        // `quick_parse` reads the process's arguments; check the pieces it
        // builds on parse exactly as the full tree does.
        use clap::{Args, FromArgMatches};
        let argv = [
            "run",
            "--rm",
            "-it",
            "-e",
            "A=1",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "x y",
        ];
        let m = RunArgs::augment_args(clap::Command::new("run"))
            .try_get_matches_from(argv)
            .unwrap();
        let quick = RunArgs::from_arg_matches(&m).unwrap();
        let full = Cli::try_parse_from(std::iter::once("berth").chain(argv)).unwrap();
        let Cmd::Short(ShortCmd::Run(full)) = full.cmd else {
            panic!("not a run")
        };
        let view = |a: &RunArgs| {
            (
                a.rm,
                a.interactive,
                a.tty,
                a.env.clone(),
                a.network.clone(),
                a.image_and_cmd.clone(),
            )
        };
        assert_eq!(view(&quick), view(&full));
        assert_eq!(view(&quick).5, ["busybox", "sh", "-c", "x y"]);
    }

    #[test]
    fn the_command_tree_is_consistent() {
        // clap checks flag clashes (e.g. `-H` for host and for `history --human`)
        // only when a subcommand is parsed; check the whole tree at once.
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
