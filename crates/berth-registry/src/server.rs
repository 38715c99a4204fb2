//! The OCI distribution API (v1.1) over a [`Storage`]: `/v2/`, blobs,
//! uploads (monolithic, chunked, cross-repository mount), manifests by tag
//! and digest, tag lists and the catalog, with the spec's error codes.

use crate::auth::Htpasswd;
use crate::names::{valid_digest, valid_name, valid_tag};
use crate::storage::{BlobBody, CommitError, Storage};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// The spec's suggested limit on a manifest's size.
pub const MAX_MANIFEST: usize = 4 << 20;

type Store = Arc<dyn Storage>;

/// The registry's routes over `store`; with `auth`, every request must
/// carry the credentials of one of its users.
pub fn router(store: Store, auth: Option<Arc<Htpasswd>>) -> Router {
    let app = Router::new().fallback(dispatch).with_state(store);
    match auth {
        Some(a) => app.layer(axum::middleware::from_fn_with_state(a, require_auth)),
        None => app,
    }
}

async fn require_auth(
    State(auth): State<Arc<Htpasswd>>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if auth.allows(given) {
        return next.run(req).await;
    }
    with_headers(
        error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "authentication required",
        ),
        &[
            ("WWW-Authenticate", "Basic realm=\"berth-registry\"".into()),
            ("Docker-Distribution-API-Version", "registry/2.0".into()),
        ],
    )
}

/// A distribution-spec error: its status, code (`BLOB_UNKNOWN`, …) and words.
#[derive(Debug)]
pub struct DistError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl IntoResponse for DistError {
    /// `{"errors":[{"code","message","detail"}]}`.
    fn into_response(self) -> Response {
        let body = serde_json::json!({"errors": [{"code": self.code, "message": self.message, "detail": null}]});
        (self.status, axum::Json(body)).into_response()
    }
}

fn reject(status: StatusCode, code: &'static str, message: impl Into<String>) -> DistError {
    DistError {
        status,
        code,
        message: message.into(),
    }
}

fn error(status: StatusCode, code: &'static str, message: impl Into<String>) -> Response {
    reject(status, code, message).into_response()
}

fn failed(e: impl std::fmt::Display) -> DistError {
    reject(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", e.to_string())
}

fn internal(e: impl std::fmt::Display) -> Response {
    failed(e).into_response()
}

fn name_unknown(name: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "NAME_UNKNOWN",
        format!("repository name not known to registry: {name}"),
    )
}

