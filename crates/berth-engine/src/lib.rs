#![recursion_limit = "256"]
//! The container engine: containers' state machine, the in-memory view that `ps`
//! reads, records on disk, restart policies, and the wiring of store, runtime and
//! shim. HTTP stays outside: callers see typed results and [`EngineError`].

pub mod archive;
pub mod build;
pub mod commit;
pub mod events;
mod exec;
pub mod health;
pub mod images;
mod links;
mod logs;
mod names;
pub mod net;
pub mod prune;
pub mod record;
pub mod rootfs;
pub mod stats;
mod top;
mod update;
pub mod user;
mod validate;
pub mod volumes;

use berth_api::CreateRequest;
use berth_runtime::proto::{ExitStatus, Request};
use berth_runtime::shim_client::ShimClient;
use berth_runtime::spec::{self, NetMode, RunSpec};
use berth_store::fsutil::{remove_tree, write_atomic, write_replace};
use berth_store::Store;
use record::{Record, State, Status};
use rootfs::{Mounter, OverlayMount};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::io::AsyncBufReadExt;
use tokio::net::UnixStream;

pub use exec::ExecRecord;
pub use logs::{parse_time, LogOptions};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("not modified")]
    NotModified,
    #[error("{0}")]
    Internal(String),
    /// Something this configuration cannot do (dockerd's 501).
    #[error("{0}")]
    NotImplemented(String),
}

impl From<berth_store::StoreError> for EngineError {
    fn from(e: berth_store::StoreError) -> Self {
        use berth_store::StoreError as S;
        match e {
            S::ImageNotFound(_) => EngineError::NotFound(e.to_string()),
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

pub struct EngineConfig {
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    pub shim_path: PathBuf,
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
    pub store: Arc<Store>,
    mounter: Arc<dyn Mounter>,
    containers: RwLock<BTreeMap<String, Arc<Ctr>>>,
    names: RwLock<HashMap<String, String>>,
    execs: Mutex<HashMap<String, ExecRecord>>,
    /// The embedded DNS server of each running container on a user network.
    dns: Mutex<HashMap<String, tokio::task::AbortHandle>>,
    /// The healthcheck loop of each running container that has one.
    health: Mutex<HashMap<String, tokio::task::AbortHandle>>,
    /// One build at a time: builds share the cache file and the disk.
    build_lock: tokio::sync::Mutex<()>,
    pub volumes: berth_volume::VolumeStore,
    pub nets: Arc<berth_net::NetStore>,
    redirect: Option<berth_net::redirect::LocalRedirect>,
    /// What `/events` reports.
    pub events: events::EventBus,
    /// What this host's cgroups can limit, for create and update checks.
    sys: validate::SysInfo,
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

/// `--device HOST[:CONTAINER[:PERMS]]` as device nodes: a device file is
/// made as the host has it (number, mode, owner); a directory brings every
/// device below it, as dockerd does.
fn host_devices(list: &[berth_api::DeviceMapping]) -> Result<Vec<spec::DeviceNode>> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = Vec::new();
    for d in list {
        let host = Path::new(&d.path_on_host);
        let inside = match d.path_in_container.as_str() {
            "" => d.path_on_host.clone(),
            p => p.to_string(),
        };
        let access = match d.cgroup_permissions.as_str() {
            "" => "rwm".to_string(),
            p => p.to_string(),
        };
        let md = std::fs::metadata(host).map_err(|e| {
            EngineError::BadRequest(format!(
                "error gathering device information while adding custom device \"{}\": {e}",
                d.path_on_host
            ))
        })?;
        let mut found: Vec<(PathBuf, std::fs::Metadata)> = Vec::new();
        if md.is_dir() {
            let mut stack = vec![host.to_path_buf()];
            while let Some(dir) = stack.pop() {
                for e in std::fs::read_dir(&dir)?.flatten() {
                    let Ok(m) = std::fs::symlink_metadata(e.path()) else {
                        continue;
                    };
                    if m.is_dir() {
                        stack.push(e.path());
                    } else {
                        found.push((e.path(), m));
                    }
                }
            }
        } else {
            found.push((host.to_path_buf(), md));
        }
        for (p, m) in found {
            let kind = match m.file_type() {
                t if t.is_char_device() => 'c',
                t if t.is_block_device() => 'b',
                _ if p == host => {
                    return Err(EngineError::BadRequest(format!(
                        "error gathering device information while adding custom device \"{}\": not a device node",
                        d.path_on_host
                    )))
                }
                _ => continue,
            };
            let rel = p.strip_prefix(host).unwrap_or(Path::new(""));
            let path = if rel.as_os_str().is_empty() {
                inside.clone()
            } else {
                format!("{}/{}", inside.trim_end_matches('/'), rel.display())
            };
            out.push(spec::DeviceNode {
                path,
                kind,
                major: nix::sys::stat::major(m.rdev()),
                minor: nix::sys::stat::minor(m.rdev()),
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                access: access.clone(),
            });
        }
    }
    Ok(out)
}

/// Block devices named by path, with their weight or rate, by number.
fn block_devices<'a>(devs: impl Iterator<Item = (&'a str, u64)>) -> Result<Vec<spec::BlkioDevice>> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    devs.map(|(path, value)| {
        let md = std::fs::metadata(path)
            .map_err(|e| EngineError::BadRequest(format!("invalid block device {path}: {e}")))?;
        if !md.file_type().is_block_device() {
            return Err(EngineError::BadRequest(format!(
                "invalid block device {path}: not a block device"
            )));
        }
        let rdev = md.rdev();
        Ok(spec::BlkioDevice {
            major: nix::sys::stat::major(rdev),
            minor: nix::sys::stat::minor(rdev),
            value,
        })
    })
    .collect()
}

fn throttles(l: &Option<Vec<berth_api::ThrottleDevice>>) -> Result<Vec<spec::BlkioDevice>> {
    block_devices(l.iter().flatten().map(|d| (d.path.as_str(), d.rate)))
}

/// Refuses `--pid`/`--ipc`/`--uts` modes, ulimits and sysctls Docker would
/// refuse (or that Berth cannot honour), before anything is created.
fn check_host_options(hc: &berth_api::HostConfig) -> Result<()> {
    let bad = |m: String| Err(EngineError::BadRequest(m));
    if !matches!(hc.pid_mode.as_str(), "" | "host") {
        return bad(format!(
            "invalid PID mode: {} (only host is supported)",
            hc.pid_mode
        ));
    }
    if !matches!(hc.ipc_mode.as_str(), "" | "private" | "shareable" | "host") {
        return bad(format!("invalid IPC mode: {}", hc.ipc_mode));
    }
    if !matches!(hc.uts_mode.as_str(), "" | "host") {
        return bad(format!("invalid UTS mode: {}", hc.uts_mode));
    }
    const ULIMITS: [&str; 15] = [
        "as",
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
    ];
    for u in hc.ulimits.iter().flatten() {
        if !ULIMITS.contains(&u.name.as_str()) && u.name != "stack" {
            return bad(format!("invalid ulimit type: {}", u.name));
        }
        if u.soft > u.hard {
            return bad(format!(
                "ulimit soft limit must be less than or equal to hard limit: {} > {}",
                u.soft, u.hard
            ));
        }
    }
    for k in hc.sysctls.iter().flatten().map(|(k, _)| k) {
        let namespaced = k.starts_with("fs.mqueue.")
            || k.starts_with("net.")
            || matches!(
                k.as_str(),
                "kernel.msgmax"
                    | "kernel.msgmnb"
                    | "kernel.msgmni"
                    | "kernel.sem"
                    | "kernel.shmall"
                    | "kernel.shmmax"
                    | "kernel.shmmni"
                    | "kernel.shm_rmid_forced"
                    | "kernel.domainname"
                    | "kernel.hostname"
            );
        if !namespaced {
            return bad(format!("sysctl '{k}' is not allowed"));
        }
        if k.starts_with("net.") && hc.network_mode == "host" {
            return bad(format!(
                "sysctl '{k}' is not allowed in host network namespace"
            ));
        }
    }
    Ok(())
}

