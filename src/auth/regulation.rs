//! Brute-force regulation of password attempts.
//!
//! ```text
//!   open --failure--> counting(n) --n reaches max inside window--> banned
//!    ^                    |  window passes                           |
//!    +--------------------+------------------------------------------+ ban passes
//! ```
//!
//! Two counters: one per (email, client address), one per address. Unknown
//! emails count exactly like known ones, so a 429 tells nothing about which
//! accounts exist. A banned attempt is refused before argon2 runs.
//!
//! An attempt is counted before its password is checked: `reserve` checks
//! the ban and takes a place in both counters in one atomic step, so a
//! burst sent at once checks at most `max_failures` passwords per (email,
//! address) and `max_failures_per_address` per address. The `Attempt` it
//! returns is settled as a failure or a success; dropped unsettled (the
//! client hung up during argon2), it counts as a failure.
//!
//! The counters live in the store (`AttemptCounters`): in this process, or
//! on Redis where every replica shares them, so N replicas keep one limit.
//! When they cannot be reached no attempt is allowed.
//!
//! An IPv6 client is counted by its address masked to
//! `regulation.ipv6_prefix` bits, since one host usually holds a whole /64.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use crate::config::RegulationConfig;
use crate::store::{
    AttemptCounters, AttemptKeys, CounterLimits, MemoryAttemptCounters, Reservation, StoreError,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Banned {
    /// Seconds until another attempt is allowed.
    pub retry_after: u64,
}

/// Why no attempt was reserved.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("too many failed attempts; retry in {}s", .0.retry_after)]
    Banned(Banned),
    /// The shared counters cannot be reached: an attempt that cannot be
    /// counted is not allowed (fail closed), the login answers 503.
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Regulation {
    ipv6_prefix: u8,
    counters: Arc<dyn AttemptCounters>,
}

/// A password attempt counted before its password is checked. Settle it
/// with `failed` or `succeeded`; dropped unsettled, it counts as a failure.
#[must_use = "an attempt that is not settled counts as a failure"]
pub struct Attempt<'a> {
    regulation: &'a Regulation,
    /// None once settled.
    keys: Option<AttemptKeys>,
    reserved_at: u64,
}

impl Attempt<'_> {
    /// A wrong password or an unknown email.
    pub fn failed(mut self, now: u64) {
        if let Some(keys) = self.keys.take() {
            self.regulation.fail(&keys, now);
        }
    }

    /// A correct password clears that user's counter from that address;
    /// the per-address counter keeps counting other emails.
    pub fn succeeded(mut self) {
        if let Some(keys) = self.keys.take() {
            let settled = self.regulation.counters.succeed(&keys, self.reserved_at);
            // The place stays taken until its counter expires: too strict
            // for a while, never too lenient.
            if let Err(err) = settled {
                tracing::warn!(error = %err, "a successful login could not be settled");
            }
        }
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if let Some(keys) = self.keys.take() {
            self.regulation.fail(&keys, self.reserved_at);
        }
    }
}

impl Regulation {
    /// Counters held in this process: the limits hold per replica.
    pub fn new(config: &RegulationConfig) -> Self {
        let counters = MemoryAttemptCounters::new(CounterLimits::new(config));
        Regulation::with_counters(config, Arc::new(counters))
    }

    /// Counters kept by `counters` (shared on Redis by every replica); they
    /// carry the limits of `config`, this the IPv6 prefix.
    pub fn with_counters(config: &RegulationConfig, counters: Arc<dyn AttemptCounters>) -> Self {
        Regulation {
            ipv6_prefix: config.ipv6_prefix,
            counters,
        }
    }

