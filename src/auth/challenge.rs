//! The second step of the state machine:
//!
//! ```text
//! one_factor --two_factor resource asked--> one_factor + challenge
//! challenge  --push approved (webhook or poll)--> two_factor (new id on the next request)
//! challenge  --valid code--> two_factor (new id)
//! challenge  --push denied / expired--> code form offered
//! challenge  --5 wrong codes--> anonymous (session deleted)
//! ```
//!
//! A challenge lives inside exactly one session; a push answer confirms
//! that session only, and the move to `two_factor` happens once.
//!
//! A code is counted as wrong before it is checked (`reserve_code`), since
//! a check may be a call to the provider: a burst of posts checks at most
//! `MAX_WRONG_CODES` codes, and the rest are refused with 429 unchecked.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::audit::{Context, Entry, Event as AuditEvent, SessionRef};
use crate::factor::{CodeCheck, PushRequest};
use crate::model::User;
use crate::model::{Delivery, Method, PushStatus};
use crate::store::{AuthLevel, Challenge, Phase, SessionId, SessionKey, SessionRecord};

use super::error::{AuthError, provider_error};
use super::flow::{Authenticator, Identified};
use super::methods::factor_user;
use super::state::MAX_WRONG_CODES;
use super::state::{self, Event, Transition};

/// The shortest gap between two "resend code" requests of one session.
pub const RESEND_EVERY_SECS: u64 = 30;

/// How long after its challenge expires a push is still found by its
/// answer: one given just in time may reach the webhook a little late.
const ANSWER_GRACE_SECS: u64 = 30;

/// A code counted as wrong before its check. Settled as `valid`, `wrong`
/// or `unchecked` (the provider gave no answer: the try is given back);
/// dropped unsettled (the client hung up during the check), it stays a
/// wrong code.
#[must_use = "an attempt that is not settled counts as a wrong code"]
pub(super) struct CodeAttempt<'a> {
    auth: &'a Authenticator,
    key: SessionKey,
    /// Which wrong code this is, 1 to `MAX_WRONG_CODES`.
    number: u32,
    settled: bool,
}

impl CodeAttempt<'_> {
    /// The step up ends the session; its count goes with it.
    pub(super) fn valid(mut self) {
        self.settled = true;
    }

    /// The error to answer: the tries left, or the end of the session
    /// when this was the last one.
    pub(super) fn wrong(mut self) -> Result<AuthError, AuthError> {
        self.settled = true;
        let left = MAX_WRONG_CODES.saturating_sub(self.number);
        if left == 0 {
            self.auth.sessions.remove(&self.key)?;
            return Ok(AuthError::TooManyWrongCodes);
        }
        Ok(AuthError::InvalidCode { left })
    }

    pub(super) fn unchecked(mut self) {
        self.settled = true;
        let now = self.auth.clock.now();
        let given_back = self.auth.sessions.update(&self.key, |s| {
            state::on(&mut s.challenge, Event::CodeUnchecked, now).changed()
        });
        if let Err(err) = given_back {
            tracing::warn!(error = %err, "giving back an unchecked code's try failed");
        }
    }
}

impl Drop for CodeAttempt<'_> {
    fn drop(&mut self) {
        if !self.settled
            && self.number >= MAX_WRONG_CODES
            && let Err(err) = self.auth.sessions.remove(&self.key)
        {
            tracing::warn!(error = %err, "ending a session with no tries left failed");
        }
    }
}

/// What the page needs to show about the challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeView {
    pub method: Method,
    pub delivery: Delivery,
    /// Every method the user can switch to, this one included.
    pub methods: Vec<Method>,
    pub push: Option<PushStatus>,
    /// The push or the code could not be sent (provider down).
    pub push_failed: bool,
    pub code_sent: bool,
    pub wrong_codes_left: u32,
}

/// Where the browser asked from, for the push's message and details.
pub struct Requester<'a> {
    pub host: &'a str,
    pub client: IpAddr,
}

/// The answer to the browser's `status` poll.
#[derive(Debug)]
pub enum StatusOutcome {
    /// `none`, `pending`, `denied` or `expired`.
    Waiting(Option<PushStatus>),
    /// The push was approved: the session is now `two_factor` under this id.
    Confirmed(SessionId),
}

impl Authenticator {
    /// one_factor --a two_factor resource is asked for--> challenge, with
    /// `wanted` when the user has that method, else their first. Keeps a
    /// live challenge of that method; a push or code that cannot be sent
    /// still leaves the code form.
    pub async fn begin_challenge(
        &self,
        id: &SessionId,
        requester: &Requester<'_>,
        wanted: Option<Method>,
    ) -> Result<ChallengeView, AuthError> {
        let (session, user) = self.pending_session(id)?;
        let now = self.clock.now();
        let methods = self.methods_of(&user)?;
        let method = pick(&methods, wanted)?;
        let live = session.challenge.as_ref().filter(|c| c.expires_at > now);
        if let Some(challenge) = live.filter(|c| c.method == method) {
            // Indexed again: a store failure may have lost the first entry.
            self.index_push(&id.key(), challenge, now)?;
            return self.view(challenge, methods);
        }
        let provider = self.provider_for(method)?;
        let subject = provider
            .subject(&factor_user(&user))
            .await
            .map_err(provider_error)?;
        let mut challenge = Challenge {
            method,
            subject,
            phase: Phase::AwaitingCode,
            wrong_codes: session.challenge.as_ref().map_or(0, |c| c.wrong_codes),
            expires_at: now + self.settings.challenge_timeout,
            last_code_sent: None,
        };
        match provider.delivery() {
            Delivery::Push => {
                let request = self.push_request(&user, requester, now);
                match provider.start_push(&challenge.subject, &request).await {
                    Ok(Some(push_id)) => {
                        challenge.phase = Phase::AwaitingPush {
                            push_id,
                            status: PushStatus::Pending,
                        };
                    }
                    Ok(None) => {}
                    Err(_) => challenge.phase = Phase::SendFailed,
                }
            }
            Delivery::SentCode => match provider.send_code(&challenge.subject).await {
                Ok(()) => challenge.last_code_sent = Some(now),
                Err(err) => {
                    tracing::warn!(error = %err, method = method.as_str(), "sending a code failed");
                    challenge.phase = Phase::SendFailed;
                }
            },
            // The verify page starts the ceremony (`webauthn_options`).
            Delivery::AppCode | Delivery::Assertion => {}
        }
        // Switching methods must not reset the count of wrong codes; the
        // stored count includes the codes checked since `session` was read.
        let mut started = None;
        self.sessions.update(&id.key(), |s| {
            state::on(&mut s.challenge, Event::Started(challenge.clone()), now);
            started = s.challenge.clone();
            true
        })?;
        // A session ended meanwhile still gets its page; the next request
        // finds it gone.
        let started = started.unwrap_or_else(|| Box::new(challenge));
        let shown = self.view(&started, methods)?;
        self.index_push(&id.key(), &started, now)?;
        Ok(shown)
    }

