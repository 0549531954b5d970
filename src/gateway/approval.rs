//! The `approve` policy at the edge (docs/approval.md): a request that an
//! `approve` rule matches is held (body included) and the user approves
//! that one request by push or by a fresh code; then it goes upstream
//! once, through the continue URL. Thin glue over `auth::approval`.
//!
//! Under the prefix, for the session that holds the approval only:
//! - `GET  approval/{id}`: the "Approve this action" page (JSON: its state);
//! - `GET  approval/{id}/status`: JSON `{"status": …}`, polled by approve.js;
//! - `POST approval/{id}`: field `code` (a code method);
//! - `POST approval/{id}/key/options`, `POST approval/{id}/key`: JSON for
//!   webauthn.js, a key's ceremony whose challenge binds the held request;
//! - `POST approval/{id}/continue`: sends the approved request, answers
//!   with the app's answer; once;
//! - `POST approval/{id}/cancel`.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::json;

use super::answer::{Answer, Form};
use super::error::GatewayError;
use super::request::field;
use super::response::Format;
use super::{Forward, Gateway};
use crate::access::{RequestParts, Target};
use crate::audit::{Context, Entry, Event};
use crate::auth::approval::{
    ApprovalDetails, ApprovalError, ApprovalMeans, ApprovalState, ApprovalView, NewApproval, Slot,
    request_hash,
};
use crate::auth::{AuthError, Identified};
use crate::factor::CodeCheck;
use crate::metrics::ApprovalOutcome;
use crate::proxy::ForwardContext;
use crate::store::SessionKey;
use crate::wire::{Body, ConnInfo};

/// A request held until its approval: what goes upstream, as it came.
pub(super) struct HeldRequest {
    head: Request<()>,
    body: Bytes,
    forward: Forward,
    conn: ConnInfo,
}

/// What the proxy path knows of a request an `approve` rule matched.
pub(super) struct Hold {
    /// The deciding rule, for its `approve` table.
    pub rule: Option<usize>,
    pub host: String,
    pub path: String,
    pub client: IpAddr,
    pub user: Arc<crate::model::User>,
    pub session: SessionKey,
    pub session_id: crate::store::SessionId,
}

impl Hold {
    pub(super) fn of(
        who: &Identified,
        rule: Option<usize>,
        target: &Target,
        client: IpAddr,
    ) -> Self {
        Hold {
            rule,
            host: target.authority(),
            path: target.path.to_string(),
            client,
            user: who.user.clone(),
            session: who.key,
            session_id: who.id.clone(),
        }
    }
}

/// Which approval URL was asked for.
enum Action {
    Page,
    Status,
    Continue,
    Cancel,
    KeyOptions,
    Key,
}

impl Gateway {
    /// Holds a request an `approve` rule matched: reads its body into a
    /// reserved slot, asks the user, answers with the approval page (303)
    /// or, for API clients, 202 and where to look.
    pub(super) async fn hold(
        &self,
        req: Request<Incoming>,
        conn: ConnInfo,
        forward: Forward,
        hold: Hold,
        format: Format,
    ) -> Result<Response<Body>, GatewayError> {
        self.end_expired_approvals();
        let now = self.auth.now();
        let held = self.read_held(req, hold.session, now).await;
        let (slot, head, body) = held.inspect_err(|_| self.refused_approval())?;
        let details = self.details_of(&head, &body, &hold);
        let hash = request_hash(
            head.method().as_str(),
            forward.path_and_query.as_str(),
            &body,
        );
        let timeout = self.approvals.limits().timeout;
        let begun = self
            .auth
            .begin_approval(&hold.user, &details, &hash, timeout)
            .await;
        let (means, subject) = begun.inspect_err(|_| self.refused_approval())?;
        let request_headers = head.headers().clone();
        let new = NewApproval {
            hash,
            means,
            subject,
            details,
            held: HeldRequest {
                head,
                body,
                forward,
                conn,
            },
        };
        let id = self.approvals.hold(slot, new, now)?;
        self.metrics.approval(ApprovalOutcome::Requested, 1);
        let event = Event::ApprovalRequested;
        self.audit(
            (&request_headers, conn),
            event,
            Some(&hold.user.email),
            Some(&hold.session_id),
        );
        tracing::info!(client = %hold.client, "request held for approval");
        let page = self.approval_url(&id, "");
        let answer = match format {
            Format::Html => Answer::redirect(StatusCode::SEE_OTHER, page),
            Format::Json => Answer::json(
                StatusCode::ACCEPTED,
                json!({"id": id, "status": "pending",
                       "status_url": self.approval_url(&id, "/status"),
                       "result_url": self.approval_url(&id, "/continue")}),
            ),
        };
        Ok(self.rendered(answer, format))
    }

