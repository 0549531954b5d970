//! The second-factor pages: verify (waiting view and code form), resend,
//! the status poll, and the Authy webhook. Thin glue over
//! `auth::challenge`.

use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use super::Gateway;
use super::answer::{self, Answer, Form};
use super::error::GatewayError;
use super::forms::Post;
use super::request::{self, field, query_param};
use super::response::Format;
use crate::auth::{AuthError, Requester, StatusOutcome};
use crate::factor::authy::webhook::{CallbackRequest, WebhookError};
use crate::metrics::{FactorMethod, FactorOutcome};
use crate::model::{Method, PushStatus};
use crate::store::SessionId;
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
    ) -> Result<Answer, GatewayError> {
        let rd = self
            .redirects
            .safe_target(&query_param(req, "rd").unwrap_or_default());
        let Some(id) = self.cookies.session_id(req.headers()) else {
            return Ok(self.to_login(&rd));
        };
        if let Some(done) = self.confirmed_push(&id, &rd)? {
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
            Ok(view) => {
                let form = Form::Verify {
                    rd,
                    view,
                    message: None,
                };
                self.form(req, StatusCode::OK, form)
            }
            Err(AuthError::AlreadyConfirmed) => Ok(self.to_target(rd, None)),
            Err(AuthError::LoginRequired) => Ok(self.to_login(&rd)),
            Err(AuthError::NoSecondFactor) => match self.auth.enrollable(&id)?.first() {
                Some(Method::Webauthn) => Ok(self.to_portal_page("enroll/webauthn", &rd)),
                Some(_) => Ok(self.to_portal_page("enroll/totp", &rd)),
                None => Err(AuthError::NoSecondFactor.into()),
            },
            Err(err) => Err(err.into()),
        }
    }

    pub(super) async fn verify_submit(
        &self,
        req: Request<Incoming>,
        conn: ConnInfo,
        format: Format,
    ) -> Result<Answer, GatewayError> {
        let client = self.client_of(req.headers(), conn);
        let ChallengePost { req, form, rd, id } = self.challenge_post(req).await?;
        let subject = self.challenge_subject(&id);
        let checked = self.auth.verify_code(&id, field(&form, "code")).await;
        self.metrics
            .second_factor(FactorMethod::Code, code_outcome(&checked));
        if matches!(
            checked,
            Ok(_) | Err(AuthError::TooManyWrongCodes | AuthError::InvalidCode { .. })
        ) {
            let confirmed = checked.as_ref().ok();
            self.audit_second_factor((req.headers(), conn), subject, &id, confirmed);
        }
        match checked {
            Ok(new_id) => {
                tracing::info!(client = %client, "second factor confirmed by code");
                Ok(self.to_target(rd, Some(&new_id)))
            }
            Err(AuthError::TooManyWrongCodes) => {
                tracing::warn!(client = %client, "too many wrong codes; session ended");
                Ok(self.session_ended())
            }
            Err(
                err @ (AuthError::InvalidCode { .. }
                | AuthError::ProviderUnavailable
                | AuthError::CodeExpired
                | AuthError::RateLimited { .. }),
            ) => {
                tracing::warn!(client = %client, reason = %err, "second factor not confirmed");
                self.verify_failed(&req, &id, format, rd, err.into())
            }
            Err(err) => Err(err.into()),
        }
    }

    pub(super) async fn resend_submit(
        &self,
        req: Request<Incoming>,
        format: Format,
    ) -> Result<Answer, GatewayError> {
        let ChallengePost { req, rd, id, .. } = self.challenge_post(req).await?;
        match self.auth.resend_code(&id).await {
            Ok(()) => format.choose(
                || self.code_resent(&req, &id, rd),
                || Ok(Answer::json(StatusCode::OK, json!({"status": "sent"}))),
            ),
            Err(err @ (AuthError::RateLimited { .. } | AuthError::ProviderUnavailable)) => {
                self.verify_failed(&req, &id, format, rd, err.into())
            }
            Err(err) => Err(err.into()),
        }
    }

    /// The verify page again, saying a new code is on its way.
    fn code_resent(
        &self,
        req: &Request<()>,
        id: &SessionId,
        rd: String,
    ) -> Result<Answer, GatewayError> {
        let Some(view) = self.auth.challenge_view(id) else {
            return Ok(self.to_login(&rd));
        };
        // Authy's resend is always an SMS; Verify's is its channel.
        let message = match view.method {
            Method::Authy => "We sent you a new code by SMS.",
            _ => "We sent you a new code.",
        };
        let form = Form::Verify {
            rd,
            view,
            message: Some(message.to_owned()),
        };
        self.form(req, StatusCode::OK, form)
    }

    /// `GET status`: the push's state; on approval the new session cookie.
    /// JSON for every client: the page's script polls it.
    pub(super) fn status(&self, req: &Request<Incoming>, conn: ConnInfo) -> Answer {
        let outcome = self
            .cookies
            .session_id(req.headers())
            .ok_or(AuthError::LoginRequired)
            .and_then(|id| self.auth.push_outcome(&id));
        match outcome {
            Ok(StatusOutcome::Confirmed(new_id)) => {
                self.push_counted(FactorOutcome::Success);
                self.audit_push_step_up(req.headers(), conn, &new_id);
                Answer::json(StatusCode::OK, json!({"status": "approved"}))
                    .with_cookie(self.cookies.set_session(&new_id))
            }
            Ok(StatusOutcome::Waiting(push)) => {
                match push {
                    Some(PushStatus::Denied) => self.push_counted(FactorOutcome::Denied),
                    Some(PushStatus::Expired) => self.push_counted(FactorOutcome::Expired),
                    _ => {}
                }
                let status = push.map_or("none", |p| p.as_str());
                Answer::json(StatusCode::OK, json!({"status": status}))
            }
            Err(AuthError::AlreadyConfirmed) => {
                Answer::json(StatusCode::OK, json!({"status": "approved"}))
            }
            Err(err) => Answer::failed_as_json(err.into()),
        }
    }

    /// The OneTouch webhook. Only a bad signature gets an error status:
    /// Authy turns a callback URL off after three error answers in a row.
    pub(super) async fn authy_callback(
        &self,
        req: Request<Incoming>,
    ) -> Result<Answer, GatewayError> {
        let verifier = self.portal.webhook.as_ref().ok_or(GatewayError::NotFound)?;
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
            // Not trusted, and not answered with an error: the poller
            // finds the answer once the store is back.
            Err(err @ WebhookError::ReplayUnchecked(_)) => {
                tracing::warn!(reason = %err, "OneTouch callback ignored")
            }
            Err(err) => tracing::info!(reason = %err, "OneTouch callback ignored"),
        }
        Ok(Answer::json(StatusCode::OK, json!({"ok": true})))
    }

    /// The fifth wrong code ended the session: say so and drop the cookie.
    pub(super) fn session_ended(&self) -> Answer {
        Answer::failed(AuthError::TooManyWrongCodes.into())
            .with_cookie(self.cookies.clear_session())
    }

    /// A push approved since the last request: the step up happens now.
    fn confirmed_push(&self, id: &SessionId, rd: &str) -> Result<Option<Answer>, GatewayError> {
        match self.auth.push_outcome(id) {
            Ok(StatusOutcome::Confirmed(new_id)) => {
                self.push_counted(FactorOutcome::Success);
                Ok(Some(self.to_target(rd.to_owned(), Some(&new_id))))
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
        let Post { head, form } = self.posted(req).await?;
        let rd = self.redirects.safe_target(field(&form, "rd"));
        let id = self
            .cookies
            .session_id(head.headers())
            .ok_or(GatewayError::LOGIN_REQUIRED)?;
        Ok(ChallengePost {
            req: head,
            form,
            rd,
            id,
        })
    }

    /// The verify form again with what went wrong (browsers, while the
    /// challenge lasts), or the error.
    fn verify_failed(
        &self,
        req: &Request<()>,
        id: &SessionId,
        format: Format,
        rd: String,
        err: GatewayError,
    ) -> Result<Answer, GatewayError> {
        answer::refused(format, err, |err| {
            let Some(view) = self.auth.challenge_view(id) else {
                return Ok(Answer::failed(err));
            };
            let message = match &err {
                GatewayError::Auth(AuthError::InvalidCode { left }) => {
                    format!("Wrong code. {left} tries left.")
                }
                GatewayError::Auth(AuthError::RateLimited { retry_after }) => {
                    format!("Please wait {retry_after} s before trying again.")
                }
                other => other.message().to_owned(),
            };
            let form = Form::Verify {
                rd,
                view,
                message: Some(message),
            };
            self.form(req, err.status(), form)
        })
    }

    /// Success: on to `rd` (JSON: the new state), with the new session id.
    pub(super) fn to_target(&self, rd: String, new_id: Option<&SessionId>) -> Answer {
        let json = json!({"state": "two_factor", "next": rd});
        let answer = Answer::next(rd, json);
        match new_id {
            Some(id) => answer.with_cookie(self.cookies.set_session(id)),
            None => answer,
        }
    }

    pub(super) fn to_login(&self, rd: &str) -> Answer {
        Answer::login_first(self.redirects.portal_url("login", rd))
    }

    /// On to a page of ours keeping `rd` (JSON: where to go next).
    fn to_portal_page(&self, page: &str, rd: &str) -> Answer {
        let next = self.redirects.portal_url(page, rd);
        let json = json!({"next": next});
        Answer::next(next, json)
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
