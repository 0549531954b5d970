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
//! the ban and takes a place in both counters under one lock, so a burst
//! sent at once checks at most `max_failures` passwords per (email,
//! address) and `max_failures_per_address` per address. The `Attempt` it
//! returns is settled as a failure or a success; dropped unsettled (the
//! client hung up during argon2), it counts as a failure.
//!
//! An IPv6 client is counted by its address masked to
//! `regulation.ipv6_prefix` bits, since one host usually holds a whole /64.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, MutexGuard};

use crate::config::RegulationConfig;

/// The wait asked of an attempt refused while the counter's places are
/// taken by attempts still being checked: they end within a second.
const IN_FLIGHT_RETRY_SECS: u64 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Banned {
    /// Seconds until another attempt is allowed.
    pub retry_after: u64,
}

#[derive(Debug, Clone, Copy)]
struct Counter {
    window_start: u64,
    failures: u32,
    /// Attempts reserved and not settled yet: they count toward the limit.
    in_flight: u32,
    banned_until: u64,
}

#[derive(Clone, Copy)]
struct Limits {
    max: u32,
    window: u64,
    ban: u64,
}

impl Counter {
    fn new(now: u64) -> Self {
        Counter {
            window_start: now,
            failures: 0,
            in_flight: 0,
            banned_until: 0,
        }
    }

    /// Forgets the failures of a window that has passed.
    fn roll(&mut self, limits: Limits, now: u64) {
        if now.saturating_sub(self.window_start) >= limits.window {
            self.window_start = now;
            self.failures = 0;
        }
    }

    fn refusal(&mut self, limits: Limits, now: u64) -> Option<Banned> {
        if self.banned_until > now {
            return Some(Banned {
                retry_after: self.banned_until - now,
            });
        }
        self.roll(limits, now);
        (self.failures + self.in_flight >= limits.max).then_some(Banned {
            retry_after: IN_FLIGHT_RETRY_SECS,
        })
    }

    fn fail(&mut self, limits: Limits, now: u64) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.roll(limits, now);
        self.failures += 1;
        if self.failures >= limits.max {
            self.banned_until = now + limits.ban;
            self.failures = 0;
            self.window_start = now;
        }
    }
}

/// Failure counters for one kind of key.
struct Counters<K> {
    limits: Limits,
    by_key: HashMap<K, Counter>,
}

impl<K: Hash + Eq + Clone> Counters<K> {
    fn new(limits: Limits) -> Self {
        Counters {
            limits,
            by_key: HashMap::new(),
        }
    }

    fn bans(&self, key: &K, now: u64) -> bool {
        self.by_key.get(key).is_some_and(|c| c.banned_until > now)
    }

    fn refusal(&mut self, key: &K, now: u64) -> Option<Banned> {
        let limits = self.limits;
        self.by_key.get_mut(key)?.refusal(limits, now)
    }

    fn reserve(&mut self, key: &K, now: u64) {
        let counter = self
            .by_key
            .entry(key.clone())
            .or_insert_with(|| Counter::new(now));
        counter.in_flight += 1;
    }

    fn fail(&mut self, key: &K, now: u64) {
        let limits = self.limits;
        self.by_key
            .entry(key.clone())
            .or_insert_with(|| Counter::new(now))
            .fail(limits, now);
    }

    /// Gives the attempt's place back, failures untouched.
    fn release(&mut self, key: &K) {
        if let Some(counter) = self.by_key.get_mut(key) {
            counter.in_flight = counter.in_flight.saturating_sub(1);
        }
    }

    /// Gives the attempt's place back and clears the failures. The counter
    /// cannot be banned here: a ban needs `max` failures, and this attempt
    /// held one of the `max` places.
    fn clear(&mut self, key: &K) {
        let Some(counter) = self.by_key.get_mut(key) else {
            return;
        };
        counter.in_flight = counter.in_flight.saturating_sub(1);
        counter.failures = 0;
        if counter.in_flight == 0 {
            self.by_key.remove(key);
        }
    }

    fn sweep(&mut self, now: u64) {
        let window = self.limits.window;
        self.by_key.retain(|_, c| {
            c.in_flight > 0 || c.banned_until > now || now.saturating_sub(c.window_start) < window
        });
    }
}

/// The counters of both kinds, under one lock so that an attempt is
/// checked and reserved in both at once.
struct Tables {
    per_user: Counters<UserKey>,
    per_address: Counters<IpAddr>,
}

type UserKey = (String, IpAddr);

pub struct Regulation {
    ipv6_prefix: u8,
    tables: Mutex<Tables>,
}

/// The counters an attempt holds a place in.
struct Keys {
    user: UserKey,
    address: IpAddr,
}

