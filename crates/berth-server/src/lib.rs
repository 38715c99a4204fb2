#![recursion_limit = "256"]
//! The Docker Engine API over HTTP: the route table, hijacked streams (attach,
//! exec) and one map from engine errors to status codes.

mod build;
mod containers;
mod hijack;
mod images;
mod networks;
mod streams;
mod system;

use build::*;
use containers::*;
use networks::*;
use streams::*;
use system::*;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use berth_api::{CreateRequest, ExecConfig, ExecStart, API_VERSION, MIN_API_VERSION};
use berth_engine::backend::{
    Backend, Backends, BuildBackend, ContainerBackend, ExecBackend, ImageBackend, NetworkBackend,
    SystemBackend, VolumeBackend,
};
use berth_engine::{EngineError, LogOptions};
use serde_json::json;
use std::sync::Arc;

/// A router's state: the engine's part it may use, and facts about the daemon.
#[derive(Clone)]
pub struct AppState<B> {
    pub backend: B,
    pub daemon: Arc<DaemonInfo>,
}

/// Facts about the daemon that `/info` reports.
#[derive(Debug, Clone, Default)]
pub struct DaemonInfo {
    pub id: String,
    pub data_root: String,
    pub exec_root: String,
    pub version: String,
    /// Where to append every whole JSON answer (`BERTH_API_RECORD_DIR`), for
    /// the test layer that checks them against Docker's API schema.
    pub api_record: Option<std::path::PathBuf>,
}

/// The connection's socket, so that long streams (builds) notice a client
/// that went away even while they have nothing to write.
#[derive(Clone, Copy, Debug)]
pub struct ConnFd(pub std::os::fd::RawFd);

impl
    axum::extract::connect_info::Connected<
        axum::serve::IncomingStream<'_, tokio::net::UnixListener>,
    > for ConnFd
{
    fn connect_info(s: axum::serve::IncomingStream<'_, tokio::net::UnixListener>) -> Self {
        use std::os::fd::AsRawFd;
        ConnFd(s.io().as_raw_fd())
    }
}

impl
    axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, tokio::net::TcpListener>>
    for ConnFd
{
    fn connect_info(s: axum::serve::IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        use std::os::fd::AsRawFd;
        ConnFd(s.io().as_raw_fd())
    }
}

/// Resolves when the peer of `fd` (a dup of a live connection) hangs up.
fn watch_hangup(
    fd: std::os::fd::OwnedFd,
    done: tokio::sync::watch::Receiver<bool>,
) -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::task::spawn_blocking(move || {
        use std::os::fd::AsRawFd;
        loop {
            if *done.borrow() {
                return;
            }
            let mut p = libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLRDHUP,
                revents: 0,
            };
            // SAFETY: one valid pollfd; the fd is ours (a dup) for the whole call.
            let n = unsafe { libc::poll(&mut p, 1, 250) };
            if n > 0 && p.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0 {
                let _ = tx.send(true);
                return;
            }
        }
    });
    rx
}

/// One error type for every handler; the status code lives here and nowhere else.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl ApiError {
    pub fn bad(msg: impl Into<String>) -> Self {
        ApiError(StatusCode::BAD_REQUEST, msg.into())
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let code = match &e {
            EngineError::NotFound(_) | EngineError::Missing { .. } => StatusCode::NOT_FOUND,
            EngineError::Conflict(_) => StatusCode::CONFLICT,
            EngineError::Forbidden(_) => StatusCode::FORBIDDEN,
            EngineError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            EngineError::BadRequest(_)
            | EngineError::BuildStep { .. }
            | EngineError::StartFailed { .. } => StatusCode::BAD_REQUEST,
            EngineError::NotModified => StatusCode::NOT_MODIFIED,
            EngineError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            EngineError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
        };
        ApiError(code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.0 == StatusCode::NOT_MODIFIED {
            return StatusCode::NOT_MODIFIED.into_response();
        }
        let msg = berth_api::go_error_text(&self.1);
        (self.0, axum::Json(json!({"message": msg}))).into_response()
    }
}

type ApiResult<T = Response> = Result<T, ApiError>;

/// Query parameters, repeated keys kept (`changes=…&changes=…`).
pub struct Q(Vec<(String, String)>);

