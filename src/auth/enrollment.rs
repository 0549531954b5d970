//! TOTP enrollment, the one way a factor is added from a password-only
//! session:
//!
//! ```text
//! one_factor (no second factor, may enroll) --enrollment page--> one_factor + pending secret
//! pending secret --valid code--> secret kept, two_factor (new id)
//! pending secret --5 wrong codes--> anonymous (session deleted)
//! ```
//!
//! Only a user with no second factor may enroll, and with
//! `totp.enrollment = "admin"` only one an admin reset: a password alone
//! must never be enough to replace a factor.

use crate::config::TotpEnrollment;
use crate::factor::CodeCheck;
use crate::model::Method;
use crate::model::User;
use crate::store::{Challenge, Phase, SessionId};

use super::error::{AuthError, provider_error};
use super::flow::Authenticator;
use super::state::{self, Event, MAX_WRONG_CODES};

/// What the enrollment page shows.
pub struct EnrollmentView {
    /// The base32 secret, grouped for typing.
    pub secret_text: String,
    pub uri: String,
    pub qr_svg: String,
    /// An admin reset the user's factor: tell them why they enroll again.
    pub was_reset: bool,
    pub wrong_codes_left: u32,
}

impl Authenticator {
    fn may_enroll_user(&self, user: &User) -> Result<bool, AuthError> {
        Ok(self.enrollable_for(user)?.contains(&Method::Totp))
    }

    /// `totp.enrollment`, for every method a user sets up themselves.
    pub(super) fn enrollment_allowed(&self, user: &User) -> bool {
        match self.settings.totp_enrollment {
            TotpEnrollment::FirstLogin => true,
            TotpEnrollment::Admin => user.second_factor_reset.is_some(),
        }
    }

    /// The enrollment page: a new pending secret, or the one this session
    /// was shown already.
    pub fn begin_enrollment(&self, id: &SessionId) -> Result<EnrollmentView, AuthError> {
        let (session, user) = self.pending_session(id)?;
        if !self.may_enroll_user(&user)? {
            return Err(AuthError::NoSecondFactor);
        }
        let totp = self.totp.as_ref().ok_or(AuthError::NoSecondFactor)?;
        let now = self.clock.now();
        let live = session.challenge.as_ref().filter(|c| c.expires_at > now);
        let shown = live.and_then(|c| match &c.phase {
            Phase::Enrolling { sealed_secret } => Some((sealed_secret, c.wrong_codes)),
            _ => None,
        });
        let (enrollment, wrong_codes) = match shown {
            Some((sealed, wrong_codes)) => (
                totp.show_enrollment(&user.email, sealed)
                    .map_err(provider_error)?,
                wrong_codes,
            ),
            None => {
                let enrollment = totp.begin_enrollment(&user.email).map_err(provider_error)?;
                let challenge = Challenge {
                    method: Method::Totp,
                    subject: user.email.to_lowercase(),
                    phase: Phase::Enrolling {
                        sealed_secret: enrollment.sealed.clone(),
                    },
                    wrong_codes: 0,
                    expires_at: now + self.settings.challenge_timeout,
                    last_code_sent: None,
                };
                // The stored count, which includes codes checked since
                // `session` was read.
                let mut wrong_codes = 0;
                self.sessions.update(&id.key(), |s| {
                    state::on(&mut s.challenge, Event::Started(challenge.clone()), now);
                    wrong_codes = s.challenge.as_ref().map_or(0, |c| c.wrong_codes);
                    true
                })?;
                (enrollment, wrong_codes)
            }
        };
        Ok(EnrollmentView {
            secret_text: enrollment.secret_text,
            uri: enrollment.uri,
            qr_svg: enrollment.qr_svg,
            was_reset: user.second_factor_reset.is_some(),
            wrong_codes_left: MAX_WRONG_CODES.saturating_sub(wrong_codes),
        })
    }

    /// pending secret --valid code--> kept, and the session steps up to
    /// `two_factor` under a new id; a wrong code counts like any other.
    pub async fn finish_enrollment(
        &self,
        id: &SessionId,
        code: &str,
    ) -> Result<SessionId, AuthError> {
        let (session, user) = self.pending_session(id)?;
        // Checked again: another session of this user may have enrolled
        // since the page was shown, and its secret must not be replaced.
        if !self.may_enroll_user(&user)? {
            return Err(AuthError::NoSecondFactor);
        }
        let totp = self.totp.as_ref().ok_or(AuthError::NoSecondFactor)?;
        let challenge = self.live_challenge(&session)?;
        let Phase::Enrolling {
            sealed_secret: sealed,
        } = &challenge.phase
        else {
            return Err(AuthError::ChallengeExpired);
        };
        let attempt = self.reserve_code(id)?;
        match totp.finish_enrollment(&user.email, user.second_factor_reset, sealed, code.trim()) {
            Ok(CodeCheck::Valid) => {
                attempt.valid();
                tracing::info!(user = %user.email, "TOTP enrolled");
                self.remember_method(&user, Method::Totp);
                self.step_up(id, &session)
            }
            Ok(CodeCheck::Invalid) => Err(attempt.wrong()?),
            Err(err) => {
                attempt.unchecked();
                Err(provider_error(err))
            }
        }
    }
}
