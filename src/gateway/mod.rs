//! Routing: for each request, decide between the portal (the gateway's own
//! pages under `server.path_prefix`) and the proxy, in order:
//! route → cookie → session → policy → forward or "needs login".

mod account_sessions;
mod answer;
mod approval;
pub mod cookies;
mod enroll;
pub mod error;
mod forms;
mod forward_auth;
mod handler;
mod portal;
pub mod redirect;
pub mod request;
pub mod response;
mod route;
mod second_factor;
mod security_headers;
mod signup;
mod trail;
mod webauthn;

use std::sync::Arc;

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::{Body as _, Incoming};
use ipnet::IpNet;

use crate::access::{AccessControl, Target, normalize};
use crate::audit::Audit;
use crate::auth::approval::{ApprovalLimits, Approvals};
use crate::auth::{Access, Authenticator, SessionAdmin, StepUp};
use crate::config::{Config, SignupConfig};
use crate::factor::authy::webhook::WebhookVerifier;
use crate::metrics::{FactorMethod, FactorOutcome, Metrics, RouteRequests};
use crate::model::Policy;
use crate::model::User;
use crate::pages::Pages;
use crate::proxy::{ForwardContext, Upstream};
use crate::store::{LiveSessions, ReplayGuard};

use crate::wire::{Body, ConnInfo, full};
use answer::Answer;
use cookies::Cookies;
use error::GatewayError;
use forward_auth::Flavor;
use redirect::Redirects;
use response::Format;
use route::Route;
use security_headers::SecurityHeaders;

/// Answers every request: the portal's pages, the forward-auth checks and
/// (with an upstream) the proxy. What every part uses sits here; what only
/// one part needs sits in its group.
pub struct Gateway {
    auth: Arc<Authenticator>,
    cookies: Cookies,
    redirects: Redirects,
    metrics: Arc<Metrics>,
    /// By `Route as usize`.
    requests: [RouteRequests; Route::ALL.len()],
    portal: Portal,
    guard: Guard,
    /// Proxy mode: where allowed requests go.
    upstream: Option<Upstream>,
    /// The security events of portal and forward-auth requests.
    audit: Audit,
    /// "Your sessions"; the page is not served without it.
    session_admin: Option<Arc<SessionAdmin>>,
    /// Requests held for an `approve` rule (docs/approval.md).
    approvals: Approvals<approval::HeldRequest>,
}

/// What the portal (the gateway's own pages) needs.
struct Portal {
    /// `server.path_prefix`, where the portal's pages live.
    prefix: String,
    pages: Pages,
    /// The live sessions, asked by `healthz`.
    sessions: Arc<LiveSessions>,
    signup: SignupConfig,
    webhook: Option<WebhookVerifier>,
    max_form_bytes: usize,
    /// `totp.issuer`, named on the enrollment page.
    totp_issuer: String,
    /// Passkey sign-ins' ceremonies, each answered once on any replica.
    ceremony_replays: Arc<dyn ReplayGuard>,
    /// The login page offers "Sign in with a passkey".
    passkeys: bool,
    /// CSP and friends, on every answer the portal makes.
    security_headers: SecurityHeaders,
}

/// Who may reach what: used by the forward-auth checks and the proxy.
struct Guard {
    access: AccessControl,
    /// The proxies whose `X-Forwarded-*` headers are believed.
    trusted_proxies: Vec<IpNet>,
    /// Serve Authelia's forward-auth paths too (see `route::route`).
    serve_authelia_paths: bool,
}

