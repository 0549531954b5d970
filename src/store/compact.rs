//! A session as the live map holds it. The map's table has up to twice
//! as many buckets as sessions (`session_map.rs`), so a bucket holds only
//! a pointer and the record behind it is as small as a record can be:
//! 56 bytes instead of an `Arc<SessionRecord>` of 104. The client's
//! address is 16 of them: an IPv4 address in place, an IPv6 one behind a
//! box (`ClientAddr`); a plain `Option<IpAddr>` (17 bytes) would have made
//! the record 64 and the map's slot a 96-byte heap block instead of an
//! 80-byte one. The stored form is `SessionRecord`.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use super::{AuthLevel, Challenge, SessionRecord};
use crate::model::{Device, Method};

/// One user's email, shared by all of the user's live sessions: one
/// pointer in each record; the sessions handed out share the inner
/// `Arc<str>`, so no request allocates a copy.
#[derive(Clone)]
pub(super) struct Email(Arc<Arc<str>>);

impl Email {
    /// The live sessions' records pointing at this email, plus the set.
    pub(super) fn holders(&self) -> usize {
        Arc::strong_count(&self.0)
    }
}

impl Borrow<str> for Email {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq for Email {
    fn eq(&self, other: &Self) -> bool {
        *self.0 == *other.0
    }
}

impl Eq for Email {}

impl Hash for Email {
    fn hash<H: Hasher>(&self, state: &mut H) {
        str::hash(&self.0, state)
    }
}

/// The known copy of `user`, made the known one if there was none.
fn shared(emails: &mut HashSet<Email>, user: Arc<str>) -> Email {
    if let Some(known) = emails.get(&*user) {
        return known.clone();
    }
    let email = Email(Arc::new(user));
    emails.insert(email.clone());
    email
}

/// A time as seconds after (or before) the session's `created_at`: every
/// time of a session lies within its lifetime of it, far inside ±68 years.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Offset(i32);

impl Offset {
    /// Stands for `None`; no time maps to it.
    const NONE: Offset = Offset(i32::MIN);

    fn of(time: u64, base: u64) -> Option<Offset> {
        let offset = i32::try_from(i128::from(time) - i128::from(base)).ok()?;
        (offset != i32::MIN).then_some(Offset(offset))
    }

    fn of_optional(time: Option<u64>, base: u64) -> Option<Offset> {
        time.map_or(Some(Offset::NONE), |time| Offset::of(time, base))
    }

    fn time(self, base: u64) -> u64 {
        // Made by `of` from a u64, so the sum is one again.
        u64::try_from(i128::from(base) + i128::from(self.0)).unwrap_or(u64::MAX)
    }

    fn optional_time(self, base: u64) -> Option<u64> {
        (self != Offset::NONE).then(|| self.time(base))
    }
}

/// The client's address at the login in 16 bytes: an IPv4 address in
/// place, so a confirmed IPv4 session is read without an allocation; the
/// rarer IPv6 one behind a box (read by a 16-byte copy, allocated only
/// when the record is made).
enum ClientAddr {
    Unknown,
    V4(Ipv4Addr),
    V6(Box<Ipv6Addr>),
}

impl ClientAddr {
    fn of(client: Option<IpAddr>) -> Self {
        match client {
            None => ClientAddr::Unknown,
            Some(IpAddr::V4(v4)) => ClientAddr::V4(v4),
            Some(IpAddr::V6(v6)) => ClientAddr::V6(Box::new(v6)),
        }
    }

    fn addr(&self) -> Option<IpAddr> {
        match self {
            ClientAddr::Unknown => None,
            ClientAddr::V4(v4) => Some(IpAddr::V4(*v4)),
            ClientAddr::V6(v6) => Some(IpAddr::V6(**v6)),
        }
    }
}

/// A session whose times lie more than 68 years from its `created_at`:
/// no session this gateway makes, so only a damaged or hand-made record.
#[derive(Debug, thiserror::Error)]
#[error("a session time lies more than 68 years from the session's start")]
pub(super) struct TimesOutOfRange;

/// `SessionRecord` in 56 bytes: the email shared, the times as offsets
/// from `created_at`, the address as a `ClientAddr`.
pub(super) struct CompactRecord {
    user: Email,
    challenge: Option<Box<Challenge>>,
    created_at: u64,
    auth_time: Offset,
    last_seen: Offset,
    second_factor_time: Offset,
    level: AuthLevel,
    /// Both in the padding the fields above leave.
    device: Option<Device>,
    second_factor_method: Option<Method>,
    client: ClientAddr,
}

impl CompactRecord {
    /// Takes the record apart; its email becomes the shared copy.
    pub(super) fn new(
        record: SessionRecord,
        emails: &mut HashSet<Email>,
    ) -> Result<Self, TimesOutOfRange> {
        let base = record.created_at;
        let offset = |time| Offset::of(time, base).ok_or(TimesOutOfRange);
        Ok(CompactRecord {
            auth_time: offset(record.auth_time)?,
            last_seen: offset(record.last_seen)?,
            second_factor_time: Offset::of_optional(record.second_factor_time, base)
                .ok_or(TimesOutOfRange)?,
            user: shared(emails, record.user),
            challenge: record.challenge,
            created_at: base,
            level: record.level,
            device: record.device,
            second_factor_method: record.second_factor_method,
            client: ClientAddr::of(record.client),
        })
    }

