//! Second-factor providers. A provider only talks to the outside world
//! (send a push, send or check a code); the state of a challenge lives in
//! the session, owned by the auth flow.

pub mod authy;
mod http;
pub mod totp;
pub mod verify;
pub mod webauthn;

use std::collections::BTreeMap;

use crate::model::{Delivery, Method, PushStatus};

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
    /// The code was sent too long ago, or was used already (Verify's 404):
    /// the user needs a new one.
    #[error("the code expired or was used already")]
    Expired,
    /// The provider throttles this user (Verify's 429).
    #[error("the provider asks to retry in {retry_after}s")]
    RateLimited { retry_after: u64 },
}

/// What a provider needs to know about a user.
pub struct FactorUser<'a> {
    pub email: &'a str,
    pub country_code: &'a str,
    pub phone: &'a str,
    /// When an admin last reset the user's second factor (Unix seconds):
    /// anything enrolled before it no longer counts.
    pub reset_at: Option<u64>,
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
    fn method(&self) -> Method;
    fn delivery(&self) -> Delivery;
    /// Whether the user can confirm with this method now: a phone (or
    /// email) to reach for Authy and Verify, a kept secret for TOTP.
    fn is_enrolled(&self, user: &FactorUser<'_>) -> Result<bool, FactorError>;
    /// The provider's name for the user (an Authy id, a phone number, an
    /// email), registering them with the provider on first use.
    async fn subject(&self, user: &FactorUser<'_>) -> Result<String, FactorError>;
    /// Sends a push; `None` when this provider has none.
    async fn start_push(
        &self,
        _subject: &str,
        _request: &PushRequest,
    ) -> Result<Option<String>, FactorError> {
        Ok(None)
    }
    async fn push_status(&self, _push_id: &str) -> Result<PushStatus, FactorError> {
        Err(FactorError::Rejected(format!(
            "{} has no push",
            self.method().as_str()
        )))
    }
    /// Sends a one-time code (SMS, call, email); providers of
    /// `Delivery::AppCode` have nothing to send.
    async fn send_code(&self, subject: &str) -> Result<(), FactorError>;
    async fn check_code(&self, subject: &str, code: &str) -> Result<CodeCheck, FactorError>;
}