impl Gateway {
    pub fn new(
        config: &Config,
        auth: Arc<Authenticator>,
        sessions: Arc<LiveSessions>,
        upstream: Option<Upstream>,
        metrics: Arc<Metrics>,
        webhook_replays: Arc<dyn ReplayGuard>,
    ) -> Self {
        let public_url = config.server.public_url.clone();
        let secure = public_url.scheme() == "https";
        Gateway {
            auth,
            cookies: Cookies::new(&config.session, secure),
            redirects: Redirects::new(
                public_url,
                &config.server.path_prefix,
                config.session.cookie_domain.clone(),
            ),
            requests: Route::ALL.map(|route| metrics.requests_of(route_label(route))),
            metrics,
            portal: Portal::new(config, sessions, webhook_replays),
            guard: Guard {
                access: config.access_control.clone(),
                trusted_proxies: config.server.trusted_proxies.clone(),
                serve_authelia_paths: config.upstream.is_none() || config.server.authelia_paths,
            },
            upstream,
            audit: Audit::off(),
            session_admin: None,
            approvals: Approvals::new(ApprovalLimits {
                max_body: config.approval.max_body,
                max_pending_bytes: config.approval.max_pending_bytes,
                max_per_session: config.approval.max_per_session,
                timeout: config.approval.timeout,
            }),
        }
    }

    /// Serves "Your sessions" over `admin` (off by default).
    pub fn with_session_admin(mut self, admin: Arc<SessionAdmin>) -> Self {
        self.session_admin = Some(admin);
        self
    }

    /// Writes the security events to `audit` (off by default).
    pub fn with_audit(mut self, audit: Audit) -> Self {
        self.audit = audit;
        self
    }

    /// The portal's pages as `[portal]` has them (the built-in ones until
    /// then).
    pub fn with_pages(mut self, pages: Pages) -> Self {
        self.portal.pages = pages;
        self
    }

    /// Never fails: every error becomes a response here, because a service
    /// error would make hyper drop the connection without an answer.
    pub async fn handle(&self, req: Request<Incoming>, conn: ConnInfo) -> Response<Body> {
        let format = request::response_format(req.headers());
        let route = self.route(req.uri().path());
        // Only the portal reads the browser's languages: the hot routes
        // keep their cost, and show their rare error pages in the default.
        let browser_pages = route.is_portal().then(|| {
            let accept_language = req.headers().get(http::header::ACCEPT_LANGUAGE);
            let accept_language = accept_language.and_then(|v| v.to_str().ok());
            self.portal.pages.for_browser(accept_language)
        });
        let pages = browser_pages.as_ref().unwrap_or(&self.portal.pages);
        let result = match route {
            Route::AuthRequest => Ok(self
                .forward_auth(req.headers(), conn, Flavor::Nginx)
                .map(full)),
            Route::ForwardAuth => Ok(self
                .forward_auth(req.headers(), conn, Flavor::Forward)
                .map(full)),
            Route::Proxy => self.proxy(req, conn, format).await,
            Route::Approval => Box::pin(self.approval(req, conn, format)).await,
            // Boxed: the portal's futures are large, and hyper moves every
            // request's future into its slot; the hot routes stay small.
            _ => (Box::pin(self.answer(route, req, conn, format)).await)
                .map(|answer| self.portal.render(answer, format, pages)),
        };
        // The portal's own answers, errors of every route included; not
        // the forward-auth answers nor what the upstream sent (the hot path).
        let defended = result.is_err() || route.is_portal();
        let mut response = result.unwrap_or_else(|err| self.error_response(&err, format, pages));
        if defended {
            self.portal.security_headers.apply(response.headers_mut());
        }
        self.requests[route as usize].answered(response.status());
        response
    }

