//! The portal's handlers: thin glue between HTTP and the auth flow.

use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use super::Gateway;
use super::answer::{self, Answer, Form};
use super::error::GatewayError;
use super::forms::{Post, RefusedPost};
use super::request::{field, query_param};
use super::response::Format;
use crate::audit::{Event, LoginFailure};
use crate::auth::AuthError;
use crate::metrics::LoginOutcome;
use crate::wire::ConnInfo;

impl Gateway {
    pub(super) fn login_page(&self, req: &Request<Incoming>) -> Result<Answer, GatewayError> {
        let form = Form::Login {
            rd: query_param(req, "rd").unwrap_or_default(),
            email: String::new(),
            message: None,
            retry_after: None,
        };
        self.form(req, StatusCode::OK, form)
    }

    pub(super) async fn login_submit(
        &self,
        req: Request<Incoming>,
        conn: ConnInfo,
        format: Format,
    ) -> Result<Answer, GatewayError> {
        let client = self.client_of(req.headers(), conn);
        let Post { head, form } = match self.posted(req).await {
            Ok(post) => post,
            Err(RefusedPost { post, err }) => {
                let (outcome, reason) = match err {
                    GatewayError::Csrf => (LoginOutcome::Csrf, LoginFailure::Csrf),
                    _ => (LoginOutcome::InvalidRequest, LoginFailure::InvalidRequest),
                };
                self.metrics.login(outcome);
                let event = Event::LoginFailed { reason };
                self.audit((post.head.headers(), conn), event, None, None);
                return self.login_failed(&post, format, err);
            }
        };
        let email = field(&form, "email");
        let previous = self.cookies.session_id(head.headers());
        let device = device_of(head.headers());
        let password = field(&form, "password");
        let login = self
            .auth
            .login_from(email, password, client, previous.as_ref(), device)
            .await;
        match login {
            Ok(ok) => {
                self.metrics.login(LoginOutcome::Success);
                tracing::info!(user = %ok.user.email, client = %client, "login succeeded");
                self.audit(
                    (head.headers(), conn),
                    Event::LoginSucceeded,
                    Some(&ok.user.email),
                    Some(&ok.session_id),
                );
                let next = self.after_login(ok.level, field(&form, "rd"), &ok.user, client);
                let state = level_name(ok.level);
                let json = json!({"state": state, "next": next});
                Ok(Answer::next(next, json).with_cookie(self.cookies.set_session(&ok.session_id)))
            }
            Err(err) => {
                self.metrics.login(login_outcome(&err));
                tracing::warn!(user = %email, client = %client, reason = %err, "login failed");
                self.audit_login_failure((head.headers(), conn), email, client, &err);
                self.login_failed(&Post { head, form }, format, err.into())
            }
        }
    }

    /// `login_failed`, and `regulation_ban` when this failure started a
    /// ban. The user is named only when they exist: what was typed for an
    /// unknown one may be a password pasted in the wrong field.
    fn audit_login_failure(
        &self,
        request: (&http::HeaderMap, ConnInfo),
        email: &str,
        client: std::net::IpAddr,
        err: &AuthError,
    ) {
        if !self.audit.is_on() {
            return;
        }
        let user = self.auth.known_email(email);
        let reason = login_failure(err);
        let event = Event::LoginFailed { reason };
        self.audit(request, event, user.as_deref(), None);
        if reason == LoginFailure::InvalidCredentials && self.auth.is_banned(email, client) {
            self.audit(request, Event::RegulationBan, user.as_deref(), None);
        }
    }

    /// Where a fresh login goes: `rd` when the session already reaches it,
    /// else the second-factor step.
    fn after_login(
        &self,
        level: crate::store::AuthLevel,
        rd: &str,
        user: &crate::model::User,
        client: std::net::IpAddr,
    ) -> String {
        let target = self.redirects.safe_target(rd);
        if self
            .auth
            .level_satisfies(level, self.policy_for_url(&target, user, client))
        {
            target
        } else {
            self.redirects.portal_url("verify", &target)
        }
    }

    /// The login form again, with the error's status and message (HTML), or
    /// the JSON error.
    fn login_failed(
        &self,
        post: &Post,
        format: Format,
        err: GatewayError,
    ) -> Result<Answer, GatewayError> {
        answer::refused(format, err, |err| {
            let form = Form::Login {
                rd: field(&post.form, "rd").to_owned(),
                email: field(&post.form, "email").to_owned(),
                message: Some(err.message().to_owned()),
                retry_after: err.retry_after(),
            };
            self.form(&post.head, err.status(), form)
        })
    }