impl Q {
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
    }
    pub fn str(&self, k: &str) -> String {
        self.get(k).unwrap_or_default().to_string()
    }
    pub fn all(&self, k: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(a, _)| a == k)
            .map(|(_, v)| v.clone())
            .collect()
    }
    pub fn bool(&self, k: &str) -> bool {
        matches!(self.get(k), Some("1" | "true" | "True" | "TRUE" | "yes"))
    }
    pub fn int(&self, k: &str) -> ApiResult<Option<i64>> {
        match self.get(k) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| ApiError::bad(format!("invalid value for {k}: {v}"))),
        }
    }
    pub fn filters(&self) -> ApiResult<std::collections::HashMap<String, Vec<String>>> {
        berth_api::parse_filters(self.get("filters").unwrap_or_default()).map_err(ApiError::bad)
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Q {
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        s: &S,
    ) -> Result<Self, Self::Rejection> {
        let Query(v) = Query::<Vec<(String, String)>>::from_request_parts(parts, s)
            .await
            .map_err(|e| ApiError::bad(e.to_string()))?;
        Ok(Q(v))
    }
}

/// Parses a JSON body, answering 400 with the parser's words on bad input.
fn parse_json<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> ApiResult<T> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("invalid JSON: {e}")))
}

/// One line of a progress stream, as dockerd ends them.
fn progress_line(m: &berth_api::JsonMessage) -> bytes::Bytes {
    let mut line = serde_json::to_vec(m).unwrap_or_default();
    line.extend_from_slice(b"\r\n");
    line.into()
}