    /// The portal's answer to a request on one of its routes.
    async fn answer(
        &self,
        route: Route,
        req: Request<Incoming>,
        conn: ConnInfo,
        format: Format,
    ) -> Result<Answer, GatewayError> {
        match (route, req.method().clone()) {
            (Route::Login, Method::GET) => self.login_page(&req),
            (Route::Login, Method::POST) => self.login_submit(req, conn, format).await,
            (Route::Logout, Method::GET) => self.logout_page(&req),
            (Route::Logout, Method::POST) => self.logout_submit(req, conn).await,
            (Route::Verify, Method::GET) => self.verify_page(&req, conn).await,
            (Route::Verify, Method::POST) => self.verify_submit(req, conn, format).await,
            (Route::Resend, Method::POST) => self.resend_submit(req, format).await,
            (Route::Status, Method::GET) => Ok(self.status(&req, conn)),
            (Route::EnrollTotp, Method::GET) => self.enroll_page(&req),
            (Route::EnrollTotp, Method::POST) => self.enroll_submit(req, conn, format).await,
            (Route::EnrollWebauthn, Method::GET) => self.enroll_key_page(&req),
            (Route::Webauthn, Method::POST) => self.webauthn_post(req, conn).await,
            (Route::Security, Method::GET) => self.security_page(&req, None),
            (Route::Security, Method::POST) => self.security_submit(req, conn).await,
            (Route::AccountSessions, Method::GET) => self.sessions_page(&req),
            (Route::AccountSessions, Method::POST) => self.sessions_submit(req, conn, format).await,
            (Route::AuthyCallback, Method::GET | Method::POST) => self.authy_callback(req).await,
            (Route::Signup, _) if !self.portal.signup.enabled => Err(GatewayError::NotFound),
            (Route::Signup, Method::GET) => self.signup_page(&req),
            (Route::Signup, Method::POST) => self.signup_submit(req, conn, format).await,
            (Route::Healthz, Method::GET | Method::HEAD) => Ok(self.healthz()),
            (Route::Asset, Method::GET | Method::HEAD) => self.asset(req.uri().path()),
            (Route::PortalRoot, Method::GET | Method::HEAD) => Ok(self.portal_root(&req)),
            (Route::NotFound, _) => Err(GatewayError::NotFound),
            _ => Err(GatewayError::MethodNotAllowed),
        }
    }

    fn route(&self, path: &str) -> Route {
        route::route(
            path,
            &self.portal.prefix,
            self.upstream.is_some(),
            self.guard.serve_authelia_paths,
        )
    }

    /// The client's address for rules, regulation and logs: the peer, or
    /// from a trusted proxy the right-most untrusted `X-Forwarded-For`.
    fn client_of(&self, headers: &HeaderMap, conn: ConnInfo) -> std::net::IpAddr {
        request::client_addr(conn.peer, headers, &self.guard.trusted_proxies)
    }

    /// A forward-auth deployment's portal host: `/` goes to the login page,
    /// keeping `rd`.
    fn portal_root(&self, req: &Request<Incoming>) -> Answer {
        let rd = request::query_param(req, "rd").unwrap_or_default();
        let rd = self.redirects.safe_target(&rd);
        Answer::redirect(StatusCode::FOUND, self.redirects.portal_url("login", &rd))
    }

    /// A file the pages load (built in or the operator's brand):
    /// `{prefix}/static/{name}`.
    fn asset(&self, path: &str) -> Result<Answer, GatewayError> {
        let name = path
            .strip_prefix(self.portal.prefix.as_str())
            .and_then(|rest| rest.strip_prefix("/static/"))
            .unwrap_or_default();
        self.portal
            .pages
            .static_file(name)
            .map(Answer::asset)
            .ok_or(GatewayError::NotFound)
    }

    fn error_response(&self, err: &GatewayError, format: Format, pages: &Pages) -> Response<Body> {
        if err.status().is_server_error() {
            tracing::error!(error = %err, "request failed");
        }
        response::error(err, format, pages)
    }

    /// Proxy mode, in order: normalize the target, identify the session,
    /// decide the policy, authorize (here, without waiting on anything),
    /// then forward. Only a request that goes upstream builds the
    /// forwarding future: a 302 or a refusal never pays for its size.
    async fn proxy(
        &self,
        req: Request<Incoming>,
        conn: ConnInfo,
        format: Format,
    ) -> Result<Response<Body>, GatewayError> {
        match self.decide_proxied(&req, conn)? {
            Proxied::Answered(response) => Ok(response),
            Proxied::Forward(forward) => Box::pin(self.forward(req, conn, forward)).await,
            Proxied::Hold(forward, hold) => {
                Box::pin(self.hold(req, conn, forward, *hold, format)).await
            }
        }
    }