fn with_headers(mut r: Response, pairs: &[(&'static str, String)]) -> Response {
    for (k, v) in pairs {
        if let Ok(v) = HeaderValue::from_str(v) {
            r.headers_mut().insert(*k, v);
        }
    }
    r
}

/// What a `/v2/…` path asks for.
#[derive(Debug, PartialEq)]
enum Route {
    Base,
    Catalog,
    Tags(String),
    Manifest(String, String),
    Blob(String, String),
    Referrers(String, String),
    UploadStart(String),
    Upload(String, String),
    Unknown,
}

fn route(path: &str) -> Route {
    let Some(rest) = path.strip_prefix("/v2") else {
        return Route::Unknown;
    };
    if rest.is_empty() || rest == "/" {
        return Route::Base;
    }
    if rest == "/_catalog" {
        return Route::Catalog;
    }
    let segs: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
    let n = segs.len();
    let name = |upto: usize| segs[..upto].join("/");
    match segs.as_slice() {
        [.., "tags", "list"] if n > 2 => Route::Tags(name(n - 2)),
        [.., "blobs", "uploads", id] if n > 3 => {
            if id.is_empty() {
                Route::UploadStart(name(n - 3))
            } else {
                Route::Upload(name(n - 3), id.to_string())
            }
        }
        [.., "blobs", "uploads"] if n > 2 => Route::UploadStart(name(n - 2)),
        [.., "manifests", r] if n > 2 => Route::Manifest(name(n - 2), r.to_string()),
        [.., "blobs", d] if n > 2 => Route::Blob(name(n - 2), d.to_string()),
        [.., "referrers", d] if n > 2 => Route::Referrers(name(n - 2), d.to_string()),
        _ => Route::Unknown,
    }
}

/// A query parameter, percent-decoded. A `+` stays a `+`: media types such
/// as `…manifest.v1+json` arrive unencoded in `artifactType`.
fn query_param(uri: &axum::http::Uri, key: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then(|| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

async fn dispatch(State(s): State<Store>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let m = parts.method.clone();
    let r = match route(parts.uri.path()) {
        Route::Base => with_headers(axum::Json(serde_json::json!({})).into_response(), &[]),
        Route::Catalog if m == Method::GET => catalog(&s, &parts.uri),
        Route::Tags(name) if m == Method::GET => tags(&s, &name, &parts.uri),
        Route::Manifest(name, r) => match m {
            Method::GET | Method::HEAD => get_manifest(&s, &name, &r, m == Method::HEAD),
            Method::PUT => put_manifest(&s, &name, &r, &parts.headers, body).await,
            Method::DELETE => delete_manifest(&s, &name, &r),
            _ => unsupported(),
        },
        Route::Blob(name, d) => match m {
            Method::GET | Method::HEAD => {
                get_blob(&s, &name, &d, &parts.headers, m == Method::HEAD)
            }
            Method::DELETE => delete_blob(&s, &name, &d),
            _ => unsupported(),
        },
        Route::Referrers(name, d) if m == Method::GET => referrers(&s, &name, &d, &parts.uri),
        Route::UploadStart(name) if m == Method::POST => {
            start_upload(&s, &name, &parts.uri, body).await
        }
        Route::Upload(name, id) => match m {
            Method::PATCH => patch_upload(&s, &name, &id, &parts.headers, body).await,
            Method::PUT => put_upload(&s, &name, &id, &parts.uri, body).await,
            Method::GET => upload_status(&s, &name, &id),
            Method::DELETE => match s.cancel_upload(&id) {
                Ok(true) => StatusCode::NO_CONTENT.into_response(),
                Ok(false) => upload_unknown(),
                Err(e) => internal(e),
            },
            _ => unsupported(),
        },
        _ => error(StatusCode::NOT_FOUND, "NOT_FOUND", "page not found"),
    };
    with_headers(
        r,
        &[("Docker-Distribution-API-Version", "registry/2.0".into())],
    )
}

fn unsupported() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "UNSUPPORTED",
        "the operation is unsupported",
    )
}

fn upload_unknown() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
        "blob upload unknown to registry",
    )
}

fn check_name(name: &str) -> Result<(), DistError> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(reject(
            StatusCode::BAD_REQUEST,
            "NAME_INVALID",
            format!("invalid repository name: {name}"),
        ))
    }
}

fn check_digest(d: &str) -> Result<(), DistError> {
    if valid_digest(d) {
        Ok(())
    } else {
        Err(reject(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            format!("invalid digest: {d}"),
        ))
    }
}

/// `n` and `last` of a list query: at most `n` entries after `last`, and
/// the `Link` to the next page when there is one.
fn page(all: Vec<String>, uri: &axum::http::Uri, path: &str) -> (Vec<String>, Option<String>) {
    let last = query_param(uri, "last");
    let n: Option<usize> = query_param(uri, "n").and_then(|n| n.parse().ok());
    let mut items: Vec<String> = all
        .into_iter()
        .filter(|t| last.as_ref().is_none_or(|l| t.as_str() > l.as_str()))
        .collect();
    let mut link = None;
    if let Some(n) = n {
        if items.len() > n {
            items.truncate(n);
            if let Some(l) = items.last() {
                link = Some(format!("<{path}?n={n}&last={l}>; rel=\"next\""));
            }
        }
    }
    (items, link)
}

fn catalog(s: &Store, uri: &axum::http::Uri) -> Response {
    let all = match s.repositories() {
        Ok(r) => r,
        Err(e) => return internal(e),
    };
    let (repos, link) = page(all, uri, "/v2/_catalog");
    let r = axum::Json(serde_json::json!({"repositories": repos})).into_response();
    with_headers(
        r,
        &link.map(|l| ("Link", l)).into_iter().collect::<Vec<_>>(),
    )
}

