//! What the engine keeps of a container, on disk and in memory.

use berth_api::{ContainerConfig, HostConfig};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Removing => "removing",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }
    pub fn is_running(self) -> bool {
        matches!(self, Status::Running | Status::Paused | Status::Restarting)
    }
}

/// Mutable state, persisted as `state.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    pub status: Status,
    pub pid: i32,
    pub exit_code: i32,
    pub oom_killed: bool,
    pub error: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub restart_count: u32,
    /// Set by `stop`/`kill` so that `unless-stopped` and `always` stay down.
    pub manually_stopped: bool,
    /// Restart-policy retries since the container last ran long enough.
    pub failure_count: u32,
    /// Its endpoints on bridge networks while it runs, by network name.
    #[serde(default)]
    pub endpoints: std::collections::BTreeMap<String, crate::net::EndpointState>,
    /// The healthcheck's results, when the container has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<crate::health::Health>,
}

/// Settings fixed at create time, persisted as `config.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub name: String,
    pub created: String,
    /// The image as the user named it.
    pub image: String,
    pub image_id: String,
    pub config: ContainerConfig,
    pub host_config: HostConfig,
    pub path: String,
    pub args: Vec<String>,
    pub log_path: String,
    /// The image's layer chain (chain ids, base first), so that the container
    /// keeps its filesystem when `rmi -f` removes a stopped container's image.
    #[serde(default)]
    pub layers: Vec<String>,
    /// Volumes, binds and tmpfs mounts, resolved at create time.
    #[serde(default)]
    pub mounts: Vec<crate::volumes::MountPoint>,
    /// Extra DNS names on its network (`--network-alias`).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// The address asked for with `--ip`.
    #[serde(default)]
    pub requested_ip: Option<String>,
    /// The MAC address asked for with `--mac-address`.
    #[serde(default)]
    pub mac_address: Option<String>,
    /// Networks joined with `network connect`, beyond `NetworkMode`'s.
    #[serde(default)]
    pub extra_networks: Vec<ExtraNetwork>,
    /// Per network name, the endpoint settings as the client gave them
    /// (`IPAMConfig`, `Links`, `DriverOpts`, `MacAddress`), for inspect.
    #[serde(default)]
    pub endpoint_settings: std::collections::BTreeMap<String, serde_json::Value>,
    /// Legacy links on the default bridge (`--link`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<crate::links::Link>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ExtraNetwork {
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub ip: Option<String>,
}

pub use berth_build::human_duration;

fn since(ts: &Option<String>) -> i64 {
    ts.as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds())
        .unwrap_or(0)
}

/// The `Status` column of `docker ps`.
pub fn status_text(st: &State) -> String {
    let health = match st.health.as_ref().map(|h| h.status.as_str()) {
        Some("starting") => " (health: starting)".to_string(),
        Some(s) if st.status == Status::Running => format!(" ({s})"),
        _ => String::new(),
    };
    let text = status_base(st);
    if st.status == Status::Running {
        text + &health
    } else {
        text
    }
}

fn status_base(st: &State) -> String {
    match st.status {
        Status::Created => "Created".into(),
        Status::Running => format!("Up {}", human_duration(since(&st.started_at))),
        Status::Paused => format!("Up {} (Paused)", human_duration(since(&st.started_at))),
        Status::Restarting => format!(
            "Restarting ({}) {} ago",
            st.exit_code,
            human_duration(since(&st.finished_at))
        ),
        Status::Removing => "Removal In Progress".into(),
        Status::Exited => format!(
            "Exited ({}) {} ago",
            st.exit_code,
            human_duration(since(&st.finished_at))
        ),
        Status::Dead => "Dead".into(),
    }
}

/// The parts of a client's `EndpointSettings` that inspect shows as given.
pub fn endpoint_settings_as_given(v: &serde_json::Value) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for k in ["IPAMConfig", "Links", "DriverOpts", "MacAddress"] {
        if let Some(x) = v.get(k).filter(|x| !x.is_null()) {
            out.insert(k.to_string(), x.clone());
        }
    }
    serde_json::Value::Object(out)
}

/// `Aliases` and `IPAMConfig.IPv4Address` of a client's `EndpointSettings`.
pub fn endpoint_aliases_and_ip(v: &serde_json::Value) -> (Vec<String>, Option<String>) {
    let aliases = v["Aliases"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    let ip = v["IPAMConfig"]["IPv4Address"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    (aliases, ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_dockers() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(5), "5 seconds");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(600), "10 minutes");
        assert_eq!(human_duration(3600), "About an hour");
        assert_eq!(human_duration(3 * 86400), "3 days");
    }
}
