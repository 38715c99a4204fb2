//! The `/networks` and `/volumes` routes.

use crate::*;

pub(crate) async fn networks_prune<B: NetworkBackend>(
    State(s): State<AppState<B>>,
    q: Q,
) -> ApiResult {
    let names = s.backend.network_prune(&q.filters()?)?;
    Ok(json_response(berth_api::NetworkPruneReport {
        networks_deleted: names,
    }))
}

pub(crate) async fn networks_list<B: NetworkBackend>(
    State(s): State<AppState<B>>,
    q: Q,
) -> ApiResult {
    Ok(json_response(s.backend.network_list(&q.filters()?)?))
}

pub(crate) async fn network_inspect<B: NetworkBackend>(
    State(s): State<AppState<B>>,
    Path(id): Path<String>,
) -> ApiResult {
    Ok(json_response(s.backend.network_inspect(&id)?))
}

pub(crate) async fn network_create<B: NetworkBackend>(
    State(s): State<AppState<B>>,
    body: bytes::Bytes,
) -> ApiResult {
    let req: berth_api::NetworkCreateRequest = parse_json(&body)?;
    let out = s.backend.network_create(req).await?;
    Ok((StatusCode::CREATED, axum::Json(out)).into_response())
}

pub(crate) async fn network_connect<B: NetworkBackend>(
    State(s): State<AppState<B>>,
    Path(id): Path<String>,
    body: bytes::Bytes,
) -> ApiResult {
    let req: berth_api::NetworkConnectRequest = parse_json(&body)?;
    let endpoint = req.endpoint_config.unwrap_or_default();
    s.backend
        .network_connect(&id, &req.container, &endpoint)
        .await?;
    Ok(StatusCode::OK.into_response())
}

pub(crate) async fn network_disconnect<B: NetworkBackend>(
    State(s): State<AppState<B>>,
    Path(id): Path<String>,
    body: bytes::Bytes,
) -> ApiResult {
    let req: berth_api::NetworkConnectRequest = parse_json(&body)?;
    let container = req.container;
    // `Force` changes nothing here: there are no stale endpoints of gone
    // networks or other daemons to drop.
    s.backend.network_disconnect(&id, &container).await?;
    Ok(StatusCode::OK.into_response())
}

pub(crate) async fn network_delete<B: NetworkBackend>(
    State(s): State<AppState<B>>,
    Path(id): Path<String>,
) -> ApiResult {
    s.backend.network_remove(&id).await?;
    Ok(no_content())
}

pub(crate) async fn volumes_list<B: VolumeBackend>(
    State(s): State<AppState<B>>,
    q: Q,
) -> ApiResult {
    Ok(json_response(s.backend.volume_list(&q.filters()?)?))
}

pub(crate) async fn volume_create<B: VolumeBackend>(
    State(s): State<AppState<B>>,
    body: bytes::Bytes,
) -> ApiResult {
    let req: berth_api::VolumeCreateRequest = parse_json(&body)?;
    Ok((
        StatusCode::CREATED,
        axum::Json(s.backend.volume_create(req)?),
    )
        .into_response())
}

pub(crate) async fn volume_inspect<B: VolumeBackend>(
    State(s): State<AppState<B>>,
    Path(name): Path<String>,
) -> ApiResult {
    Ok(json_response(s.backend.volume_inspect(&name)?))
}

pub(crate) async fn volume_delete<B: VolumeBackend>(
    State(s): State<AppState<B>>,
    Path(name): Path<String>,
    q: Q,
) -> ApiResult {
    s.backend.volume_remove(&name, q.bool("force"))?;
    Ok(no_content())
}

pub(crate) async fn volumes_prune<B: VolumeBackend>(
    State(s): State<AppState<B>>,
    q: Q,
) -> ApiResult {
    let (volumes_deleted, space_reclaimed) = s.backend.volume_prune(&q.filters()?)?;
    Ok(json_response(berth_api::VolumePruneReport {
        volumes_deleted,
        space_reclaimed,
    }))
}

