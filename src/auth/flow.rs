//! The login state machine of DESIGN.md, over traits (users, store, clock).
//!
//! States: `anonymous` (no live session) → `one_factor` (password checked)
//! → `two_factor`. Every arrow that raises the level issues a new session
//! id; logout, idle timeout and lifetime lead back to `anonymous`. The
//! second-factor arrows plug in at `AuthLevel::TwoFactor`.

use std::net::IpAddr;
use std::sync::Arc;

use crate::audit::Audit;
use crate::clock::Clock;
use crate::config::{SecondFactorMode, TotpEnrollment};
use crate::factor::SecondFactor;
use crate::factor::totp::TotpFactor;
use crate::factor::webauthn::WebauthnFactor;
use crate::model::User;
use crate::model::{Device, Policy};
use crate::store::{AuthLevel, FactorStore, PushIndex, SessionKey, SessionRecord, StoreError};
use crate::store::{DisabledUsers, LiveSessions, SessionId};
use crate::users::UserDirectory;

use super::error::AuthError;
use super::password::{MAX_PASSWORD_CHARS, PasswordChecker};
use super::regulation::Regulation;

#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub idle_timeout: u64,
    pub lifetime: u64,
    pub second_factor: SecondFactorMode,
    /// Seconds a challenge (and its push) lives.
    pub challenge_timeout: u64,
    /// The push's message; `{host}` is the host of the page asked for.
    pub onetouch_message: String,
    pub totp_enrollment: TotpEnrollment,
    /// `webauthn.passwordless`: the login page offers passkeys.
    pub passwordless: bool,
}

/// What the per-request check decided.
#[derive(Debug, Clone)]
pub enum Access {
    /// Let it through; `Some` carries the identity for the headers.
    Granted(Option<Arc<User>>),
    /// A push was approved since the last request: the session is now
    /// `two_factor` under a new id, which the response must set.
    SteppedUp(Arc<User>, SessionId),
    NeedsLogin,
    NeedsSecondFactor,
    Denied,
}

/// A request's live session and its user.
pub struct Identified {
    pub id: SessionId,
    /// The store key of `id`, hashed once per request.
    pub key: SessionKey,
    pub session: SessionRecord,
    pub user: Arc<User>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepUp {
    /// The response can carry the new session cookie.
    Allowed,
    /// It cannot (forward-auth): leave the step for the portal.
    Deferred,
}

#[derive(Debug)]
pub struct LoginSuccess {
    pub session_id: SessionId,
    pub level: AuthLevel,
    pub user: Arc<User>,
}

/// What the flow runs on: swapped for in-memory stand-ins in tests.
pub struct AuthDeps {
    pub sessions: Arc<LiveSessions>,
    pub users: Arc<dyn UserDirectory>,
    pub passwords: PasswordChecker,
    pub regulation: Regulation,
    pub clock: Arc<dyn Clock>,
    /// The offered second factors in `auth.methods` order; none with
    /// `auth.second_factor = "off"`.
    pub providers: Vec<Arc<dyn SecondFactor>>,
    /// TOTP's enrollment, when `totp` is offered (it is in `providers` too).
    pub totp: Option<Arc<TotpFactor>>,
    /// WebAuthn's ceremonies, when `webauthn` is offered (in `providers` too).
    pub webauthn: Option<Arc<WebauthnFactor>>,
    /// Per-user factor state (the last method used).
    pub factor_store: Option<Arc<dyn FactorStore>>,
    /// Push id → the session that asked for it: in memory for one process
    /// (`MemoryPushIndex`), in the shared store for several replicas.
    pub pushes: Arc<dyn PushIndex>,
}

pub struct Authenticator {
    pub(super) sessions: Arc<LiveSessions>,
    pub(super) users: Arc<dyn UserDirectory>,
    pub(super) passwords: PasswordChecker,
    regulation: Regulation,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) settings: AuthSettings,
    pub(super) providers: Vec<Arc<dyn SecondFactor>>,
    pub(super) totp: Option<Arc<TotpFactor>>,
    pub(super) webauthn: Option<Arc<WebauthnFactor>>,
    pub(super) factor_store: Option<Arc<dyn FactorStore>>,
    /// Push id → the session that asked for it: a push answer finds its
    /// one session here, whichever replica started the push.
    pub(super) pushes: Arc<dyn PushIndex>,
    /// This process among the replicas, as the holder of push leases.
    pub(super) replica: String,
    /// Push answers that come without a browser request (webhook, poller).
    pub(super) audit: Audit,
    /// Users an operator disabled; none when not given.
    disabled: Option<Arc<dyn DisabledUsers>>,
}

