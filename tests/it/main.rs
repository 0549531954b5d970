//! authgate's integration tests: one binary. Each test starts its own echo
//! upstream (in this process) and its own `authgate` child process on
//! 127.0.0.1 with a temp dir, so the tests run in parallel.
//!
//! Run: `cargo test -j 2 --test it`.

mod support;

mod account_sessions;
mod admin_socket;
mod anonymous;
mod approve;
mod audit;
mod authy;
mod cli;
mod config_errors;
mod crash;
mod forward_auth;
mod ha;
mod layers;
mod limits;
mod login;
mod logout;
mod metrics;
mod monitoring;
mod portal_brand;
mod portal_headers;
mod proxies;
mod proxy;
mod regulation;
mod restart;
mod sessions;
mod store_faults;
mod streaming;
mod tls;
mod totp;
mod upgrade;
mod upstream_errors;
mod users_reload;
mod verify;
mod webauthn;
