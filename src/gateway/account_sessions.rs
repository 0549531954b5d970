//! "Your sessions" (`{prefix}/account/sessions`): a confirmed user's live
//! sessions, each with "sign out", and "sign out everywhere else". The
//! page for browsers, its JSON twin for `Accept: application/json`; every
//! post carries the CSRF token. The logic is `auth::SessionAdmin`'s.

use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use super::Gateway;
use super::answer::{Answer, Form};
use super::error::GatewayError;
use super::forms::Post;
use super::request::field;
use super::response::Format;
use crate::auth::{AuthError, ByReference, Identified, SessionAdmin, SessionSummary};
use crate::model::Policy;
use crate::pages::SessionRow;
use crate::store::AuthLevel;
use crate::wire::ConnInfo;

/// The page's own path, after the prefix, as `portal_url` takes it.
const PAGE: &str = "account/sessions";

/// Who is asking: a confirmed session, or where to send them first.
enum Visitor {
    Confirmed(Identified),
    Elsewhere(Answer),
}

impl Gateway {
    fn session_admin(&self) -> Result<&SessionAdmin, GatewayError> {
        self.session_admin.as_deref().ok_or(GatewayError::NotFound)
    }

    /// Only a session that reaches `two_factor` resources sees its
    /// sessions: others log in (or confirm) first and come back here.
    fn visitor<B>(&self, req: &Request<B>) -> Result<Visitor, GatewayError> {
        let here = self
            .redirects
            .public(&format!("{}/{PAGE}", self.portal.prefix));
        let id = self.cookies.session_id(req.headers());
        let Some(who) = self.auth.identify(id.as_ref())? else {
            let login = self.redirects.portal_url("login", &here);
            return Ok(Visitor::Elsewhere(Answer::login_first(login)));
        };
        if !self
            .auth
            .level_satisfies(who.session.level, Policy::TwoFactor)
        {
            let verify = self.redirects.portal_url("verify", &here);
            return Ok(Visitor::Elsewhere(Answer::login_first(verify)));
        }
        Ok(Visitor::Confirmed(who))
    }

    pub(super) fn sessions_page(&self, req: &Request<Incoming>) -> Result<Answer, GatewayError> {
        let admin = self.session_admin()?;
        match self.visitor(req)? {
            Visitor::Confirmed(who) => self.sessions_form(req, admin, &who, None),
            Visitor::Elsewhere(answer) => Ok(answer),
        }
    }

    fn sessions_form<B>(
        &self,
        req: &Request<B>,
        admin: &SessionAdmin,
        who: &Identified,
        message: Option<String>,
    ) -> Result<Answer, GatewayError> {
        let rows = admin
            .list_seen_from(&who.session.user, &who.key)
            .map_err(AuthError::from)?
            .into_iter()
            .map(|(summary, this_device)| row(summary, this_device))
            .collect();
        let form = Form::Sessions {
            user: who.session.user.to_string(),
            rows,
            message,
        };
        self.form(req, StatusCode::OK, form)
    }

    /// `session=REFERENCE` signs that one of the user's sessions out;
    /// `others` every one but this. Browsers see the page again with what
    /// happened; API clients get `{"ended": N}`.
    pub(super) async fn sessions_submit(
        &self,
        req: Request<Incoming>,
        conn: ConnInfo,
        format: Format,
    ) -> Result<Answer, GatewayError> {
        let admin = self.session_admin()?;
        let Post { head, form } = self.posted(req).await?;
        let who = match self.visitor(&head)? {
            Visitor::Confirmed(who) => who,
            Visitor::Elsewhere(answer) => return Ok(answer),
        };
        let context = self.audit_context(head.headers(), conn);
        let user = who.session.user.to_string();
        let ended = if !field(&form, "others").is_empty() {
            admin
                .revoke_others(&user, &who.key, &context)
                .map_err(AuthError::from)?
        } else {
            let reference = field(&form, "session");
            if reference.is_empty() {
                return Err(GatewayError::BadRequest("Name a session to sign out."));
            }
            // Never this one: that is what "log out" is for.
            let own = crate::audit::SessionRef::of(&who.key).to_hex();
            if reference.eq_ignore_ascii_case(&own) {
                return Err(GatewayError::BadRequest(
                    "Use \"log out\" for this session.",
                ));
            }
            let outcome = admin
                .revoke_reference(reference, Some(&user), &context)
                .map_err(AuthError::from)?;
            match outcome {
                ByReference::Ended(_) => 1,
                _ => 0,
            }
        };
        tracing::info!(user = %user, ended, "sessions signed out from the sessions page");
        match format {
            Format::Json => Ok(Answer::json(StatusCode::OK, json!({ "ended": ended }))),
            Format::Html => {
                let message = match ended {
                    0 => "No session was signed out: it had ended already.".to_owned(),
                    1 => "1 session was signed out.".to_owned(),
                    n => format!("{n} sessions were signed out."),
                };
                self.sessions_form(&head, admin, &who, Some(message))
            }
        }
    }
}

fn row(summary: SessionSummary, this_device: bool) -> SessionRow {
    SessionRow {
        reference: summary.reference,
        created: time(summary.created_at),
        last_seen: time(summary.last_seen),
        level: match summary.level {
            AuthLevel::OneFactor => "one_factor",
            AuthLevel::TwoFactor => "two_factor",
        },
        device: summary
            .device
            .unwrap_or_else(|| "Unknown browser".to_owned()),
        method: summary.method,
        client: summary.client.map(|client| client.to_string()),
        this_device,
    }
}

/// UTC, to the minute, as the page shows a time.
fn time(unix: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix);
    let text = humantime::format_rfc3339_seconds(at).to_string();
    // 2026-12-05T21:42:17Z → 2026-12-05 21:42 UTC
    format!("{} {} UTC", &text[..10], &text[11..16])
}