#[cfg(test)]
mod tests {
    //! The volume routes against a fake backend: status codes and wording
    //! come from the router and the one error map, without an engine.
    use super::*;
    use berth_engine::backend::Filters;
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use tower::ServiceExt;

    #[derive(Clone, Default)]
    struct Fake {
        vols: Arc<Mutex<BTreeMap<String, bool>>>,
    }

    impl Backend for Fake {
        fn scratch_file(&self, _: &str) -> berth_engine::Result<std::fs::File> {
            Err(EngineError::Internal("no scratch files here".into()))
        }
    }

    impl VolumeBackend for Fake {
        fn volume_list(&self, _: &Filters) -> berth_engine::Result<berth_api::VolumeList> {
            let volumes = self.vols.lock().unwrap().keys().map(|n| vol(n)).collect();
            Ok(berth_api::VolumeList {
                volumes,
                warnings: Vec::new(),
            })
        }
        fn volume_inspect(&self, name: &str) -> berth_engine::Result<berth_api::Volume> {
            match self.vols.lock().unwrap().contains_key(name) {
                true => Ok(vol(name)),
                false => Err(EngineError::missing(berth_engine::Kind::Volume, name)),
            }
        }
        fn volume_create(
            &self,
            req: berth_api::VolumeCreateRequest,
        ) -> berth_engine::Result<berth_api::Volume> {
            self.vols.lock().unwrap().insert(req.name.clone(), false);
            Ok(vol(&req.name))
        }
        fn volume_remove(&self, name: &str, force: bool) -> berth_engine::Result<()> {
            let mut v = self.vols.lock().unwrap();
            match v.get(name) {
                None => Err(EngineError::NotFound(format!("get {name}: no such volume"))),
                Some(true) if !force => Err(EngineError::Conflict(format!(
                    "remove {name}: volume is in use"
                ))),
                Some(_) => {
                    v.remove(name);
                    Ok(())
                }
            }
        }
        fn volume_prune(&self, _: &Filters) -> berth_engine::Result<(Vec<String>, u64)> {
            Ok((Vec::new(), 0))
        }
    }

    fn vol(name: &str) -> berth_api::Volume {
        berth_api::Volume {
            name: name.into(),
            driver: "local".into(),
            scope: "local".into(),
            ..Default::default()
        }
    }

    async fn call(
        r: &Router,
        method: &str,
        uri: &str,
        body: &str,
    ) -> (StatusCode, serde_json::Value) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::from(body.to_string()))
            .unwrap();
        let resp = r.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    #[tokio::test]
    async fn volume_routes_answer_as_dockerd() {
        let fake = Fake::default();
        let r = volume_routes(AppState {
            backend: fake.clone(),
            daemon: Arc::new(DaemonInfo::default()),
        });
        let (st, v) = call(&r, "POST", "/volumes/create", r#"{"Name":"data"}"#).await;
        assert_eq!(st, StatusCode::CREATED);
        assert_eq!(v["Name"], "data");
        let (st, v) = call(&r, "GET", "/volumes", "").await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(v["Volumes"][0]["Name"], "data");
        let (st, v) = call(&r, "GET", "/volumes/nope", "").await;
        assert_eq!(st, StatusCode::NOT_FOUND);
        assert_eq!(v["message"], "get nope: no such volume");
        fake.vols.lock().unwrap().insert("busy".into(), true);
        let (st, v) = call(&r, "DELETE", "/volumes/busy", "").await;
        assert_eq!(st, StatusCode::CONFLICT);
        assert_eq!(v["message"], "remove busy: volume is in use");
        let (st, _) = call(&r, "DELETE", "/volumes/busy?force=1", "").await;
        assert_eq!(st, StatusCode::NO_CONTENT);
        let (st, v) = call(&r, "POST", "/volumes/create", "{not json").await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
        assert!(v["message"].as_str().unwrap().starts_with("invalid JSON"));
        assert_eq!(fake.vols.lock().unwrap().len(), 1);
    }
}
