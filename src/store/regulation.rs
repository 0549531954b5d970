//! The counters behind brute-force regulation (`auth::Regulation`), kept
//! in this process (`MemoryAttemptCounters`) or shared by every replica on
//! Redis (`RedisAttemptCounters`), with the same semantics. Each counter:
//!
//! ```text
//!   open --failure--> counting(n) --n reaches max inside window--> banned
//!    ^                    |  window passes                           |
//!    +--------------------+------------------------------------------+ ban passes
//! ```
//!
//! An attempt is counted before its password is checked: `reserve` checks
//! both counters of the attempt (its user's and its address's) and takes a
//! place in each, in one atomic step, or takes none. Places held by
//! attempts still being checked count toward the limit until the attempt
//! is settled with `fail` or `succeed`.
//!
//! A counter whose window has passed, with no ban and no place held,
//! behaves exactly like an absent one: that is what lets either store
//! forget it (`sweep`, or Redis's expiry) at any time after.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use super::StoreError;
use crate::config::RegulationConfig;

/// The wait asked of an attempt refused while the counter's places are
/// taken by attempts still being checked: they end within a second.
pub const IN_FLIGHT_RETRY_SECS: u64 = 1;

/// The two counters an attempt is counted in, named by the caller: one
/// for its user (email and address), one for its address alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptKeys {
    pub user: String,
    pub address: String,
}

/// What `reserve` decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// A place is taken in both counters.
    Taken,
    /// None is taken: a counter is banned or has every place taken.
    Refused { retry_after: u64 },
}

/// The limits of one kind of counter.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max: u32,
    pub window: u64,
    pub ban: u64,
}

/// The limits of both kinds, from `[regulation]`.
#[derive(Debug, Clone, Copy)]
pub struct CounterLimits {
    pub per_user: Limits,
    pub per_address: Limits,
}

impl CounterLimits {
    pub fn new(config: &RegulationConfig) -> Self {
        let limits = |max| Limits {
            max,
            window: config.window.as_secs(),
            ban: config.ban.as_secs(),
        };
        CounterLimits {
            per_user: limits(config.max_failures),
            per_address: limits(config.max_failures_per_address),
        }
    }
}

/// Failure counters, `now` in unix seconds from the caller's clock.
pub trait AttemptCounters: Send + Sync {
    /// Takes a place in both counters, or in neither while either is
    /// banned or has every place taken.
    fn reserve(&self, keys: &AttemptKeys, now: u64) -> Result<Reservation, StoreError>;
    /// Settles a reserved attempt as a failure in both counters.
    fn fail(&self, keys: &AttemptKeys, now: u64) -> Result<(), StoreError>;
    /// Settles a reserved attempt as a success: the address's place is
    /// given back with its failures untouched; the user's counter is
    /// cleared. `now` only dates what a store keeps for expiry.
    fn succeed(&self, keys: &AttemptKeys, now: u64) -> Result<(), StoreError>;
    /// Whether either counter is inside a ban (not merely full of places
    /// taken).
    fn is_banned(&self, keys: &AttemptKeys, now: u64) -> Result<bool, StoreError>;
    /// Forgets counters that behave like absent ones, so memory stays
    /// bounded (a store that expires them by itself does nothing).
    fn sweep(&self, now: u64);
}

#[derive(Debug, Clone, Copy)]
struct Counter {
    window_start: u64,
    failures: u32,
    /// Attempts reserved and not settled yet: they count toward the limit.
    in_flight: u32,
    banned_until: u64,
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

