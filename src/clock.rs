//! The flow never reads the time itself: it asks a `Clock`, so tests can
//! move time by hand.

use std::time::{SystemTime, UNIX_EPOCH};

pub trait Clock: Send + Sync {
    /// Seconds since the Unix epoch.
    fn now(&self) -> u64;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

#[cfg(test)]
pub mod testing {
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A clock the test sets and advances.
    pub struct ManualClock(AtomicU64);

    impl ManualClock {
        pub fn at(now: u64) -> Self {
            ManualClock(AtomicU64::new(now))
        }

        pub fn advance(&self, secs: u64) {
            self.0.fetch_add(secs, Ordering::SeqCst);
        }
    }

    impl super::Clock for ManualClock {
        fn now(&self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }
    }
}