    /// The approval routes (module docs).
    pub(super) async fn approval(
        &self,
        req: Request<Incoming>,
        conn: ConnInfo,
        format: Format,
    ) -> Result<Response<Body>, GatewayError> {
        self.end_expired_approvals();
        let (id, action) = self.approval_target(req.uri().path())?;
        let id = id.to_owned();
        let who = self
            .auth
            .identify(self.cookies.session_id(req.headers()).as_ref())?
            .ok_or(GatewayError::LOGIN_REQUIRED)?;
        let answer = match (action, req.method().clone()) {
            (Action::Page, Method::GET) => self.approval_page(&req, conn, &id, &who).await?,
            (Action::Status, Method::GET) => {
                let view = self
                    .current_approval(&id, &who, (req.headers(), conn))
                    .await?;
                Answer::json(StatusCode::OK, json!({"status": view.state.as_str()}))
            }
            (Action::Page, Method::POST) => self.approval_code(req, conn, &id, &who).await?,
            (Action::Continue, Method::POST) => {
                return self.approval_continue(req, conn, &id, &who, format).await;
            }
            (Action::KeyOptions, Method::POST) => {
                self.posted(req).await?;
                let now = self.auth.now();
                let hash = self.approvals.key_binding(&id, &who.key, now)?;
                let (options, ceremony) = self.auth.approval_key_options(&who.user, &hash)?;
                self.approvals.keep_ceremony(&id, &who.key, ceremony, now)?;
                super::webauthn::options(options)
            }
            (Action::Key, Method::POST) => self.approval_key(req, conn, &id, &who).await?,
            (Action::Cancel, Method::POST) => {
                let post = self.posted(req).await?;
                let state = self.approvals.cancel(&id, &who.key, self.auth.now())?;
                self.approval_moved(state, (post.head.headers(), conn), &who);
                Answer::redirect(StatusCode::SEE_OTHER, self.approval_url(&id, ""))
            }
            _ => return Err(GatewayError::MethodNotAllowed),
        };
        Ok(self.rendered(answer, format))
    }