    /// Takes a place for one password check in both counters, or Err
    /// while either is banned or has every place taken, or while the
    /// counters cannot be reached.
    pub fn reserve(&self, email: &str, addr: IpAddr, now: u64) -> Result<Attempt<'_>, Refusal> {
        let keys = self.keys(email, addr);
        match self.counters.reserve(&keys, now)? {
            Reservation::Taken => Ok(Attempt {
                regulation: self,
                keys: Some(keys),
                reserved_at: now,
            }),
            Reservation::Refused { retry_after } => Err(Refusal::Banned(Banned { retry_after })),
        }
    }

    /// Whether `email` from `addr` is inside a ban (not merely waiting for
    /// attempts in flight): the audit trail asks after a failed login. Not
    /// known when the counters cannot be reached: no ban is recorded then.
    pub fn is_banned(&self, email: &str, addr: IpAddr, now: u64) -> bool {
        self.counters
            .is_banned(&self.keys(email, addr), now)
            .unwrap_or_else(|err| {
                tracing::warn!(error = %err, "regulation counters unreachable");
                false
            })
    }

    fn fail(&self, keys: &AttemptKeys, now: u64) {
        // The place stays taken until its counter expires: the failure is
        // lost, the attempt still counted.
        if let Err(err) = self.counters.fail(keys, now) {
            tracing::warn!(error = %err, "a failed login could not be counted");
        }
    }

    /// Forgets counters whose window and ban are over, so memory stays bounded.
    pub fn sweep(&self, now: u64) {
        self.counters.sweep(now);
    }

    /// The counters of `email` from `addr`. An address never holds a
    /// space, so the user's key splits back into one address and one email.
    fn keys(&self, email: &str, addr: IpAddr) -> AttemptKeys {
        let address = client_key(addr, self.ipv6_prefix).to_string();
        AttemptKeys {
            user: format!("{address} {}", email.trim().to_lowercase()),
            address,
        }
    }
}

