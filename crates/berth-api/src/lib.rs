//! Docker Engine API types (Docker's field names) and version rules. No I/O.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The API version berthd speaks, announced by `/_ping`.
/// Docker's framing of a container's output on one connection without a TTY.
pub mod stream {
    pub const STDIN: u8 = 0;
    pub const STDOUT: u8 = 1;
    pub const STDERR: u8 = 2;

    /// A frame's header: stream type, three zero bytes, big-endian size.
    pub fn frame_header(stream: u8, len: usize) -> [u8; 8] {
        let n = (len as u32).to_be_bytes();
        [stream, 0, 0, 0, n[0], n[1], n[2], n[3]]
    }

    #[cfg(test)]
    #[test]
    fn frame_header_is_dockers() {
        assert_eq!(frame_header(STDERR, 258), [2, 0, 0, 0, 0, 0, 1, 2]);
    }
}

/// This machine's architecture as Docker and OCI name it.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

pub const API_VERSION: &str = "1.45";
/// The oldest version a client may ask for.
pub const MIN_API_VERSION: &str = "1.24";

/// Splits `/v1.43/containers/json` into `(Some("1.43"), "/containers/json")`.
pub fn split_version(path: &str) -> (Option<&str>, &str) {
    if let Some(rest) = path.strip_prefix("/v") {
        let end = rest.find('/').unwrap_or(rest.len());
        let ver = &rest[..end];
        if !ver.is_empty() && ver.chars().all(|c| c.is_ascii_digit() || c == '.') {
            let tail = &rest[end..];
            return (Some(ver), if tail.is_empty() { "/" } else { tail });
        }
    }
    (None, path)
}

/// Compares dotted versions numerically: "1.9" < "1.10".
pub fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let parse = |s: &str| -> Vec<u64> { s.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    parse(a).cmp(&parse(b))
}

/// `POST /containers/create` body: Docker's `ContainerConfig` plus `HostConfig`.
/// Serialised (in inspect) as dockerd does: `omitempty` fields left out when
/// empty, the others always present.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerConfig {
    pub hostname: String,
    pub domainname: String,
    pub user: String,
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    #[serde(skip_serializing_if = "is_empty_map")]
    pub exposed_ports: Option<HashMap<String, serde_json::Value>>,
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
    pub env: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub args_escaped: bool,
    pub image: String,
    pub volumes: Option<HashMap<String, serde_json::Value>>,
    pub working_dir: String,
    pub entrypoint: Option<Vec<String>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub network_disabled: bool,
    /// Deprecated in API 1.44 for `EndpointsConfig.<net>.MacAddress`; still sent by old clients.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mac_address: String,
    #[serde(skip_serializing_if = "is_empty_list")]
    pub on_build: Option<Vec<String>>,
    pub labels: Option<HashMap<String, String>>,
    #[serde(skip_serializing_if = "is_empty_str")]
    pub stop_signal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<i64>,
    #[serde(skip_serializing_if = "is_empty_list")]
    pub shell: Option<Vec<String>>,
}

fn is_empty_map<V>(m: &Option<HashMap<String, V>>) -> bool {
    m.as_ref().is_none_or(|m| m.is_empty())
}

fn is_empty_list<T>(l: &Option<Vec<T>>) -> bool {
    l.as_ref().is_none_or(|l| l.is_empty())
}

