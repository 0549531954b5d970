//! Security keys and passkeys over HTTP: the enrollment and security
//! pages, and the JSON endpoints `static/webauthn.js` calls (options, then
//! the browser's answer). Thin glue over `auth::webauthn`.

use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::Gateway;
use super::answer::{Answer, Form};
use super::error::GatewayError;
use super::forms::Post;
use super::request::{field, query_param};
use crate::audit::Event;
use crate::auth::AuthError;
use crate::auth::webauthn::{LoginFrom, Registered};
use crate::metrics::{FactorMethod, FactorOutcome, LoginOutcome};
use crate::model::Method;
use crate::pages::KeyRow;
use crate::store::{AuthLevel, SessionId};
use crate::wire::ConnInfo;

/// What the security page says after a post.
#[derive(Debug, Clone, Copy)]
pub(super) enum SecurityNotice {
    Removed,
    NotFound,
    LastFactor,
    ConfirmFirst,
}

impl SecurityNotice {
    fn text(self) -> &'static str {
        match self {
            SecurityNotice::Removed => "The key was removed.",
            SecurityNotice::NotFound => "That key is not registered (any more).",
            SecurityNotice::LastFactor => {
                "This is your last second factor; add another one before removing it."
            }
            SecurityNotice::ConfirmFirst => "Confirm it's you first.",
        }
    }
}

impl Gateway {
    /// `GET enroll/webauthn`: the first key of a user with none.
    pub(super) fn enroll_key_page(&self, req: &Request<Incoming>) -> Result<Answer, GatewayError> {
        let rd = self
            .redirects
            .safe_target(&query_param(req, "rd").unwrap_or_default());
        let Some(id) = self.cookies.session_id(req.headers()) else {
            return Ok(self.to_login(&rd));
        };
        let enrollable = match self.auth.enrollable(&id) {
            Ok(methods) => methods,
            Err(AuthError::LoginRequired) => return Ok(self.to_login(&rd)),
            Err(AuthError::AlreadyConfirmed) => return Ok(self.to_target(rd, None)),
            Err(err) => return Err(err.into()),
        };
        if !enrollable.contains(&Method::Webauthn) {
            return Err(AuthError::NoSecondFactor.into());
        }
        let totp_url = enrollable
            .contains(&Method::Totp)
            .then(|| self.redirects.portal_url("enroll/totp", &rd));
        let was_reset = self.auth.was_reset(&id);
        let form = Form::EnrollKey {
            rd,
            totp_url,
            was_reset,
            message: None,
        };
        self.form(req, StatusCode::OK, form)
    }

    /// `GET account/security`: the user's keys, for a confirmed session.
    pub(super) fn security_page<B>(
        &self,
        req: &Request<B>,
        notice: Option<SecurityNotice>,
    ) -> Result<Answer, GatewayError> {
        let here = self.security_url();
        let Some(id) = self.cookies.session_id(req.headers()) else {
            return Ok(self.to_login(&here));
        };
        let keys = match self.auth.security_keys(&id) {
            Ok(keys) => keys,
            Err(AuthError::LoginRequired) => {
                return Ok(self.to_login_or_verify(&id, &here));
            }
            Err(err) => return Err(err.into()),
        };
        let rows = keys
            .into_iter()
            .map(|k| KeyRow {
                id: k.id,
                name: k.name,
                created: crate::auth::format_utc(k.created_at),
                last_used: k
                    .last_used
                    .map_or_else(|| "never".into(), crate::auth::format_utc),
            })
            .collect();
        let can_change = self.auth.confirmed_recently(&id)?;
        let status = match notice {
            Some(SecurityNotice::LastFactor) => StatusCode::CONFLICT,
            Some(SecurityNotice::NotFound) => StatusCode::NOT_FOUND,
            _ => StatusCode::OK,
        };
        let form = Form::Security {
            keys: rows,
            can_change,
            message: notice.map(|n| n.text().to_owned()),
        };
        self.form(req, status, form)
    }

