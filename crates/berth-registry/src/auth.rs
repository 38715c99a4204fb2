//! Basic authentication against an htpasswd file of bcrypt hashes
//! (`htpasswd -B`), as Docker's registry:2 takes it.

use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

pub struct Htpasswd {
    users: HashMap<String, String>,
    /// Credentials already checked, as sha256(user:password): bcrypt is
    /// meant to be slow, and clients send them with every request.
    verified: Mutex<HashSet<[u8; 32]>>,
}

#[derive(Debug, thiserror::Error)]
pub enum HtpasswdError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: only bcrypt entries (htpasswd -B) are supported")]
    NotBcrypt { path: String, line: usize },
}

impl Htpasswd {
    pub fn load(path: &std::path::Path) -> Result<Htpasswd, HtpasswdError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| HtpasswdError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text, &shown)
    }

    pub fn parse(text: &str, path: &str) -> Result<Htpasswd, HtpasswdError> {
        let mut users = HashMap::new();
        for (i, l) in text.lines().enumerate() {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            match l.split_once(':') {
                Some((u, h)) if h.starts_with("$2") => {
                    users.insert(u.to_string(), h.to_string());
                }
                _ => {
                    return Err(HtpasswdError::NotBcrypt {
                        path: path.to_string(),
                        line: i + 1,
                    })
                }
            }
        }
        Ok(Htpasswd {
            users,
            verified: Mutex::new(HashSet::new()),
        })
    }

    /// Whether an `Authorization` header names a user of the file with its password.
    pub fn allows(&self, authorization: Option<&str>) -> bool {
        let Some(encoded) = authorization.and_then(|a| a.strip_prefix("Basic ")) else {
            return false;
        };
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
            return false;
        };
        let key: [u8; 32] = Sha256::digest(&raw).into();
        if self.verified.lock().expect("verified").contains(&key) {
            return true;
        }
        let Ok(text) = String::from_utf8(raw) else {
            return false;
        };
        let Some((user, password)) = text.split_once(':') else {
            return false;
        };
        let ok = self
            .users
            .get(user)
            .is_some_and(|hash| bcrypt::verify(password, hash).unwrap_or(false));
        if ok {
            self.verified.lock().expect("verified").insert(key);
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, password: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    }

    #[test]
    fn bcrypt_users_only() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let h = Htpasswd::parse(&format!("# users\nalice:{hash}\n"), "f").unwrap();
        assert!(h.allows(Some(&basic("alice", "s3cret"))));
        assert!(
            h.allows(Some(&basic("alice", "s3cret"))),
            "from the cache too"
        );
        assert!(!h.allows(Some(&basic("alice", "wrong"))));
        assert!(!h.allows(Some(&basic("bob", "s3cret"))));
        assert!(!h.allows(None) && !h.allows(Some("Bearer x")) && !h.allows(Some("Basic !!")));
        assert!(Htpasswd::parse("carol:{SHA}abc", "f").is_err());
    }
}
