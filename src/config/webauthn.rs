//! `[webauthn]`: passkeys and security keys. Raw strings in, the relying
//! party (who the browser binds every answer to) out.

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Whether the authenticator must check that its holder is present and
/// verified (a PIN, a fingerprint), as WebAuthn's `userVerification`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserVerification {
    Preferred,
    Required,
    Discouraged,
}

impl UserVerification {
    pub fn as_str(self) -> &'static str {
        match self {
            UserVerification::Preferred => "preferred",
            UserVerification::Required => "required",
            UserVerification::Discouraged => "discouraged",
        }
    }
}

/// Which authenticators may register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attestation {
    /// Any: no attestation is asked for (WebAuthn's `none`).
    None,
    /// Only these models (AAGUIDs), as the authenticator states its model
    /// in a `direct` attestation.
    Aaguids(Vec<[u8; 16]>),
}

#[derive(Debug, Clone)]
pub struct WebauthnConfig {
    /// The relying party id: a host name that is, or is a parent of, the
    /// host of `server.public_url`.
    pub rp_id: String,
    pub rp_name: String,
    /// The origin of the pages: `server.public_url`'s.
    pub origin: url::Url,
    pub user_verification: UserVerification,
    pub attestation: Attestation,
    /// The login page also offers "Sign in with a passkey".
    pub passwordless: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawWebauthn {
    /// Absent: `session.cookie_domain`, else the host of `public_url`.
    pub rp_id: Option<String>,
    pub rp_name: String,
    pub user_verification: String,
    pub attestation: RawAttestation,
    pub passwordless: bool,
}

impl Default for RawWebauthn {
    fn default() -> Self {
        RawWebauthn {
            rp_id: None,
            rp_name: "authgate".into(),
            user_verification: "preferred".into(),
            attestation: RawAttestation::Name("none".into()),
            passwordless: false,
        }
    }
}

/// `attestation = "none"` or a list of AAGUIDs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RawAttestation {
    Name(String),
    Aaguids(Vec<String>),
}

type Result<T> = std::result::Result<T, ConfigError>;

/// `listed`: whether `auth.methods` lists `webauthn`; without it the
/// section must not ask for anything.
pub(super) fn webauthn(
    raw: &RawWebauthn,
    listed: bool,
    public_url: &url::Url,
    cookie_domain: Option<&str>,
) -> Result<Option<WebauthnConfig>> {
    if !listed {
        if raw.passwordless {
            return Err(ConfigError::at(
                "webauthn.passwordless",
                "needs auth.methods to list \"webauthn\"",
            ));
        }
        return Ok(None);
    }
    let host = public_url
        .host_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let rp_id = rp_id(raw.rp_id.as_deref(), cookie_domain, &host)?;
    let rp_name = raw.rp_name.trim();
    if rp_name.is_empty() {
        return Err(ConfigError::at(
            "webauthn.rp_name",
            "must not be empty: browsers show it when asking for a key",
        ));
    }
    Ok(Some(WebauthnConfig {
        rp_id,
        rp_name: rp_name.to_owned(),
        origin: public_url.clone(),
        user_verification: user_verification(&raw.user_verification)?,
        attestation: attestation(&raw.attestation)?,
        passwordless: raw.passwordless,
    }))
}

fn rp_id(configured: Option<&str>, cookie_domain: Option<&str>, host: &str) -> Result<String> {
    let (key, rp_id) = match (configured, cookie_domain) {
        (Some(id), _) => ("webauthn.rp_id", id),
        (None, Some(domain)) => ("session.cookie_domain", domain),
        (None, None) => ("server.public_url", host),
    };
    let rp_id = rp_id.trim().trim_start_matches('.').to_ascii_lowercase();
    if rp_id.parse::<std::net::IpAddr>().is_ok() || rp_id.starts_with('[') || rp_id.is_empty() {
        return Err(ConfigError::at(
            key,
            format!(
                "{rp_id:?} cannot be a WebAuthn relying party id (browsers refuse IP \
                 addresses): use a host name in server.public_url (localhost works for \
                 a test), or set webauthn.rp_id"
            ),
        ));
    }
    if host != rp_id && !host.ends_with(&format!(".{rp_id}")) {
        return Err(ConfigError::at(
            key,
            format!(
                "{rp_id:?} is not the host of server.public_url ({host:?}) or a parent \
                 domain of it: browsers would refuse every key"
            ),
        ));
    }
    Ok(rp_id)
}

fn user_verification(value: &str) -> Result<UserVerification> {
    match value {
        "preferred" => Ok(UserVerification::Preferred),
        "required" => Ok(UserVerification::Required),
        "discouraged" => Ok(UserVerification::Discouraged),
        other => Err(ConfigError::at(
            "webauthn.user_verification",
            format!("{other:?} is not \"preferred\", \"required\" or \"discouraged\""),
        )),
    }
}

