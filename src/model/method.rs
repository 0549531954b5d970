//! The second factors by name, how each reaches the user, and where a push
//! stands: named in the config, the users file, the stored sessions and the
//! pages alike.

use serde::{Deserialize, Serialize};

/// The second factors the gateway knows, as named in `auth.methods`,
/// the users file and `?method=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    Authy,
    Totp,
    Verify,
    Webauthn,
}

impl Method {
    pub const ALL: [Method; 4] = [
        Method::Authy,
        Method::Totp,
        Method::Verify,
        Method::Webauthn,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Authy => "authy",
            Method::Totp => "totp",
            Method::Verify => "verify",
            Method::Webauthn => "webauthn",
        }
    }

    pub fn parse(name: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.as_str() == name)
    }
}

/// How the user gets what they confirm with; decides what the verify page
/// offers and what starting a challenge does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// A push to approve on the phone, with a code as the fallback (Authy).
    Push,
    /// A code the provider sends when the challenge starts (Verify).
    SentCode,
    /// A code the user reads from an app; nothing is sent (TOTP).
    AppCode,
    /// The browser asks an authenticator to sign a challenge (WebAuthn):
    /// no code, and nothing leaves the gateway but the page.
    Assertion,
}

/// Where a push approval request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PushStatus {
    Pending,
    Approved,
    Denied,
    Expired,
}

impl PushStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PushStatus::Pending => "pending",
            PushStatus::Approved => "approved",
            PushStatus::Denied => "denied",
            PushStatus::Expired => "expired",
        }
    }
}
