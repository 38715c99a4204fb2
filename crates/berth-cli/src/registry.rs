//! `berth registry serve`: the built-in OCI distribution server, in the
//! foreground (crate `berth-registry`).

use crate::args::{RegistryCmd, RegistryServeArgs};
use anyhow::{Context, Result};

pub fn dispatch(cmd: RegistryCmd) -> Result<i32> {
    match cmd {
        RegistryCmd::Serve(a) => serve(a),
    }
}

fn serve(a: RegistryServeArgs) -> Result<i32> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the registry's runtime")?;
    rt.block_on(berth_registry::serve(&a.addr, &a.root))?;
    Ok(0)
}
