//! The container room: create, start and what follows, attach, and the
//! views of containers. Each file adds methods to `Engine`.

mod attach;
mod create;
mod lifecycle;
mod runspec;
mod start;
mod views;
