//! One repository at one registry: authenticated requests of the
//! distribution API — manifests, blobs downloaded with their digest checked
//! and resumed, uploads streamed from files, mounts.

use crate::auth::{parse_challenge, AuthConfig, Challenge};
use crate::client::{error_chain, fetch_token, registry_message};
use crate::manifest::{self, Descriptor};
use crate::DistError;
use futures_util::StreamExt;
use reqwest::header::{
    HeaderMap, ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, RANGE, WWW_AUTHENTICATE,
};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bytes done so far, for progress displays.
pub type Progress<'a> = &'a (dyn Fn(u64) + Send + Sync);

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
    pub(crate) fn new(
        http: reqwest::Client,
        base: String,
        repo: &str,
        creds: Option<AuthConfig>,
        challenge: Option<Challenge>,
        push: bool,
        attempts: u32,
    ) -> Session {
        Session {
            http,
            base,
            repo: repo.to_string(),
            creds: creds.filter(|c| !c.is_empty()),
            challenge: Mutex::new(challenge),
            tokens: Mutex::new(HashMap::new()),
            actions: if push { "pull,push" } else { "pull" },
            attempts: attempts.max(1),
        }
    }

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
