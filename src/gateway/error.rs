//! The one place where a failure becomes a status code, an error code and a
//! short message. Details stay in the log; the client gets fixed text.

use http::StatusCode;

use crate::auth::AuthError;
use crate::auth::approval::ApprovalError;
use crate::proxy::ProxyError;

/// What can go wrong in a request: the gateway's own failures (the
/// request, the route, the portal's forms), and those of the layers below,
/// wrapped as they are.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("missing or invalid CSRF token")]
    Csrf,
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("forbidden")]
    Forbidden,
    /// A CSRF cookie could not be made.
    #[error("no randomness for a CSRF cookie")]
    NoRandomness,
    #[error("invalid webhook signature")]
    BadSignature,
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Upstream(#[from] ProxyError),
    #[error(transparent)]
    Approval(#[from] ApprovalError),
}

impl GatewayError {
    /// A request that needs a live session and has none.
    pub const LOGIN_REQUIRED: GatewayError = GatewayError::Auth(AuthError::LoginRequired);

    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::BadRequest(_) => StatusCode::BAD_REQUEST,
            GatewayError::Csrf | GatewayError::Forbidden => StatusCode::FORBIDDEN,
            GatewayError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::NotFound => StatusCode::NOT_FOUND,
            GatewayError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::NoRandomness => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::BadSignature => StatusCode::UNAUTHORIZED,
            GatewayError::Auth(err) => auth_status(err),
            GatewayError::Upstream(ProxyError::Timeout) => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::Upstream(_) => StatusCode::BAD_GATEWAY,
            GatewayError::Approval(err) => approval_status(err),
        }
    }

    /// The stable `error` code of the JSON shape.
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::BadRequest(_) => "bad_request",
            GatewayError::Csrf => "csrf",
            GatewayError::PayloadTooLarge => "payload_too_large",
            GatewayError::NotFound => "not_found",
            GatewayError::MethodNotAllowed => "method_not_allowed",
            GatewayError::Forbidden => "forbidden",
            GatewayError::NoRandomness => "store_unavailable",
            GatewayError::BadSignature => "invalid_signature",
            GatewayError::Auth(err) => auth_code(err),
            GatewayError::Upstream(ProxyError::Timeout) => "upstream_timeout",
            GatewayError::Upstream(_) => "upstream_unavailable",
            GatewayError::Approval(err) => approval_code(err),
        }
    }

    /// Short text for people; never carries internal detail.
    pub fn message(&self) -> &'static str {
        match self {
            GatewayError::BadRequest(what) => what,
            GatewayError::Csrf => {
                "The form expired or did not come from this site. Please try again."
            }
            GatewayError::PayloadTooLarge => "The request is too large.",
            GatewayError::NotFound => "Not found.",
            GatewayError::MethodNotAllowed => "Method not allowed.",
            GatewayError::Forbidden => "You are not allowed to see this page.",
            GatewayError::NoRandomness => STORE_UNAVAILABLE,
            GatewayError::BadSignature => "Invalid signature.",
            GatewayError::Auth(err) => auth_message(err),
            GatewayError::Upstream(ProxyError::Timeout) => {
                "The application behind this gateway did not answer in time."
            }
            GatewayError::Upstream(_) => "The application behind this gateway is not reachable.",
            GatewayError::Approval(err) => approval_message(err),
        }
    }

    /// The seconds a rate-limited client should wait: `Retry-After`.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            GatewayError::Auth(AuthError::RateLimited { retry_after }) => Some(*retry_after),
            _ => None,
        }
    }
}

const STORE_UNAVAILABLE: &str =
    "The gateway cannot store sessions right now. Please try again later.";

