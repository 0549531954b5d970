//! Session ids and the live sessions. The request path reads only the
//! in-memory map; every change is written through to the durable store
//! first, so a session the browser holds a cookie for is always on disk
//! (after the next flush) and a store failure never hands out a cookie.
//! The one exception is the idle timer: refreshed in memory on the request
//! path, and written by the periodic flush.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use super::compact::{CompactRecord, Email};
use super::session_map::{KeyHasher, SessionMap};
use super::user_index::UserIndex;
use super::{
    SessionCache, SessionKey, SessionRecord, SessionStore, SharedSessions, StoreError, blocking,
};

/// Refreshed sessions written between two flushes of the store: sled
/// keeps what was written since its last flush in memory, so a flush that
/// falls due for 100,000 sessions at once would otherwise hold all of
/// them (bench/RESULTS.md, issue 18).
const WRITES_PER_FLUSH: usize = 32768;

/// Refreshes per idle timeout: `last_seen` lags real use by at most a
/// 24th of the timeout, so an idle session ends at most about 4 % early.
const TOUCHES_PER_TIMEOUT: u64 = 24;

/// How stale `last_seen` may get before it is refreshed: a fixed share of
/// the idle timeout rather than a fixed minute, so long timeouts cost few
/// writes (a million sessions in use, refreshed once a minute, would be
/// 16,700 store writes a second; with a 2 h timeout it is 3,300).
pub fn touch_interval(idle_timeout: u64) -> u64 {
    idle_timeout / TOUCHES_PER_TIMEOUT
}

/// Length of an id: 32 bytes in base64url without padding.
const ID_LEN: usize = 43;

/// The value a browser holds: 256 bits from the OS RNG, base64url. Kept
/// inline: every request parses one and copies it.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionId([u8; ID_LEN]);

impl SessionId {
    pub fn generate() -> Result<Self, StoreError> {
        let mut bytes = [0u8; 32];
        getrandom::getrandom(&mut bytes).map_err(|e| StoreError::Write(e.to_string()))?;
        let mut id = [0u8; ID_LEN];
        URL_SAFE_NO_PAD
            .encode_slice(bytes, &mut id)
            .map_err(|e| StoreError::Write(e.to_string()))?;
        Ok(SessionId(id))
    }

    /// Accepts only the shape `generate` makes, so junk never reaches a hash.
    pub fn parse(value: &str) -> Option<Self> {
        let id: [u8; ID_LEN] = value.as_bytes().try_into().ok()?;
        id.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            .then_some(SessionId(id))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("parse and generate admit ASCII only")
    }

    /// The store key: SHA-256 of the id.
    pub fn key(&self) -> SessionKey {
        SessionKey(Sha256::digest(self.0).into())
    }
}

impl std::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionId(..)")
    }
}

type KeySet = HashSet<SessionKey, BuildHasherDefault<KeyHasher>>;

/// Compare-and-swap rounds a change of a shared session may take before
/// it gives up (each lost round means another replica changed it).
const MAX_SWAPS: usize = 16;

pub struct LiveSessions {
    /// Every session (sled), or the sessions this replica used lately (a
    /// shared store: see [`SharedSessions`]).
    live: Arc<SessionMap>,
    /// Set when several replicas share the store.
    shared: Option<Arc<dyn SharedSessions>>,
    cache: Arc<CacheState>,
    /// Sessions whose idle timer was refreshed since the last flush: the
    /// flush writes them, the request path never does.
    refreshed: Mutex<KeySet>,
    /// One copy of each user's email, shared by all of their sessions.
    emails: Mutex<HashSet<Email>>,
    /// Each user's live sessions, for a private store (a shared store
    /// keeps its own, see [`SharedSessions::sessions_of`]). Changed only
    /// with the map, on a login, a step-up, a logout or a sweep: never on
    /// the request path.
    index: UserIndex,
    store: Arc<dyn SessionStore>,
    health: Health,
    /// Every write to the store holds this shared, taken before any map
    /// lock; `recover` holds it alone while it rebuilds the store from the
    /// map, so no write can slip between the two.
    writes: RwLock<()>,
}

const EPOCH_SLICES: usize = 256;

fn slice(key: &SessionKey) -> usize {
    usize::from(key.0[0]) % EPOCH_SLICES
}

