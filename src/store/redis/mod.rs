//! Redis (or Valkey) as the store several gateway replicas share. Same
//! traits and semantics as `SledStore`; what only a shared store needs
//! (a fresh read, compare-and-swap, the invalidation feed) is
//! [`SharedSessions`]. Keys, all under `store.redis.key_prefix`:
//!
//! | key | value |
//! | --- | --- |
//! | `s:<hex of the session key>` | the session (JSON), expiring with its idle timeout or lifetime |
//! | `f:<email>` | the user's factors (JSON): sealed TOTP secret, last step, last method |
//! | `sub:<method>:<email>` | the provider's id for the user |
//! | `u:<lower-cased email>` | set: the user's session keys (`s:…`), living as long as the longest of them; a member whose session is gone is pruned when the set is read |
//! | `signups` | hash: email → sign-up user (JSON) |
//! | `disabled` | set: the lower-cased emails of disabled users |
//! | `invalidate` | pub/sub channel: `<replica>:<hex key>`, or `<replica>:*` |

mod feed;
mod link;
mod pushes;
mod regulation;
#[cfg(test)]
pub mod testing;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use redis::{Script, cmd};

pub use self::link::Link;
pub use self::pushes::{RedisPushIndex, RedisReplayGuard};
pub use self::regulation::RedisAttemptCounters;
use super::factors::UserFactors;
use super::{
    FactorStore, SessionCache, SessionKey, SessionRecord, SessionStore, SharedSessions, StoreError,
    SubjectCache, TotpRecord, subject_key,
};
use crate::config::RedisConfig;
use crate::model::{Method, User};

/// How long a session key lives in Redis: what its idle timeout and its
/// lifetime leave, counted from its last use.
#[derive(Debug, Clone, Copy)]
pub struct SessionTimeouts {
    pub idle: Duration,
    pub lifetime: Duration,
}

/// Keys read per SCAN step when every session is listed (`store copy`).
const SCAN_COUNT: usize = 1000;

/// A new session and its place in its user's set, in one step; the set
/// lives at least as long as the session. KEYS: session, user's set.
/// ARGV: value, seconds to live.
const PUT_SESSION: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('SADD', KEYS[2], KEYS[1])
if redis.call('TTL', KEYS[2]) < tonumber(ARGV[2]) then redis.call('EXPIRE', KEYS[2], ARGV[2]) end
return 1
";

/// Compare-and-swap of one session, announced to the other replicas in
/// the same step; the user's set lives at least as long as the session
/// now does. KEYS: session, user's set. ARGV: expected value, new value,
/// seconds to live, channel, message.
const REPLACE_SESSION: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
redis.call('SADD', KEYS[2], KEYS[1])
if redis.call('TTL', KEYS[2]) < tonumber(ARGV[3]) then redis.call('EXPIRE', KEYS[2], ARGV[3]) end
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
";

/// Ends a session: deleted, taken out of its user's set (named from the
/// stored record's user), announced. KEYS: session. ARGV: the prefix of
/// the users' sets, channel, message. Returns 1 when it was there.
const TAKE_SESSION: &str = r"
local value = redis.call('GET', KEYS[1])
if not value then
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  return 0
end
local ok, record = pcall(cjson.decode, value)
if ok and type(record) == 'table' and type(record['user']) == 'string' then
  redis.call('SREM', ARGV[1] .. string.lower(record['user']), KEYS[1])
end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
";

/// Compare-and-swap of a plain value; an empty string stands for "absent"
/// on either side (no stored value is empty: they are JSON).
const REPLACE_VALUE: &str = r"
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '' then
  if current then return 0 end
elseif current ~= ARGV[1] then
  return 0
end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2]) end
return 1
";

pub struct RedisStore {
    link: Arc<Link>,
    timeouts: SessionTimeouts,
    min_replicas_ack: u32,
    /// This process's name on the invalidation channel: it skips its own
    /// messages (its cache is already up to date).
    origin: String,
    channel: String,
    put_session: Script,
    replace_session: Script,
    take_session: Script,
    replace_value: Script,
}

fn encode(record: &SessionRecord) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(record).map_err(|e| StoreError::Write(e.to_string()))
}

fn decode(value: &[u8]) -> Option<SessionRecord> {
    // Like sled: a record this version cannot read is no session.
    serde_json::from_slice(value).ok()
}

