//! Seeing and ending sessions: the "Your sessions" page and the operator's
//! commands (the admin socket, `authgate session` and `authgate user
//! disable`). Plain logic over the live sessions' user index and the
//! disabled users; nothing here knows HTTP or sockets.
//!
//! A session is named by its reference, a short hex prefix of its store
//! key (the audit trail's `session`), never by its id: the id is the
//! cookie, the reference cannot be turned back into one.

use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::audit::{Audit, Context, Entry, Event, SessionRef};
use crate::clock::Clock;
use crate::store::{AuthLevel, DisabledUsers, LiveSessions, SessionKey, SessionRecord, StoreError};

/// The shortest reference prefix an operator may revoke by: shorter ones
/// match too many sessions to be meant.
pub const MIN_REFERENCE_DIGITS: usize = 6;

/// One session as a user or an operator sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSummary {
    /// `SessionRef`: 12 hex digits of the store key.
    pub reference: String,
    pub user: String,
    pub level: AuthLevel,
    /// "Firefox on Linux"; none for a session stored before this was kept.
    pub device: Option<String>,
    /// The second factor that confirmed it: `totp`, `authy`, `verify`.
    pub method: Option<String>,
    /// The client's address at the login (the audit trail's `client`);
    /// none for a session stored before this was kept.
    #[serde(default)]
    pub client: Option<IpAddr>,
    pub created_at: u64,
    pub last_seen: u64,
}

/// What revoking by reference found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ByReference {
    Ended(SessionSummary),
    NoMatch,
    /// The prefix names this many sessions: none was ended.
    Ambiguous(usize),
    /// Not hex, or shorter than [`MIN_REFERENCE_DIGITS`].
    Malformed,
}

/// How long a session lives: its idle timeout and its lifetime, seconds.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    pub idle: u64,
    pub lifetime: u64,
}

impl Lifetimes {
    /// The same rule as the request path's: a session past either limit
    /// is over, even before the sweep takes it.
    fn is_alive(&self, session: &SessionRecord, now: u64) -> bool {
        now.saturating_sub(session.last_seen) < self.idle
            && now.saturating_sub(session.created_at) < self.lifetime
    }
}

pub struct SessionAdmin {
    sessions: Arc<LiveSessions>,
    disabled: Arc<dyn DisabledUsers>,
    clock: Arc<dyn Clock>,
    lifetimes: Lifetimes,
    audit: Audit,
}

fn summary(key: &SessionKey, session: &SessionRecord) -> SessionSummary {
    SessionSummary {
        reference: SessionRef::of(key).to_hex(),
        user: session.user.to_string(),
        level: session.level,
        device: session.device.map(|device| device.label()),
        method: session
            .second_factor_method
            .map(|method| method.as_str().to_owned()),
        client: session.client,
        created_at: session.created_at,
        last_seen: session.last_seen,
    }
}

fn key_hex(key: &SessionKey) -> String {
    key.0.iter().map(|b| format!("{b:02x}")).collect()
}

impl SessionAdmin {
    pub fn new(
        sessions: Arc<LiveSessions>,
        disabled: Arc<dyn DisabledUsers>,
        clock: Arc<dyn Clock>,
        lifetimes: Lifetimes,
    ) -> Self {
        SessionAdmin {
            sessions,
            disabled,
            clock,
            lifetimes,
            audit: Audit::off(),
        }
    }

    /// Writes revokes, disables and enables to `audit` (off by default).
    pub fn with_audit(mut self, audit: Audit) -> Self {
        self.audit = audit;
        self
    }

    /// The user's live sessions (or everyone's), oldest first, with their
    /// keys: the index's, less any that timed out but were not swept yet.
    fn live(&self, user: Option<&str>) -> Result<Vec<(SessionKey, SessionRecord)>, StoreError> {
        let now = self.clock.now();
        let mut sessions = match user {
            Some(email) => self.sessions.sessions_of(email.trim())?,
            None => self.sessions.all_sessions()?,
        };
        sessions.retain(|(_, session)| self.lifetimes.is_alive(session, now));
        sessions.sort_by(|(a_key, a), (b_key, b)| {
            (&a.user, a.created_at, a_key.0).cmp(&(&b.user, b.created_at, b_key.0))
        });
        Ok(sessions)
    }

    /// The live sessions of `user`, or of everyone.
    pub fn list(&self, user: Option<&str>) -> Result<Vec<SessionSummary>, StoreError> {
        Ok(self
            .live(user)?
            .iter()
            .map(|(key, session)| summary(key, session))
            .collect())
    }

    /// The user's live sessions, each with whether it is `current`.
    pub fn list_seen_from(
        &self,
        user: &str,
        current: &SessionKey,
    ) -> Result<Vec<(SessionSummary, bool)>, StoreError> {
        Ok(self
            .live(Some(user))?
            .iter()
            .map(|(key, session)| (summary(key, session), key == current))
            .collect())
    }