impl Authenticator {
    pub fn new(deps: AuthDeps, settings: AuthSettings) -> Self {
        let auth = Authenticator {
            sessions: deps.sessions,
            users: deps.users,
            passwords: deps.passwords,
            regulation: deps.regulation,
            clock: deps.clock,
            providers: deps.providers,
            totp: deps.totp,
            webauthn: deps.webauthn,
            factor_store: deps.factor_store,
            settings,
            pushes: deps.pushes,
            replica: replica_name(),
            audit: Audit::off(),
            disabled: None,
        };
        auth.end_spent_challenges();
        auth.index_pending_pushes();
        auth
    }

    /// Writes push answers to `audit` (off by default).
    pub fn with_audit(mut self, audit: Audit) -> Self {
        self.audit = audit;
        self
    }

    /// Refuses the logins of the users `disabled` holds.
    pub fn with_disabled_users(mut self, disabled: Arc<dyn DisabledUsers>) -> Self {
        self.disabled = Some(disabled);
        self
    }

    /// Whether an operator disabled the user. Read for every login, known
    /// user or not, so that the answer takes as long either way.
    pub(super) fn is_disabled(&self, email: &str) -> Result<bool, StoreError> {
        self.disabled
            .as_ref()
            .map_or(Ok(false), |disabled| disabled.is_disabled(email))
    }

