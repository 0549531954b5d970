//! The Authy half of the sandbox: the REST API the client calls, and the
//! signed OneTouch callbacks it posts back to the gateway.

pub(super) mod api;
pub(super) mod callback;
