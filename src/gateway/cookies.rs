//! The gateway's two cookies. The session cookie holds the session id,
//! signed with a key derived from `session.secret`. The CSRF cookie
//! (`authgate_csrf`) holds a random value; the token in forms is an HMAC of
//! it, so a token is good only with the browser's own cookie.
//!
//! The signed value is the cookie crate's format (the standard base64 of
//! HMAC-SHA256(value), then the value), so cookies stay valid across
//! versions; the check is done here with MACs keyed once at start-up,
//! because keying one costs as much as the check itself.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use cookie::{Cookie, Key, SameSite};
use hmac::{Hmac, Mac};
use http::HeaderMap;
use http::header::COOKIE;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::SessionConfig;
use crate::store::SessionId;

pub const CSRF_COOKIE: &str = "authgate_csrf";
/// A passkey sign-in's ceremony, signed, between its options and its
/// answer: there is no session yet to keep it in. Its path is the passkey
/// endpoints', so it never reaches the upstream.
pub const PASSKEY_COOKIE: &str = "authgate_passkey";
/// What the browser has to answer a passkey sign-in in.
const PASSKEY_SECS: u64 = 180;

/// Length of the base64 (with padding) of a SHA-256 MAC, which starts a
/// signed value.
const TAG_LEN: usize = 44;

pub struct Cookies {
    session_name: String,
    domain: Option<String>,
    secure: bool,
    /// Keyed once; each use works on a clone.
    signing: Hmac<Sha256>,
    csrf: Hmac<Sha256>,
    passkey: Hmac<Sha256>,
}

impl Cookies {
    /// `secure`: the scheme of `server.public_url` is https. The secret is
    /// at least 32 bytes (checked by config validation).
    pub fn new(config: &SessionConfig, secure: bool) -> Self {
        let master = Key::derive_from(config.secret.expose().as_bytes());
        // Separate keys per purpose, so a CSRF token can never pass as a
        // cookie signature or the other way round.
        let mut csrf_key = keyed(master.signing());
        csrf_key.update(b"authgate csrf v1");
        let mut passkey_key = keyed(master.signing());
        passkey_key.update(b"authgate passkey ceremony v1");
        Cookies {
            session_name: config.cookie_name.clone(),
            domain: config.cookie_domain.clone(),
            secure,
            signing: keyed(master.signing()),
            csrf: keyed(&csrf_key.finalize().into_bytes()),
            passkey: keyed(&passkey_key.finalize().into_bytes()),
        }
    }

    /// Names of the gateway's cookies: never sent upstream, never accepted
    /// from the upstream.
    pub fn own_names(&self) -> [&str; 2] {
        [&self.session_name, CSRF_COOKIE]
    }

    /// The verified session id from the `Cookie` header, if any.
    pub fn session_id(&self, headers: &HeaderMap) -> Option<SessionId> {
        let raw = find_cookie(headers, &self.session_name)?;
        let (tag, value) = raw.split_at_checked(TAG_LEN)?;
        let id = SessionId::parse(value)?;
        // Encoding the expected tag costs less than decoding the sent one,
        // and compares the whole text: a non-canonical encoding of the
        // right MAC is refused too.
        let mut mac = self.signing.clone();
        mac.update(value.as_bytes());
        let mut expected = [0u8; TAG_LEN];
        STANDARD
            .encode_slice(mac.finalize().into_bytes(), &mut expected)
            .ok()?;
        bool::from(expected.ct_eq(tag.as_bytes())).then_some(id)
    }

    pub fn set_session(&self, id: &SessionId) -> String {
        let mut mac = self.signing.clone();
        mac.update(id.as_str().as_bytes());
        let mut signed = STANDARD.encode(mac.finalize().into_bytes());
        signed.push_str(id.as_str());
        self.base(self.session_name.clone(), signed).to_string()
    }

    pub fn clear_session(&self) -> String {
        let mut cookie = self.base(self.session_name.clone(), String::new());
        cookie.make_removal();
        cookie.to_string()
    }

