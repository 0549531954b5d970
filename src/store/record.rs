use serde::{Deserialize, Serialize};

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
}