    fn decide_proxied(
        &self,
        req: &Request<Incoming>,
        conn: ConnInfo,
    ) -> Result<Proxied, GatewayError> {
        // Routed here only when an upstream is set.
        let upstream = self.upstream.as_ref().ok_or(GatewayError::NotFound)?;
        // Owned handles on the request's own buffers (shared, not copied):
        // the target borrows from them.
        let host = crate::proxy::headers::request_host_value(req.uri(), req.headers());
        let sent = req.uri().path_and_query().cloned();
        let target = self.proxied_target(req, conn, host.as_ref(), sent.as_ref())?;
        let upgrade = upstream.is_upgrade(req);
        if upgrade && !req.body().is_end_stream() {
            return Err(GatewayError::BadRequest(
                "An upgrade request cannot carry a body.",
            ));
        }
        let who = self
            .auth
            .identify(self.cookies.session_id(req.headers()).as_ref())?;
        // The normalized path is what goes upstream: it is the one reading.
        let policy = self.policy_for(
            &target,
            &target.path,
            who.as_ref().map(|w| w.user.as_ref()),
            req.headers(),
        );
        let mut new_cookie = None;
        let identity = match self.auth.authorize(who.as_ref(), policy, StepUp::Allowed) {
            Access::Granted(identity) => identity,
            Access::SteppedUp(user, new_id) => {
                self.metrics
                    .second_factor(FactorMethod::Push, FactorOutcome::Success);
                self.audit_push_step_up(req.headers(), conn, &new_id);
                new_cookie = Some(self.cookies.set_session(&new_id));
                Some(user)
            }
            Access::Denied => return Err(GatewayError::Forbidden),
            // A WebSocket client cannot follow a redirect to the login page.
            Access::NeedsLogin | Access::NeedsSecondFactor if upgrade => {
                let refused = response::json_error(&GatewayError::LOGIN_REQUIRED);
                return Ok(Proxied::Answered(refused));
            }
            Access::NeedsLogin => {
                let login = self.needs_login(&target, req.headers(), "login");
                return Ok(Proxied::Answered(login));
            }
            Access::NeedsSecondFactor => {
                let verify = self.needs_login(&target, req.headers(), "verify");
                return Ok(Proxied::Answered(verify));
            }
        };
        let forward = Forward {
            path_and_query: UpstreamPath::of(&target, sent.as_ref()),
            decided_host: decided_host(&target, host.as_ref())?,
            identity,
            new_cookie,
        };
        match (policy, who, &forward.new_cookie) {
            (Policy::Approve, _, _) if upgrade => Err(GatewayError::Forbidden),
            (Policy::Approve, Some(who), None) => {
                let user = Some(who.user.as_ref());
                let rule = self
                    .guard
                    .access
                    .decide_as_sent(&target, &target.path, user)
                    .rule;
                let hold =
                    approval::Hold::of(&who, rule, &target, self.client_of(req.headers(), conn));
                Ok(Proxied::Hold(forward, Box::new(hold)))
            }
            // The session stepped up just now under a new id: the same
            // request again (307 keeps method and body) with the new
            // cookie, to be held under the session that will see it.
            (Policy::Approve, _, Some(cookie)) => {
                let again =
                    response::redirect(StatusCode::TEMPORARY_REDIRECT, &target.path_and_query());
                Ok(Proxied::Answered(response::with_cookies(
                    again,
                    std::slice::from_ref(cookie),
                )))
            }
            _ => Ok(Proxied::Forward(forward)),
        }
    }

    async fn forward(
        &self,
        req: Request<Incoming>,
        conn: ConnInfo,
        forward: Forward,
    ) -> Result<Response<Body>, GatewayError> {
        let upstream = self.upstream.as_ref().ok_or(GatewayError::NotFound)?;
        let peer = conn.peer.ip().to_canonical();
        let ctx = ForwardContext {
            peer,
            peer_trusted: self.guard.trusts(peer),
            proto: conn.scheme(),
            path_and_query: forward.path_and_query.as_str(),
            decided_host: forward.decided_host,
            identity: forward.identity.as_deref(),
            own_cookies: self.cookies.own_names(),
        };
        let started = std::time::Instant::now();
        let response = upstream.forward(req, &ctx).await;
        self.metrics.upstream_response(started.elapsed());
        let response = response?;
        Ok(response::with_cookies(
            response,
            forward.new_cookie.as_slice(),
        ))
    }

