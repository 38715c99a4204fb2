//! Image references as Docker reads them: `busybox` is
//! `docker.io/library/busybox:latest`; a first component with a `.` or a
//! `:`, or `localhost`, names a registry.

use crate::DistError;

/// Docker Hub's name in references.
pub const DOCKER_HUB: &str = "docker.io";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `docker.io`, `127.0.0.1:5000`, `ghcr.io`…
    pub domain: String,
    /// The repository path at the registry: `library/busybox`.
    pub repo: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl Reference {
    /// Parses `name[:tag][@digest]`; with neither, the tag is `latest`.
    pub fn parse(s: &str) -> Result<Self, DistError> {
        let bad = || DistError::InvalidReference(s.to_string());
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                if !valid_digest(d) {
                    return Err(bad());
                }
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i + 1..].contains('/') => {
                (&rest[..i], Some(rest[i + 1..].to_string()))
            }
            _ => (rest, None),
        };
        if tag.as_deref().is_some_and(|t| !valid_tag(t)) {
            return Err(bad());
        }
        let (domain, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let domain = if domain == "index.docker.io" {
            DOCKER_HUB.to_string()
        } else {
            domain
        };
        let repo = if domain == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if !valid_repo(&repo) || domain.is_empty() || domain.chars().any(char::is_whitespace) {
            return Err(bad());
        }
        let tag = match (&tag, &digest) {
            (None, None) => Some("latest".to_string()),
            _ => tag,
        };
        Ok(Reference {
            domain,
            repo,
            tag,
            digest,
        })
    }

    /// `repo` and `domain/repo` as `docker images` shows them:
    /// `busybox`, `someone/app`, `127.0.0.1:5000/app`.
    pub fn familiar_repo(&self) -> String {
        if self.domain == DOCKER_HUB {
            self.repo
                .strip_prefix("library/")
                .unwrap_or(&self.repo)
                .to_string()
        } else {
            format!("{}/{}", self.domain, self.repo)
        }
    }

    /// The familiar name with its tag or digest.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_repo();
        if let Some(t) = &self.tag {
            s = format!("{s}:{t}");
        }
        if let Some(d) = &self.digest {
            s = format!("{s}@{d}");
        }
        s
    }

    /// What to ask the registry for: the digest if there is one, else the tag.
    pub fn target(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// The host to connect to: Docker Hub's API lives on another name.
    pub fn api_host(&self) -> &str {
        api_host(&self.domain)
    }
}

/// The host serving a registry's API.
pub fn api_host(domain: &str) -> &str {
    if domain == DOCKER_HUB {
        "registry-1.docker.io"
    } else {
        domain
    }
}

/// The key a registry's credentials are kept under, as the docker CLI
/// writes it: Docker Hub's is `https://index.docker.io/v1/`; others are
/// the bare host, whatever scheme or path the user typed.
pub fn server_key(addr: &str) -> String {
    let host = addr
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = host.split('/').next().unwrap_or(host);
    match host {
        "" | "docker.io" | "index.docker.io" | "registry-1.docker.io" => {
            "https://index.docker.io/v1/".to_string()
        }
        h => h.to_string(),
    }
}

/// The registry domain a credentials key names (`https://index.docker.io/v1/` → `docker.io`).
pub fn domain_of_server(addr: &str) -> String {
    match server_key(addr).as_str() {
        "https://index.docker.io/v1/" => DOCKER_HUB.to_string(),
        h => h.to_string(),
    }
}

pub fn valid_digest(d: &str) -> bool {
    d.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(c))
}

fn valid_repo(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 255
        && r.split('/').all(|c| {
            let b = c.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"._-".contains(c))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_names() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(r.domain, "docker.io");
        assert_eq!(r.repo, "library/busybox");
        assert_eq!(r.tag.as_deref(), Some("latest"));
        assert_eq!(r.familiar(), "busybox:latest");
        let r = Reference::parse("someone/app:1.2").unwrap();
        assert_eq!(
            (r.repo.as_str(), r.familiar_repo().as_str()),
            ("someone/app", "someone/app")
        );
        assert_eq!(
            Reference::parse("docker.io/library/busybox:1")
                .unwrap()
                .familiar(),
            "busybox:1"
        );
    }

    #[test]
    fn registries_and_digests() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("127.0.0.1:5000/a/b@{d}")).unwrap();
        assert_eq!(r.domain, "127.0.0.1:5000");
        assert_eq!(r.repo, "a/b");
        assert_eq!(r.tag, None);
        assert_eq!(r.target(), d);
        let r = Reference::parse("localhost/app:v1").unwrap();
        assert_eq!((r.domain.as_str(), r.target()), ("localhost", "v1"));
        assert_eq!(r.familiar(), "localhost/app:v1");
        for bad in ["", "UPPER", "a@sha256:12", "a:", "a/../b", "a:b:c", "a b"] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn credential_keys() {
        assert_eq!(server_key("docker.io"), "https://index.docker.io/v1/");
        assert_eq!(server_key("http://127.0.0.1:5000/v2/"), "127.0.0.1:5000");
        assert_eq!(domain_of_server("https://index.docker.io/v1/"), "docker.io");
    }
}