    /// Ends one session; true when this call ended it.
    fn end(&self, key: &SessionKey, user: &str, context: &Context) -> Result<bool, StoreError> {
        let ended = self.sessions.take(key)?;
        if ended {
            self.audit.emit(Entry {
                event: Event::SessionRevoked,
                user: Some(user.to_owned()),
                session: Some(SessionRef::of(key)),
                context: context.clone(),
            });
        }
        Ok(ended)
    }

    /// Ends every session of `user` but `keep`; how many ended.
    fn end_all_of(
        &self,
        user: &str,
        keep: Option<&SessionKey>,
        context: &Context,
    ) -> Result<usize, StoreError> {
        let mut ended = 0;
        for (key, session) in self.sessions.sessions_of(user.trim())? {
            if Some(&key) != keep && self.end(&key, &session.user, context)? {
                ended += 1;
            }
        }
        Ok(ended)
    }

    /// Every session of `user` ends (an operator's revoke); how many.
    pub fn revoke_user(&self, user: &str) -> Result<usize, StoreError> {
        self.end_all_of(user, None, &Context::default())
    }

    /// "Sign out everywhere else": every session of `user` but `current`.
    pub fn revoke_others(
        &self,
        user: &str,
        current: &SessionKey,
        context: &Context,
    ) -> Result<usize, StoreError> {
        self.end_all_of(user, Some(current), context)
    }