    /// Lets an answer to the challenge's push, if one is pending, find the
    /// session `key` on any replica.
    fn index_push(
        &self,
        key: &SessionKey,
        challenge: &Challenge,
        now: u64,
    ) -> Result<(), AuthError> {
        if let Phase::AwaitingPush {
            push_id,
            status: PushStatus::Pending,
        } = &challenge.phase
        {
            let ttl = answerable_for(challenge.expires_at, now);
            self.pushes.add(push_id, key, ttl)?;
        }
        Ok(())
    }

    /// A push's answer from the webhook or the poller. Applies only to a
    /// pending push this gateway created for that subject, once.
    pub fn record_push_answer(
        &self,
        push_id: &str,
        subject: Option<&str>,
        status: PushStatus,
    ) -> bool {
        if status == PushStatus::Pending {
            return false;
        }
        let key = match self.pushes.find(push_id) {
            Ok(Some(key)) => key,
            Ok(None) => return false,
            Err(err) => {
                // The poller asks again once the store is back.
                tracing::warn!(error = %err, "a push answer could not be matched to its session");
                return false;
            }
        };
        // Stale until the session is found with that pending push.
        let mut stale = true;
        let now = self.clock.now();
        let mut user = None;
        let applied = self.sessions.update(&key, |s| {
            let answer = Event::PushAnswered {
                push_id,
                subject,
                status,
            };
            let moved = state::on(&mut s.challenge, answer, now);
            stale = matches!(moved, Transition::Ignored { stale: true });
            user = Some(s.user.clone());
            moved.changed()
        });
        let applied = matches!(applied, Ok(true));
        if (applied || stale)
            && let Err(err) = self.pushes.remove(push_id)
        {
            tracing::warn!(error = %err, "an answered push stays listed until it expires");
        }
        if applied {
            self.audit_push_answer(status, user, &key);
        }
        applied
    }

    /// A push answer has no browser request: client, user agent and
    /// request id are null.
    fn audit_push_answer(&self, status: PushStatus, user: Option<Arc<str>>, key: &SessionKey) {
        let event = match status {
            PushStatus::Approved => AuditEvent::PushApproved,
            PushStatus::Denied => AuditEvent::PushDenied,
            PushStatus::Expired => AuditEvent::PushExpired,
            PushStatus::Pending => return,
        };
        self.audit.emit(Entry {
            event,
            user: user.map(|u| u.to_string()),
            session: Some(SessionRef::of(key)),
            context: Context::default(),
        });
    }

