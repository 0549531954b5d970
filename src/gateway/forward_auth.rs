//! Forward-auth: the same decision as proxy mode, answered the way nginx
//! `auth_request` (2xx / 401 with `Location` / 403, nothing else) or
//! Traefik, Caddy and HAProxy (2xx / the "needs login" answer / 403)
//! expect. No error path ever answers 2xx.

use http::header::HeaderName;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};

use super::Gateway;
use super::request::ConnInfo;
use super::response::{self, Body};
use crate::access::{Target, normalize};
use crate::auth::{Access, StepUp};
use crate::metrics::{AuthEndpoint, Decision};
use crate::proxy::headers::set_no_identity;
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
        headers: &HeaderMap,
        conn: ConnInfo,
        flavor: Flavor,
    ) -> Response<Body> {
        let (decision, answer) = self.forward_auth_decision(headers, conn, flavor);
        let endpoint = match flavor {
            Flavor::Nginx => AuthEndpoint::Nginx,
            Flavor::Forward => AuthEndpoint::Forward,
        };
        self.metrics.forward_auth(endpoint, decision);
        answer
    }

    fn forward_auth_decision(
        &self,
        headers: &HeaderMap,
        conn: ConnInfo,
        flavor: Flavor,
    ) -> (Decision, Response<Body>) {
        let peer = conn.peer.ip().to_canonical();
        if !self.trusted_proxies.iter().any(|net| net.contains(&peer)) {
            tracing::warn!(%peer, "forward-auth request from an untrusted peer refused");
            return (Decision::Refused, refusal(flavor));
        }
        let client = self.client_of(headers, conn);
        let Some(target) = original_request(headers, client, flavor) else {
            return (Decision::Refused, refusal(flavor));
        };
        let who = self
            .auth
            .identify(self.cookies.session_id(headers).as_ref());
        let user = who.as_ref().map(|w| w.user.as_ref());
        let policy = self.policy_for(&target, user, headers);
        match self.auth.authorize(who.as_ref(), policy, StepUp::Deferred) {
            Access::Granted(user) => (Decision::Allowed, allowed(user.as_deref())),
            Access::Denied => (Decision::Denied, response::empty(StatusCode::FORBIDDEN)),
            Access::NeedsLogin => (
                Decision::NeedsLogin,
                self.login_needed(&target, headers, flavor, "login"),
            ),
            Access::NeedsSecondFactor | Access::SteppedUp(..) => (
                Decision::NeedsSecondFactor,
                self.login_needed(&target, headers, flavor, "verify"),
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
    match user {
        // The answer has no other header: the user's prepared map is it.
        Some(user) => *answer.headers_mut() = user.identity_headers().clone(),
        None => set_no_identity(answer.headers_mut()),
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

/// The forwarding headers forward-auth reads; each may appear at most
/// once. In this order: `X-Original-URL`, `X-Original-Method`, then
/// `X-Forwarded-Method/-Proto/-Host/-Uri`.
static ORIGINAL_HEADERS: [HeaderName; 6] = [
    HeaderName::from_static("x-original-url"),
    HeaderName::from_static("x-original-method"),
    HeaderName::from_static("x-forwarded-method"),
    HeaderName::from_static("x-forwarded-proto"),
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("x-forwarded-uri"),
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
) -> Option<Target<'_>> {
    // One pass over the headers there are, rather than a lookup (a hash)
    // per name.
    let mut found: [Option<&HeaderValue>; 6] = [None; 6];
    for (name, value) in headers {
        if let Some(i) = ORIGINAL_HEADERS.iter().position(|wanted| wanted == name)
            && found[i].replace(value).is_some()
        {
            return None;
        }
    }
    let [original_url, original_method, method, proto, host, uri] =
        found.map(|value| value.and_then(|v| v.to_str().ok()));
    if flavor == Flavor::Nginx
        && let Some(original) = original_url
    {
        let method = original_method.unwrap_or(Method::GET.as_str());
        return from_original_url(original, method, client);
    }
    let method = method.unwrap_or(Method::GET.as_str());
    normalize(proto?, host?, uri?, method, client).ok()
}

fn from_original_url<'a>(
    original: &'a str,
    method: &str,
    client: std::net::IpAddr,
) -> Option<Target<'a>> {
    // A byte search: a pattern search (`split_once("://")`) first builds
    // a searcher, which costs more than the whole URL.
    let colon = memchr::memchr(b':', original.as_bytes())?;
    let (scheme, rest) = (
        &original[..colon],
        original[colon + 1..].strip_prefix("//")?,
    );
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

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    const TRAEFIK: [(&str, &str); 4] = [
        ("X-Forwarded-Method", "post"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "app.example.com"),
        ("X-Forwarded-Uri", "/a/../b?x=1"),
    ];

    #[test]
    fn each_flavor_reads_its_own_headers() {
        let nginx = headers(&[
            ("x-original-url", "https://app.example.com/n"),
            ("x-original-method", "put"),
        ]);
        let t = original_request(&nginx, CLIENT, Flavor::Nginx).unwrap();
        assert_eq!(
            (t.method.clone(), t.url()),
            (Method::PUT, "https://app.example.com/n".into())
        );
        assert!(original_request(&nginx, CLIENT, Flavor::Forward).is_none());

        let mut both = headers(&TRAEFIK);
        both.extend(nginx);
        let t = original_request(&both, CLIENT, Flavor::Forward).unwrap();
        assert_eq!(
            (t.method.clone(), t.url()),
            (Method::POST, "https://app.example.com/b?x=1".into())
        );
        let t = original_request(&both, CLIENT, Flavor::Nginx).unwrap();
        assert_eq!(t.url(), "https://app.example.com/n");
    }

    #[test]
    fn a_repeated_or_missing_header_is_refused() {
        for (name, _) in TRAEFIK {
            let mut repeated = TRAEFIK.to_vec();
            repeated.push((name, "https"));
            assert!(original_request(&headers(&repeated), CLIENT, Flavor::Forward).is_none());
            let missing: Vec<_> = TRAEFIK.into_iter().filter(|(n, _)| *n != name).collect();
            let missing = headers(&missing);
            let without = original_request(&missing, CLIENT, Flavor::Forward);
            assert_eq!(without.is_some(), name == "X-Forwarded-Method", "{name}");
        }
        let twice = headers(&[
            ("x-original-url", "https://app.example.com/n"),
            ("X-Original-URL", "https://app.example.com/m"),
        ]);
        assert!(original_request(&twice, CLIENT, Flavor::Nginx).is_none());
    }
}
