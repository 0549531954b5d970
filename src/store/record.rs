use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::model::PushStatus;

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
    /// The user's email as written in the users file; one copy shared by
    /// all of the user's live sessions (`LiveSessions`).
    pub user: Arc<str>,
    pub level: AuthLevel,
    /// When the password was checked.
    pub auth_time: u64,
    pub second_factor_time: Option<u64>,
    pub created_at: u64,
    /// Refreshed at most every 24th of the idle timeout, see `LiveSessions::touch`.
    pub last_seen: u64,
    /// The pending second factor of a `one_factor` session. Boxed: nearly
    /// every live session has none, and inline it took 112 of the 184
    /// bytes of each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenge: Option<Box<Challenge>>,
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
    /// A TOTP enrollment in progress: the new secret, sealed, kept only
    /// once the user proves their app has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrolling: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Push {
    pub id: String,
    pub status: PushStatus,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sessions as the store holds them (JSON in sled): a stored session
    /// must load after an upgrade and be written back unchanged, whatever
    /// the in-memory layout.
    #[test]
    fn the_stored_format_stays_the_same() {
        let confirmed = r#"{"user":"a@example.com","level":"two_factor","auth_time":100,"second_factor_time":130,"created_at":100,"last_seen":160}"#;
        let pending = r#"{"user":"b@example.com","level":"one_factor","auth_time":100,"second_factor_time":null,"created_at":100,"last_seen":100,"challenge":{"method":"authy","subject":"1234","push":{"id":"p-1","status":"approved"},"push_failed":false,"wrong_codes":2,"expires_at":400,"last_code_sent":null}}"#;
        for stored in [confirmed, pending] {
            let record: SessionRecord = serde_json::from_str(stored).unwrap();
            assert_eq!(serde_json::to_string(&record).unwrap(), stored);
        }
        let record: SessionRecord = serde_json::from_str(pending).unwrap();
        assert_eq!(&*record.user, "b@example.com");
        let challenge = record.challenge.unwrap();
        assert_eq!(
            (challenge.subject.as_str(), challenge.wrong_codes),
            ("1234", 2)
        );
        assert_eq!(challenge.push.unwrap().status, PushStatus::Approved);
    }
}
