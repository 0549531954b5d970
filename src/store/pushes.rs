//! Pending pushes: push id → the session that asked for it, so that an
//! answer (the webhook, the poller) finds its one session, on whichever
//! replica it lands. Each entry lives as long as its push can still be
//! answered. The poller takes a lease on a push before it asks the
//! provider about it, so that among replicas sharing the index each push
//! is polled by one of them at a time, and by another once the holder
//! stops renewing (it died).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{SessionKey, StoreError};

pub trait PushIndex: Send + Sync {
    /// Remembers that `push_id` belongs to the session `key`, for `ttl`.
    fn add(&self, push_id: &str, key: &SessionKey, ttl: Duration) -> Result<(), StoreError>;
    /// The session waiting for `push_id`, while the entry lives.
    fn find(&self, push_id: &str) -> Result<Option<SessionKey>, StoreError>;
    /// Forgets `push_id` (answered, or its session moved on), and its lease.
    fn remove(&self, push_id: &str) -> Result<(), StoreError>;
    /// Every push still waiting for its answer.
    fn pending(&self) -> Result<Vec<String>, StoreError>;
    /// Takes or renews the lease to poll `push_id` for `ttl`: true unless
    /// another holder's lease on it is still running.
    fn lease(&self, push_id: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError>;
}

/// The index of one process (sled, or the flow's tests): rebuilt from the
/// sessions at start-up (`Authenticator::new`).
#[derive(Default)]
pub struct MemoryPushIndex {
    entries: Mutex<HashMap<String, Entry>>,
}

struct Entry {
    key: SessionKey,
    expires: Instant,
    lease: Option<Lease>,
}

struct Lease {
    holder: String,
    expires: Instant,
}

impl MemoryPushIndex {
    /// The entries still alive; expired ones are dropped on the way.
    fn live(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        entries.retain(|_, entry| entry.expires > now);
        entries
    }
}

impl PushIndex for MemoryPushIndex {
    fn add(&self, push_id: &str, key: &SessionKey, ttl: Duration) -> Result<(), StoreError> {
        let entry = Entry {
            key: *key,
            expires: Instant::now() + ttl,
            lease: None,
        };
        self.live().insert(push_id.to_owned(), entry);
        Ok(())
    }

    fn find(&self, push_id: &str) -> Result<Option<SessionKey>, StoreError> {
        Ok(self.live().get(push_id).map(|entry| entry.key))
    }

    fn remove(&self, push_id: &str) -> Result<(), StoreError> {
        self.live().remove(push_id);
        Ok(())
    }

    fn pending(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.live().keys().cloned().collect())
    }

    fn lease(&self, push_id: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut entries = self.live();
        let Some(entry) = entries.get_mut(push_id) else {
            return Ok(false);
        };
        let now = Instant::now();
        let taken = entry
            .lease
            .as_ref()
            .is_some_and(|l| l.holder != holder && l.expires > now);
        if !taken {
            entry.lease = Some(Lease {
                holder: holder.to_owned(),
                expires: now + ttl,
            });
        }
        Ok(!taken)
    }
}

/// One test body for every implementation (memory here, Redis in
/// `redis::pushes`): same answers from both.
#[cfg(test)]
pub(crate) mod contract {
    use std::time::{Duration, Instant};

    use super::PushIndex;
    use crate::store::SessionKey;

    const LONG: Duration = Duration::from_secs(60);

    pub fn finds_lists_and_forgets(index: &dyn PushIndex) {
        let (a, b) = (SessionKey([1; 32]), SessionKey([2; 32]));
        index.add("push-a", &a, LONG).unwrap();
        index.add("push-b", &b, LONG).unwrap();
        assert_eq!(index.find("push-a").unwrap(), Some(a));
        assert_eq!(index.find("push-b").unwrap(), Some(b));
        assert_eq!(index.find("push-c").unwrap(), None);
        let mut pending = index.pending().unwrap();
        pending.sort();
        assert_eq!(pending, ["push-a", "push-b"]);
        index.remove("push-a").unwrap();
        assert_eq!(index.find("push-a").unwrap(), None);
        assert_eq!(index.pending().unwrap(), ["push-b"]);
    }

    pub fn entries_expire(index: &dyn PushIndex) {
        let key = SessionKey([3; 32]);
        index
            .add("short", &key, Duration::from_millis(100))
            .unwrap();
        index.add("long", &key, LONG).unwrap();
        assert_eq!(index.find("short").unwrap(), Some(key));
        let deadline = Instant::now() + Duration::from_secs(5);
        while index.find("short").unwrap().is_some() {
            assert!(Instant::now() < deadline, "the entry never expired");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(index.pending().unwrap(), ["long"], "gone from the list too");
    }

    /// `first` and `second` are two replicas' views of one index (for
    /// memory: the same one twice).
    pub fn one_holder_at_a_time(first: &dyn PushIndex, second: &dyn PushIndex) {
        first.add("push", &SessionKey([4; 32]), LONG).unwrap();
        let short = Duration::from_millis(200);
        assert!(first.lease("push", "replica-a", short).unwrap());
        assert!(!second.lease("push", "replica-b", short).unwrap());
        assert!(
            first.lease("push", "replica-a", short).unwrap(),
            "the holder renews"
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while !second.lease("push", "replica-b", LONG).unwrap() {
            assert!(Instant::now() < deadline, "the lease never expired");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!first.lease("push", "replica-a", short).unwrap());
        first.remove("push").unwrap();
        assert!(
            !first.lease("push", "replica-a", short).unwrap(),
            "no lease on a push that is not pending"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_lists_and_forgets() {
        contract::finds_lists_and_forgets(&MemoryPushIndex::default());
    }

    #[test]
    fn entries_expire() {
        contract::entries_expire(&MemoryPushIndex::default());
    }

    #[test]
    fn one_holder_at_a_time() {
        let index = MemoryPushIndex::default();
        contract::one_holder_at_a_time(&index, &index);
    }
}
