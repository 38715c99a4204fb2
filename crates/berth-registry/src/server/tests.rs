//! The API over a real `FsStorage` in a temporary directory, request by
//! request, as clients drive it.

use super::*;
use crate::storage::FsStorage;
use http_body_util::BodyExt;
use tower::ServiceExt;

struct Reg {
    app: Router,
    _dir: tempfile::TempDir,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, k: &str) -> &str {
        self.headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn code(&self) -> String {
        let v: serde_json::Value = serde_json::from_slice(&self.body).unwrap_or_default();
        v["errors"][0]["code"].as_str().unwrap_or("").to_string()
    }
}

impl Reg {
    fn new() -> Reg {
        let dir = tempfile::tempdir().unwrap();
        let store: Store = Arc::new(FsStorage::open(dir.path()).unwrap());
        Reg {
            app: router(store, None),
            _dir: dir,
        }
    }

    async fn call(&self, method: &str, uri: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
        let mut req = axum::http::Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Body::from(body.to_vec())).unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        Answer {
            status,
            headers,
            body,
        }
    }

    /// Uploads `data` to `name` in one POST; its digest.
    async fn blob(&self, name: &str, data: &[u8]) -> String {
        let d = digest_of(data);
        let a = self
            .call(
                "POST",
                &format!("/v2/{name}/blobs/uploads/?digest={d}"),
                &[],
                data,
            )
            .await;
        assert_eq!(
            a.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&a.body)
        );
        d
    }
}

fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn image_manifest(config: &str, layers: &[&str]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
        "layers": layers.iter().map(|l| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": l, "size": 1})).collect::<Vec<_>>(),
    }))
    .unwrap()
}