fn is_empty_str(s: &Option<String>) -> bool {
    s.as_ref().is_none_or(|s| s.is_empty())
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateRequest {
    #[serde(flatten)]
    pub config: ContainerConfig,
    pub host_config: HostConfig,
    /// `EndpointsConfig.<network>.Aliases` / `IPAMConfig` (`--network-alias`, `--ip`).
    pub networking_config: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct RestartPolicy {
    pub name: String,
    pub maximum_retry_count: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct LogConfig {
    #[serde(rename = "Type")]
    pub kind: String,
    pub config: Option<HashMap<String, String>>,
}

/// Docker's `HostConfig` with its `Resources`, every field dockerd keeps:
/// what a client sends comes back in inspect (nulls and empty lists as
/// sent), with dockerd's defaults filled in at create.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HostConfig {
    pub binds: Option<Vec<String>>,
    #[serde(rename = "ContainerIDFile")]
    pub container_id_file: String,
    pub log_config: LogConfig,
    pub network_mode: String,
    pub port_bindings: Option<HashMap<String, Option<Vec<PortBinding>>>>,
    pub restart_policy: RestartPolicy,
    pub auto_remove: bool,
    pub volume_driver: String,
    pub volumes_from: Option<Vec<String>>,
    /// Height, width.
    pub console_size: [u32; 2],
    #[serde(skip_serializing_if = "is_empty_map")]
    pub annotations: Option<HashMap<String, String>>,
    pub cap_add: Option<Vec<String>>,
    pub cap_drop: Option<Vec<String>>,
    pub cgroupns_mode: String,
    pub dns: Option<Vec<String>>,
    pub dns_options: Option<Vec<String>>,
    pub dns_search: Option<Vec<String>>,
    pub extra_hosts: Option<Vec<String>>,
    pub group_add: Option<Vec<String>>,
    pub ipc_mode: String,
    pub cgroup: String,
    pub links: Option<Vec<String>>,
    pub oom_score_adj: i64,
    pub pid_mode: String,
    pub privileged: bool,
    pub publish_all_ports: bool,
    pub readonly_rootfs: bool,
    pub security_opt: Option<Vec<String>>,
    #[serde(skip_serializing_if = "is_empty_map")]
    pub storage_opt: Option<HashMap<String, String>>,
    #[serde(skip_serializing_if = "is_empty_map")]
    pub tmpfs: Option<HashMap<String, String>>,
    #[serde(rename = "UTSMode")]
    pub uts_mode: String,
    pub userns_mode: String,
    pub shm_size: i64,
    #[serde(skip_serializing_if = "is_empty_map")]
    pub sysctls: Option<HashMap<String, String>>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub runtime: String,
    pub isolation: String,
    pub cpu_shares: i64,
    pub memory: i64,
    pub nano_cpus: i64,
    pub cgroup_parent: String,
    pub blkio_weight: u16,
    pub blkio_weight_device: Option<Vec<WeightDevice>>,
    pub blkio_device_read_bps: Option<Vec<ThrottleDevice>>,
    pub blkio_device_write_bps: Option<Vec<ThrottleDevice>>,
    #[serde(rename = "BlkioDeviceReadIOps")]
    pub blkio_device_read_iops: Option<Vec<ThrottleDevice>>,
    #[serde(rename = "BlkioDeviceWriteIOps")]
    pub blkio_device_write_iops: Option<Vec<ThrottleDevice>>,
    pub cpu_period: i64,
    pub cpu_quota: i64,
    pub cpu_realtime_period: i64,
    pub cpu_realtime_runtime: i64,
    pub cpuset_cpus: String,
    pub cpuset_mems: String,
    pub devices: Option<Vec<DeviceMapping>>,
    pub device_cgroup_rules: Option<Vec<String>>,
    pub device_requests: Option<Vec<serde_json::Value>>,
    pub memory_reservation: i64,
    pub memory_swap: i64,
    pub memory_swappiness: Option<i64>,
    pub oom_kill_disable: Option<bool>,
    pub pids_limit: Option<i64>,
    pub ulimits: Option<Vec<Ulimit>>,
    pub cpu_count: i64,
    pub cpu_percent: i64,
    #[serde(rename = "IOMaximumIOps")]
    pub io_maximum_iops: u64,
    #[serde(rename = "IOMaximumBandwidth")]
    pub io_maximum_bandwidth: u64,
    #[serde(skip_serializing_if = "is_empty_list")]
    pub mounts: Option<Vec<MountRequest>>,
    pub masked_paths: Option<Vec<String>>,
    pub readonly_paths: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
}

/// `--blkio-weight-device PATH:WEIGHT`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct WeightDevice {
    pub path: String,
    pub weight: u16,
}

/// `--device-read-bps PATH:RATE` and its siblings.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ThrottleDevice {
    pub path: String,
    pub rate: u64,
}

/// `--device HOST[:CONTAINER[:PERMS]]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeviceMapping {
    pub path_on_host: String,
    pub path_in_container: String,
    pub cgroup_permissions: String,
}

/// `--ulimit name=soft[:hard]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Ulimit {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

/// One host side of a published port (`HostConfig.PortBindings`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct PortBinding {
    pub host_ip: String,
    pub host_port: String,
}

