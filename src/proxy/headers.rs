//! Header work on the way upstream and back: hop-by-hop headers, identity
//! headers, `X-Forwarded-*`, and the gateway's own cookies. Every name is
//! a constant: parsing a name from a string costs more than the lookup.

use std::fmt::Write as _;
use std::net::IpAddr;

use http::header::{
    CONNECTION, COOKIE, HOST, HeaderName, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, SET_COOKIE, TE,
    TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, HeaderValue};

use crate::model::{IDENTITY_HEADERS, User};

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// The hop-by-hop headers of RFC 9110 7.6.1 that every message drops.
const HOP_BY_HOP: [&HeaderName; 9] = [
    &CONNECTION,
    &PROXY_AUTHENTICATE,
    &PROXY_AUTHORIZATION,
    &TE,
    &TRAILER,
    &TRANSFER_ENCODING,
    &UPGRADE,
    &KEEP_ALIVE,
    &PROXY_CONNECTION,
];

/// RFC 9110 7.6.1: the headers named in `Connection`, then the fixed
/// list. Usually none or one of them is there: finding them among the
/// headers present costs less than removing each name blindly.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| {
            let token = token.trim();
            headers
                .keys()
                .find(|name| name.as_str().eq_ignore_ascii_case(token))
                .cloned()
        })
        .collect();
    for name in named {
        headers.remove(name);
    }
    // Names are unique, so at most one of each is found.
    let mut fixed: [Option<HeaderName>; HOP_BY_HOP.len()] = Default::default();
    for (slot, name) in fixed
        .iter_mut()
        .zip(headers.keys().filter(|name| HOP_BY_HOP.contains(name)))
    {
        *slot = Some(name.clone());
    }
    for name in fixed.into_iter().flatten() {
        headers.remove(name);
    }
}

/// Whether a `Connection` header lists `token` (case-insensitive).
pub fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// After `remove_hop_by_hop`, puts back the two hop-by-hop headers an
/// upgrade needs at the next hop: `Connection: upgrade` and `Upgrade`.
pub fn set_upgrade(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, protocol);
}

/// Identity headers of other gateways (oauth2-proxy, Authelia, nginx
/// `auth_request` setups) that an app once behind one may still trust.
const OTHER_GATEWAYS_IDENTITY: [&str; 4] = [
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-groups",
    "x-forwarded-preferred-username",
];

/// oauth2-proxy's `X-Auth-Request-*`: every suffix.
const OTHER_GATEWAYS_PREFIX: &str = "x-auth-request-";

/// h2c's upgrade settings: never forwarded, since h2c is never tunnelled
/// (`server.allowed_upgrades` cannot name a version) and the header has no
/// meaning without the upgrade.
const HTTP2_SETTINGS: &str = "http2-settings";

/// Names the approval a held request was released under (docs/approval.md);
/// only the gateway sets it, so a client's copy is stripped like an
/// identity header.
pub const APPROVAL_HEADER: &str = "authgate-approval";

/// Response headers an nginx in front obeys (`X-Accel-Redirect`,
/// `X-Accel-Buffering`, ...): an app must not steer it through us.
const X_ACCEL_PREFIX: &[u8] = b"x-accel-";

/// The request headers no client may send upstream, found in one pass over
/// the names: the identity headers (ours and other gateways'),
/// `HTTP2-Settings`, and `proxy.strip_request_headers`. A name matches in
/// any letter case and with `_` for `-` (`remote_user`), which some
/// upstream frameworks treat as the same name.
pub struct StrippedHeaders {
    patterns: Vec<Pattern>,
    /// Whether some pattern starts with this byte (`-` also marks `_`): most
    /// names are passed over after this one lookup.
    first_bytes: [bool; 256],
}

/// A lower-case name with `-` (never `_`); `prefix`: every name that starts
/// with it.
struct Pattern {
    text: Box<str>,
    prefix: bool,
}

impl Pattern {
    fn matches(&self, name: &[u8]) -> bool {
        let text = self.text.as_bytes();
        let compared = if self.prefix {
            name.get(..text.len())
        } else {
            (name.len() == text.len()).then_some(name)
        };
        compared.is_some_and(|compared| same_spelling(text, compared))
    }
}

/// `got` (lower case, as `HeaderName` keeps it) is `want` with any of its
/// `-` written as `_`.
fn same_spelling(want: &[u8], got: &[u8]) -> bool {
    want.len() == got.len()
        && want
            .iter()
            .zip(got)
            .all(|(&want, &got)| want == got || (want == b'-' && got == b'_'))
}

