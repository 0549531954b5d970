//! The second-factor pages: verify (waiting view and code form), resend,
//! the status poll, and the Authy webhook. Thin glue over
//! `auth::challenge`.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use super::Gateway;
use super::error::GatewayError;
use super::request::{self, field, query_param};
use super::response::{self, Format};
use crate::auth::{AuthError, ChallengeView, Requester, StatusOutcome};
use crate::factor::authy::webhook::{CallbackRequest, WebhookError};
use crate::metrics::{FactorMethod, FactorOutcome};
use crate::model::{Delivery, Method, PushStatus};
use crate::pages::VerifyView;
use crate::store::SessionId;
use crate::wire::Body;
use crate::wire::ConnInfo;

/// A webhook body larger than this is not Authy's.
const MAX_CALLBACK_BYTES: usize = 64 * 1024;

pub(super) struct ChallengePost {
    pub req: Request<()>,
    pub form: std::collections::HashMap<String, String>,
    pub rd: String,
    pub id: SessionId,
}

impl Gateway {
    pub(super) async fn verify_page(
        &self,
        req: &Request<Incoming>,
        conn: ConnInfo,
        format: Format,
    ) -> Result<Response<Body>, GatewayError> {
        let rd = self
            .redirects
            .safe_target(&query_param(req, "rd").unwrap_or_default());
        let Some(id) = self.cookies.session_id(req.headers()) else {
            return Ok(self.to_login(&rd, format));
        };
        if let Some(done) = self.confirmed_push(&id, &rd, format)? {
            return Ok(done);
        }
        let client = self.client_of(req.headers(), conn);
        let host = self.redirects.host_of(&rd);
        let requester = Requester {
            host: &host,
            client,
        };
        let wanted = query_param(req, "method").and_then(|m| Method::parse(&m));
        match self.auth.begin_challenge(&id, &requester, wanted).await {
            Ok(view) => Ok(self.verify_form(req, format, StatusCode::OK, &rd, &view, None)),
            Err(AuthError::AlreadyConfirmed) => Ok(self.to_target(&rd, format, None)),
            Err(AuthError::LoginRequired) => Ok(self.to_login(&rd, format)),
            Err(AuthError::NoSecondFactor) if self.auth.may_enroll(&id)? => {
                Ok(self.to_portal_page("enroll/totp", &rd, format))
            }
            Err(err) => Err(err.into()),
        }
    }

    pub(super) async fn verify_submit(
        &self,
        req: Request<Incoming>,
        conn: ConnInfo,
        format: Format,
    ) -> Result<Response<Body>, GatewayError> {
        let client = self.client_of(req.headers(), conn);
        let ChallengePost { req, form, rd, id } = self.challenge_post(req).await?;
        let checked = self.auth.verify_code(&id, field(&form, "code")).await;
        self.metrics
            .second_factor(FactorMethod::Code, code_outcome(&checked));
        match checked {
            Ok(new_id) => {
                tracing::info!(client = %client, "second factor confirmed by code");
                Ok(self.to_target(&rd, format, Some(&new_id)))
            }
            Err(AuthError::TooManyWrongCodes) => {
                tracing::warn!(client = %client, "too many wrong codes; session ended");
                Ok(self.session_ended(format))
            }
            Err(
                err @ (AuthError::InvalidCode { .. }
                | AuthError::ProviderUnavailable
                | AuthError::CodeExpired
                | AuthError::RateLimited { .. }),
            ) => {
                tracing::warn!(client = %client, reason = %err, "second factor not confirmed");
                Ok(self.verify_failed(&req, &id, format, &rd, &err.into()))
            }
            Err(err) => Err(err.into()),
        }
    }

    pub(super) async fn resend_submit(
        &self,
        req: Request<Incoming>,
        format: Format,
    ) -> Result<Response<Body>, GatewayError> {
        let ChallengePost { req, rd, id, .. } = self.challenge_post(req).await?;
        match self.auth.resend_code(&id).await {
            Ok(()) => Ok(match format {
                Format::Json => response::json(StatusCode::OK, &json!({"status": "sent"})),
                Format::Html => {
                    match self.auth.challenge_view(&id) {
                        Some(view) => {
                            // Authy's resend is always an SMS; Verify's is its channel.
                            let message = match view.method {
                                Method::Authy => "We sent you a new code by SMS.",
                                _ => "We sent you a new code.",
                            };
                            self.verify_form(
                                &req,
                                format,
                                StatusCode::OK,
                                &rd,
                                &view,
                                Some(message),
                            )
                        }
                        None => self.to_login(&rd, format),
                    }
                }
            }),
            Err(err @ (AuthError::RateLimited { .. } | AuthError::ProviderUnavailable)) => {
                Ok(self.verify_failed(&req, &id, format, &rd, &err.into()))
            }
            Err(err) => Err(err.into()),
        }
    }