    /// The request as rules and the upstream see it (DESIGN.md
    /// "Normalization"); a target that cannot be normalized is a 400.
    fn proxied_target<'a>(
        &self,
        req: &Request<Incoming>,
        conn: ConnInfo,
        host: Option<&'a HeaderValue>,
        sent: Option<&'a PathAndQuery>,
    ) -> Result<Target<'a>, GatewayError> {
        let client = self.client_of(req.headers(), conn);
        let host = host
            .and_then(|h| h.to_str().ok())
            .ok_or(GatewayError::BadRequest("The request has no host."))?;
        let path = sent.map_or("/", PathAndQuery::as_str);
        normalize(conn.scheme(), host, path, req.method().as_str(), client)
            .map_err(|_| GatewayError::BadRequest("The request path is not allowed."))
    }

    /// The policy of the first rule that matches (or the default) for the
    /// target, read also as `raw_path` when that is what the next hop gets
    /// (see [`AccessControl::decide_as_sent`]); a CORS preflight passes
    /// when `access_control.allow_preflight` is on.
    fn policy_for(
        &self,
        target: &Target,
        raw_path: &str,
        user: Option<&User>,
        headers: &HeaderMap,
    ) -> Policy {
        let preflight = headers.contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD);
        self.guard
            .access
            .decide_preflight(target, preflight)
            .unwrap_or_else(|| self.guard.access.decide_as_sent(target, raw_path, user))
            .policy
    }

    /// The policy for a GET of `url` by `user`; the strictest when the URL
    /// cannot be normalized.
    fn policy_for_url(&self, url: &str, user: &User, client: std::net::IpAddr) -> Policy {
        let policy = |u: url::Url| {
            let authority = match u.port() {
                Some(port) => format!("{}:{port}", u.host_str()?),
                None => u.host_str()?.to_owned(),
            };
            let path = &u[url::Position::BeforePath..];
            let target = normalize(u.scheme(), &authority, path, "GET", client).ok()?;
            Some(self.guard.access.decide(&target, Some(user)).policy)
        };
        url::Url::parse(url)
            .ok()
            .and_then(policy)
            .unwrap_or(Policy::TwoFactor)
    }

    /// DESIGN.md's "needs login" answer for a proxied request; `rd` is the
    /// page on the public origin.
    fn needs_login(&self, target: &Target, headers: &HeaderMap, step: &str) -> Response<Body> {
        let rd = self.redirects.public(&target.path_and_query());
        let location = self.redirects.portal_url(step, &rd);
        self.needs_login_answer(&target.method, headers, &location)
            .map(full)
    }

    /// A redirect to `location` for browsers (302 for safe methods, 303
    /// otherwise), 401 JSON for everything else. Whole, for forward-auth.
    fn needs_login_answer(
        &self,
        method: &Method,
        headers: &HeaderMap,
        location: &str,
    ) -> Response<Bytes> {
        if !request::accepts_html(headers) {
            return response::whole::error_json(&GatewayError::LOGIN_REQUIRED);
        }
        let status = match *method {
            Method::GET | Method::HEAD | Method::OPTIONS => StatusCode::FOUND,
            _ => StatusCode::SEE_OTHER,
        };
        response::whole::redirect(status, location)
    }
}

impl Portal {
    fn new(
        config: &Config,
        sessions: Arc<LiveSessions>,
        webhook_replays: Arc<dyn ReplayGuard>,
    ) -> Self {
        Portal {
            prefix: config.server.path_prefix.clone(),
            pages: Pages::new(&config.server.path_prefix),
            sessions,
            signup: config.signup.clone(),
            webhook: config.authy.as_ref().map(|a| {
                WebhookVerifier::new(a.api_key.clone(), &a.callback_url, webhook_replays.clone())
            }),
            ceremony_replays: webhook_replays,
            passkeys: config.webauthn.as_ref().is_some_and(|w| w.passwordless),
            max_form_bytes: config.server.max_form_bytes,
            totp_issuer: config.totp.issuer.clone(),
            security_headers: SecurityHeaders::new(
                &config.server.public_url,
                config.session.cookie_domain.as_deref(),
                config.server.hsts,
            ),
        }
    }
}

impl Guard {
    /// Whether `peer` is one of `server.trusted_proxies`.
    fn trusts(&self, peer: std::net::IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&peer))
    }
}