/// What keeps a shared store's cache honest.
struct CacheState {
    /// Bumped by every eviction in a slice of the keys (by the key's first
    /// byte): a read from the store that started before one may carry what
    /// was evicted, and is then not cached. Sliced so that the other
    /// replicas' writes do not keep every read out of the cache.
    epochs: [AtomicU64; EPOCH_SLICES],
    /// False while the invalidation feed is down: nothing is cached then.
    usable: AtomicBool,
    /// Orders a read's check-and-insert against evictions.
    filling: Mutex<()>,
    /// Lookups answered from memory and lookups that read the shared
    /// store (counted with a shared store only: the metrics' hit ratio).
    /// Hits come with every request: striped, so that workers on
    /// different cores do not fight over one cache line.
    hits: [Stripe; HIT_STRIPES],
    misses: AtomicU64,
}

const HIT_STRIPES: usize = 16;

/// One counter on a cache line of its own.
#[repr(align(64))]
#[derive(Default)]
struct Stripe(AtomicU64);

/// The stripe of the calling thread: threads are numbered as they first
/// count, so the runtime's few workers get stripes of their own.
fn my_stripe() -> usize {
    use std::sync::atomic::AtomicUsize;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % HIT_STRIPES;
    }
    STRIPE.with(|stripe| *stripe)
}

/// The feed's handle on the cache.
struct CacheFeed {
    live: Arc<SessionMap>,
    state: Arc<CacheState>,
}

impl SessionCache for CacheFeed {
    fn evict(&self, key: &SessionKey) {
        let _filling = self.state.filling.lock().unwrap_or_else(|e| e.into_inner());
        self.state.epochs[slice(key)].fetch_add(1, Ordering::AcqRel);
        self.live.remove(key);
    }

    fn evict_all(&self) {
        let _filling = self.state.filling.lock().unwrap_or_else(|e| e.into_inner());
        for epoch in &self.state.epochs {
            epoch.fetch_add(1, Ordering::AcqRel);
        }
        self.live.clear();
    }

    fn set_usable(&self, usable: bool) {
        self.state.usable.store(usable, Ordering::Release);
    }
}

/// The store is healthy while the last write and the last flush worked.
struct Health {
    write_ok: AtomicBool,
    flush_ok: AtomicBool,
}

impl Health {
    fn wrote<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        self.write_ok.store(result.is_ok(), Ordering::Relaxed);
        result
    }

    /// A flush that worked makes everything written so far durable: the
    /// store is usable again.
    fn flushed<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        let ok = result.is_ok();
        self.flush_ok.store(ok, Ordering::Relaxed);
        if ok {
            self.write_ok.store(true, Ordering::Relaxed);
        }
        result
    }

    fn is_ok(&self) -> bool {
        self.write_ok.load(Ordering::Relaxed) && self.flush_ok.load(Ordering::Relaxed)
    }
}

impl LiveSessions {
    /// Loads every stored session into memory, one at a time. Not pre-sized:
    /// the map grows one shard at a time to the size a pre-sized map has.
    pub fn load(store: Arc<dyn SessionStore>) -> Result<Self, StoreError> {
        let live = SessionMap::default();
        let mut emails = HashSet::new();
        let mut index = UserIndex::default();
        let mut unloadable = 0usize;
        store.load_each(
            &mut |key, record| match CompactRecord::new(record, &mut emails) {
                Ok(compact) => {
                    index.add(compact.user(), key);
                    live.insert(&key, compact);
                }
                Err(_) => unloadable += 1,
            },
        )?;
        if unloadable > 0 {
            // Like a record this version cannot read: the users log in again.
            tracing::warn!(
                sessions = unloadable,
                "stored sessions with times out of range were not loaded"
            );
        }
        Ok(Self::with(live, emails, index, store, None))
    }

