//! The client against Berth's own registry server, in process: pushes and
//! pulls by tag and digest, mounts, a bearer-token front, a download cut
//! mid-blob that resumes, and a corrupted blob refused.

use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_dist::manifest::{self, Descriptor, Fetched};
use berth_dist::{sha256_digest, AuthConfig, Client, DistError, Options};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

async fn serve(app: axum::Router) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    addr
}

async fn registry() -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(berth_registry::FsStorage::open(dir.path()).unwrap());
    (serve(berth_registry::router(store, None)).await, dir)
}

fn client() -> Client {
    Client::new(Options::default()).unwrap()
}

fn noop(_: u64) {}

/// Pushes a one-layer image under `repo:tag`; returns (manifest digest, layer).
async fn push_image(c: &Client, addr: &str, repo: &str, layer: &[u8]) -> (String, Descriptor) {
    let s = c.session(addr, repo, None, true).await.unwrap();
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), layer).unwrap();
    let ld = sha256_digest(layer);
    if !s.blob_exists(&ld).await.unwrap() {
        s.upload_file(tmp.path(), &ld, layer.len() as u64, &noop)
            .await
            .unwrap();
    }
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let cd = sha256_digest(config);
    s.upload_bytes(config, &cd).await.unwrap();
    let layer_desc = Descriptor {
        media_type: manifest::DOCKER_LAYER_GZIP.into(),
        digest: ld,
        size: layer.len() as u64,
        ..Default::default()
    };
    let m = manifest::ImageManifest {
        schema_version: 2,
        media_type: manifest::DOCKER_MANIFEST.into(),
        config: Descriptor {
            media_type: manifest::DOCKER_CONFIG.into(),
            digest: cd,
            size: config.len() as u64,
            ..Default::default()
        },
        layers: vec![layer_desc.clone()],
    };
    let body = serde_json::to_vec(&m).unwrap();
    let d = s
        .put_manifest("v1", &body, manifest::DOCKER_MANIFEST)
        .await
        .unwrap();
    assert_eq!(d, sha256_digest(&body));
    (d, layer_desc)
}

