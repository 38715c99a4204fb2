//! `berth network …`.

use crate::args::*;
use crate::client::{urlencode, Client};
use crate::format::print_rows;
use crate::util::{confirm, filters_query, kv_map, print_deleted};
use anyhow::Result;
use berth_api::{
    EndpointIpamConfig, EndpointSettings, Ipam, IpamConfig, NetworkConnectRequest,
    NetworkCreateRequest, NetworkPruneReport,
};
use serde_json::{json, Value};

pub fn dispatch(c: &Client, cmd: NetworkCmd) -> Result<i32> {
    match cmd {
        NetworkCmd::Create(a) => create(c, a),
        NetworkCmd::Ls(a) => ls(c, a),
        NetworkCmd::Inspect(a) => inspect(c, a),
        NetworkCmd::Rm(a) => rm(c, a),
        NetworkCmd::Prune(a) => prune(c, a),
        NetworkCmd::Connect(a) => {
            let endpoint = EndpointSettings {
                aliases: Some(a.alias),
                ipam_config: a.ip.map(|ip| EndpointIpamConfig {
                    ipv4_address: ip,
                    ..EndpointIpamConfig::default()
                }),
                ..EndpointSettings::default()
            };
            let req = NetworkConnectRequest {
                container: a.container,
                endpoint_config: Some(endpoint),
                ..NetworkConnectRequest::default()
            };
            c.post_json(
                &format!("/networks/{}/connect", urlencode(&a.network)),
                &req,
            )?;
            Ok(0)
        }
        NetworkCmd::Disconnect(a) => {
            let req = NetworkConnectRequest {
                container: a.container,
                force: a.force,
                ..NetworkConnectRequest::default()
            };
            c.post_json(
                &format!("/networks/{}/disconnect", urlencode(&a.network)),
                &req,
            )?;
            Ok(0)
        }
    }
}

fn create(c: &Client, a: NetworkCreateArgs) -> Result<i32> {
    // One IPAM configuration per subnet; gateways, ranges and auxiliary
    // addresses go with the subnet of their address family.
    let v6 = |s: &str| s.contains(':');
    let config = a
        .subnet
        .iter()
        .map(|sub| {
            let same = |x: &&String| v6(x) == v6(sub);
            IpamConfig {
                subnet: sub.clone(),
                gateway: a.gateway.iter().find(same).cloned().unwrap_or_default(),
                ip_range: a.ip_range.iter().find(same).cloned().unwrap_or_default(),
                auxiliary_addresses: a
                    .aux_address
                    .iter()
                    .filter_map(|x| x.split_once('='))
                    .filter(|(_, ip)| v6(ip) == v6(sub))
                    .map(|(h, ip)| (h.to_string(), ip.to_string()))
                    .collect(),
            }
        })
        .collect();
    let body = NetworkCreateRequest {
        name: a.name,
        driver: a.driver,
        internal: a.internal,
        attachable: a.attachable,
        enable_ipv6: a.ipv6,
        labels: kv_map(&a.label),
        options: kv_map(&a.opt),
        ipam: Some(Ipam {
            driver: "default".into(),
            options: None,
            config,
        }),
        ..NetworkCreateRequest::default()
    };
    let made: berth_api::NetworkCreateResponse =
        c.post_json("/networks/create", &body)?.decode()?;
    println!("{}", made.id);
    Ok(0)
}

fn ls(c: &Client, a: VolumeLsArgs) -> Result<i32> {
    let q = filters_query(&a.filter)?;
    let nets: Vec<berth_api::NetworkResource> = c.get(&format!("/networks{q}"))?.decode()?;
    let short = |id: &str| id.chars().take(12).collect::<String>();
    if a.quiet {
        for n in &nets {
            println!("{}", short(&n.id));
        }
        return Ok(0);
    }
    // Templates see the API's fields, and `ID` short as the docker CLI's.
    let rows: Vec<Value> = nets
        .iter()
        .map(|n| {
            let mut r = serde_json::to_value(n).unwrap_or_default();
            r["ID"] = json!(short(&n.id));
            r
        })
        .collect();
    print_rows(
        &a.format,
        "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}",
        &rows,
        &[
            ("ID", "NETWORK ID"),
            ("Name", "NAME"),
            ("Driver", "DRIVER"),
            ("Scope", "SCOPE"),
        ],
    )?;
    Ok(0)
}

fn inspect(c: &Client, a: VolumeInspectArgs) -> Result<i32> {
    crate::volume::inspect_objects(c, "/networks", &a.volumes, &a.format)
}

fn rm(c: &Client, a: NetworkRmArgs) -> Result<i32> {
    let mut code = 0;
    for n in &a.networks {
        match c.delete(&format!("/networks/{}", urlencode(n))) {
            Ok(_) => println!("{n}"),
            Err(e) => {
                if !a.force {
                    eprintln!("{e}");
                    code = 1;
                }
            }
        }
    }
    Ok(code)
}

fn prune(c: &Client, a: NetworkPruneArgs) -> Result<i32> {
    if !a.force
        && !confirm("WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue?")
    {
        return Ok(0);
    }
    let q = filters_query(&a.filter)?;
    let r: NetworkPruneReport = c.post(&format!("/networks/prune{q}"))?.decode()?;
    print_deleted("Networks", &r.networks_deleted);
    Ok(0)
}
