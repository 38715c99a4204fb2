//! Hijacked and streamed container I/O: attach, logs, and exec.

use crate::*;

pub(crate) async fn container_attach<B: ContainerBackend>(
    State(s): State<AppState<B>>,
    Path(id): Path<String>,
    q: Q,
    req: Request,
) -> ApiResult {
    let (stdout, stderr) = (q.bool("stdout"), q.bool("stderr"));
    let keys = hijack::detach_keys(q.get("detachKeys"))?;
    let tty = s.backend.container_tty(&id)?;
    s.backend.check_attach(&id)?;
    // `logs`: what the container wrote so far comes first; `stream`: then
    // its live output (without it the answer ends after the logs).
    let mut history = match q.bool("logs") && (stdout || stderr) {
        true => Some(s.backend.logs(
            &id,
            LogOptions {
                stdout,
                stderr,
                ..Default::default()
            },
        )?),
        false => None,
    };
    let live = match q.bool("stream") {
        true => Some(s.backend.attach(&id, q.bool("stdin"), stdout, stderr)?.0),
        false => None,
    };
    // Detach keys act only on a terminal, as dockerd's.
    let keys = if tty { keys } else { None };
    Ok(hijack::upgrade(req, tty, move |mut client| async move {
        use tokio::io::AsyncWriteExt;
        if let Some(rx) = history.as_mut() {
            while let Some(chunk) = rx.recv().await {
                if client.write_all(&chunk).await.is_err() {
                    return;
                }
            }
        }
        match live {
            Some(fut) => match fut.await {
                Ok(shim) => hijack::pump(client, shim, keys, async {}).await,
                Err(e) => tracing::debug!("attach: {e}"),
            },
            None => {
                let _ = client.shutdown().await;
            }
        }
    }))
}

pub(crate) async fn container_logs<B: ContainerBackend>(
    State(s): State<AppState<B>>,
    Path(id): Path<String>,
    q: Q,
) -> ApiResult {
    let opts = LogOptions {
        stdout: q.bool("stdout"),
        stderr: q.bool("stderr"),
        follow: q.bool("follow"),
        timestamps: q.bool("timestamps"),
        tail: q.get("tail").and_then(|t| t.parse().ok()),
        since: q
            .get("since")
            .and_then(berth_engine::parse_time)
            .filter(|t| *t > 0.0),
        until: q
            .get("until")
            .and_then(berth_engine::parse_time)
            .filter(|t| *t > 0.0),
    };
    if !opts.stdout && !opts.stderr {
        return Err(ApiError::bad(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    let tty = s.backend.container_tty(&id)?;
    let rx = s.backend.logs(&id, opts)?;
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::io::Error>(bytes::Bytes::from(b)), rx))
    });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(if tty {
            "application/vnd.docker.raw-stream"
        } else {
            "application/vnd.docker.multiplexed-stream"
        }),
    );
    Ok(r)
}

pub(crate) async fn exec_create<B: ExecBackend>(
    State(s): State<AppState<B>>,
    Path(id): Path<String>,
    body: bytes::Bytes,
) -> ApiResult {
    let cfg: ExecConfig = parse_json(&body)?;
    let exec_id = s.backend.exec_create(&id, cfg)?;
    Ok((StatusCode::CREATED, axum::Json(json!({"Id": exec_id}))).into_response())
}

pub(crate) async fn exec_start<B: ExecBackend>(
    State(s): State<AppState<B>>,
    Path(id): Path<String>,
    req: Request,
) -> ApiResult {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .map_err(|e| ApiError::bad(e.to_string()))?;
    let start: ExecStart = parse_json(&bytes)?;
    let req = Request::from_parts(parts, Body::empty());
    // As dockerd: no console size without a terminal.
    let console = start
        .console_size
        .as_ref()
        .filter(|c| c.len() == 2 && start.tty)
        .map(|c| (c[0], c[1]));
    let engine = s.backend.clone();
    if start.detach {
        engine.exec_start_detached(&id, console).await?;
        return Ok(StatusCode::OK.into_response());
    }
    // As dockerd: the stream is up before the process starts, so that a
    // client still reading the 101 response cannot miss its first output.
    let prepared = engine.exec_prepare(&id, false, console)?;
    // The process has a terminal or not as the exec was created; the
    // stream is framed as this start request says.
    let tty = start.tty;
    let reframe = match (prepared.tty, tty) {
        (false, true) => Some(hijack::Reframe::Deframe),
        (true, false) => Some(hijack::Reframe::Frame),
        _ => None,
    };
    // Detach keys act only on a terminal, as dockerd's.
    let keys = match prepared.tty {
        true => hijack::detach_keys(Some(&prepared.detach_keys))?,
        false => None,
    };
    Ok(hijack::upgrade(req, tty, move |mut client| async move {
        match engine.exec_launch(prepared).await {
            Ok(Some(shim)) => {
                let done = engine.exec_finished(&id);
                match reframe {
                    Some(mode) => {
                        hijack::pump(client, hijack::Reframed::new(shim, mode), keys, done).await
                    }
                    None => hijack::pump(client, shim, keys, done).await,
                }
            }
            Ok(None) => {}
            Err(e) => {
                use tokio::io::AsyncWriteExt;
                let text = format!("{e}\r\n");
                if !tty {
                    let _ = client
                        .write_all(&berth_api::stream::frame_header(
                            berth_api::stream::STDOUT,
                            text.len(),
                        ))
                        .await;
                }
                let _ = client.write_all(text.as_bytes()).await;
                let _ = client.shutdown().await;
            }
        }
    }))
}

pub(crate) async fn exec_resize<B: ExecBackend>(
    State(s): State<AppState<B>>,
    Path(id): Path<String>,
    q: Q,
) -> ApiResult {
    let h = q.int("h")?.unwrap_or(0) as u16;
    let w = q.int("w")?.unwrap_or(0) as u16;
    s.backend.exec_resize(&id, h, w).await?;
    Ok(StatusCode::OK.into_response())
}

pub(crate) async fn exec_inspect<B: ExecBackend>(
    State(s): State<AppState<B>>,
    Path(id): Path<String>,
) -> ApiResult {
    Ok(json_response(s.backend.exec_inspect(&id)?))
}
