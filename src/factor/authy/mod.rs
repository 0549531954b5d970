//! Authy: the REST client, the OneTouch webhook and its signature. The
//! simulator that speaks the same wire format lives in `crate::sandbox`.

pub mod client;
pub mod params;
pub mod provider;
pub mod signature;
pub mod webhook;