/// One entry of `HostConfig.Mounts` (`--mount`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct MountRequest {
    #[serde(rename = "Type")]
    pub kind: String,
    pub source: String,
    pub target: String,
    pub read_only: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_options: Option<VolumeOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tmpfs_options: Option<TmpfsOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind_options: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct VolumeOptions {
    pub no_copy: bool,
    pub labels: Option<HashMap<String, String>>,
    pub driver_config: Option<DriverConfig>,
    /// `volume-subpath=…`: mount this directory of the volume (API 1.45).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub subpath: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct DriverConfig {
    pub name: String,
    pub options: Option<HashMap<String, String>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct TmpfsOptions {
    pub size_bytes: i64,
    pub mode: u32,
}

/// Go's nil maps and slices arrive as `null`: read as empty.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A volume as `/volumes` and `/system/df` answer it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Volume {
    pub name: String,
    pub driver: String,
    pub mountpoint: String,
    #[serde(default)]
    pub created_at: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: std::collections::BTreeMap<String, String>,
    pub scope: String,
    /// `null` when the volume was made without options, as dockerd answers.
    #[serde(default)]
    pub options: Option<std::collections::BTreeMap<String, String>>,
    /// Only in `/system/df`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_data: Option<VolumeUsage>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct VolumeUsage {
    pub size: i64,
    pub ref_count: i64,
}

/// `GET /volumes`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct VolumeList {
    #[serde(default, deserialize_with = "null_as_default")]
    pub volumes: Vec<Volume>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub warnings: Vec<String>,
}

/// `POST /volumes/prune` (and the other prunes' shape by their own key).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct VolumePruneReport {
    #[serde(default, deserialize_with = "null_as_default")]
    pub volumes_deleted: Vec<String>,
    pub space_reclaimed: u64,
}

/// A network as `/networks` answers it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkResource {
    pub name: String,
    pub id: String,
    pub created: String,
    pub scope: String,
    pub driver: String,
    #[serde(rename = "EnableIPv6", default)]
    pub enable_ipv6: bool,
    #[serde(rename = "IPAM", default)]
    pub ipam: Ipam,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub attachable: bool,
    #[serde(default)]
    pub ingress: bool,
    #[serde(default)]
    pub config_from: ConfigReference,
    #[serde(default)]
    pub config_only: bool,
    /// Only in inspect: the containers on it, by id.
    #[serde(default, deserialize_with = "null_as_default")]
    pub containers: std::collections::BTreeMap<String, NetworkContainer>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub options: std::collections::BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Ipam {
    pub driver: String,
    pub options: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub config: Vec<IpamConfig>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct IpamConfig {
    #[serde(default)]
    pub subnet: String,
    #[serde(default)]
    pub gateway: String,
    #[serde(rename = "IPRange", default, skip_serializing_if = "String::is_empty")]
    pub ip_range: String,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub auxiliary_addresses: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ConfigReference {
    pub network: String,
}

/// A container's endpoint as network inspect lists it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkContainer {
    pub name: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    pub mac_address: String,
    #[serde(rename = "IPv4Address")]
    pub ipv4_address: String,
    #[serde(rename = "IPv6Address")]
    pub ipv6_address: String,
}

/// `POST /networks/create`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkCreateResponse {
    pub id: String,
    #[serde(default)]
    pub warning: String,
}

/// An image as `GET /images/json` lists it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ImageSummary {
    pub id: String,
    #[serde(default)]
    pub parent_id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub repo_tags: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub repo_digests: Vec<String>,
    pub created: i64,
    pub size: i64,
    #[serde(default)]
    pub shared_size: i64,
    /// Dropped by API 1.44, still read by older clients.
    #[serde(default)]
    pub virtual_size: i64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: HashMap<String, String>,
    #[serde(default)]
    pub containers: i64,
}

/// One row of `GET /images/{name}/history`, newest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct HistoryItem {
    /// `<missing>` for a step whose image is not here.
    pub id: String,
    pub created: i64,
    pub created_by: String,
    /// `null` for steps no image here is.
    pub tags: Option<Vec<String>>,
    pub size: i64,
    pub comment: String,
}

/// One item of an image delete or prune: a tag removed or an image deleted.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ImageDeleteItem {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub untagged: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<String>,
}

/// Body of `POST /volumes/create`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct VolumeCreateRequest {
    pub name: String,
    pub driver: String,
    pub driver_opts: Option<HashMap<String, String>>,
    pub labels: Option<HashMap<String, String>>,
}

/// Body of `POST /containers/{id}/exec`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ExecConfig {
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    pub detach_keys: String,
    pub tty: bool,
    pub env: Option<Vec<String>>,
    pub cmd: Vec<String>,
    pub privileged: bool,
    pub user: String,
    pub working_dir: String,
    pub console_size: Option<Vec<u16>>,
}

/// Body of `POST /exec/{id}/start`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ExecStart {
    pub detach: bool,
    pub tty: bool,
    pub console_size: Option<Vec<u16>>,
}

/// Image config as OCI and Docker store it (the `config` member of an image config blob).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ImageRunConfig {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<HashMap<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volumes: Option<HashMap<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub working_dir: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<HashMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
}