/// What the proxy route decided before anything goes upstream.
enum Proxied {
    /// Answered here: the login page, the second step, a refusal.
    Answered(Response<Body>),
    Forward(Forward),
    /// An `approve` rule matched: held until the user approves it.
    Hold(Forward, Box<approval::Hold>),
}

/// What a confirmed request takes upstream, owned, so that the decision's
/// borrows of the request end before the request moves.
struct Forward {
    path_and_query: UpstreamPath,
    decided_host: HeaderValue,
    identity: Option<Arc<User>>,
    /// A new session cookie, when a push was approved in the meantime.
    new_cookie: Option<String>,
}

/// The path and query that go upstream: the client's own when
/// normalization left them as sent (shared, not copied), else the
/// normalized text.
enum UpstreamPath {
    AsSent(PathAndQuery),
    Normalized(String),
}

impl UpstreamPath {
    fn of(target: &Target, sent: Option<&PathAndQuery>) -> Self {
        let normalized = target.path_and_query();
        match sent {
            Some(sent) if sent.as_str() == normalized => UpstreamPath::AsSent(sent.clone()),
            _ => UpstreamPath::Normalized(normalized.into_owned()),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            UpstreamPath::AsSent(sent) => sent.as_str(),
            UpstreamPath::Normalized(text) => text,
        }
    }
}

/// The normalized target's `host[:port]` as a header value: the client's
/// own host value (shared, not copied) when normalization left it as it
/// was, which is the usual case.
fn decided_host(target: &Target, sent: Option<&HeaderValue>) -> Result<HeaderValue, GatewayError> {
    match sent {
        Some(sent) if is_authority_of(target, sent.as_bytes()) => Ok(sent.clone()),
        _ => HeaderValue::try_from(target.authority())
            .map_err(|_| GatewayError::BadRequest("The request has no host.")),
    }
}

/// Whether `sent` is exactly `target.authority()`, without building it.
fn is_authority_of(target: &Target, sent: &[u8]) -> bool {
    let Some(rest) = sent.strip_prefix(target.host.as_bytes()) else {
        return false;
    };
    match target.port {
        None => rest.is_empty(),
        Some(port) => rest.strip_prefix(b":").is_some_and(|digits| {
            !digits.starts_with(b"0")
                && digits.iter().all(u8::is_ascii_digit)
                && std::str::from_utf8(digits).is_ok_and(|d| d.parse() == Ok(port))
        }),
    }
}

/// The `route` label of `authgate_http_requests_total`: a fixed word per
/// kind of route, never the path.
fn route_label(route: Route) -> &'static str {
    match route {
        Route::Login => "login",
        Route::Logout => "logout",
        Route::Verify => "verify",
        Route::Resend => "resend",
        Route::Status => "status",
        Route::EnrollTotp => "enroll_totp",
        Route::EnrollWebauthn => "enroll_webauthn",
        Route::Webauthn => "webauthn",
        Route::Security => "security",
        Route::AccountSessions => "account_sessions",
        Route::AuthyCallback => "authy_callback",
        Route::Signup => "signup",
        Route::Healthz => "healthz",
        Route::Asset => "asset",
        Route::AuthRequest => "auth_request",
        Route::ForwardAuth => "forward_auth",
        Route::PortalRoot => "portal_root",
        Route::NotFound => "not_found",
        Route::Proxy => "proxy",
        Route::Approval => "approval",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decided_host_is_the_normalized_authority() {
        let client = std::net::IpAddr::from([127, 0, 0, 1]);
        for (sent, decided) in [
            ("app.local", "app.local"),
            ("App.Local:80", "app.local"),
            ("app.local.", "app.local"),
            ("app.local:8080", "app.local:8080"),
            ("app.local:08080", "app.local:8080"),
            ("[::1]:9000", "[::1]:9000"),
        ] {
            let target = normalize("http", sent, "/", "GET", client).unwrap();
            let sent = HeaderValue::from_static(sent);
            let host = decided_host(&target, Some(&sent)).unwrap();
            assert_eq!(host, decided, "{sent:?}");
            assert_eq!(is_authority_of(&target, sent.as_bytes()), sent == decided);
        }
    }
}
