//! The `rd` return URL: followed only back to the gateway's own origin or
//! to hosts under `session.cookie_domain` (dot boundary), re-serialized
//! from the parsed URL, never echoed raw.

use url::{Url, form_urlencoded};

pub struct Redirects {
    /// `server.public_url`, the only origin `rd` may point to.
    public_url: Url,
    /// Its `scheme://host[:port]`, serialized once: see [`Redirects::public`].
    public_origin: String,
    /// `{origin}{path_prefix}/`, serialized once: every "needs login"
    /// answer starts with it.
    portal_base: String,
    /// `session.cookie_domain`: one login covers every host under it.
    cookie_domain: Option<String>,
}

impl Redirects {
    pub fn new(public_url: Url, path_prefix: &str, cookie_domain: Option<String>) -> Self {
        let mut portal_base = root_of(&public_url);
        let public_origin = portal_base.as_str().trim_end_matches('/').to_owned();
        portal_base.set_path(&format!("{path_prefix}/"));
        Redirects {
            portal_base: portal_base.into(),
            public_origin,
            public_url,
            cookie_domain,
        }
    }

    /// Where to send the browser after the login: `rd` when it is safe,
    /// else the root of the public URL.
    pub fn safe_target(&self, rd: &str) -> String {
        self.parse_allowed(rd)
            .unwrap_or_else(|| self.root())
            .to_string()
    }

    /// The absolute URL of a path on the public origin, used as `rd` when
    /// a request through the proxy needs a login: what `Url::join` makes of
    /// it. A plain path, which is nearly every one, is appended to the
    /// origin as it is, which is what `join` would write (a differential
    /// test holds the two together); parsing a URL was a tenth of a 302.
    pub fn public(&self, path_and_query: &str) -> String {
        if is_plain_path(path_and_query) {
            return [self.public_origin.as_str(), path_and_query].concat();
        }
        self.public_url
            .join(path_and_query)
            .unwrap_or_else(|_| self.root())
            .to_string()
    }

    /// A portal page (`login`, `verify`: a plain word) with `rd` attached.
    pub fn portal_url(&self, page: &str, rd: &str) -> String {
        let mut url = String::with_capacity(self.portal_base.len() + page.len() + 4 + rd.len());
        url.push_str(&self.portal_base);
        url.push_str(page);
        url.push_str("?rd=");
        url.extend(form_urlencoded::byte_serialize(rd.as_bytes()));
        url
    }

    /// The host (with a non-default port) of a URL, for the push message;
    /// the public host when `url` has none.
    pub fn host_of(&self, url: &str) -> String {
        let parsed = Url::parse(url).ok();
        let url = parsed.as_ref().unwrap_or(&self.public_url);
        match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            (None, _) => String::new(),
        }
    }

    fn root(&self) -> Url {
        root_of(&self.public_url)
    }

    fn parse_allowed(&self, rd: &str) -> Option<Url> {
        if rd.is_empty() || rd.contains('\\') || rd.chars().any(char::is_control) {
            return None;
        }
        let url = if rd.starts_with('/') && !rd.starts_with("//") {
            self.public_url.join(rd).ok()?
        } else {
            Url::parse(rd).ok()?
        };
        let clean = matches!(url.scheme(), "http" | "https")
            && url.username().is_empty()
            && url.password().is_none();
        (clean && (url.origin() == self.public_url.origin() || self.under_cookie_domain(&url)))
            .then_some(url)
    }

    /// A host under the cookie domain, never on a weaker scheme than the
    /// portal's own.
    fn under_cookie_domain(&self, url: &Url) -> bool {
        let (Some(domain), Some(host)) = (&self.cookie_domain, url.host_str()) else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        let inside = host == *domain || host.ends_with(&format!(".{domain}"));
        let downgrade = self.public_url.scheme() == "https" && url.scheme() != "https";
        inside && !downgrade
    }
}

/// A path (and query) that `Url::join` copies unchanged: one leading `/`
/// (`//` would name a host), no dot segment (`join` resolves `.`, `..`
/// and their `%2e` spellings), and only bytes that neither the path's nor
/// the query's percent-encode set touches.
fn is_plain_path(text: &str) -> bool {
    const KEPT: &[u8] = b"-._~!$&()*+,;=:@/%?";
    let path = text.split('?').next().unwrap_or(text);
    text.starts_with('/')
        && !text.starts_with("//")
        && !path.contains("/.")
        && !path.to_ascii_lowercase().contains("%2e")
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || KEPT.contains(&b))
}

