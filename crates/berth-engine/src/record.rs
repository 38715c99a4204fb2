//! What the engine keeps of a container, on disk and in memory.

use berth_api::{ContainerConfig, EndpointSettings, HostConfig};
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
    pub endpoints: std::collections::BTreeMap<String, crate::endpoints::EndpointState>,
    /// The healthcheck's results, when the container has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<crate::health::Health>,
}

/// What happens to a container. `State::apply` is the one place its status
/// and the fields that go with it change.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// A user's start: restart policies apply to it again.
    StartRequested,
    /// The process runs.
    Started {
        pid: i32,
        at: String,
    },
    /// The start failed before the process ran; `exit_code` is Docker's
    /// status for that (127 not found, 126 not executable, 128 else).
    StartFailed {
        error: String,
        exit_code: i32,
    },
    /// The process ended.
    Exited {
        exit_code: i32,
        oom_killed: bool,
        finished_at: String,
    },
    /// The restart policy starts it again after a delay.
    Restarting,
    /// A pending restart that will not happen (a stop in between).
    RestartCancelled,
    Paused,
    Unpaused,
    /// A user's stop or kill: restart policies leave it down.
    StopRequested,
    Removing,
    /// After a daemon restart, its shim reports the process alive.
    Restored {
        pid: Option<i32>,
        paused: bool,
        at: String,
    },
}

/// A transition the container's status does not allow.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("a {from} container cannot take {what:?}")]
pub struct BadTransition {
    pub from: &'static str,
    pub what: Transition,
}

impl State {
    pub fn apply(&mut self, t: Transition) -> Result<(), BadTransition> {
        use Status as S;
        use Transition as T;
        let allowed = match (&t, self.status) {
            (T::StartRequested | T::StopRequested, _) => true,
            (T::Started { .. }, s) => !matches!(s, S::Removing | S::Dead),
            (T::StartFailed { .. }, s) => s != S::Removing,
            (T::Exited { .. }, s) => s.is_running(),
            (T::Restarting, s) => s == S::Exited,
            (T::RestartCancelled, s) => s == S::Restarting,
            (T::Paused, s) => s == S::Running,
            (T::Unpaused, s) => s == S::Paused,
            (T::Removing, s) => s != S::Removing,
            (T::Restored { .. }, s) => s.is_running() || s == S::Created,
        };
        if !allowed {
            return Err(BadTransition {
                from: self.status.as_str(),
                what: t,
            });
        }
        match t {
            T::StartRequested => self.manually_stopped = false,
            T::StopRequested => self.manually_stopped = true,
            T::Started { pid, at } => {
                self.status = S::Running;
                self.pid = pid;
                self.exit_code = 0;
                self.oom_killed = false;
                self.error.clear();
                self.started_at = Some(at);
            }
            T::StartFailed { error, exit_code } => {
                self.error = error;
                self.exit_code = exit_code;
                // A container that never ran stays created, as dockerd's.
                if self.status != S::Exited {
                    self.status = match self.started_at {
                        Some(_) => S::Exited,
                        None => S::Created,
                    };
                }
            }
            T::Exited {
                exit_code,
                oom_killed,
                finished_at,
            } => {
                // Ten seconds up counts as having run: on-failure's retries start over.
                if since(&self.started_at) >= 10 {
                    self.failure_count = 0;
                }
                self.status = S::Exited;
                self.exit_code = exit_code;
                self.oom_killed = oom_killed;
                self.pid = 0;
                self.finished_at = Some(finished_at);
            }
            T::Restarting => {
                self.failure_count += 1;
                self.restart_count += 1;
                self.status = S::Restarting;
            }
            T::RestartCancelled => self.status = S::Exited,
            T::Paused => self.status = S::Paused,
            T::Unpaused => self.status = S::Running,
            T::Removing => self.status = S::Removing,
            T::Restored { pid, paused, at } => {
                self.status = if paused { S::Paused } else { S::Running };
                self.pid = pid.unwrap_or(self.pid);
                self.started_at.get_or_insert(at);
            }
        }
        Ok(())
    }