    /// The wait before another attempt, when one must wait.
    fn refusal(&mut self, limits: Limits, now: u64) -> Option<u64> {
        if self.banned_until > now {
            return Some(self.banned_until - now);
        }
        self.roll(limits, now);
        (self.failures + self.in_flight >= limits.max).then_some(IN_FLIGHT_RETRY_SECS)
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
struct Counters {
    limits: Limits,
    by_key: HashMap<String, Counter>,
}

impl Counters {
    fn new(limits: Limits) -> Self {
        Counters {
            limits,
            by_key: HashMap::new(),
        }
    }

    fn bans(&self, key: &str, now: u64) -> bool {
        self.by_key.get(key).is_some_and(|c| c.banned_until > now)
    }

    fn refusal(&mut self, key: &str, now: u64) -> Option<u64> {
        let limits = self.limits;
        self.by_key.get_mut(key)?.refusal(limits, now)
    }

    fn counter(&mut self, key: &str, now: u64) -> &mut Counter {
        // Looked up before inserting: the key is copied only for a new one.
        if !self.by_key.contains_key(key) {
            self.by_key.insert(key.to_owned(), Counter::new(now));
        }
        self.by_key.get_mut(key).expect("inserted above")
    }

    fn reserve(&mut self, key: &str, now: u64) {
        self.counter(key, now).in_flight += 1;
    }

    fn fail(&mut self, key: &str, now: u64) {
        let limits = self.limits;
        self.counter(key, now).fail(limits, now);
    }

    /// Gives the attempt's place back, failures untouched.
    fn release(&mut self, key: &str) {
        if let Some(counter) = self.by_key.get_mut(key) {
            counter.in_flight = counter.in_flight.saturating_sub(1);
        }
    }

    /// Gives the attempt's place back and clears the failures. The counter
    /// cannot be banned here: a ban needs `max` failures, and this attempt
    /// held one of the `max` places.
    fn clear(&mut self, key: &str) {
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
    per_user: Counters,
    per_address: Counters,
}

/// The counters of one process (one replica, or the flow's tests).
pub struct MemoryAttemptCounters {
    tables: Mutex<Tables>,
}

impl MemoryAttemptCounters {
    pub fn new(limits: CounterLimits) -> Self {
        MemoryAttemptCounters {
            tables: Mutex::new(Tables {
                per_user: Counters::new(limits.per_user),
                per_address: Counters::new(limits.per_address),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        let tables = self.lock();
        tables.per_user.by_key.len() + tables.per_address.by_key.len()
    }
}

impl AttemptCounters for MemoryAttemptCounters {
    fn reserve(&self, keys: &AttemptKeys, now: u64) -> Result<Reservation, StoreError> {
        let mut tables = self.lock();
        let refusal = tables
            .per_address
            .refusal(&keys.address, now)
            .or_else(|| tables.per_user.refusal(&keys.user, now));
        if let Some(retry_after) = refusal {
            return Ok(Reservation::Refused { retry_after });
        }
        tables.per_address.reserve(&keys.address, now);
        tables.per_user.reserve(&keys.user, now);
        Ok(Reservation::Taken)
    }

    fn fail(&self, keys: &AttemptKeys, now: u64) -> Result<(), StoreError> {
        let mut tables = self.lock();
        tables.per_address.fail(&keys.address, now);
        tables.per_user.fail(&keys.user, now);
        Ok(())
    }

    fn succeed(&self, keys: &AttemptKeys, _now: u64) -> Result<(), StoreError> {
        let mut tables = self.lock();
        tables.per_address.release(&keys.address);
        tables.per_user.clear(&keys.user);
        Ok(())
    }

    fn is_banned(&self, keys: &AttemptKeys, now: u64) -> Result<bool, StoreError> {
        let tables = self.lock();
        Ok(tables.per_address.bans(&keys.address, now) || tables.per_user.bans(&keys.user, now))
    }

    fn sweep(&self, now: u64) {
        let mut tables = self.lock();
        tables.per_user.sweep(now);
        tables.per_address.sweep(now);
    }
}

/// The contract both stores keep, with [`contract::limits`]; each store's
/// tests run it.
#[cfg(test)]
pub(super) mod contract {
    use std::sync::Barrier;

    use super::*;

    /// 3 failures per user, 5 per address, in 600 s; bans of 900 s.
    pub fn limits() -> CounterLimits {
        let limits = |max| Limits {
            max,
            window: 600,
            ban: 900,
        };
        CounterLimits {
            per_user: limits(3),
            per_address: limits(5),
        }
    }

    pub fn keys(user: &str, address: &str) -> AttemptKeys {
        AttemptKeys {
            user: format!("{address} {user}"),
            address: address.to_owned(),
        }
    }

    fn fail(counters: &dyn AttemptCounters, keys: &AttemptKeys, now: u64) {
        assert_eq!(counters.reserve(keys, now).unwrap(), Reservation::Taken);
        counters.fail(keys, now).unwrap();
    }

    fn reserve(counters: &dyn AttemptCounters, keys: &AttemptKeys, now: u64) -> Reservation {
        counters.reserve(keys, now).unwrap()
    }

    const TAKEN: Reservation = Reservation::Taken;

    fn refused(retry_after: u64) -> Reservation {
        Reservation::Refused { retry_after }
    }

    pub fn failures_ban_the_user_until_the_ban_passes(counters: &dyn AttemptCounters) {
        let x = keys("x", "10.0.0.1");
        for _ in 0..3 {
            fail(counters, &x, 1000);
        }
        assert_eq!(reserve(counters, &x, 1001), refused(899));
        assert!(counters.is_banned(&x, 1001).unwrap());
        assert!(!counters.is_banned(&keys("y", "10.0.0.1"), 1001).unwrap());
        assert_eq!(reserve(counters, &keys("x", "10.0.0.2"), 1001), TAKEN);
        assert_eq!(reserve(counters, &keys("y", "10.0.0.1"), 1001), TAKEN);
        assert!(!counters.is_banned(&x, 1900).unwrap());
        assert_eq!(reserve(counters, &x, 1900), TAKEN, "ban over");
    }

    pub fn failures_outside_the_window_do_not_add_up(counters: &dyn AttemptCounters) {
        let x = keys("x", "10.0.0.1");
        fail(counters, &x, 0);
        fail(counters, &x, 1);
        fail(counters, &x, 700);
        fail(counters, &x, 700);
        assert_eq!(reserve(counters, &x, 700), TAKEN);
    }

    pub fn the_address_counts_every_user(counters: &dyn AttemptCounters) {
        for i in 0..5 {
            fail(counters, &keys(&format!("user{i}"), "10.0.0.1"), 50);
        }
        assert_eq!(
            reserve(counters, &keys("fresh", "10.0.0.1"), 51),
            refused(899)
        );
        assert!(counters.is_banned(&keys("fresh", "10.0.0.1"), 51).unwrap());
        assert_eq!(reserve(counters, &keys("fresh", "10.0.0.2"), 51), TAKEN);
    }

    pub fn places_in_flight_count_until_settled(counters: &dyn AttemptCounters) {
        let x = keys("x", "10.0.0.1");
        for _ in 0..3 {
            assert_eq!(reserve(counters, &x, 0), TAKEN);
        }
        assert_eq!(reserve(counters, &x, 0), refused(1), "every place is taken");
        assert!(!counters.is_banned(&x, 0).unwrap(), "full is not banned");
        counters.succeed(&x, 0).unwrap();
        assert_eq!(reserve(counters, &x, 0), TAKEN, "the success gave it back");
        counters.fail(&x, 0).unwrap();
        counters.fail(&x, 0).unwrap();
        assert_eq!(
            reserve(counters, &x, 0),
            refused(1),
            "two failures and one attempt being checked"
        );
        counters.succeed(&x, 0).unwrap();
        assert_eq!(reserve(counters, &x, 0), TAKEN, "the success cleared them");
    }

    pub fn a_success_keeps_the_address_failures(counters: &dyn AttemptCounters) {
        for i in 0..4 {
            fail(counters, &keys(&format!("user{i}"), "10.0.0.1"), 0);
        }
        let x = keys("x", "10.0.0.1");
        assert_eq!(reserve(counters, &x, 0), TAKEN);
        counters.succeed(&x, 0).unwrap();
        fail(counters, &keys("y", "10.0.0.1"), 0);
        assert!(counters.is_banned(&x, 1).unwrap(), "the fifth failure");
    }

    /// A settled attempt that was never reserved (its counter expired, or
    /// another replica forgot it) still counts, and never underflows.
    pub fn settling_an_unknown_counter_is_safe(counters: &dyn AttemptCounters) {
        let x = keys("x", "10.0.0.1");
        counters.succeed(&x, 0).unwrap();
        counters.fail(&x, 0).unwrap();
        counters.fail(&x, 0).unwrap();
        fail(counters, &x, 0);
        assert!(counters.is_banned(&x, 1).unwrap());
    }

    pub fn sweep_keeps_bans(counters: &dyn AttemptCounters) {
        let x = keys("x", "10.0.0.1");
        for _ in 0..3 {
            fail(counters, &x, 0);
        }
        counters.sweep(800);
        assert_eq!(reserve(counters, &x, 800), refused(100), "still banned");
        counters.sweep(2000);
        assert_eq!(reserve(counters, &x, 2000), TAKEN);
    }

    /// Every thread is released at once; the ones that got a place hold
    /// it until all have asked, then fail. Returns the places taken.
    fn burst(
        counters: &dyn AttemptCounters,
        threads: usize,
        x: impl Fn(usize) -> AttemptKeys + Sync,
    ) -> usize {
        let asked = Barrier::new(threads);
        let all_asked = Barrier::new(threads);
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|i| {
                    let (asked, all_asked, x) = (&asked, &all_asked, &x);
                    scope.spawn(move || {
                        let keys = x(i);
                        asked.wait();
                        let taken = counters.reserve(&keys, 100).unwrap() == Reservation::Taken;
                        all_asked.wait();
                        if taken {
                            counters.fail(&keys, 100).unwrap();
                        }
                        taken
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .filter(|taken| *taken)
                .count()
        })
    }

    pub fn a_burst_of_100_takes_at_most_max_places(counters: &dyn AttemptCounters) {
        assert_eq!(burst(counters, 100, |_| keys("x", "10.0.0.1")), 3);
        assert!(counters.is_banned(&keys("x", "10.0.0.1"), 101).unwrap());
        let many = |i| keys(&format!("user{i}"), "10.0.0.2");
        assert_eq!(burst(counters, 100, many), 5, "per address");
        assert!(counters.is_banned(&keys("fresh", "10.0.0.2"), 101).unwrap());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters() -> MemoryAttemptCounters {
        MemoryAttemptCounters::new(contract::limits())
    }

    #[test]
    fn memory_counters_keep_the_contract() {
        contract::failures_ban_the_user_until_the_ban_passes(&counters());
        contract::failures_outside_the_window_do_not_add_up(&counters());
        contract::the_address_counts_every_user(&counters());
        contract::places_in_flight_count_until_settled(&counters());
        contract::a_success_keeps_the_address_failures(&counters());
        contract::settling_an_unknown_counter_is_safe(&counters());
        contract::sweep_keeps_bans(&counters());
    }

    #[test]
    fn a_burst_of_100_threads_takes_at_most_max_places_in_memory() {
        contract::a_burst_of_100_takes_at_most_max_places(&counters());
    }

    #[test]
    fn sweep_forgets_counters_that_behave_like_absent_ones() {
        let counters = counters();
        let x = contract::keys("x", "10.0.0.1");
        counters.reserve(&x, 0).unwrap();
        counters.fail(&x, 0).unwrap();
        counters
            .reserve(&contract::keys("y", "10.0.0.2"), 0)
            .unwrap();
        counters.sweep(700);
        assert_eq!(counters.len(), 2, "the places held by y");
        counters
            .succeed(&contract::keys("y", "10.0.0.2"), 0)
            .unwrap();
        counters.sweep(700);
        assert_eq!(counters.len(), 0);
    }
}
