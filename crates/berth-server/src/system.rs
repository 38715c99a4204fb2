//! `/_ping`, `/version`, `/info`, `/events` and `/system/df`.

use crate::*;
use berth_api::{
    ComponentVersion, PlatformName, PluginsInfo, RuntimeInfo, SwarmInfo, SystemInfo, SystemVersion,
};

pub(crate) async fn ping() -> Response {
    let mut r = "OK".into_response();
    let h = r.headers_mut();
    h.insert("Api-Version", HeaderValue::from_static(API_VERSION));
    h.insert("Ostype", HeaderValue::from_static("linux"));
    h.insert("Builder-Version", HeaderValue::from_static("1"));
    h.insert("Swarm", HeaderValue::from_static("inactive"));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

pub(crate) fn kernel_version() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().to_string())
        .unwrap_or_default()
}

pub(crate) async fn version<B: Backend>(State(s): State<AppState<B>>) -> Response {
    let arch = berth_api::host_arch().to_string();
    let details = [
        ("ApiVersion", API_VERSION.to_string()),
        ("MinAPIVersion", MIN_API_VERSION.to_string()),
        ("Os", "linux".to_string()),
        ("Arch", arch.clone()),
        ("KernelVersion", kernel_version()),
    ];
    json_response(SystemVersion {
        platform: PlatformName {
            name: "Berth Engine".into(),
        },
        components: vec![ComponentVersion {
            name: "Engine".into(),
            version: s.daemon.version.clone(),
            details: details
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        }],
        version: s.daemon.version.clone(),
        api_version: API_VERSION.into(),
        min_api_version: MIN_API_VERSION.into(),
        git_commit: "berth".into(),
        go_version: "rust".into(),
        os: "linux".into(),
        arch,
        kernel_version: kernel_version(),
        build_time: String::new(),
    })
}

pub(crate) async fn info<B: SystemBackend>(State(s): State<AppState<B>>) -> Response {
    let (total, running, paused, stopped) = s.backend.container_count();
    let cgroup_version = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "2"
    } else {
        "1"
    };
    let name = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().to_string())
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024;
    let strings = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    json_response(SystemInfo {
        id: s.daemon.id.clone(),
        containers: total,
        containers_running: running,
        containers_paused: paused,
        containers_stopped: stopped,
        images: s.backend.image_count(),
        driver: "overlay2".into(),
        driver_status: vec![["Backing Filesystem".into(), "extfs".into()]],
        plugins: PluginsInfo {
            volume: strings(&["local"]),
            network: strings(&["host", "none"]),
            log: strings(&["json-file"]),
        },
        memory_limit: true,
        cpu_cfs_period: true,
        cpu_cfs_quota: true,
        cpu_shares: true,
        pids_limit: true,
        ipv4_forwarding: true,
        system_time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        logging_driver: "json-file".into(),
        cgroup_driver: "cgroupfs".into(),
        cgroup_version: cgroup_version.into(),
        kernel_version: kernel_version(),
        operating_system: "Berth".into(),
        os_type: "linux".into(),
        architecture: std::env::consts::ARCH.into(),
        ncpu: std::thread::available_parallelism().map_or(1, |n| n.get()),
        mem_total: mem,
        docker_root_dir: s.daemon.data_root.clone(),
        index_server_address: "https://index.docker.io/v1/".into(),
        registry_config: s.backend.registry_service_config(),
        name,
        server_version: s.daemon.version.clone(),
        runtimes: [(
            "berth".to_string(),
            RuntimeInfo {
                path: "berth-shim".into(),
            },
        )]
        .into(),
        default_runtime: "berth".into(),
        swarm: SwarmInfo {
            local_node_state: "inactive".into(),
            ..SwarmInfo::default()
        },
        live_restore_enabled: true,
        security_options: strings(&["name=seccomp,profile=builtin", "name=cgroupns"]),
        ..SystemInfo::default()
    })
}

// ------------------------------------------------------------------ containers

/// `GET /events`: past events from `since`, then live ones, until `until`.
pub(crate) async fn events<B: SystemBackend>(State(s): State<AppState<B>>, q: Q) -> ApiResult {
    use berth_engine::events::parse_time_nano;
    let filters = q.filters()?;
    let bad = |k: &str| ApiError::bad(format!("invalid value for {k}"));
    let since = match q.get("since").filter(|v| !v.is_empty()) {
        Some(v) => Some(parse_time_nano(v).ok_or_else(|| bad("since"))?),
        None => None,
    };
    let until = match q.get("until").filter(|v| !v.is_empty()) {
        Some(v) => Some(parse_time_nano(v).ok_or_else(|| bad("until"))?),
        None => None,
    };
    let (past, mut rx) = s.backend.subscribe_events(since);
    let (tx, out) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(64);
    tokio::spawn(async move {
        let line = |e: &berth_engine::events::Event| {
            let mut l = serde_json::to_vec(&e.to_message()).unwrap_or_default();
            l.push(b'\n');
            Ok(l)
        };
        let now_nano = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as i64)
                .unwrap_or(0)
        };
        let before_until = |t: i64| until.is_none_or(|u| t <= u);
        for e in past
            .iter()
            .filter(|e| e.matches(&filters) && before_until(e.time_nano))
        {
            if tx.send(line(e)).await.is_err() {
                return;
            }
        }
        loop {
            let left =
                until.map(|u| std::time::Duration::from_nanos((u - now_nano()).max(0) as u64));
            let next = async {
                match left {
                    Some(d) => tokio::time::timeout(d, rx.recv()).await.ok(),
                    None => Some(rx.recv().await),
                }
            };
            let e = tokio::select! {
                e = next => e,
                _ = tx.closed() => return,
            };
            match e {
                None => return,
                Some(Ok(e)) if !before_until(e.time_nano) => return,
                Some(Ok(e)) if e.matches(&filters) => {
                    if tx.send(line(&e)).await.is_err() {
                        return;
                    }
                }
                Some(Ok(_)) | Some(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
                Some(Err(_)) => return,
            }
        }
    });
    Ok(json_stream(out))
}

pub(crate) async fn system_df<B: SystemBackend>(State(s): State<AppState<B>>) -> ApiResult {
    Ok(json_response(s.backend.system_df(true)?))
}
