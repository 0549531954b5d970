//! The regulation counters on Redis, shared by every replica: N replicas
//! keep one limit, not N. Same semantics as `MemoryAttemptCounters`; each
//! operation is one Lua script over both counters of the attempt, so 100
//! reservations at once from any replicas never take more places than the
//! limit. Keys (under `key_prefix`):
//!
//! | key | value |
//! | --- | --- |
//! | `reg:a:<address>` | hash `w` window start, `f` failures, `i` places taken, `b` banned until |
//! | `reg:u:<user key>` | the same, for one user from one address |
//!
//! Times are the caller's clock (`now`, unix seconds), never Redis's, so
//! the flow's clock decides as it does in memory. A counter expires once it
//! behaves like an absent one: its window and its ban are over and no
//! place is held. A place held by a replica that died is given back at the
//! latest one window after it was taken.

use std::sync::Arc;

use redis::Script;

use super::Link;
use crate::store::StoreError;
use crate::store::regulation::{AttemptCounters, AttemptKeys, CounterLimits, Reservation};

/// KEYS: the address's counter, the user's counter. ARGV: operation
/// (`reserve`, `fail`, `succeed`, `banned`), now, window, ban, max per
/// address, max per user, the wait while every place is taken.
/// `reserve` answers 0 when a place is taken in both, else the seconds to
/// wait; `banned` answers 1 or 0.
const REGULATE: &str = r"
local op, now, window, ban = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local max = { tonumber(ARGV[5]), tonumber(ARGV[6]) }
local in_flight_retry = tonumber(ARGV[7])

local function load(key)
  local v = redis.call('HMGET', key, 'w', 'f', 'i', 'b')
  if not v[1] then return nil end
  return { w = tonumber(v[1]), f = tonumber(v[2]), i = tonumber(v[3]), b = tonumber(v[4]) }
end

local function fresh()
  return { w = now, f = 0, i = 0, b = 0 }
end

local function save(key, c)
  local live = math.max(c.w + window, c.b) - now
  if c.i > 0 then live = math.max(live, window) end
  if live <= 0 then
    redis.call('DEL', key)
  else
    redis.call('HSET', key, 'w', c.w, 'f', c.f, 'i', c.i, 'b', c.b)
    redis.call('EXPIRE', key, live)
  end
end

local function roll(c)
  if now - c.w >= window then
    c.w = now
    c.f = 0
  end
end

local function refusal(c, limit)
  if c.b > now then return c.b - now end
  roll(c)
  if c.f + c.i >= limit then return in_flight_retry end
  return nil
end

local function fail(c, limit)
  if c.i > 0 then c.i = c.i - 1 end
  roll(c)
  c.f = c.f + 1
  if c.f >= limit then
    c.b = now + ban
    c.f = 0
    c.w = now
  end
end

local counters = { load(KEYS[1]), load(KEYS[2]) }

if op == 'banned' then
  for n = 1, 2 do
    if counters[n] and counters[n].b > now then return 1 end
  end
  return 0
end

if op == 'reserve' then
  for n = 1, 2 do
    local c = counters[n]
    if c then
      local wait = refusal(c, max[n])
      save(KEYS[n], c)
      if wait then return wait end
    end
  end
  for n = 1, 2 do
    local c = counters[n] or fresh()
    c.i = c.i + 1
    save(KEYS[n], c)
  end
  return 0
end

if op == 'fail' then
  for n = 1, 2 do
    local c = counters[n] or fresh()
    fail(c, max[n])
    save(KEYS[n], c)
  end
  return 0
end

if op == 'succeed' then
  local address, user = counters[1], counters[2]
  if address then
    if address.i > 0 then address.i = address.i - 1 end
    save(KEYS[1], address)
  end
  if user then
    if user.i > 0 then user.i = user.i - 1 end
    user.f = 0
    if user.i == 0 then redis.call('DEL', KEYS[2]) else save(KEYS[2], user) end
  end
  return 0
end

return redis.error_reply('unknown regulation operation ' .. op)
";

/// The operations of `REGULATE`.
#[derive(Clone, Copy)]
enum Operation {
    Reserve,
    Fail,
    Succeed,
    Banned,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Reserve => "reserve",
            Operation::Fail => "fail",
            Operation::Succeed => "succeed",
            Operation::Banned => "banned",
        }
    }
}

pub struct RedisAttemptCounters {
    link: Arc<Link>,
    limits: CounterLimits,
    regulate: Script,
}

impl RedisAttemptCounters {
    /// On the link the store uses (`RedisStore::link`).
    pub fn new(link: Arc<Link>, limits: CounterLimits) -> Self {
        RedisAttemptCounters {
            link,
            limits,
            regulate: Script::new(REGULATE),
        }
    }