    /// Whether the restart policy starts an exited container again.
    pub fn should_restart(&self, policy: &berth_api::RestartPolicy) -> bool {
        if self.status != Status::Exited || self.manually_stopped {
            return false;
        }
        match policy.name.as_str() {
            "always" | "unless-stopped" => true,
            "on-failure" => {
                self.exit_code != 0
                    && (policy.maximum_retry_count == 0
                        || (self.failure_count as i64) < policy.maximum_retry_count)
            }
            _ => false,
        }
    }
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
    #[serde(default, deserialize_with = "lenient_endpoints")]
    pub endpoint_settings: std::collections::BTreeMap<String, EndpointSettings>,
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

/// Records written before these settings were typed kept what a client
/// sent; one that does not fit the type now is read as empty rather than
/// losing its container.
fn lenient_endpoints<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<std::collections::BTreeMap<String, EndpointSettings>, D::Error> {
    let raw: std::collections::BTreeMap<String, serde_json::Value> =
        Option::deserialize(d)?.unwrap_or_default();
    Ok(raw
        .into_iter()
        .map(|(k, v)| (k, serde_json::from_value(v).unwrap_or_default()))
        .collect())
}

/// The parts of a client's `EndpointSettings` that inspect shows as given.
pub fn endpoint_settings_as_given(v: &EndpointSettings) -> EndpointSettings {
    EndpointSettings {
        ipam_config: v.ipam_config.clone(),
        links: v.links.clone(),
        driver_opts: v.driver_opts.clone(),
        mac_address: v.mac_address.clone(),
        ..EndpointSettings::default()
    }
}

/// `Aliases` and `IPAMConfig.IPv4Address` of a client's `EndpointSettings`.
pub fn endpoint_aliases_and_ip(v: &EndpointSettings) -> (Vec<String>, Option<String>) {
    let aliases = v.aliases.clone().unwrap_or_default();
    let ip = v
        .ipam_config
        .as_ref()
        .map(|c| c.ipv4_address.clone())
        .filter(|s| !s.is_empty());
    (aliases, ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_endpoint_settings_still_read() {
        let raw = r#"{"IPAMConfig": {"IPv4Address": "10.88.0.9"}, "Links": null}"#;
        let v: serde_json::Value = serde_json::from_str(raw).unwrap();
        let ok: EndpointSettings = serde_json::from_value(v).unwrap();
        assert_eq!(ok.ipam_config.unwrap().ipv4_address, "10.88.0.9");
        #[derive(serde::Deserialize)]
        struct R {
            #[serde(deserialize_with = "lenient_endpoints")]
            e: std::collections::BTreeMap<String, EndpointSettings>,
        }
        let r: R = serde_json::from_str(r#"{"e": {"n": {"DriverOpts": {"a": 1}}}}"#).unwrap();
        assert_eq!(r.e["n"], EndpointSettings::default());
    }

    #[test]
    fn durations_read_like_dockers() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(5), "5 seconds");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(600), "10 minutes");
        assert_eq!(human_duration(3600), "About an hour");
        assert_eq!(human_duration(3 * 86400), "3 days");
    }

    fn exited(code: i32) -> Transition {
        Transition::Exited {
            exit_code: code,
            oom_killed: false,
            finished_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    fn started() -> Transition {
        Transition::Started {
            pid: 42,
            at: chrono::Utc::now().to_rfc3339(),
        }
    }

    #[test]
    fn a_life_through_the_transition_function() {
        let mut st = State::default();
        assert!(
            st.apply(exited(0)).is_err(),
            "a created container cannot exit"
        );
        st.apply(started()).unwrap();
        assert_eq!((st.status, st.pid), (Status::Running, 42));
        st.apply(Transition::Paused).unwrap();
        assert!(st.apply(Transition::Paused).is_err());
        st.apply(Transition::Unpaused).unwrap();
        st.apply(exited(3)).unwrap();
        assert_eq!((st.status, st.pid, st.exit_code), (Status::Exited, 0, 3));
        assert!(st.apply(exited(4)).is_err(), "one exit per run");
        // A new start clears what the last run left.
        st.error = "old".into();
        st.apply(started()).unwrap();
        assert_eq!((st.exit_code, st.error.as_str()), (0, ""));
        st.apply(Transition::Removing).unwrap();
        assert!(st.apply(Transition::Removing).is_err());
        assert!(st.apply(started()).is_err());
    }

    #[test]
    fn a_failed_start_keeps_a_new_container_created() {
        let mut st = State::default();
        let failed = || Transition::StartFailed {
            error: "exec: \"x\": executable file not found in $PATH".into(),
            exit_code: 127,
        };
        st.apply(failed()).unwrap();
        assert_eq!((st.status, st.exit_code), (Status::Created, 127));
        st.apply(started()).unwrap();
        st.apply(exited(0)).unwrap();
        st.apply(failed()).unwrap();
        assert_eq!(st.status, Status::Exited);
    }

    #[test]
    fn restart_policies_decide_on_the_exited_state() {
        let policy = |name: &str, max: i64| berth_api::RestartPolicy {
            name: name.into(),
            maximum_retry_count: max,
        };
        let mut st = State::default();
        st.apply(started()).unwrap();
        st.apply(exited(1)).unwrap();
        assert!(st.should_restart(&policy("always", 0)));
        assert!(st.should_restart(&policy("on-failure", 2)));
        assert!(!st.should_restart(&policy("no", 0)));
        st.apply(Transition::Restarting).unwrap();
        assert_eq!((st.failure_count, st.restart_count), (1, 1));
        // A stop between runs cancels the restart and keeps it down.
        st.apply(Transition::StopRequested).unwrap();
        st.apply(Transition::RestartCancelled).unwrap();
        assert_eq!(st.status, Status::Exited);
        assert!(!st.should_restart(&policy("always", 0)));
        st.apply(Transition::StartRequested).unwrap();
        st.apply(started()).unwrap();
        st.apply(exited(1)).unwrap();
        st.apply(Transition::Restarting).unwrap();
        st.apply(started()).unwrap();
        st.apply(exited(1)).unwrap();
        assert_eq!(st.failure_count, 2);
        assert!(
            !st.should_restart(&policy("on-failure", 2)),
            "retries used up"
        );
        st.exit_code = 0;
        assert!(!st.should_restart(&policy("on-failure", 0)), "a clean exit");
    }
}
