//! A user as the users file (or sign-up) describes them, and the identity
//! headers that say who they are to the upstream.

use std::sync::OnceLock;

use http::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

/// One `[[user]]` entry of the users file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub email: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub country_code: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub phone: String,
    /// argon2id PHC string.
    pub password: String,
    #[serde(default)]
    pub groups: Vec<String>,
    /// `authy`, `totp` or `verify`: the one method this user confirms with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub second_factor: Option<String>,
    /// When an admin last ran `authgate user reset-2fa` (Unix seconds): a
    /// TOTP enrolled before it no longer counts, and the user may enroll
    /// again at the next login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub second_factor_reset: Option<u64>,
    /// Built from the fields above on first use. An entry never changes
    /// once loaded (a reload makes new ones), so they never go stale.
    #[serde(skip)]
    pub identity: IdentityHeaders,
}

/// The identity headers, in the order DESIGN.md lists them. Who the user
/// is belongs here; the proxy layer sets them and strips client copies.
pub static IDENTITY_HEADERS: [HeaderName; 4] = [
    HeaderName::from_static("remote-user"),
    HeaderName::from_static("remote-name"),
    HeaderName::from_static("remote-email"),
    HeaderName::from_static("remote-groups"),
];

impl User {
    /// The identity headers with this user's values: user and email are the
    /// email, groups comma-separated. A field that cannot be a header
    /// value is sent empty rather than dropped, so no client copy can stand
    /// in for it. Built once; a forward-auth answer clones the whole map.
    pub fn identity_headers(&self) -> &HeaderMap {
        self.identity.0.get_or_init(|| {
            let value =
                |text: String| HeaderValue::try_from(text).unwrap_or(HeaderValue::from_static(""));
            let email = value(self.email.clone());
            let values = [
                email.clone(),
                value(self.name.clone()),
                email,
                value(self.groups.join(",")),
            ];
            let mut headers = HeaderMap::with_capacity(IDENTITY_HEADERS.len());
            for (name, value) in IDENTITY_HEADERS.iter().zip(values) {
                headers.insert(name, value);
            }
            headers
        })
    }
}

/// [`User::identity_headers`], once built: derived data, so it plays no
/// part in comparing, printing or copying an entry.
#[derive(Default)]
pub struct IdentityHeaders(OnceLock<HeaderMap>);

impl Clone for IdentityHeaders {
    fn clone(&self) -> Self {
        IdentityHeaders::default()
    }
}

impl PartialEq for IdentityHeaders {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for IdentityHeaders {}

impl std::fmt::Debug for IdentityHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("..")
    }
}
