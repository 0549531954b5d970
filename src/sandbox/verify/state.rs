//! The Verify side of the sandbox's memory: verifications, the sends that
//! count towards the rate limit, the fault switch and request counters. No
//! HTTP here, as in `../state.rs`.

use serde_json::{Value, json};

use super::super::codes;

/// A verification is deleted this long after it started (Twilio's 10 min).
pub const VERIFICATION_TTL: u64 = 600;
/// Wrong checks that end a verification.
pub const MAX_CHECK_ATTEMPTS: u32 = 5;
/// Starts allowed per recipient within `SEND_WINDOW`.
pub const MAX_SENDS: usize = 5;
pub const SEND_WINDOW: u64 = 600;
/// Kept for the page and the state JSON; a long demo must not grow forever.
const LOG_CAP: usize = 500;

/// What the Verify endpoints do instead of answering, so tests (and people)
/// can see the "provider unavailable" path.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Fault {
    #[default]
    None,
    /// Answer 500 with Twilio's envelope.
    Error,
    /// Answer nothing until the client gives up.
    Hang,
}

impl Fault {
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::Error => "error",
            Fault::Hang => "hang",
        }
    }

    pub fn parse(mode: &str) -> Option<Fault> {
        [Fault::None, Fault::Error, Fault::Hang]
            .into_iter()
            .find(|f| f.as_str() == mode)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Status {
    Pending,
    Approved,
    MaxAttemptsReached,
    Expired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::MaxAttemptsReached => "max_attempts_reached",
            Status::Expired => "expired",
        }
    }
}

#[derive(Clone)]
pub struct SendAttempt {
    pub sid: String,
    pub channel: String,
    pub at: u64,
}

#[derive(Clone)]
pub struct Verification {
    pub sid: String,
    pub to: String,
    /// The channel of the latest send.
    pub channel: String,
    /// The code of the latest send; a new start replaces it.
    pub code: String,
    /// Wrong checks so far.
    pub attempts: u32,
    pub sends: Vec<SendAttempt>,
    pub created: u64,
    pub updated: u64,
    /// Approved or out of attempts: deleted, as far as clients can tell.
    closed: Option<Status>,
}

impl Verification {
    pub fn expires_at(&self) -> u64 {
        self.created + VERIFICATION_TTL
    }

    /// Expiry is computed from the clock, never stored.
    pub fn status(&self, now: u64) -> Status {
        match self.closed {
            Some(status) => status,
            None if now >= self.expires_at() => Status::Expired,
            None => Status::Pending,
        }
    }

    /// What Twilio still knows about: anything else is deleted (404).
    fn is_live(&self, now: u64) -> bool {
        self.status(now) == Status::Pending
    }

    fn send(&mut self, channel: &str, now: u64) {
        self.code = six_digits();
        self.channel = channel.to_owned();
        self.updated = now;
        self.sends.push(SendAttempt {
            sid: format!("VL{}", codes::hex(&codes::random_bytes::<16>())),
            channel: channel.to_owned(),
            at: now,
        });
    }
}

pub enum StartOutcome {
    Started(Box<Verification>),
    RateLimited { retry_after: u64 },
}

/// Which verification a check names.
pub enum Target<'a> {
    To(&'a str),
    Sid(&'a str),
}

/// Which endpoint a request was for, counted before anything else
/// happens (wrong credentials and faults included).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Endpoint {
    Start,
    Check,
    Fetch,
    Other,
}

#[derive(Default)]
struct Requests {
    start: u64,
    check: u64,
    fetch: u64,
    other: u64,
}

#[derive(Default)]
pub struct VerifyState {
    verifications: Vec<Verification>,
    /// (recipient, when) of recent starts.
    sends: Vec<(String, u64)>,
    pub fault: Fault,
    requests: Requests,
}

fn six_digits() -> String {
    let n = u64::from_le_bytes(codes::random_bytes::<8>()) % 1_000_000;
    format!("{n:06}")
}

impl VerifyState {
    pub fn count(&mut self, endpoint: Endpoint) {
        let counter = match endpoint {
            Endpoint::Start => &mut self.requests.start,
            Endpoint::Check => &mut self.requests.check,
            Endpoint::Fetch => &mut self.requests.fetch,
            Endpoint::Other => &mut self.requests.other,
        };
        *counter += 1;
    }

    fn live_mut(&mut self, target: &Target<'_>, now: u64) -> Option<&mut Verification> {
        self.verifications.iter_mut().find(|v| {
            v.is_live(now)
                && match target {
                    Target::To(to) => v.to == *to,
                    Target::Sid(sid) => v.sid == *sid,
                }
        })
    }