    /// `GET status`: the push's state; on approval the new session cookie.
    pub(super) fn status(&self, req: &Request<Incoming>) -> Response<Body> {
        let outcome = self
            .cookies
            .session_id(req.headers())
            .ok_or(AuthError::LoginRequired)
            .and_then(|id| self.auth.push_outcome(&id));
        match outcome {
            Ok(StatusOutcome::Confirmed(new_id)) => {
                self.push_counted(FactorOutcome::Success);
                let body = response::json(StatusCode::OK, &json!({"status": "approved"}));
                response::with_cookies(body, &[self.cookies.set_session(&new_id)])
            }
            Ok(StatusOutcome::Waiting(push)) => {
                match push {
                    Some(PushStatus::Denied) => self.push_counted(FactorOutcome::Denied),
                    Some(PushStatus::Expired) => self.push_counted(FactorOutcome::Expired),
                    _ => {}
                }
                let status = push.map_or("none", |p| p.as_str());
                response::json(StatusCode::OK, &json!({"status": status}))
            }
            Err(AuthError::AlreadyConfirmed) => {
                response::json(StatusCode::OK, &json!({"status": "approved"}))
            }
            Err(err) => response::error(&err.into(), Format::Json, &self.pages),
        }
    }

    /// The OneTouch webhook. Only a bad signature gets an error status:
    /// Authy turns a callback URL off after three error answers in a row.
    pub(super) async fn authy_callback(
        &self,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, GatewayError> {
        let verifier = self.webhook.as_ref().ok_or(GatewayError::NotFound)?;
        let (parts, body) = req.into_parts();
        let body = request::read_bytes(&parts.headers, body, MAX_CALLBACK_BYTES).await?;
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
        let callback = CallbackRequest {
            method: parts.method.as_str(),
            nonce: header("x-authy-signature-nonce"),
            signature: header("x-authy-signature"),
            query: parts.uri.query(),
            body: &body,
        };
        match verifier.check(&callback, self.auth.now()) {
            Ok(answer) => {
                let applied = self.auth.record_push_answer(
                    &answer.uuid,
                    Some(&answer.authy_id),
                    answer.status,
                );
                tracing::info!(uuid = %answer.uuid, status = answer.status.as_str(), applied, "OneTouch callback");
            }
            Err(WebhookError::BadSignature) => {
                tracing::warn!("OneTouch callback with a bad signature refused");
                return Err(GatewayError::BadSignature);
            }
            Err(err) => tracing::info!(reason = %err, "OneTouch callback ignored"),
        }
        Ok(response::json(StatusCode::OK, &json!({"ok": true})))
    }

    /// The fifth wrong code ended the session: say so and drop the cookie.
    pub(super) fn session_ended(&self, format: Format) -> Response<Body> {
        let page = response::error(&GatewayError::TooManyWrongCodes, format, &self.pages);
        response::with_cookies(page, &[self.cookies.clear_session()])
    }

    /// A push approved since the last request: the step up happens now.
    fn confirmed_push(
        &self,
        id: &SessionId,
        rd: &str,
        format: Format,
    ) -> Result<Option<Response<Body>>, GatewayError> {
        match self.auth.push_outcome(id) {
            Ok(StatusOutcome::Confirmed(new_id)) => {
                self.push_counted(FactorOutcome::Success);
                Ok(Some(self.to_target(rd, format, Some(&new_id))))
            }
            Ok(StatusOutcome::Waiting(_))
            | Err(AuthError::AlreadyConfirmed | AuthError::LoginRequired) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// A push outcome as the browser learns it: the page stops polling
    /// once it has seen one of these, so each push counts about once.
    fn push_counted(&self, outcome: FactorOutcome) {
        self.metrics.second_factor(FactorMethod::Push, outcome);
    }

    /// A post of the second step: CSRF checked, `rd` made safe, and the
    /// session it is about.
    pub(super) async fn challenge_post(
        &self,
        req: Request<Incoming>,
    ) -> Result<ChallengePost, GatewayError> {
        let (req, form) = self.posted(req).await.checked()?;
        let rd = self.redirects.safe_target(field(&form, "rd"));
        let id = self
            .cookies
            .session_id(req.headers())
            .ok_or(GatewayError::LoginRequired)?;
        Ok(ChallengePost { req, form, rd, id })
    }

    fn verify_failed(
        &self,
        req: &Request<()>,
        id: &SessionId,
        format: Format,
        rd: &str,
        err: &GatewayError,
    ) -> Response<Body> {
        let Some(view) = self
            .auth
            .challenge_view(id)
            .filter(|_| format == Format::Html)
        else {
            return response::error(err, format, &self.pages);
        };
        let message = match err {
            GatewayError::InvalidCode { left } => format!("Wrong code. {left} tries left."),
            GatewayError::RateLimited { retry_after } => {
                format!("Please wait {retry_after} s before trying again.")
            }
            other => other.message().to_owned(),
        };
        self.verify_form(req, format, err.status(), rd, &view, Some(&message))
    }

    fn verify_form<B>(
        &self,
        req: &Request<B>,
        format: Format,
        status: StatusCode,
        rd: &str,
        view: &ChallengeView,
        message: Option<&str>,
    ) -> Response<Body> {
        let push = view.push.map(|p| p.as_str());
        let method = view.method.as_str();
        let methods: Vec<&str> = view.methods.iter().map(|m| m.as_str()).collect();
        let others: Vec<&str> = methods.iter().copied().filter(|m| *m != method).collect();
        self.form_page(req, format, |csrf| match format {
            Format::Json => response::json(
                status,
                &json!({"method": method, "methods": methods, "push": push,
                        "push_failed": view.push_failed, "code_sent": view.code_sent,
                        "csrf": csrf, "message": message}),
            ),
            Format::Html => {
                let page = VerifyView {
                    prefix: &self.prefix,
                    csrf,
                    rd,
                    method,
                    push,
                    push_failed: view.push_failed,
                    sends_codes: view.delivery != Delivery::AppCode,
                    others: &others,
                    message,
                };
                response::html(status, self.pages.verify(&page))
            }
        })
    }

    /// Success: 303 to `rd` (JSON: the new state), with the new session id.
    pub(super) fn to_target(
        &self,
        rd: &str,
        format: Format,
        new_id: Option<&SessionId>,
    ) -> Response<Body> {
        let response = match format {
            Format::Json => {
                response::json(StatusCode::OK, &json!({"state": "two_factor", "next": rd}))
            }
            Format::Html => response::redirect(StatusCode::SEE_OTHER, rd),
        };
        let cookies: Vec<String> = new_id
            .map(|id| self.cookies.set_session(id))
            .into_iter()
            .collect();
        response::with_cookies(response, &cookies)
    }

    pub(super) fn to_login(&self, rd: &str, format: Format) -> Response<Body> {
        match format {
            Format::Json => response::error(&GatewayError::LoginRequired, format, &self.pages),
            Format::Html => self.to_portal_page("login", rd, format),
        }
    }

    /// 303 to a page of ours keeping `rd` (JSON: where to go next).
    fn to_portal_page(&self, page: &str, rd: &str, format: Format) -> Response<Body> {
        let next = self.redirects.portal_url(page, rd);
        match format {
            Format::Json => response::json(StatusCode::OK, &json!({"next": next})),
            Format::Html => response::redirect(StatusCode::SEE_OTHER, &next),
        }
    }
}

fn code_outcome(checked: &Result<SessionId, AuthError>) -> FactorOutcome {
    match checked {
        Ok(_) => FactorOutcome::Success,
        Err(AuthError::InvalidCode { .. }) => FactorOutcome::Invalid,
        Err(AuthError::TooManyWrongCodes) => FactorOutcome::TooManyAttempts,
        Err(AuthError::ProviderUnavailable) => FactorOutcome::ProviderUnavailable,
        Err(AuthError::ChallengeExpired | AuthError::CodeExpired) => FactorOutcome::Expired,
        Err(_) => FactorOutcome::Error,
    }
}
