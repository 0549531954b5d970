//! The gateway's side of the audit trail: each security event of a
//! request, with the request's context (client, user agent, request id).
//! Nothing is read or built when the trail is off.

use http::HeaderMap;

use super::Gateway;
use crate::audit::{Context, Entry, Event, SessionRef, request_id};
use crate::auth::AuthError;
use crate::model::Method;
use crate::store::SessionId;
use crate::wire::ConnInfo;

/// A longer `User-Agent` is cut: the line must stay a line.
const MAX_USER_AGENT: usize = 256;

impl Gateway {
    /// Writes `event` for the request whose headers and connection these
    /// are. `user` is the email as the users file has it.
    pub(super) fn audit(
        &self,
        (headers, conn): (&HeaderMap, ConnInfo),
        event: Event,
        user: Option<&str>,
        session: Option<&SessionId>,
    ) {
        if !self.audit.is_on() {
            return;
        }
        self.audit.emit(Entry {
            event,
            user: user.map(str::to_owned),
            session: session.map(|id| SessionRef::of(&id.key())),
            context: self.audit_context(headers, conn),
        });
    }

    /// Who is answering the session's challenge, and with which method:
    /// read before the answer, which may end or replace the session.
    pub(super) fn challenge_subject(&self, id: &SessionId) -> Option<(String, Method)> {
        if !self.audit.is_on() {
            return None;
        }
        let who = self.auth.identify(Some(id)).ok().flatten()?;
        let method = self.auth.challenge_view(id)?.method;
        Some((who.user.email.clone(), method))
    }

    /// `second_factor_succeeded` (under the new session) or
    /// `second_factor_failed` (under the one that tried).
    pub(super) fn audit_second_factor(
        &self,
        request: (&HeaderMap, ConnInfo),
        subject: Option<(String, Method)>,
        tried: &SessionId,
        confirmed: Option<&SessionId>,
    ) {
        let Some((user, method)) = subject else {
            return;
        };
        let (event, session) = match confirmed {
            Some(new_id) => (Event::SecondFactorSucceeded { method }, new_id),
            None => (Event::SecondFactorFailed { method }, tried),
        };
        self.audit(request, event, Some(&user), Some(session));
    }

    /// An approved push turned into a `two_factor` session by this request.
    pub(super) fn audit_push_step_up(
        &self,
        headers: &HeaderMap,
        conn: ConnInfo,
        new_id: &SessionId,
    ) {
        if !self.audit.is_on() {
            return;
        }
        let user = self
            .auth
            .identify(Some(new_id))
            .ok()
            .flatten()
            .map(|w| w.user.email.clone());
        let event = Event::SecondFactorSucceeded {
            method: Method::Authy,
        };
        self.audit((headers, conn), event, user.as_deref(), Some(new_id));
    }

    /// The user finishing a TOTP enrollment, read before the answer.
    pub(super) fn enrolling_user(&self, id: &SessionId) -> Option<(String, Method)> {
        if !self.audit.is_on() {
            return None;
        }
        let who = self.auth.identify(Some(id)).ok().flatten()?;
        Some((who.user.email.clone(), Method::Totp))
    }

    /// `totp_enrolled` then `second_factor_succeeded` for the first code,
    /// or `second_factor_failed` for a wrong one.
    pub(super) fn audit_enrollment(
        &self,
        request: (&HeaderMap, ConnInfo),
        subject: Option<(String, Method)>,
        tried: &SessionId,
        finished: &Result<SessionId, AuthError>,
    ) {
        let Some((user, _)) = &subject else {
            return;
        };
        match finished {
            Ok(new_id) => {
                self.audit(request, Event::TotpEnrolled, Some(user), Some(new_id));
                self.audit_second_factor(request, subject, tried, Some(new_id));
            }
            Err(AuthError::InvalidCode { .. } | AuthError::TooManyWrongCodes) => {
                self.audit_second_factor(request, subject, tried, None);
            }
            Err(_) => {}
        }
    }

    pub(super) fn audit_context(&self, headers: &HeaderMap, conn: ConnInfo) -> Context {
        let peer = conn.peer.ip().to_canonical();
        let sent_id = headers.get("x-request-id").map(|v| v.as_bytes());
        let user_agent = headers
            .get(http::header::USER_AGENT)
            .map(|v| String::from_utf8_lossy(v.as_bytes()))
            .map(|ua| ua.chars().take(MAX_USER_AGENT).collect());
        Context {
            client: Some(self.client_of(headers, conn)),
            user_agent,
            request_id: Some(request_id(sent_id, self.guard.trusts(peer))),
        }
    }
}
