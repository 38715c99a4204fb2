//! The `/containers/*` routes but attach, logs and exec (see streams.rs).

use crate::*;

pub(crate) async fn containers_list<B: ContainerBackend>(
    State(s): State<AppState<B>>,
    q: Q,
) -> ApiResult {
    let limit = q.int("limit")?.filter(|n| *n > 0).map(|n| n as usize);
    let v = s
        .backend
        .list(q.bool("all"), limit, q.bool("size"), &q.filters()?)?;
    Ok(json_response(v))
}

pub(crate) async fn container_create<B: ContainerBackend>(
    State(s): State<AppState<B>>,
    q: Q,
    body: bytes::Bytes,
) -> ApiResult {
    let req: CreateRequest = parse_json(&body)?;
    let name = q.get("name").filter(|n| !n.is_empty());
    let (id, warnings) = s.backend.create(name, req).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(berth_api::ContainerCreateResponse { id, warnings }),
    )
        .into_response())
}

pub(crate) async fn container_inspect<B: ContainerBackend>(
    State(s): State<AppState<B>>,
    Path(id): Path<String>,
    q: Q,
) -> ApiResult {
    Ok(json_response(s.backend.inspect(&id, q.bool("size"))?))
}

pub(crate) async fn container_start<B: ContainerBackend>(
    State(s): State<AppState<B>>,
    Path(id): Path<String>,
) -> ApiResult {
    s.backend.start(&id).await?;
    Ok(no_content())
}

pub(crate) async fn container_stop<B: ContainerBackend>(
    State(s): State<AppState<B>>,
    Path(id): Path<String>,
    q: Q,
) -> ApiResult {
    let sig = q.get("signal").filter(|v| !v.is_empty());
    s.backend.stop(&id, q.int("t")?, sig).await?;
    Ok(no_content())
}

pub(crate) async fn container_restart<B: ContainerBackend>(
    State(s): State<AppState<B>>,
    Path(id): Path<String>,
    q: Q,
) -> ApiResult {
    s.backend.restart(&id, q.int("t")?).await?;
    Ok(no_content())
}

pub(crate) async fn container_kill<B: ContainerBackend>(
    State(s): State<AppState<B>>,
    Path(id): Path<String>,
    q: Q,
) -> ApiResult {
    s.backend.kill(&id, &q.str("signal")).await?;
    Ok(no_content())
}

pub(crate) async fn container_pause<B: ContainerBackend>(
    State(s): State<AppState<B>>,
    Path(id): Path<String>,
) -> ApiResult {
    s.backend.pause(&id, true).await?;
    Ok(no_content())
}

pub(crate) async fn container_unpause<B: ContainerBackend>(
    State(s): State<AppState<B>>,
    Path(id): Path<String>,
) -> ApiResult {
    s.backend.pause(&id, false).await?;
    Ok(no_content())
}

pub(crate) async fn container_rename<B: ContainerBackend>(
    State(s): State<AppState<B>>,
    Path(id): Path<String>,
    q: Q,
) -> ApiResult {
    s.backend.rename(&id, &q.str("name"))?;
    Ok(no_content())
}

pub(crate) async fn container_resize<B: ContainerBackend>(
    State(s): State<AppState<B>>,
    Path(id): Path<String>,
    q: Q,
) -> ApiResult {
    let h = q.int("h")?.unwrap_or(0) as u16;
    let w = q.int("w")?.unwrap_or(0) as u16;
    s.backend.resize(&id, h, w).await?;
    Ok(StatusCode::OK.into_response())
}

pub(crate) async fn container_delete<B: ContainerBackend>(
    State(s): State<AppState<B>>,
    Path(id): Path<String>,
    q: Q,
) -> ApiResult {
    if q.bool("link") {
        s.backend.remove_link(&id).await?;
        return Ok(no_content());
    }
    s.backend.remove(&id, q.bool("force"), q.bool("v")).await?;
    Ok(no_content())
}

pub(crate) async fn containers_prune<B: ContainerBackend>(
    State(s): State<AppState<B>>,
    q: Q,
) -> ApiResult {
    let (ids, space) = s.backend.prune(&q.filters()?).await?;
    Ok(json_response(berth_api::ContainerPruneReport {
        containers_deleted: ids,
        space_reclaimed: space,
    }))
}