    fn approval_target<'a>(&self, path: &'a str) -> Result<(&'a str, Action), GatewayError> {
        let rest = path
            .strip_prefix(self.portal.prefix.as_str())
            .and_then(|rest| rest.strip_prefix("/approval/"))
            .ok_or(GatewayError::NotFound)?;
        let (id, action) = match rest.split_once('/') {
            None => (rest, Action::Page),
            Some((id, "status")) => (id, Action::Status),
            Some((id, "continue")) => (id, Action::Continue),
            Some((id, "cancel")) => (id, Action::Cancel),
            Some((id, "key/options")) => (id, Action::KeyOptions),
            Some((id, "key")) => (id, Action::Key),
            Some(_) => return Err(GatewayError::NotFound),
        };
        Ok((id, action))
    }

    /// The page (or its JSON) for the approval as it is now; a pending
    /// push is asked of the provider first.
    async fn approval_page(
        &self,
        req: &Request<Incoming>,
        conn: ConnInfo,
        id: &str,
        who: &Identified,
    ) -> Result<Answer, GatewayError> {
        let view = self
            .current_approval(id, who, (req.headers(), conn))
            .await?;
        let status = match view.state {
            ApprovalState::Pending | ApprovalState::Approved | ApprovalState::Released => {
                StatusCode::OK
            }
            _ => StatusCode::FORBIDDEN,
        };
        let form = Form::Approve {
            id: id.to_owned(),
            view: Box::new(view),
            message: None,
        };
        self.form(req, status, form)
    }

    /// The approval's view, after asking the provider about a pending
    /// push (at most once a second per approval).
    async fn current_approval(
        &self,
        id: &str,
        who: &Identified,
        request: (&http::HeaderMap, ConnInfo),
    ) -> Result<ApprovalView, GatewayError> {
        let view = self.approvals.view(id, &who.key, self.auth.now())?;
        let (Some(push_id), ApprovalMeans::Push { method, .. }) = (&view.poll_push, &view.means)
        else {
            return Ok(view);
        };
        match self.auth.approval_push_status(*method, push_id).await {
            Ok(status) => {
                let now = self.auth.now();
                let state = self.approvals.push_answered(id, &who.key, status, now)?;
                if state != view.state {
                    self.approval_moved(state, request, who);
                }
                Ok(self.approvals.view(id, &who.key, now)?)
            }
            // Asked again at the next look.
            Err(err) => {
                tracing::warn!(error = %err, "an approval's push could not be checked");
                Ok(view)
            }
        }
    }

    /// `POST approval/{id}`: a fresh code approves a code-method approval.
    async fn approval_code(
        &self,
        req: Request<Incoming>,
        conn: ConnInfo,
        id: &str,
        who: &Identified,
    ) -> Result<Answer, GatewayError> {
        let post = self.posted(req).await?;
        let now = self.auth.now();
        let (method, subject) = self.approvals.reserve_code(id, &who.key, now)?;
        let checked = self
            .auth
            .check_approval_code(method, &subject, field(&post.form, "code"))
            .await;
        let check = match &checked {
            Ok(check) => Some(*check),
            Err(_) => None,
        };
        self.checked(id, who, check, (post.head.headers(), conn))?;
        let message = match checked {
            Ok(CodeCheck::Valid) => None,
            Ok(CodeCheck::Invalid) => {
                Some("Wrong code, or a code used already. Wait for the next one.")
            }
            Err(AuthError::CodeExpired) => Some("This code expired or was used already."),
            Err(_) => Some("The code could not be checked right now. Please try again."),
        };
        let view = self.approvals.view(id, &who.key, self.auth.now())?;
        let status = match (message, view.state) {
            (None, _) => StatusCode::OK,
            (Some(_), ApprovalState::Pending) => StatusCode::UNAUTHORIZED,
            (Some(_), _) => StatusCode::FORBIDDEN,
        };
        let form = Form::Approve {
            id: id.to_owned(),
            view: Box::new(view),
            message: message.map(str::to_owned),
        };
        self.form(&post.head, status, form)
    }

    /// `POST approval/{id}/key`: the key's answer to the last options. The
    /// answer counts as a wrong code until it checks out; approved (or
    /// denied after the last try), the script goes back to the page.
    async fn approval_key(
        &self,
        req: Request<Incoming>,
        conn: ConnInfo,
        id: &str,
        who: &Identified,
    ) -> Result<Answer, GatewayError> {
        let post = self.posted(req).await?;
        let (ceremony, hash) = self
            .approvals
            .take_ceremony(id, &who.key, self.auth.now())?;
        let checked = self.auth.check_approval_key(
            &who.user,
            &ceremony,
            &hash,
            field(&post.form, "credential"),
        );
        let check = match &checked {
            Ok(()) => Some(CodeCheck::Valid),
            Err(AuthError::KeyRefused(_)) => Some(CodeCheck::Invalid),
            Err(_) => None,
        };
        let state = self.checked(id, who, check, (post.head.headers(), conn))?;
        match (checked, state) {
            (Err(err), ApprovalState::Pending) => Err(err.into()),
            _ => Ok(Answer::json(
                StatusCode::OK,
                json!({"next": self.approval_url(id, "")}),
            )),
        }
    }

    /// A code or key answer settled: the approval's state after it,
    /// counted and audited if it moved.
    fn checked(
        &self,
        id: &str,
        who: &Identified,
        check: Option<CodeCheck>,
        request: (&http::HeaderMap, ConnInfo),
    ) -> Result<ApprovalState, GatewayError> {
        let state = self
            .approvals
            .code_checked(id, &who.key, check, self.auth.now())?;
        self.approval_moved(state, request, who);
        Ok(state)
    }

    /// `POST approval/{id}/continue`: the approved request goes upstream,
    /// once, and its answer is this request's answer.
    async fn approval_continue(
        &self,
        req: Request<Incoming>,
        conn: ConnInfo,
        id: &str,
        who: &Identified,
        format: Format,
    ) -> Result<Response<Body>, GatewayError> {
        let post = self.posted(req).await?;
        let released = self.approvals.release(id, &who.key, self.auth.now());
        let (held, hash) = match released {
            Ok(released) => released,
            Err(ApprovalError::State(state)) => {
                let view = self.approvals.view(id, &who.key, self.auth.now())?;
                let form = Form::Approve {
                    id: id.to_owned(),
                    view: Box::new(view),
                    message: Some(format!(
                        "This request is {}: nothing was sent.",
                        state.as_str()
                    )),
                };
                let answer = self.form(&post.head, StatusCode::CONFLICT, form)?;
                return Ok(self.rendered(answer, format));
            }
            Err(err) => return Err(err.into()),
        };
        // Bound at hold time; checked again so no other request can ride on it.
        let sent = request_hash(
            held.head.method().as_str(),
            held.forward.path_and_query.as_str(),
            &held.body,
        );
        if sent != hash {
            return Err(GatewayError::Forbidden);
        }
        self.metrics.approval(ApprovalOutcome::Released, 1);
        self.audit(
            (post.head.headers(), conn),
            Event::ApprovalReleased,
            Some(&who.user.email),
            Some(&who.id),
        );
        self.send_held(id, held).await
    }

    /// The held request upstream through the proxy path, with the identity
    /// decided when it was held and `Authgate-Approval: {id}`.
    async fn send_held(&self, id: &str, held: HeldRequest) -> Result<Response<Body>, GatewayError> {
        let HeldRequest {
            head,
            body,
            forward,
            conn: held_conn,
        } = held;
        let (mut parts, ()) = head.into_parts();
        // The connection's own extensions stayed with that connection.
        parts.extensions = http::Extensions::new();
        let upstream_req = Request::from_parts(parts, body);
        let id_value = HeaderValue::from_str(id).map_err(|_| GatewayError::NotFound)?;
        let upstream = self.upstream.as_ref().ok_or(GatewayError::NotFound)?;
        let peer = held_conn.peer.ip().to_canonical();
        let ctx = ForwardContext {
            peer,
            peer_trusted: self.guard.trusts(peer),
            proto: held_conn.scheme(),
            path_and_query: forward.path_and_query.as_str(),
            decided_host: forward.decided_host.clone(),
            identity: forward.identity.as_deref(),
            own_cookies: self.cookies.own_names(),
        };
        let started = std::time::Instant::now();
        let response = upstream.forward_held(upstream_req, &ctx, id_value).await;
        self.metrics.upstream_response(started.elapsed());
        Ok(response?)
    }

    /// Reads the body into a reserved slot: the bytes are reserved before
    /// they are taken in (all of a declared length at once), so the total
    /// held stays under `approval.max_pending_bytes` whatever arrives.
    async fn read_held(
        &self,
        req: Request<Incoming>,
        session: SessionKey,
        now: u64,
    ) -> Result<(Slot<HeldRequest>, Request<()>, Bytes), GatewayError> {
        let mut slot = self.approvals.reserve(session, now)?;
        let (parts, mut incoming) = req.into_parts();
        let declared = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut reserved = 0;
        if let Some(length) = declared {
            slot.grow(length)?;
            reserved = length;
        }
        let mut body = BytesMut::new();
        while let Some(frame) = incoming.frame().await {
            let frame = frame
                .map_err(|_| GatewayError::BadRequest("The request body could not be read."))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let more = (body.len() + data.len()).saturating_sub(reserved);
            if more > 0 {
                slot.grow(more)?;
                reserved += more;
            }
            body.extend_from_slice(&data);
        }
        Ok((slot, Request::from_parts(parts, ()), body.freeze()))
    }

    fn details_of(&self, head: &Request<()>, body: &[u8], hold: &Hold) -> ApprovalDetails {
        let shown = hold
            .rule
            .and_then(|rule| self.guard.access.approval(rule))
            .map(|spec| {
                spec.show(&RequestParts {
                    query: head.uri().query(),
                    headers: head.headers(),
                    body,
                })
            });
        let (message, fields) = shown.map_or_else(Default::default, |s| (s.message, s.fields));
        ApprovalDetails {
            user: hold.user.email.clone(),
            message,
            fields,
            method: head.method().as_str().to_owned(),
            host: truncated(&hold.host),
            path: truncated(&hold.path),
            client: hold.client.to_string(),
        }
    }

    /// Metrics and audit for an approval that reached `state` just now.
    fn approval_moved(
        &self,
        state: ApprovalState,
        request: (&http::HeaderMap, ConnInfo),
        who: &Identified,
    ) {
        let (outcome, event) = match state {
            ApprovalState::Approved => (ApprovalOutcome::Approved, Event::ApprovalApproved),
            ApprovalState::Denied => (ApprovalOutcome::Denied, Event::ApprovalDenied),
            ApprovalState::Expired => (ApprovalOutcome::Expired, Event::ApprovalExpired),
            ApprovalState::Cancelled => (ApprovalOutcome::Cancelled, Event::ApprovalCancelled),
            ApprovalState::Pending | ApprovalState::Released => return,
        };
        self.metrics.approval(outcome, 1);
        self.audit(request, event, Some(&who.user.email), Some(&who.id));
    }

    /// Approvals that timed out since the last look: counted and audited.
    fn end_expired_approvals(&self) {
        let expired = self.approvals.sweep(self.auth.now());
        if expired.is_empty() {
            return;
        }
        self.metrics
            .approval(ApprovalOutcome::Expired, expired.len() as u64);
        for details in expired {
            // No request of the user's: found by whichever request looked.
            self.audit.emit(Entry {
                event: Event::ApprovalExpired,
                user: Some(details.user),
                session: None,
                context: Context::default(),
            });
        }
    }

    fn refused_approval(&self) {
        self.metrics.approval(ApprovalOutcome::Refused, 1);
    }

    fn approval_url(&self, id: &str, action: &str) -> String {
        format!("{}/approval/{id}{action}", self.portal.prefix)
    }

    /// A portal answer, rendered with the portal's security headers (in
    /// the default language: a held request's route is the proxy's, which
    /// reads no `Accept-Language`).
    fn rendered(&self, answer: Answer, format: Format) -> Response<Body> {
        let mut response = self.portal.render(answer, format, &self.portal.pages);
        self.portal.security_headers.apply(response.headers_mut());
        response
    }
}

/// Host and path as shown: at most the length of a field value.
fn truncated(text: &str) -> String {
    let max = crate::access::MAX_VALUE_CHARS * 2;
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max - 1).collect();
    cut.push('…');
    cut
}
