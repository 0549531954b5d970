//! Routing: for each request, decide between the portal (the gateway's own
//! pages under `server.path_prefix`) and the proxy, in order:
//! route → cookie → session → policy → forward or "needs login".

pub mod cookies;
pub mod error;
mod forms;
mod portal;
pub mod redirect;
pub mod request;
pub mod response;
mod route;
mod second_factor;
mod signup;

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use ipnet::IpNet;

use crate::auth::{Access, Authenticator, LiveSessions};
use crate::config::{Config, Policy, SignupConfig};
use crate::factor::authy::webhook::WebhookVerifier;
use crate::pages::Pages;
use crate::proxy::{ForwardContext, Upstream};

use cookies::Cookies;
use error::GatewayError;
use redirect::Redirects;
use request::ConnInfo;
use response::{Body, Format};
use route::Route;

pub struct Gateway {
    auth: Arc<Authenticator>,
    sessions: Arc<LiveSessions>,
    cookies: Cookies,
    redirects: Redirects,
    pages: Pages,
    upstream: Option<Upstream>,
    webhook: Option<WebhookVerifier>,
    signup: SignupConfig,
    prefix: String,
    trusted_proxies: Vec<IpNet>,
    max_form_bytes: usize,
    default_policy: Policy,
}

impl Gateway {
    pub fn new(
        config: &Config,
        auth: Arc<Authenticator>,
        sessions: Arc<LiveSessions>,
        upstream: Option<Upstream>,
    ) -> Self {
        let public_url = config.server.public_url.clone();
        let secure = public_url.scheme() == "https";
        Gateway {
            auth,
            sessions,
            cookies: Cookies::new(&config.session, secure),
            redirects: Redirects::new(public_url, &config.server.path_prefix),
            pages: Pages::new(),
            upstream,
            webhook: config
                .authy
                .as_ref()
                .map(|a| WebhookVerifier::new(a.api_key.clone(), &a.callback_url)),
            signup: config.signup.clone(),
            prefix: config.server.path_prefix.clone(),
            trusted_proxies: config.server.trusted_proxies.clone(),
            max_form_bytes: config.server.max_form_bytes,
            default_policy: config.access_control.default_policy,
        }
    }

    /// Never fails: every error becomes a response here, because a service
    /// error would make hyper drop the connection without an answer.
    pub async fn handle(&self, req: Request<Incoming>, conn: ConnInfo) -> Response<Body> {
        let format = request::response_format(req.headers());
        let route = route::route(req.uri().path(), &self.prefix, self.upstream.is_some());
        let result = match (route, req.method().clone()) {
            (Route::Login, Method::GET) => Ok(self.login_page(&req, format)),
            (Route::Login, Method::POST) => Ok(self.login_submit(req, conn, format).await),
            (Route::Logout, Method::GET) => Ok(self.logout_page(&req, format)),
            (Route::Logout, Method::POST) => self.logout_submit(req, conn, format).await,
            (Route::Verify, Method::GET) => self.verify_page(&req, conn, format).await,
            (Route::Verify, Method::POST) => self.verify_submit(req, conn, format).await,
            (Route::Resend, Method::POST) => self.resend_submit(req, format).await,
            (Route::Status, Method::GET) => Ok(self.status(&req)),
            (Route::AuthyCallback, Method::GET | Method::POST) => self.authy_callback(req).await,
            (Route::Signup, _) if !self.signup.enabled => Err(GatewayError::NotFound),
            (Route::Signup, Method::GET) => Ok(self.signup_page(&req, format)),
            (Route::Signup, Method::POST) => Ok(self.signup_submit(req, conn, format).await),
            (Route::Healthz, Method::GET | Method::HEAD) => Ok(self.healthz()),
            (Route::Proxy, _) => self.proxy(req, conn).await,
            (Route::NotFound, _) => Err(GatewayError::NotFound),
            _ => Err(GatewayError::MethodNotAllowed),
        };
        result.unwrap_or_else(|err| self.error_response(&err, format))
    }

    fn error_response(&self, err: &GatewayError, format: Format) -> Response<Body> {
        if err.status().is_server_error() {
            tracing::error!(error = %err, "request failed");
        }
        response::error(err, format, &self.pages)
    }

    async fn proxy(
        &self,
        req: Request<Incoming>,
        conn: ConnInfo,
    ) -> Result<Response<Body>, GatewayError> {
        let session = self.cookies.session_id(req.headers());
        let mut new_cookie = None;
        let identity = match self.auth.check(session.as_ref(), self.default_policy) {
            Access::Granted(identity) => identity,
            Access::SteppedUp(user, new_id) => {
                new_cookie = Some(self.cookies.set_session(&new_id));
                Some(user)
            }
            Access::Denied => return Err(GatewayError::Forbidden),
            Access::NeedsLogin => return Ok(self.needs_login(&req, "login")),
            Access::NeedsSecondFactor => return Ok(self.needs_login(&req, "verify")),
        };
        let upstream = self.upstream.as_ref().ok_or(GatewayError::NotFound)?;
        let peer = conn.peer.ip().to_canonical();
        let ctx = ForwardContext {
            peer,
            peer_trusted: self.trusted_proxies.iter().any(|n| n.contains(&peer)),
            proto: "http",
            identity: identity.as_deref(),
            own_cookies: self.cookies.own_names(),
        };
        let response = upstream.forward(req, &ctx).await?;
        Ok(response::with_cookies(response, new_cookie.as_slice()))
    }

    /// DESIGN.md's "needs login" answer: a redirect to the portal page
    /// `step` for browsers (302 for safe methods, 303 otherwise), 401 JSON
    /// for everything else.
    fn needs_login(&self, req: &Request<Incoming>, step: &str) -> Response<Body> {
        if !request::accepts_html(req.headers()) {
            let err = GatewayError::LoginRequired;
            return response::error(&err, Format::Json, &self.pages);
        }
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let rd = self.redirects.public(path);
        let location = self.redirects.portal_url(step, &rd);
        let status = match *req.method() {
            Method::GET | Method::HEAD | Method::OPTIONS => StatusCode::FOUND,
            _ => StatusCode::SEE_OTHER,
        };
        response::redirect(status, &location)
    }
}
