//! `/images/*`: list, inspect, import, tag, rmi, history, save and load.

use crate::{
    json_response, progress_line, ApiError, ApiResult, AppState, Backend, ImageBackend, Q,
};
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_api::JsonMessage;
use berth_engine::images::registry::{AuthConfig, Sink};
use futures_util::StreamExt;
use std::io::Write;

pub async fn list<B: ImageBackend>(State(s): State<AppState<B>>, q: Q) -> ApiResult {
    Ok(json_response(
        s.backend.images(q.bool("all"), &q.filters()?)?,
    ))
}

/// Spools a request body to an unlinked temp file under the data root.
pub(crate) async fn spool<B: Backend>(s: &AppState<B>, body: Body) -> ApiResult<std::fs::File> {
    let mut f = s.backend.scratch_file("upload")?;
    let mut stream = body.into_data_stream();
    let mut failed = None;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad(format!("reading body: {e}")))?;
        if failed.is_none() {
            failed = f.write_all(&chunk).err();
        }
    }
    // Read to the end even after a failed write (a full disk): a client
    // still sending when the connection closes sees a broken pipe instead
    // of the error.
    if let Some(e) = failed {
        return Err(crate::ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
        ));
    }
    use std::io::Seek;
    f.rewind().map_err(|e| ApiError::bad(e.to_string()))?;
    Ok(f)
}