fn root_of(url: &Url) -> Url {
    let mut root = url.clone();
    root.set_path("/");
    root.set_query(None);
    root.set_fragment(None);
    root
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redirects() -> Redirects {
        Redirects::new(
            Url::parse("https://app.example.com/").unwrap(),
            "/_authgate",
            None,
        )
    }

    #[test]
    fn hosts_under_the_cookie_domain_are_followed_on_a_dot_boundary() {
        let r = Redirects::new(
            Url::parse("https://auth.example.com/").unwrap(),
            "/_authgate",
            Some("example.com".into()),
        );
        for rd in [
            "https://app.example.com/x",
            "https://a.b.example.com/",
            "https://example.com/",
        ] {
            assert_eq!(
                r.safe_target(rd),
                Url::parse(rd).unwrap().to_string(),
                "{rd}"
            );
        }
        for rd in [
            "https://evilexample.com/",
            "https://example.com.evil.net/",
            "http://app.example.com/",
            "https://user@app.example.com/",
        ] {
            assert_eq!(r.safe_target(rd), "https://auth.example.com/", "{rd}");
        }
    }

    #[test]
    fn own_origin_is_followed_and_reserialized() {
        let r = redirects();
        assert_eq!(
            r.safe_target("https://app.example.com/a b?x=1"),
            "https://app.example.com/a%20b?x=1"
        );
        assert_eq!(
            r.safe_target("/reports?q=1"),
            "https://app.example.com/reports?q=1"
        );
    }

    #[test]
    fn everything_else_falls_back_to_the_root() {
        let r = redirects();
        for rd in [
            "https://evil.example.net/",
            "https://app.example.com.evil.net/",
            "//evil.example.net/",
            "/\\evil.example.net/",
            "https://user:pw@app.example.com/",
            "http://app.example.com/",
            "https://app.example.com:8443/",
            "javascript:alert(1)",
            "https://app.example.com/\nSet-Cookie:x",
            "",
        ] {
            assert_eq!(r.safe_target(rd), "https://app.example.com/", "{rd:?}");
        }
    }

    /// What the url crate made of it before the prefix was kept as text.
    fn portal_url_by_the_url_crate(public_url: &str, prefix: &str, page: &str, rd: &str) -> String {
        let mut url = root_of(&Url::parse(public_url).unwrap());
        url.set_path(&format!("{prefix}/{page}"));
        url.query_pairs_mut().append_pair("rd", rd);
        url.to_string()
    }

    #[test]
    fn portal_urls_are_those_the_url_crate_made() {
        for (public_url, prefix) in [
            ("https://app.example.com/", "/_authgate"),
            ("http://127.0.0.1:8080/some/path?q=1#f", "/auth"),
            ("https://[2001:db8::1]:8443", "/_p ä"),
            ("https://App.Example.COM./", ""),
        ] {
            let r = Redirects::new(Url::parse(public_url).unwrap(), prefix, None);
            for page in ["login", "verify"] {
                for rd in [
                    "",
                    "https://app.example.com/a?b=c&d=e#f",
                    "/ä ö+&=%2F",
                    "x\ny",
                ] {
                    assert_eq!(
                        r.portal_url(page, rd),
                        portal_url_by_the_url_crate(public_url, prefix, page, rd),
                        "{public_url} {prefix} {page} {rd}"
                    );
                }
            }
        }
    }

    #[test]
    fn login_url_carries_rd_encoded() {
        let r = redirects();
        assert_eq!(
            r.portal_url("login", "https://app.example.com/a?b=c&d=e"),
            "https://app.example.com/_authgate/login?rd=https%3A%2F%2Fapp.example.com%2Fa%3Fb%3Dc%26d%3De"
        );
    }

    proptest::proptest! {
        /// `public` is `Url::join` on the public URL, for any path and for
        /// the paths normalization gives (what the proxy passes).
        #[test]
        fn public_urls_are_those_the_url_crate_joins(
            path in crate::access::strategies::tricky_path(),
            public_url in proptest::sample::select(&[
                "https://app.example.com/",
                "http://127.0.0.1:8080/some/path?q=1#f",
                "https://[2001:db8::1]:8443",
                "https://App.Example.COM./base/",
            ][..]),
        ) {
            let r = Redirects::new(Url::parse(public_url).unwrap(), "/_authgate", None);
            let joined = |p: &str| r.public_url.join(p).unwrap_or_else(|_| r.root()).to_string();
            proptest::prop_assert_eq!(r.public(&path), joined(&path));
            let client = std::net::IpAddr::from([192, 0, 2, 1]);
            if let Ok(target) = crate::access::normalize("https", "app.example.com", &path, "GET", client) {
                let sent = target.path_and_query();
                proptest::prop_assert_eq!(r.public(&sent), joined(&sent));
            }
        }
    }
}
