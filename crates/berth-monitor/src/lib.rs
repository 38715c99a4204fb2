//! The pieces of a container's supervisor that its two images share: the
//! full shim (berth-shim, which creates containers and starts execs) and the monitor (berth-monitor, which an idle shim becomes).
//! Kept to std and libc: the monitor links this crate.

pub mod handover;
pub mod log;