/// The address a client is counted under: IPv4 (and IPv4-mapped IPv6) as
/// is, other IPv6 masked to its first `ipv6_prefix` bits.
fn client_key(addr: IpAddr, ipv6_prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let host_bits = 128 - u32::from(ipv6_prefix.min(128));
                let mask = u128::MAX.checked_shl(host_bits).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RedisConfig;
    use crate::store::redis::testing::TestRedis;
    use crate::store::redis::{Link, RedisAttemptCounters};
    use std::net::Ipv4Addr;
    use std::sync::Barrier;
    use std::time::Duration;

    fn config(max: u32, per_address: u32, ipv6_prefix: u8) -> RegulationConfig {
        RegulationConfig {
            max_failures: max,
            max_failures_per_address: per_address,
            window: Duration::from_secs(600),
            ban: Duration::from_secs(900),
            ipv6_prefix,
        }
    }

    fn regulation_with_prefix(max: u32, per_address: u32, ipv6_prefix: u8) -> Regulation {
        Regulation::new(&config(max, per_address, ipv6_prefix))
    }

    /// A replica's regulation on the Redis of `redis`, with its own link.
    fn replica(redis: &RedisConfig, max: u32, per_address: u32) -> Regulation {
        let config = config(max, per_address, 64);
        let link = Link::new(redis).unwrap();
        let counters = RedisAttemptCounters::new(Arc::new(link), CounterLimits::new(&config));
        Regulation::with_counters(&config, Arc::new(counters))
    }

    fn regulation(max: u32, per_address: u32) -> Regulation {
        regulation_with_prefix(max, per_address, 64)
    }

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

    fn fail(r: &Regulation, email: &str, addr: IpAddr, now: u64) {
        r.reserve(email, addr, now).unwrap().failed(now);
    }

    /// The ban that refused the attempt; None when it was reserved (and
    /// dropped: a failure).
    fn banned(reserved: Result<Attempt<'_>, Refusal>) -> Option<Banned> {
        match reserved {
            Ok(_) => None,
            Err(Refusal::Banned(banned)) => Some(banned),
            Err(Refusal::Store(err)) => panic!("{err}"),
        }
    }

    fn v6(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn bans_after_max_failures_until_the_ban_passes() {
        let r = regulation(3, 100);
        for _ in 0..2 {
            fail(&r, "x@example.com", A, 1000);
        }
        fail(&r, "X@Example.com", A, 1000);
        assert_eq!(
            banned(r.reserve("x@example.com", A, 1001)),
            Some(Banned { retry_after: 899 })
        );
        assert!(r.reserve("x@example.com", B, 1001).is_ok(), "other address");
        assert!(r.reserve("y@example.com", A, 1001).is_ok(), "other email");
        assert!(r.reserve("x@example.com", A, 1900).is_ok(), "ban over");
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up() {
        let r = regulation(3, 100);
        fail(&r, "x@example.com", A, 0);
        fail(&r, "x@example.com", A, 1);
        fail(&r, "x@example.com", A, 700);
        assert!(r.reserve("x@example.com", A, 700).is_ok());
    }

    #[test]
    fn per_address_limit_counts_every_email() {
        let r = regulation(100, 4);
        for i in 0..4 {
            fail(&r, &format!("user{i}@example.com"), A, 50);
        }
        assert!(r.reserve("fresh@example.com", A, 51).is_err());
        assert!(r.reserve("fresh@example.com", B, 51).is_ok());
    }

    #[test]
    fn success_clears_the_user_counter() {
        let r = regulation(3, 100);
        fail(&r, "x@example.com", A, 0);
        fail(&r, "x@example.com", A, 0);
        r.reserve("x@example.com", A, 0).unwrap().succeeded();
        fail(&r, "x@example.com", A, 0);
        fail(&r, "x@example.com", A, 0);
        assert!(r.reserve("x@example.com", A, 0).is_ok());
    }

    #[test]
    fn sweep_keeps_bans_and_drops_stale_counters() {
        let r = regulation(1, 100);
        fail(&r, "x@example.com", A, 0);
        r.sweep(800);
        assert!(r.reserve("x@example.com", A, 800).is_err(), "still banned");
        r.sweep(2000);
        assert!(r.reserve("x@example.com", A, 2000).is_ok(), "ban over");
    }

    #[test]
    fn attempts_being_checked_take_the_places_until_settled() {
        let r = regulation(3, 100);
        let first = r.reserve("x@example.com", A, 0).unwrap();
        let second = r.reserve("x@example.com", A, 0).unwrap();
        let third = r.reserve("x@example.com", A, 0).unwrap();
        assert_eq!(
            banned(r.reserve("x@example.com", A, 0)),
            Some(Banned { retry_after: 1 }),
            "every place is taken"
        );
        third.succeeded();
        let again = r
            .reserve("x@example.com", A, 0)
            .expect("the success gave its place back");
        first.failed(0);
        second.failed(0);
        assert_eq!(
            banned(r.reserve("x@example.com", A, 0)),
            Some(Banned { retry_after: 1 }),
            "two failures and one attempt being checked"
        );
        again.succeeded();
        assert!(
            r.reserve("x@example.com", A, 0).is_ok(),
            "the success cleared the failures"
        );
    }

    #[test]
    fn a_dropped_attempt_counts_as_a_failure() {
        let r = regulation(2, 100);
        for _ in 0..2 {
            drop(r.reserve("x@example.com", A, 10).unwrap());
        }
        assert_eq!(
            banned(r.reserve("x@example.com", A, 11)),
            Some(Banned { retry_after: 899 })
        );
    }

    /// Every thread is released at once, thread `i` on replica `i` modulo
    /// their number; the ones that got a place hold it until all have
    /// asked, then fail.
    fn burst(
        replicas: &[&Regulation],
        threads: usize,
        email: impl Fn(usize) -> String + Sync,
    ) -> usize {
        let asked = Barrier::new(threads);
        let all_asked = Barrier::new(threads);
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|i| {
                    let (asked, all_asked, email) = (&asked, &all_asked, &email);
                    let r = replicas[i % replicas.len()];
                    scope.spawn(move || {
                        asked.wait();
                        let attempt = r.reserve(&email(i), A, 100);
                        all_asked.wait();
                        attempt.map(|a| a.failed(100)).is_ok()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .filter(|reserved| *reserved)
                .count()
        })
    }

    #[test]
    fn a_burst_from_many_threads_checks_at_most_max_per_user() {
        let r = regulation(5, 1000);
        assert_eq!(burst(&[&r], 64, |_| "x@example.com".into()), 5);
        assert!(r.reserve("x@example.com", A, 101).is_err(), "banned");
    }

    #[test]
    fn a_burst_from_many_threads_checks_at_most_max_per_address() {
        let r = regulation(1000, 7);
        assert_eq!(burst(&[&r], 64, |i| format!("user{i}@example.com")), 7);
        assert!(r.reserve("fresh@example.com", A, 101).is_err(), "banned");
    }

    #[test]
    fn ipv6_addresses_in_one_prefix_share_their_counters() {
        let r = regulation(2, 3);
        fail(&r, "x@example.com", v6("2001:db8:1:2::1"), 0);
        fail(&r, "x@example.com", v6("2001:db8:1:2:ffff::9"), 0);
        assert!(
            r.reserve("x@example.com", v6("2001:db8:1:2::77"), 0)
                .is_err(),
            "one /64 bans the email"
        );
        assert!(
            r.reserve("x@example.com", v6("2001:db8:1:3::1"), 0).is_ok(),
            "another /64"
        );
        fail(&r, "y@example.com", v6("2001:db8:1:2::3"), 0);
        assert!(
            r.reserve("z@example.com", v6("2001:db8:1:2::4"), 0)
                .is_err(),
            "three failures from one /64 ban the address"
        );
    }

    #[test]
    fn ipv6_prefix_128_counts_each_address() {
        let r = regulation_with_prefix(2, 100, 128);
        fail(&r, "x@example.com", v6("2001:db8::1"), 0);
        fail(&r, "x@example.com", v6("2001:db8::2"), 0);
        assert!(r.reserve("x@example.com", v6("2001:db8::1"), 0).is_ok());
        assert!(r.reserve("x@example.com", v6("2001:db8::3"), 0).is_ok());
    }

    #[test]
    fn ipv4_and_ipv4_mapped_count_as_one_address() {
        assert_eq!(client_key(v6("::ffff:10.0.0.1"), 64), A);
        assert_eq!(client_key(A, 1), A, "IPv4 is never masked");
        assert_eq!(client_key(v6("2001:db8::1"), 16), v6("2001::"));
        let r = regulation(2, 100);
        fail(&r, "x@example.com", A, 0);
        fail(&r, "x@example.com", v6("::ffff:10.0.0.1"), 0);
        assert!(r.reserve("x@example.com", A, 0).is_err());
        assert!(r.reserve("x@example.com", B, 0).is_ok(), "/32 for IPv4");
    }

    #[test]
    fn replicas_sharing_redis_share_one_limit() {
        let redis = TestRedis::start();
        let (a, b) = (
            replica(&redis.config("authgate:"), 4, 100),
            replica(&redis.config("authgate:"), 4, 100),
        );
        fail(&a, "x@example.com", A, 0);
        fail(&b, "x@example.com", A, 0);
        fail(&a, "x@example.com", A, 0);
        let last = b.reserve("x@example.com", A, 1).unwrap();
        assert_eq!(
            banned(a.reserve("x@example.com", A, 1)),
            Some(Banned { retry_after: 1 }),
            "the last place is being checked on the other replica"
        );
        last.failed(1);
        assert!(a.is_banned("x@example.com", A, 2), "b's failure banned");
        assert_eq!(
            banned(a.reserve("X@example.com", A, 2)),
            Some(Banned { retry_after: 899 })
        );
        assert!(a.reserve("y@example.com", A, 2).is_ok(), "other email");
    }

    #[test]
    fn a_burst_split_across_replicas_checks_at_most_max() {
        let redis = TestRedis::start();
        let a = replica(&redis.config("authgate:"), 5, 1000);
        let b = replica(&redis.config("authgate:"), 5, 1000);
        assert_eq!(burst(&[&a, &b], 100, |_| "x@example.com".into()), 5);
        assert!(b.is_banned("x@example.com", A, 101));
        let a = replica(&redis.config("other:"), 1000, 7);
        let b = replica(&redis.config("other:"), 1000, 7);
        let emails = |i| format!("user{i}@example.com");
        assert_eq!(burst(&[&a, &b], 100, emails), 7, "per address");
        assert!(a.is_banned("fresh@example.com", A, 101));
    }

    #[test]
    fn unreachable_counters_allow_no_attempt() {
        let gone = {
            let redis = TestRedis::start();
            redis.config("authgate:")
        };
        let r = replica(&gone, 3, 100);
        assert!(matches!(
            r.reserve("x@example.com", A, 0),
            Err(Refusal::Store(StoreError::Unavailable(_)))
        ));
        assert!(
            !r.is_banned("x@example.com", A, 0),
            "not known: no ban recorded"
        );
    }
}
