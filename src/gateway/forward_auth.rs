//! Forward-auth: the same decision as proxy mode, answered the way nginx
//! `auth_request` (2xx / 401 with `Location` / 403, nothing else) or
//! Traefik, Caddy and HAProxy (2xx / the "needs login" answer / 403)
//! expect. No error path ever answers 2xx. The answers are whole
//! (`Response<Bytes>`): the listener's fast path writes them as they are,
//! and hyper's path wraps them (`wire::full`).

use bytes::Bytes;
use http::header::HeaderName;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};

use thiserror::Error;

use super::Gateway;
use super::response::whole;
use crate::access::{NormalizeError, Target, has_dot_or_empty_segment, normalize};
use crate::audit::Event;
use crate::auth::{Access, StepUp};
use crate::metrics::{AuthEndpoint, Decision};
use crate::model::{Policy, User};
use crate::proxy::headers::set_no_identity;
use crate::wire::ConnInfo;

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
    ) -> Response<Bytes> {
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
    ) -> (Decision, Response<Bytes>) {
        let peer = conn.peer.ip().to_canonical();
        if !self.guard.trusts(peer) {
            tracing::warn!(%peer, "forward-auth request from an untrusted peer refused");
            return (Decision::Refused, untrusted(flavor));
        }
        let client = self.client_of(headers, conn);
        let original = match original_request(headers, client, flavor) {
            Ok(original) => original,
            Err(why) => {
                tracing::warn!(%peer, %client, reason = %why, "forward-auth target refused");
                let event = Event::ForwardAuthMalformedTarget;
                self.audit((headers, conn), event, None, None);
                return (Decision::Refused, malformed(flavor));
            }
        };
        let who = match self
            .auth
            .identify(self.cookies.session_id(headers).as_ref())
        {
            Ok(who) => who,
            // Never a 2xx without a session that was read.
            Err(err) => {
                tracing::warn!(error = %err, "forward-auth: the session store cannot be read");
                return (
                    Decision::Unavailable,
                    whole::empty(StatusCode::SERVICE_UNAVAILABLE),
                );
            }
        };
        let user = who.as_ref().map(|w| w.user.as_ref());
        let target = &original.target;
        let policy = match self.policy_for(target, original.raw_path, user, headers) {
            // Forward-auth never sees the body, so it cannot hold the
            // request for an approval: refused (check-config refuses
            // approve rules without an upstream; docs/approval.md).
            Policy::Approve => Policy::Deny,
            policy => policy,
        };
        match self.auth.authorize(who.as_ref(), policy, StepUp::Deferred) {
            Access::Granted(user) => (Decision::Allowed, allowed(user.as_deref())),
            Access::Denied => (Decision::Denied, whole::empty(StatusCode::FORBIDDEN)),
            Access::NeedsLogin => (
                Decision::NeedsLogin,
                self.login_needed(target, headers, flavor, "login"),
            ),
            Access::NeedsSecondFactor | Access::SteppedUp(..) => (
                Decision::NeedsSecondFactor,
                self.login_needed(target, headers, flavor, "verify"),
            ),
        }
    }

    fn login_needed(
        &self,
        target: &Target,
        headers: &HeaderMap,
        flavor: Flavor,
        step: &str,
    ) -> Response<Bytes> {
        let location = self.redirects.portal_url(step, &target.url());
        match flavor {
            Flavor::Nginx => {
                let mut answer = whole::empty(StatusCode::UNAUTHORIZED);
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
fn allowed(user: Option<&User>) -> Response<Bytes> {
    let mut answer = whole::empty(StatusCode::OK);
    match user {
        // The answer has no other header: the user's prepared map is it.
        Some(user) => *answer.headers_mut() = user.identity_headers().clone(),
        None => set_no_identity(answer.headers_mut()),
    }
    answer
}

/// A peer outside `server.trusted_proxies`: 400, or 401 for nginx (which
/// turns anything but 2xx, 401 and 403 into a 500).
fn untrusted(flavor: Flavor) -> Response<Bytes> {
    match flavor {
        Flavor::Nginx => whole::empty(StatusCode::UNAUTHORIZED),
        Flavor::Forward => whole::empty(StatusCode::BAD_REQUEST),
    }
}

/// Missing, repeated, unparsable or ambiguous metadata: 400, or 403 for
/// nginx (a 401 there would send the browser to log in, for a request no
/// login can make acceptable).
fn malformed(flavor: Flavor) -> Response<Bytes> {
    match flavor {
        Flavor::Nginx => whole::empty(StatusCode::FORBIDDEN),
        Flavor::Forward => whole::empty(StatusCode::BAD_REQUEST),
    }
}

/// Why a forward-auth question was refused; for the log only, so nothing
/// of the request is echoed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
enum Refusal {
    #[error("a forwarding header is missing")]
    Missing,
    #[error("a forwarding header is repeated")]
    Repeated,
    #[error("the original URL is not scheme://host[:port]/path")]
    Url,
    #[error("{0}")]
    Normalize(#[from] NormalizeError),
    #[error("dot segment or empty segment in the path as sent")]
    Ambiguous,
}

/// The request the proxy asks about: normalized for the rules, and the
/// path as sent, which is what the app behind the proxy receives.
#[derive(Debug)]
struct Original<'a> {
    target: Target<'a>,
    /// Without query or fragment.
    raw_path: &'a str,
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

/// The request the proxy is asking about. nginx sends `X-Original-URL` /
/// `X-Original-Method`; Traefik, Caddy and HAProxy send
/// `X-Forwarded-Method/-Proto/-Host/-Uri` and also copy every client
/// header, so their endpoint never reads the `X-Original-*` pair (a client
/// could steer the decision with it). A repeated header is refused, and so
/// is a path with dot or empty segments: the proxy forwards it as sent.
fn original_request(
    headers: &HeaderMap,
    client: std::net::IpAddr,
    flavor: Flavor,
) -> Result<Original<'_>, Refusal> {
    // One pass over the headers there are, rather than a lookup (a hash)
    // per name.
    let mut found: [Option<&HeaderValue>; 6] = [None; 6];
    for (name, value) in headers {
        if let Some(i) = ORIGINAL_HEADERS.iter().position(|wanted| wanted == name)
            && found[i].replace(value).is_some()
        {
            return Err(Refusal::Repeated);
        }
    }
    let [original_url, original_method, method, proto, host, uri] =
        found.map(|value| value.and_then(|v| v.to_str().ok()));
    let original = match (flavor, original_url) {
        (Flavor::Nginx, Some(original)) => {
            let method = original_method.unwrap_or(Method::GET.as_str());
            from_original_url(original, method, client)?
        }
        _ => {
            let method = method.unwrap_or(Method::GET.as_str());
            let (proto, host, uri) = (
                proto.ok_or(Refusal::Missing)?,
                host.ok_or(Refusal::Missing)?,
                uri.ok_or(Refusal::Missing)?,
            );
            Original {
                target: normalize(proto, host, uri, method, client)?,
                raw_path: path_of(uri),
            }
        }
    };
    // Normal paths come back unchanged (borrowed), so the segment check
    // runs only for the few that normalization rewrote.
    if original.target.path != original.raw_path && has_dot_or_empty_segment(original.raw_path) {
        return Err(Refusal::Ambiguous);
    }
    Ok(original)
}

/// The path of an origin-form target, without query or fragment.
fn path_of(path_and_query: &str) -> &str {
    memchr::memchr2(b'?', b'#', path_and_query.as_bytes())
        .map_or(path_and_query, |end| &path_and_query[..end])
}

/// `scheme://authority` followed by `/…` or nothing. The authority runs to
/// the first `/` and must be a host with an optional port, nothing else:
/// nginx accepts `?` and `#` in `Host`, so splitting there too would
/// decide on `/` for `Host: app?` while nginx forwards the real path.
fn from_original_url<'a>(
    original: &'a str,
    method: &str,
    client: std::net::IpAddr,
) -> Result<Original<'a>, Refusal> {
    // A byte search: a pattern search (`split_once("://")`) first builds
    // a searcher, which costs more than the whole URL.
    let colon = memchr::memchr(b':', original.as_bytes()).ok_or(Refusal::Url)?;
    let (scheme, rest) = (
        &original[..colon],
        original[colon + 1..]
            .strip_prefix("//")
            .ok_or(Refusal::Url)?,
    );
    // The raw path, not a parser's cleaned-up copy: `normalize` must see
    // what the upstream will see, `..;` and `%2f` included.
    let (authority, path) = match memchr::memchr(b'/', rest.as_bytes()) {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    // `normalize` takes only a name or an IP literal with a port, so `@`,
    // `?`, `#` and the like in the authority are refused there too; this
    // says why in the log.
    if !authority.bytes().all(is_authority_byte) {
        return Err(Refusal::Url);
    }
    Ok(Original {
        target: normalize(scheme, authority, path, method, client)?,
        raw_path: path_of(path),
    })
}

/// What a host (name, IPv4, bracketed IPv6) with a port is written with.
fn is_authority_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']')
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
        ("X-Forwarded-Uri", "/%62?x=1"),
    ];

    #[test]
    fn each_flavor_reads_its_own_headers() {
        let nginx = headers(&[
            ("x-original-url", "https://app.example.com/n"),
            ("x-original-method", "put"),
        ]);
        let t = original_request(&nginx, CLIENT, Flavor::Nginx).unwrap();
        assert_eq!(
            (t.target.method.clone(), t.target.url()),
            (Method::PUT, "https://app.example.com/n".into())
        );
        assert!(original_request(&nginx, CLIENT, Flavor::Forward).is_err());

        let mut both = headers(&TRAEFIK);
        both.extend(nginx);
        let t = original_request(&both, CLIENT, Flavor::Forward).unwrap();
        assert_eq!(
            (t.target.method.clone(), t.target.url()),
            (Method::POST, "https://app.example.com/b?x=1".into())
        );
        let t = original_request(&both, CLIENT, Flavor::Nginx).unwrap();
        assert_eq!(t.target.url(), "https://app.example.com/n");
    }

    #[test]
    fn a_repeated_or_missing_header_is_refused() {
        for (name, _) in TRAEFIK {
            let mut repeated = TRAEFIK.to_vec();
            repeated.push((name, "https"));
            assert!(original_request(&headers(&repeated), CLIENT, Flavor::Forward).is_err());
            let missing: Vec<_> = TRAEFIK.into_iter().filter(|(n, _)| *n != name).collect();
            let missing = headers(&missing);
            let without = original_request(&missing, CLIENT, Flavor::Forward);
            assert_eq!(without.is_ok(), name == "X-Forwarded-Method", "{name}");
        }
        let twice = headers(&[
            ("x-original-url", "https://app.example.com/n"),
            ("X-Original-URL", "https://app.example.com/m"),
        ]);
        assert!(original_request(&twice, CLIENT, Flavor::Nginx).is_err());
    }

    fn nginx_asks(url: &str) -> Result<String, Refusal> {
        let asked = headers(&[("x-original-url", url)]);
        original_request(&asked, CLIENT, Flavor::Nginx).map(|o| o.target.url())
    }

    #[test]
    fn the_authority_of_the_original_url_ends_at_the_first_slash() {
        // nginx takes `?` and `#` in Host and builds the URL from it.
        for url in [
            "http://app.example.com?/admin/secret",
            "http://app.example.com#/admin/secret",
            "http://app.example.com?",
            "http://app.example.com:8080?x/admin",
            "http://user@app.example.com/admin",
            "http://app.example.com\\@evil/admin",
            "http://app.example.com /admin",
            "http:/app.example.com/admin",
            "http//app.example.com/admin",
            "http://[::1/admin",
            "http:///admin",
        ] {
            assert!(nginx_asks(url).is_err(), "{url} was accepted");
        }
        for (url, seen) in [
            (
                "http://app.example.com/admin?x",
                "http://app.example.com/admin?x",
            ),
            ("http://App.Example.com:80", "http://app.example.com/"),
            ("https://[::1]:8443/a#f", "https://[::1]:8443/a"),
            ("http://10.0.0.1:81/", "http://10.0.0.1:81/"),
        ] {
            assert_eq!(nginx_asks(url).as_deref(), Ok(seen), "{url}");
        }
    }

    #[test]
    fn the_forwarded_host_must_be_a_host() {
        for host in [
            "app.example.com?",
            "app.example.com#",
            "a@b",
            "app.example.com/x",
            "",
        ] {
            let mut asked = TRAEFIK.to_vec();
            asked.retain(|(n, _)| *n != "X-Forwarded-Host");
            asked.push(("X-Forwarded-Host", host));
            let asked = headers(&asked);
            let refused = original_request(&asked, CLIENT, Flavor::Forward);
            assert!(refused.is_err(), "{host:?} was accepted");
        }
    }

    #[test]
    fn paths_with_dot_or_empty_segments_are_refused_as_sent() {
        for path in [
            "/admin/secret/../../public/x",
            "/admin/secret/%2e%2e/%2E%2e/public/x",
            "/admin/.%2e/public",
            "/public/./x",
            "/public//x",
            "//public/x",
            "/public/x/..",
            "/public/x/.?q",
        ] {
            let url = format!("https://app.example.com{path}");
            assert_eq!(nginx_asks(&url), Err(Refusal::Ambiguous), "{path}");
            let mut asked = TRAEFIK.to_vec();
            asked.retain(|(n, _)| *n != "X-Forwarded-Uri");
            asked.push(("X-Forwarded-Uri", path));
            let asked = headers(&asked);
            let refused = original_request(&asked, CLIENT, Flavor::Forward);
            assert_eq!(refused.unwrap_err(), Refusal::Ambiguous, "{path}");
        }
        // Dots that are not whole segments, and a trailing slash, are fine.
        for path in [
            "/public/x.js",
            "/.well-known/a",
            "/a/...",
            "/a/",
            "/a/b?x=//..",
            "/%2e%2e.",
        ] {
            let url = format!("https://app.example.com{path}");
            assert!(nginx_asks(&url).is_ok(), "{path}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

        /// A path forward-auth accepts keeps the segments it was sent with:
        /// normalization may respell a segment (`%61` → `a`), never add,
        /// drop or merge one. So the app, which gets the path as sent,
        /// routes on the very segments the rules saw.
        #[test]
        fn an_accepted_path_keeps_its_segments(
            sent in crate::access::strategies::tricky_path(),
        ) {
            let url = format!("https://app.example.com{sent}");
            let Ok(value) = HeaderValue::from_str(&url) else {
                return Ok(());
            };
            let mut asked = HeaderMap::new();
            asked.insert("x-original-url", value);
            if let Ok(original) = original_request(&asked, CLIENT, Flavor::Nginx) {
                let (ours, raw) = (&original.target.path, original.raw_path);
                proptest::prop_assert!(!has_dot_or_empty_segment(raw), "{sent}");
                proptest::prop_assert_eq!(
                    ours.split('/').count(),
                    raw.split('/').count(),
                    "{} became {}", raw, ours
                );
            }
        }
    }
}
