//! The engine over fake host effects: what it asks of the host's networking
//! for networks, checked without root in milliseconds.

use crate::rootfs::RecordingMounter;
use crate::*;
use berth_net::effects::{NetCall, Recording};
use serde_json::json;

/// A data root and exec root of the test's own.
struct Fixture(tempfile::TempDir);

impl Fixture {
    fn new() -> Self {
        Fixture(tempfile::tempdir().unwrap())
    }

    /// An engine over this fixture's roots, as if berthd (re)started.
    async fn open(&self, net: Arc<Recording>) -> Arc<Engine> {
        let cfg = EngineConfig {
            data_root: self.0.path().join("data"),
            exec_root: self.0.path().join("exec"),
            shim_path: "/nonexistent/berth-shim".into(),
            bridge_name: "btfake0".into(),
            bip: "10.96.251.1/24".into(),
            nft_table: "berth_fake".into(),
            socket_redirect: false,
            shim_slim_after_ms: None,
            monitor_path: None,
            ipv6: false,
            fixed_cidr_v6: None,
        };
        let host = Host {
            mounter: Arc::new(RecordingMounter::default()),
            net,
        };
        Engine::open(cfg, host).await.unwrap()
    }
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

    let made =
        Engine::network_create(&engine, &json!({"Name": "app", "Driver": "bridge"})).unwrap();
    let id = made["Id"].as_str().unwrap().to_string();
    let inspected = engine.network_inspect("app").unwrap();
    assert_eq!(inspected["Id"], id.as_str());
    let bridge = match &net.take_calls()[..] {
        [NetCall::EnsureBridge { bridge, .. }, ..] => bridge.clone(),
        other => panic!("network create asked the host for {other:?}"),
    };
    assert!(bridge.starts_with("br-") && net.bridges().contains(&bridge));
    assert!(Engine::network_create(&engine, &json!({"Name": "app"})).is_err());

    // A daemon killed and started again: the network's bridge is back.
    drop(engine);
    let net2 = Arc::new(Recording::default());
    let engine = fx.open(net2.clone()).await;
    let calls = net2.take_calls();
    assert!(calls.contains(&NetCall::EnsureBridge {
        bridge: bridge.clone(),
        subnet: inspected["IPAM"]["Config"][0]["Subnet"]
            .as_str()
            .unwrap()
            .to_string(),
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
