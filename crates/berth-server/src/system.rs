//! `/_ping`, `/version`, `/info`, `/events` and `/system/df`.

use crate::*;

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
    json_response(json!({
        "Platform": {"Name": "Berth Engine"},
        "Components": [{"Name": "Engine", "Version": s.daemon.version,
            "Details": {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
                "Os": "linux", "Arch": berth_api::host_arch(), "KernelVersion": kernel_version()}}],
        "Version": s.daemon.version,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "berth",
        "GoVersion": "rust",
        "Os": "linux",
        "Arch": berth_api::host_arch(),
        "KernelVersion": kernel_version(),
        "BuildTime": "",
    }))
}

pub(crate) async fn info<B: SystemBackend>(State(s): State<AppState<B>>) -> Response {
    let (total, running, paused, stopped) = s.backend.container_count();
    let images = s.backend.image_count();
    let cgv = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "2"
    } else {
        "1"
    };
    let host = nix::unistd::gethostname()
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
    json_response(json!({
        "ID": s.daemon.id,
        "Containers": total,
        "ContainersRunning": running,
        "ContainersPaused": paused,
        "ContainersStopped": stopped,
        "Images": images,
        "Driver": "overlay2",
        "DriverStatus": [["Backing Filesystem", "extfs"]],
        "Plugins": {"Volume": ["local"], "Network": ["host", "none"], "Log": ["json-file"]},
        "MemoryLimit": true, "SwapLimit": false, "CpuCfsPeriod": true, "CpuCfsQuota": true,
        "CPUShares": true, "PidsLimit": true, "IPv4Forwarding": true,
        "Debug": false, "NFd": 0, "NGoroutines": 0,
        "SystemTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": cgv,
        "KernelVersion": kernel_version(),
        "OperatingSystem": "Berth",
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "MemTotal": mem,
        "DockerRootDir": s.daemon.data_root,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {"IndexConfigs": {}, "InsecureRegistryCIDRs": [], "Mirrors": []},
        "Name": host,
        "Labels": [],
        "ExperimentalBuild": false,
        "ServerVersion": s.daemon.version,
        "Runtimes": {"berth": {"path": "berth-shim"}},
        "DefaultRuntime": "berth",
        "Swarm": {"LocalNodeState": "inactive", "NodeID": "", "NodeAddr": "",
            "ControlAvailable": false, "Error": "", "RemoteManagers": null},
        "LiveRestoreEnabled": true,
        "Isolation": "",
        "InitBinary": "",
        "SecurityOptions": ["name=seccomp,profile=builtin", "name=cgroupns"],
        "Warnings": [],
    }))
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
