//! `/system/*` answers.

use crate::*;
use serde::{Deserialize, Serialize};

/// `GET /system/df`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct DiskUsage {
    pub layers_size: i64,
    #[serde(deserialize_with = "null_as_default")]
    pub images: Vec<ImageSummary>,
    #[serde(deserialize_with = "null_as_default")]
    pub containers: Vec<ContainerSummary>,
    #[serde(deserialize_with = "null_as_default")]
    pub volumes: Vec<Volume>,
    /// Berth's build cache is made of images; it has no entries of its own.
    #[serde(deserialize_with = "null_as_default")]
    pub build_cache: Vec<serde_json::Value>,
}

/// Who an event happened to.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct EventActor {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(deserialize_with = "null_as_default")]
    pub attributes: std::collections::BTreeMap<String, String>,
}

/// One line of `GET /events`, with the pre-1.22 `status`/`id`/`from` fields
/// that older clients (docker-compose 1.x) still read on container and
/// image events.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct EventMessage {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: EventActor,
    pub scope: String,
    pub time: i64,
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

/// One part of the engine in `GET /version`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ComponentVersion {
    pub name: String,
    pub version: String,
    #[serde(deserialize_with = "null_as_default")]
    pub details: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct PlatformName {
    pub name: String,
}

/// `GET /version`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct SystemVersion {
    pub platform: PlatformName,
    #[serde(deserialize_with = "null_as_default")]
    pub components: Vec<ComponentVersion>,
    pub version: String,
    pub api_version: String,
    #[serde(rename = "MinAPIVersion")]
    pub min_api_version: String,
    pub git_commit: String,
    pub go_version: String,
    pub os: String,
    pub arch: String,
    pub kernel_version: String,
    pub build_time: String,
}

/// The plugins `docker info` lists, by kind.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct PluginsInfo {
    pub volume: Vec<String>,
    pub network: Vec<String>,
    pub log: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct RegistryServiceConfig {
    #[serde(deserialize_with = "null_as_default")]
    pub index_configs: std::collections::BTreeMap<String, serde_json::Value>,
    #[serde(rename = "InsecureRegistryCIDRs", deserialize_with = "null_as_default")]
    pub insecure_registry_cidrs: Vec<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub mirrors: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct RuntimeInfo {
    pub path: String,
}

/// This node's part in a swarm, in `docker info`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct SwarmInfo {
    #[serde(rename = "NodeID")]
    pub node_id: String,
    pub node_addr: String,
    /// `inactive`, `pending`, `active`, `error` or `locked`.
    pub local_node_state: String,
    pub control_available: bool,
    pub error: String,
    pub remote_managers: Option<Vec<serde_json::Value>>,
}

/// `GET /info`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct SystemInfo {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Containers")]
    pub containers: usize,
    #[serde(rename = "ContainersRunning")]
    pub containers_running: usize,
    #[serde(rename = "ContainersPaused")]
    pub containers_paused: usize,
    #[serde(rename = "ContainersStopped")]
    pub containers_stopped: usize,
    #[serde(rename = "Images")]
    pub images: usize,
    #[serde(rename = "Driver")]
    pub driver: String,
    #[serde(rename = "DriverStatus", deserialize_with = "null_as_default")]
    pub driver_status: Vec<[String; 2]>,
    #[serde(rename = "Plugins")]
    pub plugins: PluginsInfo,
    #[serde(rename = "MemoryLimit")]
    pub memory_limit: bool,
    #[serde(rename = "SwapLimit")]
    pub swap_limit: bool,
    #[serde(rename = "CpuCfsPeriod")]
    pub cpu_cfs_period: bool,
    #[serde(rename = "CpuCfsQuota")]
    pub cpu_cfs_quota: bool,
    #[serde(rename = "CPUShares")]
    pub cpu_shares: bool,
    #[serde(rename = "PidsLimit")]
    pub pids_limit: bool,
    #[serde(rename = "IPv4Forwarding")]
    pub ipv4_forwarding: bool,
    #[serde(rename = "Debug")]
    pub debug: bool,
    #[serde(rename = "NFd")]
    pub nfd: i64,
    #[serde(rename = "NGoroutines")]
    pub ngoroutines: i64,
    #[serde(rename = "SystemTime")]
    pub system_time: String,
    #[serde(rename = "LoggingDriver")]
    pub logging_driver: String,
    #[serde(rename = "CgroupDriver")]
    pub cgroup_driver: String,
    #[serde(rename = "CgroupVersion")]
    pub cgroup_version: String,
    #[serde(rename = "KernelVersion")]
    pub kernel_version: String,
    #[serde(rename = "OperatingSystem")]
    pub operating_system: String,
    #[serde(rename = "OSType")]
    pub os_type: String,
    #[serde(rename = "Architecture")]
    pub architecture: String,
    #[serde(rename = "NCPU")]
    pub ncpu: usize,
    #[serde(rename = "MemTotal")]
    pub mem_total: u64,
    #[serde(rename = "DockerRootDir")]
    pub docker_root_dir: String,
    #[serde(rename = "IndexServerAddress")]
    pub index_server_address: String,
    #[serde(rename = "RegistryConfig")]
    pub registry_config: RegistryServiceConfig,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Labels", deserialize_with = "null_as_default")]
    pub labels: Vec<String>,
    #[serde(rename = "ExperimentalBuild")]
    pub experimental_build: bool,
    #[serde(rename = "ServerVersion")]
    pub server_version: String,
    #[serde(rename = "Runtimes", deserialize_with = "null_as_default")]
    pub runtimes: std::collections::BTreeMap<String, RuntimeInfo>,
    #[serde(rename = "DefaultRuntime")]
    pub default_runtime: String,
    #[serde(rename = "Swarm")]
    pub swarm: SwarmInfo,
    #[serde(rename = "LiveRestoreEnabled")]
    pub live_restore_enabled: bool,
    #[serde(rename = "Isolation")]
    pub isolation: String,
    #[serde(rename = "InitBinary")]
    pub init_binary: String,
    #[serde(rename = "SecurityOptions", deserialize_with = "null_as_default")]
    pub security_options: Vec<String>,
    #[serde(rename = "Warnings", deserialize_with = "null_as_default")]
    pub warnings: Vec<String>,
}

