//! The flow's one error type, and how a provider's error becomes one. Every
//! file of `auth/` may import this one; it imports only the leaves of
//! `auth/` (`password`, `regulation`), so the files of `auth/` import each
//! other without a cycle.

use crate::factor::FactorError;
use crate::store::StoreError;

use super::password::MAX_PASSWORD_CHARS;
use super::regulation::Refusal;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Wrong password and unknown email are the same error on purpose.
    #[error("invalid email or password")]
    InvalidCredentials,
    #[error("too many failed attempts; retry in {retry_after}s")]
    RateLimited { retry_after: u64 },
    #[error("password longer than {MAX_PASSWORD_CHARS} characters")]
    PasswordTooLong,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no live session")]
    LoginRequired,
    #[error("the session has its second factor already")]
    AlreadyConfirmed,
    #[error("the second-factor challenge expired")]
    ChallengeExpired,
    #[error("wrong code; {left} tries left")]
    InvalidCode { left: u32 },
    #[error("too many wrong codes; the session was ended")]
    TooManyWrongCodes,
    #[error("the second-factor provider cannot be reached")]
    ProviderUnavailable,
    #[error("the second-factor provider refused: {0}")]
    ProviderRejected(String),
    /// The code was sent too long ago or used already: a new one is needed.
    #[error("the code expired or was used already")]
    CodeExpired,
    /// The user has no second factor this gateway offers (and may not
    /// enroll one now).
    #[error("no second factor is set up for this account")]
    NoSecondFactor,
    /// Adding a factor needs a second factor confirmed in the last few
    /// minutes; this session's is older.
    #[error("confirm your second factor again first")]
    ConfirmAgain,
    /// The user's last second factor cannot go while one is required.
    #[error("this is the account's last second factor")]
    LastFactor,
    /// A security key's answer was not taken (no step up, no new key).
    #[error("the security key was not accepted: {0}")]
    KeyRefused(crate::factor::webauthn::Refused),
    /// A sign-up form the gateway will not take; the text is for the user.
    #[error("sign-up refused: {0}")]
    Signup(&'static str),
}

impl From<Refusal> for AuthError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Banned(b) => AuthError::RateLimited {
                retry_after: b.retry_after,
            },
            Refusal::Store(err) => AuthError::Store(err),
        }
    }
}

pub(super) fn provider_error(err: FactorError) -> AuthError {
    match err {
        FactorError::Unavailable(detail) => {
            tracing::warn!(error = %detail, "second-factor provider unavailable");
            AuthError::ProviderUnavailable
        }
        FactorError::Rejected(detail) => AuthError::ProviderRejected(detail),
        FactorError::Expired => AuthError::CodeExpired,
        FactorError::RateLimited { retry_after } => AuthError::RateLimited { retry_after },
    }
}