    /// anonymous --password ok--> one_factor, under a new session id. The
    /// session the browser held before (if any) is ended.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        client: IpAddr,
        previous: Option<&SessionId>,
    ) -> Result<LoginSuccess, AuthError> {
        self.login_from(email, password, client, previous, None)
            .await
    }

    /// `login`, the new session noting the browser it came from.
    pub async fn login_from(
        &self,
        email: &str,
        password: &str,
        client: IpAddr,
        previous: Option<&SessionId>,
        device: Option<Device>,
    ) -> Result<LoginSuccess, AuthError> {
        if password.chars().count() > MAX_PASSWORD_CHARS {
            return Err(AuthError::PasswordTooLong);
        }
        // Counted before argon2 runs, so a burst cannot outrun the count.
        let attempt = self.regulation.reserve(email, client, self.clock.now())?;
        let user = self.find_user(email.trim())?;
        let disabled = self.is_disabled(email.trim())?;
        let hash = user.as_ref().map(|u| u.password.as_str());
        let matched = self.passwords.verify(hash, password).await;
        let now = self.clock.now();
        // A disabled user is told what a wrong password is told, as late.
        let Some(user) = user.filter(|_| matched && !disabled) else {
            attempt.failed(now);
            return Err(AuthError::InvalidCredentials);
        };
        attempt.succeeded();
        if let Some(previous) = previous {
            self.sessions.remove(&previous.key())?;
        }
        let session_id = SessionId::generate()?;
        let record = SessionRecord {
            device,
            client: Some(client),
            ..one_factor_session(&user, now)
        };
        self.sessions.insert(session_id.key(), record)?;
        // A disable that landed while the password was checked has
        // already ended the user's sessions: this one must not outlive it.
        if self.is_disabled(&user.email)? {
            self.sessions.remove(&session_id.key())?;
            return Err(AuthError::InvalidCredentials);
        }
        Ok(LoginSuccess {
            session_id,
            level: AuthLevel::OneFactor,
            user,
        })
    }

    /// Whether the failed login of `email` from `client` is now inside a
    /// ban: the failure that just happened started it.
    pub fn is_banned(&self, email: &str, client: IpAddr) -> bool {
        self.regulation.is_banned(email, client, self.clock.now())
    }

    /// The email as the users file has it, for a user that exists: the
    /// audit trail never writes what was typed for an unknown user.
    pub fn known_email(&self, typed: &str) -> Option<String> {
        self.users.find(typed.trim()).map(|u| u.email.clone())
    }

    /// The per-request check: memory only; the idle refresh (at most
    /// every 24th of the idle timeout) is written by the next flush. Proxy
    /// mode: an approved push steps the session up here.
    pub fn check(&self, id: Option<&SessionId>, policy: Policy) -> Result<Access, AuthError> {
        Ok(self.authorize(self.identify(id)?.as_ref(), policy, StepUp::Allowed))
    }

    /// The live session behind a cookie, with its user. An error when a
    /// shared store cannot be read: never taken for "no session".
    pub fn identify(&self, id: Option<&SessionId>) -> Result<Option<Identified>, AuthError> {
        let Some(id) = id else {
            return Ok(None);
        };
        Ok(self
            .live_session(id)?
            .map(|(key, session, user)| Identified {
                id: id.clone(),
                key,
                session,
                user,
            }))
    }

    /// Whether the identified session (if any) may reach a resource under
    /// `policy`. `StepUp::Deferred` leaves an approved push for the portal
    /// to turn into a new cookie (forward-auth cannot set one).
    pub fn authorize(&self, who: Option<&Identified>, policy: Policy, step_up: StepUp) -> Access {
        match policy {
            Policy::Deny => return Access::Denied,
            Policy::Bypass => return Access::Granted(None),
            // An approve resource needs two_factor; each request is then
            // held by the gateway until it is approved.
            Policy::OneFactor | Policy::TwoFactor | Policy::Approve => {}
        }
        let Some(who) = who else {
            return Access::NeedsLogin;
        };
        if self.level_satisfies(who.session.level, policy) {
            let every = crate::store::touch_interval(self.settings.idle_timeout);
            self.sessions.touch(&who.key, self.clock.now(), every);
            return Access::Granted(Some(who.user.clone()));
        }
        if step_up == StepUp::Allowed
            && let Some(new_id) = self.step_up_approved_push(who)
        {
            return Access::SteppedUp(who.user.clone(), new_id);
        }
        Access::NeedsSecondFactor
    }

    /// The flow's clock, for the edges that need the time (the webhook's
    /// replay window).
    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    /// Whether a second factor is required (not `auth.second_factor = "off"`).
    pub(super) fn second_factor_required(&self) -> bool {
        self.settings.second_factor == SecondFactorMode::Required
    }

    /// Whether a session at `level` may reach a resource under `policy`.
    pub fn level_satisfies(&self, level: AuthLevel, policy: Policy) -> bool {
        let effective = match self.settings.second_factor {
            SecondFactorMode::Off => AuthLevel::TwoFactor,
            SecondFactorMode::Required => level,
        };
        match policy {
            Policy::Bypass => true,
            Policy::Deny => false,
            Policy::OneFactor => true,
            Policy::TwoFactor | Policy::Approve => effective >= AuthLevel::TwoFactor,
        }
    }

    /// any --logout--> anonymous. Returns the user whose session ended.
    pub fn logout(&self, id: &SessionId) -> Result<Option<String>, AuthError> {
        let key = id.key();
        let user = self.sessions.get(&key)?.map(|s| s.user.to_string());
        self.sessions.remove(&key)?;
        Ok(user)
    }

    /// The live session behind `id` with its user, or None (and the session
    /// ended) when it timed out or its user left the users file.
    pub(super) fn live_session(
        &self,
        id: &SessionId,
    ) -> Result<Option<(SessionKey, SessionRecord, Arc<User>)>, StoreError> {
        let key = id.key();
        let Some(mut session) = self.sessions.get(&key)? else {
            return Ok(None);
        };
        let now = self.clock.now();
        if !self.is_alive(&session, now) && self.sessions.is_shared() {
            // This replica's copy may be older than another one's use.
            match self.sessions.reread(&key)? {
                Some(stored) => session = stored,
                None => return Ok(None),
            }
        }
        let user = self.find_user(&session.user)?;
        let Some(user) = user.filter(|_| self.is_alive(&session, now)) else {
            let _ = self.sessions.remove(&key);
            return Ok(None);
        };
        Ok(Some((key, session, user)))
    }

    /// A user of the users file or a sign-up user. With a shared store a
    /// sign-up user may have signed up on another replica: an email this
    /// replica does not know is looked up there once.
    fn find_user(&self, email: &str) -> Result<Option<Arc<User>>, StoreError> {
        if let Some(user) = self.users.find(email) {
            return Ok(Some(user));
        }
        if !self.sessions.is_shared() {
            return Ok(None);
        }
        let Some(user) = self.sessions.store().signup_user(email)? else {
            return Ok(None);
        };
        self.users.add_signed_up(user);
        Ok(self.users.find(email))
    }

    fn is_alive(&self, session: &SessionRecord, now: u64) -> bool {
        now.saturating_sub(session.last_seen) < self.settings.idle_timeout
            && now.saturating_sub(session.created_at) < self.settings.lifetime
    }

    /// Background sweep: ends timed-out sessions and stale counters.
    pub fn sweep(&self) -> usize {
        let now = self.clock.now();
        self.regulation.sweep(now);
        self.sessions.sweep(|s| self.is_alive(s, now))
    }
}

