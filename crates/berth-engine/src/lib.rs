#![recursion_limit = "256"]
//! The container engine: containers' state machine, the in-memory view that `ps`
//! reads, records on disk, restart policies, and the wiring of store, runtime and
//! shim. HTTP stays outside: callers see typed results and [`EngineError`].

pub mod backend;
pub mod build;
mod containers;
pub mod events;
#[cfg(test)]
mod fake_host_tests;
#[cfg(test)]
mod fake_shim;
pub mod images;
mod networks;
pub mod prune;
pub mod record;
pub mod shims;
pub mod volumes;

// The rooms' parts other crates, and other rooms, name directly.
pub use containers::{archive, health, rootfs, stats, user};
pub(crate) use containers::{exec, logs, names, validate};
pub use images::commit;
pub(crate) use networks::{endpoints, links};

use berth_api::CreateRequest;
use berth_runtime::cgroups::host::CgroupHost;
use berth_runtime::proto::{ExitStatus, Request};
use berth_runtime::shim_client::ShimClient;
use berth_runtime::spec::{self, NetMode, RunSpec};
use berth_store::fsutil::{remove_tree, write_atomic, write_replace};
use berth_store::Store;
use record::{Record, State, Status, Transition};
use rootfs::{Mounter, OverlayMount};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::net::UnixStream;

pub use exec::{ExecRecord, PreparedExec};
pub use logs::{parse_time, LogOptions};

/// The kinds of object a request can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Container,
    Image,
    Exec,
    Network,
    Volume,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No object of this kind by that name or id; worded as dockerd words it.
    #[error("{}", missing_text(*kind, id))]
    Missing { kind: Kind, id: String },
    /// Something else is missing (a path, a link); the words say what.
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    /// Credentials a registry refused (dockerd's 401 for `/auth`).
    #[error("{0}")]
    Unauthorized(String),
    #[error("not modified")]
    NotModified,
    #[error("{0}")]
    Internal(String),
    /// Something this configuration cannot do (dockerd's 501).
    #[error("{0}")]
    NotImplemented(String),
    /// The container's process could not be started; `exit_code` is
    /// Docker's status for it (127 not found, 126 not executable, 128 else).
    #[error("{message}")]
    StartFailed { exit_code: i32, message: String },
    /// A build step's command ended with a non-zero code.
    #[error("The command '{cmd}' returned a non-zero code: {code}")]
    BuildStep { cmd: String, code: i64 },
}

fn missing_text(kind: Kind, id: &str) -> String {
    match kind {
        Kind::Container => format!("No such container: {id}"),
        Kind::Image => format!("No such image: {id}"),
        Kind::Exec => format!("No such exec instance: {id}"),
        Kind::Network => format!("network {id} not found"),
        Kind::Volume => format!("get {id}: no such volume"),
    }
}

impl EngineError {
    pub fn missing(kind: Kind, id: &str) -> Self {
        EngineError::Missing {
            kind,
            id: id.to_string(),
        }
    }
}

impl From<berth_store::StoreError> for EngineError {
    fn from(e: berth_store::StoreError) -> Self {
        use berth_store::StoreError as S;
        match e {
            S::ImageNotFound(name) => EngineError::Missing {
                kind: Kind::Image,
                id: name,
            },
            S::Conflict(_) => EngineError::Conflict(e.to_string()),
            S::InvalidReference(_)
            | S::UnsafeTarEntry(_)
            | S::InvalidArchive(_)
            | S::DigestMismatch { .. }
            | S::Json(_) => EngineError::BadRequest(e.to_string()),
            _ => EngineError::Internal(e.to_string()),
        }
    }
}

impl From<std::io::Error> for EngineError {
    fn from(e: std::io::Error) -> Self {
        EngineError::Internal(e.to_string())
    }
}

