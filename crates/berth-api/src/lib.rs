//! Docker Engine API types (Docker's field names) and version rules. No I/O.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

mod container;
mod exec;
mod image;
mod network;
mod stats;
mod system;
mod volume;
pub use container::*;
pub use exec::*;
pub use image::*;
pub use network::*;
pub use stats::*;
pub use system::*;
pub use volume::*;

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

/// The API version berthd speaks, announced by `/_ping`.
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

pub(crate) fn is_empty_map<V>(m: &Option<HashMap<String, V>>) -> bool {
    m.as_ref().is_none_or(|m| m.is_empty())
}

pub(crate) fn is_empty_list<T>(l: &Option<Vec<T>>) -> bool {
    l.as_ref().is_none_or(|l| l.is_empty())
}

pub(crate) fn is_empty_str(s: &Option<String>) -> bool {
    s.as_ref().is_none_or(|s| s.is_empty())
}

/// Go's nil maps and slices arrive as `null`: read as empty.
pub(crate) fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The error body every failing endpoint returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub message: String,
}

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

/// Parses Docker's `filters` query parameter: `{"label":{"a=b":true}}` or the old
/// `{"label":["a=b"]}` form.
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
    fn network_settings_keep_the_default_bridge_fields_at_the_top() {
        let mut n = NetworkSettings::default();
        n.default_network.ip_address = "10.88.0.2".into();
        n.ports.insert("80/tcp".into(), None);
        let v = serde_json::to_value(&n).unwrap();
        assert_eq!(v["IPAddress"], "10.88.0.2");
        assert!(v.get("DefaultNetwork").is_none() && v["Ports"]["80/tcp"].is_null());
        let back: NetworkSettings = serde_json::from_value(v).unwrap();
        assert_eq!(back, n);
    }

    #[test]
    fn health_configs_serialise_as_dockerd_omits_zeros() {
        let h: HealthConfig =
            serde_json::from_str(r#"{"Test":["CMD","true"],"Interval":1000000,"Retries":null}"#)
                .unwrap();
        assert_eq!((h.interval, h.retries), (1_000_000, 0));
        assert_eq!(
            serde_json::to_string(&h).unwrap(),
            r#"{"Interval":1000000,"Test":["CMD","true"]}"#
        );
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
