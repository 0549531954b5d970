//! Authy: the REST client, the OneTouch webhook signature, and the sandbox
//! that speaks the same wire format for tests and `authgate demo`.

pub mod client;
pub mod params;
pub mod provider;
pub mod sandbox;
pub mod signature;
pub mod webhook;
