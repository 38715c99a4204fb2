//! The engine over fake host effects (mounts, networking, shims, cgroups):
//! what it asks of the host, a container's life from create to auto-remove
//! and across a daemon restart, execs and healthchecks, checked without root
//! in milliseconds.

use crate::fake_shim::{FakeShims, ShimCall};
use crate::rootfs::RecordingMounter;
use crate::*;
use berth_net::effects::{NetCall, Recording};
use berth_runtime::cgroups::host::{CgroupCall, Recording as CgroupRecording};
use serde_json::json;

/// A data root and exec root of the test's own, and the cgroups every
/// engine opened on them shares.
struct Fixture(tempfile::TempDir, Arc<CgroupRecording>);

impl Fixture {
    fn new() -> Self {
        Fixture(tempfile::tempdir().unwrap(), Arc::default())
    }

    /// An engine over this fixture's roots, as if berthd (re)started.
    async fn open(&self, net: Arc<Recording>) -> Arc<Engine> {
        let shims = Arc::new(crate::shims::ProcessShims {
            path: "/nonexistent/berth-shim".into(),
        });
        self.open_with(net, shims).await
    }

    /// An engine over fake shims (and fake networking), as berthd (re)started.
    async fn over(&self, shims: &Arc<FakeShims>) -> Arc<Engine> {
        self.open_with(Arc::new(Recording::default()), Arc::new(shims.clone()))
            .await
    }

    /// The same, with the test image in its store.
    async fn with_image(&self, shims: &Arc<FakeShims>) -> Arc<Engine> {
        let engine = self.over(shims).await;
        import_image(&engine);
        engine
    }

    async fn open_with(
        &self,
        net: Arc<Recording>,
        shims: Arc<dyn crate::shims::ShimLauncher>,
    ) -> Arc<Engine> {
        let cfg = EngineConfig {
            data_root: self.0.path().join("data"),
            exec_root: self.0.path().join("exec"),
            bridge_name: "btfake0".into(),
            bip: "10.96.251.1/24".into(),
            nft_table: "berth_fake".into(),
            socket_redirect: false,
            shim_slim_after_ms: None,
            monitor_path: None,
            ipv6: false,
            fixed_cidr_v6: None,
            registry: Default::default(),
            cgroup_parent: "/berth".into(),
        };
        let host = Host {
            mounter: Arc::new(RecordingMounter::default()),
            net,
            shims,
            cgroups: self.1.clone(),
        };
        Engine::open(cfg, host).await.unwrap()
    }
}

fn net_req(v: serde_json::Value) -> berth_api::NetworkCreateRequest {
    serde_json::from_value(v).unwrap()
}

fn bridges_in_nft(calls: &[NetCall]) -> Option<Vec<String>> {
    calls.iter().rev().find_map(|c| match c {
        NetCall::ApplyNft { bridges, .. } => Some(bridges.clone()),
        _ => None,
    })
}

#[tokio::test]
async fn networks_reach_the_host_and_come_back_after_a_restart() {
    let fx = Fixture::new();
    let net = Arc::new(Recording::default());
    let engine = fx.open(net.clone()).await;
    // Opening brings up the default bridge and writes the table.
    let calls = net.take_calls();
    assert_eq!(
        calls[0],
        NetCall::EnsureBridge {
            bridge: "btfake0".into(),
            subnet: "10.96.251.0/24".into()
        }
    );
    assert_eq!(bridges_in_nft(&calls), Some(vec!["btfake0".to_string()]));

    let made = Engine::network_create(&engine, net_req(json!({"Name": "app", "Driver": "bridge"})))
        .unwrap();
    let inspected = engine.network_inspect("app").unwrap();
    assert_eq!(inspected.id, made.id);
    let bridge = match &net.take_calls()[..] {
        [NetCall::EnsureBridge { bridge, .. }, ..] => bridge.clone(),
        other => panic!("network create asked the host for {other:?}"),
    };
    assert!(bridge.starts_with("br-") && net.bridges().contains(&bridge));
    assert!(Engine::network_create(&engine, net_req(json!({"Name": "app"}))).is_err());

    // A daemon killed and started again: the network's bridge is back.
    drop(engine);
    let net2 = Arc::new(Recording::default());
    let engine = fx.open(net2.clone()).await;
    let calls = net2.take_calls();
    assert!(calls.contains(&NetCall::EnsureBridge {
        bridge: bridge.clone(),
        subnet: inspected.ipam.config[0].subnet.clone(),
    }));
    let nft = bridges_in_nft(&calls).unwrap();
    assert!(nft.contains(&bridge) && nft.contains(&"btfake0".to_string()));

    Engine::network_remove(&engine, "app").unwrap();
    assert!(net2
        .take_calls()
        .contains(&NetCall::DeleteLink(bridge.clone())));
    assert!(matches!(
        engine.network_inspect("app"),
        Err(EngineError::Missing {
            kind: Kind::Network,
            ..
        })
    ));
    // The predefined networks stay.
    assert!(Engine::network_remove(&engine, "bridge").is_err());
}