#[tokio::test]
async fn base_and_blobs_with_ranges() {
    let r = Reg::new();
    let a = r.call("GET", "/v2/", &[], b"").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header("Docker-Distribution-API-Version"), "registry/2.0");

    let d = r.blob("lib/app", b"hello layer").await;
    let a = r
        .call("HEAD", &format!("/v2/lib/app/blobs/{d}"), &[], b"")
        .await;
    assert_eq!(
        (a.status, a.header("Content-Length")),
        (StatusCode::OK, "11")
    );
    assert_eq!(a.header("Docker-Content-Digest"), d);
    assert!(a.body.is_empty());
    let a = r
        .call("GET", &format!("/v2/lib/app/blobs/{d}"), &[], b"")
        .await;
    assert_eq!(a.body, b"hello layer");
    // A resumed download: the rest from a byte on.
    let a = r
        .call(
            "GET",
            &format!("/v2/lib/app/blobs/{d}"),
            &[("Range", "bytes=6-")],
            b"",
        )
        .await;
    assert_eq!(a.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        (a.body.as_slice(), a.header("Content-Range")),
        (&b"layer"[..], "bytes 6-10/11")
    );
    let a = r
        .call(
            "GET",
            &format!("/v2/lib/app/blobs/{d}"),
            &[("Range", "bytes=11-")],
            b"",
        )
        .await;
    assert_eq!(a.status, StatusCode::RANGE_NOT_SATISFIABLE);
    // Another repository does not serve it until it is mounted there.
    let a = r
        .call("GET", &format!("/v2/other/blobs/{d}"), &[], b"")
        .await;
    assert_eq!(
        (a.status, a.code().as_str()),
        (StatusCode::NOT_FOUND, "BLOB_UNKNOWN")
    );
    let a = r
        .call(
            "POST",
            &format!("/v2/other/blobs/uploads/?mount={d}&from=lib/app"),
            &[],
            b"",
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(a.header("Location"), format!("/v2/other/blobs/{d}"));
    let a = r
        .call("GET", &format!("/v2/other/blobs/{d}"), &[], b"")
        .await;
    assert_eq!(a.body, b"hello layer");
    // A mount from where it is not: an ordinary upload starts.
    let a = r
        .call(
            "POST",
            &format!("/v2/third/blobs/uploads/?mount={d}&from=nowhere"),
            &[],
            b"",
        )
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    // Deleting unlinks it from that repository only.
    let a = r
        .call("DELETE", &format!("/v2/other/blobs/{d}"), &[], b"")
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert_eq!(
        r.call("GET", &format!("/v2/other/blobs/{d}"), &[], b"")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        r.call("GET", &format!("/v2/lib/app/blobs/{d}"), &[], b"")
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn chunked_uploads_check_order_and_digest() {
    let r = Reg::new();
    let a = r.call("POST", "/v2/app/blobs/uploads/", &[], b"").await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    let loc = a.header("Location").to_string();
    assert!(loc.starts_with("/v2/app/blobs/uploads/"));
    let a = r
        .call("PATCH", &loc, &[("Content-Range", "0-4")], b"hello")
        .await;
    assert_eq!((a.status, a.header("Range")), (StatusCode::ACCEPTED, "0-4"));
    // A chunk that does not continue where the upload stands is refused.
    let a = r
        .call("PATCH", &loc, &[("Content-Range", "2-4")], b"xyz")
        .await;
    assert_eq!(a.status, StatusCode::RANGE_NOT_SATISFIABLE);
    let a = r
        .call("PATCH", &loc, &[("Content-Range", "5-10")], b" world")
        .await;
    assert_eq!(a.header("Range"), "0-10");
    let a = r.call("GET", &loc, &[], b"").await;
    assert_eq!(
        (a.status, a.header("Range")),
        (StatusCode::NO_CONTENT, "0-10")
    );
    // The wrong digest: refused, and nothing is left to serve.
    let wrong = digest_of(b"something else");
    let a = r
        .call("PUT", &format!("{loc}?digest={wrong}"), &[], b"")
        .await;
    assert_eq!(
        (a.status, a.code().as_str()),
        (StatusCode::BAD_REQUEST, "DIGEST_INVALID")
    );
    assert_eq!(
        r.call("GET", &format!("/v2/app/blobs/{wrong}"), &[], b"")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        r.call("GET", &loc, &[], b"").await.code(),
        "BLOB_UPLOAD_UNKNOWN"
    );

    let a = r.call("POST", "/v2/app/blobs/uploads/", &[], b"").await;
    let loc = a.header("Location").to_string();
    r.call("PATCH", &loc, &[], b"hello").await;
    let d = digest_of(b"hello world");
    let a = r
        .call("PUT", &format!("{loc}?digest={d}"), &[], b" world")
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(
        r.call("GET", &format!("/v2/app/blobs/{d}"), &[], b"")
            .await
            .body,
        b"hello world"
    );
    // A finished or cancelled upload is gone.
    assert_eq!(
        r.call("PATCH", &loc, &[], b"x").await.code(),
        "BLOB_UPLOAD_UNKNOWN"
    );
    let a = r.call("POST", "/v2/app/blobs/uploads/", &[], b"").await;
    let loc = a.header("Location").to_string();
    assert_eq!(
        r.call("DELETE", &loc, &[], b"").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        r.call("DELETE", &loc, &[], b"").await.status,
        StatusCode::NOT_FOUND
    );
    // Upload ids are never paths.
    assert_eq!(
        r.call("PATCH", "/v2/app/blobs/uploads/..%2f..%2fx", &[], b"x")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn manifests_by_tag_and_digest() {
    let r = Reg::new();
    let config = r.blob("app", b"{}").await;
    let layer = r.blob("app", b"L").await;
    let missing = digest_of(b"not uploaded");
    let ct = [("Content-Type", "application/vnd.oci.image.manifest.v1+json")];
    let a = r
        .call(
            "PUT",
            "/v2/app/manifests/v1",
            &ct,
            &image_manifest(&config, &[&missing]),
        )
        .await;
    assert_eq!(
        (a.status, a.code().as_str()),
        (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN")
    );
    let a = r
        .call("PUT", "/v2/app/manifests/v1", &ct, b"{not json")
        .await;
    assert_eq!(a.code(), "MANIFEST_INVALID");

    let m = image_manifest(&config, &[&layer]);
    let md = digest_of(&m);
    let a = r.call("PUT", "/v2/app/manifests/v1", &ct, &m).await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(a.header("Docker-Content-Digest"), md);
    for reference in ["v1", md.as_str()] {
        let a = r
            .call("GET", &format!("/v2/app/manifests/{reference}"), &[], b"")
            .await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.body, m);
        assert_eq!(
            a.header("Content-Type"),
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert_eq!(a.header("Docker-Content-Digest"), md);
    }
    let a = r.call("HEAD", "/v2/app/manifests/v1", &[], b"").await;
    assert_eq!(
        (a.status, a.header("Content-Length")),
        (StatusCode::OK, m.len().to_string().as_str())
    );
    // By digest, the digest must be the content's.
    let a = r
        .call("PUT", &format!("/v2/app/manifests/{config}"), &ct, &m)
        .await;
    assert_eq!(a.code(), "DIGEST_INVALID");
    let a = r
        .call("PUT", &format!("/v2/app/manifests/{md}"), &ct, &m)
        .await;
    assert_eq!(a.status, StatusCode::CREATED);

    // An index needs its manifests in the repository first.
    let index_ct = [("Content-Type", "application/vnd.oci.image.index.v1+json")];
    let index = |d: &str| {
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d, "size": 1,
                "platform": {"architecture": "amd64", "os": "linux"}}]}))
        .unwrap()
    };
    let a = r
        .call(
            "PUT",
            "/v2/app/manifests/multi",
            &index_ct,
            &index(&missing),
        )
        .await;
    assert_eq!(a.code(), "MANIFEST_UNKNOWN");
    let a = r
        .call("PUT", "/v2/app/manifests/multi", &index_ct, &index(&md))
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let a = r.call("GET", "/v2/app/manifests/multi", &[], b"").await;
    assert_eq!(
        a.header("Content-Type"),
        "application/vnd.oci.image.index.v1+json"
    );

    // Over 4 MiB: refused before it is parsed.
    let big = vec![b' '; MAX_MANIFEST + 1];
    let a = r.call("PUT", "/v2/app/manifests/big", &ct, &big).await;
    assert_eq!(
        (a.status, a.code().as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID")
    );

    // Deleting by digest takes its tags with it.
    let a = r
        .call("DELETE", &format!("/v2/app/manifests/{md}"), &[], b"")
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert_eq!(
        r.call("GET", "/v2/app/manifests/v1", &[], b"").await.code(),
        "MANIFEST_UNKNOWN"
    );
    assert_eq!(
        r.call("GET", &format!("/v2/app/manifests/{md}"), &[], b"")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn tags_catalog_and_names() {
    let r = Reg::new();
    let config = r.blob("team/app", b"{}").await;
    let m = image_manifest(&config, &[]);
    for t in ["b", "a", "c"] {
        r.call("PUT", &format!("/v2/team/app/manifests/{t}"), &[], &m)
            .await;
    }
    let other_cfg = r.blob("zoo", b"{}").await;
    r.call(
        "PUT",
        "/v2/zoo/manifests/x",
        &[],
        &image_manifest(&other_cfg, &[]),
    )
    .await;
    let list = |a: &Answer| serde_json::from_slice::<serde_json::Value>(&a.body).unwrap();
    let a = r.call("GET", "/v2/team/app/tags/list", &[], b"").await;
    assert_eq!(list(&a)["tags"], serde_json::json!(["a", "b", "c"]));
    let a = r.call("GET", "/v2/team/app/tags/list?n=2", &[], b"").await;
    assert_eq!(list(&a)["tags"], serde_json::json!(["a", "b"]));
    assert_eq!(
        a.header("Link"),
        "</v2/team/app/tags/list?n=2&last=b>; rel=\"next\""
    );
    let a = r
        .call("GET", "/v2/team/app/tags/list?n=2&last=b", &[], b"")
        .await;
    assert_eq!(list(&a)["tags"], serde_json::json!(["c"]));
    assert_eq!(a.header("Link"), "");
    let a = r.call("GET", "/v2/nothing/tags/list", &[], b"").await;
    assert_eq!(a.code(), "NAME_UNKNOWN");
    let a = r.call("GET", "/v2/_catalog", &[], b"").await;
    assert_eq!(
        list(&a)["repositories"],
        serde_json::json!(["team/app", "zoo"])
    );
    let a = r.call("GET", "/v2/_catalog?n=1", &[], b"").await;
    assert_eq!(list(&a)["repositories"], serde_json::json!(["team/app"]));

    for bad in [
        "/v2/../etc/manifests/x",
        "/v2/UPPER/manifests/x",
        "/v2/a//b/blobs/uploads/",
    ] {
        let a = r
            .call(
                if bad.ends_with('/') { "POST" } else { "GET" },
                bad,
                &[],
                b"",
            )
            .await;
        assert_eq!(a.code(), "NAME_INVALID", "{bad}");
    }
    let a = r.call("GET", "/v2/app/manifests/bad:tag!", &[], b"").await;
    assert_eq!(a.code(), "DIGEST_INVALID");
    let a = r.call("GET", "/v2/app/blobs/sha256:short", &[], b"").await;
    assert_eq!(a.code(), "DIGEST_INVALID");
}

#[test]
fn routes() {
    assert_eq!(route("/v2/"), Route::Base);
    assert_eq!(route("/v2/a/b/tags/list"), Route::Tags("a/b".into()));
    assert_eq!(
        route("/v2/a/blobs/b/manifests/x"),
        Route::Manifest("a/blobs/b".into(), "x".into())
    );
    assert_eq!(
        route("/v2/a/blobs/uploads/"),
        Route::UploadStart("a".into())
    );
    assert_eq!(
        route("/v2/a/blobs/uploads/u1"),
        Route::Upload("a".into(), "u1".into())
    );
    assert_eq!(
        route("/v2/a/blobs/sha256:x"),
        Route::Blob("a".into(), "sha256:x".into())
    );
    assert_eq!(route("/v1/x"), Route::Unknown);
}

#[tokio::test]
async fn referrers_of_a_subject() {
    let r = Reg::new();
    let config = r.blob("app", b"{}").await;
    let image = image_manifest(&config, &[]);
    let image_digest = digest_of(&image);
    r.call("PUT", "/v2/app/manifests/v1", &[], &image).await;
    let empty = r.blob("app", b"{}").await;
    let artifact = |kind: &str, note: &str| {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": kind,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
            "layers": [],
            "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": image_digest, "size": image.len()},
            "annotations": {"note": note},
        }))
        .unwrap()
    };
    let sig = artifact("application/vnd.example.signature", "signed");
    let sbom = artifact("application/vnd.example.sbom", "sbom");
    for a in [&sig, &sbom] {
        let put = r
            .call(
                "PUT",
                &format!("/v2/app/manifests/{}", digest_of(a)),
                &[],
                a,
            )
            .await;
        assert_eq!(put.status, StatusCode::CREATED);
        assert_eq!(put.header("OCI-Subject"), image_digest);
    }
    let index = |a: &Answer| serde_json::from_slice::<serde_json::Value>(&a.body).unwrap();
    let a = r
        .call(
            "GET",
            &format!("/v2/app/referrers/{image_digest}"),
            &[],
            b"",
        )
        .await;
    assert_eq!(
        a.header("Content-Type"),
        "application/vnd.oci.image.index.v1+json"
    );
    let all = index(&a);
    assert_eq!(all["manifests"].as_array().unwrap().len(), 2);
    let a = r
        .call(
            "GET",
            &format!("/v2/app/referrers/{image_digest}?artifactType=application/vnd.example.sbom"),
            &[],
            b"",
        )
        .await;
    assert_eq!(a.header("OCI-Filters-Applied"), "artifactType");
    let only = index(&a);
    assert_eq!(only["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(only["manifests"][0]["digest"], digest_of(&sbom).as_str());
    assert_eq!(only["manifests"][0]["annotations"]["note"], "sbom");
    // A deleted referrer is no longer listed; a subject with none: an empty index.
    r.call(
        "DELETE",
        &format!("/v2/app/manifests/{}", digest_of(&sig)),
        &[],
        b"",
    )
    .await;
    let a = r
        .call(
            "GET",
            &format!("/v2/app/referrers/{image_digest}"),
            &[],
            b"",
        )
        .await;
    assert_eq!(index(&a)["manifests"].as_array().unwrap().len(), 1);
    let a = r
        .call(
            "GET",
            &format!("/v2/app/referrers/{}", digest_of(b"x")),
            &[],
            b"",
        )
        .await;
    assert_eq!(
        (a.status, index(&a)["manifests"].as_array().unwrap().len()),
        (StatusCode::OK, 0)
    );
}

#[tokio::test]
async fn htpasswd_users_only() {
    let dir = tempfile::tempdir().unwrap();
    let store: Store = Arc::new(FsStorage::open(dir.path()).unwrap());
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let auth = crate::auth::Htpasswd::parse(&format!("alice:{hash}"), "f").unwrap();
    let r = Reg {
        app: router(store, Some(Arc::new(auth))),
        _dir: dir,
    };
    let a = r.call("GET", "/v2/", &[], b"").await;
    assert_eq!(
        (a.status, a.code().as_str()),
        (StatusCode::UNAUTHORIZED, "UNAUTHORIZED")
    );
    assert_eq!(
        a.header("WWW-Authenticate"),
        "Basic realm=\"berth-registry\""
    );
    use base64::Engine as _;
    let creds = |p: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("alice:{p}"))
        )
    };
    let bad = creds("nope");
    assert_eq!(
        r.call("GET", "/v2/", &[("Authorization", &bad)], b"")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let good = creds("s3cret");
    assert_eq!(
        r.call("GET", "/v2/", &[("Authorization", &good)], b"")
            .await
            .status,
        StatusCode::OK
    );
}

#[test]
fn query_parameters_decode_without_turning_plus_into_space() {
    let uri: axum::http::Uri =
        "/v2/a/referrers/x?artifactType=application/vnd.x.v1+json&from=lib%2Fapp&bad=%E9%"
            .parse()
            .unwrap();
    assert_eq!(
        query_param(&uri, "artifactType").as_deref(),
        Some("application/vnd.x.v1+json")
    );
    assert_eq!(query_param(&uri, "from").as_deref(), Some("lib/app"));
    // Not UTF-8, or a stray `%`: read as it comes, never a panic.
    assert!(query_param(&uri, "bad").is_some());
    assert_eq!(query_param(&uri, "n"), None);
}
