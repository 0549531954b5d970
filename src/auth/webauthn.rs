//! WebAuthn in the login state machine: the same arrows as the other
//! methods, with a ceremony in place of a code.
//!
//! ```text
//! one_factor --assertion options--> challenge Ceremony{Assertion}
//! Ceremony{Assertion} --the user's key answers--> two_factor (new id)
//! one_factor (no factor, may enroll) --registration--> key kept, two_factor (new id)
//! two_factor (confirmed in the last 5 min) --registration--> key kept, same session
//! two_factor (confirmed earlier) --confirm again--> one_factor (new id), second step again
//! anonymous --passkey (user verified)--> two_factor; (not verified) --> one_factor
//! ```
//!
//! The ceremony's state is the session's challenge: bound to it, gone with
//! it, and taken by the first answer (`Event::CeremonyAnswered`). A refused
//! answer counts like a wrong code.

use std::sync::Arc;

use crate::factor::webauthn::{Asserted, Ceremony, WebauthnFactor};
use crate::model::{Method, User};
use crate::store::{
    AuthLevel, CeremonyKind, Challenge, Phase, SessionId, SessionRecord, WebauthnRecord,
};

use super::error::{AuthError, provider_error};
use super::flow::{Authenticator, LoginSuccess};
use super::methods::factor_user;
use super::state::{self, Event, Transition};

/// How recent a second factor must be to add or remove one.
pub const RECENT_CONFIRMATION_SECS: u64 = 5 * 60;

/// What a finished registration did to the session.
#[derive(Debug)]
pub enum Registered {
    /// It was the user's first factor: the session stepped up.
    SteppedUp(SessionId),
    /// A confirmed user added one: same session.
    Added,
}

/// Where a passkey sign-in comes from, kept with its session for the
/// sessions page (as a password login keeps it).
#[derive(Debug, Clone, Copy)]
pub struct LoginFrom {
    pub client: std::net::IpAddr,
    pub device: Option<crate::model::Device>,
}

impl Authenticator {
    pub(super) fn webauthn(&self) -> Result<&Arc<WebauthnFactor>, AuthError> {
        self.webauthn.as_ref().ok_or(AuthError::NoSecondFactor)
    }

    /// Whether the login page offers "Sign in with a passkey".
    pub fn offers_passkeys(&self) -> bool {
        self.webauthn.is_some() && self.settings.passwordless
    }

    /// The methods a user with no second factor may set up now, in
    /// `auth.methods` order: TOTP and WebAuthn, as the users file allows.
    pub fn enrollable(&self, id: &SessionId) -> Result<Vec<Method>, AuthError> {
        let (_, user) = self.pending_session(id)?;
        self.enrollable_for(&user)
    }

    pub(super) fn enrollable_for(&self, user: &User) -> Result<Vec<Method>, AuthError> {
        if !self.methods_of(user)?.is_empty() || !self.enrollment_allowed(user) {
            return Ok(Vec::new());
        }
        Ok(self
            .candidates(user)
            .map(|p| p.method())
            .filter(|m| match m {
                Method::Totp => self.totp.is_some(),
                Method::Webauthn => self.webauthn.is_some(),
                Method::Authy | Method::Verify => false,
            })
            .collect())
    }

    /// Whether an admin reset the session's user (the enrollment page says
    /// why they set up a factor again).
    pub fn was_reset(&self, id: &SessionId) -> bool {
        self.pending_session(id)
            .is_ok_and(|(_, user)| user.second_factor_reset.is_some())
    }

    /// The user's keys, for the security page (confirmed sessions only).
    pub fn security_keys(&self, id: &SessionId) -> Result<Vec<WebauthnRecord>, AuthError> {
        let (_, user) = self.confirmed_session(id)?;
        self.webauthn()?
            .credentials(&factor_user(&user))
            .map_err(provider_error)
    }

    /// Whether this confirmed session may add or remove a factor now.
    pub fn confirmed_recently(&self, id: &SessionId) -> Result<bool, AuthError> {
        let (session, _) = self.confirmed_session(id)?;
        Ok(self.is_recent(&session))
    }

    fn is_recent(&self, session: &SessionRecord) -> bool {
        session
            .second_factor_time
            .is_some_and(|at| self.clock.now().saturating_sub(at) < RECENT_CONFIRMATION_SECS)
    }

    /// two_factor --confirm again--> one_factor under a new id: the second
    /// step follows, and with it a fresh confirmation time.
    pub fn confirm_again(&self, id: &SessionId) -> Result<SessionId, AuthError> {
        let (session, _) = self.confirmed_session(id)?;
        if !self.sessions.take(&id.key())? {
            return Err(AuthError::LoginRequired);
        }
        let new_id = SessionId::generate()?;
        let record = SessionRecord {
            level: AuthLevel::OneFactor,
            second_factor_time: None,
            last_seen: self.clock.now(),
            challenge: None,
            ..session
        };
        self.sessions.insert(new_id.key(), record)?;
        Ok(new_id)
    }

