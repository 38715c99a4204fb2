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
