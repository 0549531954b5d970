//! authgate: a two-factor authentication gateway.
//!
//! The modules are layers. Each imports only modules of the layers below
//! it, never one above and never one beside it; `tests/it/layers.rs` reads
//! the imports and holds the code to this list. Top to bottom:
//!
//! | layer | modules |
//! | --- | --- |
//! | the demo: a whole world on one machine | demo |
//! | assembly: build the application from the config; logging set-up | app, logging |
//! | transport (listeners, TLS, the fast path, shutdown) and routing (portal, webhook, forward-auth or proxy, per request): neither knows the other; `app` hands the gateway to the server as a `wire::Handler`; the operator's admin socket | server, gateway, admin |
//! | forwarding upstream; rendering pages | proxy, pages |
//! | the login state machine, over traits | auth |
//! | the Authy and Verify simulators | sandbox |
//! | second-factor providers; the audit trail | factor, audit |
//! | counters | metrics |
//! | sessions and durable state; the users file | store, users |
//! | the operator's config, raw → validated | config |
//! | access rules and request normalization | access |
//! | shared vocabulary, imports nothing of ours | model, clock, wire |
//!
//! `docs/architecture.md` walks a request through them.

pub mod access;
pub mod admin;
pub mod app;
pub mod audit;
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
