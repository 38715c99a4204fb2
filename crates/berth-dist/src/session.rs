//! One repository at one registry: the connection (HTTPS, or HTTP where
//! allowed), authentication, and the requests of the distribution API.

use crate::auth::{parse_challenge, AuthConfig, Challenge};
use crate::manifest::{self, Descriptor};
use crate::reference::api_host;
use crate::DistError;
use futures_util::StreamExt;
use reqwest::header::{
    HeaderMap, ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, RANGE, WWW_AUTHENTICATE,
};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bytes done so far, for progress displays.
pub type Progress<'a> = &'a (dyn Fn(u64) + Send + Sync);

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
        Ok(Session {
            http,
            base,
            repo: repo.to_string(),
            creds: creds.filter(|c| !c.is_empty()),
            challenge: Mutex::new(challenge),
            tokens: Mutex::new(HashMap::new()),
            actions: if push { "pull,push" } else { "pull" },
            attempts: self.opts.attempts.max(1),
        })
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
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
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
struct TokenAnswer {
    #[serde(default)]
    token: String,
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
}

async fn fetch_token(
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
fn registry_message(body: &str) -> Option<String> {
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

pub struct Session {
    http: reqwest::Client,
    /// `https://host[:port]`
    base: String,
    repo: String,
    creds: Option<AuthConfig>,
    challenge: Mutex<Option<Challenge>>,
    /// Bearer tokens by scope set.
    tokens: Mutex<HashMap<String, String>>,
    actions: &'static str,
    attempts: u32,
}

impl Session {
    pub fn repo(&self) -> &str {
        &self.repo
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, tail: &str) -> String {
        format!("{}/v2/{}/{tail}", self.base, self.repo)
    }

    /// Adds what the registry asked for: basic credentials, or a bearer
    /// token for `extra` scopes beside this repository's.
    async fn authorize(
        &self,
        req: RequestBuilder,
        extra: &[String],
    ) -> Result<RequestBuilder, DistError> {
        let challenge = self.challenge.lock().expect("challenge lock").clone();
        let empty = AuthConfig::default();
        let creds = self.creds.as_ref().unwrap_or(&empty);
        match challenge {
            None => Ok(req),
            Some(Challenge::Basic) => Ok(if creds.username.is_empty() {
                req
            } else {
                req.basic_auth(&creds.username, Some(&creds.password))
            }),
            Some(Challenge::Bearer { realm, service }) => {
                if !creds.registrytoken.is_empty() {
                    return Ok(req.bearer_auth(&creds.registrytoken));
                }
                let mut scopes = vec![format!("repository:{}:{}", self.repo, self.actions)];
                scopes.extend(extra.iter().cloned());
                let key = scopes.join(" ");
                let cached = self.tokens.lock().expect("tokens lock").get(&key).cloned();
                let token = match cached {
                    Some(t) => t,
                    None => {
                        let t = fetch_token(
                            &self.http,
                            &realm,
                            service.as_deref(),
                            &scopes,
                            creds,
                            false,
                        )
                        .await?
                        .token;
                        self.tokens
                            .lock()
                            .expect("tokens lock")
                            .insert(key, t.clone());
                        t
                    }
                };
                Ok(req.bearer_auth(token))
            }
        }
    }

    /// Sends a request built by `make` (called again for a retry), answering
    /// a 401 once by taking up its challenge.
    async fn send(
        &self,
        make: impl Fn() -> RequestBuilder,
        extra: &[String],
    ) -> Result<Response, DistError> {
        for first in [true, false] {
            let req = self.authorize(make(), extra).await?;
            let r = req
                .send()
                .await
                .map_err(|e| DistError::Http(error_chain(&e)))?;
            if r.status() != StatusCode::UNAUTHORIZED || !first {
                return Ok(r);
            }
            let fresh = r
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_challenge);
            let mut known = self.challenge.lock().expect("challenge lock");
            match fresh {
                // A token that expired, or the first challenge of a registry
                // that let /v2/ through: take it up and try once more.
                Some(c) => {
                    *known = Some(c);
                    self.tokens.lock().expect("tokens lock").clear();
                }
                None => return Ok(r),
            }
        }
        unreachable!("the loop returns on its second pass")
    }

    /// An error for an unsuccessful answer about `what`.
    async fn failure(&self, r: Response, what: &str) -> DistError {
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        let msg = registry_message(&body)
            .or_else(|| {
                // A HEAD answer has no body to say it.
                (status == StatusCode::UNAUTHORIZED)
                    .then(|| "unauthorized: authentication required".to_string())
            })
            .unwrap_or_else(|| {
                format!(
                    "{} {}",
                    status.as_u16(),
                    status.canonical_reason().unwrap_or("")
                )
                .trim()
                .to_string()
            });
        match status {
            StatusCode::UNAUTHORIZED => DistError::Unauthorized(msg),
            StatusCode::FORBIDDEN => DistError::Denied(msg),
            StatusCode::NOT_FOUND => DistError::NotFound(format!("{what}: {msg}")),
            _ => DistError::Registry(format!("{what}: {msg}")),
        }
    }

    /// A manifest or index by tag or digest: its bytes, media type and
    /// digest (checked when asked for by digest).
    pub async fn manifest(&self, target: &str) -> Result<(Vec<u8>, String, String), DistError> {
        let url = self.url(&format!("manifests/{target}"));
        let r = self
            .send(|| self.http.get(&url).header(ACCEPT, manifest::ACCEPT), &[])
            .await?;
        if !r.status().is_success() {
            return Err(self.failure(r, "manifest").await);
        }
        let mt = header_str(r.headers(), CONTENT_TYPE);
        let bytes = r
            .bytes()
            .await
            .map_err(|e| DistError::Http(error_chain(&e)))?;
        if bytes.len() > 4 << 20 {
            return Err(DistError::Invalid("manifest larger than 4 MiB".into()));
        }
        let digest = crate::sha256_digest(&bytes);
        if target.starts_with("sha256:") && digest != target {
            return Err(DistError::DigestMismatch {
                expected: target.to_string(),
                actual: digest,
            });
        }
        Ok((bytes.to_vec(), mt, digest))
    }

    /// A small blob (a config) into memory, checked against its digest.
    pub async fn blob_bytes(&self, digest: &str) -> Result<Vec<u8>, DistError> {
        let url = self.url(&format!("blobs/{digest}"));
        let r = self.send(|| self.http.get(&url), &[]).await?;
        if !r.status().is_success() {
            return Err(self.failure(r, "blob").await);
        }
        let b = r
            .bytes()
            .await
            .map_err(|e| DistError::Http(error_chain(&e)))?;
        let got = crate::sha256_digest(&b);
        if got != digest {
            return Err(DistError::DigestMismatch {
                expected: digest.to_string(),
                actual: got,
            });
        }
        Ok(b.to_vec())
    }

    /// Downloads blob `desc` into `path`, resuming from what `path` already
    /// holds (a cut connection, or a previous attempt), with the digest
    /// computed as bytes arrive. On a digest mismatch the file is removed.
    /// `progress` hears the bytes held so far.
    pub async fn download(
        &self,
        desc: &Descriptor,
        path: &Path,
        progress: Progress<'_>,
    ) -> Result<(), DistError> {
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .await?;
        // What a previous attempt left: hashed again, since the hash state
        // was not kept.
        let mut hasher = Sha256::new();
        let mut have = 0u64;
        {
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = file.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                if have + n as u64 > desc.size {
                    // More than the blob can be: start over.
                    file.set_len(0).await?;
                    hasher = Sha256::new();
                    have = 0;
                    break;
                }
                hasher.update(&buf[..n]);
                have += n as u64;
            }
        }
        progress(have);
        let url = self.url(&format!("blobs/{}", desc.digest));
        let mut failures = 0;
        while have < desc.size {
            match self
                .fetch_range(&url, have, &mut file, &mut hasher, &mut have, progress)
                .await
            {
                Ok(()) => {}
                Err(e @ (DistError::Http(_) | DistError::Io(_))) => {
                    failures += 1;
                    if failures >= self.attempts {
                        return Err(e);
                    }
                    tracing::info!("blob {}: {e}; resuming at {have}", desc.digest);
                    tokio::time::sleep(Duration::from_millis(100 << failures.min(5))).await;
                }
                Err(e) => return Err(e),
            }
        }
        file.flush().await?;
        let got = format!("sha256:{}", hex::encode(hasher.finalize()));
        if got != desc.digest {
            drop(file);
            let _ = tokio::fs::remove_file(path).await;
            return Err(DistError::DigestMismatch {
                expected: desc.digest.clone(),
                actual: got,
            });
        }
        file.sync_all().await?;
        Ok(())
    }

    /// One GET from `from` on; appends what arrives to `file`.
    async fn fetch_range(
        &self,
        url: &str,
        from: u64,
        file: &mut tokio::fs::File,
        hasher: &mut Sha256,
        have: &mut u64,
        progress: Progress<'_>,
    ) -> Result<(), DistError> {
        let r = self
            .send(
                || {
                    let g = self.http.get(url);
                    if from > 0 {
                        g.header(RANGE, format!("bytes={from}-"))
                    } else {
                        g
                    }
                },
                &[],
            )
            .await?;
        match r.status() {
            StatusCode::PARTIAL_CONTENT => {}
            StatusCode::OK => {
                // The registry sent it all: drop what we had.
                if *have > 0 {
                    file.set_len(0).await?;
                    *hasher = Sha256::new();
                    *have = 0;
                }
            }
            _ => return Err(self.failure(r, "blob").await),
        }
        use tokio::io::AsyncSeekExt;
        file.seek(std::io::SeekFrom::Start(*have)).await?;
        // Small enough that a crash loses little of what arrived.
        let mut out = tokio::io::BufWriter::with_capacity(256 << 10, &mut *file);
        let mut stream = r.bytes_stream();
        let mut reported = *have;
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    out.flush().await?;
                    return Err(DistError::Http(error_chain(&e)));
                }
            };
            hasher.update(&chunk);
            out.write_all(&chunk).await?;
            *have += chunk.len() as u64;
            if *have - reported >= 256 << 10 {
                progress(*have);
                reported = *have;
            }
        }
        out.flush().await?;
        progress(*have);
        Ok(())
    }

    /// Does the registry have blob `digest` in this repository?
    pub async fn blob_exists(&self, digest: &str) -> Result<bool, DistError> {
        let url = self.url(&format!("blobs/{digest}"));
        let r = self.send(|| self.http.head(&url), &[]).await?;
        match r.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.failure(r, "blob").await),
        }
    }

    /// Asks the registry to link blob `digest` from repository `from`;
    /// true when it did.
    pub async fn mount(&self, digest: &str, from: &str) -> Result<bool, DistError> {
        let url = format!("{}?mount={digest}&from={from}", self.url("blobs/uploads/"));
        let extra = [format!("repository:{from}:pull")];
        let r = self
            .send(|| self.http.post(&url).header(CONTENT_LENGTH, 0), &extra)
            .await?;
        match r.status() {
            StatusCode::CREATED => Ok(true),
            StatusCode::ACCEPTED => {
                // The registry started an upload instead: not wanted.
                if let Ok(loc) = self.location(&r) {
                    let _ = self.send(|| self.http.delete(&loc), &[]).await;
                }
                Ok(false)
            }
            // Registries that refuse mounts (or the scope) just get the blob.
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.failure(r, "blob mount").await),
        }
    }

    fn location(&self, r: &Response) -> Result<String, DistError> {
        let loc = header_str(r.headers(), LOCATION);
        if loc.is_empty() {
            return Err(DistError::Registry(
                "upload answer without a Location".into(),
            ));
        }
        Ok(
            if loc.starts_with("http://") || loc.starts_with("https://") {
                loc
            } else {
                format!("{}{}", self.base, loc)
            },
        )
    }

    async fn start_upload(&self) -> Result<String, DistError> {
        let url = self.url("blobs/uploads/");
        let r = self
            .send(|| self.http.post(&url).header(CONTENT_LENGTH, 0), &[])
            .await?;
        if r.status() != StatusCode::ACCEPTED {
            return Err(self.failure(r, "blob upload").await);
        }
        self.location(&r)
    }

    fn with_digest(loc: &str, digest: &str) -> String {
        let sep = if loc.contains('?') { '&' } else { '?' };
        format!("{loc}{sep}digest={digest}")
    }

    /// A blob held in memory, in one request (monolithic: POST, PUT).
    pub async fn upload_bytes(&self, data: &[u8], digest: &str) -> Result<(), DistError> {
        let loc = self.start_upload().await?;
        let url = Self::with_digest(&loc, digest);
        let body = bytes::Bytes::copy_from_slice(data);
        let r = self
            .send(
                || {
                    self.http
                        .put(&url)
                        .header(CONTENT_TYPE, "application/octet-stream")
                        .body(body.clone())
                },
                &[],
            )
            .await?;
        if r.status() != StatusCode::CREATED {
            return Err(self.failure(r, "blob upload").await);
        }
        Ok(())
    }

    /// A blob streamed from `path` as one chunk (POST, PATCH, PUT), as the
    /// docker client does; `progress` hears the bytes sent.
    pub async fn upload_file(
        &self,
        path: &Path,
        digest: &str,
        size: u64,
        progress: Progress<'_>,
    ) -> Result<(), DistError> {
        let loc = self.start_upload().await?;
        let file = tokio::fs::File::open(path).await?;
        let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = sent.clone();
        let stream = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20).map(move |c| {
            if let Ok(b) = &c {
                counter.fetch_add(b.len() as u64, std::sync::atomic::Ordering::Relaxed);
            }
            c
        });
        let req = self
            .authorize(
                self.http
                    .request(Method::PATCH, &loc)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, size)
                    .body(reqwest::Body::wrap_stream(stream)),
                &[],
            )
            .await?;
        let send = req.send();
        tokio::pin!(send);
        let r = loop {
            tokio::select! {
                r = &mut send => break r.map_err(|e| DistError::Http(error_chain(&e)))?,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {
                    progress(sent.load(std::sync::atomic::Ordering::Relaxed));
                }
            }
        };
        progress(sent.load(std::sync::atomic::Ordering::Relaxed));
        if r.status() != StatusCode::ACCEPTED && r.status() != StatusCode::NO_CONTENT {
            return Err(self.failure(r, "blob upload").await);
        }
        let loc = self.location(&r)?;
        let url = Self::with_digest(&loc, digest);
        let r = self
            .send(|| self.http.put(&url).header(CONTENT_LENGTH, 0), &[])
            .await?;
        if r.status() != StatusCode::CREATED {
            return Err(self.failure(r, "blob upload").await);
        }
        Ok(())
    }

    /// Puts a manifest under `target` (a tag or its digest); returns its digest.
    pub async fn put_manifest(
        &self,
        target: &str,
        body: &[u8],
        media_type: &str,
    ) -> Result<String, DistError> {
        let url = self.url(&format!("manifests/{target}"));
        let body = bytes::Bytes::copy_from_slice(body);
        let r = self
            .send(
                || {
                    self.http
                        .put(&url)
                        .header(CONTENT_TYPE, media_type)
                        .body(body.clone())
                },
                &[],
            )
            .await?;
        if r.status() != StatusCode::CREATED {
            return Err(self.failure(r, "manifest").await);
        }
        Ok(crate::sha256_digest(&body))
    }
}

fn header_str(h: &HeaderMap, name: reqwest::header::HeaderName) -> String {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.split(';').next().unwrap_or(s).trim().to_string())
        .unwrap_or_default()
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
