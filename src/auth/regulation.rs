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

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;

use crate::config::RegulationConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Banned {
    /// Seconds until another attempt is allowed.
    pub retry_after: u64,
}

#[derive(Debug, Clone, Copy)]
struct Counter {
    window_start: u64,
    failures: u32,
    banned_until: u64,
}

#[derive(Clone, Copy)]
struct Limits {
    max: u32,
    window: u64,
    ban: u64,
}

/// Failure counters for one kind of key.
struct Counters<K> {
    limits: Limits,
    by_key: Mutex<HashMap<K, Counter>>,
}

impl<K: Hash + Eq + Clone> Counters<K> {
    fn new(limits: Limits) -> Self {
        Counters {
            limits,
            by_key: Mutex::new(HashMap::new()),
        }
    }

    fn check(&self, key: &K, now: u64) -> Result<(), Banned> {
        let map = self.by_key.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(key) {
            Some(c) if c.banned_until > now => Err(Banned {
                retry_after: c.banned_until - now,
            }),
            _ => Ok(()),
        }
    }

    fn record_failure(&self, key: &K, now: u64) {
        let mut map = self.by_key.lock().unwrap_or_else(|e| e.into_inner());
        let counter = map.entry(key.clone()).or_insert(Counter {
            window_start: now,
            failures: 0,
            banned_until: 0,
        });
        if now.saturating_sub(counter.window_start) >= self.limits.window {
            counter.window_start = now;
            counter.failures = 0;
        }
        counter.failures += 1;
        if counter.failures >= self.limits.max {
            counter.banned_until = now + self.limits.ban;
            counter.failures = 0;
            counter.window_start = now;
        }
    }

    fn forget(&self, key: &K) {
        let mut map = self.by_key.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(key);
    }

    fn sweep(&self, now: u64) {
        let mut map = self.by_key.lock().unwrap_or_else(|e| e.into_inner());
        let window = self.limits.window;
        map.retain(|_, c| c.banned_until > now || now.saturating_sub(c.window_start) < window);
    }
}

pub struct Regulation {
    per_user: Counters<(String, IpAddr)>,
    per_address: Counters<IpAddr>,
}

impl Regulation {
    pub fn new(config: &RegulationConfig) -> Self {
        let limits = |max| Limits {
            max,
            window: config.window.as_secs(),
            ban: config.ban.as_secs(),
        };
        Regulation {
            per_user: Counters::new(limits(config.max_failures)),
            per_address: Counters::new(limits(config.max_failures_per_address)),
        }
    }

    /// Err while either counter is banned.
    pub fn check(&self, email: &str, addr: IpAddr, now: u64) -> Result<(), Banned> {
        self.per_address.check(&addr, now)?;
        self.per_user.check(&user_key(email, addr), now)
    }

    pub fn record_failure(&self, email: &str, addr: IpAddr, now: u64) {
        self.per_address.record_failure(&addr, now);
        self.per_user.record_failure(&user_key(email, addr), now);
    }

    /// A correct password clears that user's counter from that address;
    /// the per-address counter keeps counting other emails.
    pub fn record_success(&self, email: &str, addr: IpAddr) {
        self.per_user.forget(&user_key(email, addr));
    }

    /// Forgets counters whose window and ban are over, so memory stays bounded.
    pub fn sweep(&self, now: u64) {
        self.per_user.sweep(now);
        self.per_address.sweep(now);
    }
}

fn user_key(email: &str, addr: IpAddr) -> (String, IpAddr) {
    (email.trim().to_lowercase(), addr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn regulation(max: u32, per_address: u32) -> Regulation {
        Regulation::new(&RegulationConfig {
            max_failures: max,
            max_failures_per_address: per_address,
            window: Duration::from_secs(600),
            ban: Duration::from_secs(900),
        })
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn bans_after_max_failures_until_the_ban_passes() {
        let r = regulation(3, 100);
        for _ in 0..2 {
            r.record_failure("x@example.com", A, 1000);
        }
        assert!(r.check("x@example.com", A, 1000).is_ok());
        r.record_failure("X@Example.com", A, 1000);
        assert_eq!(
            r.check("x@example.com", A, 1001),
            Err(Banned { retry_after: 899 })
        );
        assert!(r.check("x@example.com", B, 1001).is_ok(), "other address");
        assert!(r.check("y@example.com", A, 1001).is_ok(), "other email");
        assert!(r.check("x@example.com", A, 1900).is_ok(), "ban over");
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up() {
        let r = regulation(3, 100);
        r.record_failure("x@example.com", A, 0);
        r.record_failure("x@example.com", A, 1);
        r.record_failure("x@example.com", A, 700);
        assert!(r.check("x@example.com", A, 700).is_ok());
    }

    #[test]
    fn per_address_limit_counts_every_email() {
        let r = regulation(100, 4);
        for i in 0..4 {
            r.record_failure(&format!("user{i}@example.com"), A, 50);
        }
        assert!(r.check("fresh@example.com", A, 51).is_err());
        assert!(r.check("fresh@example.com", B, 51).is_ok());
    }

    #[test]
    fn success_clears_the_user_counter() {
        let r = regulation(3, 100);
        r.record_failure("x@example.com", A, 0);
        r.record_failure("x@example.com", A, 0);
        r.record_success("x@example.com", A);
        r.record_failure("x@example.com", A, 0);
        assert!(r.check("x@example.com", A, 0).is_ok());
    }

    #[test]
    fn sweep_keeps_bans_and_drops_stale_counters() {
        let r = regulation(1, 100);
        r.record_failure("x@example.com", A, 0);
        r.sweep(800);
        assert!(r.check("x@example.com", A, 800).is_err(), "still banned");
        r.sweep(2000);
        assert!(r.per_user.by_key.lock().unwrap().is_empty());
    }
}