fn auth_status(err: &AuthError) -> StatusCode {
    match err {
        AuthError::PasswordTooLong | AuthError::AlreadyConfirmed | AuthError::Signup(_) => {
            StatusCode::BAD_REQUEST
        }
        AuthError::NoSecondFactor | AuthError::ConfirmAgain => StatusCode::FORBIDDEN,
        AuthError::LastFactor => StatusCode::CONFLICT,
        AuthError::KeyRefused(_) => StatusCode::UNAUTHORIZED,
        AuthError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        AuthError::Store(_) | AuthError::ProviderUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        AuthError::ProviderRejected(_) => StatusCode::BAD_GATEWAY,
        AuthError::InvalidCredentials
        | AuthError::LoginRequired
        | AuthError::InvalidCode { .. }
        | AuthError::TooManyWrongCodes
        | AuthError::ChallengeExpired
        | AuthError::CodeExpired => StatusCode::UNAUTHORIZED,
    }
}

fn approval_status(err: &ApprovalError) -> StatusCode {
    match err {
        ApprovalError::NotFound => StatusCode::NOT_FOUND,
        ApprovalError::TooManyPending => StatusCode::TOO_MANY_REQUESTS,
        ApprovalError::Full => StatusCode::SERVICE_UNAVAILABLE,
        ApprovalError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ApprovalError::State(_) => StatusCode::CONFLICT,
        ApprovalError::OtherMeans | ApprovalError::NoCeremony => StatusCode::BAD_REQUEST,
    }
}

fn approval_code(err: &ApprovalError) -> &'static str {
    match err {
        ApprovalError::NotFound => "not_found",
        ApprovalError::TooManyPending => "rate_limited",
        ApprovalError::Full => "approvals_full",
        ApprovalError::TooLarge => "payload_too_large",
        ApprovalError::State(_) => "approval_state",
        ApprovalError::OtherMeans | ApprovalError::NoCeremony => "bad_request",
    }
}

fn approval_message(err: &ApprovalError) -> &'static str {
    match err {
        ApprovalError::NotFound => "Not found.",
        ApprovalError::TooManyPending => {
            "Too many of your requests are waiting for approval. Approve or cancel one first."
        }
        ApprovalError::Full => {
            "Too many requests are waiting for approval. Please try again later."
        }
        ApprovalError::TooLarge => "The request is too large to be held for approval.",
        ApprovalError::State(_) => "This request cannot take that step now.",
        ApprovalError::OtherMeans => "This request is approved another way: see its page.",
        ApprovalError::NoCeremony => "Start again with the button on the page.",
    }
}

fn auth_code(err: &AuthError) -> &'static str {
    match err {
        AuthError::PasswordTooLong | AuthError::AlreadyConfirmed | AuthError::Signup(_) => {
            "bad_request"
        }
        AuthError::InvalidCredentials => "invalid_credentials",
        AuthError::RateLimited { .. } => "rate_limited",
        AuthError::Store(_) => "store_unavailable",
        AuthError::LoginRequired => "login_required",
        AuthError::InvalidCode { .. } => "invalid_code",
        AuthError::TooManyWrongCodes => "too_many_attempts",
        AuthError::ChallengeExpired => "challenge_expired",
        AuthError::CodeExpired => "code_expired",
        AuthError::NoSecondFactor => "no_second_factor",
        AuthError::ConfirmAgain => "confirm_again",
        AuthError::LastFactor => "last_factor",
        AuthError::KeyRefused(_) => "key_refused",
        AuthError::ProviderUnavailable | AuthError::ProviderRejected(_) => "provider_unavailable",
    }
}