fn json_response(v: impl serde::Serialize) -> Response {
    axum::Json(v).into_response()
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

type Chunks = tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>;

/// A response streaming JSON lines as a task sends them.
fn json_stream(rx: Chunks) -> Response {
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut r = Response::new(Body::from_stream(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

async fn images_prune<B: ImageBackend>(State(s): State<AppState<B>>, q: Q) -> ApiResult {
    let (items, space) = s.backend.prune_images(&q.filters()?)?;
    Ok(json_response(berth_api::ImagePruneReport {
        images_deleted: (!items.is_empty()).then_some(items),
        space_reclaimed: space,
    }))
}

/// Swarm mode's endpoints, until it exists: dockerd's answers for a node
/// that is in no swarm (503), which clients tell apart from a missing route.
async fn no_swarm(req: Request) -> ApiResult {
    let (parts, body) = req.into_parts();
    drain(body).await;
    let msg = match parts.uri.path() {
        "/swarm/leave" => "This node is not part of a swarm",
        "/swarm/init" | "/swarm/join" => {
            "Swarm mode is not available in this version of berthd: it cannot init or join a swarm"
        }
        _ => {
            "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again."
        }
    };
    Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, msg.into()))
}

/// Reads (a bounded amount of) a body the answer does not need: a client
/// still sending it when the connection closed would get EPIPE instead of
/// the answer.
async fn drain(body: Body) {
    let _ = axum::body::to_bytes(body, 1 << 20).await;
}

async fn not_found<B: ContainerBackend>(State(s): State<AppState<B>>, req: Request) -> ApiResult {
    let (parts, body) = req.into_parts();
    drain(body).await;
    // `docker rm --link /parent/alias`: a link's name has slashes in it.
    if parts.method == axum::http::Method::DELETE {
        if let Some(name) = parts.uri.path().strip_prefix("/containers/") {
            let link = parts
                .uri
                .query()
                .is_some_and(|q| q.split('&').any(|kv| matches!(kv, "link=1" | "link=true")));
            if link {
                let name = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
                s.backend.remove_link(&name).await?;
                return Ok(no_content());
            }
        }
    }
    let req = Request::from_parts(parts, Body::empty());
    Err(ApiError(
        StatusCode::NOT_FOUND,
        format!("page not found: {} {}", req.method(), req.uri().path()),
    ))
}

/// The whole route table: one router per kind, each over its own backend.
pub fn router<B: Backends>(state: AppState<B>) -> Router {
    Router::new()
        .merge(system_routes(state.clone()))
        .merge(container_routes(state.clone()))
        .merge(exec_routes(state.clone()))
        .merge(image_routes(state.clone()))
        .merge(network_routes(state.clone()))
        .merge(volume_routes(state.clone()))
        .merge(build_routes(state.clone()))
        .merge(swarm_routes())
        .merge(Router::new().fallback(not_found::<B>).with_state(state))
}

pub fn system_routes<B: SystemBackend>(state: AppState<B>) -> Router {
    Router::new()
        .route("/_ping", get(ping).head(ping))
        .route("/version", get(version::<B>))
        .route("/info", get(info::<B>))
        .route("/events", get(events::<B>))
        .route("/system/df", get(system_df::<B>))
        .with_state(state)
}

pub fn container_routes<B: ContainerBackend>(state: AppState<B>) -> Router {
    Router::new()
        .route("/containers/json", get(containers_list::<B>))
        .route("/containers/create", post(container_create::<B>))
        .route("/containers/prune", post(containers_prune::<B>))
        .route(
            "/containers/{id}",
            axum::routing::delete(container_delete::<B>),
        )
        .route("/containers/{id}/json", get(container_inspect::<B>))
        .route("/containers/{id}/start", post(container_start::<B>))
        .route("/containers/{id}/stop", post(container_stop::<B>))
        .route("/containers/{id}/restart", post(container_restart::<B>))
        .route("/containers/{id}/kill", post(container_kill::<B>))
        .route("/containers/{id}/pause", post(container_pause::<B>))
        .route("/containers/{id}/unpause", post(container_unpause::<B>))
        .route("/containers/{id}/rename", post(container_rename::<B>))
        .route("/containers/{id}/resize", post(container_resize::<B>))
        .route("/containers/{id}/wait", post(container_wait::<B>))
        .route("/containers/{id}/logs", get(container_logs::<B>))
        .route("/containers/{id}/attach", post(container_attach::<B>))
        .route("/containers/{id}/top", get(container_top::<B>))
        .route("/containers/{id}/stats", get(container_stats::<B>))
        .route("/containers/{id}/export", get(container_export::<B>))
        .route("/containers/{id}/update", post(container_update::<B>))
        .route("/containers/{id}/changes", get(container_changes::<B>))
        .route(
            "/containers/{id}/archive",
            get(archive_get::<B>)
                .head(archive_head::<B>)
                .put(archive_put::<B>),
        )
        .with_state(state)
}

pub fn exec_routes<B: ExecBackend>(state: AppState<B>) -> Router {
    Router::new()
        .route("/containers/{id}/exec", post(exec_create::<B>))
        .route("/exec/{id}/start", post(exec_start::<B>))
        .route("/exec/{id}/resize", post(exec_resize::<B>))
        .route("/exec/{id}/json", get(exec_inspect::<B>))
        .with_state(state)
}

pub fn image_routes<B: ImageBackend>(state: AppState<B>) -> Router {
    Router::new()
        .route("/images/json", get(images::list::<B>))
        .route("/images/create", post(images::create::<B>))
        .route("/distribution/{*rest}", get(images::distribution::<B>))
        .route("/auth", post(images::auth::<B>))
        .route("/images/load", post(images::load::<B>))
        .route("/images/get", get(images::save_many::<B>))
        .route("/images/prune", post(images_prune::<B>))
        .route(
            "/images/{*rest}",
            get(images::by_name_get::<B>)
                .post(images::by_name_post::<B>)
                .delete(images::by_name_delete::<B>),
        )
        .route("/commit", post(commit::<B>))
        .with_state(state)
}

pub fn network_routes<B: NetworkBackend>(state: AppState<B>) -> Router {
    Router::new()
        .route("/networks", get(networks_list::<B>))
        .route("/networks/create", post(network_create::<B>))
        .route("/networks/prune", post(networks_prune::<B>))
        .route(
            "/networks/{id}",
            get(network_inspect::<B>).delete(network_delete::<B>),
        )
        .route("/networks/{id}/connect", post(network_connect::<B>))
        .route("/networks/{id}/disconnect", post(network_disconnect::<B>))
        .with_state(state)
}

pub fn volume_routes<B: VolumeBackend>(state: AppState<B>) -> Router {
    Router::new()
        .route("/volumes", get(volumes_list::<B>))
        .route("/volumes/create", post(volume_create::<B>))
        .route("/volumes/prune", post(volumes_prune::<B>))
        .route(
            "/volumes/{name}",
            get(volume_inspect::<B>).delete(volume_delete::<B>),
        )
        .with_state(state)
}

pub fn build_routes<B: BuildBackend>(state: AppState<B>) -> Router {
    Router::new()
        .route("/build", post(build::<B>))
        .route("/build/prune", post(build_prune::<B>))
        .with_state(state)
}

fn swarm_routes() -> Router {
    let mut r = Router::new();
    for base in [
        "/swarm",
        "/nodes",
        "/services",
        "/tasks",
        "/secrets",
        "/configs",
    ] {
        r = r
            .route(base, any(no_swarm))
            .route(&format!("{base}/{{*rest}}"), any(no_swarm));
    }
    r
}

/// Strips `/v1.xx` and refuses versions outside what we speak.
fn version_gate(mut req: Request) -> Result<Request, ApiError> {
    let path = req.uri().path().to_string();
    let (ver, rest) = berth_api::split_version(&path);
    if let Some(v) = ver {
        if berth_api::version_cmp(v, API_VERSION).is_gt() {
            return Err(ApiError::bad(format!(
                "client version {v} is too new. Maximum supported API version is {API_VERSION}"
            )));
        }
        if berth_api::version_cmp(v, MIN_API_VERSION).is_lt() {
            return Err(ApiError::bad(format!(
                "client version {v} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
            )));
        }
        let new = match req.uri().query() {
            Some(q) => format!("{rest}?{q}"),
            None => rest.to_string(),
        };
        if let Ok(u) = new.parse() {
            *req.uri_mut() = u;
        }
    }
    Ok(req)
}

/// The whole API as one service: version gate in front of the routes.
pub fn app<B: Backends>(state: AppState<B>) -> Router {
    let record = state.daemon.api_record.clone().map(Arc::new);
    let inner = router(state);
    Router::new().fallback_service(tower::service_fn(move |req: Request| {
        let inner = inner.clone();
        let record = record.clone();
        async move {
            use tower::ServiceExt;
            let req = match version_gate(req) {
                Ok(req) => req,
                Err(e) => return Ok(e.into_response()),
            };
            let Some(record) = record else {
                return inner.oneshot(req).await;
            };
            let method = req.method().to_string();
            let path = req.uri().path().to_string();
            let resp = inner.oneshot(req).await?;
            Ok(record_answer(&record, &method, &path, resp).await)
        }
    }))
}

/// Appends a JSON answer to the record: one line of method, path, status
/// and body; a streamed answer (events, wait) gives one line per JSON line.
async fn record_answer(file: &std::path::Path, method: &str, path: &str, r: Response) -> Response {
    use axum::body::HttpBody;
    use futures_util::StreamExt;
    let json = r
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !json {
        return r;
    }
    let (parts, body) = r.into_parts();
    let line = {
        let (file, method, path) = (file.to_path_buf(), method.to_string(), path.to_string());
        let status = parts.status.as_u16();
        move |body: &[u8]| {
            let mut l = json!({
                "method": method, "path": path, "status": status,
                "body": String::from_utf8_lossy(body),
            })
            .to_string();
            l.push('\n');
            // One write of an O_APPEND file: lines from concurrent answers never mix.
            let _ = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&file)
                .and_then(|mut f| std::io::Write::write_all(&mut f, l.as_bytes()));
        }
    };
    if body.size_hint().exact().is_some() {
        let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
            return Response::from_parts(parts, Body::empty());
        };
        line(&bytes);
        return Response::from_parts(parts, Body::from(bytes));
    }
    let mut pending: Vec<u8> = Vec::new();
    let stream = body.into_data_stream().map(move |chunk| {
        if let Ok(c) = &chunk {
            pending.extend_from_slice(c);
            while let Some(i) = pending.iter().position(|b| *b == b'\n') {
                let l: Vec<u8> = pending.drain(..=i).collect();
                if l.iter().any(|b| !b.is_ascii_whitespace()) {
                    line(&l);
                }
            }
        }
        chunk
    });
    Response::from_parts(parts, Body::from_stream(stream))
}
