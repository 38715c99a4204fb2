//! The daemon's way to registries: which hosts it may reach and how
//! (HTTPS, or HTTP where allowed; certificates), the ping that learns a
//! registry's challenge, logins, bearer tokens, and registries' error words.

use crate::auth::{parse_challenge, AuthConfig, Challenge};
use crate::reference::api_host;
use crate::session::Session;
use crate::DistError;
use reqwest::header::WWW_AUTHENTICATE;
use reqwest::StatusCode;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How the daemon reaches registries.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--insecure-registry`: hosts (`host[:port]`) or IPv4 CIDRs reached
    /// over plain HTTP, or HTTPS without verifying the certificate.
    /// Loopback is always among them, as for dockerd.
    pub insecure: Vec<String>,
    /// When set, the only registries this daemon may contact (`loopback`
    /// names every loopback address); others are refused before any traffic.
    pub allow: Option<Vec<String>>,
    /// Per-registry CA certificates: `<dir>/<host[:port]>/*.crt`, as dockerd
    /// reads `/etc/docker/certs.d`.
    pub certs_dir: PathBuf,
    /// Attempts per blob before a cut download fails (each resumes).
    pub attempts: u32,
    /// Loopback registries count as insecure, as for dockerd. Off, they
    /// are held to certificates like any other (tests of the HTTPS path).
    pub loopback_insecure: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            insecure: Vec::new(),
            allow: None,
            certs_dir: PathBuf::from("/etc/docker/certs.d"),
            attempts: 5,
            loopback_insecure: true,
        }
    }
}

fn host_ip(host: &str) -> Option<IpAddr> {
    let h = host
        .strip_prefix('[')
        .map_or(host, |h| h.split(']').next().unwrap_or(h));
    h.parse::<IpAddr>().ok().or_else(|| {
        host.rsplit_once(':')
            .and_then(|(h, _)| h.parse::<IpAddr>().ok())
    })
}

fn is_loopback(host: &str) -> bool {
    let name = host.rsplit_once(':').map_or(host, |(h, p)| {
        if p.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    name == "localhost" || host_ip(host).is_some_and(|ip| ip.is_loopback())
}

fn in_cidr(ip: IpAddr, cidr: &str) -> bool {
    let Some((net, bits)) = cidr.split_once('/') else {
        return false;
    };
    let (Ok(IpAddr::V4(net)), Ok(bits), IpAddr::V4(ip)) = (net.parse(), bits.parse::<u32>(), ip)
    else {
        return false;
    };
    if bits > 32 {
        return false;
    }
    let mask = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - bits)
    };
    u32::from(ip) & mask == u32::from(net) & mask
}

impl Options {
    pub fn is_insecure(&self, host: &str) -> bool {
        (self.loopback_insecure && is_loopback(host))
            || self.insecure.iter().any(|e| {
                e == host
                    || host.split(':').next() == Some(e.as_str())
                    || host_ip(host).is_some_and(|ip| in_cidr(ip, e))
            })
    }

    pub fn check_allowed(&self, domain: &str) -> Result<(), DistError> {
        let Some(allow) = &self.allow else {
            return Ok(());
        };
        let ok = allow
            .iter()
            .any(|a| a == domain || (a == "loopback" && is_loopback(domain)));
        if ok {
            Ok(())
        } else {
            Err(DistError::NotAllowed(format!(
                "registry {domain} is not one this daemon may contact (--allow-registry)"
            )))
        }
    }
}

/// The daemon's HTTP clients, shared by every session.
pub struct Client {
    opts: Options,
    verified: reqwest::Client,
    unverified: reqwest::Client,
}

fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(15))
        .tcp_nodelay(true)
}

impl Client {
    pub fn new(opts: Options) -> Result<Client, DistError> {
        let http = |e: reqwest::Error| DistError::Http(e.to_string());
        Ok(Client {
            verified: builder().build().map_err(http)?,
            unverified: builder()
                .danger_accept_invalid_certs(true)
                .build()
                .map_err(http)?,
            opts,
        })
    }

    /// The client for `host`: one that also trusts `certs.d/<host>/*.crt`
    /// when there are such files.
    fn http_for(&self, host: &str, insecure: bool) -> Result<reqwest::Client, DistError> {
        if insecure {
            return Ok(self.unverified.clone());
        }
        let dir = self.opts.certs_dir.join(host);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(self.verified.clone());
        };
        let mut b = builder();
        let mut any = false;
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "crt") {
                let pem = std::fs::read(&p)?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem)
                    .map_err(|e| DistError::Invalid(format!("{}: {e}", p.display())))?;
                for c in certs {
                    b = b.add_root_certificate(c);
                    any = true;
                }
            }
        }
        if !any {
            return Ok(self.verified.clone());
        }
        b.build().map_err(|e| DistError::Http(e.to_string()))
    }

    /// Connects to `domain` for `repo` (pull, or pull and push), learning
    /// how it wants to be authenticated.
    pub async fn session(
        &self,
        domain: &str,
        repo: &str,
        creds: Option<AuthConfig>,
        push: bool,
    ) -> Result<Session, DistError> {
        let (http, base, challenge) = self.ping(domain).await?;
        Ok(Session::new(
            http,
            base,
            repo,
            creds,
            challenge,
            push,
            self.opts.attempts,
        ))
    }

    /// `GET /v2/` over HTTPS, and for insecure registries over HTTP when
    /// HTTPS cannot be spoken (as dockerd falls back).
    async fn ping(
        &self,
        domain: &str,
    ) -> Result<(reqwest::Client, String, Option<Challenge>), DistError> {
        self.opts.check_allowed(domain)?;
        let host = api_host(domain);
        let insecure = self.opts.is_insecure(host);
        let http = self.http_for(host, insecure)?;
        let mut last = None;
        for scheme in ["https", "http"] {
            if scheme == "http" && !insecure {
                break;
            }
            let base = format!("{scheme}://{host}");
            match http.get(format!("{base}/v2/")).send().await {
                Ok(r) => {
                    let challenge = (r.status() == StatusCode::UNAUTHORIZED)
                        .then(|| {
                            r.headers()
                                .get(WWW_AUTHENTICATE)
                                .and_then(|v| v.to_str().ok())
                                .and_then(parse_challenge)
                        })
                        .flatten();
                    return Ok((http, base, challenge));
                }
                Err(e) => last = Some(format!("Get \"{base}/v2/\": {}", connect_error(&e, host))),
            }
        }
        Err(DistError::Http(last.unwrap_or_default()))
    }

    /// Checks credentials as `docker login` does; returns the identity
    /// token a token server may hand out for them.
    pub async fn login(&self, creds: &AuthConfig) -> Result<Option<String>, DistError> {
        let domain = crate::reference::domain_of_server(&creds.serveraddress);
        let (http, base, challenge) = self.ping(&domain).await?;
        let url = format!("{base}/v2/");
        let failed = |status: StatusCode| {
            DistError::Unauthorized(format!(
                "login attempt to {url} failed with status: {} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            ))
        };
        match challenge {
            None => Ok(None),
            Some(Challenge::Basic) => {
                let r = http
                    .get(&url)
                    .basic_auth(&creds.username, Some(&creds.password))
                    .send()
                    .await
                    .map_err(|e| DistError::Http(error_chain(&e)))?;
                if r.status().is_success() {
                    Ok(None)
                } else {
                    Err(failed(r.status()))
                }
            }
            Some(Challenge::Bearer { realm, service }) => {
                let t = fetch_token(&http, &realm, service.as_deref(), &[], creds, true).await?;
                Ok(t.refresh_token)
            }
        }
    }
}

/// A failed connection in Go's words (`dial tcp HOST: connect: connection
/// refused`), which is what users of dockerd know; other errors as they are.
fn connect_error(e: &reqwest::Error, host: &str) -> String {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = src {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if e.is_connect() {
                let t = io.to_string();
                let t = t.split(" (os error").next().unwrap_or(&t).to_lowercase();
                return format!("dial tcp {host}: connect: {t}");
            }
        }
        src = c.source();
    }
    error_chain(e)
}

/// An error and its sources, as one line.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let t = c.to_string();
        if !s.contains(&t) {
            s = format!("{s}: {t}");
        }
        src = c.source();
    }
    s
}

#[derive(serde::Deserialize, Default)]
pub(crate) struct TokenAnswer {
    #[serde(default)]
    pub(crate) token: String,
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
}

pub(crate) async fn fetch_token(
    http: &reqwest::Client,
    realm: &str,
    service: Option<&str>,
    scopes: &[String],
    creds: &AuthConfig,
    offline: bool,
) -> Result<TokenAnswer, DistError> {
    let mut query: Vec<(&str, &str)> = Vec::new();
    if let Some(s) = service {
        query.push(("service", s));
    }
    for s in scopes {
        query.push(("scope", s));
    }
    let req = if !creds.identitytoken.is_empty() {
        let mut form = query.clone();
        form.extend([
            ("grant_type", "refresh_token"),
            ("refresh_token", creds.identitytoken.as_str()),
            ("client_id", "berth"),
        ]);
        http.post(realm).form(&form)
    } else {
        if offline {
            query.extend([("offline_token", "true"), ("client_id", "berth")]);
        }
        let r = http.get(realm).query(&query);
        if creds.username.is_empty() {
            r
        } else {
            r.basic_auth(&creds.username, Some(&creds.password))
        }
    };
    let r = req
        .send()
        .await
        .map_err(|e| DistError::Http(error_chain(&e)))?;
    let status = r.status();
    if !status.is_success() {
        let body = r.text().await.unwrap_or_default();
        let msg = registry_message(&body).unwrap_or_else(|| status.to_string());
        return Err(
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                DistError::Unauthorized(format!("Get \"{realm}\": {msg}"))
            } else {
                DistError::Registry(format!("Get \"{realm}\": {msg}"))
            },
        );
    }
    let body = r
        .bytes()
        .await
        .map_err(|e| DistError::Http(error_chain(&e)))?;
    let mut t: TokenAnswer = serde_json::from_slice(&body)
        .map_err(|e| DistError::Invalid(format!("token answer: {e}")))?;
    if t.token.is_empty() {
        t.token = std::mem::take(&mut t.access_token);
    }
    Ok(t)
}

/// Docker's wording of a registry's `errors` body: `code words: message`.
pub(crate) fn registry_message(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    if let Some(e) = v["errors"].as_array().and_then(|a| a.first()) {
        let code = e["code"]
            .as_str()
            .unwrap_or("")
            .to_lowercase()
            .replace('_', " ");
        let msg = e["message"].as_str().unwrap_or("");
        return Some(if code.is_empty() {
            msg.to_string()
        } else {
            format!("{code}: {msg}")
        });
    }
    v["details"]
        .as_str()
        .or(v["message"].as_str())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_insecure_hosts() {
        let o = Options {
            insecure: vec![
                "reg.lan:5000".into(),
                "10.99.0.0/24".into(),
                "plain.lan".into(),
            ],
            ..Options::default()
        };
        for h in [
            "127.0.0.1:5000",
            "localhost:5000",
            "localhost",
            "[::1]:5000",
            "reg.lan:5000",
            "10.99.0.7:5000",
            "plain.lan:443",
        ] {
            assert!(o.is_insecure(h), "{h}");
        }
        for h in ["reg.lan:5001", "10.99.1.7:5000", "example.com"] {
            assert!(!o.is_insecure(h), "{h}");
        }
    }

    #[test]
    fn allow_list() {
        let o = Options {
            allow: Some(vec!["loopback".into(), "reg.lan".into()]),
            ..Options::default()
        };
        assert!(o.check_allowed("127.0.0.1:5000").is_ok());
        assert!(o.check_allowed("reg.lan").is_ok());
        assert!(o.check_allowed("docker.io").is_err());
        assert!(Options::default().check_allowed("docker.io").is_ok());
    }

    #[test]
    fn registry_errors_read_as_docker_words_them() {
        assert_eq!(
            registry_message(
                r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#
            ),
            Some("manifest unknown: manifest unknown".into())
        );
        assert_eq!(registry_message("not json"), None);
    }
}