    /// The session as the rest of the gateway reads it. Allocates only for
    /// a pending challenge; a confirmed session costs one reference count
    /// (the address is copied out, IPv4 or IPv6).
    pub(super) fn record(&self) -> SessionRecord {
        SessionRecord {
            user: Arc::clone(&self.user.0),
            level: self.level,
            auth_time: self.auth_time.time(self.created_at),
            second_factor_time: self.second_factor_time.optional_time(self.created_at),
            created_at: self.created_at,
            last_seen: self.last_seen(),
            challenge: self.challenge.clone(),
            device: self.device,
            second_factor_method: self.second_factor_method,
            client: self.client.addr(),
        }
    }

    /// The user's email, the copy all their sessions share.
    pub(super) fn user(&self) -> &Arc<str> {
        &self.user.0
    }

    pub(super) fn last_seen(&self) -> u64 {
        self.last_seen.time(self.created_at)
    }

    /// Sets `last_seen` in place; false (and unchanged) when `now` is out
    /// of range, which only a clock 68 years off makes.
    pub(super) fn set_last_seen(&mut self, now: u64) -> bool {
        let Some(offset) = Offset::of(now, self.created_at) else {
            return false;
        };
        self.last_seen = offset;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(created_at: u64) -> SessionRecord {
        SessionRecord {
            user: "a@example.com".into(),
            level: AuthLevel::TwoFactor,
            auth_time: created_at,
            second_factor_time: Some(created_at + 30),
            created_at,
            last_seen: created_at + 7_200,
            challenge: None,
            device: None,
            second_factor_method: None,
            client: None,
        }
    }

    #[test]
    fn a_record_is_fifty_six_bytes() {
        assert_eq!(std::mem::size_of::<ClientAddr>(), 16);
        assert_eq!(std::mem::size_of::<CompactRecord>(), 56);
    }

    #[test]
    fn every_time_comes_back_as_it_went_in() {
        let mut emails = HashSet::new();
        let mut cases = vec![record(0), record(100), record(1_765_000_000)];
        cases.push(SessionRecord {
            second_factor_time: None,
            ..record(u64::MAX - 10_000)
        });
        cases.push(SessionRecord {
            auth_time: 5,
            ..record(1_000)
        });
        for case in cases {
            let compact = CompactRecord::new(case.clone(), &mut emails).unwrap();
            assert_eq!(compact.record(), case);
        }
        assert_eq!(emails.len(), 1, "one copy of the email");
    }

    #[test]
    fn device_and_method_come_back() {
        let mut emails = HashSet::new();
        let agent = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
        let full = SessionRecord {
            device: Some(Device::of(agent)),
            second_factor_method: Some(Method::Verify),
            ..record(100)
        };
        let compact = CompactRecord::new(full.clone(), &mut emails).unwrap();
        assert_eq!(compact.record(), full);
    }

    #[test]
    fn the_client_address_comes_back_as_it_went_in() {
        let mut emails = HashSet::new();
        let addresses: [Option<IpAddr>; 4] = [
            None,
            Some("203.0.113.9".parse().unwrap()),
            Some("2001:db8::7".parse().unwrap()),
            Some("::ffff:192.0.2.1".parse().unwrap()),
        ];
        for client in addresses {
            let with = SessionRecord {
                client,
                ..record(100)
            };
            let compact = CompactRecord::new(with.clone(), &mut emails).unwrap();
            assert_eq!(compact.record(), with);
        }
    }

    #[test]
    fn times_that_do_not_fit_are_refused_not_changed() {
        let mut emails = HashSet::new();
        let far = SessionRecord {
            last_seen: 100 + (1 << 31),
            ..record(100)
        };
        assert!(CompactRecord::new(far, &mut emails).is_err());
        let before = SessionRecord {
            second_factor_time: Some(0),
            ..record(1 << 40)
        };
        assert!(CompactRecord::new(before, &mut emails).is_err());
        let mut compact = CompactRecord::new(record(100), &mut emails).unwrap();
        assert!(!compact.set_last_seen(u64::MAX));
        assert_eq!(compact.last_seen(), 7_300);
        assert!(compact.set_last_seen(9_000));
        assert_eq!(compact.record().last_seen, 9_000);
    }
}
