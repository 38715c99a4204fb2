//! `/build`, `/build/prune` and `/commit`.

use crate::*;
use berth_api::JsonMessage;

pub(crate) async fn commit<B: ImageBackend>(
    State(s): State<AppState<B>>,
    q: Q,
    body: bytes::Bytes,
) -> ApiResult {
    let config: Option<berth_api::ContainerConfig> = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(parse_json(&body)?)
    };
    let container = q.str("container");
    if container.is_empty() {
        return Err(ApiError::bad("No container specified"));
    }
    let repo = q.str("repo");
    let tag = q.str("tag");
    let reference = match (repo.is_empty(), tag.is_empty()) {
        (true, _) => String::new(),
        (false, true) => repo,
        (false, false) => format!("{repo}:{tag}"),
    };
    let opts = berth_engine::commit::CommitOptions {
        reference,
        comment: q.str("comment"),
        author: q.str("author"),
        changes: q
            .all("changes")
            .iter()
            .flat_map(|c| c.lines().map(str::to_string).collect::<Vec<_>>())
            .collect(),
        // Docker pauses by default; `pause=0` opts out.
        pause: q
            .get("pause")
            .is_none_or(|p| matches!(p, "1" | "true" | "True")),
        config,
    };
    let id = s.backend.commit(&container, opts).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(berth_api::IdResponse { id }),
    )
        .into_response())
}

pub(crate) async fn build<B: BuildBackend>(
    State(s): State<AppState<B>>,
    conn: Option<axum::Extension<axum::extract::ConnectInfo<ConnFd>>>,
    q: Q,
    body: Body,
) -> ApiResult {
    if q.get("remote").is_some_and(|r| !r.is_empty()) {
        return Err(ApiError::bad(
            "building from a remote context is not supported: no network is reachable",
        ));
    }
    let json_map = |k: &str| -> ApiResult<std::collections::HashMap<String, Option<String>>> {
        match q.get(k) {
            None | Some("") => Ok(Default::default()),
            Some(v) => {
                serde_json::from_str(v).map_err(|e| ApiError::bad(format!("invalid {k}: {e}")))
            }
        }
    };
    let json_list = |k: &str| -> ApiResult<Vec<String>> {
        match q.get(k) {
            None | Some("") => Ok(Vec::new()),
            Some(v) => serde_json::from_str::<Option<Vec<String>>>(v)
                .map(Option::unwrap_or_default)
                .map_err(|e| ApiError::bad(format!("invalid {k}: {e}"))),
        }
    };
    let labels = json_map("labels")?
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect();
    let opts = berth_engine::build::BuildOptions {
        tags: q.all("t"),
        dockerfile: q.str("dockerfile"),
        build_args: json_map("buildargs")?,
        target: q.str("target"),
        no_cache: q.bool("nocache"),
        labels,
        quiet: q.bool("q"),
        network: q.str("networkmode"),
        // `name:ip` each; the docker CLI repeats the parameter.
        extra_hosts: q
            .all("extrahosts")
            .iter()
            .flat_map(|h| h.split(','))
            .filter(|h| !h.is_empty())
            .map(str::to_string)
            .collect(),
        cache_from: json_list("cachefrom")?,
        force_remove: q.bool("forcerm"),
        cancel: None,
    };
    let file = images::spool(&s, body).await?;
    let ctx = s.backend.build_context(file).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<JsonMessage>(64);
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    let mut opts = opts;
    if let Some(axum::Extension(axum::extract::ConnectInfo(ConnFd(fd)))) = conn {
        // SAFETY: the connection is alive while its request is being handled.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        if let Ok(dup) = borrowed.try_clone_to_owned() {
            opts.cancel = Some(watch_hangup(dup, done_rx));
        }
    }
    let engine = s.backend.clone();
    tokio::spawn(async move {
        let res = engine.build(ctx, opts, tx.clone()).await;
        let _ = done_tx.send(true);
        if let Err(e) = res {
            let msg = berth_api::go_error_text(&e.to_string());
            let code = match &e {
                berth_engine::EngineError::BuildStep { code, .. } => *code,
                _ => 1,
            };
            let _ = tx.send(JsonMessage::failure(msg, Some(code))).await;
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let v = rx.recv().await?;
        Some((Ok::<_, std::io::Error>(crate::progress_line(&v)), rx))
    });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

pub(crate) async fn build_prune<B: BuildBackend>(State(s): State<AppState<B>>) -> ApiResult {
    let (ids, space) = s.backend.prune_build_cache()?;
    Ok(json_response(berth_api::BuildCachePruneReport {
        caches_deleted: ids,
        space_reclaimed: space,
    }))
}