    /// The CSRF cookie value the browser holds, if it looks like ours.
    pub fn csrf_cookie(&self, headers: &HeaderMap) -> Option<String> {
        find_cookie(headers, CSRF_COOKIE)
            .filter(|v| SessionId::parse(v).is_some())
            .map(str::to_owned)
    }

    /// A fresh CSRF cookie value and its `Set-Cookie` line.
    pub fn new_csrf_cookie(&self) -> Option<(String, String)> {
        let value = SessionId::generate().ok()?.as_str().to_owned();
        let mut cookie = self.base(CSRF_COOKIE.to_owned(), value.clone());
        cookie.set_same_site(SameSite::Strict);
        Some((value, cookie.to_string()))
    }

    pub fn csrf_token(&self, cookie_value: &str) -> String {
        let mut mac = self.csrf.clone();
        mac.update(cookie_value.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// Constant-time check of a submitted token against the cookie.
    pub fn csrf_valid(&self, cookie_value: &str, token: &str) -> bool {
        let Ok(submitted) = URL_SAFE_NO_PAD.decode(token) else {
            return false;
        };
        let mut mac = self.csrf.clone();
        mac.update(cookie_value.as_bytes());
        mac.verify_slice(&submitted).is_ok()
    }

    /// The `Set-Cookie` of a passkey sign-in's ceremony `state`, good until
    /// `now` + 3 minutes, sent back only to `path` (the passkey endpoints).
    pub fn set_passkey_ceremony(&self, state: &str, now: u64, path: &str) -> String {
        let body = format!("{}.{}", now + PASSKEY_SECS, URL_SAFE_NO_PAD.encode(state));
        let value = format!("{}.{body}", self.passkey_tag(&body));
        let mut cookie = self.base(PASSKEY_COOKIE.to_owned(), value);
        cookie.set_path(path.to_owned());
        cookie.set_same_site(SameSite::Strict);
        cookie.set_max_age(cookie::time::Duration::seconds(PASSKEY_SECS as i64));
        cookie.to_string()
    }

    /// The ceremony state of a passkey sign-in, if the cookie is ours and
    /// not expired at `now`; with its tag, which names this one ceremony.
    pub fn passkey_ceremony(&self, headers: &HeaderMap, now: u64) -> Option<(String, String)> {
        let raw = find_cookie(headers, PASSKEY_COOKIE)?;
        let (tag, body) = raw.split_once('.')?;
        let expected = self.passkey_tag(body);
        if !bool::from(expected.as_bytes().ct_eq(tag.as_bytes())) {
            return None;
        }
        let (expires, state) = body.split_once('.')?;
        if expires.parse::<u64>().ok()? <= now {
            return None;
        }
        let state = String::from_utf8(URL_SAFE_NO_PAD.decode(state).ok()?).ok()?;
        Some((tag.to_owned(), state))
    }

    pub fn clear_passkey_ceremony(&self, path: &str) -> String {
        let mut cookie = self.base(PASSKEY_COOKIE.to_owned(), String::new());
        cookie.set_path(path.to_owned());
        cookie.make_removal();
        cookie.to_string()
    }

    fn passkey_tag(&self, body: &str) -> String {
        let mut mac = self.passkey.clone();
        mac.update(body.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    fn base(&self, name: String, value: String) -> Cookie<'static> {
        let mut cookie = Cookie::build((name, value))
            .http_only(true)
            .same_site(SameSite::Lax)
            .path("/")
            .secure(self.secure)
            .build();
        if let Some(domain) = &self.domain {
            cookie.set_domain(domain.clone());
        }
        cookie
    }
}

fn keyed(key: &[u8]) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length")
}

/// The first cookie named `name` across every `Cookie` header (HTTP/2
/// sends one header per cookie). Works on the header's bytes, split at
/// each `;` by `memchr`: only the value found has to be text.
fn find_cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    let value = headers.get_all(COOKIE).iter().find_map(|header| {
        let mut rest = header.as_bytes();
        loop {
            let end = memchr::memchr(b';', rest).unwrap_or(rest.len());
            let value = rest[..end]
                .trim_ascii_start()
                .strip_prefix(name.as_bytes())
                .and_then(|after| after.strip_prefix(b"="));
            if let Some(value) = value {
                return Some(value.trim_ascii_end());
            }
            rest = rest.get(end + 1..)?;
        }
    })?;
    std::str::from_utf8(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use cookie::CookieJar;
    use http::HeaderValue;
    use std::time::Duration;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn config(secret: &str, domain: Option<&str>) -> SessionConfig {
        SessionConfig {
            cookie_name: "authgate_session".into(),
            cookie_domain: domain.map(str::to_owned),
            secret: Secret::new(secret.into()),
            idle_timeout: Duration::from_secs(1800),
            lifetime: Duration::from_secs(43200),
        }
    }

    fn cookies(secure: bool, domain: Option<&str>) -> Cookies {
        Cookies::new(&config(SECRET, domain), secure)
    }

    fn header_from_set_cookie(set_cookie: &str) -> HeaderMap {
        let pair = set_cookie.split(';').next().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_str(&format!("other=1; {pair}")).unwrap(),
        );
        headers
    }

    #[test]
    fn a_passkey_ceremony_cookie_is_signed_scoped_and_expires() {
        let c = cookies(true, None);
        let path = "/_authgate/webauthn/passkey";
        let set = c.set_passkey_ceremony("{\"challenge\":\"x\"}", 1_000, path);
        assert!(set.contains("Path=/_authgate/webauthn/passkey"), "{set}");
        assert!(set.contains("HttpOnly") && set.contains("Secure"), "{set}");
        assert!(set.contains("SameSite=Strict"), "{set}");
        let headers = header_from_set_cookie(&set);
        let (tag, state) = c.passkey_ceremony(&headers, 1_100).unwrap();
        assert_eq!(state, "{\"challenge\":\"x\"}");
        assert!(!tag.is_empty());
        assert!(c.passkey_ceremony(&headers, 1_180).is_none(), "expired");
        let value = set.split(';').next().unwrap();
        let forged = value.replacen(".1180.", ".9999.", 1);
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_str(&forged).unwrap());
        assert!(c.passkey_ceremony(&headers, 1_100).is_none(), "{forged}");
    }

