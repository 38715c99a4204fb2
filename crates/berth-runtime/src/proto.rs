//! The shim's wire protocol: one JSON request line per connection, one JSON
//! response line; `Attach` and `Exec` then carry the raw stream on that connection.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op")]
pub enum Request {
    /// Start the created container's process.
    Start,
    /// Stream output (Docker's 8-byte frames without a TTY) and take stdin.
    Attach {
        stdin: bool,
        stdout: bool,
        stderr: bool,
    },
    Kill {
        signal: i32,
        all: bool,
    },
    Resize {
        exec_id: Option<String>,
        height: u16,
        width: u16,
    },
    /// Answered when the container's process has exited.
    Wait,
    State,
    Pause,
    Resume,
    Exec {
        exec_id: String,
        process: Box<crate::oci::Process>,
        stdin: bool,
        detach: bool,
    },
    /// Answered when the exec process has exited.
    ExecWait {
        exec_id: String,
    },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ExitStatus {
    pub exit_code: i32,
    pub oom_killed: bool,
    pub finished_at: String,
}

/// Why a process could not be started, as the shim tells berthd: the
/// kind decides the exit status Docker gives such a process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    #[default]
    Other,
    /// The command is not in `$PATH` or its path does not exist.
    NotFound,
    /// The command exists but cannot be executed.
    PermissionDenied,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Other => "other",
            ErrorKind::NotFound => "not-found",
            ErrorKind::PermissionDenied => "permission-denied",
        }
    }

    /// The kind a word names; anything else is `Other`.
    pub fn parse(word: &str) -> Self {
        match word {
            "not-found" => ErrorKind::NotFound,
            "permission-denied" => ErrorKind::PermissionDenied,
            _ => ErrorKind::Other,
        }
    }

    /// Docker's exit status for a process that could not be started.
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::NotFound => 127,
            ErrorKind::PermissionDenied => 126,
            ErrorKind::Other => 128,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// With `error`: why, when the shim knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ErrorKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit: Option<ExitStatus>,
}

impl Response {
    pub fn ok() -> Self {
        Self {
            ok: true,
            ..Default::default()
        }
    }
    pub fn err(msg: impl Into<String>) -> Self {
        Self {
            ok: false,
            error: Some(msg.into()),
            ..Default::default()
        }
    }

    pub fn err_kind(kind: ErrorKind, msg: impl Into<String>) -> Self {
        Self {
            kind: Some(kind),
            ..Self::err(msg)
        }
    }
}

/// What berthd hands a shim in `<state>/shim.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShimConfig {
    pub id: String,
    pub bundle: String,
    /// The runtime's directory in the exec root; the seccomp program cache
    /// defaults to its sibling `seccomp`.
    pub runtime_root: String,
    pub log_path: String,
    pub log_max_size: u64,
    pub log_max_files: u32,
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
    pub height: u16,
    pub width: u16,
    pub cgroup_path: String,
    /// The shim's socket. Unix socket paths are capped at 108 bytes, so sockets
    /// live in a short directory rather than beside the state.
    pub socket: String,
    /// Where compiled seccomp programs are kept, named by the profile's sha256.
    #[serde(default)]
    pub seccomp_cache: String,
    /// How long an idle shim waits before it hands the container to the
    /// monitor (None: the default; 0: never).
    #[serde(default)]
    pub slim_after_ms: Option<u64>,
    /// What an idle shim execs: berth-monitor (None: the shim itself).
    #[serde(default)]
    pub monitor: Option<String>,
}

pub use berth_api::stream::{frame_header, STDERR, STDOUT};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_round_trip_and_pick_dockers_codes() {
        let r = Response::err_kind(ErrorKind::NotFound, "exec: \"x\": not found");
        let back: Response = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back.kind, Some(ErrorKind::NotFound));
        // A shim that knows no kinds answers without one.
        let old: Response = serde_json::from_str(r#"{"ok":false,"error":"x"}"#).unwrap();
        assert_eq!(old.kind, None);
        for k in [
            ErrorKind::Other,
            ErrorKind::NotFound,
            ErrorKind::PermissionDenied,
        ] {
            assert_eq!(ErrorKind::parse(k.as_str()), k);
        }
        assert_eq!(ErrorKind::NotFound.exit_code(), 127);
        assert_eq!(ErrorKind::PermissionDenied.exit_code(), 126);
        assert_eq!(ErrorKind::parse("???"), ErrorKind::Other);
    }

    #[test]
    fn requests_round_trip() {
        let r = Request::Kill {
            signal: 9,
            all: false,
        };
        let s = serde_json::to_string(&r).unwrap();
        assert_eq!(s, r#"{"op":"Kill","signal":9,"all":false}"#);
        assert!(matches!(
            serde_json::from_str::<Request>(r#"{"op":"Wait"}"#).unwrap(),
            Request::Wait
        ));
    }
}