/// A size as a progress line prints it (`units.HumanSize`: four
/// significant digits, `1.049MB`).
pub fn human_size(n: f64) -> String {
    berth_util::units::human_size_with_precision(n, 4)
}

/// `[=====>      ]  1.2MB/3.4MB`, as dockerd renders a progress.
pub fn progress_bar(current: u64, total: u64) -> String {
    if total == 0 || current > total {
        return format!("{:>8}", human_size(current as f64));
    }
    const WIDTH: u64 = 50;
    let bars = WIDTH * current / total;
    let (arrow, spaces) = if bars < WIDTH {
        (">", WIDTH - bars - 1)
    } else {
        ("", 0)
    };
    format!(
        "[{}{arrow}{}] {:>8}/{}",
        "=".repeat(bars as usize),
        " ".repeat(spaces as usize),
        human_size(current as f64),
        human_size(total as f64)
    )
}

/// A failure inside a progress stream.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct JsonError {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
    pub message: String,
}

/// One line of the progress streams of build, load, pull and push (moby's
/// `jsonmessage.JSONMessage`): each member only when it says something.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct JsonMessage {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    #[serde(rename = "progressDetail", skip_serializing_if = "Option::is_none")]
    pub progress_detail: Option<serde_json::Value>,
    #[serde(rename = "errorDetail", skip_serializing_if = "Option::is_none")]
    pub error_detail: Option<JsonError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aux: Option<serde_json::Value>,
}

impl JsonMessage {
    /// Output text (`stream`).
    pub fn text(s: impl Into<String>) -> Self {
        JsonMessage {
            stream: Some(s.into()),
            ..Self::default()
        }
    }

    /// A status line, about one layer when `id` is set.
    pub fn status(id: Option<&str>, status: impl Into<String>) -> Self {
        JsonMessage {
            status: Some(status.into()),
            id: id.map(str::to_string),
            ..Self::default()
        }
    }

    /// A progress line (`Downloading`, `Extracting`, `Pushing`) with
    /// `progressDetail` for clients that draw their own bars and the bar
    /// itself for those that print `progress`.
    pub fn progress(id: &str, status: &str, current: u64, total: u64) -> Self {
        JsonMessage {
            status: Some(status.to_string()),
            id: Some(id.to_string()),
            progress: Some(progress_bar(current, total)),
            progress_detail: Some(serde_json::json!({"current": current, "total": total})),
            ..Self::default()
        }
    }

    /// The error that ends the stream, with its code when it has one.
    pub fn failure(message: impl Into<String>, code: Option<i64>) -> Self {
        let message = message.into();
        JsonMessage {
            error: Some(message.clone()),
            error_detail: Some(JsonError { code, message }),
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod progress_tests {
    use super::*;

    #[test]
    fn sizes_and_bars_as_docker_prints_them() {
        assert_eq!(human_size(512.0), "512B");
        assert_eq!(human_size(1_048_576.0), "1.049MB");
        assert_eq!(human_size(32_300_000.0), "32.3MB");
        assert_eq!(human_size(200_000_000.0), "200MB");
        let half = progress_bar(50, 100);
        assert!(
            half.starts_with(&format!("[{}>{}]", "=".repeat(25), " ".repeat(24))),
            "{half}"
        );
        assert!(half.ends_with("50B/100B"), "{half}");
        assert!(progress_bar(100, 100).starts_with(&format!("[{}]", "=".repeat(50))));
    }
}