/// A password attempt counted before its password is checked. Settle it
/// with `failed` or `succeeded`; dropped unsettled, it counts as a failure.
#[must_use = "an attempt that is not settled counts as a failure"]
pub struct Attempt<'a> {
    regulation: &'a Regulation,
    /// None once settled.
    keys: Option<Keys>,
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
            let mut tables = self.regulation.lock();
            tables.per_address.release(&keys.address);
            tables.per_user.clear(&keys.user);
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
    pub fn new(config: &RegulationConfig) -> Self {
        let limits = |max| Limits {
            max,
            window: config.window.as_secs(),
            ban: config.ban.as_secs(),
        };
        Regulation {
            ipv6_prefix: config.ipv6_prefix,
            tables: Mutex::new(Tables {
                per_user: Counters::new(limits(config.max_failures)),
                per_address: Counters::new(limits(config.max_failures_per_address)),
            }),
        }
    }

    /// Takes a place for one password check in both counters, or Err
    /// while either is banned or has every place taken.
    pub fn reserve(&self, email: &str, addr: IpAddr, now: u64) -> Result<Attempt<'_>, Banned> {
        let address = client_key(addr, self.ipv6_prefix);
        let keys = Keys {
            user: (email.trim().to_lowercase(), address),
            address,
        };
        {
            let mut tables = self.lock();
            if let Some(banned) = tables.per_address.refusal(&keys.address, now) {
                return Err(banned);
            }
            if let Some(banned) = tables.per_user.refusal(&keys.user, now) {
                return Err(banned);
            }
            tables.per_address.reserve(&keys.address, now);
            tables.per_user.reserve(&keys.user, now);
        }
        Ok(Attempt {
            regulation: self,
            keys: Some(keys),
            reserved_at: now,
        })
    }

    /// Whether `email` from `addr` is inside a ban (not merely waiting for
    /// attempts in flight): the audit trail asks after a failed login.
    pub fn is_banned(&self, email: &str, addr: IpAddr, now: u64) -> bool {
        let address = client_key(addr, self.ipv6_prefix);
        let user = (email.trim().to_lowercase(), address);
        let tables = self.lock();
        tables.per_address.bans(&address, now) || tables.per_user.bans(&user, now)
    }

    fn fail(&self, keys: &Keys, now: u64) {
        let mut tables = self.lock();
        tables.per_address.fail(&keys.address, now);
        tables.per_user.fail(&keys.user, now);
    }

    /// Forgets counters whose window and ban are over, so memory stays bounded.
    pub fn sweep(&self, now: u64) {
        let mut tables = self.lock();
        tables.per_user.sweep(now);
        tables.per_address.sweep(now);
    }

    fn lock(&self) -> MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
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
    use std::net::Ipv4Addr;
    use std::sync::Barrier;
    use std::time::Duration;

    fn regulation_with_prefix(max: u32, per_address: u32, ipv6_prefix: u8) -> Regulation {
        Regulation::new(&RegulationConfig {
            max_failures: max,
            max_failures_per_address: per_address,
            window: Duration::from_secs(600),
            ban: Duration::from_secs(900),
            ipv6_prefix,
        })
    }

    fn regulation(max: u32, per_address: u32) -> Regulation {
        regulation_with_prefix(max, per_address, 64)
    }

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

    fn fail(r: &Regulation, email: &str, addr: IpAddr, now: u64) {
        r.reserve(email, addr, now).unwrap().failed(now);
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
            r.reserve("x@example.com", A, 1001).err(),
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
        assert!(r.lock().per_user.by_key.is_empty());
    }

    #[test]
    fn attempts_being_checked_take_the_places_until_settled() {
        let r = regulation(3, 100);
        let first = r.reserve("x@example.com", A, 0).unwrap();
        let second = r.reserve("x@example.com", A, 0).unwrap();
        let third = r.reserve("x@example.com", A, 0).unwrap();
        assert_eq!(
            r.reserve("x@example.com", A, 0).err(),
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
            r.reserve("x@example.com", A, 0).err(),
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
            r.reserve("x@example.com", A, 11).err(),
            Some(Banned { retry_after: 899 })
        );
    }

    /// Every thread is released at once; the ones that got a place hold it
    /// until all have asked, then fail.
    fn burst(r: &Regulation, threads: usize, email: impl Fn(usize) -> String + Sync) -> usize {
        let asked = Barrier::new(threads);
        let all_asked = Barrier::new(threads);
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|i| {
                    let (asked, all_asked, email) = (&asked, &all_asked, &email);
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
        assert_eq!(burst(&r, 64, |_| "x@example.com".into()), 5);
        assert!(r.reserve("x@example.com", A, 101).is_err(), "banned");
    }

    #[test]
    fn a_burst_from_many_threads_checks_at_most_max_per_address() {
        let r = regulation(1000, 7);
        assert_eq!(burst(&r, 64, |i| format!("user{i}@example.com")), 7);
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
}
