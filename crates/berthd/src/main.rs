//! berthd: the daemon. Argument parsing and wiring only.

use anyhow::{bail, Context, Result};
use berth_engine::{Engine, EngineConfig};
use berth_server::{AppState, DaemonInfo};
use clap::Parser;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser, Debug)]
#[command(name = "berthd", version, about = "Berth container engine daemon")]
struct Args {
    /// Daemon socket(s) to listen on: unix:///path or tcp://127.0.0.1:PORT
    #[arg(short = 'H', long = "host")]
    host: Vec<String>,
    /// Root of persisted state
    #[arg(long, default_value = "/var/lib/berth")]
    data_root: PathBuf,
    /// Root of runtime state
    #[arg(long, default_value = "/run/berth")]
    exec_root: PathBuf,
    /// Path of the daemon's pid file
    #[arg(short = 'p', long)]
    pidfile: Option<PathBuf>,
    /// debug, info, warn, error, fatal
    #[arg(short = 'l', long, default_value = "info")]
    log_level: String,
    /// The shim binary (default: berth-shim beside berthd)
    #[arg(long, env = "BERTH_SHIM")]
    shim: Option<PathBuf>,
    /// Remount the cgroup2 hierarchy with `favordynmods` (true/false). Moving a
    /// process into a cgroup otherwise waits for an RCU grace period (~15 ms
    /// here) on every container start; the price is slightly costlier fork/exit.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    cgroup_favordynmods: bool,
    /// The Linux bridge of the default `bridge` network
    #[arg(long, default_value = "berth0")]
    bridge: String,
    /// The default bridge's address and subnet
    #[arg(long, default_value = "10.88.0.1/16")]
    bip: String,
    /// Berth's nftables table
    #[arg(long, default_value = "berth")]
    nft_table: String,
    /// Dual stack on the default bridge
    #[arg(long)]
    ipv6: bool,
    /// The default bridge's IPv6 subnet (with --ipv6; default: a random
    /// unique local /64)
    #[arg(long = "fixed-cidr-v6")]
    fixed_cidr_v6: Option<String>,
    /// Connect the host's own connections to published ports straight to the
    /// container at connect() (a cgroup BPF program), rather than through DNAT
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    socket_redirect: bool,
    /// Milliseconds after which an idle shim re-executes itself to shed the
    /// container-creation code (0: never; tests set it low)
    #[arg(long, hide = true)]
    shim_slim_after: Option<u64>,
    /// What idle shims become (default: berth-monitor beside the shim; none:
    /// the shim re-executes itself)
    #[arg(long, env = "BERTH_MONITOR")]
    shim_monitor: Option<PathBuf>,
    /// Registries (host[:port] or IPv4 CIDR) reached over plain HTTP, or
    /// HTTPS without checking the certificate; loopback always is
    #[arg(long = "insecure-registry")]
    insecure_registry: Vec<String>,
    /// When given, the only registries this daemon contacts (`loopback`:
    /// any loopback address); pulls from others fail without any traffic
    #[arg(long = "allow-registry")]
    allow_registry: Vec<String>,
    /// Layers downloaded at once per pull
    #[arg(long, default_value_t = 3)]
    max_concurrent_downloads: usize,
    /// Layers uploaded at once per push
    #[arg(long, default_value_t = 5)]
    max_concurrent_uploads: usize,
    /// The cgroup containers' cgroups are made under, in every hierarchy
    #[arg(long, default_value = "/berth")]
    cgroup_parent: String,
    /// CA certificates per registry, `<dir>/<host[:port]>/*.crt`
    #[arg(long, default_value = "/etc/docker/certs.d")]
    registry_certs_dir: PathBuf,
}

/// See `Args::cgroup_favordynmods`.
fn favor_dynmods() {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for (target, opts) in berth_runtime::cgroups::favordynmods_remounts(&info) {
        let res = nix::mount::mount(
            None::<&str>,
            target.as_str(),
            None::<&str>,
            nix::mount::MsFlags::MS_REMOUNT,
            Some(opts.as_str()),
        );
        match res {
            Ok(()) => tracing::info!("remounted {target} with {opts}"),
            Err(e) => tracing::warn!("could not remount {target} with favordynmods: {e}"),
        }
    }
}

fn shim_path(args: &Args) -> Result<PathBuf> {
    if let Some(p) = &args.shim {
        return Ok(p.clone());
    }
    let exe = std::env::current_exe()?;
    let p = exe.with_file_name("berth-shim");
    if !p.exists() {
        bail!("berth-shim not found beside {}", exe.display());
    }
    Ok(p)
}

fn monitor_path(args: &Args, shim: &std::path::Path) -> Option<PathBuf> {
    match &args.shim_monitor {
        Some(p) if p.as_os_str() == "none" => None,
        Some(p) => Some(p.clone()),
        None => Some(shim.with_file_name("berth-monitor")).filter(|p| p.exists()),
    }
}

fn daemon_id(data_root: &std::path::Path) -> String {
    let p = data_root.join("engine-id");
    if let Ok(s) = std::fs::read_to_string(&p) {
        return s.trim().to_string();
    }
    let id = hex::encode(rand::random::<[u8; 16]>());
    let _ = std::fs::write(&p, &id);
    id
}

/// `--cgroup-parent`: an absolute path that stays where it says.
fn check_cgroup_parent(p: &str) -> Result<()> {
    if !p.starts_with('/') || p.split('/').any(|c| c == ".." || c == ".") {
        bail!("--cgroup-parent must be an absolute cgroup path without . or ..: {p}");
    }
    Ok(())
}