fn tags(s: &Store, name: &str, uri: &axum::http::Uri) -> Response {
    if let Err(r) = check_name(name) {
        return r.into_response();
    }
    let all = match s.tags(name) {
        Ok(Some(t)) => t,
        Ok(None) => return name_unknown(name),
        Err(e) => return internal(e),
    };
    let (tags, link) = page(all, uri, &format!("/v2/{name}/tags/list"));
    let r = axum::Json(serde_json::json!({"name": name, "tags": tags})).into_response();
    with_headers(
        r,
        &link.map(|l| ("Link", l)).into_iter().collect::<Vec<_>>(),
    )
}

/// A tag or digest of `name` as the digest it stands for.
fn resolve(s: &Store, name: &str, reference: &str) -> Result<String, DistError> {
    if reference.contains(':') {
        check_digest(reference)?;
        return Ok(reference.to_string());
    }
    if !valid_tag(reference) {
        return Err(reject(
            StatusCode::BAD_REQUEST,
            "TAG_INVALID",
            format!("invalid tag: {reference}"),
        ));
    }
    match s.resolve_tag(name, reference) {
        Ok(Some(d)) => Ok(d),
        Ok(None) => Err(reject(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            format!("manifest unknown: {reference}"),
        )),
        Err(e) => Err(failed(e)),
    }
}

fn manifest_unknown(reference: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
        format!("manifest unknown: {reference}"),
    )
}

fn get_manifest(s: &Store, name: &str, reference: &str, head: bool) -> Response {
    if let Err(r) = check_name(name) {
        return r.into_response();
    }
    let digest = match resolve(s, name, reference) {
        Ok(d) => d,
        Err(r) => return r.into_response(),
    };
    let (media_type, body) = match s.get_manifest(name, &digest) {
        Ok(Some(m)) => m,
        Ok(None) => return manifest_unknown(reference),
        Err(e) => return internal(e),
    };
    let len = body.len();
    let r = if head {
        StatusCode::OK.into_response()
    } else {
        (StatusCode::OK, body).into_response()
    };
    with_headers(
        r,
        &[
            ("Content-Type", media_type),
            ("Docker-Content-Digest", digest),
            ("Content-Length", len.to_string()),
        ],
    )
}

/// Reads a request body up to `limit` bytes; None when it is longer.
async fn read_limited(body: Body, limit: usize) -> Result<Option<Vec<u8>>, DistError> {
    let mut out = Vec::new();
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(failed)?;
        if out.len() + chunk.len() > limit {
            return Ok(None);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Some(out))
}

/// The digests a manifest or index refers to that must be present first:
/// blobs (config and layers) for an image manifest, manifests for an index.
fn references(doc: &serde_json::Value) -> (Vec<String>, Vec<String>) {
    let digests = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["digest"].as_str().map(str::to_string))
            .collect()
    };
    let mut blobs = digests(&doc["layers"]);
    if let Some(c) = doc["config"]["digest"].as_str() {
        blobs.push(c.to_string());
    }
    (blobs, digests(&doc["manifests"]))
}