impl From<berth_runtime::RuntimeError> for EngineError {
    fn from(e: berth_runtime::RuntimeError) -> Self {
        EngineError::Internal(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, EngineError>;

/// The host effects the engine works through: the real ones (`Host::linux`)
/// in berthd, fakes that record calls in unit tests.
pub struct Host {
    pub mounter: Arc<dyn Mounter>,
    pub net: Arc<dyn berth_net::effects::NetHost>,
    pub shims: Arc<dyn shims::ShimLauncher>,
    pub cgroups: Arc<dyn CgroupHost>,
}

impl Host {
    /// The host's own mounts, networking and berth-shim at `shim_path`.
    pub fn linux(shim_path: PathBuf) -> Self {
        Host {
            mounter: Arc::new(rootfs::HostMounter),
            net: Arc::new(berth_net::effects::Linux),
            shims: Arc::new(shims::ProcessShims { path: shim_path }),
            cgroups: Arc::new(berth_runtime::cgroups::host::Linux),
        }
    }
}

pub struct EngineConfig {
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    /// The default `bridge` network's Linux bridge and address (`--bip`).
    pub bridge_name: String,
    pub bip: String,
    /// Berth's nftables table.
    pub nft_table: String,
    /// Published ports for the host's own connections at connect() time
    /// (see `berth_net::redirect`), besides the DNAT rules.
    pub socket_redirect: bool,
    /// Passed to each shim (`ShimConfig::slim_after_ms`).
    pub shim_slim_after_ms: Option<u64>,
    /// Passed to each shim (`ShimConfig::monitor`).
    pub monitor_path: Option<PathBuf>,
    /// `--ipv6` on the default bridge, with `--fixed-cidr-v6` (None: a
    /// random ULA /64, kept across restarts).
    pub ipv6: bool,
    pub fixed_cidr_v6: Option<String>,
    /// How registries are reached (pull, push, login).
    pub registry: images::registry::RegistryConfig,
    /// The cgroup (in every hierarchy) containers' cgroups are made under
    /// (`--cgroup-parent`, default `/berth`).
    pub cgroup_parent: String,
}

/// Changes a waiter may be waiting for.
#[derive(Debug, Clone, Default)]
struct Signals {
    exits: u64,
    shims: u64,
    removed: bool,
}

pub(crate) struct Ctr {
    rec: RwLock<Record>,
    state: Mutex<State>,
    signals: tokio::sync::watch::Sender<Signals>,
    /// Serialises start / stop / remove of one container.
    op: tokio::sync::Mutex<()>,
    attach_pending: AtomicUsize,
    /// Orders writes of state.json: each writes the state as it is when it
    /// holds this, so the last one written is the newest.
    persist: Mutex<()>,
}

impl Ctr {
    fn id(&self) -> String {
        self.rec.read().expect("rec").id.clone()
    }
    fn state(&self) -> State {
        self.state.lock().expect("state").clone()
    }
    fn bump(&self, f: impl FnOnce(&mut Signals)) {
        self.signals.send_modify(f);
    }
}

pub struct Engine {
    cfg: EngineConfig,
    pub(crate) store: Arc<Store>,
    mounter: Arc<dyn Mounter>,
    net_host: Arc<dyn berth_net::effects::NetHost>,
    shims: Arc<dyn shims::ShimLauncher>,
    cgroups: Arc<dyn CgroupHost>,
    containers: RwLock<BTreeMap<String, Arc<Ctr>>>,
    names: RwLock<HashMap<String, String>>,
    execs: Mutex<HashMap<String, ExecRecord>>,
    /// The embedded DNS server of each running container on a user network.
    dns: Mutex<HashMap<String, tokio::task::AbortHandle>>,
    /// The healthcheck loop of each running container that has one.
    health: Mutex<HashMap<String, tokio::task::AbortHandle>>,
    /// One build at a time: builds share the cache file and the disk.
    build_lock: tokio::sync::Mutex<()>,
    pub(crate) volumes: berth_volume::VolumeStore,
    pub(crate) nets: Arc<berth_net::NetStore>,
    redirect: Option<berth_net::redirect::LocalRedirect>,
    /// What `/events` reports.
    pub(crate) events: events::EventBus,
    /// What this host's cgroups can limit, for create and update checks.
    sys: validate::SysInfo,
    /// The registry client, and the settings pulls and pushes follow.
    pub(crate) dist: berth_dist::Client,
    pub(crate) registry: images::registry::RegistryConfig,
    /// One lock per layer blob being pulled.
    pub(crate) pulls: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn new_id() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Environment lists merged by key, later lists winning.
pub fn merge_env(base: &[String], over: &[String]) -> Vec<String> {
    let mut out: Vec<String> = base.to_vec();
    for e in over {
        let key = e.split('=').next().unwrap_or(e);
        if let Some(slot) = out
            .iter_mut()
            .find(|x| x.split('=').next().unwrap_or(x) == key)
        {
            *slot = e.clone();
        } else {
            out.push(e.clone());
        }
    }
    out
}

/// Parses Docker's size strings: `10m`, `1g`, `512k`, `100`.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let s = s.trim_end_matches('b');
    let (num, mult) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1u64 << 10),
        'm' => (&s[..s.len() - 1], 1 << 20),
        'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<f64>().ok().map(|n| (n * mult as f64) as u64)
}

impl Engine {
    pub async fn open(cfg: EngineConfig, host: Host) -> Result<Arc<Self>> {
        let Host {
            mounter,
            net,
            shims,
            cgroups,
        } = host;
        std::fs::create_dir_all(cfg.data_root.join("containers"))?;
        std::fs::create_dir_all(cfg.exec_root.join("containers"))?;
        std::fs::create_dir_all(cfg.exec_root.join("runtime"))?;
        std::fs::create_dir_all(cfg.exec_root.join("s"))?;
        // Whatever an earlier run left to delete in the background.
        for root in [&cfg.data_root, &cfg.exec_root] {
            let _ = remove_tree(&root.join("trash"));
        }
        let store = Arc::new(Store::open(&cfg.data_root)?);
        let cfg_data_root = cfg.data_root.clone();
        let (bridge_name, bip) = (cfg.bridge_name.clone(), cfg.bip.clone());
        let redirect = if cfg.socket_redirect {
            match berth_net::redirect::LocalRedirect::attach() {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!("published ports: no socket-level redirect ({e}); DNAT only");
                    None
                }
            }
        } else {
            None
        };
        let registry = cfg.registry.clone();
        let dist = berth_dist::Client::new(registry.options.clone())
            .map_err(|e| EngineError::Internal(format!("registry client: {e}")))?;
        let engine = Arc::new(Engine {
            cfg,
            store,
            dist,
            registry,
            pulls: Mutex::new(HashMap::new()),
            mounter,
            net_host: net,
            shims,
            cgroups,
            containers: RwLock::new(BTreeMap::new()),
            names: RwLock::new(HashMap::new()),
            execs: Mutex::new(HashMap::new()),
            build_lock: tokio::sync::Mutex::new(()),
            dns: Mutex::new(HashMap::new()),
            health: Mutex::new(HashMap::new()),
            volumes: berth_volume::VolumeStore::open(&cfg_data_root)?,
            nets: Arc::new(berth_net::NetStore::open(
                &cfg_data_root,
                &bridge_name,
                &bip,
            )?),
            redirect,
            events: events::EventBus::default(),
            sys: validate::SysInfo::probe(),
        });
        engine
            .nets
            .set_default_ipv6(engine.cfg.ipv6, engine.cfg.fixed_cidr_v6.as_deref())?;
        {
            let e = engine.clone();
            let _ = tokio::task::spawn_blocking(move || e.restore_networks()).await;
        }
        engine.clone().restore().await;
        engine.sync_nft_async().await;
        {
            let e = engine.clone();
            let _ = tokio::task::spawn_blocking(move || e.remove_orphan_links()).await;
        }
        Ok(engine)
    }

    fn cdir(&self, id: &str) -> PathBuf {
        self.cfg.data_root.join("containers").join(id)
    }
    fn xdir(&self, id: &str) -> PathBuf {
        self.cfg.exec_root.join("containers").join(id)
    }
    fn rootfs(&self, id: &str) -> PathBuf {
        self.xdir(id).join("rootfs")
    }
    /// Unix socket paths are capped at 108 bytes: shim sockets live in a short
    /// directory, named by a prefix of the container id.
    fn shim_socket(&self, id: &str) -> PathBuf {
        self.cfg
            .exec_root
            .join("s")
            .join(format!("{}.sock", &id[..id.len().min(24)]))
    }
    fn shim(&self, id: &str) -> ShimClient {
        ShimClient::new(&self.shim_socket(id))
    }

    /// Takes a directory out of sight at once (rename into `<root>/trash`)
    /// and deletes it in the background: removal need not wait for the disk.
    fn discard(&self, dir: &Path, root: &Path) -> Result<()> {
        let trash = root.join("trash");
        std::fs::create_dir_all(&trash)?;
        let to = trash.join(format!("{:016x}", rand::random::<u64>()));
        match std::fs::rename(dir, &to) {
            Ok(()) => {
                tokio::task::spawn_blocking(move || remove_tree(&to));
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(_) => Ok(remove_tree(dir)?),
        }
    }

    fn persist_state(&self, c: &Ctr) -> Result<()> {
        self.persist_state_with(c, true)
    }

    fn persist_state_with(&self, c: &Ctr, durable: bool) -> Result<()> {
        let _order = c.persist.lock().expect("persist");
        let id = c.id();
        let st = c.state();
        let data = serde_json::to_vec(&st).map_err(|e| EngineError::Internal(e.to_string()))?;
        berth_store::fsutil::write_in_existing_dir(
            &self.cdir(&id).join("state.json"),
            &data,
            durable,
        )?;
        Ok(())
    }

    /// `persist_state` off the caller's path (a `start` answers without
    /// waiting for the disk); later writes still land after it.
    fn persist_state_soon(self: &Arc<Self>, c: &Arc<Ctr>) {
        let (me, c) = (self.clone(), c.clone());
        tokio::task::spawn_blocking(move || {
            if let Err(e) = me.persist_state(&c) {
                tracing::warn!("persisting the state of {}: {e}", c.id());
            }
        });
    }

    fn persist_record(&self, rec: &Record) -> Result<()> {
        write_atomic(
            &self.cdir(&rec.id).join("config.json"),
            &serde_json::to_vec(rec).map_err(|e| EngineError::Internal(e.to_string()))?,
        )?;
        Ok(())
    }

    fn insert(&self, rec: Record, state: State) -> Arc<Ctr> {
        let (tx, _) = tokio::sync::watch::channel(Signals::default());
        let id = rec.id.clone();
        let name = rec.name.clone();
        let c = Arc::new(Ctr {
            rec: RwLock::new(rec),
            state: Mutex::new(state),
            signals: tx,
            op: tokio::sync::Mutex::new(()),
            attach_pending: AtomicUsize::new(0),
            persist: Mutex::new(()),
        });
        self.containers
            .write()
            .expect("containers")
            .insert(id.clone(), c.clone());
        self.names.write().expect("names").insert(name, id);
        c
    }

    /// Finds a container by full id, name, or unique id prefix.
    /// A container event, with its name, image and labels as attributes.
    pub(crate) fn emit_container(&self, rec: &Record, action: &str, extra: &[(&str, String)]) {
        let mut pairs = vec![("name", rec.name.clone()), ("image", rec.image.clone())];
        pairs.extend(extra.iter().cloned());
        let attrs = events::attributes(&pairs, rec.config.labels.iter().flatten());
        self.events.emit("container", action, &rec.id, attrs);
    }

    fn emit_for(&self, c: &Ctr, action: &str, extra: &[(&str, String)]) {
        self.emit_container(&c.rec.read().expect("rec"), action, extra);
    }

    /// An anonymous scratch file under the data root (unlinked at once), for
    /// request bodies and answers too big to hold in memory.
    pub fn scratch_file(&self, what: &str) -> Result<std::fs::File> {
        let dir = self.cfg.data_root.join("tmp");
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join(format!("{what}-{:016x}", rand::random::<u64>()));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        let _ = std::fs::remove_file(&path);
        Ok(f)
    }

    /// Past events from `since_nano` and a receiver of the ones to come.
    pub fn subscribe_events(
        &self,
        since_nano: Option<i64>,
    ) -> (
        Vec<events::Event>,
        tokio::sync::broadcast::Receiver<events::Event>,
    ) {
        self.events.subscribe(since_nano)
    }

    /// Fails with Docker's "No such container" unless `key` names one.
    pub fn find_container(&self, key: &str) -> Result<()> {
        self.find(key).map(|_| ())
    }

    pub(crate) fn find(&self, key: &str) -> Result<Arc<Ctr>> {
        let key = key.trim_start_matches('/');
        let cs = self.containers.read().expect("containers");
        if let Some(c) = cs.get(key) {
            return Ok(c.clone());
        }
        if let Some(id) = self.names.read().expect("names").get(key) {
            if let Some(c) = cs.get(id) {
                return Ok(c.clone());
            }
        }
        if !key.is_empty() {
            let mut hits = cs
                .range(key.to_string()..)
                .take_while(|(k, _)| k.starts_with(key));
            if let Some((_, c)) = hits.next() {
                if hits.next().is_none() {
                    return Ok(c.clone());
                }
                return Err(EngineError::NotFound(format!(
                    "Multiple IDs found with provided prefix: {key}"
                )));
            }
        }
        Err(EngineError::missing(Kind::Container, key))
    }
}

pub fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| EngineError::BadRequest(format!("Invalid signal: {s}")))
}

