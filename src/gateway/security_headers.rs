//! The headers that make the portal's pages defend themselves: a
//! Content-Security-Policy with no inline script or style and no framing,
//! the older anti-framing and anti-sniffing headers, no referrer, and HSTS
//! when `server.hsts` is on. Built once at start-up; `Gateway::handle` adds
//! them to every answer the portal makes (never to forward-auth answers or
//! to the upstream's).

use http::header::{
    CONTENT_SECURITY_POLICY, REFERRER_POLICY, STRICT_TRANSPORT_SECURITY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use http::{HeaderMap, HeaderValue};

/// A year, and every subdomain of the portal's host: what browsers keep
/// once they have seen an https answer of the portal.
const HSTS: &str = "max-age=31536000; includeSubDomains";

pub struct SecurityHeaders {
    csp: HeaderValue,
    hsts: Option<HeaderValue>,
}

impl SecurityHeaders {
    /// `hsts`: `server.hsts`, honoured only with an https `public_url` (a
    /// browser ignores the header over plain HTTP anyway).
    pub fn new(public_url: &url::Url, cookie_domain: Option<&str>, hsts: bool) -> Self {
        let csp = content_security_policy(public_url, cookie_domain);
        SecurityHeaders {
            csp: HeaderValue::try_from(csp).expect("the policy is built from validated hosts"),
            hsts: (hsts && public_url.scheme() == "https").then(|| HeaderValue::from_static(HSTS)),
        }
    }

    pub fn apply(&self, headers: &mut HeaderMap) {
        headers.insert(CONTENT_SECURITY_POLICY, self.csp.clone());
        headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        if let Some(hsts) = &self.hsts {
            headers.insert(STRICT_TRANSPORT_SECURITY, hsts.clone());
        }
    }
}

/// Scripts, styles, and everything else only from the gateway's own files
/// (the QR code is inline SVG markup, not an image load); no plugins, no
/// `<base>`, no framing. Forms post only to the portal, but a post answers
/// 303 to `rd`, and browsers check `form-action` on that redirect too: so
/// the origin of `public_url` and the hosts `rd` may name (under
/// `session.cookie_domain`, any port, never a weaker scheme than the
/// portal's, as the `rd` check itself) are allowed as well.
fn content_security_policy(public_url: &url::Url, cookie_domain: Option<&str>) -> String {
    let mut form_action = format!("'self' {}", public_url.origin().ascii_serialization());
    if let Some(domain) = cookie_domain {
        let schemes: &[&str] = match public_url.scheme() {
            "https" => &["https"],
            _ => &["http", "https"],
        };
        for scheme in schemes {
            form_action.push_str(&format!(" {scheme}://{domain}:* {scheme}://*.{domain}:*"));
        }
    }
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
         object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action {form_action}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> url::Url {
        url::Url::parse(text).unwrap()
    }

    fn applied(headers: &SecurityHeaders) -> HeaderMap {
        let mut map = HeaderMap::new();
        headers.apply(&mut map);
        map
    }

    #[test]
    fn the_policy_allows_no_inline_code_and_no_framing() {
        let map = applied(&SecurityHeaders::new(
            &url("http://127.0.0.1:8080"),
            None,
            false,
        ));
        let csp = map[CONTENT_SECURITY_POLICY].to_str().unwrap();
        for directive in [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "object-src 'none'",
            "form-action 'self' http://127.0.0.1:8080",
        ] {
            assert!(csp.contains(directive), "{directive} in {csp}");
        }
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(map[X_FRAME_OPTIONS], "DENY");
        assert_eq!(map[X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(map[REFERRER_POLICY], "no-referrer");
        assert!(!map.contains_key(STRICT_TRANSPORT_SECURITY));
    }

    #[test]
    fn forms_may_land_on_the_hosts_rd_may_name() {
        let https =
            SecurityHeaders::new(&url("https://auth.example.com"), Some("example.com"), false);
        let map = applied(&https);
        let csp = map[CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(
            csp.ends_with(
                "form-action 'self' https://auth.example.com \
                 https://example.com:* https://*.example.com:*"
            ),
            "{csp}"
        );
        let http = SecurityHeaders::new(
            &url("http://auth.example.com:81"),
            Some("example.com"),
            false,
        );
        let map = applied(&http);
        let csp = map[CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(
            csp.contains("'self' http://auth.example.com:81 http://example.com:*"),
            "{csp}"
        );
        assert!(csp.contains(" https://*.example.com:*"), "{csp}");
    }

    #[test]
    fn hsts_only_when_asked_and_https() {
        let on = SecurityHeaders::new(&url("https://auth.example.com"), None, true);
        assert_eq!(applied(&on)[STRICT_TRANSPORT_SECURITY], HSTS);
        let plain = SecurityHeaders::new(&url("http://auth.example.com"), None, true);
        assert!(!applied(&plain).contains_key(STRICT_TRANSPORT_SECURITY));
        let off = SecurityHeaders::new(&url("https://auth.example.com"), None, false);
        assert!(!applied(&off).contains_key(STRICT_TRANSPORT_SECURITY));
    }
}