    /// Runs one operation on both counters of `keys`.
    fn run(&self, operation: Operation, keys: &AttemptKeys, now: u64) -> Result<u64, StoreError> {
        let address = self.link.key(&format!("reg:a:{}", keys.address));
        let user = self.link.key(&format!("reg:u:{}", keys.user));
        let CounterLimits {
            per_user,
            per_address,
        } = self.limits;
        // Both kinds share `[regulation]`'s window and ban.
        let numbers = [
            now,
            per_user.window,
            per_user.ban,
            u64::from(per_address.max),
            u64::from(per_user.max),
            crate::store::regulation::IN_FLIGHT_RETRY_SECS,
        ]
        .map(|n| n.to_string());
        let mut args: Vec<&[u8]> = vec![operation.as_str().as_bytes()];
        args.extend(numbers.iter().map(|n| n.as_bytes()));
        self.link.script(&self.regulate, &[&address, &user], &args)
    }
}

impl AttemptCounters for RedisAttemptCounters {
    fn reserve(&self, keys: &AttemptKeys, now: u64) -> Result<Reservation, StoreError> {
        Ok(match self.run(Operation::Reserve, keys, now)? {
            0 => Reservation::Taken,
            retry_after => Reservation::Refused { retry_after },
        })
    }

    fn fail(&self, keys: &AttemptKeys, now: u64) -> Result<(), StoreError> {
        self.run(Operation::Fail, keys, now).map(|_| ())
    }

    fn succeed(&self, keys: &AttemptKeys, now: u64) -> Result<(), StoreError> {
        self.run(Operation::Succeed, keys, now).map(|_| ())
    }

    fn is_banned(&self, keys: &AttemptKeys, now: u64) -> Result<bool, StoreError> {
        Ok(self.run(Operation::Banned, keys, now)? == 1)
    }

    /// Redis expires what is over by itself.
    fn sweep(&self, _now: u64) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::redis::testing::TestRedis;
    use crate::store::regulation::contract;

    fn counters(redis: &TestRedis, prefix: &str) -> RedisAttemptCounters {
        let link = Link::new(&redis.config(prefix)).unwrap();
        RedisAttemptCounters::new(Arc::new(link), contract::limits())
    }

    #[test]
    fn redis_counters_keep_the_contract() {
        let redis = TestRedis::start();
        let c = |prefix| counters(&redis, prefix);
        contract::failures_ban_the_user_until_the_ban_passes(&c("t1:"));
        contract::failures_outside_the_window_do_not_add_up(&c("t2:"));
        contract::the_address_counts_every_user(&c("t3:"));
        contract::places_in_flight_count_until_settled(&c("t4:"));
        contract::a_success_keeps_the_address_failures(&c("t5:"));
        contract::settling_an_unknown_counter_is_safe(&c("t6:"));
        contract::sweep_keeps_bans(&c("t7:"));
    }

    #[test]
    fn a_burst_of_100_threads_takes_at_most_max_places_on_redis() {
        let redis = TestRedis::start();
        contract::a_burst_of_100_takes_at_most_max_places(&counters(&redis, "burst:"));
    }

    /// Seconds the counter key has left: -2 when it is gone.
    fn ttl(counters: &RedisAttemptCounters, name: &str) -> i64 {
        let key = counters.link.key(name);
        counters.link.call(redis::cmd("TTL").arg(key)).unwrap()
    }

    #[test]
    fn counters_expire_once_they_behave_like_absent_ones() {
        let redis = TestRedis::start();
        let counters = counters(&redis, "ttl:");
        let x = contract::keys("x", "10.0.0.1");
        let (address, user) = ("reg:a:10.0.0.1", "reg:u:10.0.0.1 x");
        counters.reserve(&x, 1000).unwrap();
        assert!((590..=600).contains(&ttl(&counters, user)), "a window");
        counters.fail(&x, 1100).unwrap();
        assert!((490..=500).contains(&ttl(&counters, user)), "window's rest");
        counters.reserve(&x, 1100).unwrap();
        counters.succeed(&x, 1100).unwrap();
        assert_eq!(ttl(&counters, user), -2, "cleared by the success");
        assert!((490..=500).contains(&ttl(&counters, address)));
        for _ in 0..3 {
            counters.reserve(&x, 1200).unwrap();
            counters.fail(&x, 1200).unwrap();
        }
        assert!((890..=900).contains(&ttl(&counters, user)), "the ban");
        counters.reserve(&x, 5000).unwrap();
        counters.fail(&x, 5000).unwrap();
        counters
            .succeed(&contract::keys("y", "10.0.0.1"), 7000)
            .unwrap();
        assert_eq!(ttl(&counters, address), -2, "over: same as absent");
    }
}
