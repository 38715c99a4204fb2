//! `berth registry serve` (the built-in OCI distribution server, in the
//! foreground) and `berth registry gc` (crate `berth-registry`).

use crate::args::{RegistryCmd, RegistryGcArgs, RegistryServeArgs};
use crate::format::human_size;
use anyhow::{Context, Result};
use berth_registry::Storage;

pub fn dispatch(cmd: RegistryCmd) -> Result<i32> {
    match cmd {
        RegistryCmd::Serve(a) => serve(a),
        RegistryCmd::Gc(a) => gc(a),
    }
}

fn gc(a: RegistryGcArgs) -> Result<i32> {
    let store = berth_registry::FsStorage::open(&a.root)
        .with_context(|| format!("opening {}", a.root.display()))?;
    let r = store.collect_garbage(std::time::Duration::from_secs(a.grace))?;
    println!(
        "deleted {} blobs ({}) and {} abandoned uploads",
        r.blobs,
        human_size(r.bytes as f64),
        r.uploads
    );
    Ok(0)
}

fn serve(a: RegistryServeArgs) -> Result<i32> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the registry's runtime")?;
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(cert), Some(key)) => Some(berth_registry::TlsFiles { cert, key }),
        _ => None,
    };
    let htpasswd = a.htpasswd.as_deref();
    rt.block_on(berth_registry::serve(&a.addr, &a.root, htpasswd, tls))?;
    Ok(0)
}
