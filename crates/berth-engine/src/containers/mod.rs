//! The container room: create, start and what follows, attach, and the
//! views of containers. Each file adds methods to `Engine`.

pub mod archive;
mod attach;
mod create;
pub(crate) mod exec;
pub mod health;
mod lifecycle;
pub(crate) mod logs;
pub(crate) mod names;
mod restore;
pub mod rootfs;
mod runspec;
mod start;
pub mod stats;
mod top;
mod update;
pub mod user;
pub(crate) mod validate;
mod views;