    /// A cache in front of a store several replicas share: starts empty,
    /// reads what it misses, and is kept honest by the store's feed.
    pub fn shared<S: SessionStore + SharedSessions + 'static>(store: Arc<S>) -> Self {
        let live = Self::with(
            SessionMap::default(),
            HashSet::new(),
            UserIndex::default(),
            Arc::clone(&store) as Arc<dyn SessionStore>,
            Some(Arc::clone(&store) as Arc<dyn SharedSessions>),
        );
        store.watch(Arc::new(CacheFeed {
            live: Arc::clone(&live.live),
            state: Arc::clone(&live.cache),
        }));
        live
    }

    fn with(
        live: SessionMap,
        emails: HashSet<Email>,
        index: UserIndex,
        store: Arc<dyn SessionStore>,
        shared: Option<Arc<dyn SharedSessions>>,
    ) -> Self {
        let cache = CacheState {
            epochs: std::array::from_fn(|_| AtomicU64::new(0)),
            // A private store's map is the truth, not a cache: always usable.
            usable: AtomicBool::new(shared.is_none()),
            filling: Mutex::new(()),
            hits: Default::default(),
            misses: AtomicU64::new(0),
        };
        LiveSessions {
            live: Arc::new(live),
            shared,
            cache: Arc::new(cache),
            refreshed: Mutex::default(),
            emails: Mutex::new(emails),
            index,
            store,
            health: Health {
                write_ok: AtomicBool::new(true),
                flush_ok: AtomicBool::new(true),
            },
            writes: RwLock::new(()),
        }
    }

    /// Whether other replicas share the store (the map is a cache).
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// A copy of the session: for a confirmed one, one reference count
    /// (the email's) and no allocation. A shared store is read on a miss.
    pub fn get(&self, key: &SessionKey) -> Result<Option<SessionRecord>, StoreError> {
        let cached = self.live.get(key).map(|entry| entry.record());
        let Some(shared) = &self.shared else {
            return Ok(cached);
        };
        if cached.is_some() {
            self.cache.hits[my_stripe()]
                .0
                .fetch_add(1, Ordering::Relaxed);
            return Ok(cached);
        }
        self.cache.misses.fetch_add(1, Ordering::Relaxed);
        self.fill(shared.as_ref(), key)
    }

    /// (hits, misses) of the shared store's cache; none without one.
    pub fn cache_lookups(&self) -> (u64, u64) {
        (
            self.cache
                .hits
                .iter()
                .map(|stripe| stripe.0.load(Ordering::Relaxed))
                .sum(),
            self.cache.misses.load(Ordering::Relaxed),
        )
    }

    /// Whether the store can be reached: for a shared store, while its
    /// invalidation feed works (it pings every 200 ms).
    pub fn is_connected(&self) -> bool {
        self.cache.usable.load(Ordering::Acquire)
    }

    /// The stored copy, whatever the cache holds: before a shared session
    /// is ended for being idle (another replica may have seen it used).
    pub fn reread(&self, key: &SessionKey) -> Result<Option<SessionRecord>, StoreError> {
        match &self.shared {
            Some(shared) => self.fill(shared.as_ref(), key),
            None => self.get(key),
        }
    }

    /// Reads a session from the shared store and caches it, unless an
    /// eviction came in meanwhile (the copy read may be what it evicted).
    fn fill(
        &self,
        shared: &dyn SharedSessions,
        key: &SessionKey,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let epoch = self.cache.epochs[slice(key)].load(Ordering::Acquire);
        let record = shared.fetch(key)?;
        match &record {
            Some(record) => self.cache_own(key, record.clone(), Some(epoch)),
            None => {
                self.live.remove(key);
            }
        }
        Ok(record)
    }

    /// Caches a session while the feed works and, for a read, no eviction
    /// came in since `epoch`.
    fn cache_own(&self, key: &SessionKey, record: SessionRecord, epoch: Option<u64>) {
        let _filling = self.cache.filling.lock().unwrap_or_else(|e| e.into_inner());
        let current =
            epoch.is_none_or(|e| self.cache.epochs[slice(key)].load(Ordering::Acquire) == e);
        if self.cache.usable.load(Ordering::Acquire)
            && current
            && let Ok(compact) = self.compact(record)
        {
            self.live.insert(key, compact);
        }
    }

    /// The record in its compact form, the email made the shared copy.
    fn compact(&self, record: SessionRecord) -> Result<CompactRecord, StoreError> {
        let mut emails = self.emails.lock().unwrap_or_else(|e| e.into_inner());
        CompactRecord::new(record, &mut emails).map_err(|e| StoreError::Write(e.to_string()))
    }

    /// A new session (a login, a step up): written and flushed before it
    /// becomes live, so a cookie is only ever handed out for a session that
    /// survives a crash. On any failure the session does not exist, in
    /// memory or (once the store works again) on disk.
    pub fn insert(&self, key: SessionKey, record: SessionRecord) -> Result<(), StoreError> {
        let _writing = self.writing();
        let compact = self.compact(record.clone())?;
        let written = self.health.wrote(self.store.put(&key, &record));
        let durable = written.and_then(|()| match &self.shared {
            Some(shared) => self.health.wrote(shared.acknowledge()),
            None => self.health.flushed(blocking(|| self.store.flush())),
        });
        if let Err(err) = durable {
            // Best effort: should this write reach the disk with a later
            // flush, it must not become a session nobody holds a cookie for.
            let _ = self.store.delete(&key);
            tracing::error!(error = %err, "a new session could not be stored; none was issued");
            return Err(err);
        }
        if self.shared.is_some() {
            self.cache_own(&key, record, None);
        } else {
            self.index.insert(&self.live, key, compact);
        }
        Ok(())
    }

    /// Removes from memory first: even if the disk write fails, the
    /// session stops working now.
    pub fn remove(&self, key: &SessionKey) -> Result<(), StoreError> {
        let _writing = self.writing();
        self.index.remove(&self.live, key);
        self.health.wrote(self.store.delete(key))
    }

    /// Applies `change` to a copy of the session under the map's entry lock
    /// and stores it when `change` returns true: a compare-and-swap, so the
    /// webhook and the poller cannot both confirm one push. With a shared
    /// store the swap is made against the stored copy (another replica may
    /// be confirming the same push), and `change` runs again on a fresh
    /// copy when it loses.
    pub fn update(
        &self,
        key: &SessionKey,
        mut change: impl FnMut(&mut SessionRecord) -> bool,
    ) -> Result<bool, StoreError> {
        let _writing = self.writing();
        if let Some(shared) = &self.shared {
            return self.update_shared(shared.as_ref(), key, &mut change);
        }
        let Some(mut entry) = self.live.get_mut(key) else {
            return Ok(false);
        };
        let mut record = entry.record();
        if !change(&mut record) {
            return Ok(false);
        }
        let compact = self.compact(record.clone())?;
        self.health.wrote(self.store.put(key, &record))?;
        *entry = compact;
        Ok(true)
    }

    fn update_shared(
        &self,
        shared: &dyn SharedSessions,
        key: &SessionKey,
        change: &mut dyn FnMut(&mut SessionRecord) -> bool,
    ) -> Result<bool, StoreError> {
        for _ in 0..MAX_SWAPS {
            let Some(current) = self.health.wrote(shared.fetch(key))? else {
                self.live.remove(key);
                return Ok(false);
            };
            let mut record = current.clone();
            if !change(&mut record) {
                return Ok(false);
            }
            if self.health.wrote(shared.replace(key, &current, &record))? {
                self.live.remove(key);
                self.cache_own(key, record, None);
                return Ok(true);
            }
        }
        Err(StoreError::Write(
            "the session kept changing on other replicas".to_owned(),
        ))
    }

    /// Removes the session and says whether it was there: of two racing
    /// callers exactly one gets true.
    pub fn take(&self, key: &SessionKey) -> Result<bool, StoreError> {
        let _writing = self.writing();
        let was_there = self.index.remove(&self.live, key);
        if let Some(shared) = &self.shared {
            return self.health.wrote(shared.take(key));
        }
        self.health.wrote(self.store.delete(key))?;
        Ok(was_there)
    }

    /// The user's live sessions (the email in any case): what the index
    /// lists and the map (or the shared store) still holds, so an ended
    /// session is never listed.
    pub fn sessions_of(&self, email: &str) -> Result<Vec<(SessionKey, SessionRecord)>, StoreError> {
        if let Some(shared) = &self.shared {
            return shared.sessions_of(email);
        }
        Ok(self.index.sessions_of(&self.live, email))
    }

    /// Every user with a live session and their sessions; a shared store
    /// lists what it holds.
    pub fn all_sessions(&self) -> Result<Vec<(SessionKey, SessionRecord)>, StoreError> {
        if self.shared.is_some() {
            return self.store.load_all();
        }
        let mut all = Vec::new();
        self.for_each(|key, record| all.push((*key, record.clone())));
        Ok(all)
    }

    pub fn for_each(&self, mut visit: impl FnMut(&SessionKey, &SessionRecord)) {
        self.live
            .for_each(|key, record| visit(key, &record.record()));
    }

    /// The durable store, for data beside the sessions (provider ids).
    pub fn store(&self) -> &dyn SessionStore {
        self.store.as_ref()
    }

    /// Refreshes the idle timer when it is `every` seconds old or older.
    /// The common case (fresh enough) takes no lock but the map's read.
    /// The refresh is made in memory and written by the next flush, in one
    /// batch with the others: a crash loses at most one flush interval of
    /// refreshes (those sessions time out a little early), never a session.
    pub fn touch(&self, key: &SessionKey, now: u64, every: u64) {
        let stale = |record: &CompactRecord| now.saturating_sub(record.last_seen()) >= every;
        if !self.live.get(key).is_some_and(|entry| stale(&entry)) {
            return;
        }
        {
            let Some(mut entry) = self.live.get_mut(key) else {
                return;
            };
            if !stale(&entry) || !entry.set_last_seen(now) {
                return;
            }
        }
        self.refreshed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(*key);
    }

    /// Drops every session for which `keep` is false; returns how many.
    pub fn sweep(&self, keep: impl Fn(&SessionRecord) -> bool) -> usize {
        let mut dead = Vec::new();
        self.live.for_each(|key, record| {
            if !keep(&record.record()) {
                dead.push(*key);
            }
        });
        for key in &dead {
            if self.shared.is_some() {
                // The stored copy expires by itself, and another replica
                // may have used it since this copy was cached.
                self.live.remove(key);
            } else {
                let _ = self.remove(key);
            }
        }
        self.emails
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|email| email.holders() > 1);
        dead.len()
    }

    /// Makes every write so far durable (the periodic flush and shutdown).
    /// While the store is unhealthy this first tries to bring it back (see
    /// [`LiveSessions::recover`]), so a full disk that gets space again
    /// heals within one flush interval.
    pub fn flush(&self) -> Result<(), StoreError> {
        if !self.is_healthy() {
            return self.recover();
        }
        let _writing = self.writing();
        self.health.wrote(self.write_refreshed())?;
        self.health.flushed(self.store.flush())
    }

    /// Writes the sessions refreshed since the last flush, in key order, so
    /// the store meets each of its pages once. On a failure the rest is not
    /// lost: the store is then unhealthy, and the next flush writes every
    /// live session back ([`LiveSessions::recover`]).
    fn write_refreshed(&self) -> Result<(), StoreError> {
        let taken = std::mem::take(&mut *self.refreshed.lock().unwrap_or_else(|e| e.into_inner()));
        let mut keys: Vec<SessionKey> = taken.into_iter().collect();
        keys.sort_unstable_by_key(|key| key.0);
        for chunk in keys.chunks(WRITES_PER_FLUSH) {
            for key in chunk {
                self.write_current(key)?;
            }
            if chunk.len() == WRITES_PER_FLUSH {
                self.store.flush()?;
            }
        }
        Ok(())
    }

    /// Writes the session as it is now, without holding the map's lock
    /// over the store's I/O (a request touching the same shard would wait
    /// for the disk). A logout or an update that lands meanwhile is seen
    /// by looking again after the write: an ended session is deleted
    /// again, a newer state is written over the older one.
    fn write_current(&self, key: &SessionKey) -> Result<(), StoreError> {
        if let Some(shared) = &self.shared {
            return self.write_last_seen(shared.as_ref(), key);
        }
        let mut written: Option<SessionRecord> = None;
        loop {
            let current = self.live.get(key).map(|entry| entry.record());
            match (current, &written) {
                (None, None) => return Ok(()),
                (None, Some(_)) => return self.store.delete(key),
                (Some(now), Some(done)) if now == *done => return Ok(()),
                (Some(now), _) => {
                    self.store.put(key, &now)?;
                    written = Some(now);
                }
            }
        }
    }

    /// A shared session's refresh: only `last_seen` moves forward, by
    /// compare-and-swap on the stored copy, so a logout or a step-up made
    /// on another replica meanwhile is never written over.
    fn write_last_seen(
        &self,
        shared: &dyn SharedSessions,
        key: &SessionKey,
    ) -> Result<(), StoreError> {
        let Some(seen) = self.live.get(key).map(|entry| entry.last_seen()) else {
            return Ok(());
        };
        for _ in 0..MAX_SWAPS {
            let Some(stored) = shared.fetch(key)? else {
                self.live.remove(key);
                return Ok(());
            };
            if stored.last_seen >= seen {
                return Ok(());
            }
            let refreshed = SessionRecord {
                last_seen: seen,
                ..stored.clone()
            };
            if shared.replace(key, &stored, &refreshed)? {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Reopens the store and writes the memory's view back into it: every
    /// live session is stored as it is now, every stored session that is
    /// no longer live is deleted (a logout whose delete never reached the
    /// disk must not come back), then all of it is flushed.
    fn recover(&self) -> Result<(), StoreError> {
        let _alone = self.writes.write().unwrap_or_else(|e| e.into_inner());
        if self.shared.is_some() {
            // The shared store is the truth: nothing is written back.
            return self.health.flushed(self.store.reopen());
        }
        let result = self
            .store
            .reopen()
            .and_then(|()| self.write_back())
            .and_then(|()| self.store.flush());
        match &result {
            Ok(()) => tracing::info!(sessions = self.live.len(), "session store works again"),
            Err(err) => tracing::debug!(error = %err, "session store still failing"),
        }
        self.health.flushed(result)
    }

    fn write_back(&self) -> Result<(), StoreError> {
        let stored: HashMap<SessionKey, SessionRecord> =
            self.store.load_all()?.into_iter().collect();
        for key in stored.keys() {
            if !self.live.contains_key(key) {
                self.store.delete(key)?;
            }
        }
        let mut written = Ok(());
        self.live.for_each(|key, record| {
            let record = record.record();
            if written.is_ok() && stored.get(key) != Some(&record) {
                written = self.store.put(key, &record);
            }
        });
        written
    }

    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// False after the last write or flush failed, until a flush works;
    /// with a shared store also while it cannot be reached.
    pub fn is_healthy(&self) -> bool {
        self.health.is_ok() && self.is_connected()
    }

    fn writing(&self) -> RwLockReadGuard<'_, ()> {
        self.writes.read().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The refresh interval the tests touch with.
    const EVERY: u64 = 60;
    use crate::store::{AuthLevel, MemoryStore};

    fn record(last_seen: u64) -> SessionRecord {
        SessionRecord {
            user: "a@example.com".into(),
            level: AuthLevel::OneFactor,
            auth_time: 100,
            second_factor_time: None,
            created_at: 100,
            last_seen,
            challenge: None,
            device: None,
            second_factor_method: None,
            client: None,
        }
    }

    /// `n` sessions of one user, last seen at 100, in a memory store.
    fn live_sessions(n: usize) -> (Arc<MemoryStore>, LiveSessions, Vec<SessionKey>) {
        let store = Arc::new(MemoryStore::default());
        let sessions = LiveSessions::load(store.clone()).unwrap();
        let keys: Vec<SessionKey> = (0..n)
            .map(|_| SessionId::generate().unwrap().key())
            .collect();
        for key in &keys {
            sessions.insert(*key, record(100)).unwrap();
        }
        (store, sessions, keys)
    }

    #[test]
    fn the_sessions_of_a_user_share_one_copy_of_the_email() {
        let (store, sessions, keys) = live_sessions(3);
        let first = sessions.get(&keys[0]).unwrap().unwrap().user.clone();
        for key in &keys {
            assert!(Arc::ptr_eq(
                &sessions.get(key).unwrap().unwrap().user,
                &first
            ));
        }
        {
            let reloaded = LiveSessions::load(store).unwrap();
            let a = reloaded.get(&keys[0]).unwrap().unwrap();
            assert!(Arc::ptr_eq(
                &a.user,
                &reloaded.get(&keys[2]).unwrap().unwrap().user
            ));
        }
        drop(first);
        sessions.sweep(|_| false);
        assert!(
            sessions.emails.lock().unwrap().is_empty(),
            "the last session took its email along"
        );
    }

    #[test]
    fn ids_are_unique_well_formed_and_hashed_for_the_store() {
        let a = SessionId::generate().unwrap();
        let b = SessionId::generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(SessionId::parse(a.as_str()), Some(a.clone()));
        assert_ne!(a.key().0.as_slice(), a.as_str().as_bytes());
        assert_eq!(a.key(), SessionId::parse(a.as_str()).unwrap().key());
        assert!(SessionId::parse("short").is_none());
        assert!(SessionId::parse(&"=".repeat(43)).is_none());
    }

    #[test]
    fn writes_go_through_to_the_store_and_reload() {
        let store = Arc::new(MemoryStore::default());
        let sessions = LiveSessions::load(store.clone()).unwrap();
        let key = SessionId::generate().unwrap().key();
        sessions.insert(key, record(100)).unwrap();
        let reloaded = LiveSessions::load(store.clone()).unwrap();
        assert_eq!(reloaded.get(&key).unwrap().as_ref(), Some(&record(100)));
        sessions.remove(&key).unwrap();
        assert!(sessions.get(&key).unwrap().is_none());
        assert!(store.load_all().unwrap().is_empty());
    }

    #[test]
    fn the_refresh_interval_is_a_share_of_the_idle_timeout() {
        assert_eq!(touch_interval(1800), 75);
        assert_eq!(touch_interval(7200), 300);
        assert_eq!(touch_interval(30), 1);
        assert_eq!(touch_interval(1), 0);
    }

    fn stored_last_seen(store: &dyn SessionStore) -> Vec<u64> {
        let mut seen: Vec<u64> = store
            .load_all()
            .unwrap()
            .into_iter()
            .map(|(_, r)| r.last_seen)
            .collect();
        seen.sort_unstable();
        seen
    }

    #[test]
    fn the_idle_refresh_is_made_in_memory_and_written_by_the_flush() {
        let store = Arc::new(Flaky::default());
        let sessions = LiveSessions::load(store.clone()).unwrap();
        let key = SessionId::generate().unwrap().key();
        sessions.insert(key, record(100)).unwrap();
        let puts = store.puts.load(Ordering::SeqCst);
        sessions.touch(&key, 130, EVERY);
        assert_eq!(
            sessions.get(&key).unwrap().unwrap().last_seen,
            100,
            "fresh enough"
        );
        sessions.touch(&key, 161, EVERY);
        sessions.touch(&key, 170, EVERY);
        assert_eq!(sessions.get(&key).unwrap().unwrap().last_seen, 161);
        assert_eq!(
            store.puts.load(Ordering::SeqCst),
            puts,
            "the request path writes nothing"
        );
        assert_eq!(stored_last_seen(store.as_ref()), [100]);

        sessions.flush().unwrap();
        assert_eq!(stored_last_seen(store.as_ref()), [161]);
        assert_eq!(store.puts.load(Ordering::SeqCst), puts + 1);
        sessions.flush().unwrap();
        assert_eq!(
            store.puts.load(Ordering::SeqCst),
            puts + 1,
            "written once, not on every flush"
        );
    }

    #[test]
    fn the_flush_writes_every_refresh_but_no_ended_session() {
        let (store, sessions, keys) = live_sessions(50);
        for key in &keys {
            sessions.touch(key, 200, EVERY);
        }
        sessions.remove(&keys[0]).unwrap();
        assert!(sessions.take(&keys[1]).unwrap());
        sessions.flush().unwrap();
        assert_eq!(stored_last_seen(store.as_ref()), [200; 48]);
        let reloaded = LiveSessions::load(store.clone()).unwrap();
        assert_eq!(reloaded.len(), 48);
        assert!(
            reloaded.get(&keys[0]).unwrap().is_none() && reloaded.get(&keys[1]).unwrap().is_none()
        );
        assert_eq!(reloaded.get(&keys[2]).unwrap().unwrap().last_seen, 200);
    }

    /// A refreshed session whose flush write races `during` (run after the
    /// flush read the session, before its write lands).
    fn flush_racing(during: impl FnOnce(&LiveSessions, SessionKey) + Send + 'static) -> Flaky {
        let store = Arc::new(Flaky::default());
        let sessions = Arc::new(LiveSessions::load(store.clone()).unwrap());
        let key = SessionId::generate().unwrap().key();
        sessions.insert(key, record(100)).unwrap();
        sessions.touch(&key, 200, EVERY);
        let racer = sessions.clone();
        *store.before_put.lock().unwrap() = Some(Box::new(move || during(&racer, key)));
        sessions.flush().unwrap();
        drop(sessions);
        Arc::into_inner(store).expect("the hook ran and let go of the sessions")
    }

    #[test]
    fn a_logout_during_the_flush_write_is_not_undone() {
        let store = flush_racing(|sessions, key| sessions.remove(&key).unwrap());
        assert!(store.inner.load_all().unwrap().is_empty());
    }

    #[test]
    fn an_update_during_the_flush_write_is_what_stays_stored() {
        let store = flush_racing(|sessions, key| {
            sessions
                .update(&key, |s| {
                    s.level = AuthLevel::TwoFactor;
                    true
                })
                .unwrap();
        });
        let stored = store.inner.load_all().unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].1.level, AuthLevel::TwoFactor);
        assert_eq!(stored[0].1.last_seen, 200);
    }

    #[test]
    fn sweep_removes_what_keep_rejects_from_memory_and_store() {
        let store = Arc::new(MemoryStore::default());
        let sessions = LiveSessions::load(store.clone()).unwrap();
        let old = SessionId::generate().unwrap().key();
        let new = SessionId::generate().unwrap().key();
        sessions.insert(old, record(10)).unwrap();
        sessions.insert(new, record(500)).unwrap();
        assert_eq!(sessions.sweep(|r| r.last_seen > 100), 1);
        assert!(sessions.get(&old).unwrap().is_none());
        assert_eq!(store.load_all().unwrap().len(), 1);
    }

    /// A MemoryStore whose writes and flushes can be made to fail, like
    /// sled on a full disk, and whose next write can first run
    /// `before_put`: a logout or an update landing between the flush
    /// task's read of a refreshed session and its write.
    #[derive(Default)]
    struct Flaky {
        inner: MemoryStore,
        broken: AtomicBool,
        reopened: std::sync::atomic::AtomicUsize,
        puts: std::sync::atomic::AtomicUsize,
        before_put: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    }

    impl Flaky {
        fn check(&self) -> Result<(), StoreError> {
            if self.broken.load(Ordering::SeqCst) {
                return Err(StoreError::Write("No space left on device".into()));
            }
            Ok(())
        }
    }

    impl SessionStore for Flaky {
        fn put(&self, key: &SessionKey, session: &SessionRecord) -> Result<(), StoreError> {
            let hook = self.before_put.lock().unwrap().take();
            if let Some(hook) = hook {
                hook();
            }
            self.check()?;
            self.puts.fetch_add(1, Ordering::SeqCst);
            self.inner.put(key, session)
        }
        fn delete(&self, key: &SessionKey) -> Result<(), StoreError> {
            self.check()?;
            self.inner.delete(key)
        }
        fn load_each(
            &self,
            visit: &mut dyn FnMut(SessionKey, SessionRecord),
        ) -> Result<(), StoreError> {
            self.inner.load_each(visit)
        }
        fn flush(&self) -> Result<(), StoreError> {
            self.check()
        }
        fn reopen(&self) -> Result<(), StoreError> {
            self.reopened.fetch_add(1, Ordering::SeqCst);
            self.check()
        }
        fn signup_users(&self) -> Result<Vec<crate::model::User>, StoreError> {
            self.inner.signup_users()
        }
        fn insert_signup_user(&self, u: &crate::model::User) -> Result<bool, StoreError> {
            self.inner.insert_signup_user(u)
        }
    }

    #[test]
    fn a_new_session_that_cannot_be_stored_is_not_issued_and_health_follows() {
        let store = Arc::new(Flaky::default());
        let sessions = LiveSessions::load(store.clone()).unwrap();
        let kept = SessionId::generate().unwrap().key();
        sessions.insert(kept, record(100)).unwrap();
        assert!(sessions.is_healthy());

        store.broken.store(true, Ordering::SeqCst);
        let refused = SessionId::generate().unwrap().key();
        assert!(sessions.insert(refused, record(100)).is_err());
        assert!(
            sessions.get(&refused).unwrap().is_none(),
            "no live session without a stored one"
        );
        assert!(!sessions.is_healthy());
        // Still failing: the periodic flush tries to recover and stays unhealthy.
        assert!(sessions.flush().is_err());
        assert!(!sessions.is_healthy());
        // A logout while the disk is full ends the session at once...
        sessions.remove(&kept).unwrap_err();
        assert!(sessions.get(&kept).unwrap().is_none());

        store.broken.store(false, Ordering::SeqCst);
        sessions.flush().unwrap();
        assert!(sessions.is_healthy());
        assert!(store.reopened.load(Ordering::SeqCst) >= 2);
        // ...and its stored copy is gone once the store works again.
        assert!(store.load_all().unwrap().is_empty());
        sessions.insert(refused, record(100)).unwrap();
        assert_eq!(store.load_all().unwrap().len(), 1);
    }

    #[test]
    fn recovery_writes_the_live_sessions_back() {
        let store = Arc::new(Flaky::default());
        let sessions = LiveSessions::load(store.clone()).unwrap();
        let key = SessionId::generate().unwrap().key();
        sessions.insert(key, record(100)).unwrap();
        // The store lost its copy (an unflushed write, a reopened database).
        store.inner.delete(&key).unwrap();
        store.broken.store(true, Ordering::SeqCst);
        sessions.touch(&key, 200, EVERY);
        assert!(sessions.is_healthy(), "nothing written yet");
        assert!(sessions.flush().is_err());
        assert!(!sessions.is_healthy());
        store.broken.store(false, Ordering::SeqCst);
        sessions.flush().unwrap();
        assert_eq!(store.load_all().unwrap(), vec![(key, record(200))]);
    }
}
