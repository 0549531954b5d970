//! The users file: parsing and editing it (`file.rs`), and the live
//! directory the server reads, swapped atomically when the file changes
//! (`watch.rs`).

mod file;
mod watch;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use dashmap::DashMap;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

pub use file::{UsersFile, UsersFileError};
pub use watch::watch_users_file;

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
    /// TOTP enrolled before it no longer counts, and the user may enrol
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

/// Looks users up by email; the auth flow depends on this, not on the file.
pub trait UserDirectory: Send + Sync {
    /// Case-insensitive lookup by email.
    fn find(&self, email: &str) -> Option<Arc<User>>;
    /// Adds a sign-up user (kept beside the users file); false when the
    /// directory takes none.
    fn add_signed_up(&self, _user: User) -> bool {
        false
    }
}

/// The users file plus the sign-up users from the store. The users file
/// wins when both have an email.
pub struct Directory {
    file: Arc<LiveUsers>,
    signed_up: DashMap<String, Arc<User>>,
}

impl Directory {
    pub fn new(file: Arc<LiveUsers>, signed_up: Vec<User>) -> Self {
        let directory = Directory {
            file,
            signed_up: DashMap::new(),
        };
        for user in signed_up {
            directory.add_signed_up(user);
        }
        directory
    }
}

impl UserDirectory for Directory {
    fn find(&self, email: &str) -> Option<Arc<User>> {
        self.file.find(email).or_else(|| {
            self.signed_up
                .get(&email.to_lowercase())
                .map(|u| u.value().clone())
        })
    }

    fn add_signed_up(&self, user: User) -> bool {
        self.signed_up
            .insert(user.email.to_lowercase(), Arc::new(user));
        true
    }
}

/// The users currently loaded, replaced as a whole on reload so that a
/// request never sees half a file.
#[derive(Default)]
pub struct LiveUsers {
    by_email: ArcSwap<HashMap<String, Arc<User>>>,
}

impl LiveUsers {
    pub fn new(users: Vec<User>) -> Self {
        let live = LiveUsers::default();
        live.replace(users);
        live
    }

    pub fn replace(&self, users: Vec<User>) {
        let map = users
            .into_iter()
            .map(|u| (u.email.to_lowercase(), Arc::new(u)))
            .collect();
        self.by_email.store(Arc::new(map));
    }

    pub fn len(&self) -> usize {
        self.by_email.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl UserDirectory for LiveUsers {
    fn find(&self, email: &str) -> Option<Arc<User>> {
        let map = self.by_email.load();
        match map.get(email) {
            Some(user) => Some(user.clone()),
            None => map.get(&email.to_lowercase()).cloned(),
        }
    }
}
