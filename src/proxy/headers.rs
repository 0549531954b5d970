//! Header work on the way upstream and back: hop-by-hop headers, identity
//! headers, `X-Forwarded-*`, and the gateway's own cookies.

use std::net::IpAddr;

use http::header::{
    CONNECTION, COOKIE, HOST, HeaderName, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, SET_COOKIE, TE,
    TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, HeaderValue};

use crate::users::User;

/// The identity headers, in the order DESIGN.md lists them.
pub const IDENTITY_HEADERS: [&str; 4] = [
    "remote-user",
    "remote-name",
    "remote-email",
    "remote-groups",
];

const X_FORWARDED_FOR: &str = "x-forwarded-for";
const X_FORWARDED_PROTO: &str = "x-forwarded-proto";
const X_FORWARDED_HOST: &str = "x-forwarded-host";

/// RFC 9110 7.6.1: the headers named in `Connection`, then the fixed list.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        CONNECTION,
        PROXY_AUTHENTICATE,
        PROXY_AUTHORIZATION,
        TE,
        TRAILER,
        TRANSFER_ENCODING,
        UPGRADE,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
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

/// Removes every client copy of the identity headers, in any letter case
/// and with `_` for `-` (`remote_user`), which some upstream frameworks
/// treat as the same name.
pub fn strip_identity(headers: &mut HeaderMap) {
    let spoofed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let normalized = name.as_str().replace('_', "-");
            IDENTITY_HEADERS.contains(&normalized.as_str())
        })
        .cloned()
        .collect();
    for name in spoofed {
        headers.remove(name);
    }
}

/// Sets all four identity headers from the user.
pub fn set_identity(headers: &mut HeaderMap, user: &User) {
    let values = [
        user.email.as_str(),
        user.name.as_str(),
        user.email.as_str(),
        &user.groups.join(","),
    ];
    for (name, value) in IDENTITY_HEADERS.iter().zip(values) {
        // Values come from the users file; one that cannot be a header
        // value is sent empty rather than dropped, so no client copy can
        // stand in for it.
        let value = HeaderValue::from_str(value).unwrap_or(HeaderValue::from_static(""));
        headers.insert(*name, value);
    }
}

/// `X-Forwarded-For/-Proto/-Host`. From a trusted proxy the chain is
/// extended; from anyone else the client's values are replaced.
pub fn set_forwarded(
    headers: &mut HeaderMap,
    peer: IpAddr,
    peer_trusted: bool,
    proto: &str,
    host: Option<&str>,
) {
    let chain = headers
        .get(X_FORWARDED_FOR)
        .and_then(|v| v.to_str().ok())
        .filter(|_| peer_trusted)
        .map(|prev| format!("{prev}, {peer}"))
        .unwrap_or_else(|| peer.to_string());
    replace(headers, X_FORWARDED_FOR, &chain);
    if !(peer_trusted && headers.contains_key(X_FORWARDED_PROTO)) {
        replace(headers, X_FORWARDED_PROTO, proto);
    }
    if !(peer_trusted && headers.contains_key(X_FORWARDED_HOST)) {
        match host {
            Some(host) => replace(headers, X_FORWARDED_HOST, host),
            None => {
                headers.remove(X_FORWARDED_HOST);
            }
        }
    }
}

fn replace(headers: &mut HeaderMap, name: &'static str, value: &str) {
    headers.remove(name);
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// Takes the gateway's cookies out of the `Cookie` header(s): the upstream
/// never sees the credential.
pub fn strip_own_cookies(headers: &mut HeaderMap, own: &[&str]) {
    let kept: Vec<String> = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(n, _)| n).trim();
            !own.contains(&name)
        })
        .map(str::to_owned)
        .collect();
    headers.remove(COOKIE);
    if kept.is_empty() {
        return;
    }
    if let Ok(value) = HeaderValue::from_str(&kept.join("; ")) {
        headers.insert(COOKIE, value);
    }
}

/// Drops an upstream `Set-Cookie` that would overwrite a gateway cookie.
pub fn drop_own_set_cookies(headers: &mut HeaderMap, own: &[&str]) {
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
pub fn request_host(uri: &http::Uri, headers: &HeaderMap) -> Option<String> {
    uri.authority().map(|a| a.as_str().to_owned()).or_else(|| {
        headers
            .get(HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    })
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
        strip_identity(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("remote-user-agent"));
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
        };
        let mut h = HeaderMap::new();
        set_identity(&mut h, &user);
        assert_eq!(h["remote-user"], "a@example.com");
        assert_eq!(h["remote-name"], "Ann");
        assert_eq!(h["remote-email"], "a@example.com");
        assert_eq!(h["remote-groups"], "admins,ops");
    }

    #[test]
    fn forwarded_headers_are_replaced_for_untrusted_and_extended_for_trusted() {
        let peer: IpAddr = "192.0.2.7".parse().unwrap();
        let mut h = map(&[("x-forwarded-for", "1.2.3.4"), ("x-forwarded-host", "evil")]);
        set_forwarded(&mut h, peer, false, "http", Some("app.local"));
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
        assert_eq!(h["x-forwarded-host"], "app.local");
        assert_eq!(h["x-forwarded-proto"], "http");

        let mut h = map(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
        ]);
        set_forwarded(&mut h, peer, true, "http", Some("app.local"));
        assert_eq!(h["x-forwarded-for"], "1.2.3.4, 192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "https");
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