fn main() -> Result<()> {
    // Every recursion on client input is bounded where it happens; the larger
    // stack (address space only, touched pages alone are resident) is the
    // margin behind those bounds, since an overflow would abort berthd and
    // take every container's API down with it.
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(8 << 20)
        .build()?
        .block_on(run(Args::parse()))
}

/// Writes our pid to `p`, unless a berthd that is still running wrote it.
fn claim_pidfile(p: &std::path::Path) -> Result<()> {
    if let Ok(old) = std::fs::read_to_string(p) {
        if let Ok(pid) = old.trim().parse::<i32>() {
            // SAFETY: signal 0 only checks that the process exists.
            if pid != std::process::id() as i32 && unsafe { libc::kill(pid, 0) } == 0 {
                bail!(
                    "pid file found, ensure berthd is not running or delete {}",
                    p.display()
                );
            }
        }
    }
    std::fs::write(p, std::process::id().to_string())?;
    Ok(())
}

type Server = tokio::task::JoinHandle<std::io::Result<()>>;

/// Serves the API on one `-H` address until `stop`; the unix socket's path
/// comes back, to remove at exit.
async fn serve(
    host: &str,
    app: axum::Router,
    mut stop: tokio::sync::broadcast::Receiver<()>,
) -> Result<(Server, Option<PathBuf>)> {
    let service = app.into_make_service_with_connect_info::<berth_server::ConnFd>();
    let stopped = async move {
        let _ = stop.recv().await;
    };
    if let Some(path) = host.strip_prefix("unix://") {
        let path = PathBuf::from(path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let _ = std::fs::remove_file(&path);
        let l = tokio::net::UnixListener::bind(&path)
            .with_context(|| format!("listening on {}", path.display()))?;
        let server = tokio::spawn(async move {
            axum::serve(l, service)
                .with_graceful_shutdown(stopped)
                .await
        });
        Ok((server, Some(path)))
    } else if let Some(addr) = host.strip_prefix("tcp://") {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        let server = tokio::spawn(async move {
            axum::serve(l, service)
                .with_graceful_shutdown(stopped)
                .await
        });
        Ok((server, None))
    } else {
        bail!("unsupported host {host}: use unix:// or tcp://")
    }
}

async fn run(args: Args) -> Result<()> {
    check_cgroup_parent(&args.cgroup_parent)?;
    let level = match args.log_level.as_str() {
        "fatal" => "error",
        l => l,
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(format!(
            "berth={level},berthd={level},berth_engine={level},berth_server={level}"
        )))
        .with_writer(std::io::stderr)
        .init();
    let hosts = if args.host.is_empty() {
        vec!["unix:///run/berth/berth.sock".to_string()]
    } else {
        args.host.clone()
    };
    std::fs::create_dir_all(&args.data_root)?;
    std::fs::create_dir_all(&args.exec_root)?;
    if args.cgroup_favordynmods {
        favor_dynmods();
    }
    if let Some(p) = &args.pidfile {
        claim_pidfile(p)?;
    }
    let shim = shim_path(&args)?;
    let engine = Engine::open(
        EngineConfig {
            data_root: args.data_root.clone(),
            exec_root: args.exec_root.clone(),
            monitor_path: monitor_path(&args, &shim),
            bridge_name: args.bridge.clone(),
            bip: args.bip.clone(),
            nft_table: args.nft_table.clone(),
            socket_redirect: args.socket_redirect,
            shim_slim_after_ms: args.shim_slim_after,
            ipv6: args.ipv6,
            fixed_cidr_v6: args.fixed_cidr_v6.clone(),
            cgroup_parent: args.cgroup_parent.clone(),
            registry: berth_engine::images::registry::RegistryConfig {
                options: berth_dist::Options {
                    insecure: args.insecure_registry.clone(),
                    allow: (!args.allow_registry.is_empty()).then(|| args.allow_registry.clone()),
                    certs_dir: args.registry_certs_dir.clone(),
                    ..berth_dist::Options::default()
                },
                max_concurrent_downloads: args.max_concurrent_downloads,
                max_concurrent_uploads: args.max_concurrent_uploads,
            },
        },
        berth_engine::Host::linux(shim),
    )
    .await
    .context("opening the engine")?;
    let state = AppState {
        backend: engine,
        daemon: Arc::new(DaemonInfo {
            id: daemon_id(&args.data_root),
            data_root: args.data_root.display().to_string(),
            exec_root: args.exec_root.display().to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            api_record: std::env::var_os("BERTH_API_RECORD_DIR")
                .map(|d| PathBuf::from(d).join(format!("{}.jsonl", std::process::id()))),
        }),
    };
    let app = berth_server::app(state);
    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut servers = Vec::new();
    let mut sockets = Vec::new();
    for h in &hosts {
        let stop = stop_tx.subscribe();
        let (server, socket) = serve(h, app.clone(), stop).await?;
        servers.push(server);
        sockets.extend(socket);
    }
    tracing::info!("berthd listening on {}", hosts.join(", "));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down; containers keep running");
    let _ = stop_tx.send(());
    // Hijacked streams hold connections open; don't wait on them forever.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        for s in servers {
            let _ = s.await;
        }
    })
    .await;
    for s in sockets {
        let _ = std::fs::remove_file(s);
    }
    if let Some(p) = &args.pidfile {
        let _ = std::fs::remove_file(p);
    }
    Ok(())
}