fn attestation(raw: &RawAttestation) -> Result<Attestation> {
    let key = "webauthn.attestation";
    match raw {
        RawAttestation::Name(name) if name == "none" => Ok(Attestation::None),
        RawAttestation::Name(other) => Err(ConfigError::at(
            key,
            format!("{other:?} is not \"none\" or a list of authenticator AAGUIDs"),
        )),
        RawAttestation::Aaguids(list) if list.is_empty() => Err(ConfigError::at(
            key,
            "an empty list would refuse every key: write \"none\" to allow any",
        )),
        RawAttestation::Aaguids(list) => list
            .iter()
            .map(|text| {
                parse_aaguid(text).ok_or_else(|| {
                    ConfigError::at(
                        key,
                        format!("{text:?} is not an AAGUID (32 hex digits, dashes allowed)"),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()
            .map(Attestation::Aaguids),
    }
}

/// `cb69481e-8ff7-4039-93ec-0a2729a154a8` (dashes optional).
pub fn parse_aaguid(text: &str) -> Option<[u8; 16]> {
    let digits: Vec<u8> = text.bytes().filter(|b| *b != b'-').collect();
    if digits.len() != 32 {
        return None;
    }
    let mut aaguid = [0u8; 16];
    for (i, pair) in digits.chunks(2).enumerate() {
        let pair = std::str::from_utf8(pair).ok()?;
        aaguid[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(aaguid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> url::Url {
        url::Url::parse(text).unwrap()
    }

    fn key_error(result: Result<Option<WebauthnConfig>>) -> (String, String) {
        match result {
            Err(ConfigError::Key { key, problem }) => (key, problem),
            other => panic!("expected a key error, got {other:?}"),
        }
    }

    #[test]
    fn the_rp_id_defaults_to_the_cookie_domain_then_the_public_host() {
        let raw = RawWebauthn::default();
        let public = url("https://app.example.com/");
        let own = webauthn(&raw, true, &public, None).unwrap().unwrap();
        assert_eq!(own.rp_id, "app.example.com");
        assert_eq!(own.user_verification, UserVerification::Preferred);
        assert_eq!(own.attestation, Attestation::None);
        let shared = webauthn(&raw, true, &public, Some(".example.com"))
            .unwrap()
            .unwrap();
        assert_eq!(shared.rp_id, "example.com");
    }

    #[test]
    fn an_ip_address_or_a_foreign_domain_is_refused_naming_the_key() {
        let raw = RawWebauthn::default();
        let (key, problem) = key_error(webauthn(&raw, true, &url("http://127.0.0.1:8080/"), None));
        assert_eq!(key, "server.public_url");
        assert!(problem.contains("IP"), "{problem}");
        let raw = RawWebauthn {
            rp_id: Some("evil.example".into()),
            ..RawWebauthn::default()
        };
        let (key, _) = key_error(webauthn(&raw, true, &url("https://app.example.com/"), None));
        assert_eq!(key, "webauthn.rp_id");
        let raw = RawWebauthn {
            rp_id: Some("ample.com".into()),
            ..RawWebauthn::default()
        };
        let (key, _) = key_error(webauthn(&raw, true, &url("https://example.com/"), None));
        assert_eq!(key, "webauthn.rp_id", "a suffix is not a parent domain");
    }

    #[test]
    fn verification_and_attestation_are_checked() {
        let public = url("http://localhost:9000/");
        let raw = RawWebauthn {
            user_verification: "sometimes".into(),
            ..RawWebauthn::default()
        };
        assert_eq!(
            key_error(webauthn(&raw, true, &public, None)).0,
            "webauthn.user_verification"
        );
        let raw = RawWebauthn {
            attestation: RawAttestation::Aaguids(vec![
                "cb69481e-8ff7-4039-93ec-0a2729a154a8".into(),
            ]),
            ..RawWebauthn::default()
        };
        let config = webauthn(&raw, true, &public, None).unwrap().unwrap();
        assert_eq!(
            config.attestation,
            Attestation::Aaguids(vec![[
                0xcb, 0x69, 0x48, 0x1e, 0x8f, 0xf7, 0x40, 0x39, 0x93, 0xec, 0x0a, 0x27, 0x29, 0xa1,
                0x54, 0xa8
            ]])
        );
        let raw = RawWebauthn {
            attestation: RawAttestation::Aaguids(vec!["not-hex".into()]),
            ..RawWebauthn::default()
        };
        assert_eq!(
            key_error(webauthn(&raw, true, &public, None)).0,
            "webauthn.attestation"
        );
    }

    #[test]
    fn passwordless_needs_the_method() {
        let raw = RawWebauthn {
            passwordless: true,
            ..RawWebauthn::default()
        };
        let public = url("http://localhost:9000/");
        assert_eq!(
            key_error(webauthn(&raw, false, &public, None)).0,
            "webauthn.passwordless"
        );
        assert!(
            webauthn(&RawWebauthn::default(), false, &public, None)
                .unwrap()
                .is_none()
        );
    }
}
