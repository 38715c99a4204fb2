//! What pulls and pushes share: the daemon's registry settings, the
//! progress sink, errors as dockerd words them, `docker login` and
//! `/distribution/{name}/json`.

use crate::{Engine, EngineError, Result};
use berth_api::JsonMessage;
use berth_dist::manifest::{self, Fetched, Platform};
pub use berth_dist::AuthConfig;
use berth_dist::{DistError, Reference};

/// `--insecure-registry`, `--allow-registry`, `--max-concurrent-downloads`…
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    pub options: berth_dist::Options,
    pub max_concurrent_downloads: usize,
    pub max_concurrent_uploads: usize,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            options: berth_dist::Options::default(),
            max_concurrent_downloads: 3,
            max_concurrent_uploads: 5,
        }
    }
}

/// Where progress lines go. A client that went away stops hearing them;
/// the pull or push goes on.
#[derive(Clone)]
pub struct Sink(pub tokio::sync::mpsc::Sender<JsonMessage>);

impl Sink {
    pub async fn send(&self, m: JsonMessage) {
        let _ = self.0.send(m).await;
    }

    /// For progress that may be dropped when the client reads slowly.
    pub fn try_send(&self, m: JsonMessage) {
        let _ = self.0.try_send(m);
    }
}

/// The first 12 hex digits of a digest: a layer's id in progress lines.
pub fn short_digest(d: &str) -> String {
    let h = d.strip_prefix("sha256:").unwrap_or(d);
    h[..h.len().min(12)].to_string()
}

/// A distribution error as dockerd reports it for reference `r`.
pub(crate) fn dist_error(e: DistError, r: &Reference) -> EngineError {
    match e {
        DistError::InvalidReference(_) => EngineError::BadRequest(e.to_string()),
        DistError::NotAllowed(m) => EngineError::Forbidden(m),
        DistError::Unauthorized(m) | DistError::Denied(m) => EngineError::NotFound(format!(
            "pull access denied for {}, repository does not exist or may require 'docker login': {m}",
            r.familiar_repo()
        )),
        DistError::NotFound(m) => EngineError::NotFound(m),
        e => EngineError::Internal(e.to_string()),
    }
}

impl Engine {
    /// `docker info`'s registry part, as dockerd reports its settings.
    pub fn registry_service_config(&self) -> berth_api::RegistryServiceConfig {
        let insecure = &self.registry.options.insecure;
        let index = |name: &str, secure: bool| serde_json::json!({"Name": name, "Mirrors": [], "Secure": secure, "Official": name == "docker.io"});
        let mut index_configs = std::collections::BTreeMap::new();
        index_configs.insert("docker.io".to_string(), index("docker.io", true));
        let mut cidrs = vec!["127.0.0.0/8".to_string()];
        for e in insecure {
            if e.contains('/') {
                cidrs.push(e.clone());
            } else {
                index_configs.insert(e.clone(), index(e, false));
            }
        }
        berth_api::RegistryServiceConfig {
            index_configs,
            insecure_registry_cidrs: cidrs,
            mirrors: Vec::new(),
        }
    }

    /// `POST /auth`: checks credentials against their registry. Returns an
    /// identity token when the registry's token server gives one.
    pub async fn login(&self, creds: AuthConfig) -> Result<Option<String>> {
        let mut creds = creds;
        creds.fill_from_auth();
        self.dist.login(&creds).await.map_err(|e| match e {
            DistError::Unauthorized(m) => EngineError::Unauthorized(m),
            DistError::NotAllowed(m) => EngineError::Forbidden(m),
            e => EngineError::Internal(e.to_string()),
        })
    }

    /// `GET /distribution/{name}/json`: what the registry has under a
    /// reference, without pulling it.
    pub async fn distribution_inspect(
        &self,
        name: &str,
        auth: Option<AuthConfig>,
    ) -> Result<berth_api::DistributionInspect> {
        let r = Reference::parse(name).map_err(|e| EngineError::BadRequest(e.to_string()))?;
        let s = self
            .dist
            .session(&r.domain, &r.repo, auth, false)
            .await
            .map_err(|e| dist_error(e, &r))?;
        let (bytes, mt, digest) = s
            .manifest(r.target())
            .await
            .map_err(|e| dist_error(e, &r))?;
        let platforms = match manifest::parse(&bytes, &mt).map_err(|e| dist_error(e, &r))? {
            Fetched::Index(ix) => ix.platforms(),
            Fetched::Image(m) => {
                let cfg = s
                    .blob_bytes(&m.config.digest)
                    .await
                    .map_err(|e| dist_error(e, &r))?;
                let c: berth_api::ImageConfigBlob = serde_json::from_slice(&cfg)
                    .map_err(|e| EngineError::Internal(format!("image config: {e}")))?;
                vec![Platform {
                    architecture: c.architecture,
                    os: c.os,
                    variant: None,
                    os_version: None,
                }]
            }
        };
        Ok(berth_api::DistributionInspect {
            descriptor: berth_api::OciDescriptor {
                media_type: mt,
                digest,
                size: bytes.len() as i64,
            },
            platforms: platforms
                .into_iter()
                .map(|p| berth_api::OciPlatform {
                    architecture: p.architecture,
                    os: p.os,
                    variant: p.variant,
                    os_version: p.os_version,
                })
                .collect(),
        })
    }
}