fn hex(key: &SessionKey) -> String {
    key.0.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<SessionKey> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut key = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        key[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(SessionKey(key))
}

impl RedisStore {
    /// Checks the settings; connects on first use (see [`Link`]).
    pub fn connect(config: &RedisConfig, timeouts: SessionTimeouts) -> Result<Self, StoreError> {
        let link = Link::new(config)?;
        let mut origin = [0u8; 8];
        getrandom::getrandom(&mut origin).map_err(|e| StoreError::Write(e.to_string()))?;
        Ok(RedisStore {
            channel: link.key("invalidate"),
            link: Arc::new(link),
            timeouts,
            min_replicas_ack: config.min_replicas_ack,
            origin: origin.iter().map(|b| format!("{b:02x}")).collect(),
            put_session: Script::new(PUT_SESSION),
            replace_session: Script::new(REPLACE_SESSION),
            take_session: Script::new(TAKE_SESSION),
            replace_value: Script::new(REPLACE_VALUE),
        })
    }

    /// The link, for what else lives in Redis (regulation, pushes).
    pub fn link(&self) -> &Arc<Link> {
        &self.link
    }

    /// Whether the last call reached Redis (the store's gauge).
    pub fn is_connected(&self) -> bool {
        self.link.is_connected()
    }

    fn session_key(&self, key: &SessionKey) -> String {
        self.link.key(&format!("s:{}", hex(key)))
    }

    /// The set of the user's session keys. Lower-cased as Lua's
    /// `string.lower` does (ASCII only), which `TAKE_SESSION` repeats.
    fn user_sessions_key(&self, email: &str) -> String {
        self.link.key(&format!("u:{}", email.to_ascii_lowercase()))
    }

    fn message(&self, key: &SessionKey) -> String {
        format!("{}:{}", self.origin, hex(key))
    }

    /// Seconds the session has left: its idle timeout from its last use,
    /// cut short by its lifetime. At least one, so that the key is set.
    fn ttl(&self, record: &SessionRecord) -> u64 {
        let used = record.last_seen.saturating_sub(record.created_at);
        let lifetime_left = self.timeouts.lifetime.as_secs().saturating_sub(used);
        self.timeouts.idle.as_secs().min(lifetime_left).max(1)
    }

    fn user_factors(&self, email: &str) -> Result<(Option<Vec<u8>>, UserFactors), StoreError> {
        let key = self.link.key(&format!("f:{}", UserFactors::key(email)));
        let value: Option<Vec<u8>> = self.link.call(cmd("GET").arg(&key))?;
        let factors = match &value {
            Some(bytes) => UserFactors::decode(bytes)?,
            None => UserFactors::default(),
        };
        Ok((value, factors))
    }

    /// The read-modify-write of sled's `modify_factors`, with the swap in
    /// one Lua script: of two replicas using one TOTP step, one wins.
    fn modify_factors(
        &self,
        email: &str,
        mut change: impl FnMut(&mut UserFactors) -> bool,
    ) -> Result<bool, StoreError> {
        let key = self.link.key(&format!("f:{}", UserFactors::key(email)));
        loop {
            let (current, mut factors) = self.user_factors(email)?;
            if !change(&mut factors) {
                return Ok(false);
            }
            let new = if factors.is_empty() {
                Vec::new()
            } else {
                factors.encode()?
            };
            let expected = current.unwrap_or_default();
            let swapped: i64 =
                self.link
                    .script(&self.replace_value, &[&key], &[&expected, &new])?;
            if swapped == 1 {
                return Ok(true);
            }
        }
    }
}

impl SessionStore for RedisStore {
    /// A new session (a login, a step-up: a fresh random key that no
    /// replica can have cached), so nothing is announced. Every change of
    /// an existing one goes through `replace` or `take`, which announce it.
    fn put(&self, key: &SessionKey, session: &SessionRecord) -> Result<(), StoreError> {
        self.link.script::<i64>(
            &self.put_session,
            &[
                &self.session_key(key),
                &self.user_sessions_key(&session.user),
            ],
            &[&encode(session)?, self.ttl(session).to_string().as_bytes()],
        )?;
        Ok(())
    }

    fn delete(&self, key: &SessionKey) -> Result<(), StoreError> {
        self.take(key).map(|_| ())
    }

    fn load_each(
        &self,
        visit: &mut dyn FnMut(SessionKey, SessionRecord),
    ) -> Result<(), StoreError> {
        let prefix_len = self.link.key("s:").len();
        self.scan("s:", |keys| {
            let values: Vec<Option<Vec<u8>>> = self.link.call(cmd("MGET").arg(&keys))?;
            for (name, value) in keys.iter().zip(values) {
                let key = name.get(prefix_len..).and_then(unhex);
                if let (Some(key), Some(record)) = (key, value.as_deref().and_then(decode)) {
                    visit(key, record);
                }
            }
            Ok(())
        })
    }

    /// Redis makes a write durable by itself (as its persistence is set).
    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Reaches Redis again: a failed link reconnects on the next call.
    fn reopen(&self) -> Result<(), StoreError> {
        self.link.call::<String>(&cmd("PING")).map(|_| ())
    }

    fn signup_users(&self) -> Result<Vec<User>, StoreError> {
        let values: Vec<Vec<u8>> = self.link.call(cmd("HVALS").arg(self.link.key("signups")))?;
        values
            .iter()
            .map(|v| serde_json::from_slice(v).map_err(|e| StoreError::Read(e.to_string())))
            .collect()
    }

    fn signup_user(&self, email: &str) -> Result<Option<User>, StoreError> {
        let value: Option<Vec<u8>> = self.link.call(
            cmd("HGET")
                .arg(self.link.key("signups"))
                .arg(email.to_lowercase()),
        )?;
        value
            .map(|v| serde_json::from_slice(&v).map_err(|e| StoreError::Read(e.to_string())))
            .transpose()
    }

    fn insert_signup_user(&self, user: &User) -> Result<bool, StoreError> {
        let value = serde_json::to_vec(user).map_err(|e| StoreError::Write(e.to_string()))?;
        let stored: i64 = self.link.call(
            cmd("HSETNX")
                .arg(self.link.key("signups"))
                .arg(user.email.to_lowercase())
                .arg(value),
        )?;
        Ok(stored == 1)
    }
}

impl SharedSessions for RedisStore {
    fn fetch(&self, key: &SessionKey) -> Result<Option<SessionRecord>, StoreError> {
        let value: Option<Vec<u8>> = self.link.call(cmd("GET").arg(self.session_key(key)))?;
        Ok(value.as_deref().and_then(decode))
    }

    fn replace(
        &self,
        key: &SessionKey,
        expected: &SessionRecord,
        new: &SessionRecord,
    ) -> Result<bool, StoreError> {
        let swapped: i64 = self.link.script(
            &self.replace_session,
            &[&self.session_key(key), &self.user_sessions_key(&new.user)],
            &[
                &encode(expected)?,
                &encode(new)?,
                self.ttl(new).to_string().as_bytes(),
                self.channel.as_bytes(),
                self.message(key).as_bytes(),
            ],
        )?;
        Ok(swapped == 1)
    }

    fn take(&self, key: &SessionKey) -> Result<bool, StoreError> {
        let deleted: i64 = self.link.script(
            &self.take_session,
            &[&self.session_key(key)],
            &[
                self.link.key("u:").as_bytes(),
                self.channel.as_bytes(),
                self.message(key).as_bytes(),
            ],
        )?;
        Ok(deleted == 1)
    }

    /// The set's members whose session is still stored and still the
    /// user's; the others (expired, or ended by a write that lost the
    /// set) are pruned from the set as they are found.
    fn sessions_of(&self, email: &str) -> Result<Vec<(SessionKey, SessionRecord)>, StoreError> {
        let set = self.user_sessions_key(email);
        let members: Vec<String> = self.link.call(cmd("SMEMBERS").arg(&set))?;
        if members.is_empty() {
            return Ok(Vec::new());
        }
        let values: Vec<Option<Vec<u8>>> = self.link.call(cmd("MGET").arg(&members))?;
        let prefix_len = self.link.key("s:").len();
        let mut live = Vec::new();
        let mut dead = Vec::new();
        for (member, value) in members.iter().zip(values) {
            let key = member.get(prefix_len..).and_then(unhex);
            let record = value.as_deref().and_then(decode);
            match (key, record) {
                (Some(key), Some(record)) if record.user.eq_ignore_ascii_case(email) => {
                    live.push((key, record));
                }
                _ => dead.push(member),
            }
        }
        if !dead.is_empty() {
            self.link.call::<i64>(cmd("SREM").arg(&set).arg(&dead))?;
        }
        Ok(live)
    }

    /// `WAIT` for `min_replicas_ack` replicas: a failover right after a
    /// login must not lose the session.
    fn acknowledge(&self) -> Result<(), StoreError> {
        if self.min_replicas_ack == 0 {
            return Ok(());
        }
        let wait_ms = u64::try_from(self.link.handle().timeout().as_millis()).unwrap_or(u64::MAX);
        let acked: u32 = self
            .link
            .call(cmd("WAIT").arg(self.min_replicas_ack).arg(wait_ms / 2))?;
        if acked < self.min_replicas_ack {
            return Err(StoreError::Unavailable(format!(
                "{acked} of store.redis.min_replicas_ack = {} replicas hold the new session",
                self.min_replicas_ack
            )));
        }
        Ok(())
    }

    fn watch(&self, cache: Arc<dyn SessionCache>) {
        feed::start(&self.link, &self.channel, &self.origin, cache);
    }
}

/// The set `disabled` of lower-cased emails, read at every login.
impl super::DisabledUsers for RedisStore {
    fn is_disabled(&self, email: &str) -> Result<bool, StoreError> {
        let key = super::disabled::disabled_key(email);
        let member: i64 = self
            .link
            .call(cmd("SISMEMBER").arg(self.link.key("disabled")).arg(key))?;
        Ok(member == 1)
    }

    fn set_disabled(&self, email: &str, disabled: bool) -> Result<bool, StoreError> {
        let key = super::disabled::disabled_key(email);
        let verb = if disabled { "SADD" } else { "SREM" };
        let changed: i64 = self
            .link
            .call(cmd(verb).arg(self.link.key("disabled")).arg(key))?;
        Ok(changed == 1)
    }

    fn disabled_users(&self) -> Result<Vec<String>, StoreError> {
        let mut users: Vec<String> = self
            .link
            .call(cmd("SMEMBERS").arg(self.link.key("disabled")))?;
        users.sort_unstable();
        Ok(users)
    }
}

impl SubjectCache for RedisStore {
    fn factor_subject(&self, method: &str, email: &str) -> Result<Option<String>, StoreError> {
        let key = self
            .link
            .key(&format!("sub:{}", subject_key(method, email)));
        self.link.call(cmd("GET").arg(key))
    }

    fn set_factor_subject(
        &self,
        method: &str,
        email: &str,
        subject: &str,
    ) -> Result<(), StoreError> {
        let key = self
            .link
            .key(&format!("sub:{}", subject_key(method, email)));
        self.link.call(cmd("SET").arg(key).arg(subject))
    }
}

impl RedisStore {
    fn credential_id_key(&self, id: &str) -> String {
        self.link.key(&format!("w:{id}"))
    }
}

impl super::factors::FactorCells for RedisStore {
    fn read_factors(&self, email: &str) -> Result<UserFactors, StoreError> {
        Ok(self.user_factors(email)?.1)
    }

    fn modify_factors_with(
        &self,
        email: &str,
        _durable: bool,
        change: &mut dyn FnMut(&mut UserFactors) -> bool,
    ) -> Result<bool, StoreError> {
        self.modify_factors(email, change)
    }

    fn claim_credential_id(&self, id: &str, owner: &str) -> Result<bool, StoreError> {
        let key = self.credential_id_key(id);
        let set: Option<String> = self.link.call(cmd("SET").arg(&key).arg(owner).arg("NX"))?;
        if set.is_some() {
            return Ok(true);
        }
        let current: Option<String> = self.link.call(cmd("GET").arg(&key))?;
        Ok(current.as_deref() == Some(owner))
    }

    fn release_credential_id(&self, id: &str, owner: &str) -> Result<(), StoreError> {
        let key = self.credential_id_key(id);
        // Only while it names `owner`: a new owner's claim stays.
        let _: i64 = self
            .link
            .script(&self.replace_value, &[&key], &[owner.as_bytes(), b""])?;
        Ok(())
    }

    fn credential_id_owner(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.link.call(cmd("GET").arg(self.credential_id_key(id)))
    }
}

impl FactorStore for RedisStore {
    super::factors::webauthn_methods!();

    fn totp(&self, email: &str) -> Result<Option<TotpRecord>, StoreError> {
        Ok(self.user_factors(email)?.1.totp)
    }

    fn set_totp(&self, email: &str, record: &TotpRecord) -> Result<(), StoreError> {
        self.modify_factors(email, |f| f.set_totp(record))?;
        Ok(())
    }

    fn remove_totp(&self, email: &str) -> Result<bool, StoreError> {
        self.modify_factors(email, UserFactors::remove_totp)
    }

    fn use_totp_step(&self, email: &str, step: u64) -> Result<bool, StoreError> {
        self.modify_factors(email, |f| f.use_totp_step(step))
    }

    fn reseal_totp(&self, email: &str, from: &str, to: &str) -> Result<bool, StoreError> {
        self.modify_factors(email, |f| f.reseal_totp(from, to))
    }

    fn last_method(&self, email: &str) -> Result<Option<Method>, StoreError> {
        Ok(self.user_factors(email)?.1.last_method())
    }

    fn set_last_method(&self, email: &str, method: Method) -> Result<(), StoreError> {
        self.modify_factors(email, |f| f.set_last_method(method))?;
        Ok(())
    }
}

/// Listing and whole-record writes for `store copy`.
impl super::copy::StoreDump for RedisStore {
    /// Only the kinds a copy writes count: counters and pending pushes
    /// that a gateway left behind expire by themselves.
    fn is_blank(&self) -> Result<bool, StoreError> {
        let sets: i64 = self.link.call(
            cmd("EXISTS")
                .arg(self.link.key("signups"))
                .arg(self.link.key("disabled")),
        )?;
        if sets != 0 {
            return Ok(false);
        }
        for kind in ["s:", "f:", "sub:"] {
            let mut found = false;
            self.scan(kind, |_| {
                found = true;
                Ok(())
            })?;
            if found {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn all_user_factors(&self) -> Result<Vec<(String, UserFactors)>, StoreError> {
        let mut all = Vec::new();
        for (email, value) in self.scan_values("f:")? {
            all.push((email, UserFactors::decode(&value)?));
        }
        Ok(all)
    }

    fn put_user_factors(&self, email: &str, factors: &UserFactors) -> Result<(), StoreError> {
        let key = self.link.key(&format!("f:{}", UserFactors::key(email)));
        self.link.call(cmd("SET").arg(key).arg(factors.encode()?))
    }

    fn all_factor_subjects(&self) -> Result<Vec<super::copy::FactorSubject>, StoreError> {
        let mut all = Vec::new();
        for (name, value) in self.scan_values("sub:")? {
            let (method, email) = name.split_once('\0').ok_or_else(|| {
                StoreError::Read(format!("provider id key {name:?} has no method"))
            })?;
            all.push(super::copy::FactorSubject {
                method: method.to_owned(),
                email: email.to_owned(),
                subject: String::from_utf8_lossy(&value).into_owned(),
            });
        }
        Ok(all)
    }
}

impl RedisStore {
    /// Every key of one kind (`f:`, ...), a SCAN step at a time. The
    /// prefix is matched literally, glob characters and all.
    fn scan(
        &self,
        kind: &str,
        mut visit: impl FnMut(Vec<String>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let literal: String = self
            .link
            .key(kind)
            .chars()
            .flat_map(|c| match c {
                '*' | '?' | '[' | ']' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        let pattern = format!("{literal}*");
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = self.link.call(
                cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(SCAN_COUNT),
            )?;
            if !keys.is_empty() {
                visit(keys)?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    /// Every key of one kind with its value; the names without the
    /// prefix and kind. A key gone between SCAN and MGET is left out.
    fn scan_values(&self, kind: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let skip = self.link.key(kind).len();
        let mut all = Vec::new();
        self.scan(kind, |keys| {
            let values: Vec<Option<Vec<u8>>> = self.link.call(cmd("MGET").arg(&keys))?;
            for (name, value) in keys.iter().zip(values) {
                if let (Some(name), Some(value)) = (name.get(skip..), value) {
                    all.push((name.to_owned(), value));
                }
            }
            Ok(())
        })?;
        Ok(all)
    }
}