    /// Asks the provider about every push still waiting, so a push works
    /// when the provider cannot reach our webhook. Returns how many moved.
    /// Each push is first leased for `lease`: among replicas sharing the
    /// index one polls it at a time. A lease longer than a poll tick plus
    /// one provider call is renewed by its holder tick after tick, and
    /// taken over by another replica once the holder stops.
    pub async fn poll_pushes(&self, lease: Duration) -> usize {
        let Some(provider) = self
            .providers
            .iter()
            .find(|p| p.delivery() == Delivery::Push)
        else {
            return 0;
        };
        let waiting = match self.pushes.pending() {
            Ok(waiting) => waiting,
            Err(err) => {
                tracing::debug!(error = %err, "pending pushes could not be listed");
                return 0;
            }
        };
        let mut moved = 0;
        for push_id in waiting {
            match self.pushes.lease(&push_id, &self.replica, lease) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(err) => {
                    tracing::debug!(error = %err, "a push could not be leased");
                    continue;
                }
            }
            match provider.push_status(&push_id).await {
                Ok(status) => moved += usize::from(self.record_push_answer(&push_id, None, status)),
                Err(err) => tracing::debug!(error = %err, "push status poll failed"),
            }
        }
        moved
    }

    /// The browser's poll: the push's state, and the step up to
    /// `two_factor` (new id) once it is approved.
    pub fn push_outcome(&self, id: &SessionId) -> Result<StatusOutcome, AuthError> {
        let (session, _) = self.pending_session(id)?;
        let now = self.clock.now();
        let Some(challenge) = session.challenge.as_ref() else {
            return Ok(StatusOutcome::Waiting(None));
        };
        match challenge.push_status() {
            Some(PushStatus::Approved) => Ok(StatusOutcome::Confirmed(self.step_up(id, &session)?)),
            Some(PushStatus::Pending) if challenge.expires_at <= now => {
                Ok(StatusOutcome::Waiting(Some(PushStatus::Expired)))
            }
            status => Ok(StatusOutcome::Waiting(status)),
        }
    }

    /// Proxy mode's step up on the request path: a push approved since the
    /// last request makes the session `two_factor` under a new id.
    pub(super) fn step_up_approved_push(&self, who: &Identified) -> Option<SessionId> {
        let approved = who
            .session
            .challenge
            .as_ref()
            .is_some_and(|c| c.push_status() == Some(PushStatus::Approved));
        if !approved {
            return None;
        }
        match self.push_outcome(&who.id) {
            Ok(StatusOutcome::Confirmed(new_id)) => Some(new_id),
            _ => None,
        }
    }

    /// challenge --valid code--> two_factor under a new id; a wrong code is
    /// counted, and the fifth ends the session.
    pub async fn verify_code(&self, id: &SessionId, code: &str) -> Result<SessionId, AuthError> {
        let (session, user) = self.pending_session(id)?;
        let challenge = match &session.challenge {
            Some(_) => self.live_challenge(&session)?.clone(),
            None => self.code_challenge(id, &user).await?,
        };
        if matches!(challenge.phase, Phase::Enrolling { .. }) {
            return Err(AuthError::NoSecondFactor);
        }
        let method = challenge.method;
        // Checked again: an admin reset since the challenge began voids it.
        if !self.methods_of(&user)?.contains(&method) {
            return Err(AuthError::NoSecondFactor);
        }
        let provider = self.provider_for(method)?;
        let attempt = self.reserve_code(id)?;
        let check = provider.check_code(&challenge.subject, code.trim()).await;
        match check {
            Ok(CodeCheck::Valid) => {
                attempt.valid();
                self.remember_method(&user, method);
                self.step_up(id, &session)
            }
            Ok(CodeCheck::Invalid) => Err(attempt.wrong()?),
            Err(err) => {
                attempt.unchecked();
                Err(provider_error(err))
            }
        }
    }

    /// A challenge for the code path alone, for a session that posts a code
    /// before any challenge was started.
    async fn code_challenge(&self, id: &SessionId, user: &User) -> Result<Challenge, AuthError> {
        let method = pick(&self.methods_of(user)?, None)?;
        let provider = self.provider_for(method)?;
        let now = self.clock.now();
        let challenge = Challenge {
            method,
            subject: provider
                .subject(&factor_user(user))
                .await
                .map_err(provider_error)?,
            phase: Phase::AwaitingCode,
            wrong_codes: 0,
            expires_at: now + self.settings.challenge_timeout,
            last_code_sent: None,
        };
        // Concurrent first posts: the first challenge stored is kept, with
        // its count.
        let mut kept = None;
        self.sessions.update(&id.key(), |s| {
            let created =
                state::on(&mut s.challenge, Event::CodeFirst(challenge.clone()), now).changed();
            kept = s.challenge.as_deref().cloned();
            created
        })?;
        kept.ok_or(AuthError::LoginRequired)
    }

    /// Sends a new code, at most once per 30 s per session.
    pub async fn resend_code(&self, id: &SessionId) -> Result<(), AuthError> {
        let (session, _) = self.pending_session(id)?;
        let challenge = self.live_challenge(&session)?;
        let now = self.clock.now();
        if let Some(last) = challenge.last_code_sent {
            let next = last + RESEND_EVERY_SECS;
            if next > now {
                return Err(AuthError::RateLimited {
                    retry_after: next - now,
                });
            }
        }
        let method = challenge.method;
        let provider = self.provider_for(method)?;
        if provider.delivery() == Delivery::AppCode {
            return Err(AuthError::ProviderRejected(format!(
                "{} sends no codes",
                method.as_str()
            )));
        }
        provider
            .send_code(&challenge.subject)
            .await
            .map_err(provider_error)?;
        self.sessions.update(&id.key(), |s| {
            state::on(&mut s.challenge, Event::CodeSent, now).changed()
        })?;
        Ok(())
    }

    /// The session behind `id` while it still needs its second factor.
    pub(super) fn pending_session(
        &self,
        id: &SessionId,
    ) -> Result<(SessionRecord, Arc<User>), AuthError> {
        let (_, session, user) = self.live_session(id)?.ok_or(AuthError::LoginRequired)?;
        if session.level >= AuthLevel::TwoFactor {
            return Err(AuthError::AlreadyConfirmed);
        }
        Ok((session, user))
    }

    pub(super) fn live_challenge<'a>(
        &self,
        session: &'a SessionRecord,
    ) -> Result<&'a Challenge, AuthError> {
        session
            .challenge
            .as_deref()
            .filter(|c| c.expires_at > self.clock.now())
            .ok_or(AuthError::ChallengeExpired)
    }

    /// Counts a code as wrong before it is checked, in the stored
    /// challenge, or refuses it (429) while every try left is taken by
    /// codes being checked.
    pub(super) fn reserve_code(&self, id: &SessionId) -> Result<CodeAttempt<'_>, AuthError> {
        let key = id.key();
        let now = self.clock.now();
        let mut reserved = Err(AuthError::LoginRequired);
        self.sessions.update(&key, |s| {
            reserved = match state::on(&mut s.challenge, Event::CodePosted, now) {
                Transition::Counted(number) => Ok(number),
                Transition::Refused(err) => Err(err),
                // Not an answer to a posted code: refused all the same.
                Transition::Moved | Transition::Ignored { .. } => Err(AuthError::ChallengeExpired),
            };
            reserved.is_ok()
        })?;
        Ok(CodeAttempt {
            auth: self,
            key,
            number: reserved?,
            settled: false,
        })
    }

    /// Ends at start-up the sessions whose every try is spent: a stop
    /// while their last code was being checked left it counted.
    pub(super) fn end_spent_challenges(&self) {
        let mut spent = Vec::new();
        self.sessions
            .for_each(|key: &SessionKey, s: &SessionRecord| {
                if s.challenge
                    .as_ref()
                    .is_some_and(|c| c.wrong_codes >= MAX_WRONG_CODES)
                {
                    spent.push(*key);
                }
            });
        for key in spent {
            if let Err(err) = self.sessions.remove(&key) {
                tracing::warn!(error = %err, "ending a session with no tries left failed");
            }
        }
    }

    /// challenge --> two_factor: a new id, the old one ends now. Removing
    /// the old session first makes the step happen once even when two
    /// requests race.
    pub(super) fn step_up(
        &self,
        id: &SessionId,
        session: &SessionRecord,
    ) -> Result<SessionId, AuthError> {
        if !self.sessions.take(&id.key())? {
            return Err(AuthError::LoginRequired);
        }
        let now = self.clock.now();
        let new_id = SessionId::generate()?;
        let record = SessionRecord {
            level: AuthLevel::TwoFactor,
            second_factor_time: Some(now),
            last_seen: now,
            challenge: None,
            second_factor_method: session.challenge.as_ref().map(|c| c.method),
            ..session.clone()
        };
        self.sessions.insert(new_id.key(), record)?;
        Ok(new_id)
    }

    fn push_request(&self, user: &User, requester: &Requester<'_>, now: u64) -> PushRequest {
        let host = requester.host;
        let details = BTreeMap::from([
            ("User".to_owned(), user.email.clone()),
            ("Site".to_owned(), host.to_owned()),
            ("From".to_owned(), requester.client.to_string()),
            ("Time".to_owned(), format_utc(now)),
        ]);
        PushRequest {
            message: self.settings.onetouch_message.replace("{host}", host),
            details,
            hidden_details: BTreeMap::from([("ip".to_owned(), requester.client.to_string())]),
            seconds_to_expire: self.settings.challenge_timeout,
        }
    }

    /// Rebuilds the index of pending pushes after a restart, from the
    /// sessions loaded (one process: a shared index outlives restarts).
    pub(super) fn index_pending_pushes(&self) {
        let now = self.clock.now();
        let mut pushes = Vec::new();
        self.sessions
            .for_each(|key: &SessionKey, s: &SessionRecord| {
                if let Some(challenge) = s
                    .challenge
                    .as_ref()
                    .filter(|c| c.push_status() == Some(PushStatus::Pending))
                {
                    pushes.push((*key, challenge.clone()));
                }
            });
        for (key, challenge) in pushes {
            if let Err(err) = self.index_push(&key, &challenge, now) {
                tracing::warn!(error = %err, "a pending push could not be indexed");
            }
        }
    }
}

