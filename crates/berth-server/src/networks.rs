//! The `/networks` and `/volumes` routes.

use crate::*;

pub(crate) async fn networks_prune(State(s): State<AppState>, q: Q) -> ApiResult {
    let names = s.engine.network_prune(&q.filters()?)?;
    Ok(json_response(json!({"NetworksDeleted": names})))
}

pub(crate) async fn networks_list(State(s): State<AppState>, q: Q) -> ApiResult {
    Ok(json_response(s.engine.network_list(&q.filters()?)?))
}

pub(crate) async fn network_inspect(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult {
    Ok(json_response(s.engine.network_inspect(&id)?))
}

pub(crate) async fn network_create(State(s): State<AppState>, body: bytes::Bytes) -> ApiResult {
    let v: Value = parse_json(&body)?;
    let e = s.engine.clone();
    let out = tokio::task::spawn_blocking(move || e.network_create(&v))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok((StatusCode::CREATED, axum::Json(out)).into_response())
}

pub(crate) async fn network_connect(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: bytes::Bytes,
) -> ApiResult {
    let v: Value = parse_json(&body)?;
    let container = v["Container"].as_str().unwrap_or_default().to_string();
    s.engine
        .network_connect(&id, &container, &v["EndpointConfig"])
        .await?;
    Ok(StatusCode::OK.into_response())
}

pub(crate) async fn network_disconnect(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: bytes::Bytes,
) -> ApiResult {
    let v: Value = parse_json(&body)?;
    let container = v["Container"].as_str().unwrap_or_default().to_string();
    // `Force` changes nothing here: there are no stale endpoints of gone
    // networks or other daemons to drop.
    s.engine.network_disconnect(&id, &container).await?;
    Ok(StatusCode::OK.into_response())
}

pub(crate) async fn network_delete(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let e = s.engine.clone();
    tokio::task::spawn_blocking(move || e.network_remove(&id))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(no_content())
}

pub(crate) async fn volumes_list(State(s): State<AppState>, q: Q) -> ApiResult {
    Ok(json_response(s.engine.volume_list(&q.filters()?)?))
}

pub(crate) async fn volume_create(State(s): State<AppState>, body: bytes::Bytes) -> ApiResult {
    let req: berth_api::VolumeCreateRequest = parse_json(&body)?;
    Ok((
        StatusCode::CREATED,
        axum::Json(s.engine.volume_create(req)?),
    )
        .into_response())
}

pub(crate) async fn volume_inspect(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult {
    Ok(json_response(s.engine.volume_inspect(&name)?))
}

pub(crate) async fn volume_delete(
    State(s): State<AppState>,
    Path(name): Path<String>,
    q: Q,
) -> ApiResult {
    s.engine.volume_remove(&name, q.bool("force"))?;
    Ok(no_content())
}

pub(crate) async fn volumes_prune(State(s): State<AppState>, q: Q) -> ApiResult {
    let (names, space) = s.engine.volume_prune(&q.filters()?)?;
    Ok(json_response(
        json!({"VolumesDeleted": names, "SpaceReclaimed": space}),
    ))
}
