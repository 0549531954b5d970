//! The one place where a failure becomes a status code, an error code and a
//! short message. Details stay in the log; the client gets fixed text.

use http::StatusCode;

use crate::auth::AuthError;
use crate::proxy::ProxyError;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("missing or invalid CSRF token")]
    Csrf,
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("rate limited for {retry_after}s")]
    RateLimited { retry_after: u64 },
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("login required")]
    LoginRequired,
    #[error("forbidden")]
    Forbidden,
    #[error("upstream unavailable: {0}")]
    UpstreamUnavailable(String),
    #[error("upstream timed out")]
    UpstreamTimeout,
    #[error("store unavailable: {0}")]
    StoreUnavailable(String),
    #[error("wrong code, {left} tries left")]
    InvalidCode { left: u32 },
    #[error("too many wrong codes")]
    TooManyWrongCodes,
    #[error("challenge expired")]
    ChallengeExpired,
    #[error("code expired or used")]
    CodeExpired,
    #[error("no second factor set up")]
    NoSecondFactor,
    #[error("second-factor provider unavailable")]
    ProviderUnavailable,
    #[error("second-factor provider refused: {0}")]
    ProviderRejected(String),
    #[error("invalid webhook signature")]
    BadSignature,
}

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::BadRequest(_) => StatusCode::BAD_REQUEST,
            GatewayError::Csrf | GatewayError::Forbidden | GatewayError::NoSecondFactor => {
                StatusCode::FORBIDDEN
            }
            GatewayError::InvalidCredentials | GatewayError::LoginRequired => {
                StatusCode::UNAUTHORIZED
            }
            GatewayError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::NotFound => StatusCode::NOT_FOUND,
            GatewayError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::UpstreamUnavailable(_) => StatusCode::BAD_GATEWAY,
            GatewayError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::StoreUnavailable(_) | GatewayError::ProviderUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            GatewayError::InvalidCode { .. }
            | GatewayError::TooManyWrongCodes
            | GatewayError::ChallengeExpired
            | GatewayError::CodeExpired
            | GatewayError::BadSignature => StatusCode::UNAUTHORIZED,
            GatewayError::ProviderRejected(_) => StatusCode::BAD_GATEWAY,
        }
    }

    /// The stable `error` code of the JSON shape.
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::BadRequest(_) => "bad_request",
            GatewayError::Csrf => "csrf",
            GatewayError::InvalidCredentials => "invalid_credentials",
            GatewayError::RateLimited { .. } => "rate_limited",
            GatewayError::PayloadTooLarge => "payload_too_large",
            GatewayError::NotFound => "not_found",
            GatewayError::MethodNotAllowed => "method_not_allowed",
            GatewayError::LoginRequired => "login_required",
            GatewayError::Forbidden => "forbidden",
            GatewayError::UpstreamUnavailable(_) => "upstream_unavailable",
            GatewayError::UpstreamTimeout => "upstream_timeout",
            GatewayError::StoreUnavailable(_) => "store_unavailable",
            GatewayError::InvalidCode { .. } => "invalid_code",
            GatewayError::TooManyWrongCodes => "too_many_attempts",
            GatewayError::ChallengeExpired => "challenge_expired",
            GatewayError::CodeExpired => "code_expired",
            GatewayError::NoSecondFactor => "no_second_factor",
            GatewayError::ProviderUnavailable | GatewayError::ProviderRejected(_) => {
                "provider_unavailable"
            }
            GatewayError::BadSignature => "invalid_signature",
        }
    }

    /// Short text for people; never carries internal detail.
    pub fn message(&self) -> &'static str {
        match self {
            GatewayError::BadRequest(what) => what,
            GatewayError::Csrf => {
                "The form expired or did not come from this site. Please try again."
            }
            GatewayError::InvalidCredentials => "Invalid email or password.",
            GatewayError::RateLimited { .. } => {
                "Too many failed attempts. Please wait and try again later."
            }
            GatewayError::PayloadTooLarge => "The request is too large.",
            GatewayError::NotFound => "Not found.",
            GatewayError::MethodNotAllowed => "Method not allowed.",
            GatewayError::LoginRequired => "Please log in.",
            GatewayError::Forbidden => "You are not allowed to see this page.",
            GatewayError::UpstreamUnavailable(_) => {
                "The application behind this gateway is not reachable."
            }
            GatewayError::UpstreamTimeout => {
                "The application behind this gateway did not answer in time."
            }
            GatewayError::StoreUnavailable(_) => {
                "The gateway cannot store sessions right now. Please try again later."
            }
            GatewayError::InvalidCode { .. } => "Wrong code. Please try again.",
            GatewayError::TooManyWrongCodes => "Too many wrong codes. Please log in again.",
            GatewayError::ChallengeExpired => "The verification expired. Please start again.",
            GatewayError::CodeExpired => {
                "This code expired or was used already. Ask for a new code."
            }
            GatewayError::NoSecondFactor => {
                "No second factor is set up for your account. Ask an administrator to set one up."
            }
            GatewayError::ProviderUnavailable => {
                "The second-factor service cannot be reached right now. Please try again, or use a code."
            }
            GatewayError::ProviderRejected(_) => "The second-factor service refused the request.",
            GatewayError::BadSignature => "Invalid signature.",
        }
    }
}

impl From<AuthError> for GatewayError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::InvalidCredentials => GatewayError::InvalidCredentials,
            AuthError::RateLimited { retry_after } => GatewayError::RateLimited { retry_after },
            AuthError::PasswordTooLong => GatewayError::BadRequest("The password is too long."),
            AuthError::Store(e) => GatewayError::StoreUnavailable(e.to_string()),
            AuthError::LoginRequired => GatewayError::LoginRequired,
            AuthError::AlreadyConfirmed => GatewayError::BadRequest("Already confirmed."),
            AuthError::ChallengeExpired => GatewayError::ChallengeExpired,
            AuthError::InvalidCode { left } => GatewayError::InvalidCode { left },
            AuthError::TooManyWrongCodes => GatewayError::TooManyWrongCodes,
            AuthError::ProviderUnavailable => GatewayError::ProviderUnavailable,
            AuthError::ProviderRejected(e) => GatewayError::ProviderRejected(e),
            AuthError::Signup(why) => GatewayError::BadRequest(why),
            AuthError::CodeExpired => GatewayError::CodeExpired,
            AuthError::NoSecondFactor => GatewayError::NoSecondFactor,
        }
    }
}

impl From<ProxyError> for GatewayError {
    fn from(err: ProxyError) -> Self {
        match err {
            ProxyError::Timeout => GatewayError::UpstreamTimeout,
            other => GatewayError::UpstreamUnavailable(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_public_surface() {
        assert_eq!(GatewayError::Csrf.status(), 403);
        assert_eq!(GatewayError::InvalidCredentials.status(), 401);
        assert_eq!(GatewayError::RateLimited { retry_after: 1 }.status(), 429);
        assert_eq!(GatewayError::PayloadTooLarge.status(), 413);
        assert_eq!(GatewayError::from(AuthError::NoSecondFactor).status(), 403);
        assert_eq!(GatewayError::from(AuthError::CodeExpired).status(), 401);
        assert_eq!(GatewayError::from(ProxyError::Timeout).status(), 504);
        assert_eq!(
            GatewayError::from(ProxyError::Connect("refused".into())).status(),
            502
        );
    }

    #[test]
    fn messages_never_carry_internal_detail() {
        let err = GatewayError::UpstreamUnavailable("10.1.2.3:80 refused".into());
        assert!(!err.message().contains("10.1.2.3"));
    }
}