/// How long the index keeps a push whose challenge expires at `expires_at`.
fn answerable_for(expires_at: u64, now: u64) -> Duration {
    Duration::from_secs(expires_at.saturating_sub(now) + ANSWER_GRACE_SECS)
}

/// The method a new challenge starts with: the one asked for when the user
/// has it, else their first.
fn pick(methods: &[Method], wanted: Option<Method>) -> Result<Method, AuthError> {
    wanted
        .filter(|m| methods.contains(m))
        .or_else(|| methods.first().copied())
        .ok_or(AuthError::NoSecondFactor)
}

impl Authenticator {
    fn view(
        &self,
        challenge: &Challenge,
        methods: Vec<Method>,
    ) -> Result<ChallengeView, AuthError> {
        let method = challenge.method;
        let expired = challenge.expires_at <= self.clock.now();
        let push = challenge.push_status().map(|status| match status {
            PushStatus::Pending if expired => PushStatus::Expired,
            status => status,
        });
        Ok(ChallengeView {
            method,
            delivery: self.provider_for(method)?.delivery(),
            methods,
            push,
            push_failed: challenge.phase == Phase::SendFailed,
            code_sent: challenge.last_code_sent.is_some(),
            wrong_codes_left: MAX_WRONG_CODES.saturating_sub(challenge.wrong_codes),
        })
    }

    /// The challenge of a session for the verify page, if it has one.
    pub fn challenge_view(&self, id: &SessionId) -> Option<ChallengeView> {
        let (session, user) = self.pending_session(id).ok()?;
        let challenge = session.challenge.as_ref()?;
        self.view(challenge, self.methods_of(&user).ok()?).ok()
    }
}