    #[test]
    fn session_cookie_round_trips_and_has_every_attribute() {
        let c = cookies(false, None);
        let id = SessionId::generate().unwrap();
        let set = c.set_session(&id);
        assert!(set.contains("HttpOnly"), "{set}");
        assert!(set.contains("SameSite=Lax"), "{set}");
        assert!(set.contains("Path=/"), "{set}");
        assert!(!set.contains("Secure"), "{set}");
        assert!(!set.contains("Domain"), "{set}");
        assert_eq!(c.session_id(&header_from_set_cookie(&set)), Some(id));
    }

    #[test]
    fn secure_and_domain_follow_the_config() {
        let set = cookies(true, Some("example.com")).set_session(&SessionId::generate().unwrap());
        assert!(set.contains("Secure"), "{set}");
        assert!(set.contains("Domain=example.com"), "{set}");
    }

    #[test]
    fn tampered_or_unsigned_session_cookies_are_ignored() {
        let c = cookies(false, None);
        let id = SessionId::generate().unwrap();
        let mut headers = HeaderMap::new();
        let raw = format!("authgate_session={}", id.as_str());
        headers.insert(COOKIE, HeaderValue::from_str(&raw).unwrap());
        assert_eq!(c.session_id(&headers), None, "unsigned id");
        let forged = Cookies::new(
            &config("another secret of at least 32 bytes!!", None),
            false,
        )
        .set_session(&id);
        assert_eq!(c.session_id(&header_from_set_cookie(&forged)), None);
        assert!(
            c.session_id(&header_from_set_cookie(&c.set_session(&id)))
                .is_some()
        );
    }

