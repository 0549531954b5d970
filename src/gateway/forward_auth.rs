//! Forward-auth: the same decision as proxy mode, answered the way nginx
//! `auth_request` (2xx / 401 with `Location` / 403, nothing else) or
//! Traefik, Caddy and HAProxy (2xx / the "needs login" answer / 403)
//! expect. No error path ever answers 2xx.

use http::header::HeaderName;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::Gateway;
use super::request::ConnInfo;
use super::response::{self, Body};
use crate::access::{Target, normalize};
use crate::auth::{Access, StepUp};
use crate::metrics::Decision;
use crate::proxy::headers::IDENTITY_HEADERS;
use crate::users::User;

/// Which proxy is asking: it decides how "no" is said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// nginx `auth_request`: anything but 2xx, 401 and 403 becomes a 500.
    Nginx,
    /// Traefik ForwardAuth, Caddy `forward_auth`, HAProxy: a non-2xx answer
    /// goes back to the browser as it is.
    Forward,
}

impl Gateway {
    pub(super) fn forward_auth(
        &self,
        req: &Request<Incoming>,
        conn: ConnInfo,
        flavor: Flavor,
    ) -> Response<Body> {
        let (decision, answer) = self.forward_auth_decision(req, conn, flavor);
        let endpoint = match flavor {
            Flavor::Nginx => "nginx",
            Flavor::Forward => "forward",
        };
        self.metrics.forward_auth(endpoint, decision);
        answer
    }

    fn forward_auth_decision(
        &self,
        req: &Request<Incoming>,
        conn: ConnInfo,
        flavor: Flavor,
    ) -> (Decision, Response<Body>) {
        let peer = conn.peer.ip().to_canonical();
        if !self.trusted_proxies.iter().any(|net| net.contains(&peer)) {
            tracing::warn!(%peer, "forward-auth request from an untrusted peer refused");
            return (Decision::Refused, refusal(flavor));
        }
        let client = self.client_of(req.headers(), conn);
        let Some(target) = original_request(req.headers(), client, flavor) else {
            return (Decision::Refused, refusal(flavor));
        };
        let who = self
            .auth
            .identify(self.cookies.session_id(req.headers()).as_ref());
        let user = who.as_ref().map(|w| w.user.as_ref());
        let policy = self.policy_for(&target, user, req.headers());
        match self.auth.authorize(who.as_ref(), policy, StepUp::Deferred) {
            Access::Granted(user) => (Decision::Allowed, allowed(user.as_deref())),
            Access::Denied => (Decision::Denied, response::empty(StatusCode::FORBIDDEN)),
            Access::NeedsLogin => (
                Decision::NeedsLogin,
                self.login_needed(&target, req.headers(), flavor, "login"),
            ),
            Access::NeedsSecondFactor | Access::SteppedUp(..) => (
                Decision::NeedsSecondFactor,
                self.login_needed(&target, req.headers(), flavor, "verify"),
            ),
        }
    }

    fn login_needed(
        &self,
        target: &Target,
        headers: &HeaderMap,
        flavor: Flavor,
        step: &str,
    ) -> Response<Body> {
        let location = self.redirects.portal_url(step, &target.url());
        match flavor {
            Flavor::Nginx => {
                let mut answer = response::empty(StatusCode::UNAUTHORIZED);
                if let Ok(value) = HeaderValue::from_str(&location) {
                    answer.headers_mut().insert(http::header::LOCATION, value);
                }
                answer
            }
            Flavor::Forward => self.needs_login_answer(&target.method, headers, &location),
        }
    }
}

/// 200 with all four identity headers (empty when unknown, so a proxy that
/// copies them never keeps a client's copy) and an empty body: with a body
/// nginx cannot reuse the connection.
fn allowed(user: Option<&User>) -> Response<Body> {
    let mut answer = response::empty(StatusCode::OK);
    let headers = answer.headers_mut();
    match user {
        Some(user) => crate::proxy::headers::set_identity(headers, user),
        None => {
            for name in IDENTITY_HEADERS {
                headers.insert(HeaderName::from_static(name), HeaderValue::from_static(""));
            }
        }
    }
    answer
}

/// Missing, unparsable or untrusted metadata: 400, or 401 for nginx (which
/// turns anything else into a 500).
fn refusal(flavor: Flavor) -> Response<Body> {
    match flavor {
        Flavor::Nginx => response::empty(StatusCode::UNAUTHORIZED),
        Flavor::Forward => response::empty(StatusCode::BAD_REQUEST),
    }
}

/// The forwarding headers forward-auth reads; each may appear at most once.
const ORIGINAL_HEADERS: [&str; 6] = [
    "x-original-url",
    "x-original-method",
    "x-forwarded-method",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-uri",
];

/// The request the proxy is asking about, normalized. nginx sends
/// `X-Original-URL` / `X-Original-Method`; Traefik, Caddy and HAProxy send
/// `X-Forwarded-Method/-Proto/-Host/-Uri` and also copy every client
/// header, so their endpoint never reads the `X-Original-*` pair (a client
/// could steer the decision with it). A repeated header is refused.
fn original_request(
    headers: &HeaderMap,
    client: std::net::IpAddr,
    flavor: Flavor,
) -> Option<Target> {
    if ORIGINAL_HEADERS
        .iter()
        .any(|name| headers.get_all(*name).iter().count() > 1)
    {
        return None;
    }
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if flavor == Flavor::Nginx
        && let Some(original) = get("x-original-url")
    {
        let method = get("x-original-method").unwrap_or(Method::GET.as_str());
        return from_original_url(original, method, client);
    }
    let method = get("x-forwarded-method").unwrap_or(Method::GET.as_str());
    let proto = get("x-forwarded-proto")?;
    let host = get("x-forwarded-host")?;
    let uri = get("x-forwarded-uri")?;
    normalize(proto, host, uri, method, client).ok()
}

fn from_original_url(original: &str, method: &str, client: std::net::IpAddr) -> Option<Target> {
    let (scheme, rest) = original.split_once("://")?;
    // The raw path, not a parser's cleaned-up copy: `normalize` must see
    // what the upstream will see, `..;` and `%2f` included.
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) if rest[i..].starts_with('/') => (&rest[..i], &rest[i..]),
        Some(i) => (&rest[..i], "/"),
        None => (rest, "/"),
    };
    if authority.contains('@') {
        return None;
    }
    normalize(scheme, authority, path, method, client).ok()
}
