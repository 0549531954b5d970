//! Pending pushes and the webhook's replay guard in Redis, shared by every
//! replica. Keys, under `store.redis.key_prefix`:
//!
//! | key | value |
//! | --- | --- |
//! | `push:<push id>` | hex of the waiting session's key, expiring with the push |
//! | `pushes` | sorted set: push id, scored by when it expires (ms, Redis's clock) |
//! | `lease:<push id>` | the replica polling that push, expiring with its lease |
//! | `seen:<id>` | a webhook call seen, expiring with the replay window |
//!
//! The sorted set is what the poller lists (no SCAN over the sessions);
//! its expired members are dropped whenever it is written or listed, on
//! Redis's clock so that the replicas' clocks do not matter.

use std::sync::Arc;
use std::time::Duration;

use redis::{Script, cmd, pipe};

use super::{Link, hex, unhex};
use crate::store::{PushIndex, ReplayGuard, SessionKey, StoreError};

/// KEYS: entry, set. ARGV: push id, session (hex), ms to live.
const ADD: &str = r"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('ZADD', KEYS[2], now + ARGV[3], ARGV[1])
return 1
";

/// KEYS: set. The push ids still alive.
const PENDING: &str = r"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGE', KEYS[1], 0, -1)
";

/// `SET NX PX` that also lets the holder renew, and only for a push that
/// is still pending. KEYS: lease, entry. ARGV: holder, ms to live.
const LEASE: &str = r"
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
local held = redis.call('GET', KEYS[1])
if held and held ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
";

pub struct RedisPushIndex {
    link: Arc<Link>,
    set: String,
    add: Script,
    pending: Script,
    lease: Script,
}

impl RedisPushIndex {
    pub fn new(link: Arc<Link>) -> Self {
        RedisPushIndex {
            set: link.key("pushes"),
            link,
            add: Script::new(ADD),
            pending: Script::new(PENDING),
            lease: Script::new(LEASE),
        }
    }

    fn entry(&self, push_id: &str) -> String {
        self.link.key(&format!("push:{push_id}"))
    }

    fn lease_key(&self, push_id: &str) -> String {
        self.link.key(&format!("lease:{push_id}"))
    }
}

/// Milliseconds for `PX`: at least one (zero is an error to Redis).
fn millis(ttl: Duration) -> Vec<u8> {
    ttl.as_millis().max(1).to_string().into_bytes()
}

impl PushIndex for RedisPushIndex {
    fn add(&self, push_id: &str, key: &SessionKey, ttl: Duration) -> Result<(), StoreError> {
        self.link.script::<i64>(
            &self.add,
            &[&self.entry(push_id), &self.set],
            &[push_id.as_bytes(), hex(key).as_bytes(), &millis(ttl)],
        )?;
        Ok(())
    }

    fn find(&self, push_id: &str) -> Result<Option<SessionKey>, StoreError> {
        let value: Option<String> = self.link.call(cmd("GET").arg(self.entry(push_id)))?;
        Ok(value.as_deref().and_then(unhex))
    }

    fn remove(&self, push_id: &str) -> Result<(), StoreError> {
        self.link.pipe::<()>(
            pipe()
                .atomic()
                .cmd("DEL")
                .arg(self.entry(push_id))
                .arg(self.lease_key(push_id))
                .ignore()
                .cmd("ZREM")
                .arg(&self.set)
                .arg(push_id)
                .ignore(),
        )
    }

    fn pending(&self) -> Result<Vec<String>, StoreError> {
        self.link.script(&self.pending, &[&self.set], &[])
    }

    fn lease(&self, push_id: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        let taken: i64 = self.link.script(
            &self.lease,
            &[&self.lease_key(push_id), &self.entry(push_id)],
            &[holder.as_bytes(), &millis(ttl)],
        )?;
        Ok(taken == 1)
    }
}

pub struct RedisReplayGuard {
    link: Arc<Link>,
}

impl RedisReplayGuard {
    pub fn new(link: Arc<Link>) -> Self {
        RedisReplayGuard { link }
    }
}

impl ReplayGuard for RedisReplayGuard {
    /// `SET NX EX`: of the replicas that see one id, one gets true. Redis
    /// keeps the window on its own clock; `now` is not needed.
    fn first_use(&self, id: &str, window_secs: u64, _now: u64) -> Result<bool, StoreError> {
        let set: Option<String> = self.link.call(
            cmd("SET")
                .arg(self.link.key(&format!("seen:{id}")))
                .arg(1)
                .arg("NX")
                .arg("EX")
                .arg(window_secs.max(1)),
        )?;
        Ok(set.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::pushes::contract as pushes;
    use crate::store::redis::testing::TestRedis;
    use crate::store::replay::contract as replay;

    fn index(redis: &TestRedis) -> RedisPushIndex {
        RedisPushIndex::new(Arc::new(Link::new(&redis.config("t:")).unwrap()))
    }

    #[test]
    fn finds_lists_and_forgets() {
        let redis = TestRedis::start();
        pushes::finds_lists_and_forgets(&index(&redis));
    }

    #[test]
    fn entries_expire() {
        let redis = TestRedis::start();
        pushes::entries_expire(&index(&redis));
    }

    #[test]
    fn one_holder_at_a_time_across_replicas() {
        let redis = TestRedis::start();
        pushes::one_holder_at_a_time(&index(&redis), &index(&redis));
    }

    #[test]
    fn a_call_seen_on_one_replica_is_refused_on_another() {
        let redis = TestRedis::start();
        let guard = || RedisReplayGuard::new(Arc::new(Link::new(&redis.config("t:")).unwrap()));
        replay::refuses_a_second_use_anywhere(&guard(), &guard());
    }

    #[test]
    fn prefixes_keep_gateways_apart() {
        let redis = TestRedis::start();
        let other = RedisPushIndex::new(Arc::new(Link::new(&redis.config("u:")).unwrap()));
        index(&redis)
            .add("push", &SessionKey([9; 32]), Duration::from_secs(60))
            .unwrap();
        assert_eq!(other.find("push").unwrap(), None);
        assert!(other.pending().unwrap().is_empty());
    }
}