/// JSON messages as dockerd's progress streams send them: chunked, which
/// clients such as docker-py take as the sign to read message by message
/// (a sized body is parsed as one JSON document).
fn json_lines(lines: Vec<JsonMessage>) -> Response {
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> =
        lines.iter().map(|l| Ok(progress_line(l))).collect();
    let mut r = Response::new(Body::from_stream(futures_util::stream::iter(chunks)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

pub async fn create<B: ImageBackend>(
    State(s): State<AppState<B>>,
    q: Q,
    req: Request,
) -> ApiResult {
    if let Some(img) = q.get("fromImage") {
        let tag = q.str("tag");
        // The docker CLI sends a digest as the tag.
        let reference = match tag.as_str() {
            "" => img.to_string(),
            t if t.starts_with("sha256:") => format!("{img}@{t}"),
            t => format!("{img}:{t}"),
        };
        let opts = berth_engine::images::pull::PullOptions {
            reference,
            platform: q.get("platform").map(str::to_string),
            auth: registry_auth(req.headers()),
        };
        let engine = s.backend.clone();
        return progress_stream(move |tx| async move { engine.pull(opts, tx).await.map(drop) })
            .await;
    }
    if q.get("fromSrc") != Some("-") {
        return Err(ApiError::bad(
            "importing from a URL is not supported: no network is reachable; use fromSrc=-",
        ));
    }
    let repo = q.str("repo");
    let tag = q.str("tag");
    let reference = match (repo.is_empty(), tag.is_empty()) {
        (true, _) => None,
        (false, true) => Some(repo.clone()),
        (false, false) => Some(format!("{repo}:{tag}")),
    };
    let message = q
        .get("message")
        .filter(|m| !m.is_empty())
        .map(str::to_string);
    // Checked before the body is read: a bad name is answered at once.
    let opts = berth_engine::images::ImportOptions::new(reference, &q.all("changes"), message)?;
    let file = spool(&s, req.into_body()).await?;
    let id = s.backend.image_import(file, opts).await?;
    Ok(json_lines(vec![JsonMessage {
        status: Some(id),
        ..JsonMessage::default()
    }]))
}

pub async fn load<B: ImageBackend>(State(s): State<AppState<B>>, q: Q, req: Request) -> ApiResult {
    let file = spool(&s, req.into_body()).await?;
    let _ = q.bool("quiet");
    // As dockerd: the answer is a 200 stream whatever happens, and a tar
    // that cannot be loaded is an error message inside it.
    let rep = match s.backend.image_load(file).await {
        Ok(r) => r,
        Err(e) => {
            let msg = e.to_string();
            return Ok(json_lines(vec![JsonMessage::failure(msg, None)]));
        }
    };
    let mut lines: Vec<JsonMessage> = rep
        .tags
        .iter()
        .map(|t| JsonMessage::text(format!("Loaded image: {t}\n")))
        .collect();
    lines.extend(
        rep.ids
            .iter()
            .map(|i| JsonMessage::text(format!("Loaded image ID: {i}\n"))),
    );
    Ok(json_lines(lines))
}

async fn save<B: ImageBackend>(s: &AppState<B>, names: Vec<String>) -> ApiResult {
    let out = s.backend.scratch_file("save")?;
    tar_response(s.backend.image_save(names, out).await?)
}

/// A spooled tar (rewound here) streamed as the response body.
pub(crate) fn tar_response(mut file: std::fs::File) -> ApiResult {
    use std::io::Seek;
    file.rewind().map_err(|e| ApiError::bad(e.to_string()))?;
    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    Ok(r)
}

pub async fn save_many<B: ImageBackend>(State(s): State<AppState<B>>, q: Q) -> ApiResult {
    save(&s, q.all("names")).await
}

/// `rest` is `NAME/ACTION`, where NAME may itself hold slashes.
fn split_action(rest: &str) -> (&str, &str) {
    match rest.rfind('/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    }
}

pub async fn by_name_get<B: ImageBackend>(
    State(s): State<AppState<B>>,
    Path(rest): Path<String>,
) -> ApiResult {
    let (name, action) = split_action(&rest);
    match action {
        "json" => {
            let mut v = s.backend.image_inspect(name)?;
            // API 1.45 dropped these, but docker-compose 1.x (which negotiates
            // 1.45) reads ContainerConfig.Volumes whenever it recreates a
            // service and fails without it, against dockerd too. Extra fields
            // cost newer clients nothing.
            v.container = Some(String::new());
            v.container_config = Some(v.config.clone());
            Ok(json_response(v))
        }
        "history" => Ok(json_response(s.backend.image_history(name)?)),
        "get" => save(&s, vec![name.to_string()]).await,
        _ => Err(crate::ApiError(
            StatusCode::NOT_FOUND,
            format!("page not found: GET /images/{rest}"),
        )),
    }
}

pub async fn by_name_post<B: ImageBackend>(
    State(s): State<AppState<B>>,
    Path(rest): Path<String>,
    headers: axum::http::HeaderMap,
    q: Q,
) -> ApiResult {
    let (name, action) = split_action(&rest);
    match action {
        "tag" => {
            let repo = q.str("repo");
            let tag = q.str("tag");
            let target = if tag.is_empty() {
                repo
            } else {
                format!("{repo}:{tag}")
            };
            s.backend.image_tag(name, &target)?;
            Ok(StatusCode::CREATED.into_response())
        }
        "push" => {
            let opts = berth_engine::images::push::PushOptions {
                name: name.to_string(),
                tag: q.get("tag").map(str::to_string),
                auth: registry_auth(&headers),
            };
            let engine = s.backend.clone();
            progress_stream(move |tx| async move { engine.push(opts, tx).await }).await
        }
        _ => Err(crate::ApiError(
            StatusCode::NOT_FOUND,
            format!("page not found: POST /images/{rest}"),
        )),
    }
}

pub async fn by_name_delete<B: ImageBackend>(
    State(s): State<AppState<B>>,
    Path(rest): Path<String>,
    q: Q,
) -> ApiResult {
    Ok(json_response(
        s.backend.image_delete(&rest, q.bool("force"))?,
    ))
}

/// The credentials in `X-Registry-Auth`, when there are any.
fn registry_auth(h: &axum::http::HeaderMap) -> Option<AuthConfig> {
    h.get("x-registry-auth")
        .and_then(|v| v.to_str().ok())
        .and_then(AuthConfig::from_header)
}

/// Runs `op` (a pull or a push) and answers with its progress lines. An
/// error before the first line is the answer's status, as dockerd's; one
/// after it ends the stream as an error line.
async fn progress_stream<F, Fut>(op: F) -> ApiResult
where
    F: FnOnce(Sink) -> Fut,
    Fut: std::future::Future<Output = berth_engine::Result<()>> + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel::<JsonMessage>(256);
    let task = tokio::spawn(op(Sink(tx)));
    let Some(first) = rx.recv().await else {
        // The operation ended without a word.
        return match task.await {
            Ok(Ok(())) => Ok(json_lines(Vec::new())),
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
        };
    };
    let state = (Some(first), rx, Some(task));
    let stream = futures_util::stream::unfold(state, |(first, mut rx, task)| async move {
        let line = |m: &JsonMessage| Ok::<_, std::io::Error>(progress_line(m));
        if let Some(m) = first {
            return Some((line(&m), (None, rx, task)));
        }
        if let Some(m) = rx.recv().await {
            return Some((line(&m), (None, rx, task)));
        }
        let failure = match task?.await {
            Ok(Ok(())) => return None,
            Ok(Err(e)) => berth_api::go_error_text(&e.to_string()),
            Err(e) => e.to_string(),
        };
        Some((line(&JsonMessage::failure(failure, None)), (None, rx, None)))
    });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

/// `GET /distribution/{name}/json`
pub async fn distribution<B: ImageBackend>(
    State(s): State<AppState<B>>,
    Path(rest): Path<String>,
    headers: axum::http::HeaderMap,
) -> ApiResult {
    let Some(name) = rest.strip_suffix("/json") else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("page not found: GET /distribution/{rest}"),
        ));
    };
    Ok(json_response(
        s.backend
            .distribution_inspect(name, registry_auth(&headers))
            .await?,
    ))
}

/// `POST /auth`: dockerd checks the credentials with the registry; the
/// client keeps them.
pub async fn auth<B: ImageBackend>(State(s): State<AppState<B>>, body: bytes::Bytes) -> ApiResult {
    let creds: AuthConfig = crate::parse_json(&body)?;
    let token = s.backend.login(creds).await?;
    Ok(json_response(berth_api::AuthResponse {
        status: "Login Succeeded".into(),
        identity_token: token.unwrap_or_default(),
    }))
}