    /// Sends a fresh code: into the recipient's pending verification if
    /// there is one (same sid, new code), else into a new one.
    pub fn start(&mut self, to: &str, channel: &str, now: u64) -> StartOutcome {
        self.sends.retain(|(_, at)| now < at + SEND_WINDOW);
        let recent: Vec<u64> = self
            .sends
            .iter()
            .filter(|(sent_to, _)| sent_to == to)
            .map(|(_, at)| *at)
            .collect();
        if recent.len() >= MAX_SENDS {
            let oldest = recent.iter().min().copied().unwrap_or(now);
            let retry_after = (oldest + SEND_WINDOW).saturating_sub(now).max(1);
            return StartOutcome::RateLimited { retry_after };
        }
        self.sends.push((to.to_owned(), now));
        if let Some(live) = self.live_mut(&Target::To(to), now) {
            live.send(channel, now);
            return StartOutcome::Started(Box::new(live.clone()));
        }
        let mut fresh = Verification {
            sid: format!("VE{}", codes::hex(&codes::random_bytes::<16>())),
            to: to.to_owned(),
            channel: channel.to_owned(),
            code: String::new(),
            attempts: 0,
            sends: Vec::new(),
            created: now,
            updated: now,
            closed: None,
        };
        fresh.send(channel, now);
        if self.verifications.len() >= LOG_CAP {
            self.verifications.remove(0);
        }
        self.verifications.push(fresh.clone());
        StartOutcome::Started(Box::new(fresh))
    }

    /// The verification after the check, or `None` when Twilio would have
    /// deleted it (never existed, approved, out of attempts, expired).
    pub fn check(&mut self, target: &Target<'_>, code: &str, now: u64) -> Option<Verification> {
        let live = self.live_mut(target, now)?;
        live.updated = now;
        if live.code == code {
            live.closed = Some(Status::Approved);
        } else {
            live.attempts += 1;
            if live.attempts >= MAX_CHECK_ATTEMPTS {
                live.closed = Some(Status::MaxAttemptsReached);
            }
        }
        Some(live.clone())
    }

    pub fn fetch(&self, sid: &str, now: u64) -> Option<&Verification> {
        self.verifications
            .iter()
            .find(|v| v.sid == sid && v.is_live(now))
    }

    /// The newest verification for `to`, whatever its status: the one
    /// that holds the last code sent there.
    pub fn last_for(&self, to: &str) -> Option<&Verification> {
        self.verifications.iter().rev().find(|v| v.to == to)
    }

    pub fn to_json(&self, now: u64) -> Value {
        let verifications: Vec<Value> = self
            .verifications
            .iter()
            .map(|v| verification_json(v, now))
            .collect();
        json!({
            "fault": self.fault.as_str(),
            "requests": {
                "start": self.requests.start,
                "check": self.requests.check,
                "fetch": self.requests.fetch,
                "other": self.requests.other,
            },
            "verifications": verifications,
        })
    }
}

fn verification_json(v: &Verification, now: u64) -> Value {
    json!({
        "sid": v.sid,
        "to": v.to,
        "channel": v.channel,
        "code": v.code,
        "status": v.status(now).as_str(),
        "attempts": v.attempts,
        "sends": v.sends.len(),
        "created_at": v.created,
        "updated_at": v.updated,
        "expires_at": v.expires_at(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000;
    const TO: &str = "+15551234567";

    fn started(state: &mut VerifyState, to: &str, now: u64) -> Verification {
        match state.start(to, "sms", now) {
            StartOutcome::Started(v) => *v,
            StartOutcome::RateLimited { .. } => panic!("rate limited"),
        }
    }

    #[test]
    fn a_restart_keeps_the_sid_and_replaces_the_code() {
        let mut state = VerifyState::default();
        let first = started(&mut state, TO, NOW);
        assert!(first.sid.starts_with("VE") && first.sid.len() == 34);
        assert_eq!(first.code.len(), 6);
        let codes: Vec<String> = (1..5)
            .map(|i| started(&mut state, TO, NOW + i).code)
            .collect();
        let again = state.last_for(TO).unwrap();
        assert_eq!(again.sid, first.sid);
        assert_eq!(again.sends.len(), 5);
        // Five random 6-digit codes all equal to the first: one in 10^24.
        assert!(codes.iter().any(|c| *c != first.code));
        assert_eq!(again.code, codes[3]);
        let current = again.code.clone();
        let checked = state
            .check(&Target::Sid(&first.sid), &current, NOW + 6)
            .unwrap();
        assert_eq!(checked.status(NOW + 6), Status::Approved);
        assert!(state.check(&Target::To(TO), &current, NOW + 7).is_none());
    }

    #[test]
    fn verifications_expire_after_ten_minutes() {
        let mut state = VerifyState::default();
        let v = started(&mut state, TO, NOW);
        assert!(state.fetch(&v.sid, NOW + VERIFICATION_TTL - 1).is_some());
        assert!(state.fetch(&v.sid, NOW + VERIFICATION_TTL).is_none());
        assert!(
            state
                .check(&Target::To(TO), &v.code, NOW + VERIFICATION_TTL)
                .is_none()
        );
        assert_eq!(
            state.last_for(TO).unwrap().status(NOW + VERIFICATION_TTL),
            Status::Expired
        );
        // A start after expiry is a new verification.
        let next = started(&mut state, TO, NOW + VERIFICATION_TTL);
        assert_ne!(next.sid, v.sid);
    }

    #[test]
    fn the_send_limit_slides() {
        let mut state = VerifyState::default();
        for i in 0..5 {
            started(&mut state, TO, NOW + i * 10);
        }
        match state.start(TO, "sms", NOW + 100) {
            StartOutcome::RateLimited { retry_after } => assert_eq!(retry_after, 500),
            StartOutcome::Started(_) => panic!("a sixth send went through"),
        }
        started(&mut state, "+15557654321", NOW + 100);
        started(&mut state, TO, NOW + SEND_WINDOW);
    }
}