impl StrippedHeaders {
    /// The built-in names and `configured` (validated: lower case, `-`
    /// for `_`, a trailing `*` for a prefix).
    pub fn new(configured: &[String]) -> Self {
        let exact = IDENTITY_HEADERS
            .iter()
            .map(HeaderName::as_str)
            .chain(OTHER_GATEWAYS_IDENTITY)
            .chain([HTTP2_SETTINGS, APPROVAL_HEADER])
            .map(|name| (name, false));
        let prefixes = [(OTHER_GATEWAYS_PREFIX, true)].into_iter();
        let configured = configured
            .iter()
            .map(|entry| match entry.strip_suffix('*') {
                Some(prefix) => (prefix, true),
                None => (entry.as_str(), false),
            });
        let mut stripped = StrippedHeaders {
            patterns: Vec::new(),
            first_bytes: [false; 256],
        };
        for (text, prefix) in exact.chain(prefixes).chain(configured) {
            let text = text.to_ascii_lowercase().replace('_', "-");
            let Some(&first) = text.as_bytes().first() else {
                continue;
            };
            stripped.first_bytes[usize::from(first)] = true;
            if first == b'-' {
                stripped.first_bytes[usize::from(b'_')] = true;
            }
            stripped.patterns.push(Pattern {
                text: text.into(),
                prefix,
            });
        }
        stripped
    }

    /// Removes every client copy of the stripped headers. Allocates only
    /// when one is there.
    pub fn strip(&self, headers: &mut HeaderMap) {
        let spoofed: Vec<HeaderName> = headers
            .keys()
            .filter(|name| self.is_stripped(name.as_str().as_bytes()))
            .cloned()
            .collect();
        for name in spoofed {
            headers.remove(name);
        }
    }

    fn is_stripped(&self, name: &[u8]) -> bool {
        name.first()
            .is_some_and(|&first| self.first_bytes[usize::from(first)])
            && self.patterns.iter().any(|p| p.matches(name))
    }
}

/// Drops the upstream's `X-Accel-*` response headers (any case, `_` for
/// `-`). Allocates only when one is there.
pub fn drop_accel(headers: &mut HeaderMap) {
    let accel: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            name.as_str()
                .as_bytes()
                .get(..X_ACCEL_PREFIX.len())
                .is_some_and(|start| same_spelling(X_ACCEL_PREFIX, start))
        })
        .cloned()
        .collect();
    for name in accel {
        headers.remove(name);
    }
}

/// Sets all four identity headers from the user.
pub fn set_identity(headers: &mut HeaderMap, user: &User) {
    for (name, value) in user.identity_headers() {
        headers.insert(name, value.clone());
    }
}

/// All four identity headers, empty: for an answer without a user, so a
/// proxy that copies them never keeps a client's copy.
pub fn set_no_identity(headers: &mut HeaderMap) {
    for name in &IDENTITY_HEADERS {
        headers.insert(name, HeaderValue::from_static(""));
    }
}

/// `X-Forwarded-For/-Proto/-Host`. From a trusted proxy the chain and the
/// protocol are kept; from anyone else the client's values are replaced.
/// `X-Forwarded-Host` is always `host`, the host the access decision was
/// made on, whoever sent one: the app must not act on another.
pub fn set_forwarded(
    headers: &mut HeaderMap,
    peer: IpAddr,
    peer_trusted: bool,
    proto: &'static str,
    host: HeaderValue,
) {
    let mut chain = String::new();
    if let Some(prev) = peer_trusted
        .then(|| headers.get(&X_FORWARDED_FOR))
        .flatten()
        .and_then(|v| v.to_str().ok())
    {
        chain.push_str(prev);
        chain.push_str(", ");
    }
    push_ip(&mut chain, peer);
    match HeaderValue::try_from(chain) {
        Ok(value) => headers.insert(&X_FORWARDED_FOR, value),
        Err(_) => headers.remove(&X_FORWARDED_FOR),
    };
    if !(peer_trusted && headers.contains_key(&X_FORWARDED_PROTO)) {
        headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    }
    headers.insert(&X_FORWARDED_HOST, host);
}

/// Appends the address as `Display` writes it, IPv4 without the
/// formatting machinery (a third of `set_forwarded` otherwise).
fn push_ip(out: &mut String, ip: IpAddr) {
    let IpAddr::V4(v4) = ip else {
        let _ = write!(out, "{ip}");
        return;
    };
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if octet >= 100 {
            out.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            out.push(char::from(b'0' + octet / 10 % 10));
        }
        out.push(char::from(b'0' + octet % 10));
    }
}

