use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::model::{Device, Method, PushStatus};

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
    /// The browser and system that logged in, in short (the User-Agent
    /// parsed at the login); none for sessions stored before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<Device>,
    /// The second factor that confirmed the session.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "method_name")]
    pub second_factor_method: Option<Method>,
    /// The client's address at the login, after the trusted proxies (the
    /// address the audit trail logs); none for sessions stored before it
    /// was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<IpAddr>,
}

/// A method by its name; a name this version does not know reads as
/// none (the session stays usable, the page just does not name it).
mod method_name {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::model::Method;

    pub fn serialize<S: Serializer>(method: &Option<Method>, s: S) -> Result<S::Ok, S::Error> {
        match method {
            Some(method) => s.serialize_str(method.as_str()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Method>, D::Error> {
        let name: Option<String> = Option::deserialize(d)?;
        Ok(name.as_deref().and_then(Method::parse))
    }
}

/// A second-factor challenge; it belongs to exactly one session. Stored in
/// the layout of the flag-based struct it replaced (`ChallengeRecord`), so
/// sessions written before and after the change load in either version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ChallengeRecord", into = "ChallengeRecord")]
pub struct Challenge {
    pub method: Method,
    /// The provider's id for the user (the Authy id).
    pub subject: String,
    pub phase: Phase,
    pub wrong_codes: u32,
    pub expires_at: u64,
    /// When a code was last sent, at the start (Verify) or by "resend" in
    /// any phase: the resend limit counts from it. Not a phase of its own,
    /// since an Authy push stays answerable after an SMS was resent.
    pub last_code_sent: Option<u64>,
}

/// Where a challenge stands; `auth::state` moves it from one to the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// A push is out (Authy), answered by the webhook or the poller.
    AwaitingPush { push_id: String, status: PushStatus },
    /// The push or the first code could not be sent (provider down): the
    /// code form is offered, with "resend".
    SendFailed,
    /// The code form and nothing to wait for: a code was sent (Verify), the
    /// user's app shows one (TOTP), or the provider made no push.
    AwaitingCode,
    /// A TOTP enrollment: the new secret, sealed, kept only once the user
    /// proves their app has it.
    Enrolling { sealed_secret: String },
    /// A WebAuthn ceremony: the browser asks an authenticator. `state` is
    /// the ceremony as webauthn-rs serialised it (its challenge, the
    /// credentials allowed), kept here so that it is bound to this session
    /// and ends with the challenge; the answer takes it, so one challenge
    /// is answered once (`None`: taken, or none asked for yet).
    Ceremony {
        kind: CeremonyKind,
        state: Option<String>,
    },
}

/// What a WebAuthn ceremony does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CeremonyKind {
    /// A key or passkey confirms the login (the second step).
    Assertion,
    /// A new key or passkey is registered (enrollment, the security page).
    Registration,
}

impl Challenge {
    /// The push's status, if this challenge has a push.
    pub fn push_status(&self) -> Option<PushStatus> {
        match &self.phase {
            Phase::AwaitingPush { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A stored challenge that this version cannot read.
#[derive(Debug, thiserror::Error)]
pub enum UnreadableChallenge {
    #[error("unknown second-factor method {0:?}")]
    UnknownMethod(String),
    #[error(
        "a challenge has one phase: a push, a failed send, an enrollment or a WebAuthn ceremony"
    )]
    ContradictoryPhase,
}

/// `Challenge` as stored: the layout of the flag-based struct of before
/// (`the_old_stored_sessions_load_and_are_written_back_unchanged`).
#[derive(Serialize, Deserialize)]
struct ChallengeRecord {
    method: String,
    subject: String,
    push: Option<PushRecord>,
    /// The push or the first code could not be sent.
    push_failed: bool,
    wrong_codes: u32,
    expires_at: u64,
    last_code_sent: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    enrolling: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ceremony: Option<CeremonyRecord>,
}

#[derive(Serialize, Deserialize)]
struct CeremonyRecord {
    kind: CeremonyKind,
    state: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct PushRecord {
    id: String,
    status: PushStatus,
}

/// An unknown method or a contradictory set of flags makes the whole
/// session unreadable: the store skips it (the user logs in again) rather
/// than give it a fresh challenge with a fresh count of wrong codes.
impl TryFrom<ChallengeRecord> for Challenge {
    type Error = UnreadableChallenge;

    fn try_from(stored: ChallengeRecord) -> Result<Self, Self::Error> {
        let method = Method::parse(&stored.method)
            .ok_or(UnreadableChallenge::UnknownMethod(stored.method))?;
        let phase = match (
            stored.push,
            stored.push_failed,
            stored.enrolling,
            stored.ceremony,
        ) {
            (None, false, None, None) => Phase::AwaitingCode,
            (None, true, None, None) => Phase::SendFailed,
            (Some(push), false, None, None) => Phase::AwaitingPush {
                push_id: push.id,
                status: push.status,
            },
            (None, false, Some(sealed_secret), None) => Phase::Enrolling { sealed_secret },
            (None, false, None, Some(c)) => Phase::Ceremony {
                kind: c.kind,
                state: c.state,
            },
            _ => return Err(UnreadableChallenge::ContradictoryPhase),
        };
        Ok(Challenge {
            method,
            subject: stored.subject,
            phase,
            wrong_codes: stored.wrong_codes,
            expires_at: stored.expires_at,
            last_code_sent: stored.last_code_sent,
        })
    }
}

impl From<Challenge> for ChallengeRecord {
    fn from(challenge: Challenge) -> Self {
        let mut stored = ChallengeRecord {
            method: challenge.method.as_str().to_owned(),
            subject: challenge.subject,
            push: None,
            push_failed: false,
            wrong_codes: challenge.wrong_codes,
            expires_at: challenge.expires_at,
            last_code_sent: challenge.last_code_sent,
            enrolling: None,
            ceremony: None,
        };
        match challenge.phase {
            Phase::AwaitingPush { push_id, status } => {
                stored.push = Some(PushRecord {
                    id: push_id,
                    status,
                });
            }
            Phase::SendFailed => stored.push_failed = true,
            Phase::AwaitingCode => {}
            Phase::Enrolling { sealed_secret } => stored.enrolling = Some(sealed_secret),
            Phase::Ceremony { kind, state } => {
                stored.ceremony = Some(CeremonyRecord { kind, state });
            }
        }
        stored
    }
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
        assert_eq!(challenge.push_status(), Some(PushStatus::Approved));
    }

    /// `tests/data/sessions-v1.json`: one session per state, as the code of
    /// ba52bff (a method string and flags) stored them.
    const STORED_BEFORE_THE_PHASES: &str = include_str!("../../tests/data/sessions-v1.json");

    #[derive(Deserialize)]
    struct Case {
        name: String,
        stored: String,
    }

    /// What each fixture case must load as: (method, phase, wrong codes,
    /// code sent at); `None` for a session without a challenge.
    fn expected(name: &str) -> Option<(Method, Phase, u32, Option<u64>)> {
        let push = |status| Phase::AwaitingPush {
            push_id: "9a1c2d3e-0f4b-4c5d-8e6f-7a8b9c0d1e2f".into(),
            status,
        };
        let enrolling = || Phase::Enrolling {
            sealed_secret:
                "v1.3q2-7wEAAAB8Zk1JrY0c9hVbS1p4Xw2Tt6uGmLqjEoRzNaCdFi5sHyKlOeUvIgWxDnBMPQ".into(),
        };
        let (authy, verify, totp) = (Method::Authy, Method::Verify, Method::Totp);
        Some(match name {
            "two_factor confirmed" | "one_factor without challenge" => return None,
            "push pending" => (authy, push(PushStatus::Pending), 0, None),
            "push approved, not yet taken" => (authy, push(PushStatus::Approved), 0, None),
            "push denied" => (authy, push(PushStatus::Denied), 0, None),
            "push expired" => (authy, push(PushStatus::Expired), 0, None),
            "push pending, code resent" => (authy, push(PushStatus::Pending), 0, Some(1_000_020)),
            "push failed (provider down), no code sent" => (authy, Phase::SendFailed, 0, None),
            "push failed (provider down), code sent since" => {
                (authy, Phase::SendFailed, 0, Some(1_000_030))
            }
            "authy code path, no push" => (authy, Phase::AwaitingCode, 0, None),
            "verify code sent" => (verify, Phase::AwaitingCode, 0, Some(1_000_010)),
            "verify send failed (provider down)" => (verify, Phase::SendFailed, 0, None),
            "totp challenge" => (totp, Phase::AwaitingCode, 0, None),
            "totp enrollment in progress" => (totp, enrolling(), 0, None),
            "wrong codes counted" => (authy, push(PushStatus::Denied), 3, None),
            "enrollment with wrong codes" => (totp, enrolling(), 2, None),
            other => panic!("no expectation for the fixture case {other:?}"),
        })
    }

    #[test]
    fn the_old_stored_sessions_load_and_are_written_back_unchanged() {
        let cases: Vec<Case> = serde_json::from_str(STORED_BEFORE_THE_PHASES).unwrap();
        assert_eq!(cases.len(), 16, "a case went missing from the fixture");
        for case in cases {
            let record: SessionRecord = serde_json::from_str(&case.stored)
                .unwrap_or_else(|err| panic!("{}: {err}", case.name));
            let loaded = record
                .challenge
                .as_deref()
                .map(|c| (c.method, c.phase.clone(), c.wrong_codes, c.last_code_sent));
            assert_eq!(loaded, expected(&case.name), "{}", case.name);
            let written = serde_json::to_vec(&record).unwrap();
            assert_eq!(
                String::from_utf8(written).unwrap(),
                case.stored,
                "{}",
                case.name
            );
        }
    }

    /// Device and method are kept beside the old fields: a record with
    /// them comes back as it went, one without loads with none, and a
    /// method this version does not know reads as none, the session kept.
    #[test]
    fn device_and_method_are_kept_and_optional() {
        let with = r#"{"user":"a@example.com","level":"two_factor","auth_time":100,"second_factor_time":130,"created_at":100,"last_seen":160,"device":{"browser":"firefox","os":"linux"},"second_factor_method":"totp"}"#;
        let record: SessionRecord = serde_json::from_str(with).unwrap();
        assert_eq!(record.second_factor_method, Some(Method::Totp));
        assert_eq!(record.device.unwrap().label(), "Firefox on Linux");
        assert_eq!(serde_json::to_string(&record).unwrap(), with);
        let unknown = with.replace(r#""totp""#, r#""carrier-pigeon""#);
        let record: SessionRecord = serde_json::from_str(&unknown).unwrap();
        assert_eq!(record.second_factor_method, None);
        assert!(record.device.is_some());
    }

    #[test]
    fn a_challenge_this_version_cannot_read_makes_the_session_unreadable() {
        let session = |challenge: &str| {
            format!(
                r#"{{"user":"a@example.com","level":"one_factor","auth_time":1,"second_factor_time":null,"created_at":1,"last_seen":1,"challenge":{challenge}}}"#
            )
        };
        let unknown_method = r#"{"method":"carrier-pigeon","subject":"s","push":null,"push_failed":false,"wrong_codes":4,"expires_at":9,"last_code_sent":null}"#;
        let failed_push = r#"{"method":"authy","subject":"s","push":{"id":"p","status":"pending"},"push_failed":true,"wrong_codes":0,"expires_at":9,"last_code_sent":null}"#;
        let enrolling_push = r#"{"method":"totp","subject":"s","push":{"id":"p","status":"pending"},"push_failed":false,"wrong_codes":0,"expires_at":9,"last_code_sent":null,"enrolling":"v1.x"}"#;
        for challenge in [unknown_method, failed_push, enrolling_push] {
            let read = serde_json::from_str::<SessionRecord>(&session(challenge));
            assert!(read.is_err(), "{challenge}");
        }
        let readable = session(
            r#"{"method":"totp","subject":"s","push":null,"push_failed":false,"wrong_codes":0,"expires_at":9,"last_code_sent":null}"#,
        );
        assert!(serde_json::from_str::<SessionRecord>(&readable).is_ok());
    }
}
