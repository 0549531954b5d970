//! authgate: a two-factor authentication gateway. The modules follow the
//! layers of DESIGN.md, top to bottom: `server` (transport) → `gateway`
//! (routing) → `auth` (the login state machine) → `store`; `proxy` forwards
//! confirmed requests, `pages` renders HTML, `config` and `users` load what
//! the operator wrote.

pub mod access;
pub mod app;
pub mod auth;
pub mod clock;
pub mod config;
pub mod demo;
pub mod factor;
pub mod gateway;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod pages;
pub mod proxy;
pub mod sandbox;
pub mod server;
pub mod store;
pub mod users;
pub mod wire;