async fn put_manifest(
    s: &Store,
    name: &str,
    reference: &str,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    if let Err(r) = check_name(name) {
        return r.into_response();
    }
    let body = match read_limited(body, MAX_MANIFEST).await {
        Ok(Some(b)) => b,
        Ok(None) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "SIZE_INVALID",
                format!("manifest over {MAX_MANIFEST} bytes"),
            )
        }
        Err(r) => return r.into_response(),
    };
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
    let doc: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(d) => d,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "MANIFEST_INVALID",
                format!("manifest invalid: {e}"),
            )
        }
    };
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| doc["mediaType"].as_str().map(str::to_string))
        .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".into());
    let (blobs, manifests) = references(&doc);
    for b in &blobs {
        if !valid_digest(b) || !s.blob_in_repo(name, b) {
            return error(
                StatusCode::BAD_REQUEST,
                "MANIFEST_BLOB_UNKNOWN",
                format!("blob unknown to registry: {b}"),
            );
        }
    }
    for m in &manifests {
        if !matches!(s.get_manifest(name, m), Ok(Some(_))) {
            return error(
                StatusCode::BAD_REQUEST,
                "MANIFEST_UNKNOWN",
                format!("manifest unknown: {m}"),
            );
        }
    }
    let is_digest = reference.contains(':');
    if is_digest && reference != digest {
        return error(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            format!("manifest digest {digest} does not match {reference}"),
        );
    }
    if !is_digest && !valid_tag(reference) {
        return error(
            StatusCode::BAD_REQUEST,
            "TAG_INVALID",
            format!("invalid tag: {reference}"),
        );
    }
    let subject = doc["subject"]["digest"]
        .as_str()
        .filter(|d| valid_digest(d));
    let stored = s
        .put_manifest(name, &digest, &media_type, &body)
        .and_then(|_| match subject {
            Some(sub) => {
                let desc = referrer_descriptor(&doc, &media_type, &digest, body.len());
                s.add_referrer(name, sub, &digest, &desc)
            }
            None => Ok(()),
        })
        .and_then(|_| {
            if is_digest {
                Ok(())
            } else {
                s.set_tag(name, reference, &digest)
            }
        });
    if let Err(e) = stored {
        return internal(e);
    }
    let mut pairs = vec![
        ("Location", format!("/v2/{name}/manifests/{digest}")),
        ("Docker-Content-Digest", digest),
    ];
    // The registry keeps the referrers index itself: the client need not.
    if let Some(sub) = subject {
        pairs.push(("OCI-Subject", sub.to_string()));
    }
    with_headers(StatusCode::CREATED.into_response(), &pairs)
}

/// A referring manifest as the referrers API lists it: its artifact type
/// (`artifactType`, else its config's media type) and annotations.
fn referrer_descriptor(
    doc: &serde_json::Value,
    media_type: &str,
    digest: &str,
    size: usize,
) -> Vec<u8> {
    let artifact_type = doc["artifactType"]
        .as_str()
        .or_else(|| doc["config"]["mediaType"].as_str())
        .unwrap_or_default();
    let mut d = serde_json::json!({
        "mediaType": media_type, "digest": digest, "size": size, "artifactType": artifact_type,
    });
    if doc["annotations"].is_object() {
        d["annotations"] = doc["annotations"].clone();
    }
    serde_json::to_vec(&d).unwrap_or_default()
}

/// `GET /v2/<name>/referrers/<digest>[?artifactType=]`: an image index of
/// the manifests whose subject is that digest.
fn referrers(s: &Store, name: &str, digest: &str, uri: &axum::http::Uri) -> Response {
    if let Err(r) = check_name(name).and_then(|_| check_digest(digest)) {
        return r.into_response();
    }
    let all = match s.referrers(name, digest) {
        Ok(r) => r,
        Err(e) => return internal(e),
    };
    let filter = query_param(uri, "artifactType");
    let manifests: Vec<serde_json::Value> = all
        .iter()
        .filter_map(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
        .filter(|d| {
            filter
                .as_ref()
                .is_none_or(|f| d["artifactType"] == f.as_str())
        })
        .collect();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    });
    let mut pairs = vec![(
        "Content-Type",
        "application/vnd.oci.image.index.v1+json".to_string(),
    )];
    if filter.is_some() {
        pairs.push(("OCI-Filters-Applied", "artifactType".to_string()));
    }
    with_headers((StatusCode::OK, index.to_string()).into_response(), &pairs)
}

fn delete_manifest(s: &Store, name: &str, reference: &str) -> Response {
    if let Err(r) = check_name(name) {
        return r.into_response();
    }
    if !reference.contains(':') {
        return match s.delete_tag(name, reference) {
            Ok(true) => StatusCode::ACCEPTED.into_response(),
            Ok(false) => manifest_unknown(reference),
            Err(e) => internal(e),
        };
    }
    if let Err(r) = check_digest(reference) {
        return r.into_response();
    }
    match s.delete_manifest(name, reference) {
        Ok(true) => StatusCode::ACCEPTED.into_response(),
        Ok(false) => manifest_unknown(reference),
        Err(e) => internal(e),
    }
}

fn blob_unknown(d: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "BLOB_UNKNOWN",
        format!("blob unknown to registry: {d}"),
    )
}

