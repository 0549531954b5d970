//! Second-factor providers. A provider only talks to the outside world
//! (send a push, send or check a code); the state of a challenge lives in
//! the session, owned by the auth flow.

pub mod authy;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeCheck {
    Valid,
    Invalid,
}

#[derive(Debug, thiserror::Error)]
pub enum FactorError {
    /// The provider could not be reached or timed out: not the user's fault,
    /// never counted as a wrong code.
    #[error("second-factor provider unavailable: {0}")]
    Unavailable(String),
    #[error("second-factor provider refused the request: {0}")]
    Rejected(String),
}

/// What a provider needs to know about a user to enrol them.
pub struct FactorUser<'a> {
    pub email: &'a str,
    pub country_code: &'a str,
    pub phone: &'a str,
}

/// A push to the user's phone.
pub struct PushRequest {
    pub message: String,
    /// Shown to the user.
    pub details: BTreeMap<String, String>,
    /// Kept with the request, not shown.
    pub hidden_details: BTreeMap<String, String>,
    pub seconds_to_expire: u64,
}

#[async_trait::async_trait]
pub trait SecondFactor: Send + Sync {
    /// `authy`, `totp`, `verify`.
    fn method(&self) -> &'static str;
    /// The provider's id for the user (an Authy id), registering them when
    /// needed; the flow caches it in the store.
    async fn enroll(&self, user: &FactorUser<'_>) -> Result<String, FactorError>;
    /// Sends a push; `None` when this provider has none.
    async fn start_push(
        &self,
        subject: &str,
        request: &PushRequest,
    ) -> Result<Option<String>, FactorError>;
    async fn push_status(&self, push_id: &str) -> Result<PushStatus, FactorError>;
    /// Sends a one-time code (SMS).
    async fn send_code(&self, subject: &str) -> Result<(), FactorError>;
    async fn check_code(&self, subject: &str, code: &str) -> Result<CodeCheck, FactorError>;
}