/// Takes the gateway's cookies out of the `Cookie` header(s): the upstream
/// never sees the credential.
pub fn strip_own_cookies(headers: &mut HeaderMap, own: &[&str]) {
    let mut kept = String::new();
    for pair in headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
    {
        let name = pair.split_once('=').map_or(pair, |(n, _)| n).trim();
        if own.contains(&name) {
            continue;
        }
        if !kept.is_empty() {
            kept.push_str("; ");
        }
        kept.push_str(pair);
    }
    headers.remove(COOKIE);
    if kept.is_empty() {
        return;
    }
    if let Ok(value) = HeaderValue::try_from(kept) {
        headers.insert(COOKIE, value);
    }
}

/// Drops an upstream `Set-Cookie` that would overwrite a gateway cookie.
pub fn drop_own_set_cookies(headers: &mut HeaderMap, own: &[&str]) {
    if !headers.contains_key(SET_COOKIE) {
        return;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(SET_COOKIE)
        .iter()
        .filter(|v| {
            let text = String::from_utf8_lossy(v.as_bytes());
            let name = text.split_once('=').map_or(&*text, |(n, _)| n).trim();
            !own.contains(&name)
        })
        .cloned()
        .collect();
    headers.remove(SET_COOKIE);
    for value in kept {
        headers.append(SET_COOKIE, value);
    }
}

/// The host the client asked for: the URI authority (HTTP/2) or `Host`.
pub fn request_host<'r>(uri: &'r http::Uri, headers: &'r HeaderMap) -> Option<&'r str> {
    uri.authority()
        .map(|a| a.as_str())
        .or_else(|| headers.get(HOST).and_then(|v| v.to_str().ok()))
}

/// [`request_host`] as a header value; a `Host` header is shared, not copied.
pub fn request_host_value(uri: &http::Uri, headers: &HeaderMap) -> Option<HeaderValue> {
    match uri.authority() {
        Some(authority) => HeaderValue::from_str(authority.as_str()).ok(),
        None => headers.get(HOST).filter(|v| v.to_str().is_ok()).cloned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret-hop"),
            ("connection", "X-Other-Hop,connection"),
            ("x-other-hop", "1"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic x"),
            ("accept", "*/*"),
        ]);
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("accept"));
    }

    #[test]
    fn an_upgrade_keeps_only_connection_upgrade_and_its_protocol() {
        let mut h = map(&[
            ("connection", "keep-alive, Upgrade, x-secret-hop"),
            ("upgrade", "websocket"),
            ("x-secret-hop", "1"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ]);
        assert!(connection_has(&h, "upgrade"));
        assert!(!connection_has(&h, "close"));
        let protocol = h[UPGRADE].clone();
        remove_hop_by_hop(&mut h);
        set_upgrade(&mut h, protocol);
        assert_eq!(h.len(), 3, "{h:?}");
        assert_eq!(h[CONNECTION], "upgrade");
        assert_eq!(h[UPGRADE], "websocket");
        assert!(h.contains_key("sec-websocket-key"));
    }

    #[test]
    fn identity_headers_from_clients_go_in_every_spelling() {
        let mut h = map(&[
            ("Remote-User", "mallory"),
            ("REMOTE-EMAIL", "m@evil"),
            ("remote_user", "mallory"),
            ("Remote_Groups", "admins"),
            ("remote-name", "x"),
            ("remote-user-agent", "keep me"),
        ]);
        StrippedHeaders::new(&[]).strip(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("remote-user-agent"));
    }

    #[test]
    fn other_gateways_identity_and_configured_headers_go_in_every_spelling() {
        let mut h = map(&[
            ("X-Forwarded-User", "m"),
            ("x_forwarded_email", "m@evil"),
            ("X_FORWARDED-GROUPS", "admins"),
            ("x-forwarded-preferred_username", "m"),
            ("X-Auth-Request-User", "m"),
            ("x_auth_request_access_token", "t"),
            ("HTTP2-Settings", "AAMAAABkAAQCAAAAAAIAAAAA"),
            ("http2_settings", "x"),
            ("x-legacy-user", "m"),
            ("X_SSO_role", "admin"),
            ("x-sso-", "empty suffix"),
            // Kept: look-alikes and the gateway's own forwarding headers.
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-host", "a"),
            ("x-forwarded-username", "not a family"),
            ("x-auth-request", "no dash after"),
            ("x-legacy-user-agent", "keep"),
            ("x-ss0-role", "keep"),
            ("accept", "*/*"),
        ]);
        let stripped = StrippedHeaders::new(&["x-legacy-user".into(), "x-sso-*".into()]);
        stripped.strip(&mut h);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(
            left,
            [
                "accept",
                "x-auth-request",
                "x-forwarded-for",
                "x-forwarded-host",
                "x-forwarded-username",
                "x-legacy-user-agent",
                "x-ss0-role",
            ]
        );
    }

    #[test]
    fn x_accel_response_headers_go() {
        let mut h = map(&[
            ("X-Accel-Redirect", "/internal"),
            ("x_accel_buffering", "no"),
            ("X-ACCEL-EXPIRES", "0"),
            ("x-accelerated", "keep"),
            ("x-accel", "keep"),
            ("content-type", "text/plain"),
        ]);
        drop_accel(&mut h);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-type", "x-accel", "x-accelerated"]);
    }

    #[test]
    fn identity_is_set_from_the_user() {
        let user = User {
            email: "a@example.com".into(),
            name: "Ann".into(),
            country_code: String::new(),
            phone: String::new(),
            password: String::new(),
            groups: vec!["admins".into(), "ops".into()],
            second_factor: None,
            second_factor_reset: None,
            identity: Default::default(),
        };
        let mut h = HeaderMap::new();
        set_identity(&mut h, &user);
        assert_eq!(h["remote-user"], "a@example.com");
        assert_eq!(h["remote-name"], "Ann");
        assert_eq!(h["remote-email"], "a@example.com");
        assert_eq!(h["remote-groups"], "admins,ops");

        // A reloaded users file makes new entries, with their own values.
        let renamed = User {
            name: "Ann B".into(),
            groups: vec!["ops".into()],
            ..user.clone()
        };
        set_identity(&mut h, &renamed);
        assert_eq!(h["remote-name"], "Ann B");
        assert_eq!(h["remote-groups"], "ops");
        let unprintable = User {
            name: "line\nbreak".into(),
            ..user.clone()
        };
        set_identity(&mut h, &unprintable);
        assert_eq!(h["remote-name"], "");
        assert_eq!(h["remote-user"], "a@example.com");
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for ip in [
            "0.0.0.0",
            "9.10.99.100",
            "192.0.2.7",
            "255.255.255.255",
            "10.200.1.20",
            "::1",
            "2001:db8::7",
            "::ffff:192.0.2.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut out = String::from("x, ");
            push_ip(&mut out, ip);
            assert_eq!(out, format!("x, {ip}"));
        }
    }

    #[test]
    fn forwarded_headers_are_replaced_for_untrusted_and_extended_for_trusted() {
        let peer: IpAddr = "192.0.2.7".parse().unwrap();
        let mut h = map(&[("x-forwarded-for", "1.2.3.4"), ("x-forwarded-host", "evil")]);
        set_forwarded(
            &mut h,
            peer,
            false,
            "http",
            HeaderValue::from_static("app.local"),
        );
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
        assert_eq!(h["x-forwarded-host"], "app.local");
        assert_eq!(h["x-forwarded-proto"], "http");

        let mut h = map(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "other.example"),
        ]);
        set_forwarded(
            &mut h,
            peer,
            true,
            "http",
            HeaderValue::from_static("app.local"),
        );
        assert_eq!(h["x-forwarded-for"], "1.2.3.4, 192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        // The host the decision was made on, even from a trusted proxy.
        assert_eq!(h.get_all("x-forwarded-host").iter().count(), 1);
        assert_eq!(h["x-forwarded-host"], "app.local");
    }

    #[test]
    fn own_cookies_never_reach_the_upstream() {
        let mut h = map(&[
            ("cookie", "a=1; authgate_session=secret; b=2"),
            ("cookie", "authgate_csrf=x"),
        ]);
        strip_own_cookies(&mut h, &["authgate_session", "authgate_csrf"]);
        assert_eq!(h.get_all(COOKIE).iter().count(), 1);
        assert_eq!(h[COOKIE], "a=1; b=2");

        let mut h = map(&[("cookie", "authgate_session=secret")]);
        strip_own_cookies(&mut h, &["authgate_session"]);
        assert!(!h.contains_key(COOKIE));
    }

    #[test]
    fn upstream_cannot_set_gateway_cookies() {
        let mut h = map(&[
            ("set-cookie", "authgate_session=evil; Path=/"),
            ("set-cookie", "app=1; Path=/"),
        ]);
        drop_own_set_cookies(&mut h, &["authgate_session", "authgate_csrf"]);
        let left: Vec<_> = h.get_all(SET_COOKIE).iter().collect();
        assert_eq!(left, vec!["app=1; Path=/"]);
    }
}