/// `bytes=START-[END]` of a Range header.
fn range_of(headers: &HeaderMap) -> Option<(u64, Option<u64>)> {
    let v = headers.get(header::RANGE)?.to_str().ok()?;
    let (a, b) = v.strip_prefix("bytes=")?.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()))
}

fn get_blob(s: &Store, name: &str, digest: &str, headers: &HeaderMap, head: bool) -> Response {
    if let Err(r) = check_name(name).and_then(|_| check_digest(digest)) {
        return r.into_response();
    }
    if !s.blob_in_repo(name, digest) {
        return blob_unknown(digest);
    }
    let range = range_of(headers);
    let start = range.map_or(0, |r| r.0);
    let blob = match s.open_blob(digest, start) {
        Ok(Some(b)) => b,
        Ok(None) => return blob_unknown(digest),
        Err(e) => return internal(e),
    };
    let size = blob.size;
    if start > 0 && start >= size {
        return with_headers(
            StatusCode::RANGE_NOT_SATISFIABLE.into_response(),
            &[("Content-Range", format!("bytes */{size}"))],
        );
    }
    let end = range
        .and_then(|r| r.1)
        .map_or(size.saturating_sub(1), |e| e.min(size.saturating_sub(1)));
    let len = if size == 0 { 0 } else { end + 1 - start };
    let mut pairs = vec![
        ("Docker-Content-Digest", digest.to_string()),
        ("Content-Type", "application/octet-stream".to_string()),
        ("Content-Length", len.to_string()),
        ("Accept-Ranges", "bytes".to_string()),
    ];
    let status = if range.is_some() {
        pairs.push(("Content-Range", format!("bytes {start}-{end}/{size}")));
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    if head {
        return with_headers(status.into_response(), &pairs);
    }
    let body = match blob.body {
        BlobBody::Mapped(bytes) => {
            // In slices, so that a slow reader is sent to as it reads.
            let bytes = bytes.slice(..len as usize);
            let chunks = (0..bytes.len()).step_by(1 << 20).map(move |i| {
                Ok::<_, std::io::Error>(bytes.slice(i..(i + (1 << 20)).min(bytes.len())))
            });
            Body::from_stream(futures_util::stream::iter(chunks.collect::<Vec<_>>()))
        }
        BlobBody::Reader(r) => Body::from_stream(read_stream(r, len)),
    };
    with_headers((status, body).into_response(), &pairs)
}

/// `len` bytes of a blocking reader as a body stream, read off the async
/// threads.
fn read_stream(
    mut reader: Box<dyn std::io::Read + Send>,
    len: u64,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let mut left = len;
        while left > 0 {
            // A fresh buffer per chunk, handed over without a copy.
            let want = (1usize << 20).min(left as usize);
            let mut buf = bytes::BytesMut::zeroed(want);
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    left -= n as u64;
                    buf.truncate(n);
                    if tx.blocking_send(Ok(buf.freeze())).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    tokio_stream_of(rx)
}

fn tokio_stream_of<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) })
}

fn delete_blob(s: &Store, name: &str, digest: &str) -> Response {
    if let Err(r) = check_name(name).and_then(|_| check_digest(digest)) {
        return r.into_response();
    }
    match s.unlink_blob(name, digest) {
        Ok(true) => StatusCode::ACCEPTED.into_response(),
        Ok(false) => blob_unknown(digest),
        Err(e) => internal(e),
    }
}

fn upload_location(name: &str, id: &str, size: u64) -> Vec<(&'static str, String)> {
    vec![
        ("Location", format!("/v2/{name}/blobs/uploads/{id}")),
        ("Range", format!("0-{}", size.saturating_sub(1))),
        ("Docker-Upload-UUID", id.to_string()),
    ]
}

fn blob_created(name: &str, digest: &str) -> Response {
    with_headers(
        StatusCode::CREATED.into_response(),
        &[
            ("Location", format!("/v2/{name}/blobs/{digest}")),
            ("Docker-Content-Digest", digest.to_string()),
        ],
    )
}