#[tokio::test]
async fn push_pull_mount() {
    let (addr, _dir) = registry().await;
    let c = client();
    let layer: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let (digest, ld) = push_image(&c, &addr, "a/app", &layer).await;

    let s = c.session(&addr, "a/app", None, false).await.unwrap();
    let (bytes, mt, d) = s.manifest("v1").await.unwrap();
    assert_eq!(
        (mt.as_str(), d.as_str()),
        (manifest::DOCKER_MANIFEST, digest.as_str())
    );
    let Fetched::Image(m) = manifest::parse(&bytes, &mt).unwrap() else {
        panic!("not an image manifest")
    };
    assert_eq!(m.layers, vec![ld.clone()]);
    assert_eq!(s.manifest(&digest).await.unwrap().2, digest);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("blob");
    let seen = std::sync::Mutex::new(0u64);
    s.download(&ld, &out, &|n| *seen.lock().unwrap() = n)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), layer);
    assert_eq!(*seen.lock().unwrap(), layer.len() as u64);

    // Another repository: the layer is mounted, not sent again.
    let t = c.session(&addr, "b/other", None, true).await.unwrap();
    assert!(!t.blob_exists(&ld.digest).await.unwrap());
    assert!(t.mount(&ld.digest, "a/app").await.unwrap());
    assert!(t.blob_exists(&ld.digest).await.unwrap());
    // Unknown things are NotFound with the registry's words.
    match s.manifest("nope").await {
        Err(DistError::NotFound(m)) => assert!(m.contains("manifest unknown"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn resumes_a_partial_download_and_refuses_a_wrong_digest() {
    let (addr, _dir) = registry().await;
    let c = client();
    let layer: Vec<u8> = (0..1_000_000u32).map(|i| (i % 7) as u8).collect();
    let (_, ld) = push_image(&c, &addr, "r", &layer).await;
    let s = c.session(&addr, "r", None, false).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("blob");
    std::fs::write(&out, &layer[..400_000]).unwrap();
    let first = std::sync::Mutex::new(None);
    s.download(&ld, &out, &|n| {
        first.lock().unwrap().get_or_insert(n);
    })
    .await
    .unwrap();
    assert_eq!(
        *first.lock().unwrap(),
        Some(400_000),
        "started from the bytes it had"
    );
    assert_eq!(std::fs::read(&out).unwrap(), layer);

    // Bytes that are not the blob's: refused, and the file goes.
    let mut wrong = layer[..10].to_vec();
    wrong[0] ^= 1;
    std::fs::write(&out, &wrong).unwrap();
    match s.download(&ld, &out, &noop).await {
        Err(DistError::DigestMismatch { expected, .. }) => assert_eq!(expected, ld.digest),
        other => panic!("{other:?}"),
    }
    assert!(!out.exists());
}

/// A front that cuts every blob answer after `limit` bytes.
#[tokio::test]
async fn resumes_after_cut_connections() {
    let (reg, _dir) = registry().await;
    let c = client();
    let layer: Vec<u8> = (0..2_000_000u32).map(|i| (i % 13) as u8).collect();
    let (_, ld) = push_image(&c, &reg, "cut", &layer).await;
    let cuts = Arc::new(AtomicUsize::new(0));
    let front = {
        let cuts = cuts.clone();
        let reg = reg.clone();
        axum::Router::new().fallback(move |req: Request| {
            let cuts = cuts.clone();
            let reg = reg.clone();
            async move { cutting_proxy(&reg, req, &cuts).await }
        })
    };
    let addr = serve(front).await;
    let s = c.session(&addr, "cut", None, false).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("blob");
    s.download(&ld, &out, &noop).await.unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), layer);
    assert!(cuts.load(Ordering::SeqCst) >= 2, "the front cut the stream");
}

/// Forwards to the registry; blob bodies end with an error after 700 kB.
async fn cutting_proxy(reg: &str, req: Request, cuts: &AtomicUsize) -> Response {
    let http = reqwest::Client::new();
    let url = format!("http://{reg}{}", req.uri());
    let mut rb = http.request(req.method().clone(), &url);
    for (k, v) in req.headers() {
        rb = rb.header(k, v);
    }
    let r = rb.send().await.unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    let body = r.bytes().await.unwrap();
    let blob = req.uri().path().contains("/blobs/sha256:") && body.len() > 700_000;
    let mut resp = if blob {
        cuts.fetch_add(1, Ordering::SeqCst);
        let head = body.slice(..700_000);
        let s = futures_util::stream::iter(vec![Ok(head), Err(std::io::Error::other("cut"))]);
        Response::new(Body::from_stream(s))
    } else {
        Response::new(Body::from(body))
    };
    *resp.status_mut() = StatusCode::from_u16(status.as_u16()).unwrap();
    for (k, v) in headers.iter() {
        if k != "content-length" || !blob {
            resp.headers_mut().insert(k, v.clone());
        }
    }
    resp
}

/// A registry behind a token server, as Docker Hub: /v2/ answers 401 with
/// a Bearer challenge, the token server checks basic credentials.
#[tokio::test]
async fn bearer_token_flow() {
    let (reg, _dir) = registry().await;
    let c = client();
    push_image(&c, &reg, "team/app", b"layer bytes").await;
    let token_hits = Arc::new(AtomicUsize::new(0));
    let app = {
        let reg = reg.clone();
        let hits = token_hits.clone();
        axum::Router::new()
            .route(
                "/token",
                axum::routing::get(move |req: Request| {
                    let hits = hits.clone();
                    async move {
                        hits.fetch_add(1, Ordering::SeqCst);
                        let auth = req
                            .headers()
                            .get("authorization")
                            .map(|v| v.to_str().unwrap().to_string());
                        // base64("u:pw")
                        if auth.as_deref() != Some("Basic dTpwdw==") {
                            return (
                                StatusCode::UNAUTHORIZED,
                                r#"{"details":"incorrect username or password"}"#,
                            )
                                .into_response();
                        }
                        let q = req.uri().query().unwrap_or("").to_string();
                        // Logins ask for no scope; pulls for the repository's.
                        assert!(
                            !q.contains("scope=")
                                || q.contains("scope=repository%3Ateam%2Fapp%3Apull"),
                            "{q}"
                        );
                        axum::Json(serde_json::json!({"token": "T0K"})).into_response()
                    }
                }),
            )
            .fallback(move |req: Request| {
                let reg = reg.clone();
                async move {
                    let ok = req
                        .headers()
                        .get("authorization")
                        .is_some_and(|v| v == "Bearer T0K");
                    if !ok {
                        let mut r = StatusCode::UNAUTHORIZED.into_response();
                        r.headers_mut().insert(
                            "www-authenticate",
                            "Bearer realm=\"http://TOKEN/token\",service=\"test\""
                                .parse()
                                .unwrap(),
                        );
                        return r;
                    }
                    let http = reqwest::Client::new();
                    let r = http
                        .get(format!("http://{reg}{}", req.uri()))
                        .header("accept", manifest::ACCEPT)
                        .send()
                        .await
                        .unwrap();
                    let status = StatusCode::from_u16(r.status().as_u16()).unwrap();
                    let ct = r.headers().get("content-type").cloned();
                    let mut resp = (status, r.bytes().await.unwrap()).into_response();
                    if let Some(ct) = ct {
                        resp.headers_mut().insert("content-type", ct);
                    }
                    resp
                }
            })
    };
    // The challenge must name the front's own address.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let app = app.layer(axum::middleware::map_response(move |mut r: Response| {
        let addr = addr.clone();
        async move {
            if let Some(v) = r.headers().get("www-authenticate").cloned() {
                let v = v.to_str().unwrap().replace("TOKEN", &addr);
                r.headers_mut()
                    .insert("www-authenticate", v.parse().unwrap());
            }
            r
        }
    }));
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });

    let good = AuthConfig {
        username: "u".into(),
        password: "pw".into(),
        serveraddress: addr.clone(),
        ..Default::default()
    };
    let s = c
        .session(&addr, "team/app", Some(good.clone()), false)
        .await
        .unwrap();
    s.manifest("v1").await.unwrap();
    s.manifest("v1").await.unwrap();
    assert_eq!(
        token_hits.load(Ordering::SeqCst),
        1,
        "the token is kept for its scope"
    );
    c.login(&good).await.unwrap();

    let bad = AuthConfig {
        password: "nope".into(),
        ..good
    };
    match c.login(&bad).await {
        Err(DistError::Unauthorized(m)) => {
            assert!(m.contains("incorrect username or password"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    let s = c
        .session(&addr, "team/app", Some(bad), false)
        .await
        .unwrap();
    assert!(matches!(
        s.manifest("v1").await,
        Err(DistError::Unauthorized(_))
    ));
}

#[tokio::test]
async fn refuses_registries_outside_the_allow_list() {
    let c = Client::new(Options {
        allow: Some(vec!["loopback".into()]),
        ..Options::default()
    })
    .unwrap();
    assert!(matches!(
        c.session("docker.io", "library/busybox", None, false).await,
        Err(DistError::NotAllowed(_))
    ));
}

/// HTTPS held to certificates: a registry whose CA is in `certs.d/<host>/`
/// is reached; without it the handshake fails; an insecure registry is
/// reached over HTTPS without checking.
#[tokio::test]
async fn https_checks_certificates_unless_insecure() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let dir = tempfile::tempdir().unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let (a, root, d) = (
        addr.clone(),
        dir.path().join("reg"),
        dir.path().to_path_buf(),
    );
    tokio::spawn(async move {
        let tls = berth_registry::TlsFiles {
            cert: &d.join("cert.pem"),
            key: &d.join("key.pem"),
        };
        berth_registry::serve(&a, &root, None, Some(tls))
            .await
            .unwrap();
    });
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(&addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let certs = dir.path().join("certs.d");
    let strict = |certs_dir: std::path::PathBuf| {
        Client::new(Options {
            loopback_insecure: false,
            certs_dir,
            ..Options::default()
        })
        .unwrap()
    };
    // No CA for it: refused at the handshake.
    let err = strict(certs.clone())
        .session(&addr, "r", None, false)
        .await
        .err()
        .expect("an unknown certificate is refused");
    assert!(err.to_string().contains("certificate"), "{err}");
    // The CA in certs.d/<host:port>/: reached over HTTPS.
    std::fs::create_dir_all(certs.join(&addr)).unwrap();
    std::fs::write(certs.join(&addr).join("ca.crt"), ca.pem()).unwrap();
    let s = strict(certs)
        .session(&addr, "r", None, false)
        .await
        .unwrap();
    assert!(s.base().starts_with("https://"), "{}", s.base());
    assert!(matches!(
        s.manifest("v1").await,
        Err(DistError::NotFound(_))
    ));
    // Insecure (loopback, as dockerd): HTTPS without checking.
    let s = client().session(&addr, "r", None, false).await.unwrap();
    assert!(s.base().starts_with("https://"));
}
