//! The TOTP enrollment page: thin glue over `auth::enrollment`.

use http::{Request, StatusCode};
use hyper::body::Incoming;

use super::Gateway;
use super::answer::{self, Answer, Form};
use super::error::GatewayError;
use super::request::{field, query_param};
use super::response::Format;
use super::second_factor::ChallengePost;
use crate::auth::AuthError;
use crate::metrics::{FactorMethod, FactorOutcome};
use crate::store::SessionId;
use crate::wire::ConnInfo;

impl Gateway {
    pub(super) fn enroll_page(&self, req: &Request<Incoming>) -> Result<Answer, GatewayError> {
        let rd = self
            .redirects
            .safe_target(&query_param(req, "rd").unwrap_or_default());
        let Some(id) = self.cookies.session_id(req.headers()) else {
            return Ok(self.to_login(&rd));
        };
        self.enrollment(req, &id, StatusCode::OK, rd, None)
    }

    pub(super) async fn enroll_submit(
        &self,
        req: Request<Incoming>,
        conn: ConnInfo,
        format: Format,
    ) -> Result<Answer, GatewayError> {
        let client = self.client_of(req.headers(), conn);
        let ChallengePost { req, form, rd, id } = self.challenge_post(req).await?;
        let subject = self.enrolling_user(&id);
        let finished = self.auth.finish_enrollment(&id, field(&form, "code")).await;
        self.audit_enrollment((req.headers(), conn), subject, &id, &finished);
        match finished {
            Ok(new_id) => {
                self.metrics
                    .second_factor(FactorMethod::Code, FactorOutcome::Success);
                tracing::info!(client = %client, "TOTP enrolled; second factor confirmed");
                Ok(self.to_target(rd, Some(&new_id)))
            }
            Err(AuthError::TooManyWrongCodes) => {
                tracing::warn!(client = %client, "too many wrong enrollment codes; session ended");
                Ok(self.session_ended())
            }
            Err(err @ AuthError::InvalidCode { left }) => {
                self.metrics
                    .second_factor(FactorMethod::Code, FactorOutcome::Invalid);
                answer::refused(format, err.into(), |err| {
                    let message = format!("Wrong code. {left} tries left.");
                    self.enrollment(&req, &id, err.status(), rd, Some(message))
                })
            }
            Err(err) => Err(err.into()),
        }
    }

    /// The page with the pending secret; refused (403) to anyone who has a
    /// second factor or may not enroll one.
    fn enrollment<B>(
        &self,
        req: &Request<B>,
        id: &SessionId,
        status: StatusCode,
        rd: String,
        message: Option<String>,
    ) -> Result<Answer, GatewayError> {
        let view = match self.auth.begin_enrollment(id) {
            Ok(view) => view,
            Err(AuthError::LoginRequired) => return Ok(self.to_login(&rd)),
            Err(AuthError::AlreadyConfirmed) => return Ok(self.to_target(rd, None)),
            Err(err) => return Err(err.into()),
        };
        let webauthn_url = self
            .auth
            .enrollable(id)
            .is_ok_and(|m| m.contains(&crate::model::Method::Webauthn))
            .then(|| self.redirects.portal_url("enroll/webauthn", &rd));
        let form = Form::Enroll {
            rd,
            view,
            webauthn_url,
            message,
        };
        self.form(req, status, form)
    }
}