/// A resolv.conf with `--dns-search` and `--dns-option` replacing its own
/// `search` and `options` lines.
fn with_dns_overrides(resolv: &str, search: &[String], options: &[String]) -> String {
    let mut out: String = resolv
        .lines()
        .filter(|l| {
            let replaced = |key: &str, by: &[String]| !by.is_empty() && l.starts_with(key);
            !replaced("search", search) && !replaced("options", options)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
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
    pub async fn open(cfg: EngineConfig, mounter: Arc<dyn Mounter>) -> Result<Arc<Self>> {
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
        let engine = Arc::new(Engine {
            cfg,
            store,
            mounter,
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
        Err(EngineError::NotFound(format!("No such container: {key}")))
    }

    /// Re-reads every record after a (re)start and reconnects to live shims.
    async fn restore(self: Arc<Self>) {
        let Ok(rd) = std::fs::read_dir(self.cfg.data_root.join("containers")) else {
            return;
        };
        let mut to_start = Vec::new();
        for e in rd.flatten() {
            let dir = e.path();
            let rec: Record = match std::fs::read(dir.join("config.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
            {
                Some(r) => r,
                None => {
                    tracing::warn!("dropping unreadable container record {}", dir.display());
                    continue;
                }
            };
            let mut st: State = std::fs::read(dir.join("state.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            if st.status == Status::Removing {
                let id = rec.id.clone();
                let _ = self.mounter.unmount(&self.rootfs(&id));
                let _ = remove_tree(&self.xdir(&id));
                let _ = remove_tree(&dir);
                continue;
            }
            let id = rec.id.clone();
            // A record still `created` may belong to a container that started
            // just before a crash (its `running` write is made off the start
            // path): the shim knows.
            let live = if st.status.is_running() || st.status == Status::Created {
                match self.shim(&id).call(&Request::State).await {
                    Ok(r)
                        if r.status.as_deref() == Some("running")
                            || r.status.as_deref() == Some("paused") =>
                    {
                        st.status = if r.status.as_deref() == Some("paused") {
                            Status::Paused
                        } else {
                            Status::Running
                        };
                        st.pid = r.pid.unwrap_or(st.pid);
                        if st.started_at.is_none() {
                            st.started_at = Some(now());
                        }
                        true
                    }
                    _ => false,
                }
            } else {
                false
            };
            let policy = rec.host_config.restart_policy.name.clone();
            let was_running = st.status.is_running();
            let never_started = st.status == Status::Created;
            let c = self.insert(rec, st);
            if live {
                let eps = c.state().endpoints;
                if self.on_user_network(&eps) {
                    let ns = berth_net::host::netns_path(&self.cfg.exec_root, &id);
                    if let Err(e) = self.start_dns(&id, &ns) {
                        tracing::warn!("dns for {id}: {e}");
                    }
                }
                self.start_health(&c, false);
                let me = self.clone();
                let c2 = c.clone();
                tokio::spawn(async move { me.monitor(c2, None).await });
            } else if was_running {
                // The container ended while we were away: its shim left the status.
                let exit = std::fs::read(self.xdir(&id).join("exit"))
                    .ok()
                    .and_then(|b| serde_json::from_slice::<ExitStatus>(&b).ok())
                    .unwrap_or(ExitStatus {
                        exit_code: 255,
                        oom_killed: false,
                        finished_at: now(),
                    });
                self.clone().handle_exit(c.clone(), exit, false).await;
            } else {
                // A launch cut short by a crash may have left a shim waiting to
                // start its container, its cgroup (also when that shim died
                // since, killed outright), and an endpoint.
                kill_stale_shim(&self.xdir(&id));
                if never_started {
                    let path = stats::cgroup_path(&id);
                    let _ =
                        tokio::task::spawn_blocking(move || berth_runtime::cgroups::destroy(&path))
                            .await;
                }
                let eps = std::mem::take(&mut c.state.lock().expect("state").endpoints);
                self.teardown_network(&id, &eps).await;
                if !eps.is_empty() {
                    let _ = self.persist_state(&c);
                }
            }
            let st = c.state();
            if !st.status.is_running()
                && !st.manually_stopped
                && (policy == "always" || policy == "unless-stopped")
                && st.started_at.is_some()
            {
                to_start.push(id);
            }
        }
        // Addresses are written without sync; after a crash of the machine a
        // pool may still list containers that hold none now.
        let held: std::collections::HashSet<(String, String)> = self
            .containers
            .read()
            .expect("containers")
            .values()
            .flat_map(|c| {
                let id = c.id();
                c.state()
                    .endpoints
                    .values()
                    .map(|e| (e.network_id.clone(), id.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        if let Err(e) = self
            .nets
            .retain_addresses(|net, owner| held.contains(&(net.to_string(), owner.to_string())))
        {
            tracing::warn!("tidying address pools: {e}");
        }
        for id in to_start {
            if let Err(e) = self.start(&id).await {
                tracing::warn!("restart policy: starting {id}: {e}");
            }
        }
    }

    // ---------------------------------------------------------------- create

    /// Makes a container; answers its id and dockerd's warnings about
    /// settings this host cannot honour.
    pub async fn create(
        &self,
        name: Option<&str>,
        req: CreateRequest,
    ) -> Result<(String, Vec<String>)> {
        let CreateRequest {
            mut config,
            mut host_config,
            networking_config,
        } = req;
        let bad = EngineError::BadRequest;
        validate::config(&mut config).map_err(bad)?;
        let mut warnings = validate::host_config(&host_config).map_err(bad)?;
        warnings.extend(validate::resources(&mut host_config, &self.sys, false).map_err(bad)?);
        validate::apply_defaults(&mut host_config, &self.sys);
        match host_config.log_config.kind.as_str() {
            "" => host_config.log_config.kind = "json-file".into(),
            // `local` keeps its logs in our json-file format, which reads
            // back the same; only its defaults differ.
            "json-file" | "local" | "none" => {}
            other => {
                return Err(EngineError::BadRequest(format!(
                    "logger: no log driver named '{other}' is registered"
                )))
            }
        }
        if config.image.is_empty() {
            return Err(EngineError::BadRequest("No image specified".into()));
        }
        let image = self.store.get(&config.image).map_err(|e| match e {
            berth_store::StoreError::ImageNotFound(_) => {
                EngineError::NotFound(format!("No such image: {}", config.image))
            }
            e => e.into(),
        })?;
        host_config.network_mode = self.check_network_mode(&host_config.network_mode)?;
        check_host_options(&host_config)?;
        let net_name = net::mode_network(&host_config.network_mode).to_string();
        // Every network of `EndpointsConfig` (API 1.44+): the mode's is the
        // primary one, the others are joined at start as after `network
        // connect`. An unknown one fails the start, as dockerd.
        let primary = self
            .nets
            .get(&net_name)
            .map(|n| n.name)
            .unwrap_or_else(|_| net_name.clone());
        let mut endpoint_cfg = Value::Null;
        let mut extra_networks = Vec::new();
        let mut endpoint_settings = BTreeMap::new();
        let endpoints = networking_config
            .as_ref()
            .and_then(|n| n["EndpointsConfig"].as_object().cloned())
            .unwrap_or_default();
        for (k, v) in endpoints {
            // The docker CLI names the default network `default`.
            let k = net::mode_network(&k).to_string();
            let name = self.nets.get(&k).map(|n| n.name).unwrap_or(k);
            if name == primary {
                endpoint_cfg = v.clone();
            } else if net_name == "host" {
                return Err(EngineError::BadRequest(
                    "container cannot be disconnected from host network or connected to host network".into(),
                ));
            } else if net_name == "none" {
                return Err(EngineError::BadRequest(
                    "container cannot be connected to multiple networks with one of the networks in private (none) mode".into(),
                ));
            } else {
                let (aliases, ip) = record::endpoint_aliases_and_ip(&v);
                extra_networks.push(record::ExtraNetwork {
                    name: name.clone(),
                    aliases,
                    ip,
                });
            }
            endpoint_settings.insert(name, record::endpoint_settings_as_given(&v));
        }
        let (aliases, requested_ip) = record::endpoint_aliases_and_ip(&endpoint_cfg);
        let mac_address = endpoint_cfg["MacAddress"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .or_else(|| Some(config.mac_address.clone()).filter(|m| !m.is_empty()));
        if let Some(m) = &mac_address {
            net::parse_mac(m)?;
        }
        for c in host_config
            .cap_add
            .iter()
            .flatten()
            .chain(host_config.cap_drop.iter().flatten())
        {
            spec::normalize_cap(c).map_err(|e| EngineError::BadRequest(e.to_string()))?;
        }
        let ic = &image.config.config;
        config.env = Some(merge_env(
            ic.env.as_deref().unwrap_or_default(),
            config.env.as_deref().unwrap_or_default(),
        ));
        let entrypoint = match &config.entrypoint {
            Some(e) if e.len() == 1 && e[0].is_empty() => vec![],
            Some(e) => e.clone(),
            None => ic.entrypoint.clone().unwrap_or_default(),
        };
        let cmd = match &config.cmd {
            Some(c) if !c.is_empty() => c.clone(),
            _ if config.entrypoint.is_some() => vec![],
            _ => ic.cmd.clone().unwrap_or_default(),
        };
        if config.cmd.as_ref().is_none_or(|c| c.is_empty()) && config.entrypoint.is_none() {
            config.cmd = ic.cmd.clone();
        }
        if config.entrypoint.is_none() {
            config.entrypoint = ic.entrypoint.clone();
        }
        let mut argv = entrypoint;
        argv.extend(cmd);
        if argv.is_empty() {
            return Err(EngineError::BadRequest("no command specified".into()));
        }
        if config.working_dir.is_empty() {
            config.working_dir = ic.working_dir.clone();
        }
        if config.user.is_empty() {
            config.user = ic.user.clone();
        }
        let mut labels = ic.labels.clone().unwrap_or_default();
        labels.extend(config.labels.clone().unwrap_or_default());
        config.labels = Some(labels);
        if config.exposed_ports.is_none() {
            config.exposed_ports = ic.exposed_ports.clone();
        }
        if config.stop_signal.is_none() {
            config.stop_signal = ic.stop_signal.clone();
        }
        // The container's healthcheck replaces the image's; `Test` left
        // empty keeps the image's command with the container's timings.
        config.healthcheck = match (config.healthcheck.take(), &ic.healthcheck) {
            (Some(mut c), Some(i)) if c["Test"].as_array().is_none_or(|t| t.is_empty()) => {
                c["Test"] = i["Test"].clone();
                Some(c)
            }
            (Some(c), _) => Some(c),
            (None, i) => i.clone(),
        };
        let id = new_id();
        if config.hostname.is_empty() {
            config.hostname = if host_config.network_mode == "host" {
                nix::unistd::gethostname()
                    .ok()
                    .and_then(|h| h.into_string().ok())
                    .unwrap_or_else(|| id[..12].to_string())
            } else {
                id[..12].to_string()
            };
        }
        let name = match name {
            Some(n) if !n.is_empty() => {
                let n = n.trim_start_matches('/');
                if !names::valid(n) {
                    return Err(EngineError::BadRequest(format!(
                        "Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                    )));
                }
                n.to_string()
            }
            _ => {
                let taken = self.names.read().expect("names");
                (0..)
                    .map(names::generate)
                    .find(|n| !taken.contains_key(n))
                    .unwrap_or_else(|| id[..12].to_string())
            }
        };
        // The image's VOLUMEs become anonymous volumes too.
        if let Some(iv) = &ic.volumes {
            let v = config.volumes.get_or_insert_with(Default::default);
            for (k, val) in iv {
                v.entry(k.clone()).or_insert_with(|| val.clone());
            }
        }
        let mounts = self.resolve_mounts(&config, &host_config)?;
        let links = self.register_links(
            host_config.links.as_deref().unwrap_or_default(),
            &host_config.network_mode,
        )?;
        // `none` keeps nothing: the shim logs nowhere, and inspect shows
        // an empty LogPath as dockerd's.
        let log_path = match host_config.log_config.kind.as_str() {
            "none" => String::new(),
            _ => self
                .cdir(&id)
                .join(format!("{id}-json.log"))
                .display()
                .to_string(),
        };
        let rec = Record {
            id: id.clone(),
            name: name.clone(),
            created: now(),
            image: config.image.clone(),
            image_id: image.id.clone(),
            path: argv[0].clone(),
            args: argv[1..].to_vec(),
            config,
            host_config,
            log_path,
            layers: image.chain.clone(),
            mounts,
            aliases,
            requested_ip,
            mac_address,
            extra_networks,
            endpoint_settings,
            links,
        };
        {
            // Check and claim the name in one step: two creates race for it.
            let mut names = self.names.write().expect("names");
            if let Some(other) = names.get(&name) {
                return Err(EngineError::Conflict(format!(
                    "Conflict. The container name \"/{name}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
                )));
            }
            names.insert(name.clone(), id.clone());
        }
        let res = (|| {
            std::fs::create_dir_all(self.cdir(&id))?;
            self.persist_record(&rec)?;
            // The default state: also what a record without state.json
            // loads as, so this one need not reach the disk first.
            write_replace(
                &self.cdir(&id).join("state.json"),
                &serde_json::to_vec(&State::default()).unwrap_or_default(),
            )?;
            Ok::<_, EngineError>(())
        })();
        if let Err(e) = res {
            self.names.write().expect("names").remove(&name);
            let _ = remove_tree(&self.cdir(&id));
            return Err(e);
        }
        self.emit_container(&rec, "create", &[]);
        self.insert(rec, State::default());
        Ok((id, warnings))
    }

    // ---------------------------------------------------------------- start

    pub async fn start(self: &Arc<Self>, key: &str) -> Result<()> {
        let c = self.find(key)?;
        let _op = c.op.lock().await;
        match c.state().status {
            Status::Running | Status::Paused => return Err(EngineError::NotModified),
            Status::Removing | Status::Dead => {
                return Err(EngineError::Conflict(format!(
                    "container {} is marked for removal and cannot be started",
                    c.id()
                )))
            }
            _ => {}
        }
        {
            let mut st = c.state.lock().expect("state");
            st.manually_stopped = false;
        }
        self.start_locked(&c).await
    }

    fn prepare_rootfs(&self, rec: &Record) -> Result<PathBuf> {
        let target = self.rootfs(&rec.id);
        if !self.mounter.is_mounted(&target) {
            let init = self.cdir(&rec.id).join("init");
            if !init.exists() {
                rootfs::make_init_layer(&init)?;
            }
            let m = OverlayMount {
                lower: self.lower_dirs_of(rec)?,
                upper: Some((
                    self.cdir(&rec.id).join("rw/upper"),
                    self.cdir(&rec.id).join("rw/work"),
                )),
                target: target.clone(),
            };
            self.mounter
                .mount_overlay(&m)
                .map_err(|e| EngineError::Internal(format!("mounting rootfs: {e}")))?;
        }
        Ok(target)
    }

    /// The read-only layers under a container's writable one, top first: its
    /// init layer (mount points the engine needs), then the image's layers.
    pub(crate) fn lower_dirs_of(&self, rec: &Record) -> Result<Vec<PathBuf>> {
        let mut dirs = vec![self.cdir(&rec.id).join("init")];
        if rec.layers.is_empty() {
            dirs.extend(self.store.lower_dirs(&self.store.get(&rec.image_id)?)?);
        } else {
            dirs.extend(self.store.chain_dirs(&rec.layers)?);
        }
        Ok(dirs)
    }

    /// An `--add-host` entry as (name, address): `name:ip` or `name=ip`,
    /// IPv6 in brackets or not, `host-gateway` for the default bridge's
    /// gateway (Docker's `--host-gateway-ip` default).
    fn extra_host(&self, e: &str) -> Option<(String, String)> {
        let (name, ip) = match (e.split_once('='), e.split_once(':')) {
            (Some(kv), _) => kv,
            (None, Some(kv)) => kv,
            (None, None) => return None,
        };
        let ip = ip.trim_start_matches('[').trim_end_matches(']');
        let ip = if ip == "host-gateway" {
            self.cfg.bip.split('/').next().unwrap_or_default()
        } else {
            ip
        };
        Some((name.to_string(), ip.to_string()))
    }

    fn write_etc_files(
        &self,
        rec: &Record,
        eps: &BTreeMap<String, net::EndpointState>,
        link_hosts: &[String],
    ) -> Result<Vec<(PathBuf, String)>> {
        let dir = self.cdir(&rec.id);
        let host_net = rec.host_config.network_mode == "host";
        let hostname = &rec.config.hostname;
        std::fs::write(dir.join("hostname"), format!("{hostname}\n"))?;
        let mut hosts = if host_net {
            std::fs::read_to_string("/etc/hosts").unwrap_or_default()
        } else {
            String::from(
                "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
            )
        };
        if !hosts.is_empty() && !hosts.ends_with('\n') {
            hosts.push('\n');
        }
        for e in rec.host_config.extra_hosts.iter().flatten() {
            if let Some((name, ip)) = self.extra_host(e) {
                hosts.push_str(&format!("{ip}\t{name}\n"));
            }
        }
        for l in link_hosts {
            hosts.push_str(&format!("{l}\n"));
        }
        if !host_net {
            for ep in eps.values() {
                hosts.push_str(&format!("{}\t{}\n", ep.ip, hostname));
            }
        }
        std::fs::write(dir.join("hosts"), hosts)?;
        let resolv = match &rec.host_config.dns {
            // On user-defined networks the embedded server answers, as
            // dockerd's; `--dns` servers become its upstreams.
            _ if self.on_user_network(eps) => {
                let search: String = std::fs::read_to_string("/etc/resolv.conf")
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| l.starts_with("search"))
                    .map(|l| format!("{l}\n"))
                    .collect();
                format!("{search}nameserver 127.0.0.11\noptions ndots:0\n")
            }
            Some(d) if !d.is_empty() => d.iter().map(|s| format!("nameserver {s}\n")).collect(),
            // A loopback resolver of the host is not reachable from a
            // container's own network namespace: leave such lines out.
            _ if !host_net => std::fs::read_to_string("/etc/resolv.conf")
                .unwrap_or_default()
                .lines()
                .filter(|l| !(l.starts_with("nameserver") && l.contains(" 127.")))
                .map(|l| format!("{l}\n"))
                .collect(),
            _ => std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        };
        let resolv = with_dns_overrides(
            &resolv,
            rec.host_config.dns_search.as_deref().unwrap_or_default(),
            rec.host_config.dns_options.as_deref().unwrap_or_default(),
        );
        std::fs::write(dir.join("resolv.conf"), resolv)?;
        Ok(vec![
            (dir.join("hostname"), "/etc/hostname".into()),
            (dir.join("hosts"), "/etc/hosts".into()),
            (dir.join("resolv.conf"), "/etc/resolv.conf".into()),
        ])
    }

    fn run_spec(
        &self,
        rec: &Record,
        rootfs: &Path,
        netns: Option<&str>,
        eps: &BTreeMap<String, net::EndpointState>,
    ) -> Result<RunSpec> {
        let hc = &rec.host_config;
        let user = user::resolve(rootfs, &rec.config.user).map_err(EngineError::BadRequest)?;
        let (link_env, link_hosts) = self.link_setup(rec)?;
        // The container's own variables win over its links'.
        let mut env = merge_env(&link_env, rec.config.env.as_deref().unwrap_or_default());
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.insert(0, DEFAULT_PATH.to_string());
        }
        env = merge_env(&[format!("HOSTNAME={}", rec.config.hostname)], &env);
        if rec.config.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
            env.push("TERM=xterm".into());
        }
        if !env.iter().any(|e| e.starts_with("HOME=")) {
            env.push(format!("HOME={}", user.home));
        }
        let mut args = vec![rec.path.clone()];
        args.extend(rec.args.iter().cloned());
        let sec = hc.security_opt.clone().unwrap_or_default();
        let mut additional_gids = user.additional_gids;
        for g in hc.group_add.iter().flatten() {
            let gid = user::group_id(rootfs, g).map_err(EngineError::BadRequest)?;
            if !additional_gids.contains(&gid) {
                additional_gids.push(gid);
            }
        }
        let rlimits = hc
            .ulimits
            .iter()
            .flatten()
            .map(|u| {
                (
                    format!("RLIMIT_{}", u.name.to_ascii_uppercase()),
                    u.soft as u64,
                    u.hard as u64,
                )
            })
            .collect();
        Ok(RunSpec {
            shm_size: hc.shm_size,
            rlimits,
            sysctls: hc.sysctls.clone().unwrap_or_default().into_iter().collect(),
            host_pid: hc.pid_mode == "host",
            host_ipc: hc.ipc_mode == "host",
            host_uts: hc.uts_mode == "host",
            rootfs: rootfs.to_path_buf(),
            args,
            env,
            cwd: if rec.config.working_dir.is_empty() {
                "/".into()
            } else {
                rec.config.working_dir.clone()
            },
            uid: user.uid,
            gid: user.gid,
            additional_gids,
            tty: rec.config.tty,
            hostname: rec.config.hostname.clone(),
            readonly_rootfs: hc.readonly_rootfs,
            privileged: hc.privileged,
            cap_add: hc.cap_add.clone().unwrap_or_default(),
            cap_drop: hc.cap_drop.clone().unwrap_or_default(),
            no_new_privileges: sec.iter().any(|s| {
                s == "no-new-privileges"
                    || s == "no-new-privileges:true"
                    || s == "no-new-privileges=true"
            }),
            seccomp_unconfined: sec
                .iter()
                .any(|s| s == "seccomp=unconfined" || s == "seccomp:unconfined"),
            memory: hc.memory,
            memory_swap: hc.memory_swap,
            nano_cpus: hc.nano_cpus,
            cpu_quota: hc.cpu_quota,
            cpu_period: hc.cpu_period,
            cpu_shares: hc.cpu_shares,
            pids_limit: hc.pids_limit.unwrap_or(0),
            net: match (hc.network_mode.as_str(), netns) {
                ("host", _) => NetMode::Host,
                (_, Some(p)) => NetMode::Path(p.to_string()),
                _ => NetMode::None,
            },
            cgroup_path: stats::cgroup_path(&rec.id),
            etc_binds: self.write_etc_files(rec, eps, &link_hosts)?,
            mounts: self.prepare_mounts(rec, rootfs)?,
            host_cgroupns: hc.cgroupns_mode == "host",
            memory_reservation: hc.memory_reservation,
            memory_swappiness: hc.memory_swappiness,
            oom_kill_disable: hc.oom_kill_disable == Some(true),
            oom_score_adj: hc.oom_score_adj,
            cpuset_cpus: hc.cpuset_cpus.clone(),
            cpuset_mems: hc.cpuset_mems.clone(),
            blkio_weight: hc.blkio_weight,
            blkio_weight_device: block_devices(
                hc.blkio_weight_device
                    .iter()
                    .flatten()
                    .map(|d| (d.path.as_str(), d.weight as u64)),
            )?,
            read_bps: throttles(&hc.blkio_device_read_bps)?,
            write_bps: throttles(&hc.blkio_device_write_bps)?,
            read_iops: throttles(&hc.blkio_device_read_iops)?,
            write_iops: throttles(&hc.blkio_device_write_iops)?,
            device_allow: hc
                .device_cgroup_rules
                .iter()
                .flatten()
                .map(|r| validate::parse_device_rule(r).map_err(EngineError::BadRequest))
                .collect::<Result<_>>()?,
            masked_paths: hc.masked_paths.clone(),
            readonly_paths: hc.readonly_paths.clone(),
            devices: host_devices(hc.devices.as_deref().unwrap_or_default())?,
        })
    }

    async fn start_locked(self: &Arc<Self>, c: &Arc<Ctr>) -> Result<()> {
        let rec = c.rec.read().expect("rec").clone();
        let res = self.launch(c, &rec).await;
        if let Err(e) = &res {
            let mut st = c.state.lock().expect("state");
            st.error = e.to_string();
            if st.status != Status::Exited {
                st.status = if st.started_at.is_some() {
                    Status::Exited
                } else {
                    Status::Created
                };
            }
            st.exit_code = exit_code_for_start_error(&st.error);
            drop(st);
            let _ = self.persist_state(c);
            let _ = self.mounter.unmount(&self.rootfs(&rec.id));
            c.bump(|s| s.exits += 1);
            // As dockerd does: `run --rm` whose start fails leaves nothing behind,
            // and the CLI waits for that removal before it exits.
            if rec.host_config.auto_remove {
                self.spawn_auto_remove(rec.id.clone());
            }
        }
        res
    }

    async fn launch(self: &Arc<Self>, c: &Arc<Ctr>, rec: &Record) -> Result<()> {
        let (netns, eps) = match self.setup_network(rec).await? {
            Some((p, e)) => (Some(p), e),
            None => (None, Default::default()),
        };
        c.state.lock().expect("state").endpoints = eps.clone();
        if let Some(ns) = &netns {
            if self.on_user_network(&eps) {
                if let Err(e) = self.start_dns(&rec.id, Path::new(ns)) {
                    self.teardown_network(&rec.id, &eps).await;
                    c.state.lock().expect("state").endpoints.clear();
                    return Err(e);
                }
            }
        }
        let publishes = eps.values().any(|e| !e.ports.is_empty());
        if publishes {
            self.sync_nft_async().await;
        }
        let res = self.launch_in(c, rec, netns.as_deref(), &eps).await;
        if res.is_err() {
            c.state.lock().expect("state").endpoints.clear();
            self.teardown_network(&rec.id, &eps).await;
            if publishes {
                self.sync_nft_async().await;
            }
        }
        res
    }

    async fn launch_in(
        self: &Arc<Self>,
        c: &Arc<Ctr>,
        rec: &Record,
        netns: Option<&str>,
        eps: &BTreeMap<String, net::EndpointState>,
    ) -> Result<()> {
        let id = &rec.id;
        let rootfs = self.prepare_rootfs(rec)?;
        if !rec.config.working_dir.is_empty() {
            // As dockerd does: a missing working directory is created (root, 0755).
            rootfs::secure_join(&rootfs, &rec.config.working_dir)
                .and_then(std::fs::create_dir_all)
                .map_err(|e| {
                    EngineError::BadRequest(format!(
                        "cannot create working directory {}: {e}",
                        rec.config.working_dir
                    ))
                })?;
        }
        let rs = self.run_spec(rec, &rootfs, netns, eps)?;
        let oci = spec::build(&rs).map_err(|e| EngineError::BadRequest(e.to_string()))?;
        let xdir = self.xdir(id);
        std::fs::create_dir_all(xdir.join("bundle"))?;
        // The previous shim of this container may still be tearing down its
        // cgroups after reporting the exit: let it finish first.
        wait_for_old_shim(&xdir).await;
        for stale in ["exit", "init.pid"] {
            let _ = std::fs::remove_file(xdir.join(stale));
        }
        let _ = std::fs::remove_file(self.shim_socket(id));
        let runtime_root = self.cfg.exec_root.join("runtime");
        write_replace(
            &xdir.join("bundle/config.json"),
            &serde_json::to_vec(&oci).map_err(|e| EngineError::Internal(e.to_string()))?,
        )?;
        let log_opts = rec
            .host_config
            .log_config
            .config
            .clone()
            .unwrap_or_default();
        // dockerd's `local` driver keeps 5 files of 20 MB unless told.
        let local = rec.host_config.log_config.kind == "local";
        let (default_size, default_files) = if local { (20 << 20, 5) } else { (10 << 20, 3) };
        let shim_cfg = berth_runtime::proto::ShimConfig {
            id: id.clone(),
            bundle: xdir.join("bundle").display().to_string(),
            runtime_root: runtime_root.display().to_string(),
            log_path: rec.log_path.clone(),
            log_max_size: log_opts
                .get("max-size")
                .and_then(|s| parse_size(s))
                .unwrap_or(default_size),
            log_max_files: log_opts
                .get("max-file")
                .and_then(|s| s.parse().ok())
                .unwrap_or(default_files),
            tty: rec.config.tty,
            open_stdin: rec.config.open_stdin,
            stdin_once: rec.config.stdin_once,
            height: 0,
            width: 0,
            cgroup_path: rs.cgroup_path.clone(),
            socket: self.shim_socket(id).display().to_string(),
            seccomp_cache: self.cfg.exec_root.join("seccomp").display().to_string(),
            slim_after_ms: self.cfg.shim_slim_after_ms,
            monitor: self
                .cfg
                .monitor_path
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned()),
        };
        write_replace(
            &xdir.join("shim.json"),
            &serde_json::to_vec(&shim_cfg).map_err(|e| EngineError::Internal(e.to_string()))?,
        )?;
        self.spawn_shim(&xdir).await?;
        let mut rx = c.signals.subscribe();
        c.bump(|s| s.shims += 1);
        // `docker run` attaches before it starts: let those attaches connect
        // first (each one bumps the signals when it has), for at most 2 s.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while c.attach_pending.load(Ordering::SeqCst) > 0 {
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        // berthd's waiter is in place before the process runs.
        let waiter = self.shim(id).begin_wait().await.ok();
        let resp = match self.shim(id).call(&Request::Start).await {
            Ok(r) => r,
            Err(e) => {
                if kill_stale_shim(&xdir) {
                    let path = stats::cgroup_path(id);
                    let _ =
                        tokio::task::spawn_blocking(move || berth_runtime::cgroups::destroy(&path))
                            .await;
                }
                return Err(e.into());
            }
        };
        {
            let mut st = c.state.lock().expect("state");
            st.status = Status::Running;
            st.pid = resp.pid.unwrap_or(0);
            st.exit_code = 0;
            st.oom_killed = false;
            st.error.clear();
            st.started_at = Some(now());
        }
        self.start_health(c, true);
        self.persist_state_soon(c);
        self.emit_for(c, "start", &[]);
        let me = self.clone();
        let c2 = c.clone();
        tokio::spawn(async move { me.monitor(c2, waiter).await });
        Ok(())
    }

    async fn spawn_shim(&self, xdir: &Path) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(xdir.join("shim.log"))?;
        let mut child = tokio::process::Command::new(&self.cfg.shim_path)
            .arg(xdir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|e| EngineError::Internal(format!("spawning shim: {e}")))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        let mut reader = tokio::io::BufReader::new(stdout);
        // A shim that dies without a word must not hang us: a process it left
        // behind may still hold the other end of the pipe.
        let exited_early = tokio::select! {
            r = reader.read_line(&mut line) => { r?; false }
            _ = child.wait() => true,
            _ = tokio::time::sleep(Duration::from_secs(60)) => {
                let _ = child.start_kill();
                true
            }
        };
        if exited_early && line.is_empty() {
            // It may have exited just after writing its answer, which the
            // pipe still holds.
            let _ =
                tokio::time::timeout(Duration::from_millis(200), reader.read_line(&mut line)).await;
        }
        if exited_early && line.is_empty() {
            let log = std::fs::read_to_string(xdir.join("shim.log")).unwrap_or_default();
            return Err(EngineError::Internal(format!(
                "failed to create task for container: shim exited: {}",
                log.lines().last().unwrap_or("no output")
            )));
        }
        // Reap the shim whenever it ends; it outlives us if we go first.
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        let line = line.trim();
        if line == "ready" {
            return Ok(());
        }
        let msg = line.strip_prefix("error ").unwrap_or(line);
        let msg = if msg.is_empty() { "shim exited" } else { msg };
        Err(EngineError::BadRequest(format!(
            "failed to create task for container: {}",
            docker_exec_error(msg)
        )))
    }

    async fn monitor(
        self: Arc<Self>,
        c: Arc<Ctr>,
        waiter: Option<berth_runtime::shim_client::PendingWait>,
    ) {
        let id = c.id();
        let exit = match waiter {
            Some(w) => w.exit().await,
            None => self.shim(&id).wait().await,
        };
        let exit = match exit {
            Ok(e) => e,
            Err(_) => {
                // The shim is gone, usually because a short-lived container ended
                // before we asked; it writes its exit file before it closes its
                // socket. Without the file it died: look once more, then give up.
                let path = self.xdir(&id).join("exit");
                let read = || {
                    std::fs::read(&path)
                        .ok()
                        .and_then(|b| serde_json::from_slice::<ExitStatus>(&b).ok())
                };
                let found = match read() {
                    Some(e) => Some(e),
                    None => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        read()
                    }
                };
                found.unwrap_or(ExitStatus {
                    exit_code: 255,
                    oom_killed: false,
                    finished_at: now(),
                })
            }
        };
        self.handle_exit(c, exit, true).await;
    }

    /// Boxed: exit handling may restart the container, whose monitor ends here again.
    fn handle_exit(
        self: Arc<Self>,
        c: Arc<Ctr>,
        exit: ExitStatus,
        policies: bool,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(self.handle_exit_inner(c, exit, policies))
    }

    async fn handle_exit_inner(self: Arc<Self>, c: Arc<Ctr>, exit: ExitStatus, policies: bool) {
        let id = c.id();
        self.stop_health(&id);
        // The network goes first, its published ports with it: whoever sees
        // the container exited (`rm -f`, `stop`) must find no rule left.
        let eps = {
            let mut st = c.state.lock().expect("state");
            if !st.status.is_running() {
                return;
            }
            std::mem::take(&mut st.endpoints)
        };
        self.teardown_network(&id, &eps).await;
        if eps.values().any(|e| !e.ports.is_empty()) {
            self.sync_nft_async().await;
        }
        let (restart, remove) = {
            let mut st = c.state.lock().expect("state");
            if !st.status.is_running() {
                return;
            }
            let ran_for = st
                .started_at
                .as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds())
                .unwrap_or(0);
            st.status = Status::Exited;
            st.exit_code = exit.exit_code;
            st.oom_killed = exit.oom_killed;
            st.pid = 0;
            st.finished_at = Some(if exit.finished_at.is_empty() {
                now()
            } else {
                exit.finished_at
            });
            if ran_for >= 10 {
                st.failure_count = 0;
            }
            let rec = c.rec.read().expect("rec");
            let rp = &rec.host_config.restart_policy;
            let restart = policies
                && !st.manually_stopped
                && match rp.name.as_str() {
                    "always" | "unless-stopped" => true,
                    "on-failure" => {
                        st.exit_code != 0
                            && (rp.maximum_retry_count == 0
                                || (st.failure_count as i64) < rp.maximum_retry_count)
                    }
                    _ => false,
                };
            if restart {
                st.failure_count += 1;
                st.restart_count += 1;
                st.status = Status::Restarting;
            }
            (restart, rec.host_config.auto_remove && !restart)
        };
        // Removal follows at once for `--rm`: atomic is enough; a crash in
        // between leaves an exited container, or a running one whose shim
        // is gone, which the next start of berthd marks exited.
        let _ = self.persist_state_with(&c, !remove);
        let _ = self.mounter.unmount(&self.rootfs(&id));
        if exit.oom_killed {
            self.emit_for(&c, "oom", &[]);
        }
        self.emit_for(&c, "die", &[("exitCode", exit.exit_code.to_string())]);
        c.bump(|s| s.exits += 1);
        if restart {
            let fails = c.state().failure_count.min(10);
            let delay = Duration::from_millis(100u64 << fails.saturating_sub(1))
                .min(Duration::from_secs(60));
            let me = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _op = c.op.lock().await;
                let st = c.state();
                if st.status != Status::Restarting {
                    return;
                }
                if st.manually_stopped {
                    c.state.lock().expect("state").status = Status::Exited;
                    let _ = me.persist_state(&c);
                    c.bump(|s| s.exits += 1);
                } else if let Err(e) = me.start_locked(&c).await {
                    tracing::warn!("restarting {id}: {e}");
                }
            });
        } else if remove {
            self.spawn_auto_remove(id);
        }
    }

    /// Removal runs apart: the caller may hold the container's op lock.
    fn spawn_auto_remove(self: &Arc<Self>, id: String) {
        let me = self.clone();
        tokio::spawn(async move {
            // As `docker run --rm`: anonymous volumes go with the container.
            if let Err(e) = me.remove(&id, true, true).await {
                tracing::warn!("auto-remove {id}: {e}");
            }
        });
    }

    // ---------------------------------------------------------------- stop / kill

    async fn wait_exit(&self, c: &Ctr, timeout: Option<Duration>) -> bool {
        let mut rx = c.signals.subscribe();
        let fut = async {
            loop {
                if !c.state().status.is_running() {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        };
        match timeout {
            Some(t) => tokio::time::timeout(t, fut).await.is_ok(),
            None => {
                fut.await;
                true
            }
        }
    }

    pub async fn stop(&self, key: &str, timeout: Option<i64>, signal: Option<&str>) -> Result<()> {
        self.stop_inner(key, timeout, signal).await?;
        if let Ok(c) = self.find(key) {
            self.emit_for(&c, "stop", &[]);
        }
        Ok(())
    }

    async fn stop_inner(
        &self,
        key: &str,
        timeout: Option<i64>,
        signal: Option<&str>,
    ) -> Result<()> {
        let c = self.find(key)?;
        let _op = c.op.lock().await;
        if !c.state().status.is_running() {
            return Err(EngineError::NotModified);
        }
        {
            let mut st = c.state.lock().expect("state");
            st.manually_stopped = true;
            if st.status == Status::Restarting {
                // Between runs: cancelling the pending restart is the whole stop.
                st.status = Status::Exited;
                drop(st);
                let _ = self.persist_state(&c);
                c.bump(|s| s.exits += 1);
                return Ok(());
            }
        }
        let _ = self.persist_state(&c);
        let (stop_signal, default_timeout) = {
            let rec = c.rec.read().expect("rec");
            (
                signal
                    .map(str::to_string)
                    .or_else(|| rec.config.stop_signal.clone())
                    .unwrap_or_else(|| "SIGTERM".into()),
                rec.config.stop_timeout.unwrap_or(10),
            )
        };
        let t = timeout.unwrap_or(default_timeout);
        let id = c.id();
        if c.state().status == Status::Paused {
            let _ = self.shim(&id).call(&Request::Resume).await;
        }
        let sig = parse_signal(&stop_signal)?;
        let _ = self
            .shim(&id)
            .call(&Request::Kill {
                signal: sig,
                all: false,
            })
            .await;
        if t >= 0
            && self
                .wait_exit(&c, Some(Duration::from_secs(t as u64)))
                .await
        {
            return Ok(());
        }
        if t < 0 {
            self.wait_exit(&c, None).await;
            return Ok(());
        }
        self.shim(&id)
            .call(&Request::Kill {
                signal: libc::SIGKILL,
                all: true,
            })
            .await?;
        self.wait_exit(&c, Some(Duration::from_secs(10))).await;
        Ok(())
    }

    pub async fn kill(&self, key: &str, signal: &str) -> Result<()> {
        let c = self.find(key)?;
        let sig = parse_signal(if signal.is_empty() { "SIGKILL" } else { signal })?;
        if !c.state().status.is_running() {
            return Err(EngineError::Conflict(format!(
                "cannot kill container: {}: container {} is not running",
                key,
                c.id()
            )));
        }
        if sig == libc::SIGKILL {
            c.state.lock().expect("state").manually_stopped = true;
            let _ = self.persist_state(&c);
        }
        self.shim(&c.id())
            .call(&Request::Kill {
                signal: sig,
                all: false,
            })
            .await?;
        self.emit_for(&c, "kill", &[("signal", sig.to_string())]);
        if sig == libc::SIGKILL {
            self.wait_exit(&c, Some(Duration::from_secs(10))).await;
        }
        Ok(())
    }

    pub async fn restart(self: &Arc<Self>, key: &str, timeout: Option<i64>) -> Result<()> {
        match self.stop(key, timeout, None).await {
            Ok(()) | Err(EngineError::NotModified) => {}
            Err(e) => return Err(e),
        }
        match self.start(key).await {
            Ok(()) | Err(EngineError::NotModified) => {}
            Err(e) => return Err(e),
        }
        if let Ok(c) = self.find(key) {
            self.emit_for(&c, "restart", &[]);
        }
        Ok(())
    }

    pub async fn pause(&self, key: &str, pause: bool) -> Result<()> {
        let c = self.find(key)?;
        let _op = c.op.lock().await;
        let st = c.state().status;
        let id = c.id();
        match (pause, st) {
            (true, Status::Running) => {
                if let Err(e) = self.shim(&id).call(&Request::Pause).await {
                    // The container ending under us (its shim gone, its
                    // cgroup removed) is not a daemon failure.
                    let pid = c.state().pid;
                    let gone = pid <= 0
                        || nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err();
                    if gone {
                        return Err(EngineError::Conflict(format!(
                            "Container {id} is not running"
                        )));
                    }
                    return Err(e.into());
                }
                c.state.lock().expect("state").status = Status::Paused;
                self.emit_for(&c, "pause", &[]);
            }
            (false, Status::Paused) => {
                self.shim(&id).call(&Request::Resume).await?;
                c.state.lock().expect("state").status = Status::Running;
                self.emit_for(&c, "unpause", &[]);
            }
            (true, Status::Paused) => {
                return Err(EngineError::Conflict(format!(
                    "Container {id} is already paused"
                )))
            }
            (false, _) => {
                return Err(EngineError::Conflict(format!(
                    "Container {id} is not paused"
                )))
            }
            (true, _) => {
                return Err(EngineError::Conflict(format!(
                    "Container {id} is not running"
                )))
            }
        }
        self.persist_state(&c)?;
        Ok(())
    }

    // ---------------------------------------------------------------- remove

    pub async fn remove(&self, key: &str, force: bool, volumes: bool) -> Result<()> {
        let c = self.find(key)?;
        let name = c.rec.read().expect("rec").name.clone();
        // A start may be under way: once it holds the container the kill
        // must come again, or the removal would take a running container's
        // network and root away beneath it.
        let mut tries = 0;
        let _op = loop {
            let status = c.state().status;
            if !force {
                let why = match status {
                    Status::Restarting => Some(
                        "container is restarting: stop the container before removing or force remove",
                    ),
                    Status::Paused => Some("container is paused and must be unpaused first"),
                    s if s.is_running() => Some(
                        "container is running: stop the container before removing or force remove",
                    ),
                    _ => None,
                };
                if let Some(why) = why {
                    return Err(EngineError::Conflict(format!(
                        "cannot remove container \"/{name}\": {why}"
                    )));
                }
            }
            if status == Status::Restarting {
                let mut st = c.state.lock().expect("state");
                st.manually_stopped = true;
                st.status = Status::Exited;
            }
            if c.state().status.is_running() {
                c.state.lock().expect("state").manually_stopped = true;
                let _ = self
                    .shim(&c.id())
                    .call(&Request::Kill {
                        signal: libc::SIGKILL,
                        all: true,
                    })
                    .await;
                // A frozen process cannot take its SIGKILL until thawed.
                if c.state().status == Status::Paused {
                    let _ = self.shim(&c.id()).call(&Request::Resume).await;
                }
                if !self.wait_exit(&c, Some(Duration::from_secs(15))).await {
                    return Err(EngineError::Internal(format!(
                        "could not kill running container {}, cannot remove",
                        c.id()
                    )));
                }
            }
            let op = c.op.lock().await;
            if !c.state().status.is_running() {
                break op;
            }
            tries += 1;
            if tries == 5 {
                return Err(EngineError::Internal(format!(
                    "could not kill running container {}, cannot remove",
                    c.id()
                )));
            }
        };
        let id = c.id();
        {
            let mut st = c.state.lock().expect("state");
            if st.status == Status::Removing {
                return Err(EngineError::Conflict(format!(
                    "removal of container {id} is already in progress"
                )));
            }
            st.status = Status::Removing;
        }
        // Atomic, not durable: the directory is discarded next; after a
        // crash in between the container is still there, exited, to remove.
        let _ = self.persist_state_with(&c, false);
        let eps = std::mem::take(&mut c.state.lock().expect("state").endpoints);
        self.teardown_network(&id, &eps).await;
        self.mounter.unmount(&self.rootfs(&id))?;
        self.discard(&self.xdir(&id), &self.cfg.exec_root)?;
        let _ = std::fs::remove_file(self.shim_socket(&id));
        self.discard(&self.cdir(&id), &self.cfg.data_root)?;
        self.containers.write().expect("containers").remove(&id);
        {
            let mut names = self.names.write().expect("names");
            if names.get(&name) == Some(&id) {
                names.remove(&name);
            }
        }
        self.execs
            .lock()
            .expect("execs")
            .retain(|_, e| e.container_id != id);
        c.bump(|s| s.removed = true);
        let rec = c.rec.read().expect("rec").clone();
        self.emit_container(&rec, "destroy", &[]);
        if volumes {
            self.remove_anonymous_volumes(&rec);
        }
        if self.store.get(&rec.image_id).is_err() {
            // Its image went with `rmi -f`: the layers may now be free.
            self.store.gc_layers(&rec.layers, &self.held_layers());
        }
        Ok(())
    }

    /// Every layer some container mounts.
    pub(crate) fn held_layers(&self) -> std::collections::HashSet<String> {
        self.containers
            .read()
            .expect("containers")
            .values()
            .flat_map(|c| c.rec.read().expect("rec").layers.clone())
            .collect()
    }

    pub async fn prune(
        &self,
        filters: &HashMap<String, Vec<String>>,
    ) -> Result<(Vec<String>, u64)> {
        let filter = prune::PruneFilter::parse(filters, &[])?;
        let ids: Vec<String> = self
            .containers
            .read()
            .expect("containers")
            .values()
            .filter(|c| {
                matches!(
                    c.state().status,
                    Status::Exited | Status::Created | Status::Dead
                )
            })
            .filter(|c| {
                let r = c.rec.read().expect("rec");
                let labels = r.config.labels.clone().unwrap_or_default();
                filter.matches(prune::rfc3339_unix(&r.created), &labels)
            })
            .map(|c| c.id())
            .collect();
        let mut out = Vec::new();
        let mut space = 0;
        for id in ids {
            space += dir_size(&self.cdir(&id).join("rw/upper"));
            if self.remove(&id, false, false).await.is_ok() {
                out.push(id);
            }
        }
        Ok((out, space))
    }

    pub fn rename(&self, key: &str, new: &str) -> Result<()> {
        let c = self.find(key)?;
        let new = new.trim_start_matches('/');
        if !names::valid(new) {
            return Err(EngineError::BadRequest(format!(
                "Invalid container name ({new}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        let mut names = self.names.write().expect("names");
        if let Some(other) = names.get(new) {
            return Err(EngineError::Conflict(format!(
                "Conflict. The container name \"/{new}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
            )));
        }
        let mut rec = c.rec.write().expect("rec");
        names.remove(&rec.name);
        names.insert(new.to_string(), rec.id.clone());
        let old = std::mem::replace(&mut rec.name, new.to_string());
        self.persist_record(&rec)?;
        self.emit_container(&rec, "rename", &[("oldName", format!("/{old}"))]);
        Ok(())
    }

    // ---------------------------------------------------------------- wait

    /// `POST /containers/{id}/wait`: `not-running` (default), `next-exit`, `removed`.
    /// The condition's baseline is taken now, before the returned future runs, so a
    /// client that waits and then starts never misses the exit.
    pub fn wait(
        &self,
        key: &str,
        condition: &str,
    ) -> Result<impl std::future::Future<Output = i64> + Send + 'static> {
        let c = self.find(key)?;
        let mut rx = c.signals.subscribe();
        let start = rx.borrow_and_update().clone();
        let condition = condition.to_string();
        Ok(async move {
            loop {
                let st = c.state();
                let sig = rx.borrow().clone();
                let done = match condition.as_str() {
                    "next-exit" => sig.exits > start.exits,
                    "removed" => sig.removed,
                    _ => {
                        (!st.status.is_running() && st.status != Status::Created)
                            || sig.exits > start.exits
                    }
                };
                if done {
                    return st.exit_code as i64;
                }
                if rx.changed().await.is_err() {
                    return c.state().exit_code as i64;
                }
            }
        })
    }

    // ---------------------------------------------------------------- attach

    /// Connects to the container's stdio. Before the container starts (`docker run`
    /// attaches first), the returned future waits for its shim; the container's
    /// start waits for such attaches, which register here, synchronously.
    /// dockerd's refusals of any attach, with or without a live stream.
    pub fn check_attach(&self, key: &str) -> Result<()> {
        match self.find(key)?.state().status {
            Status::Paused => Err(EngineError::Conflict(format!(
                "container {key} is paused, unpause the container before attach"
            ))),
            Status::Restarting => Err(EngineError::Conflict(format!(
                "container {key} is restarting, wait until the container is running"
            ))),
            _ => Ok(()),
        }
    }

    pub fn attach(
        &self,
        key: &str,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> Result<(
        impl std::future::Future<Output = Result<tokio::io::BufReader<UnixStream>>> + Send + 'static,
        bool,
    )> {
        let c = self.find(key)?;
        let tty = c.rec.read().expect("rec").config.tty;
        let st = c.state().status;
        let shim = self.shim(&c.id());
        let req = Request::Attach {
            stdin,
            stdout,
            stderr,
        };
        self.check_attach(key)?;
        let pending = !st.is_running();
        if pending && st != Status::Created && st != Status::Exited {
            return Err(EngineError::Conflict(
                "You cannot attach to a stopped container, start it first".into(),
            ));
        }
        let mut rx = c.signals.subscribe();
        let base = rx.borrow_and_update().shims;
        if pending {
            c.attach_pending.fetch_add(1, Ordering::SeqCst);
        }
        let fut = async move {
            if pending {
                let ready = tokio::time::timeout(Duration::from_secs(3600), async {
                    loop {
                        if rx.borrow().shims > base || rx.borrow().removed {
                            return;
                        }
                        if rx.changed().await.is_err() {
                            return;
                        }
                    }
                })
                .await;
                let removed = rx.borrow().removed;
                let res = if ready.is_ok() && !removed {
                    shim.open(&req)
                        .await
                        .map(|(_, s)| s)
                        .map_err(EngineError::from)
                } else {
                    Err(EngineError::Conflict("container was removed".into()))
                };
                c.attach_pending.fetch_sub(1, Ordering::SeqCst);
                c.bump(|_| {});
                return res;
            }
            Ok(shim.open(&req).await?.1)
        };
        Ok((fut, tty))
    }

    pub async fn resize(&self, key: &str, height: u16, width: u16) -> Result<()> {
        let c = self.find(key)?;
        if !c.state().status.is_running() {
            return Err(EngineError::Conflict(format!(
                "Container {} is not running",
                c.id()
            )));
        }
        self.shim(&c.id())
            .call(&Request::Resize {
                exec_id: None,
                height,
                width,
            })
            .await?;
        Ok(())
    }

    // ---------------------------------------------------------------- views

    pub fn container_tty(&self, key: &str) -> Result<bool> {
        Ok(self.find(key)?.rec.read().expect("rec").config.tty)
    }

    /// `docker inspect` of a container.
    pub fn inspect(&self, key: &str, size: bool) -> Result<Value> {
        let c = self.find(key)?;
        let rec = c.rec.read().expect("rec").clone();
        let st = c.state();
        let dir = self.cdir(&rec.id);
        let mut config = serde_json::to_value(&rec.config).unwrap_or_default();
        config["Image"] = json!(rec.image);
        let net_mode = net::mode_network(&rec.host_config.network_mode).to_string();
        let mut host_config = serde_json::to_value(&rec.host_config).unwrap_or_default();
        host_config["NetworkMode"] = json!(net_mode);
        host_config["Links"] = json!(self.links_json(&rec));
        let exec_ids: Vec<String> = self
            .execs
            .lock()
            .expect("execs")
            .values()
            .filter(|e| e.container_id == rec.id && e.running)
            .map(|e| e.id.clone())
            .collect();
        let lower = self
            .store
            .get(&rec.image_id)
            .ok()
            .and_then(|i| self.store.lower_dirs(&i).ok())
            .map(|d| {
                d.iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(":")
            })
            .unwrap_or_default();
        let mut v = json!({
            "Id": rec.id,
            "Created": rec.created,
            "Path": rec.path,
            "Args": rec.args,
            "State": {
                "Status": st.status.as_str(),
                "Running": st.status.is_running(),
                "Paused": st.status == Status::Paused,
                "Restarting": st.status == Status::Restarting,
                "OOMKilled": st.oom_killed,
                "Dead": st.status == Status::Dead,
                "Pid": st.pid,
                "ExitCode": st.exit_code,
                "Error": st.error,
                "StartedAt": st.started_at.clone().unwrap_or_else(|| ZERO_TIME.into()),
                "FinishedAt": st.finished_at.clone().unwrap_or_else(|| ZERO_TIME.into()),
            },
            "Image": rec.image_id,
            "ResolvConfPath": dir.join("resolv.conf"),
            "HostnamePath": dir.join("hostname"),
            "HostsPath": dir.join("hosts"),
            "LogPath": rec.log_path,
            "Name": format!("/{}", rec.name),
            "RestartCount": st.restart_count,
            "Driver": "overlay2",
            "Platform": "linux",
            "MountLabel": "",
            "ProcessLabel": "",
            "AppArmorProfile": "",
            "ExecIDs": if exec_ids.is_empty() { Value::Null } else { json!(exec_ids) },
            "HostConfig": host_config,
            "GraphDriver": {
                "Name": "overlay2",
                "Data": {
                    "LowerDir": lower,
                    "UpperDir": dir.join("rw/upper"),
                    "WorkDir": dir.join("rw/work"),
                    "MergedDir": self.rootfs(&rec.id),
                }
            },
            "Mounts": self.mounts_json(&rec),
            "Config": config,
            "NetworkSettings": self.network_settings(&rec, &st.endpoints),
        });
        if let Some(h) = &st.health {
            v["State"]["Health"] = json!(h);
        }
        if size {
            let rw = dir_size(&dir.join("rw/upper"));
            let root = self.store.get(&rec.image_id).map(|i| i.size).unwrap_or(0);
            v["SizeRw"] = json!(rw);
            v["SizeRootFs"] = json!(rw + root);
        }
        Ok(v)
    }

    /// `GET /containers/json`, from memory.
    pub fn list(
        &self,
        all: bool,
        limit: Option<usize>,
        size: bool,
        filters: &HashMap<String, Vec<String>>,
    ) -> Result<Vec<Value>> {
        for k in filters.keys() {
            if !matches!(
                k.as_str(),
                "id" | "name"
                    | "label"
                    | "status"
                    | "exited"
                    | "ancestor"
                    | "before"
                    | "since"
                    | "network"
                    | "volume"
                    | "health"
                    | "is-task"
                    | "publish"
                    | "expose"
            ) {
                return Err(EngineError::BadRequest(format!("invalid filter '{k}'")));
            }
        }
        for s in filters.get("status").into_iter().flatten() {
            if !matches!(
                s.as_str(),
                "created" | "restarting" | "running" | "removing" | "paused" | "exited" | "dead"
            ) {
                return Err(EngineError::BadRequest(format!(
                    "invalid filter 'status={s}'"
                )));
            }
        }
        let cs: Vec<Arc<Ctr>> = self
            .containers
            .read()
            .expect("containers")
            .values()
            .cloned()
            .collect();
        let mut rows: Vec<(Record, State)> = cs
            .iter()
            .map(|c| (c.rec.read().expect("rec").clone(), c.state()))
            .collect();
        rows.sort_by(|a, b| b.0.created.cmp(&a.0.created));
        // `/parent/alias` names of linked containers, gathered in one pass.
        let mut link_names: HashMap<String, Vec<String>> = HashMap::new();
        for (r, _) in &rows {
            for l in &r.links {
                link_names
                    .entry(l.child.clone())
                    .or_default()
                    .push(format!("/{}/{}", r.name, l.alias));
            }
        }
        let ancestors: Vec<String> = filters
            .get("ancestor")
            .into_iter()
            .flatten()
            .filter_map(|a| self.store.get(a).ok().map(|i| i.id))
            .collect();
        let explicit_status = filters.contains_key("status") || filters.contains_key("exited");
        let mut out = Vec::new();
        for (rec, st) in rows {
            if !all && limit.is_none() && !explicit_status && !st.status.is_running() {
                continue;
            }
            if !matches_filters(&rec, &st, filters, &ancestors) {
                continue;
            }
            if let Some(n) = limit {
                if out.len() >= n {
                    break;
                }
            }
            let mut command = std::iter::once(rec.path.clone())
                .chain(rec.args.iter().cloned())
                .collect::<Vec<_>>()
                .join(" ");
            if command.is_empty() {
                command = String::new();
            }
            let net_mode = net::mode_network(&rec.host_config.network_mode).to_string();
            let created = chrono::DateTime::parse_from_rfc3339(&rec.created)
                .map(|t| t.timestamp())
                .unwrap_or(0);
            let mut v = json!({
                "Id": rec.id,
                "Names": std::iter::once(format!("/{}", rec.name))
                    .chain(link_names.get(&rec.id).into_iter().flatten().cloned())
                    .collect::<Vec<_>>(),
                "Image": rec.image,
                "ImageID": rec.image_id,
                "Command": command,
                "Created": created,
                "Ports": self.ports_list(&rec, &st.endpoints),
                "Labels": rec.config.labels.clone().unwrap_or_default(),
                "State": st.status.as_str(),
                "Status": record::status_text(&st),
                "HostConfig": {"NetworkMode": net_mode},
                "NetworkSettings": {"Networks": self.networks_json(&rec, &st.endpoints)},
                "Mounts": self.mounts_json(&rec),
            });
            if size {
                let rw = dir_size(&self.cdir(&rec.id).join("rw/upper"));
                let root = self.store.get(&rec.image_id).map(|i| i.size).unwrap_or(0);
                v["SizeRw"] = json!(rw);
                v["SizeRootFs"] = json!(rw + root);
            }
            out.push(v);
        }
        Ok(out)
    }

    /// Which containers use an image, for `rmi`.
    fn image_users(&self, image_id: &str) -> Vec<berth_store::ImageUser> {
        self.containers
            .read()
            .expect("containers")
            .values()
            .filter_map(|c| {
                let rec = c.rec.read().expect("rec");
                (rec.image_id == image_id).then(|| berth_store::ImageUser {
                    container_id: rec.id.clone(),
                    running: c.state().status.is_running(),
                })
            })
            .collect()
    }

    pub fn container_count(&self) -> (usize, usize, usize, usize) {
        let cs = self.containers.read().expect("containers");
        let mut r = (cs.len(), 0, 0, 0);
        for c in cs.values() {
            match c.state().status {
                Status::Running | Status::Restarting => r.1 += 1,
                Status::Paused => r.2 += 1,
                _ => r.3 += 1,
            }
        }
        r
    }

    pub fn data_root(&self) -> &Path {
        &self.cfg.data_root
    }
}

fn matches_filters(
    rec: &Record,
    st: &State,
    f: &HashMap<String, Vec<String>>,
    ancestors: &[String],
) -> bool {
    let any = |key: &str, pred: &dyn Fn(&str) -> bool| -> bool {
        match f.get(key) {
            None => true,
            Some(vals) if vals.is_empty() => true,
            Some(vals) => vals.iter().any(|v| pred(v)),
        }
    };
    let labels = rec.config.labels.clone().unwrap_or_default();
    any("id", &|v| rec.id.starts_with(v))
        && any("name", &|v| rec.name.contains(v.trim_start_matches('/')))
        && any("status", &|v| v == st.status.as_str())
        && any("health", &|v| match &st.health {
            Some(h) => v == h.status,
            None => v == "none",
        })
        && any("exited", &|v| {
            st.status == Status::Exited && v.parse::<i32>().ok() == Some(st.exit_code)
        })
        && f.get("label").is_none_or(|vals| {
            vals.iter().all(|v| match v.split_once('=') {
                Some((k, val)) => labels.get(k).map(|x| x == val).unwrap_or(false),
                None => labels.contains_key(v.as_str()),
            })
        })
        && (f.get("ancestor").is_none_or(|v| v.is_empty())
            || ancestors.contains(&rec.image_id)
            || f["ancestor"].iter().any(|a| a == &rec.image))
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

/// Rewrites the runtime's words for an unstartable command into Docker's, which
/// clients (the docker CLI among them) read to pick exit status 126 or 127.
fn docker_exec_error(msg: &str) -> String {
    let quoted = |m: &str, pat: &str| {
        m.find(pat).and_then(|i| {
            let rest = &m[i + pat.len()..];
            rest.find('\'').map(|j| rest[..j].to_string())
        })
    };
    if msg.contains("not found in $PATH") {
        if let Some(cmd) = quoted(msg, "executable '") {
            return format!("exec: \"{cmd}\": executable file not found in $PATH: unknown");
        }
    }
    if msg.contains("does not have correct permissions") {
        if let Some(cmd) = quoted(msg, "executable '") {
            return format!("exec: \"{cmd}\": permission denied: unknown");
        }
    }
    msg.to_string()
}

/// Docker's exit statuses for a process that could not be started.
fn exit_code_for_start_error(msg: &str) -> i32 {
    let m = msg.to_ascii_lowercase();
    if m.contains("not found") || m.contains("no such file") {
        127
    } else if m.contains("permission denied") {
        126
    } else {
        128
    }
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

/// Waits (up to 5 s) for the shim whose pid `xdir/shim.pid` names to exit.
async fn wait_for_old_shim(xdir: &Path) {
    let Some(pid) = std::fs::read_to_string(xdir.join("shim.pid"))
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
    else {
        return;
    };
    let ours = |pid: i32| {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains(&*xdir.to_string_lossy()))
            .unwrap_or(false)
    };
    for _ in 0..5000 {
        if !ours(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
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
    fn runtime_errors_read_like_dockers() {
        let m = docker_exec_error("exec process failed: executable 'nope' not found in $PATH");
        assert_eq!(
            m,
            "exec: \"nope\": executable file not found in $PATH: unknown"
        );
        let m = docker_exec_error(
            "executable '/etc' at path '\"/etc\"' does not have correct permissions",
        );
        assert!(m.contains("permission denied"));
    }

    #[test]
    fn start_errors_map_to_docker_exit_codes() {
        assert_eq!(
            exit_code_for_start_error("exec: \"nope\": executable file not found in $PATH"),
            127
        );
        assert_eq!(exit_code_for_start_error("permission denied"), 126);
    }
}