/// Appends a request body to an upload; its size after.
async fn append_body(s: &Store, id: &str, body: Body) -> Result<u64, DistError> {
    let unknown = || {
        reject(
            StatusCode::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
            "blob upload unknown to registry",
        )
    };
    let mut size = s.upload_size(id).map_err(failed)?.ok_or_else(unknown)?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(failed)?;
        size = s
            .append_upload(id, &chunk)
            .map_err(failed)?
            .ok_or_else(unknown)?;
    }
    Ok(size)
}

/// Makes an upload the blob `digest` of `name`.
fn commit(s: &Store, name: &str, id: &str, digest: &str) -> Response {
    match s.commit_upload(id, digest) {
        Ok(_) => match s.link_blob(name, digest) {
            Ok(()) => blob_created(name, digest),
            Err(e) => internal(e),
        },
        Err(CommitError::UnknownUpload) => upload_unknown(),
        Err(CommitError::DigestMismatch { actual }) => error(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            format!("provided digest {digest} does not match the content's {actual}"),
        ),
        Err(CommitError::Io(e)) => internal(e),
    }
}

async fn start_upload(s: &Store, name: &str, uri: &axum::http::Uri, body: Body) -> Response {
    if let Err(r) = check_name(name) {
        return r.into_response();
    }
    // Cross-repository mount: the blob is linked here at once when the
    // registry has it in the other repository.
    if let Some(d) = query_param(uri, "mount") {
        if let Err(r) = check_digest(&d) {
            return r.into_response();
        }
        let from = query_param(uri, "from").unwrap_or_default();
        if valid_name(&from) && s.blob_in_repo(&from, &d) {
            return match s.link_blob(name, &d) {
                Ok(()) => blob_created(name, &d),
                Err(e) => internal(e),
            };
        }
    }
    let id = match s.start_upload() {
        Ok(id) => id,
        Err(e) => return internal(e),
    };
    // Monolithic: the whole blob in this POST, with its digest.
    if let Some(d) = query_param(uri, "digest") {
        if let Err(r) = check_digest(&d) {
            let _ = s.cancel_upload(&id);
            return r.into_response();
        }
        if let Err(r) = append_body(s, &id, body).await {
            let _ = s.cancel_upload(&id);
            return r.into_response();
        }
        return commit(s, name, &id, &d);
    }
    with_headers(
        StatusCode::ACCEPTED.into_response(),
        &upload_location(name, &id, 0),
    )
}

async fn patch_upload(
    s: &Store,
    name: &str,
    id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    if let Err(r) = check_name(name) {
        return r.into_response();
    }
    let size = match s.upload_size(id) {
        Ok(Some(n)) => n,
        Ok(None) => return upload_unknown(),
        Err(e) => return internal(e),
    };
    // A chunk must continue the upload where it stands.
    if let Some(start) = headers
        .get(header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.trim_start_matches("bytes ")
                .split('-')
                .next()?
                .parse::<u64>()
                .ok()
        })
    {
        if start != size {
            return with_headers(
                error(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "BLOB_UPLOAD_INVALID",
                    format!("chunk starts at {start}, the upload has {size} bytes"),
                ),
                &upload_location(name, id, size),
            );
        }
    }
    match append_body(s, id, body).await {
        Ok(size) => with_headers(
            StatusCode::ACCEPTED.into_response(),
            &upload_location(name, id, size),
        ),
        Err(r) => r.into_response(),
    }
}

async fn put_upload(
    s: &Store,
    name: &str,
    id: &str,
    uri: &axum::http::Uri,
    body: Body,
) -> Response {
    if let Err(r) = check_name(name) {
        return r.into_response();
    }
    let Some(d) = query_param(uri, "digest") else {
        return error(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            "the digest parameter is required",
        );
    };
    if let Err(r) = check_digest(&d) {
        return r.into_response();
    }
    if let Err(r) = append_body(s, id, body).await {
        return r.into_response();
    }
    commit(s, name, id, &d)
}

fn upload_status(s: &Store, name: &str, id: &str) -> Response {
    if let Err(r) = check_name(name) {
        return r.into_response();
    }
    match s.upload_size(id) {
        Ok(Some(n)) => with_headers(
            StatusCode::NO_CONTENT.into_response(),
            &upload_location(name, id, n),
        ),
        Ok(None) => upload_unknown(),
        Err(e) => internal(e),
    }
}

#[cfg(test)]
mod tests;