    pub(super) fn logout_page(&self, req: &Request<Incoming>) -> Result<Answer, GatewayError> {
        let user = self.current_user(req);
        self.form(req, StatusCode::OK, Form::Logout { user })
    }

    pub(super) async fn logout_submit(
        &self,
        req: Request<Incoming>,
        conn: ConnInfo,
    ) -> Result<Answer, GatewayError> {
        let client = self.client_of(req.headers(), conn);
        let Post { head, .. } = self.posted(req).await?;
        let id = self.cookies.session_id(head.headers());
        if let Some(id) = id
            && let Some(user) = self.auth.logout(&id)?
        {
            tracing::info!(user = %user, client = %client, "logout");
            let request = (head.headers(), conn);
            self.audit(request, Event::Logout, Some(&user), Some(&id));
        }
        let login = self
            .redirects
            .portal_url("login", &self.redirects.safe_target("/"));
        let json = json!({"state": "anonymous", "next": login});
        Ok(Answer::next(login, json).with_cookie(self.cookies.clear_session()))
    }

    pub(super) fn healthz(&self) -> Answer {
        if self.portal.sessions.is_healthy() {
            Answer::json(StatusCode::OK, json!({"status": "ok"}))
        } else {
            Answer::json(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"status": "store_unavailable"}),
            )
        }
    }

    fn current_user<B>(&self, req: &Request<B>) -> Option<String> {
        let id = self.cookies.session_id(req.headers())?;
        match self.auth.check(Some(&id), crate::model::Policy::OneFactor) {
            Ok(crate::auth::Access::Granted(user)) => user.map(|u| u.email.clone()),
            _ => None,
        }
    }
}

fn login_outcome(err: &AuthError) -> LoginOutcome {
    match err {
        AuthError::InvalidCredentials => LoginOutcome::BadPassword,
        AuthError::RateLimited { .. } => LoginOutcome::Banned,
        AuthError::Store(_) => LoginOutcome::StoreUnavailable,
        AuthError::PasswordTooLong => LoginOutcome::InvalidRequest,
        _ => LoginOutcome::Error,
    }
}

fn login_failure(err: &AuthError) -> LoginFailure {
    match err {
        AuthError::InvalidCredentials => LoginFailure::InvalidCredentials,
        AuthError::RateLimited { .. } => LoginFailure::Banned,
        AuthError::PasswordTooLong => LoginFailure::InvalidRequest,
        _ => LoginFailure::Error,
    }
}

fn level_name(level: crate::store::AuthLevel) -> &'static str {
    match level {
        crate::store::AuthLevel::OneFactor => "one_factor",
        crate::store::AuthLevel::TwoFactor => "two_factor",
    }
}

/// The browser and OS a login comes from, for the sessions page.
pub(super) fn device_of(headers: &http::HeaderMap) -> Option<crate::model::Device> {
    headers
        .get(http::header::USER_AGENT)
        .and_then(|agent| agent.to_str().ok())
        .map(crate::model::Device::of)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::ProxyError;

    /// Every message the gateway puts on a page has its German words in
    /// the catalogue (`[message]` in de.toml).
    #[test]
    fn a_german_browser_reads_the_gateway_messages_in_german() {
        let german = crate::pages::Pages::new("/p").for_browser(Some("de"));
        let errors = [
            GatewayError::BadRequest("The form could not be read."),
            GatewayError::Csrf,
            GatewayError::PayloadTooLarge,
            GatewayError::NotFound,
            GatewayError::MethodNotAllowed,
            GatewayError::Forbidden,
            GatewayError::NoRandomness,
            GatewayError::BadSignature,
            GatewayError::Upstream(ProxyError::Timeout),
            GatewayError::Upstream(ProxyError::Connect("refused".into())),
        ];
        let auth = [
            AuthError::PasswordTooLong,
            AuthError::AlreadyConfirmed,
            AuthError::Signup("Enter your name."),
            AuthError::InvalidCredentials,
            AuthError::RateLimited { retry_after: 7 },
            AuthError::Store(crate::store::StoreError::Write("disk".into())),
            AuthError::LoginRequired,
            AuthError::InvalidCode { left: 2 },
            AuthError::TooManyWrongCodes,
            AuthError::ChallengeExpired,
            AuthError::CodeExpired,
            AuthError::NoSecondFactor,
            AuthError::ProviderUnavailable,
            AuthError::ProviderRejected("no".into()),
        ];
        for err in errors.into_iter().chain(auth.map(GatewayError::from)) {
            let page = german.error(err.status().as_u16(), err.message());
            assert!(page.contains("<html lang=\"de\">"), "{page}");
            assert!(page.contains("Fehler"), "{page}");
            assert!(!page.contains(err.message()), "{err:?} in English: {page}");
        }
    }
}