/// `docker stats`: one sample a second while `stream` (the default), else
/// one sample — after a second, so that it carries `precpu_stats`, unless
/// `one-shot`.
pub(crate) async fn container_stats<B: ContainerBackend>(
    State(s): State<AppState<B>>,
    Path(id): Path<String>,
    q: Q,
) -> ApiResult {
    let stream = q
        .get("stream")
        .is_none_or(|v| matches!(v, "1" | "true" | "True"));
    let first = s.backend.stats_sample(&id, None)?;
    if !stream {
        if q.bool("one-shot") || first.read == "0001-01-01T00:00:00Z" {
            return Ok(json_response(first));
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        return Ok(json_response(s.backend.stats_sample(&id, Some(&first))?));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(2);
    tokio::spawn(async move {
        let mut prev = first;
        loop {
            let mut line = serde_json::to_vec(&prev).unwrap_or_default();
            line.push(b'\n');
            if tx.send(Ok(line)).await.is_err() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            match s.backend.stats_sample(&id, Some(&prev)) {
                Ok(v) => prev = v,
                Err(_) => return,
            }
        }
    });
    Ok(json_stream(rx))
}

/// `docker cp`'s stat: the path's `X-Docker-Container-Path-Stat` header.
pub(crate) async fn archive_head<B: ContainerBackend>(
    State(s): State<AppState<B>>,
    Path(id): Path<String>,
    q: Q,
) -> ApiResult {
    let st = s.backend.archive_stat(&id, &archive_path(&q)?).await?;
    let mut r = StatusCode::OK.into_response();
    insert_path_stat(&mut r, &st);
    Ok(r)
}

pub(crate) async fn archive_get<B: ContainerBackend>(
    State(s): State<AppState<B>>,
    Path(id): Path<String>,
    q: Q,
) -> ApiResult {
    let path = archive_path(&q)?;
    let tmp = s.backend.scratch_file("archive")?;
    let (st, file) = s.backend.archive_get(&id, &path, tmp).await?;
    let mut r = images::tar_response(file)?;
    insert_path_stat(&mut r, &st);
    Ok(r)
}

pub(crate) async fn archive_put<B: ContainerBackend>(
    State(s): State<AppState<B>>,
    Path(id): Path<String>,
    q: Q,
    req: Request,
) -> ApiResult {
    let path = archive_path(&q)?;
    s.backend.find_container(&id)?;
    let file = images::spool(&s, req.into_body()).await?;
    s.backend
        .archive_put(&id, &path, file, q.bool("noOverwriteDirNonDir"))
        .await?;
    Ok(StatusCode::OK.into_response())
}

pub(crate) async fn container_update<B: ContainerBackend>(
    State(s): State<AppState<B>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let given: berth_api::HostConfig =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad(e.to_string()))?;
    Ok(json_response(s.backend.update(&id, given).await?))
}

pub(crate) async fn container_export<B: ContainerBackend>(
    State(s): State<AppState<B>>,
    Path(id): Path<String>,
) -> ApiResult {
    let tmp = s.backend.scratch_file("export")?;
    images::tar_response(s.backend.export(&id, tmp).await?)
}

pub(crate) fn archive_path(q: &Q) -> ApiResult<String> {
    match q.get("path") {
        Some(p) if !p.is_empty() => Ok(p.to_string()),
        _ => Err(ApiError::bad("path cannot be empty")),
    }
}

pub(crate) fn insert_path_stat(r: &mut Response, st: &berth_engine::archive::PathStat) {
    if let Ok(v) = HeaderValue::from_str(&st.header_value()) {
        r.headers_mut().insert("X-Docker-Container-Path-Stat", v);
    }
}

pub(crate) async fn container_changes<B: ContainerBackend>(
    State(s): State<AppState<B>>,
    Path(id): Path<String>,
) -> ApiResult {
    let list: Vec<berth_api::FilesystemChange> = s
        .backend
        .changes(&id)?
        .into_iter()
        .map(|c| berth_api::FilesystemChange {
            path: c.path,
            kind: c.kind as u8,
        })
        .collect();
    // dockerd answers null for no changes.
    Ok(json_response((!list.is_empty()).then_some(list)))
}

pub(crate) async fn container_top<B: ContainerBackend>(
    State(s): State<AppState<B>>,
    Path(id): Path<String>,
    q: Q,
) -> ApiResult {
    Ok(json_response(s.backend.top(&id, &q.str("ps_args")).await?))
}

pub(crate) async fn container_wait<B: ContainerBackend>(
    State(s): State<AppState<B>>,
    Path(id): Path<String>,
    q: Q,
) -> ApiResult {
    let cond = q.str("condition");
    if !matches!(cond.as_str(), "" | "not-running" | "next-exit" | "removed") {
        return Err(ApiError::bad(format!("invalid condition: \"{cond}\"")));
    }
    let fut = s.backend.wait(&id, &cond)?;
    // Headers go out now; the body when the condition is met. The CLI starts the
    // container only after it has the headers.
    let stream = futures_util::stream::once(async move {
        let answer = berth_api::ContainerWaitResponse {
            status_code: fut.await,
            error: None,
        };
        let mut line = serde_json::to_vec(&answer).unwrap_or_default();
        line.push(b'\n');
        Ok::<_, std::io::Error>(bytes::Bytes::from(line))
    });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

// ------------------------------------------------------------- fallbacks
