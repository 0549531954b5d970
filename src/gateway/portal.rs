//! The portal's handlers: thin glue between HTTP and the auth flow.

use std::collections::HashMap;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use super::Gateway;
use super::error::GatewayError;
use super::forms::Posted;
use super::request::{field, query_param};
use super::response::{self, Format};
use crate::auth::AuthError;
use crate::metrics::LoginOutcome;
use crate::pages::LoginView;
use crate::wire::Body;
use crate::wire::ConnInfo;

impl Gateway {
    pub(super) fn login_page(&self, req: &Request<Incoming>, format: Format) -> Response<Body> {
        let rd = query_param(req, "rd").unwrap_or_default();
        self.login_form(req, format, StatusCode::OK, &rd, "", None)
    }

    pub(super) async fn login_submit(
        &self,
        req: Request<Incoming>,
        conn: ConnInfo,
        format: Format,
    ) -> Response<Body> {
        let client = self.client_of(req.headers(), conn);
        let Posted {
            head: req_head,
            form,
            error,
        } = self.posted(req).await;
        if let Some(err) = error {
            self.metrics.login(match err {
                GatewayError::Csrf => LoginOutcome::Csrf,
                _ => LoginOutcome::InvalidRequest,
            });
            return self.login_failed(&req_head, format, &err, &form);
        }
        let email = field(&form, "email");
        let previous = self.cookies.session_id(req_head.headers());
        let login = self
            .auth
            .login(email, field(&form, "password"), client, previous.as_ref())
            .await;
        match login {
            Ok(ok) => {
                self.metrics.login(LoginOutcome::Success);
                tracing::info!(user = %ok.user.email, client = %client, "login succeeded");
                let next = self.after_login(ok.level, field(&form, "rd"), &ok.user, client);
                let state = level_name(ok.level);
                let cookie = self.cookies.set_session(&ok.session_id);
                let response = match format {
                    Format::Json => {
                        response::json(StatusCode::OK, &json!({"state": state, "next": next}))
                    }
                    Format::Html => response::redirect(StatusCode::SEE_OTHER, &next),
                };
                response::with_cookies(response, &[cookie])
            }
            Err(err) => {
                self.metrics.login(login_outcome(&err));
                tracing::warn!(user = %email, client = %client, reason = %err, "login failed");
                self.login_failed(&req_head, format, &err.into(), &form)
            }
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
    fn login_failed<B>(
        &self,
        req: &Request<B>,
        format: Format,
        err: &GatewayError,
        form: &HashMap<String, String>,
    ) -> Response<Body> {
        if format == Format::Json {
            return response::error(err, format, &self.pages);
        }
        let mut page = self.login_form(
            req,
            format,
            err.status(),
            field(form, "rd"),
            field(form, "email"),
            Some(err.message()),
        );
        if let GatewayError::RateLimited { retry_after } = err {
            page.headers_mut()
                .insert(http::header::RETRY_AFTER, (*retry_after).into());
        }
        page
    }

    fn login_form<B>(
        &self,
        req: &Request<B>,
        format: Format,
        status: StatusCode,
        rd: &str,
        email: &str,
        message: Option<&str>,
    ) -> Response<Body> {
        self.form_page(req, format, |csrf| match format {
            Format::Json => response::json(status, &json!({"csrf": csrf})),
            Format::Html => {
                let action = format!("{}/login", self.prefix);
                let view = LoginView {
                    action: &action,
                    csrf,
                    rd,
                    email,
                    message,
                };
                response::html(status, self.pages.login(&view))
            }
        })
    }

    pub(super) fn logout_page(&self, req: &Request<Incoming>, format: Format) -> Response<Body> {
        let user = self.current_user(req);
        self.form_page(req, format, |csrf| match format {
            Format::Json => response::json(StatusCode::OK, &json!({"csrf": csrf, "user": user})),
            Format::Html => {
                let action = format!("{}/logout", self.prefix);
                let page = self.pages.logout(&action, csrf, user.as_deref());
                response::html(StatusCode::OK, page)
            }
        })
    }

    pub(super) async fn logout_submit(
        &self,
        req: Request<Incoming>,
        conn: ConnInfo,
        format: Format,
    ) -> Result<Response<Body>, GatewayError> {
        let client = self.client_of(req.headers(), conn);
        let (req_head, _) = self.posted(req).await.checked()?;
        let id = self.cookies.session_id(req_head.headers());
        if let Some(user) = id.map(|id| self.auth.logout(&id)).transpose()?.flatten() {
            tracing::info!(user = %user, client = %client, "logout");
        }
        let login = self
            .redirects
            .portal_url("login", &self.redirects.safe_target("/"));
        let response = match format {
            Format::Json => response::json(
                StatusCode::OK,
                &json!({"state": "anonymous", "next": login}),
            ),
            Format::Html => response::redirect(StatusCode::SEE_OTHER, &login),
        };
        Ok(response::with_cookies(
            response,
            &[self.cookies.clear_session()],
        ))
    }

    pub(super) fn healthz(&self) -> Response<Body> {
        if self.sessions.is_healthy() {
            response::json(StatusCode::OK, &json!({"status": "ok"}))
        } else {
            response::json(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"status": "store_unavailable"}),
            )
        }
    }

    fn current_user<B>(&self, req: &Request<B>) -> Option<String> {
        let id = self.cookies.session_id(req.headers())?;
        match self.auth.check(Some(&id), crate::model::Policy::OneFactor) {
            crate::auth::Access::Granted(user) => user.map(|u| u.email.clone()),
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

fn level_name(level: crate::store::AuthLevel) -> &'static str {
    match level {
        crate::store::AuthLevel::OneFactor => "one_factor",
        crate::store::AuthLevel::TwoFactor => "two_factor",
    }
}