/// An image config blob (OCI `application/vnd.oci.image.config.v1+json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ImageConfigBlob {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    pub architecture: String,
    pub os: String,
    pub config: ImageRunConfig,
    pub rootfs: RootFs,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct History {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

/// The error body every failing endpoint returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub message: String,
}

/// Parses Docker's `filters` query parameter: `{"label":{"a=b":true}}` or the old
/// `{"label":["a=b"]}` form.
/// Rust's OS error text (`No space left on device (os error 28)`) as Go
/// prints errno values (`no space left on device`), which is what Docker's
/// clients and users see in dockerd's messages.
pub fn go_error_text(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(i) = rest.find(" (os error ") {
        let Some(close) = rest[i..].find(')') else {
            break;
        };
        let head = &rest[..i];
        let start = head.rfind(": ").map(|p| p + 2).unwrap_or(0);
        out.push_str(&head[..start]);
        let mut chars = head[start..].chars();
        if let Some(c) = chars.next() {
            out.extend(c.to_lowercase());
            out.push_str(chars.as_str());
        }
        rest = &rest[i + close + 1..];
    }
    out.push_str(rest);
    out
}

pub fn parse_filters(raw: &str) -> Result<HashMap<String, Vec<String>>, String> {
    if raw.is_empty() {
        return Ok(HashMap::new());
    }
    let v: serde_json::Value =
        serde_json::from_str(raw).map_err(|e| format!("invalid filter: {e}"))?;
    let obj = v.as_object().ok_or("invalid filter: not an object")?;
    let mut out = HashMap::new();
    for (k, v) in obj {
        let vals: Vec<String> = match v {
            serde_json::Value::Object(m) => m.keys().cloned().collect(),
            serde_json::Value::Array(a) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            _ => return Err(format!("invalid filter: {k}")),
        };
        out.insert(k.clone(), vals);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn go_style_os_errors() {
        use super::go_error_text as g;
        assert_eq!(
            g("No space left on device (os error 28)"),
            "no space left on device"
        );
        assert_eq!(
            g("writing blob: No space left on device (os error 28)"),
            "writing blob: no space left on device"
        );
        assert_eq!(
            g("a: Permission denied (os error 13); b"),
            "a: permission denied; b"
        );
        assert_eq!(g("No such container: x"), "No such container: x");
    }

    use super::*;

    #[test]
    fn volumes_read_dockerds_nulls() {
        let v: VolumeList = serde_json::from_str(
            r#"{"Volumes":[{"Name":"v","Driver":"local","Mountpoint":"/m","Labels":null,"Scope":"local","Options":null}],"Warnings":null}"#,
        )
        .unwrap();
        assert!(v.volumes[0].labels.is_empty() && v.warnings.is_empty());
        let back = serde_json::to_value(&v.volumes[0]).unwrap();
        assert_eq!(back["Options"], serde_json::Value::Null);
        assert!(back.get("UsageData").is_none());
    }

    #[test]
    fn version_prefix_is_split() {
        assert_eq!(
            split_version("/v1.43/containers/json"),
            (Some("1.43"), "/containers/json")
        );
        assert_eq!(split_version("/_ping"), (None, "/_ping"));
        assert_eq!(split_version("/volumes"), (None, "/volumes"));
        assert_eq!(split_version("/v1.45"), (Some("1.45"), "/"));
    }

    #[test]
    fn versions_compare_numerically() {
        assert!(version_cmp("1.9", "1.10").is_lt());
        assert!(version_cmp("1.45", "1.45").is_eq());
    }

    #[test]
    fn filters_both_forms() {
        let f = parse_filters(r#"{"label":{"a=b":true},"status":["exited"]}"#).unwrap();
        assert_eq!(f["label"], vec!["a=b"]);
        assert_eq!(f["status"], vec!["exited"]);
        assert!(parse_filters("{bad").is_err());
    }

    #[test]
    fn create_request_parses_docker_body() {
        let body = r#"{"Image":"busybox","Cmd":["true"],"Tty":true,
            "HostConfig":{"Memory":1048576,"PidsLimit":10,"RestartPolicy":{"Name":"on-failure","MaximumRetryCount":3}}}"#;
        let r: CreateRequest = serde_json::from_str(body).unwrap();
        assert_eq!(r.config.image, "busybox");
        assert!(r.config.tty);
        assert_eq!(r.host_config.memory, 1048576);
        assert_eq!(r.host_config.pids_limit, Some(10));
        assert_eq!(r.host_config.restart_policy.maximum_retry_count, 3);
    }
}