    /// `POST account/security`: `action=remove` (with `id`) or
    /// `action=confirm_again` (the second step once more, then back here).
    pub(super) async fn security_submit(
        &self,
        req: Request<Incoming>,
        conn: ConnInfo,
    ) -> Result<Answer, GatewayError> {
        let Post { head, form } = self.posted(req).await?;
        let here = self.security_url();
        let id = self
            .cookies
            .session_id(head.headers())
            .ok_or(GatewayError::LOGIN_REQUIRED)?;
        match field(&form, "action") {
            "confirm_again" => {
                let new_id = self.auth.confirm_again(&id)?;
                let verify = self.redirects.portal_url("verify", &here);
                Ok(Answer::next(verify.clone(), json!({"next": verify}))
                    .with_cookie(self.cookies.set_session(&new_id)))
            }
            "remove" => {
                let user = self.auth.identify(Some(&id))?.map(|w| w.user.email.clone());
                let notice = match self.auth.remove_security_key(&id, field(&form, "id")) {
                    Ok(true) => {
                        let request = (head.headers(), conn);
                        self.audit(
                            request,
                            Event::SecurityKeyRemoved,
                            user.as_deref(),
                            Some(&id),
                        );
                        SecurityNotice::Removed
                    }
                    Ok(false) => SecurityNotice::NotFound,
                    Err(AuthError::LastFactor) => SecurityNotice::LastFactor,
                    Err(AuthError::ConfirmAgain) => SecurityNotice::ConfirmFirst,
                    Err(err) => return Err(err.into()),
                };
                self.security_page(&head, Some(notice))
            }
            _ => Err(GatewayError::BadRequest("Unknown action.")),
        }
    }

    /// `POST webauthn/…`: the ceremonies' JSON endpoints, CSRF-checked.
    pub(super) async fn webauthn_post(
        &self,
        req: Request<Incoming>,
        conn: ConnInfo,
    ) -> Result<Answer, GatewayError> {
        let endpoint = req
            .uri()
            .path()
            .strip_prefix(self.portal.prefix.as_str())
            .unwrap_or_default()
            .to_owned();
        let post = self.posted(req).await?;
        let answered = match endpoint.as_str() {
            "/webauthn/passkey/options" => self.passkey_options(),
            "/webauthn/passkey" => self.passkey_finish(&post, conn),
            other => {
                let id = self
                    .cookies
                    .session_id(post.head.headers())
                    .ok_or(GatewayError::LOGIN_REQUIRED)?;
                match other {
                    "/webauthn/register/options" => {
                        self.auth.registration_options(&id).map(options)
                    }
                    "/webauthn/register" => self.register_finish(&post, conn, &id),
                    "/webauthn/assert/options" => self.auth.assertion_options(&id).map(options),
                    _ => self.assert_finish(&post, conn, &id),
                }
            }
        };
        Ok(answered.unwrap_or_else(|err| match err {
            AuthError::TooManyWrongCodes => {
                Answer::failed_as_json(err.into()).with_cookie(self.cookies.clear_session())
            }
            err => Answer::failed_as_json(err.into()),
        }))
    }

    fn register_finish(
        &self,
        post: &Post,
        conn: ConnInfo,
        id: &SessionId,
    ) -> Result<Answer, AuthError> {
        let user = self.auth.identify(Some(id))?.map(|w| w.user.email.clone());
        let rd = self.redirects.safe_target(field(&post.form, "rd"));
        let request = (post.head.headers(), conn);
        let registered = self.auth.finish_registration(
            id,
            field(&post.form, "credential"),
            field(&post.form, "name"),
        );
        match registered {
            Ok(Registered::SteppedUp(new_id)) => {
                self.metrics
                    .second_factor(FactorMethod::SecurityKey, FactorOutcome::Success);
                self.audit(
                    request,
                    Event::SecurityKeyAdded,
                    user.as_deref(),
                    Some(&new_id),
                );
                let method = Method::Webauthn;
                let confirmed = Event::SecondFactorSucceeded { method };
                self.audit(request, confirmed, user.as_deref(), Some(&new_id));
                Ok(next(rd).with_cookie(self.cookies.set_session(&new_id)))
            }
            Ok(Registered::Added) => {
                self.audit(request, Event::SecurityKeyAdded, user.as_deref(), Some(id));
                Ok(next(self.security_url()))
            }
            Err(err) => Err(err),
        }
    }