    /// Removes one of the user's keys. Not their last factor while a
    /// second factor is required, and only with a recent confirmation.
    pub fn remove_security_key(&self, id: &SessionId, key_id: &str) -> Result<bool, AuthError> {
        let (session, user) = self.confirmed_session(id)?;
        if !self.is_recent(&session) {
            return Err(AuthError::ConfirmAgain);
        }
        let methods = self.methods_of(&user)?;
        let keys = self.security_keys(id)?;
        let is_last = keys.len() == 1
            && keys[0].id == key_id
            && methods.iter().all(|m| *m == Method::Webauthn);
        if is_last && self.second_factor_required() {
            return Err(AuthError::LastFactor);
        }
        let removed = self
            .webauthn()?
            .remove(&user.email, key_id)
            .map_err(provider_error)?;
        if removed {
            tracing::info!(user = %user.email, "a security key was removed");
        }
        Ok(removed)
    }

    /// Registration options for the browser: enrollment (no factor yet)
    /// or a confirmed user's new key.
    pub fn registration_options(&self, id: &SessionId) -> Result<String, AuthError> {
        let (session, user) = self.session_and_user(id)?;
        if session.level >= AuthLevel::TwoFactor {
            if !self.is_recent(&session) {
                return Err(AuthError::ConfirmAgain);
            }
        } else if !self.enrollable_for(&user)?.contains(&Method::Webauthn) {
            return Err(AuthError::NoSecondFactor);
        }
        let ceremony = self
            .webauthn()?
            .start_registration(&factor_user(&user), &user.name)
            .map_err(provider_error)?;
        self.start_ceremony(id, &user, CeremonyKind::Registration, ceremony)
    }

    /// The browser's new key, kept under `name`.
    pub fn finish_registration(
        &self,
        id: &SessionId,
        answer: &str,
        name: &str,
    ) -> Result<Registered, AuthError> {
        let (session, user) = self.session_and_user(id)?;
        let confirmed = session.level >= AuthLevel::TwoFactor;
        // Checked again: the page may be old, or another session enrolled.
        if confirmed && !self.is_recent(&session) {
            return Err(AuthError::ConfirmAgain);
        }
        if !confirmed && !self.enrollable_for(&user)?.contains(&Method::Webauthn) {
            return Err(AuthError::NoSecondFactor);
        }
        let ceremony = self.take_ceremony(id, CeremonyKind::Registration)?;
        let attempt = if confirmed {
            None
        } else {
            Some(self.reserve_code(id)?)
        };
        let kept =
            self.webauthn()?
                .finish_registration(&factor_user(&user), &ceremony, answer, name);
        match kept {
            Ok(Ok(record)) => {
                tracing::info!(user = %user.email, key = %record.name, "security key registered");
                self.remember_method(&user, Method::Webauthn);
                match attempt {
                    Some(attempt) => {
                        attempt.valid();
                        Ok(Registered::SteppedUp(self.step_up(id, &session)?))
                    }
                    None => Ok(Registered::Added),
                }
            }
            Ok(Err(refused)) => {
                tracing::warn!(user = %user.email, reason = %refused, "security key registration refused");
                match attempt {
                    Some(attempt) => Err(wrong_or(attempt.wrong()?, refused)),
                    None => Err(AuthError::KeyRefused(refused)),
                }
            }
            Err(err) => {
                if let Some(attempt) = attempt {
                    attempt.unchecked();
                }
                Err(provider_error(err))
            }
        }
    }

    /// The second step's options: a challenge only this user's keys answer.
    pub fn assertion_options(&self, id: &SessionId) -> Result<String, AuthError> {
        let (_, user) = self.pending_session(id)?;
        if !self.methods_of(&user)?.contains(&Method::Webauthn) {
            return Err(AuthError::NoSecondFactor);
        }
        let ceremony = self
            .webauthn()?
            .start_assertion(&factor_user(&user))
            .map_err(provider_error)?;
        self.start_ceremony(id, &user, CeremonyKind::Assertion, ceremony)
    }

    /// challenge --the user's key answers--> two_factor under a new id.
    pub fn finish_assertion(&self, id: &SessionId, answer: &str) -> Result<SessionId, AuthError> {
        let (session, user) = self.pending_session(id)?;
        let ceremony = self.take_ceremony(id, CeremonyKind::Assertion)?;
        let attempt = self.reserve_code(id)?;
        match self
            .webauthn()?
            .finish_assertion(&factor_user(&user), &ceremony, answer)
        {
            Ok(Ok(_)) => {
                attempt.valid();
                self.remember_method(&user, Method::Webauthn);
                self.step_up(id, &session)
            }
            Ok(Err(refused)) => {
                tracing::warn!(user = %user.email, reason = %refused, "security key refused");
                Err(wrong_or(attempt.wrong()?, refused))
            }
            Err(err) => {
                attempt.unchecked();
                Err(provider_error(err))
            }
        }
    }

