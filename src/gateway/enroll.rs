//! The TOTP enrollment page: thin glue over `auth::enrollment`.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use super::Gateway;
use super::error::GatewayError;
use super::request::{field, query_param};
use super::response::{self, Format};
use super::second_factor::ChallengePost;
use crate::auth::AuthError;
use crate::auth::enrollment::EnrollmentView;
use crate::metrics::{FactorMethod, FactorOutcome};
use crate::pages::EnrollView;
use crate::store::SessionId;
use crate::wire::Body;
use crate::wire::ConnInfo;

impl Gateway {
    pub(super) fn enroll_page(
        &self,
        req: &Request<Incoming>,
        format: Format,
    ) -> Result<Response<Body>, GatewayError> {
        let rd = self
            .redirects
            .safe_target(&query_param(req, "rd").unwrap_or_default());
        let Some(id) = self.cookies.session_id(req.headers()) else {
            return Ok(self.to_login(&rd, format));
        };
        self.enrollment(req, &id, format, StatusCode::OK, &rd, None)
    }

    pub(super) async fn enroll_submit(
        &self,
        req: Request<Incoming>,
        conn: ConnInfo,
        format: Format,
    ) -> Result<Response<Body>, GatewayError> {
        let client = self.client_of(req.headers(), conn);
        let ChallengePost { req, form, rd, id } = self.challenge_post(req).await?;
        let finished = self.auth.finish_enrollment(&id, field(&form, "code")).await;
        match finished {
            Ok(new_id) => {
                self.metrics
                    .second_factor(FactorMethod::Code, FactorOutcome::Success);
                tracing::info!(client = %client, "TOTP enrolled; second factor confirmed");
                Ok(self.to_target(&rd, format, Some(&new_id)))
            }
            Err(AuthError::TooManyWrongCodes) => {
                tracing::warn!(client = %client, "too many wrong enrollment codes; session ended");
                Ok(self.session_ended(format))
            }
            Err(AuthError::InvalidCode { left }) => {
                self.metrics
                    .second_factor(FactorMethod::Code, FactorOutcome::Invalid);
                let err = GatewayError::InvalidCode { left };
                if format == Format::Json {
                    return Ok(response::error(&err, format, &self.pages));
                }
                let message = format!("Wrong code. {left} tries left.");
                self.enrollment(&req, &id, format, err.status(), &rd, Some(&message))
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
        format: Format,
        status: StatusCode,
        rd: &str,
        message: Option<&str>,
    ) -> Result<Response<Body>, GatewayError> {
        let view = match self.auth.begin_enrollment(id) {
            Ok(view) => view,
            Err(AuthError::LoginRequired) => return Ok(self.to_login(rd, format)),
            Err(AuthError::AlreadyConfirmed) => return Ok(self.to_target(rd, format, None)),
            Err(err) => return Err(err.into()),
        };
        Ok(self.form_page(req, format, |csrf| {
            self.enrollment_page(format, status, csrf, rd, &view, message)
        }))
    }

    fn enrollment_page(
        &self,
        format: Format,
        status: StatusCode,
        csrf: &str,
        rd: &str,
        view: &EnrollmentView,
        message: Option<&str>,
    ) -> Response<Body> {
        match format {
            Format::Json => response::json(
                status,
                &json!({"secret": view.secret_text.replace(' ', ""), "uri": view.uri,
                        "was_reset": view.was_reset, "csrf": csrf, "message": message}),
            ),
            Format::Html => {
                let page = EnrollView {
                    prefix: &self.prefix,
                    csrf,
                    rd,
                    issuer: &self.totp_issuer,
                    secret_text: &view.secret_text,
                    uri: &view.uri,
                    qr_svg: &view.qr_svg,
                    was_reset: view.was_reset,
                    message,
                };
                response::html(status, self.pages.enroll(&page))
            }
        }
    }
}