/// A one-file image, tagged `img:1`.
fn import_image(engine: &Engine) {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o755);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    b.append_data(&mut h, "bin/app", &b"app"[..]).unwrap();
    let tar = b.into_inner().unwrap();
    let cfg = berth_api::ImageRunConfig {
        cmd: Some(vec!["/bin/app".into()]),
        ..Default::default()
    };
    engine
        .store
        .import(&tar[..], cfg, None, Some("img:1"))
        .unwrap();
}

async fn create(engine: &Arc<Engine>, name: &str, hc: serde_json::Value) -> String {
    let req: berth_api::CreateRequest = serde_json::from_value(json!({
        "Image": "img:1",
        "HostConfig": hc,
    }))
    .unwrap();
    engine.create(Some(name), req).await.unwrap().0
}

/// Waits (bounded) until `f` holds of the container's state.
async fn until(engine: &Engine, key: &str, what: &str, f: impl Fn(&State) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if engine.find(key).is_ok_and(|c| f(&c.state())) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{key}: never {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_container_lives_through_its_restart_policy_and_a_daemon_restart() {
    let fx = Fixture::new();
    let shims = Arc::new(FakeShims::new());
    let berthd = runtime();
    let db = berthd.block_on(async {
        let engine = fx.with_image(&shims).await;
        let hc = json!({"NetworkMode": "none", "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 1}});
        let id = create(&engine, "web", hc).await;
        assert_eq!(engine.find("web").unwrap().state().status, Status::Created);

        engine.start("web").await.unwrap();
        assert_eq!(shims.calls(&id), [ShimCall::Spawn, ShimCall::Start]);
        let st = engine.find("web").unwrap().state();
        assert_eq!((st.status, st.pid), (Status::Running, shims.pid(&id).unwrap()));
        assert!(engine.mounter.is_mounted(&engine.rootfs(&id)));

        // It fails: on-failure:1 starts it once more.
        shims.exit(&id, 3);
        until(&engine, "web", "restarted", |s| {
            s.status == Status::Running && s.restart_count == 1
        })
        .await;
        assert_eq!(
            shims.calls(&id),
            [ShimCall::Spawn, ShimCall::Start, ShimCall::Spawn, ShimCall::Start]
        );
        // And again: the retry is used up, it stays down with its code.
        // The waiter hears of the exit once it is fully handled (unmounted).
        let exited = engine.wait("web", "next-exit").unwrap();
        shims.exit(&id, 3);
        assert_eq!(exited.await, 3);
        let st = engine.find("web").unwrap().state();
        assert_eq!((st.exit_code, st.restart_count, st.pid), (3, 1, 0));
        assert!(!engine.mounter.is_mounted(&engine.rootfs(&id)));

        // --rm: gone once it ends.
        let tmp = create(&engine, "tmp", json!({"NetworkMode": "none", "AutoRemove": true})).await;
        engine.start("tmp").await.unwrap();
        let removed = engine.wait("tmp", "removed").unwrap();
        shims.exit(&tmp, 0);
        assert_eq!(removed.await, 0);
        assert!(matches!(engine.find("tmp"), Err(EngineError::Missing { .. })));

        let db = create(&engine, "db", json!({"NetworkMode": "none"})).await;
        engine.start("db").await.unwrap();
        db
    });
    // berthd killed outright while "db" runs: its tasks end, the shims stay.
    berthd.shutdown_background();
    assert!(shims.running(&db));

    let berthd = runtime();
    berthd.block_on(async {
        let engine = fx.over(&shims).await;
        // The next berthd finds it running (its shim says so), the others as
        // they were, and still hears of its exit.
        let st = engine.find("db").unwrap().state();
        assert_eq!(
            (st.status, st.pid),
            (Status::Running, shims.pid(&db).unwrap())
        );
        assert_eq!(engine.find("web").unwrap().state().exit_code, 3);
        let exited = engine.wait("db", "next-exit").unwrap();
        shims.exit(&db, 7);
        assert_eq!(exited.await, 7);
        assert_eq!(engine.find("db").unwrap().state().status, Status::Exited);
        // A user's stop goes to the shim as SIGTERM.
        engine.start("db").await.unwrap();
        engine.stop("db", Some(1), None).await.unwrap();
        assert!(shims.calls(&db).contains(&ShimCall::Kill(libc::SIGTERM)));
        assert!(!shims.running(&db));
        let st = engine.find("db").unwrap().state();
        assert_eq!(
            (st.status, st.exit_code),
            (Status::Exited, 128 + libc::SIGTERM)
        );
    });
}

#[test]
fn update_stats_and_top_reach_the_containers_cgroup() {
    let fx = Fixture::new();
    let shims = Arc::new(FakeShims::new());
    runtime().block_on(async {
        let engine = fx.with_image(&shims).await;
        let id = create(&engine, "app", json!({"NetworkMode": "none"})).await;
        let cgroup = format!("/berth/{id}");
        // Not running: the limit is kept for the next start, the cgroup untouched.
        let given = |v| serde_json::from_value::<berth_api::HostConfig>(v).unwrap();
        engine
            .update("app", given(json!({"Memory": 32 << 20})))
            .await
            .unwrap();
        assert!(fx.1.calls().is_empty());
        engine.start("app").await.unwrap();
        engine
            .update("app", given(json!({"Memory": 64 << 20, "PidsLimit": 10})))
            .await
            .unwrap();
        let Some(CgroupCall::Update(path, limits)) = fx.1.calls().pop() else {
            panic!("no cgroup update: {:?}", fx.1.calls());
        };
        assert_eq!(path, cgroup);
        assert_eq!((limits.memory, limits.pids), (Some(64 << 20), Some(10)));
        assert_eq!(
            engine.inspect("app", false).unwrap().host_config.memory,
            64 << 20
        );
        let s = engine.stats_sample("app", None).unwrap();
        assert_eq!(s.memory_stats.limit, Some(64 << 20));
        assert!(fx.1.calls().contains(&CgroupCall::Stats(cgroup.clone())));
        engine.top("app", "").await.ok();
        assert!(fx.1.calls().contains(&CgroupCall::Pids(cgroup)));
    });
}

#[test]
fn execs_and_healthchecks_run_through_the_shim() {
    let fx = Fixture::new();
    let shims = Arc::new(FakeShims::new());
    runtime().block_on(async {
        let engine = fx.with_image(&shims).await;
        let req: berth_api::CreateRequest = serde_json::from_value(json!({
            "Image": "img:1",
            "Healthcheck": {"Test": ["CMD", "check"], "Interval": 20_000_000, "Retries": 2},
            "HostConfig": {"NetworkMode": "none"},
        }))
        .unwrap();
        let id = engine.create(Some("app"), req).await.unwrap().0;
        let health = |e: &Engine| e.find("app").unwrap().state().health.unwrap_or_default();

        // The probe passes: healthy.
        shims.exec_outcome(&id, 0, "ok\n");
        engine.start("app").await.unwrap();
        until(&engine, "app", "healthy", |s| {
            s.health.as_ref().is_some_and(|h| h.status == "healthy")
        })
        .await;
        let h = health(&engine);
        assert_eq!((h.log[0].exit_code, h.log[0].output.as_str()), (0, "ok\n"));
        assert!(shims
            .calls(&id)
            .contains(&ShimCall::Exec(vec!["check".into()])));

        // A user's exec: its output, then its code in inspect.
        shims.exec_outcome(&id, 3, "hello\n");
        let cfg = berth_api::ExecConfig {
            attach_stdout: true,
            cmd: vec!["echo".into(), "hello".into()],
            ..Default::default()
        };
        let exec_id = engine.exec_create("app", cfg).unwrap();
        let prepared = engine.exec_prepare(&exec_id, false, None).unwrap();
        let mut stream = engine.exec_launch(prepared).await.unwrap().unwrap();
        let mut raw = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut raw)
            .await
            .unwrap();
        assert_eq!(&raw[8..], b"hello\n");
        engine.exec_finished(&exec_id).await;
        let ins = engine.exec_inspect(&exec_id).unwrap();
        assert_eq!((ins.running, ins.exit_code), (false, Some(3)));
        assert_eq!(ins.process_config.entrypoint, "echo");

        // Failing probes, `Retries` of them in a row: unhealthy.
        until(&engine, "app", "unhealthy", |s| {
            s.health.as_ref().is_some_and(|h| h.status == "unhealthy")
        })
        .await;
        assert!(health(&engine).failing_streak >= 2);

        // A command the shim cannot find: 127, as dockerd answers.
        shims.exec_outcome(&id, 127, "");
        let exec_id = engine
            .exec_create(
                "app",
                berth_api::ExecConfig {
                    cmd: vec!["nope".into()],
                    ..Default::default()
                },
            )
            .unwrap();
        let prepared = engine.exec_prepare(&exec_id, true, None).unwrap();
        assert!(engine.exec_launch(prepared).await.is_err());
        assert_eq!(engine.exec_inspect(&exec_id).unwrap().exit_code, Some(127));
    });
}
