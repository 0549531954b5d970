//! The admin socket: a Unix socket (`server.admin_socket`, mode 0600,
//! off by default) where the operator's CLI lists and revokes sessions and
//! disables users of a running gateway. Line-delimited JSON, one request
//! and one reply per line (docs/admin-socket.md). Only the gateway's own
//! uid and root may connect; nothing here listens on TCP.
//!
//! [`AdminService`] answers the requests; the socket ([`listener`]) and
//! the CLI without a running gateway ([`client`]'s fallback) both use it,
//! so the commands mean the same either way.

pub mod client;
pub mod listener;
mod protocol;
mod service;

pub use protocol::{Reply, Request};
pub use service::{AdminService, lifetimes};
