//! Manifests and indexes, OCI and Docker schema 2, and the platform pick.

use serde::{Deserialize, Serialize};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_FOREIGN_LAYER: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// What a pull accepts, most specific first.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
}

impl Platform {
    /// `linux/amd64`, `linux/arm64/v8`: what `--platform` takes.
    pub fn parse(s: &str) -> Option<Platform> {
        let mut parts = s.split('/');
        let os = parts.next().filter(|p| !p.is_empty())?.to_ascii_lowercase();
        let arch = normalize_arch(parts.next().unwrap_or(""));
        let variant = parts.next().map(str::to_string);
        if parts.next().is_some() {
            return None;
        }
        Some(Platform {
            architecture: if arch.is_empty() {
                crate::host_arch().to_string()
            } else {
                arch
            },
            os,
            variant,
            os_version: None,
        })
    }

    pub fn host() -> Platform {
        Platform {
            architecture: crate::host_arch().to_string(),
            os: "linux".into(),
            variant: None,
            os_version: None,
        }
    }

    fn matches(&self, want: &Platform) -> bool {
        self.os == want.os
            && normalize_arch(&self.architecture) == want.architecture
            && want.variant.as_ref().is_none_or(|v| {
                self.variant
                    .as_deref()
                    .unwrap_or(default_variant(&want.architecture))
                    == v
            })
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

fn normalize_arch(a: &str) -> String {
    match a.to_ascii_lowercase().as_str() {
        "x86_64" | "x86-64" => "amd64".into(),
        "aarch64" => "arm64".into(),
        o => o.into(),
    }
}

fn default_variant(arch: &str) -> &'static str {
    match arch {
        "arm64" => "v8",
        "arm" => "v7",
        _ => "",
    }
}

/// An image manifest (OCI or Docker schema 2: the same shape).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// An index or manifest list.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: String,
    pub manifests: Vec<Descriptor>,
}

/// A manifest as fetched: an index to choose from, or an image.
#[derive(Debug, Clone)]
pub enum Fetched {
    Index(Index),
    Image(ImageManifest),
}

/// Reads a manifest by its media type (the header's, else the body's own
/// `mediaType`, else its shape).
pub fn parse(bytes: &[u8], header_type: &str) -> Result<Fetched, crate::DistError> {
    let v: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| crate::DistError::Invalid(format!("manifest: {e}")))?;
    let body_type = v["mediaType"].as_str().unwrap_or("");
    let kind = [body_type, header_type]
        .into_iter()
        .find(|t| [OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST].contains(t))
        .unwrap_or(if v.get("manifests").is_some() {
            OCI_INDEX
        } else {
            OCI_MANIFEST
        });
    if v["schemaVersion"].as_u64() == Some(1) {
        return Err(crate::DistError::Invalid(
            "schema 1 manifests are not supported; push the image again with a current client"
                .into(),
        ));
    }
    let bad = |e: serde_json::Error| crate::DistError::Invalid(format!("manifest: {e}"));
    Ok(match kind {
        OCI_INDEX | DOCKER_LIST => Fetched::Index(serde_json::from_value(v).map_err(bad)?),
        _ => Fetched::Image(serde_json::from_value(v).map_err(bad)?),
    })
}

impl Index {
    /// The image manifest for `want`, as Docker picks: the first entry of
    /// that os and architecture (and variant, when asked for one).
    pub fn pick(&self, want: &Platform) -> Option<&Descriptor> {
        self.manifests
            .iter()
            .filter(|d| d.media_type != OCI_INDEX && d.media_type != DOCKER_LIST)
            .find(|d| d.platform.as_ref().is_some_and(|p| p.matches(want)))
    }

    pub fn platforms(&self) -> Vec<Platform> {
        self.manifests
            .iter()
            .filter_map(|d| d.platform.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(os: &str, arch: &str, variant: Option<&str>, n: u8) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: format!("sha256:{}", hex::encode([n; 32])),
            size: 1,
            platform: Some(Platform {
                os: os.into(),
                architecture: arch.into(),
                variant: variant.map(Into::into),
                os_version: None,
            }),
            urls: vec![],
        }
    }

    #[test]
    fn picks_the_platform() {
        let ix = Index {
            schema_version: 2,
            media_type: OCI_INDEX.into(),
            manifests: vec![
                desc("linux", "arm", Some("v6"), 1),
                desc("linux", "arm", Some("v7"), 2),
                desc("linux", "arm64", Some("v8"), 3),
                desc("linux", "amd64", None, 4),
                desc("windows", "amd64", None, 5),
            ],
        };
        let get = |s: &str| {
            ix.pick(&Platform::parse(s).unwrap())
                .map(|d| d.digest.clone())
        };
        assert_eq!(get("linux/amd64"), Some(ix.manifests[3].digest.clone()));
        assert_eq!(get("linux/arm/v7"), Some(ix.manifests[1].digest.clone()));
        assert_eq!(get("linux/arm64"), Some(ix.manifests[2].digest.clone()));
        assert_eq!(get("linux/aarch64"), Some(ix.manifests[2].digest.clone()));
        assert_eq!(get("linux/s390x"), None);
        assert!(Platform::parse("").is_none());
        assert!(Platform::parse("a/b/c/d").is_none());
    }

    #[test]
    fn reads_by_media_type_and_shape() {
        let m = br#"{"schemaVersion":2,"config":{"digest":"sha256:x","size":1},"layers":[]}"#;
        assert!(matches!(parse(m, "").unwrap(), Fetched::Image(_)));
        let ix = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(parse(ix, "").unwrap(), Fetched::Index(_)));
        assert!(parse(br#"{"schemaVersion":1}"#, "").is_err());
        assert!(parse(b"nope", OCI_MANIFEST).is_err());
    }
}