fn auth_message(err: &AuthError) -> &'static str {
    match err {
        AuthError::PasswordTooLong => "The password is too long.",
        AuthError::AlreadyConfirmed => "Already confirmed.",
        AuthError::Signup(why) => why,
        AuthError::InvalidCredentials => "Invalid email or password.",
        AuthError::RateLimited { .. } => {
            "Too many failed attempts. Please wait and try again later."
        }
        AuthError::Store(_) => STORE_UNAVAILABLE,
        AuthError::LoginRequired => "Please log in.",
        AuthError::InvalidCode { .. } => "Wrong code. Please try again.",
        AuthError::TooManyWrongCodes => "Too many wrong codes. Please log in again.",
        AuthError::ChallengeExpired => "The verification expired. Please start again.",
        AuthError::CodeExpired => "This code expired or was used already. Ask for a new code.",
        AuthError::NoSecondFactor => {
            "No second factor is set up for your account. Ask an administrator to set one up."
        }
        AuthError::ProviderUnavailable => {
            "The second-factor service cannot be reached right now. Please try again, or use a code."
        }
        AuthError::ProviderRejected(_) => "The second-factor service refused the request.",
        AuthError::ConfirmAgain => "Confirm it's you again first.",
        AuthError::LastFactor => {
            "This is your last second factor; add another one before removing it."
        }
        AuthError::KeyRefused(_) => "That security key or passkey was not accepted.",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    #[test]
    fn statuses_follow_the_public_surface() {
        assert_eq!(GatewayError::Csrf.status(), 403);
        assert_eq!(
            GatewayError::from(AuthError::InvalidCredentials).status(),
            401
        );
        assert_eq!(
            GatewayError::from(AuthError::RateLimited { retry_after: 1 }).status(),
            429
        );
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
        let err = GatewayError::from(ProxyError::Connect("10.1.2.3:80 refused".into()));
        assert!(!err.message().contains("10.1.2.3"));
    }

    /// Every failure of the auth flow as the client sees it: status, JSON
    /// `error` code, message and `Retry-After` (DESIGN.md's table).
    #[test]
    fn every_auth_error_keeps_its_public_answer() {
        let store = || AuthError::Store(StoreError::Write("disk".into()));
        let cases: [(AuthError, u16, &str, &str, Option<u64>); 14] = [
            (
                AuthError::InvalidCredentials,
                401,
                "invalid_credentials",
                "Invalid email or password.",
                None,
            ),
            (
                AuthError::RateLimited { retry_after: 7 },
                429,
                "rate_limited",
                "Too many failed attempts. Please wait and try again later.",
                Some(7),
            ),
            (
                AuthError::PasswordTooLong,
                400,
                "bad_request",
                "The password is too long.",
                None,
            ),
            (
                store(),
                503,
                "store_unavailable",
                "The gateway cannot store sessions right now. Please try again later.",
                None,
            ),
            (
                AuthError::LoginRequired,
                401,
                "login_required",
                "Please log in.",
                None,
            ),
            (
                AuthError::AlreadyConfirmed,
                400,
                "bad_request",
                "Already confirmed.",
                None,
            ),
            (
                AuthError::ChallengeExpired,
                401,
                "challenge_expired",
                "The verification expired. Please start again.",
                None,
            ),
            (
                AuthError::InvalidCode { left: 2 },
                401,
                "invalid_code",
                "Wrong code. Please try again.",
                None,
            ),
            (
                AuthError::TooManyWrongCodes,
                401,
                "too_many_attempts",
                "Too many wrong codes. Please log in again.",
                None,
            ),
            (
                AuthError::ProviderUnavailable,
                503,
                "provider_unavailable",
                "The second-factor service cannot be reached right now. Please try again, or use a code.",
                None,
            ),
            (
                AuthError::ProviderRejected("no".into()),
                502,
                "provider_unavailable",
                "The second-factor service refused the request.",
                None,
            ),
            (
                AuthError::Signup("The email is not valid."),
                400,
                "bad_request",
                "The email is not valid.",
                None,
            ),
            (
                AuthError::CodeExpired,
                401,
                "code_expired",
                "This code expired or was used already. Ask for a new code.",
                None,
            ),
            (
                AuthError::NoSecondFactor,
                403,
                "no_second_factor",
                "No second factor is set up for your account. Ask an administrator to set one up.",
                None,
            ),
        ];
        for (auth, status, code, message, retry_after) in cases {
            let err = GatewayError::from(auth);
            let answer = (err.status().as_u16(), err.code(), err.message());
            assert_eq!(answer, (status, code, message), "{err:?}");
            let response = super::super::response::error(
                &err,
                super::super::response::Format::Json,
                &crate::pages::Pages::new("/auth"),
            );
            let sent = response.headers().get(http::header::RETRY_AFTER);
            assert_eq!(
                sent.map(|v| v.to_str().unwrap().parse().unwrap()),
                retry_after,
                "{err:?}"
            );
        }
    }
}