    #[test]
    fn csrf_token_binds_to_its_cookie() {
        let c = cookies(false, None);
        let (value, set) = c.new_csrf_cookie().unwrap();
        assert!(
            set.contains("SameSite=Strict") && set.contains("HttpOnly"),
            "{set}"
        );
        assert_eq!(
            c.csrf_cookie(&header_from_set_cookie(&set)),
            Some(value.clone())
        );
        let token = c.csrf_token(&value);
        assert!(c.csrf_valid(&value, &token));
        let (other, _) = c.new_csrf_cookie().unwrap();
        assert!(!c.csrf_valid(&other, &token));
        assert!(!c.csrf_valid(&value, ""));
        assert!(!c.csrf_valid(&value, "%%%"));
    }

    #[test]
    fn clearing_repeats_path_and_expires() {
        let clear = cookies(false, Some("example.com")).clear_session();
        assert!(
            clear.contains("Path=/") && clear.contains("Domain=example.com"),
            "{clear}"
        );
        assert!(clear.contains("Max-Age=0"), "{clear}");
    }

    fn header_with(raw: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = format!("authgate_session={raw}");
        headers.insert(COOKIE, HeaderValue::from_str(&value).unwrap());
        headers
    }

    /// Cookies issued before an upgrade (signed by the cookie crate's
    /// signed jar) keep working, and the other way round.
    #[test]
    fn the_signature_format_is_the_cookie_crates() {
        let c = cookies(false, None);
        let key = Key::derive_from(SECRET.as_bytes());
        let id = SessionId::generate().unwrap();

        let mut jar = CookieJar::new();
        jar.signed_mut(&key)
            .add(Cookie::new("authgate_session", id.as_str().to_owned()));
        let old = jar.get("authgate_session").unwrap().value().to_owned();
        assert_eq!(c.session_id(&header_with(&old)), Some(id.clone()));

        let new = c.set_session(&id);
        let pair = new.split(';').next().unwrap();
        let (_, raw) = pair.split_once('=').unwrap();
        assert_eq!(raw, old, "signing is deterministic and the same");
        let verified = CookieJar::new()
            .signed(&key)
            .verify(Cookie::new("authgate_session", raw.to_owned()))
            .unwrap();
        assert_eq!(verified.value(), id.as_str());
    }

    #[test]
    fn malformed_signatures_are_refused() {
        let c = cookies(false, None);
        let id = SessionId::generate().unwrap();
        let set = c.set_session(&id);
        let (_, raw) = set.split(';').next().unwrap().split_once('=').unwrap();
        let (tag, value) = raw.split_at(TAG_LEN);
        assert_eq!(c.session_id(&header_with(raw)), Some(id));
        // A last character that differs from the real one, whatever it is.
        let other = if value.ends_with('A') { 'B' } else { 'A' };
        for bad in [
            String::new(),
            tag.to_owned(),
            value.to_owned(),
            format!("{}{value}", &tag[..TAG_LEN - 1]),
            format!("{}=={value}", &tag[..TAG_LEN - 2]),
            format!("{}%{value}", &tag[..TAG_LEN - 1]),
            format!("{tag}{}{other}", &value[..value.len() - 1]),
            format!("{tag}{value}A"),
        ] {
            assert_eq!(c.session_id(&header_with(&bad)), None, "{bad}");
        }
    }

    /// Tokens in forms rendered before an upgrade stay valid.
    #[test]
    fn csrf_tokens_keep_their_derivation() {
        let c = cookies(false, None);
        let key = Key::derive_from(SECRET.as_bytes());
        let mut derive = Hmac::<Sha256>::new_from_slice(key.signing()).unwrap();
        derive.update(b"authgate csrf v1");
        let csrf_key = derive.finalize().into_bytes();
        let mut mac = Hmac::<Sha256>::new_from_slice(&csrf_key).unwrap();
        mac.update(b"cookie value");
        let token = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        assert_eq!(c.csrf_token("cookie value"), token);
        assert!(c.csrf_valid("cookie value", &token));
    }
}