/// A name no other replica has: random, or (the OS gave no randomness)
/// the process id and the start time.
fn replica_name() -> String {
    let mut bytes = [0u8; 8];
    match getrandom::getrandom(&mut bytes) {
        Ok(()) => bytes.iter().map(|b| format!("{b:02x}")).collect(),
        Err(_) => {
            let started = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            format!("{}-{}", std::process::id(), started.as_nanos())
        }
    }
}

pub(super) fn one_factor_session(user: &User, now: u64) -> SessionRecord {
    SessionRecord {
        user: user.email.as_str().into(),
        level: AuthLevel::OneFactor,
        auth_time: now,
        second_factor_time: None,
        created_at: now,
        last_seen: now,
        challenge: None,
        device: None,
        second_factor_method: None,
        client: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::password::hash_password;
    use crate::clock::testing::ManualClock;
    use crate::config::RegulationConfig;
    use crate::store::{MemoryPushIndex, MemoryStore, SessionStore};
    use crate::users::LiveUsers;
    use std::sync::OnceLock;
    use std::time::Duration;

    const ADDR: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn alice_hash() -> String {
        static HASH: OnceLock<String> = OnceLock::new();
        HASH.get_or_init(|| hash_password("alice-pw").unwrap())
            .clone()
    }

    fn alice() -> User {
        User {
            email: "alice@example.com".into(),
            name: "Alice".into(),
            country_code: String::new(),
            phone: String::new(),
            password: alice_hash(),
            groups: vec!["admins".into()],
            second_factor: None,
            second_factor_reset: None,
            identity: Default::default(),
        }
    }

    struct Fixture {
        auth: Authenticator,
        clock: Arc<ManualClock>,
        users: Arc<LiveUsers>,
        store: Arc<MemoryStore>,
    }

    fn fixture(mode: SecondFactorMode) -> Fixture {
        let clock = Arc::new(ManualClock::at(1_000_000));
        let users = Arc::new(LiveUsers::new(vec![alice()]));
        let store = Arc::new(MemoryStore::default());
        let sessions = Arc::new(LiveSessions::load(store.clone()).unwrap());
        let regulation = Regulation::new(&RegulationConfig {
            max_failures: 3,
            max_failures_per_address: 50,
            window: Duration::from_secs(600),
            ban: Duration::from_secs(900),
            ipv6_prefix: 64,
        });
        let settings = AuthSettings {
            idle_timeout: 1800,
            lifetime: 43200,
            second_factor: mode,
            challenge_timeout: 300,
            onetouch_message: "Log in to {host}".into(),
            totp_enrollment: TotpEnrollment::FirstLogin,
            passwordless: false,
        };
        let deps = AuthDeps {
            sessions,
            users: users.clone(),
            passwords: PasswordChecker::new(1).unwrap(),
            regulation,
            clock: clock.clone(),
            providers: Vec::new(),
            totp: None,
            webauthn: None,
            factor_store: None,
            pushes: Arc::new(MemoryPushIndex::default()),
        };
        let auth = Authenticator::new(deps, settings);
        Fixture {
            auth,
            clock,
            users,
            store,
        }
    }

    /// A disable that lands while argon2 runs: the first read says
    /// enabled, every later one disabled.
    #[derive(Default)]
    struct DisabledMidLogin(std::sync::atomic::AtomicUsize);

    impl DisabledUsers for DisabledMidLogin {
        fn is_disabled(&self, _: &str) -> Result<bool, StoreError> {
            use std::sync::atomic::Ordering;
            Ok(self.0.fetch_add(1, Ordering::SeqCst) > 0)
        }
        fn set_disabled(&self, _: &str, _: bool) -> Result<bool, StoreError> {
            Ok(false)
        }
        fn disabled_users(&self) -> Result<Vec<String>, StoreError> {
            Ok(Vec::new())
        }
    }

    #[tokio::test]
    async fn a_disable_during_the_password_check_leaves_no_session() {
        let f = fixture(SecondFactorMode::Required);
        let auth = f
            .auth
            .with_disabled_users(Arc::new(DisabledMidLogin::default()));
        let err = auth
            .login("alice@example.com", "alice-pw", ADDR, None)
            .await
            .unwrap_err();
        assert!(matches!(err, AuthError::InvalidCredentials), "{err}");
        assert!(f.store.load_all().unwrap().is_empty());
        assert!(
            auth.sessions
                .sessions_of("alice@example.com")
                .unwrap()
                .is_empty()
        );
    }

    async fn login(f: &Fixture) -> SessionId {
        f.auth
            .login("alice@example.com", "alice-pw", ADDR, None)
            .await
            .unwrap()
            .session_id
    }

    #[tokio::test]
    async fn password_leads_to_one_factor_stored_under_the_hash() {
        let f = fixture(SecondFactorMode::Required);
        let ok = f
            .auth
            .login("ALICE@example.com", "alice-pw", ADDR, None)
            .await
            .unwrap();
        assert_eq!(ok.level, AuthLevel::OneFactor);
        let stored = f.store.load_all().unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].0, ok.session_id.key());
        assert_eq!(&*stored[0].1.user, "alice@example.com");
    }

    #[tokio::test]
    async fn one_factor_reaches_one_factor_but_not_two_factor() {
        let f = fixture(SecondFactorMode::Required);
        let id = login(&f).await;
        assert!(matches!(
            f.auth.check(Some(&id), Policy::OneFactor).unwrap(),
            Access::Granted(Some(u)) if u.email == "alice@example.com"
        ));
        assert!(matches!(
            f.auth.check(Some(&id), Policy::TwoFactor).unwrap(),
            Access::NeedsSecondFactor
        ));
    }

    #[tokio::test]
    async fn second_factor_off_lets_one_factor_reach_two_factor() {
        let f = fixture(SecondFactorMode::Off);
        let id = login(&f).await;
        assert!(matches!(
            f.auth.check(Some(&id), Policy::TwoFactor).unwrap(),
            Access::Granted(Some(_))
        ));
        assert!(matches!(
            f.auth.check(Some(&id), Policy::Deny).unwrap(),
            Access::Denied
        ));
    }

    #[tokio::test]
    async fn wrong_password_and_unknown_email_fail_alike_and_count() {
        let f = fixture(SecondFactorMode::Off);
        for email in ["alice@example.com", "nobody@example.com"] {
            for _ in 0..3 {
                let err = f.auth.login(email, "nope", ADDR, None).await.unwrap_err();
                assert!(matches!(err, AuthError::InvalidCredentials), "{err}");
            }
            let err = f
                .auth
                .login(email, "alice-pw", ADDR, None)
                .await
                .unwrap_err();
            assert!(
                matches!(err, AuthError::RateLimited { .. }),
                "{email}: {err}"
            );
        }
        assert!(f.store.load_all().unwrap().is_empty());
    }

    /// Counts a burst's outcomes: (passwords checked, refused).
    fn checked_and_refused(outcomes: &[Result<LoginSuccess, AuthError>]) -> (usize, usize) {
        let mut counts = (0, 0);
        for outcome in outcomes {
            match outcome {
                Ok(_) | Err(AuthError::InvalidCredentials) => counts.0 += 1,
                Err(AuthError::RateLimited { .. }) => counts.1 += 1,
                Err(err) => panic!("unexpected {err}"),
            }
        }
        counts
    }

    #[tokio::test]
    async fn a_burst_of_logins_checks_at_most_max_failures_passwords() {
        let f = fixture(SecondFactorMode::Off);
        // Every login is at argon2 (off the runtime) before any has ended.
        let mut passwords: Vec<String> = (0..11).map(|i| format!("wrong {i}")).collect();
        passwords.push("alice-pw".into());
        let logins = passwords
            .iter()
            .map(|pw| f.auth.login("alice@example.com", pw, ADDR, None));
        let outcomes = futures_util::future::join_all(logins).await;
        let (checked, refused) = checked_and_refused(&outcomes);
        assert_eq!((checked, refused), (3, 9), "limit 3: {outcomes:?}");
    }

    #[tokio::test]
    async fn a_login_dropped_before_its_answer_counts_as_a_failure() {
        let f = fixture(SecondFactorMode::Off);
        for _ in 0..3 {
            let login = f.auth.login("alice@example.com", "nope", ADDR, None);
            // Ends it at argon2, as a client hanging up would.
            let cut = tokio::time::timeout(Duration::ZERO, login).await;
            assert!(cut.is_err(), "the login had not ended yet");
        }
        let err = f
            .auth
            .login("alice@example.com", "alice-pw", ADDR, None)
            .await
            .unwrap_err();
        assert!(matches!(err, AuthError::RateLimited { .. }), "{err}");
    }

    /// Counters in a store that cannot be reached (Redis down).
    struct UnreachableCounters;

    impl crate::store::AttemptCounters for UnreachableCounters {
        fn reserve(
            &self,
            _: &crate::store::AttemptKeys,
            _: u64,
        ) -> Result<crate::store::Reservation, StoreError> {
            Err(StoreError::Unavailable("down".into()))
        }
        fn fail(&self, _: &crate::store::AttemptKeys, _: u64) -> Result<(), StoreError> {
            Err(StoreError::Unavailable("down".into()))
        }
        fn succeed(&self, _: &crate::store::AttemptKeys, _: u64) -> Result<(), StoreError> {
            Err(StoreError::Unavailable("down".into()))
        }
        fn is_banned(&self, _: &crate::store::AttemptKeys, _: u64) -> Result<bool, StoreError> {
            Err(StoreError::Unavailable("down".into()))
        }
        fn sweep(&self, _: u64) {}
    }

    #[tokio::test]
    async fn a_login_that_cannot_be_counted_is_refused_as_a_store_error() {
        let mut f = fixture(SecondFactorMode::Off);
        let config = RegulationConfig {
            max_failures: 3,
            max_failures_per_address: 50,
            window: Duration::from_secs(600),
            ban: Duration::from_secs(900),
            ipv6_prefix: 64,
        };
        f.auth.regulation = Regulation::with_counters(&config, Arc::new(UnreachableCounters));
        let err = f
            .auth
            .login("alice@example.com", "alice-pw", ADDR, None)
            .await
            .unwrap_err();
        assert!(matches!(err, AuthError::Store(_)), "{err}");
        assert!(f.store.load_all().unwrap().is_empty());
    }

    #[tokio::test]
    async fn long_passwords_are_refused_before_hashing() {
        let f = fixture(SecondFactorMode::Off);
        let long = "x".repeat(MAX_PASSWORD_CHARS + 1);
        let err = f.auth.login("alice@example.com", &long, ADDR, None).await;
        assert!(matches!(err, Err(AuthError::PasswordTooLong)));
    }

    #[tokio::test]
    async fn login_issues_a_new_id_and_ends_the_previous_session() {
        let f = fixture(SecondFactorMode::Off);
        let first = login(&f).await;
        let second = f
            .auth
            .login("alice@example.com", "alice-pw", ADDR, Some(&first))
            .await
            .unwrap()
            .session_id;
        assert_ne!(first, second);
        assert!(matches!(
            f.auth.check(Some(&first), Policy::OneFactor).unwrap(),
            Access::NeedsLogin
        ));
        assert!(matches!(
            f.auth.check(Some(&second), Policy::OneFactor).unwrap(),
            Access::Granted(_)
        ));
    }

    #[tokio::test]
    async fn idle_timeout_and_lifetime_end_sessions() {
        let f = fixture(SecondFactorMode::Off);
        let id = login(&f).await;
        f.clock.advance(1799);
        assert!(matches!(
            f.auth.check(Some(&id), Policy::OneFactor).unwrap(),
            Access::Granted(_)
        ));
        f.clock.advance(1799);
        assert!(
            matches!(
                f.auth.check(Some(&id), Policy::OneFactor).unwrap(),
                Access::Granted(_)
            ),
            "touched"
        );
        f.clock.advance(1801);
        assert!(matches!(
            f.auth.check(Some(&id), Policy::OneFactor).unwrap(),
            Access::NeedsLogin
        ));
        assert!(f.store.load_all().unwrap().is_empty());

        let id = login(&f).await;
        for _ in 0..26 {
            f.clock.advance(1700);
            let _ = f.auth.check(Some(&id), Policy::OneFactor).unwrap();
        }
        assert!(matches!(
            f.auth.check(Some(&id), Policy::OneFactor).unwrap(),
            Access::NeedsLogin
        ));
    }

    #[tokio::test]
    async fn a_removed_user_loses_the_session() {
        let f = fixture(SecondFactorMode::Off);
        let id = login(&f).await;
        f.users.replace(vec![]);
        assert!(matches!(
            f.auth.check(Some(&id), Policy::OneFactor).unwrap(),
            Access::NeedsLogin
        ));
        f.users.replace(vec![alice()]);
        assert!(matches!(
            f.auth.check(Some(&id), Policy::OneFactor).unwrap(),
            Access::NeedsLogin
        ));
    }

    #[tokio::test]
    async fn logout_ends_the_session_everywhere() {
        let f = fixture(SecondFactorMode::Off);
        let id = login(&f).await;
        assert_eq!(
            f.auth.logout(&id).unwrap().as_deref(),
            Some("alice@example.com")
        );
        assert!(matches!(
            f.auth.check(Some(&id), Policy::OneFactor).unwrap(),
            Access::NeedsLogin
        ));
        assert!(f.store.load_all().unwrap().is_empty());
    }

    #[tokio::test]
    async fn sweep_drops_idle_sessions() {
        let f = fixture(SecondFactorMode::Off);
        login(&f).await;
        f.clock.advance(1801);
        assert_eq!(f.auth.sweep(), 1);
        assert!(f.store.load_all().unwrap().is_empty());
    }

    #[test]
    fn bypass_and_deny_need_no_session() {
        let f = fixture(SecondFactorMode::Required);
        assert!(matches!(
            f.auth.check(None, Policy::Bypass).unwrap(),
            Access::Granted(None)
        ));
        assert!(matches!(
            f.auth.check(None, Policy::Deny).unwrap(),
            Access::Denied
        ));
        assert!(matches!(
            f.auth.check(None, Policy::OneFactor).unwrap(),
            Access::NeedsLogin
        ));
    }
}