/// `2026-11-25 21:50 UTC`, for the push's details and the security page.
pub fn format_utc(unix: u64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix);
    let text = humantime::format_rfc3339_seconds(time).to_string();
    text.replace('T', " ").trim_end_matches('Z').to_owned() + " UTC"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Access;
    use crate::auth::flow::{AuthDeps, AuthSettings};
    use crate::auth::password::{PasswordChecker, hash_password};
    use crate::auth::regulation::Regulation;
    use crate::clock::testing::ManualClock;
    use crate::config::{RegulationConfig, SecondFactorMode};
    use crate::factor::{FactorError, FactorUser, SecondFactor};
    use crate::model::Policy;
    use crate::store::redis::testing::TestRedis;
    use crate::store::{FactorStore, LiveSessions, MemoryStore};
    use crate::store::{MemoryPushIndex, PushIndex, RedisPushIndex, RedisStore, SessionTimeouts};
    use crate::users::LiveUsers;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::time::Duration;

    /// A provider that records what it was asked and answers as told.
    struct FakeFactor {
        method: Method,
        delivery: Delivery,
        enrolled: AtomicU32,
        pushes: AtomicU32,
        codes_sent: AtomicU32,
        codes_checked: AtomicU32,
        down: AtomicBool,
        /// `check_code` never answers, as a provider that stopped talking.
        hangs: AtomicBool,
        push_answer: Mutex<Option<PushStatus>>,
        last_push: Mutex<Option<(String, PushRequest)>>,
        /// The push ids asked about, in order.
        polled: Mutex<Vec<String>>,
    }

    impl Default for FakeFactor {
        fn default() -> Self {
            FakeFactor::new(Method::Authy, Delivery::Push)
        }
    }

    impl FakeFactor {
        fn new(method: Method, delivery: Delivery) -> Self {
            FakeFactor {
                method,
                delivery,
                enrolled: AtomicU32::default(),
                pushes: AtomicU32::default(),
                codes_sent: AtomicU32::default(),
                codes_checked: AtomicU32::default(),
                down: AtomicBool::default(),
                hangs: AtomicBool::default(),
                push_answer: Mutex::default(),
                last_push: Mutex::default(),
                polled: Mutex::default(),
            }
        }

        fn fail_if_down(&self) -> Result<(), FactorError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(FactorError::Unavailable("down".into()));
            }
            Ok(())
        }
    }

    #[async_trait::async_trait]
    impl SecondFactor for FakeFactor {
        fn method(&self) -> Method {
            self.method
        }
        fn delivery(&self) -> Delivery {
            self.delivery
        }
        fn is_enrolled(&self, _user: &FactorUser<'_>) -> Result<bool, FactorError> {
            Ok(true)
        }
        async fn subject(&self, _user: &FactorUser<'_>) -> Result<String, FactorError> {
            self.fail_if_down()?;
            self.enrolled.fetch_add(1, Ordering::SeqCst);
            Ok("1001".into())
        }
        async fn start_push(
            &self,
            subject: &str,
            request: &PushRequest,
        ) -> Result<Option<String>, FactorError> {
            self.fail_if_down()?;
            assert_eq!(
                self.delivery,
                Delivery::Push,
                "a push from {:?}",
                self.method
            );
            let n = self.pushes.fetch_add(1, Ordering::SeqCst);
            let copy = PushRequest {
                message: request.message.clone(),
                details: request.details.clone(),
                hidden_details: request.hidden_details.clone(),
                seconds_to_expire: request.seconds_to_expire,
            };
            *self.last_push.lock().unwrap() = Some((subject.to_owned(), copy));
            Ok(Some(format!("push-{n}")))
        }
        async fn push_status(&self, push_id: &str) -> Result<PushStatus, FactorError> {
            self.fail_if_down()?;
            self.polled.lock().unwrap().push(push_id.to_owned());
            Ok(self
                .push_answer
                .lock()
                .unwrap()
                .unwrap_or(PushStatus::Pending))
        }
        async fn send_code(&self, _subject: &str) -> Result<(), FactorError> {
            self.fail_if_down()?;
            self.codes_sent.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        async fn check_code(&self, _subject: &str, code: &str) -> Result<CodeCheck, FactorError> {
            self.fail_if_down()?;
            self.codes_checked.fetch_add(1, Ordering::SeqCst);
            if self.hangs.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            // A network call: every check of a burst is under way at once.
            tokio::task::yield_now().await;
            Ok(if code == "1234567" {
                CodeCheck::Valid
            } else {
                CodeCheck::Invalid
            })
        }
    }

    struct Fixture {
        auth: Authenticator,
        factor: Arc<FakeFactor>,
        clock: Arc<ManualClock>,
        store: Arc<MemoryStore>,
    }

    fn alice() -> User {
        static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        User {
            email: "alice@example.com".into(),
            name: "Alice".into(),
            country_code: "1".into(),
            phone: "5551234567".into(),
            password: HASH.get_or_init(|| hash_password("pw").unwrap()).clone(),
            groups: vec![],
            second_factor: None,
            second_factor_reset: None,
            identity: Default::default(),
        }
    }

    /// An authenticator over `store` (a restart is a second one over the
    /// same store).
    fn authenticator(
        store: Arc<MemoryStore>,
        clock: Arc<ManualClock>,
        factor: Arc<FakeFactor>,
    ) -> Authenticator {
        authenticator_with(store, clock, vec![factor])
    }

    fn authenticator_with(
        store: Arc<MemoryStore>,
        clock: Arc<ManualClock>,
        factors: Vec<Arc<FakeFactor>>,
    ) -> Authenticator {
        let backing = Backing {
            sessions: Arc::new(LiveSessions::load(store.clone()).unwrap()),
            pushes: Arc::new(MemoryPushIndex::default()),
            factor_store: store,
        };
        authenticator_on(backing, clock, factors)
    }

    /// Where one replica keeps its state.
    struct Backing {
        sessions: Arc<LiveSessions>,
        pushes: Arc<dyn PushIndex>,
        factor_store: Arc<dyn FactorStore>,
    }

    fn authenticator_on(
        backing: Backing,
        clock: Arc<ManualClock>,
        factors: Vec<Arc<FakeFactor>>,
    ) -> Authenticator {
        let factors = factors
            .into_iter()
            .map(|f| f as Arc<dyn SecondFactor>)
            .collect();
        let deps = AuthDeps {
            sessions: backing.sessions,
            users: Arc::new(LiveUsers::new(vec![alice()])),
            passwords: PasswordChecker::new(1).unwrap(),
            regulation: Regulation::new(&RegulationConfig {
                max_failures: 5,
                max_failures_per_address: 50,
                window: Duration::from_secs(600),
                ban: Duration::from_secs(900),
                ipv6_prefix: 64,
            }),
            clock,
            providers: factors,
            totp: None,
            webauthn: None,
            factor_store: Some(backing.factor_store),
            pushes: backing.pushes,
        };
        let settings = AuthSettings {
            idle_timeout: 1800,
            lifetime: 43200,
            second_factor: SecondFactorMode::Required,
            challenge_timeout: 300,
            onetouch_message: "Log in to {host}".into(),
            totp_enrollment: crate::config::TotpEnrollment::FirstLogin,
            passwordless: false,
        };
        Authenticator::new(deps, settings)
    }

    fn fixture() -> Fixture {
        let clock = Arc::new(ManualClock::at(1_000_000));
        let store = Arc::new(MemoryStore::default());
        let factor = Arc::new(FakeFactor::default());
        Fixture {
            auth: authenticator(store.clone(), clock.clone(), factor.clone()),
            factor,
            clock,
            store,
        }
    }

    /// A poller's lease on a push, longer than any test.
    const LEASE: Duration = Duration::from_secs(60);

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 5));

    fn requester() -> Requester<'static> {
        Requester {
            host: "app.example.com",
            client: CLIENT,
        }
    }

    async fn login(f: &Fixture) -> SessionId {
        f.auth
            .login("alice@example.com", "pw", CLIENT, None)
            .await
            .unwrap()
            .session_id
    }

    async fn challenged(f: &Fixture) -> SessionId {
        let id = login(f).await;
        f.auth
            .begin_challenge(&id, &requester(), None)
            .await
            .unwrap();
        id
    }

    #[tokio::test]
    async fn a_challenge_sends_one_push_with_host_details_and_timeout() {
        let f = fixture();
        let id = login(&f).await;
        let view = f
            .auth
            .begin_challenge(&id, &requester(), None)
            .await
            .unwrap();
        assert_eq!(view.push, Some(PushStatus::Pending));
        f.auth
            .begin_challenge(&id, &requester(), None)
            .await
            .unwrap();
        assert_eq!(
            f.factor.pushes.load(Ordering::SeqCst),
            1,
            "a live challenge is kept"
        );
        let (subject, push) = f.factor.last_push.lock().unwrap().take().unwrap();
        assert_eq!(subject, "1001");
        assert_eq!(push.message, "Log in to app.example.com");
        assert_eq!(push.seconds_to_expire, 300);
        assert_eq!(push.details["User"], "alice@example.com");
        assert_eq!(push.details["From"], "192.0.2.5");
    }

    #[tokio::test]
    async fn an_approved_push_steps_up_once_under_a_new_id() {
        let f = fixture();
        let id = challenged(&f).await;
        assert!(matches!(
            f.auth.push_outcome(&id).unwrap(),
            StatusOutcome::Waiting(Some(PushStatus::Pending))
        ));
        assert!(
            f.auth
                .record_push_answer("push-0", Some("1001"), PushStatus::Approved)
        );
        assert!(
            !f.auth
                .record_push_answer("push-0", Some("1001"), PushStatus::Denied),
            "once"
        );
        let StatusOutcome::Confirmed(new_id) = f.auth.push_outcome(&id).unwrap() else {
            panic!("approved push must confirm");
        };
        assert_ne!(new_id, id);
        assert!(matches!(
            f.auth.check(Some(&new_id), Policy::TwoFactor).unwrap(),
            Access::Granted(Some(_))
        ));
        assert!(
            matches!(
                f.auth.check(Some(&id), Policy::OneFactor).unwrap(),
                Access::NeedsLogin
            ),
            "old id ends"
        );
    }

    #[tokio::test]
    async fn a_push_answer_confirms_only_its_own_session() {
        let f = fixture();
        let first = challenged(&f).await;
        let second = challenged(&f).await;
        assert!(
            !f.auth
                .record_push_answer("push-0", Some("9999"), PushStatus::Approved),
            "wrong authy id"
        );
        assert!(
            !f.auth
                .record_push_answer("unknown", Some("1001"), PushStatus::Approved)
        );
        assert!(
            f.auth
                .record_push_answer("push-1", Some("1001"), PushStatus::Approved)
        );
        assert!(matches!(
            f.auth.check(Some(&first), Policy::TwoFactor).unwrap(),
            Access::NeedsSecondFactor
        ));
        assert!(matches!(
            f.auth.check(Some(&second), Policy::TwoFactor).unwrap(),
            Access::SteppedUp(..)
        ));
        assert!(
            f.auth
                .record_push_answer("push-0", Some("1001"), PushStatus::Approved),
            "a mismatched answer must not block the real one"
        );
    }

    /// A push answer comes without a request: the audit line names the
    /// user and the session, and nothing of a browser.
    #[tokio::test]
    async fn an_applied_push_answer_is_audited_once() {
        let f = fixture();
        let dropped = prometheus_client::metrics::counter::Counter::default();
        let (audit, mut records) = crate::audit::Audit::bounded(8, "t", dropped);
        let f = Fixture {
            auth: f.auth.with_audit(audit),
            ..f
        };
        let first = challenged(&f).await;
        let second = challenged(&f).await;
        assert!(
            !f.auth
                .record_push_answer("unknown", Some("1001"), PushStatus::Denied)
        );
        assert!(
            f.auth
                .record_push_answer("push-0", Some("1001"), PushStatus::Denied)
        );
        assert!(
            f.auth
                .record_push_answer("push-1", Some("1001"), PushStatus::Approved)
        );
        assert!(
            !f.auth
                .record_push_answer("push-1", Some("1001"), PushStatus::Approved)
        );
        let mut lines = Vec::new();
        while let Ok(record) = records.try_recv() {
            lines.push(serde_json::from_str::<serde_json::Value>(&record.to_line()).unwrap());
        }
        let reference = |id: &SessionId| serde_json::to_value(SessionRef::of(&id.key())).unwrap();
        assert_eq!(lines.len(), 2, "{lines:#?}");
        for (line, (event, id)) in lines
            .iter()
            .zip([("push_denied", &first), ("push_approved", &second)])
        {
            assert_eq!(line["event"], event);
            assert_eq!(line["user"], "alice@example.com");
            assert_eq!(line["session"], reference(id));
            for field in ["client", "user_agent", "request_id"] {
                assert!(line[field].is_null(), "{line}");
            }
        }
    }

    #[tokio::test]
    async fn polling_finds_answers_without_a_callback() {
        let f = fixture();
        let id = challenged(&f).await;
        assert_eq!(f.auth.poll_pushes(LEASE).await, 0);
        *f.factor.push_answer.lock().unwrap() = Some(PushStatus::Denied);
        assert_eq!(f.auth.poll_pushes(LEASE).await, 1);
        assert!(matches!(
            f.auth.push_outcome(&id).unwrap(),
            StatusOutcome::Waiting(Some(PushStatus::Denied))
        ));
        assert_eq!(f.auth.poll_pushes(LEASE).await, 0, "nothing left to poll");
    }

    /// The client's address noted at the login is carried to the session
    /// the step-up makes, as the device is, and stored with it.
    #[tokio::test]
    async fn the_step_up_keeps_the_client_address_of_the_login() {
        let f = fixture();
        let id = challenged(&f).await;
        let new_id = f.auth.verify_code(&id, "1234567").await.unwrap();
        let stored = crate::store::SessionStore::load_all(f.store.as_ref()).unwrap();
        let (_, confirmed) = stored
            .iter()
            .find(|(key, _)| *key == new_id.key())
            .expect("the confirmed session is stored");
        assert_eq!(confirmed.level, AuthLevel::TwoFactor);
        assert_eq!(confirmed.client, Some(CLIENT));
    }

    #[tokio::test]
    async fn a_valid_code_steps_up_and_wrong_codes_end_the_session() {
        let f = fixture();
        let id = challenged(&f).await;
        let new_id = f.auth.verify_code(&id, " 1234567 ").await.unwrap();
        assert!(matches!(
            f.auth.check(Some(&new_id), Policy::TwoFactor).unwrap(),
            Access::Granted(_)
        ));

        let id = challenged(&f).await;
        for left in (1..MAX_WRONG_CODES).rev() {
            let err = f.auth.verify_code(&id, "0000000").await.unwrap_err();
            assert!(
                matches!(err, AuthError::InvalidCode { left: l } if l == left),
                "{err}"
            );
        }
        let err = f.auth.verify_code(&id, "0000000").await.unwrap_err();
        assert!(matches!(err, AuthError::TooManyWrongCodes), "{err}");
        assert!(matches!(
            f.auth.check(Some(&id), Policy::OneFactor).unwrap(),
            Access::NeedsLogin
        ));
    }

    #[tokio::test]
    async fn a_burst_of_wrong_codes_checks_at_most_max_wrong_codes() {
        let f = fixture();
        let id = challenged(&f).await;
        let posts = (0..40).map(|_| f.auth.verify_code(&id, "0000000"));
        let outcomes = futures_util::future::join_all(posts).await;
        let checked = f.factor.codes_checked.load(Ordering::SeqCst);
        assert_eq!(checked, MAX_WRONG_CODES, "{outcomes:?}");
        let answered = |wanted: fn(&AuthError) -> bool| {
            outcomes
                .iter()
                .filter(|o| o.as_ref().is_err_and(wanted))
                .count()
        };
        let wrong = answered(|e| {
            matches!(
                e,
                AuthError::InvalidCode { .. } | AuthError::TooManyWrongCodes
            )
        });
        let refused = answered(|e| matches!(e, AuthError::RateLimited { retry_after: 1 }));
        assert_eq!((wrong, refused), (5, 35), "{outcomes:?}");
        assert!(matches!(
            f.auth.check(Some(&id), Policy::OneFactor).unwrap(),
            Access::NeedsLogin
        ));
    }

    #[tokio::test]
    async fn a_code_check_dropped_before_its_answer_counts_as_wrong() {
        let f = fixture();
        let id = challenged(&f).await;
        f.factor.hangs.store(true, Ordering::SeqCst);
        let cut = tokio::time::timeout(Duration::ZERO, f.auth.verify_code(&id, "1234567")).await;
        assert!(cut.is_err(), "the check had not ended yet");
        let view = f.auth.challenge_view(&id).unwrap();
        assert_eq!(view.wrong_codes_left, MAX_WRONG_CODES - 1);
        for _ in 1..MAX_WRONG_CODES {
            let cut =
                tokio::time::timeout(Duration::ZERO, f.auth.verify_code(&id, "1234567")).await;
            assert!(cut.is_err(), "the check had not ended yet");
        }
        assert!(
            matches!(
                f.auth.check(Some(&id), Policy::OneFactor).unwrap(),
                Access::NeedsLogin
            ),
            "the fifth ends the session"
        );
    }

    #[tokio::test]
    async fn a_session_stopped_with_no_tries_left_ends_at_start_up() {
        let f = fixture();
        let id = challenged(&f).await;
        f.auth
            .sessions
            .update(&id.key(), |s| {
                s.challenge.as_mut().unwrap().wrong_codes = MAX_WRONG_CODES;
                true
            })
            .unwrap();
        let err = f.auth.verify_code(&id, "1234567").await.unwrap_err();
        assert!(
            matches!(err, AuthError::RateLimited { retry_after: 1 }),
            "{err}"
        );
        let restarted = rebuild(&f);
        assert!(matches!(
            restarted.check(Some(&id), Policy::OneFactor).unwrap(),
            Access::NeedsLogin
        ));
    }

    #[tokio::test]
    async fn provider_down_is_not_a_wrong_code_and_leaves_the_code_path() {
        let f = fixture();
        let id = login(&f).await;
        f.factor.down.store(true, Ordering::SeqCst);
        let err = f
            .auth
            .begin_challenge(&id, &requester(), None)
            .await
            .unwrap_err();
        assert!(matches!(err, AuthError::ProviderUnavailable), "{err}");
        f.factor.down.store(false, Ordering::SeqCst);
        f.auth
            .begin_challenge(&id, &requester(), None)
            .await
            .unwrap();
        f.factor.down.store(true, Ordering::SeqCst);
        for _ in 0..MAX_WRONG_CODES + 1 {
            let err = f.auth.verify_code(&id, "1234567").await.unwrap_err();
            assert!(matches!(err, AuthError::ProviderUnavailable), "{err}");
        }
        f.factor.down.store(false, Ordering::SeqCst);
        assert!(
            f.auth.verify_code(&id, "1234567").await.is_ok(),
            "no attempt was counted"
        );
    }

    #[tokio::test]
    async fn resend_is_limited_to_once_per_30_seconds() {
        let f = fixture();
        let id = challenged(&f).await;
        f.auth.resend_code(&id).await.unwrap();
        let err = f.auth.resend_code(&id).await.unwrap_err();
        assert!(
            matches!(err, AuthError::RateLimited { retry_after: 30 }),
            "{err}"
        );
        f.clock.advance(30);
        f.auth.resend_code(&id).await.unwrap();
        assert_eq!(f.factor.codes_sent.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_expired_challenge_takes_no_codes_and_is_replaced() {
        let f = fixture();
        let id = challenged(&f).await;
        f.clock.advance(301);
        assert!(matches!(
            f.auth.push_outcome(&id).unwrap(),
            StatusOutcome::Waiting(Some(PushStatus::Expired))
        ));
        let err = f.auth.verify_code(&id, "1234567").await.unwrap_err();
        assert!(matches!(err, AuthError::ChallengeExpired), "{err}");
        f.auth
            .begin_challenge(&id, &requester(), None)
            .await
            .unwrap();
        assert_eq!(f.factor.pushes.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn pending_pushes_are_found_again_after_a_restart() {
        let f = fixture();
        let id = challenged(&f).await;
        let restarted = rebuild(&f);
        assert!(restarted.record_push_answer("push-0", Some("1001"), PushStatus::Approved));
        assert!(matches!(
            restarted.push_outcome(&id).unwrap(),
            StatusOutcome::Confirmed(_)
        ));
    }

    #[test]
    fn a_push_is_indexed_as_long_as_its_challenge_plus_the_grace() {
        assert_eq!(answerable_for(1_300, 1_000), Duration::from_secs(330));
        assert_eq!(answerable_for(1_000, 1_300), Duration::from_secs(30));
    }

    #[tokio::test]
    async fn the_verify_page_indexes_its_pending_push_again() {
        let f = fixture();
        let id = challenged(&f).await;
        // As if the store had failed as the push was indexed.
        f.auth.pushes.remove("push-0").unwrap();
        f.auth
            .begin_challenge(&id, &requester(), None)
            .await
            .unwrap();
        assert_eq!(f.factor.pushes.load(Ordering::SeqCst), 1, "no second push");
        assert!(
            f.auth
                .record_push_answer("push-0", Some("1001"), PushStatus::Approved)
        );
    }

    fn rebuild(f: &Fixture) -> Authenticator {
        authenticator(
            f.store.clone(),
            f.clock.clone(),
            Arc::new(FakeFactor::default()),
        )
    }

    struct Methods {
        auth: Authenticator,
        authy: Arc<FakeFactor>,
        other: Arc<FakeFactor>,
    }

    /// Authy and a second method beside it.
    fn with_second(method: Method, delivery: Delivery) -> Methods {
        let authy = Arc::new(FakeFactor::default());
        let other = Arc::new(FakeFactor::new(method, delivery));
        let auth = authenticator_with(
            Arc::new(MemoryStore::default()),
            Arc::new(ManualClock::at(1_000_000)),
            vec![authy.clone(), other.clone()],
        );
        Methods { auth, authy, other }
    }

    async fn login_to(auth: &Authenticator) -> SessionId {
        auth.login("alice@example.com", "pw", CLIENT, None)
            .await
            .unwrap()
            .session_id
    }

    #[tokio::test]
    async fn switching_methods_sends_the_new_one_and_keeps_the_wrong_code_count() {
        let m = with_second(Method::Verify, Delivery::SentCode);
        let id = login_to(&m.auth).await;
        let first = m
            .auth
            .begin_challenge(&id, &requester(), None)
            .await
            .unwrap();
        assert_eq!(first.method, Method::Authy);
        assert_eq!(first.methods, vec![Method::Authy, Method::Verify]);
        for _ in 0..2 {
            m.auth.verify_code(&id, "0000000").await.unwrap_err();
        }
        let switched = m
            .auth
            .begin_challenge(&id, &requester(), Some(Method::Verify))
            .await
            .unwrap();
        assert_eq!(switched.method, Method::Verify);
        assert!(switched.code_sent, "a sent-code method sends on start");
        assert_eq!(switched.push, None);
        assert_eq!(switched.wrong_codes_left, MAX_WRONG_CODES - 2);
        assert_eq!(m.other.codes_sent.load(Ordering::SeqCst), 1);
        assert_eq!(m.other.pushes.load(Ordering::SeqCst), 0);
        assert_eq!(m.authy.pushes.load(Ordering::SeqCst), 1);
        let err = m.auth.resend_code(&id).await.unwrap_err();
        assert!(
            matches!(err, AuthError::RateLimited { retry_after: 30 }),
            "the start counts as a send: {err}"
        );
    }

    #[tokio::test]
    async fn an_app_code_method_sends_nothing() {
        let m = with_second(Method::Totp, Delivery::AppCode);
        let id = login_to(&m.auth).await;
        let view = m
            .auth
            .begin_challenge(&id, &requester(), Some(Method::Totp))
            .await
            .unwrap();
        assert_eq!(
            (view.method, view.delivery),
            (Method::Totp, Delivery::AppCode)
        );
        assert!(!view.code_sent);
        let err = m.auth.resend_code(&id).await.unwrap_err();
        assert!(matches!(err, AuthError::ProviderRejected(_)), "{err}");
        assert_eq!(m.other.codes_sent.load(Ordering::SeqCst), 0);
        assert_eq!(m.authy.pushes.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn the_method_that_confirmed_last_is_offered_first() {
        let m = with_second(Method::Totp, Delivery::AppCode);
        let id = login_to(&m.auth).await;
        m.auth
            .begin_challenge(&id, &requester(), Some(Method::Totp))
            .await
            .unwrap();
        m.auth.verify_code(&id, "1234567").await.unwrap();
        let again = login_to(&m.auth).await;
        let view = m
            .auth
            .begin_challenge(&again, &requester(), None)
            .await
            .unwrap();
        assert_eq!(view.method, Method::Totp);
        assert_eq!(view.methods, vec![Method::Totp, Method::Authy]);
        assert_eq!(m.authy.pushes.load(Ordering::SeqCst), 0, "no push sent");
    }

    #[tokio::test]
    async fn a_method_the_user_does_not_have_is_not_started() {
        let m = with_second(Method::Totp, Delivery::AppCode);
        let mut pinned = alice();
        pinned.second_factor = Some("totp".into());
        let user = Arc::new(pinned);
        assert_eq!(m.auth.methods_of(&user).unwrap(), vec![Method::Totp]);
        let id = login_to(&m.auth).await;
        let view = m
            .auth
            .begin_challenge(&id, &requester(), Some(Method::Verify))
            .await
            .unwrap();
        assert_eq!(view.method, Method::Authy, "unknown wish: the first method");
    }

    /// One replica of several sharing `redis`: its own connection, cache
    /// of the sessions and view of the push index.
    fn replica(
        redis: &TestRedis,
        clock: &Arc<ManualClock>,
        factor: &Arc<FakeFactor>,
    ) -> Authenticator {
        let timeouts = SessionTimeouts {
            idle: Duration::from_secs(1800),
            lifetime: Duration::from_secs(43200),
        };
        let store = Arc::new(RedisStore::connect(&redis.config("ha:"), timeouts).unwrap());
        let backing = Backing {
            sessions: Arc::new(LiveSessions::shared(store.clone())),
            pushes: Arc::new(RedisPushIndex::new(store.link().clone())),
            factor_store: store,
        };
        authenticator_on(backing, clock.clone(), vec![factor.clone()])
    }

    /// Polls `outcome` until it is `Some`, for at most five seconds.
    fn within_5s<T>(mut outcome: impl FnMut() -> Option<T>) -> T {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(found) = outcome() {
                return found;
            }
            assert!(std::time::Instant::now() < deadline, "not within 5 s");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Runs a replica test's steps on a runtime of their own: the
    /// replicas' Redis links (each with its runtime) are dropped after it.
    fn steps<F: std::future::Future>(steps: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(steps)
    }

    #[test]
    fn a_push_started_on_one_replica_and_answered_on_another_steps_up_once() {
        let redis = TestRedis::start();
        let clock = Arc::new(ManualClock::at(1_000_000));
        let factor = Arc::new(FakeFactor::default());
        let (a, b) = (
            replica(&redis, &clock, &factor),
            replica(&redis, &clock, &factor),
        );
        steps(push_answered_elsewhere(&a, &b));
    }

    async fn push_answered_elsewhere(a: &Authenticator, b: &Authenticator) {
        let id = login_to(a).await;
        a.begin_challenge(&id, &requester(), None).await.unwrap();
        assert!(
            b.record_push_answer("push-0", Some("1001"), PushStatus::Approved),
            "the webhook on B finds the session that waits on A"
        );
        for (name, replica) in [("A", a), ("B", b)] {
            assert!(
                !replica.record_push_answer("push-0", Some("1001"), PushStatus::Approved),
                "applied a second time on {name}"
            );
        }
        let new_id = within_5s(|| match a.push_outcome(&id) {
            Ok(StatusOutcome::Confirmed(new_id)) => Some(new_id),
            Ok(StatusOutcome::Waiting(_)) => None,
            Err(err) => panic!("{err}"),
        });
        for (name, replica) in [("A", a), ("B", b)] {
            assert!(
                matches!(replica.push_outcome(&id), Err(AuthError::LoginRequired)),
                "stepped up a second time on {name}"
            );
            assert!(matches!(
                replica.check(Some(&new_id), Policy::TwoFactor).unwrap(),
                Access::Granted(Some(_))
            ));
        }
    }

    #[test]
    fn each_pending_push_is_polled_by_one_replica_until_it_stops() {
        let redis = TestRedis::start();
        let clock = Arc::new(ManualClock::at(1_000_000));
        let (factor_a, factor_b) = (
            Arc::new(FakeFactor::default()),
            Arc::new(FakeFactor::default()),
        );
        let a = replica(&redis, &clock, &factor_a);
        let b = replica(&redis, &clock, &factor_b);
        steps(polled_once_each(&a, &b, &factor_a, &factor_b));
    }

    async fn polled_once_each(
        a: &Authenticator,
        b: &Authenticator,
        factor_a: &FakeFactor,
        factor_b: &FakeFactor,
    ) {
        for _ in 0..4 {
            let id = login_to(a).await;
            a.begin_challenge(&id, &requester(), None).await.unwrap();
        }
        let lease = Duration::from_millis(500);
        for _ in 0..2 {
            futures_util::join!(a.poll_pushes(lease), b.poll_pushes(lease));
        }
        let polled = |factor: &FakeFactor| {
            let mut ids = factor.polled.lock().unwrap().clone();
            ids.sort();
            ids.dedup();
            ids
        };
        let (by_a, by_b) = (polled(factor_a), polled(factor_b));
        assert!(
            by_a.iter().all(|id| !by_b.contains(id)),
            "polled by both: {by_a:?} {by_b:?}"
        );
        assert_eq!(by_a.len() + by_b.len(), 4, "{by_a:?} {by_b:?}");
        // A stops polling (as if it died): its leases run out, and B takes
        // every push over.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while polled(factor_b).len() < 4 {
            assert!(
                std::time::Instant::now() < deadline,
                "no takeover within 5 s"
            );
            b.poll_pushes(lease).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