    /// Ends the one session whose store key starts with `prefix` (hex, any
    /// case), among `owner`'s sessions when given (a user signing out one
    /// of their own), else among all (an operator).
    pub fn revoke_reference(
        &self,
        prefix: &str,
        owner: Option<&str>,
        context: &Context,
    ) -> Result<ByReference, StoreError> {
        let prefix = prefix.trim().to_ascii_lowercase();
        if prefix.len() < MIN_REFERENCE_DIGITS || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(ByReference::Malformed);
        }
        let mut matches: Vec<(SessionKey, SessionRecord)> = self
            .live(owner)?
            .into_iter()
            .filter(|(key, _)| key_hex(key).starts_with(&prefix))
            .collect();
        match matches.len() {
            0 => Ok(ByReference::NoMatch),
            1 => {
                let (key, session) = matches.remove(0);
                if self.end(&key, &session.user, context)? {
                    Ok(ByReference::Ended(summary(&key, &session)))
                } else {
                    Ok(ByReference::NoMatch)
                }
            }
            n => Ok(ByReference::Ambiguous(n)),
        }
    }

    /// Disables the user, then ends their sessions: a login that passed
    /// its check just before cannot outlive the disable. Returns whether
    /// they were enabled before, and how many sessions ended.
    pub fn disable(&self, user: &str) -> Result<(bool, usize), StoreError> {
        let changed = self.disabled.set_disabled(user, true)?;
        if changed {
            self.audit_user(Event::UserDisabled, user);
        }
        let ended = self.revoke_user(user)?;
        Ok((changed, ended))
    }

    /// Lets the user log in again; whether they were disabled.
    pub fn enable(&self, user: &str) -> Result<bool, StoreError> {
        let changed = self.disabled.set_disabled(user, false)?;
        if changed {
            self.audit_user(Event::UserEnabled, user);
        }
        Ok(changed)
    }

    /// An operator removed the user's second factors (`reset-2fa`): for
    /// the audit trail, which the factors' store does not write to.
    pub fn factors_removed(&self, user: &str) {
        self.audit_user(Event::FactorRemoved, user);
    }

    pub fn is_disabled(&self, user: &str) -> Result<bool, StoreError> {
        self.disabled.is_disabled(user)
    }

    pub fn disabled_users(&self) -> Result<Vec<String>, StoreError> {
        self.disabled.disabled_users()
    }

    fn audit_user(&self, event: Event, user: &str) {
        self.audit.emit(Entry {
            event,
            user: Some(user.trim().to_owned()),
            session: None,
            context: Context::default(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::testing::ManualClock;
    use crate::store::{MemoryStore, SessionId};

    const IDLE: u64 = 600;

    fn record(user: &str, created_at: u64) -> SessionRecord {
        SessionRecord {
            user: user.into(),
            level: AuthLevel::TwoFactor,
            auth_time: created_at,
            second_factor_time: Some(created_at),
            created_at,
            last_seen: created_at,
            challenge: None,
            device: None,
            second_factor_method: None,
            client: None,
        }
    }

    struct World {
        admin: SessionAdmin,
        sessions: Arc<LiveSessions>,
        clock: Arc<ManualClock>,
    }

    fn world() -> World {
        let store = Arc::new(MemoryStore::default());
        let sessions = Arc::new(LiveSessions::load(store.clone()).unwrap());
        let clock = Arc::new(ManualClock::at(1_000));
        let lifetimes = Lifetimes {
            idle: IDLE,
            lifetime: 3_600,
        };
        let admin = SessionAdmin::new(sessions.clone(), store, clock.clone(), lifetimes);
        World {
            admin,
            sessions,
            clock,
        }
    }

    fn login(world: &World, user: &str, at: u64) -> SessionKey {
        let key = SessionId::generate().unwrap().key();
        world.sessions.insert(key, record(user, at)).unwrap();
        key
    }

    fn references(list: &[SessionSummary]) -> Vec<String> {
        list.iter().map(|s| s.reference.clone()).collect()
    }

    #[test]
    fn a_user_sees_their_live_sessions_oldest_first_and_which_is_theirs() {
        let world = world();
        let newer = login(&world, "a@example.com", 990);
        let older = login(&world, "a@example.com", 980);
        login(&world, "b@example.com", 990);
        let idle = login(&world, "a@example.com", 1_000 - IDLE);
        let seen = world.admin.list_seen_from("A@example.com", &newer).unwrap();
        let expected = [
            (SessionRef::of(&older).to_hex(), false),
            (SessionRef::of(&newer).to_hex(), true),
        ];
        let got: Vec<(String, bool)> = seen.into_iter().map(|(s, me)| (s.reference, me)).collect();
        assert_eq!(got, expected, "the idle one ({idle:?}) is not listed");
        assert_eq!(world.admin.list(None).unwrap().len(), 3);
    }

    #[test]
    fn sign_out_everywhere_else_keeps_only_this_session() {
        let world = world();
        let mine = login(&world, "a@example.com", 990);
        login(&world, "a@example.com", 991);
        login(&world, "a@example.com", 992);
        let theirs = login(&world, "b@example.com", 990);
        let ended = world
            .admin
            .revoke_others("a@example.com", &mine, &Context::default())
            .unwrap();
        assert_eq!(ended, 2);
        assert_eq!(
            references(&world.admin.list(Some("a@example.com")).unwrap()),
            vec![SessionRef::of(&mine).to_hex()]
        );
        assert!(world.sessions.get(&theirs).unwrap().is_some());
    }

    #[test]
    fn a_reference_ends_one_session_only_among_the_owners() {
        let world = world();
        let a = login(&world, "a@example.com", 990);
        let b = login(&world, "b@example.com", 990);
        let b_ref = SessionRef::of(&b).to_hex();
        let none = Context::default();
        assert_eq!(
            world
                .admin
                .revoke_reference(&b_ref, Some("a@example.com"), &none)
                .unwrap(),
            ByReference::NoMatch,
            "a user cannot end another user's session"
        );
        assert_eq!(
            world.admin.revoke_reference("abc", None, &none).unwrap(),
            ByReference::Malformed
        );
        assert_eq!(
            world
                .admin
                .revoke_reference("zzzzzzzz", None, &none)
                .unwrap(),
            ByReference::Malformed
        );
        let ended = world
            .admin
            .revoke_reference(&b_ref.to_uppercase(), None, &none)
            .unwrap();
        assert!(matches!(ended, ByReference::Ended(s) if s.user == "b@example.com"));
        assert!(world.sessions.get(&b).unwrap().is_none());
        assert!(world.sessions.get(&a).unwrap().is_some());
    }

    #[test]
    fn a_prefix_of_several_sessions_ends_none() {
        let world = world();
        // References of 12 digits that share their first 8: the map keys
        // by the first 16 bytes, which differ.
        let one = SessionKey([0xab; 32]);
        let mut two = one;
        two.0[4] = 0;
        world
            .sessions
            .insert(one, record("a@example.com", 990))
            .unwrap();
        world
            .sessions
            .insert(two, record("a@example.com", 990))
            .unwrap();
        let none = Context::default();
        assert_eq!(
            world.admin.revoke_reference("abab", None, &none).unwrap(),
            ByReference::Malformed
        );
        assert_eq!(
            world.admin.revoke_reference("ababab", None, &none).unwrap(),
            ByReference::Ambiguous(2)
        );
        assert_eq!(world.admin.list(None).unwrap().len(), 2);
    }

    #[test]
    fn disable_ends_every_session_and_enable_undoes_only_the_flag() {
        let world = world();
        login(&world, "a@example.com", 990);
        login(&world, "a@example.com", 995);
        let other = login(&world, "b@example.com", 990);
        assert_eq!(world.admin.disable("A@example.com").unwrap(), (true, 2));
        assert!(world.admin.is_disabled("a@example.com").unwrap());
        assert!(world.admin.list(Some("a@example.com")).unwrap().is_empty());
        assert!(world.sessions.get(&other).unwrap().is_some());
        assert_eq!(world.admin.disable("a@example.com").unwrap(), (false, 0));
        assert_eq!(world.admin.disabled_users().unwrap(), vec!["a@example.com"]);
        world.clock.advance(1);
        assert!(world.admin.enable("a@example.com").unwrap());
        assert!(!world.admin.is_disabled("a@example.com").unwrap());
        assert!(!world.admin.enable("a@example.com").unwrap());
    }
}