    fn assert_finish(
        &self,
        post: &Post,
        conn: ConnInfo,
        id: &SessionId,
    ) -> Result<Answer, AuthError> {
        let subject = self.challenge_subject(id);
        let rd = self.redirects.safe_target(field(&post.form, "rd"));
        let checked = self
            .auth
            .finish_assertion(id, field(&post.form, "credential"));
        let outcome = match &checked {
            Ok(_) => FactorOutcome::Success,
            Err(AuthError::KeyRefused(_)) => FactorOutcome::Invalid,
            Err(AuthError::TooManyWrongCodes) => FactorOutcome::TooManyAttempts,
            Err(AuthError::ChallengeExpired) => FactorOutcome::Expired,
            Err(_) => FactorOutcome::Error,
        };
        self.metrics
            .second_factor(FactorMethod::SecurityKey, outcome);
        let request = (post.head.headers(), conn);
        if matches!(
            checked,
            Ok(_) | Err(AuthError::KeyRefused(_) | AuthError::TooManyWrongCodes)
        ) {
            self.audit_second_factor(request, subject, id, checked.as_ref().ok());
        }
        let new_id = checked?;
        Ok(next(rd).with_cookie(self.cookies.set_session(&new_id)))
    }

    /// Options for a passkey sign-in; the ceremony goes into a signed
    /// cookie that only the passkey endpoints see.
    fn passkey_options(&self) -> Result<Answer, AuthError> {
        let ceremony = self.auth.passkey_options()?;
        let cookie = self.cookies.set_passkey_ceremony(
            &ceremony.state,
            self.auth.now(),
            &self.passkey_path(),
        );
        Ok(options(ceremony.options).with_cookie(cookie))
    }

    fn passkey_finish(&self, post: &Post, conn: ConnInfo) -> Result<Answer, AuthError> {
        let request = (post.head.headers(), conn);
        let now = self.auth.now();
        let Some((tag, state)) = self.cookies.passkey_ceremony(post.head.headers(), now) else {
            return Err(AuthError::ChallengeExpired);
        };
        // One answer per ceremony, whichever replica it reaches.
        if !self
            .portal
            .ceremony_replays
            .first_use(&format!("passkey {tag}"), 600, now)?
        {
            return Err(AuthError::ChallengeExpired);
        }
        let previous = self.cookies.session_id(post.head.headers());
        let from = LoginFrom {
            client: self.client_of(post.head.headers(), conn),
            device: super::portal::device_of(post.head.headers()),
        };
        let login = self.auth.passkey_login(
            &state,
            field(&post.form, "credential"),
            previous.as_ref(),
            from,
        );
        let ok = match login {
            Ok(ok) => ok,
            Err(err) => {
                self.metrics.login(LoginOutcome::BadPassword);
                let reason = crate::audit::LoginFailure::InvalidCredentials;
                self.audit(request, Event::LoginFailed { reason }, None, None);
                return Err(err);
            }
        };
        self.metrics.login(LoginOutcome::Success);
        self.audit(
            request,
            Event::LoginSucceeded,
            Some(&ok.user.email),
            Some(&ok.session_id),
        );
        let rd = self.redirects.safe_target(field(&post.form, "rd"));
        let target = match ok.level {
            AuthLevel::TwoFactor => {
                let method = Method::Webauthn;
                let confirmed = Event::SecondFactorSucceeded { method };
                self.audit(
                    request,
                    confirmed,
                    Some(&ok.user.email),
                    Some(&ok.session_id),
                );
                rd
            }
            AuthLevel::OneFactor => self.redirects.portal_url("verify", &rd),
        };
        Ok(next(target)
            .with_cookie(self.cookies.set_session(&ok.session_id))
            .with_cookie(self.cookies.clear_passkey_ceremony(&self.passkey_path())))
    }

    fn passkey_path(&self) -> String {
        format!("{}/webauthn/passkey", self.portal.prefix)
    }

    fn security_url(&self) -> String {
        self.redirects
            .public(&format!("{}/account/security", self.portal.prefix))
    }

    /// A session that is not confirmed goes on to its second step (and
    /// back here), none at all to the login page.
    fn to_login_or_verify(&self, id: &SessionId, here: &str) -> Answer {
        match self.auth.identify(Some(id)) {
            Ok(Some(_)) => Answer::login_first(self.redirects.portal_url("verify", here)),
            _ => self.to_login(here),
        }
    }
}

/// The options as the browser's script reads them.
pub(super) fn options(options: String) -> Answer {
    let value: Value = serde_json::from_str(&options).unwrap_or(Value::Null);
    Answer::json(StatusCode::OK, value)
}

/// Done: where the script sends the browser.
fn next(location: String) -> Answer {
    Answer::json(StatusCode::OK, json!({"next": location}))
}