/// Kills the shim of a container that is not running, and the process group
/// it leads (a created, never started container's init waits in it). True
/// when there was one to kill: its cgroup is then left for the caller.
fn kill_stale_shim(xdir: &Path) -> bool {
    let Some(pid) = std::fs::read_to_string(xdir.join("shim.pid"))
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
    else {
        return false;
    };
    let ours = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains(&*xdir.to_string_lossy()))
        .unwrap_or(false);
    if ours {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    ours
}

pub(crate) use berth_store::fsutil::dir_size;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_merges_by_key() {
        let base = vec!["PATH=/bin".to_string(), "A=1".to_string()];
        let over = vec!["A=2".to_string(), "B=3".to_string()];
        assert_eq!(merge_env(&base, &over), vec!["PATH=/bin", "A=2", "B=3"]);
    }

    #[test]
    fn sizes_and_signals() {
        assert_eq!(parse_size("10m"), Some(10 << 20));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_signal("TERM").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("SIGKILL").unwrap(), libc::SIGKILL);
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert!(parse_signal("NOPE").is_err());
    }

    #[test]
    fn missing_objects_are_worded_as_dockerd() {
        let t = |k, id| EngineError::missing(k, id).to_string();
        assert_eq!(t(Kind::Container, "web"), "No such container: web");
        assert_eq!(t(Kind::Image, "a:1"), "No such image: a:1");
        assert_eq!(t(Kind::Exec, "e1"), "No such exec instance: e1");
        assert_eq!(t(Kind::Network, "n"), "network n not found");
        assert_eq!(t(Kind::Volume, "v"), "get v: no such volume");
        let from_store: EngineError = berth_store::StoreError::ImageNotFound("x".into()).into();
        assert!(matches!(
            from_store,
            EngineError::Missing {
                kind: Kind::Image,
                ..
            }
        ));
    }
}
