//! What was seen once and must be refused the second time (a signed
//! webhook call, by its nonce and signature), across every replica that
//! shares the guard.

use std::collections::HashMap;
use std::sync::Mutex;

use super::StoreError;

pub trait ReplayGuard: Send + Sync {
    /// Records `id` for `window_secs` from `now` (Unix seconds): true the
    /// first time within the window, false for every later use.
    fn first_use(&self, id: &str, window_secs: u64, now: u64) -> Result<bool, StoreError>;
}

/// The guard of one process: what it saw and when, older entries dropped.
#[derive(Default)]
pub struct MemoryReplayGuard {
    seen: Mutex<HashMap<String, u64>>,
}

impl ReplayGuard for MemoryReplayGuard {
    fn first_use(&self, id: &str, window_secs: u64, now: u64) -> Result<bool, StoreError> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.retain(|_, at| now.saturating_sub(*at) < window_secs);
        Ok(seen.insert(id.to_owned(), now).is_none())
    }
}

#[cfg(test)]
pub(crate) mod contract {
    use super::ReplayGuard;

    /// `first` and `second` are two replicas' views of one guard.
    pub fn refuses_a_second_use_anywhere(first: &dyn ReplayGuard, second: &dyn ReplayGuard) {
        let now = 1_700_000_000;
        assert!(first.first_use("nonce-1 sig", 3600, now).unwrap());
        assert!(!first.first_use("nonce-1 sig", 3600, now + 1).unwrap());
        assert!(!second.first_use("nonce-1 sig", 3600, now + 2).unwrap());
        assert!(second.first_use("nonce-2 sig", 3600, now + 2).unwrap());
        assert!(!first.first_use("nonce-2 sig", 3600, now + 3).unwrap());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_second_use() {
        let guard = MemoryReplayGuard::default();
        contract::refuses_a_second_use_anywhere(&guard, &guard);
    }

    #[test]
    fn forgets_after_the_window() {
        let guard = MemoryReplayGuard::default();
        assert!(guard.first_use("n", 10, 100).unwrap());
        assert!(!guard.first_use("n", 10, 109).unwrap());
        assert!(guard.first_use("n", 10, 120).unwrap());
    }
}