    /// A passkey login's ceremony: the options for the browser and the
    /// state the gateway keeps (sealed, for one use) until the answer.
    pub fn passkey_options(&self) -> Result<Ceremony, AuthError> {
        if !self.offers_passkeys() {
            return Err(AuthError::NoSecondFactor);
        }
        self.webauthn()?
            .start_passwordless()
            .map_err(provider_error)
    }

    /// anonymous --passkey--> two_factor when the key verified its holder,
    /// else one_factor (the second step follows). A refused key reads like
    /// a wrong password.
    pub fn passkey_login(
        &self,
        state: &str,
        answer: &str,
        previous: Option<&SessionId>,
        from: LoginFrom,
    ) -> Result<LoginSuccess, AuthError> {
        if !self.offers_passkeys() {
            return Err(AuthError::NoSecondFactor);
        }
        let reset_of = |email: &str| self.users.find(email).map(|u| u.second_factor_reset);
        let asserted = match self
            .webauthn()?
            .finish_passwordless(state, answer, reset_of)
            .map_err(provider_error)?
        {
            Ok(asserted) => asserted,
            Err(refused) => {
                tracing::warn!(reason = %refused, "passkey login refused");
                return Err(AuthError::InvalidCredentials);
            }
        };
        let user = self
            .users
            .find(&asserted.email)
            .ok_or(AuthError::InvalidCredentials)?;
        // A disabled user's key reads like a wrong password; a store that
        // cannot say is no permission.
        if self.is_disabled(&user.email)? {
            return Err(AuthError::InvalidCredentials);
        }
        if let Some(previous) = previous {
            self.sessions.remove(&previous.key())?;
        }
        self.remember_method(&user, Method::Webauthn);
        self.passkey_session(user, &asserted, from)
    }

    fn passkey_session(
        &self,
        user: Arc<User>,
        asserted: &Asserted,
        from: LoginFrom,
    ) -> Result<LoginSuccess, AuthError> {
        let now = self.clock.now();
        let level = match asserted.user_verified {
            true => AuthLevel::TwoFactor,
            false => AuthLevel::OneFactor,
        };
        let session_id = SessionId::generate()?;
        let record = SessionRecord {
            level,
            second_factor_time: (level == AuthLevel::TwoFactor).then_some(now),
            second_factor_method: (level == AuthLevel::TwoFactor).then_some(Method::Webauthn),
            client: Some(from.client),
            device: from.device,
            ..super::flow::one_factor_session(&user, now)
        };
        self.sessions.insert(session_id.key(), record)?;
        tracing::info!(user = %user.email, level = ?level, "passkey login");
        Ok(LoginSuccess {
            session_id,
            level,
            user,
        })
    }

    fn start_ceremony(
        &self,
        id: &SessionId,
        user: &User,
        kind: CeremonyKind,
        ceremony: Ceremony,
    ) -> Result<String, AuthError> {
        let now = self.clock.now();
        let challenge = Challenge {
            method: Method::Webauthn,
            subject: user.email.to_lowercase(),
            phase: Phase::Ceremony {
                kind,
                state: Some(ceremony.state),
            },
            wrong_codes: 0,
            expires_at: now + self.settings.challenge_timeout,
            last_code_sent: None,
        };
        let mut started = false;
        self.sessions.update(&id.key(), |s| {
            started = state::on(&mut s.challenge, Event::Started(challenge.clone()), now).changed();
            started
        })?;
        if !started {
            return Err(AuthError::LoginRequired);
        }
        Ok(ceremony.options)
    }

    /// The ceremony's state, taken: a second answer finds none.
    fn take_ceremony(&self, id: &SessionId, kind: CeremonyKind) -> Result<String, AuthError> {
        let now = self.clock.now();
        let mut taken = None;
        self.sessions.update(&id.key(), |s| {
            let state = match s.challenge.as_deref() {
                Some(Challenge {
                    phase: Phase::Ceremony { state, .. },
                    ..
                }) => state.clone(),
                _ => None,
            };
            let answered = state::on(&mut s.challenge, Event::CeremonyAnswered(kind), now);
            if matches!(answered, Transition::Moved) {
                taken = state;
            }
            answered.changed()
        })?;
        taken.ok_or(AuthError::ChallengeExpired)
    }

    fn session_and_user(&self, id: &SessionId) -> Result<(SessionRecord, Arc<User>), AuthError> {
        let (_, session, user) = self.live_session(id)?.ok_or(AuthError::LoginRequired)?;
        Ok((session, user))
    }

    fn confirmed_session(&self, id: &SessionId) -> Result<(SessionRecord, Arc<User>), AuthError> {
        let (session, user) = self.session_and_user(id)?;
        if !self.level_satisfies(session.level, crate::model::Policy::TwoFactor) {
            return Err(AuthError::LoginRequired);
        }
        Ok((session, user))
    }
}

/// A refused key counts as a wrong code: the count's error (tries left,
/// or the session ended) unless the count itself failed.
fn wrong_or(counted: AuthError, refused: crate::factor::webauthn::Refused) -> AuthError {
    match counted {
        AuthError::InvalidCode { .. } => AuthError::KeyRefused(refused),
        other => other,
    }
}
