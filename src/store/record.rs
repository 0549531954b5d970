use serde::{Deserialize, Serialize};

use crate::factor::PushStatus;

/// How far a session has come in the login flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthLevel {
    OneFactor,
    TwoFactor,
}

/// SHA-256 of the session id: the store never holds an id that would work
/// as a cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionKey(pub [u8; 32]);

/// One session as stored. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The user's email as written in the users file.
    pub user: String,
    pub level: AuthLevel,
    /// When the password was checked.
    pub auth_time: u64,
    pub second_factor_time: Option<u64>,
    pub created_at: u64,
    /// Refreshed at most about once a minute, see `LiveSessions::touch`.
    pub last_seen: u64,
    /// The pending second factor of a `one_factor` session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenge: Option<Challenge>,
}

/// A second-factor challenge; it belongs to exactly one session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    /// The provider's method name (`authy`).
    pub method: String,
    /// The provider's id for the user (the Authy id).
    pub subject: String,
    pub push: Option<Push>,
    /// True when the push could not be sent (provider down).
    pub push_failed: bool,
    pub wrong_codes: u32,
    pub expires_at: u64,
    pub last_code_sent: Option<u64>,
    /// A TOTP enrolment in progress: the new secret, sealed, kept only
    /// once the user proves their app has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrolling: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Push {
    pub id: String,
    pub status: PushStatus,
}
