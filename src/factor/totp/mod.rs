//! Built-in TOTP (RFC 6238) as a second factor: the secret lives in the
//! store, sealed; the user reads codes from an authenticator app, so
//! nothing is sent and no outside service is involved.
//!
//! A code counts once: the newest accepted step is kept per user and only
//! a newer one passes, whichever session submits it.

mod code;
mod enroll;
mod seal;

use std::fmt;
use std::sync::Arc;

pub use seal::{SealError, SecretSealer};

use self::code::{TotpSecret, matching_step, well_formed};
use super::{CodeCheck, FactorError, FactorUser, SecondFactor};
use crate::clock::Clock;
use crate::model::{Delivery, Method};
use crate::store::{FactorStore, StoreError, TotpRecord};

/// A pending enrollment as the enrollment page shows it.
pub struct Enrollment {
    /// The new secret sealed for this user; the caller keeps it (in the
    /// session) until `finish_enrollment` and never shows it.
    pub sealed: String,
    /// The secret in base32, in groups of four.
    pub secret_text: String,
    pub uri: String,
    pub qr_svg: String,
}

/// Every field but `sealed` carries the secret in the clear.
impl fmt::Debug for Enrollment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Enrollment").finish_non_exhaustive()
    }
}

pub struct TotpFactor {
    store: Arc<dyn FactorStore>,
    sealer: SecretSealer,
    issuer: String,
    clock: Arc<dyn Clock>,
}

fn store_error(err: StoreError) -> FactorError {
    FactorError::Unavailable(err.to_string())
}

/// A kept secret that no configured key opens is the operator's problem
/// (a key retired too early), never the user's wrong code.
fn kept_secret_error(err: SealError) -> FactorError {
    tracing::error!(error = %err, "a kept TOTP secret cannot be opened; check totp.encryption_key and totp.previous_encryption_keys");
    FactorError::Unavailable(err.to_string())
}

fn new_secret() -> Result<TotpSecret, FactorError> {
    TotpSecret::generate()
        .map_err(|e| FactorError::Unavailable(format!("OS random number generator: {e}")))
}

fn not_enrolled() -> FactorError {
    FactorError::Rejected("no TOTP enrolled".into())
}

impl TotpFactor {
    pub fn new(
        store: Arc<dyn FactorStore>,
        sealer: SecretSealer,
        issuer: String,
        clock: Arc<dyn Clock>,
    ) -> Self {
        TotpFactor {
            store,
            sealer,
            issuer,
            clock,
        }
    }

    /// A new secret for `email`, not kept anywhere yet.
    pub fn begin_enrollment(&self, email: &str) -> Result<Enrollment, FactorError> {
        let secret = new_secret()?;
        let sealed = self.seal(email, &secret)?;
        self.render(email, sealed, &secret)
    }

    /// The pending enrollment again (a reload of the page), same secret.
    pub fn show_enrollment(&self, email: &str, sealed: &str) -> Result<Enrollment, FactorError> {
        let secret = self.open_pending(email, sealed)?;
        self.render(email, sealed.to_owned(), &secret)
    }

    /// Keeps the pending secret once the user proves their app has it: a
    /// code of the current step (±1). That step counts as used, so the
    /// enrollment code cannot log in again. Replaces an earlier enrollment.
    /// `reset_at`: the admin reset this enrollment follows; the enrollment
    /// counts as after it even within the same second.
    pub fn finish_enrollment(
        &self,
        email: &str,
        reset_at: Option<u64>,
        sealed: &str,
        code: &str,
    ) -> Result<CodeCheck, FactorError> {
        let Some(code) = well_formed(code) else {
            return Ok(CodeCheck::Invalid);
        };
        let secret = self.open_pending(email, sealed)?;
        let now = self.clock.now();
        let Some(step) = matching_step(&secret, code, now, None) else {
            return Ok(CodeCheck::Invalid);
        };
        // A pending secret from before a key rotation is kept under the
        // current key right away.
        let sealed = self.seal(email, &secret)?;
        let record = TotpRecord {
            sealed,
            enrolled_at: reset_at.map_or(now, |reset| now.max(reset + 1)),
            last_step: step,
        };
        self.store.set_totp(email, &record).map_err(store_error)?;
        Ok(CodeCheck::Valid)
    }

    /// Keeps a new secret at once, with no code to confirm it, and returns
    /// it in base32 for the operator to hand over (`authgate demo`'s
    /// ready-made user). Replaces an earlier enrollment.
    pub fn enroll_unconfirmed(&self, email: &str) -> Result<String, FactorError> {
        let secret = new_secret()?;
        let record = TotpRecord {
            sealed: self.seal(email, &secret)?,
            enrolled_at: self.clock.now(),
            last_step: 0,
        };
        self.store.set_totp(email, &record).map_err(store_error)?;
        Ok(secret.to_base32())
    }

    /// Forgets the user's TOTP (an admin reset); true when there was one.
    pub fn remove(&self, email: &str) -> Result<bool, FactorError> {
        self.store.remove_totp(email).map_err(store_error)
    }

    fn seal(&self, email: &str, secret: &TotpSecret) -> Result<String, FactorError> {
        self.sealer
            .seal(email, secret)
            .map_err(|e| FactorError::Unavailable(e.to_string()))
    }

    /// A pending secret that does not open came from somewhere else (another
    /// user's session, an edited record) or outlived a key: the user starts
    /// the enrollment again.
    fn open_pending(&self, email: &str, sealed: &str) -> Result<TotpSecret, FactorError> {
        self.sealer
            .open(email, sealed)
            .map(|opened| opened.secret)
            .map_err(|e| FactorError::Rejected(format!("pending TOTP enrollment: {e}")))
    }

    fn render(
        &self,
        email: &str,
        sealed: String,
        secret: &TotpSecret,
    ) -> Result<Enrollment, FactorError> {
        let uri = enroll::otpauth_uri(&self.issuer, email, secret);
        let qr_svg = enroll::qr_svg(&uri).map_err(|e| {
            FactorError::Rejected(format!("otpauth URI does not fit a QR code: {e}"))
        })?;
        Ok(Enrollment {
            sealed,
            secret_text: enroll::grouped(&secret.to_base32()),
            uri,
            qr_svg,
        })
    }

    fn enrolled_record(&self, user: &FactorUser<'_>) -> Result<Option<TotpRecord>, FactorError> {
        let record = self.store.totp(user.email).map_err(store_error)?;
        Ok(record.filter(|r| user.reset_at.is_none_or(|reset| r.enrolled_at > reset)))
    }
}

#[async_trait::async_trait]
impl SecondFactor for TotpFactor {
    fn method(&self) -> Method {
        Method::Totp
    }

    fn delivery(&self) -> Delivery {
        Delivery::AppCode
    }

    /// Enrolled when a secret is kept that was enrolled after the last admin
    /// reset, if any.
    fn is_enrolled(&self, user: &FactorUser<'_>) -> Result<bool, FactorError> {
        Ok(self.enrolled_record(user)?.is_some())
    }

    async fn subject(&self, user: &FactorUser<'_>) -> Result<String, FactorError> {
        match self.enrolled_record(user)? {
            Some(_) => Ok(user.email.to_lowercase()),
            None => Err(not_enrolled()),
        }
    }

    async fn send_code(&self, _subject: &str) -> Result<(), FactorError> {
        Err(FactorError::Rejected(
            "TOTP codes come from the user's app; there is nothing to send".into(),
        ))
    }

    /// A replayed code (its step used already, from any session) is
    /// `Invalid`, like a wrong one.
    async fn check_code(&self, subject: &str, code: &str) -> Result<CodeCheck, FactorError> {
        let Some(code) = well_formed(code) else {
            return Ok(CodeCheck::Invalid);
        };
        let record = self
            .store
            .totp(subject)
            .map_err(store_error)?
            .ok_or_else(not_enrolled)?;
        let opened = self
            .sealer
            .open(subject, &record.sealed)
            .map_err(kept_secret_error)?;
        if opened.needs_reseal {
            self.reseal(subject, &record.sealed, &opened.secret);
        }
        // `last_step` as read only saves a store write for a replay; the
        // atomic `use_totp_step` is what decides.
        let Some(step) = matching_step(
            &opened.secret,
            code,
            self.clock.now(),
            Some(record.last_step),
        ) else {
            return Ok(CodeCheck::Invalid);
        };
        if self
            .store
            .use_totp_step(subject, step)
            .map_err(store_error)?
        {
            Ok(CodeCheck::Valid)
        } else {
            Ok(CodeCheck::Invalid)
        }
    }
}

impl TotpFactor {
    /// Moves a secret from a previous key to the current one. A failure
    /// only delays that to the next check, so it is logged, not returned.
    fn reseal(&self, email: &str, from: &str, secret: &TotpSecret) {
        let resealed = self.seal(email, secret).and_then(|to| {
            self.store
                .reseal_totp(email, from, &to)
                .map_err(store_error)
        });
        match resealed {
            Ok(true) => {
                tracing::info!(user = %email, "TOTP secret sealed again under the current key")
            }
            // A re-enrollment or reset came in between: it holds a newer value.
            Ok(false) => {}
            Err(err) => {
                tracing::warn!(user = %email, error = %err, "sealing a TOTP secret under the current key failed")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::code::{DIGITS, code_at, step_of};
    use super::*;
    use crate::clock::testing::ManualClock;
    use crate::store::{MemoryStore, SledStore};

    /// A Unix time at the start of a step, so `advance` moves whole steps.
    const T0: u64 = 1_700_000_010;
    const EMAIL: &str = "alice@example.com";
    const KEY: &[u8] = b"totp encryption key for the tests";
    const OLD_KEY: &[u8] = b"the totp key used before rotation";

    struct Fixture {
        store: Arc<MemoryStore>,
        clock: Arc<ManualClock>,
        totp: TotpFactor,
    }

    fn fixture() -> Fixture {
        fixture_with(
            Arc::new(MemoryStore::default()),
            SecretSealer::new(KEY, &[]),
        )
    }

    fn fixture_with(store: Arc<MemoryStore>, sealer: SecretSealer) -> Fixture {
        let clock = Arc::new(ManualClock::at(T0));
        let totp = TotpFactor::new(store.clone(), sealer, "authgate".into(), clock.clone());
        Fixture { store, clock, totp }
    }

    fn user(reset_at: Option<u64>) -> FactorUser<'static> {
        FactorUser {
            email: EMAIL,
            country_code: "",
            phone: "",
            reset_at,
        }
    }

    fn secret_of(f: &Fixture, sealed: &str) -> TotpSecret {
        f.totp.sealer.open(EMAIL, sealed).unwrap().secret
    }

    /// The code the user's app shows `steps` steps from the fixture's now.
    fn app_code(f: &Fixture, secret: &TotpSecret, steps: i64) -> String {
        let step = step_of(f.clock.now()).checked_add_signed(steps).unwrap();
        code_at(secret, step, DIGITS)
    }

    /// Enrolls and moves the clock past the step of the enrollment code.
    fn enrolled(f: &Fixture) -> TotpSecret {
        let enrollment = f.totp.begin_enrollment(EMAIL).unwrap();
        let secret = secret_of(f, &enrollment.sealed);
        let code = app_code(f, &secret, 0);
        assert_eq!(
            f.totp
                .finish_enrollment(EMAIL, None, &enrollment.sealed, &code)
                .unwrap(),
            CodeCheck::Valid
        );
        f.clock.advance(30);
        secret
    }

    async fn check(f: &Fixture, code: &str) -> CodeCheck {
        let subject = f.totp.subject(&user(None)).await.unwrap();
        f.totp.check_code(&subject, code).await.unwrap()
    }

    #[test]
    fn it_is_an_app_code_method() {
        let f = fixture();
        assert_eq!(f.totp.method(), Method::Totp);
        assert_eq!(f.totp.delivery(), Delivery::AppCode);
    }

    #[tokio::test]
    async fn nothing_is_sent() {
        let f = fixture();
        enrolled(&f);
        assert!(matches!(
            f.totp.send_code(EMAIL).await,
            Err(FactorError::Rejected(_))
        ));
    }

    #[tokio::test]
    async fn a_user_without_a_secret_is_not_enrolled() {
        let f = fixture();
        assert!(!f.totp.is_enrolled(&user(None)).unwrap());
        assert!(matches!(
            f.totp.subject(&user(None)).await,
            Err(FactorError::Rejected(_))
        ));
        assert!(matches!(
            f.totp.check_code(EMAIL, "123456").await,
            Err(FactorError::Rejected(_))
        ));
    }

    #[tokio::test]
    async fn enrollment_keeps_the_secret_and_the_subject_is_the_lower_cased_email() {
        let f = fixture();
        let enrollment = f.totp.begin_enrollment("Alice@Example.com").unwrap();
        assert!(!f.totp.is_enrolled(&user(None)).unwrap(), "pending only");
        let secret = f
            .totp
            .sealer
            .open(EMAIL, &enrollment.sealed)
            .unwrap()
            .secret;
        assert_eq!(enrollment.secret_text.replace(' ', ""), secret.to_base32());
        assert!(enrollment.uri.contains(&secret.to_base32()));
        assert!(
            enrollment
                .uri
                .starts_with("otpauth://totp/authgate:Alice%40Example.com?")
        );
        assert!(enrollment.qr_svg.starts_with("<svg"));
        let code = app_code(&f, &secret, 0);
        assert_eq!(
            f.totp
                .finish_enrollment("Alice@Example.com", None, &enrollment.sealed, &code)
                .unwrap(),
            CodeCheck::Valid
        );
        let kept = f.store.totp(EMAIL).unwrap().unwrap();
        assert_eq!(kept.enrolled_at, T0);
        assert_eq!(kept.last_step, step_of(T0));
        assert!(f.totp.is_enrolled(&user(None)).unwrap());
        let upper = FactorUser {
            email: "ALICE@example.com",
            ..user(None)
        };
        assert_eq!(f.totp.subject(&upper).await.unwrap(), EMAIL);
    }

    #[tokio::test]
    async fn showing_the_enrollment_again_renders_the_same_secret() {
        let f = fixture();
        let first = f.totp.begin_enrollment(EMAIL).unwrap();
        let again = f.totp.show_enrollment(EMAIL, &first.sealed).unwrap();
        assert_eq!(again.sealed, first.sealed);
        assert_eq!(again.secret_text, first.secret_text);
        assert_eq!(again.uri, first.uri);
        assert_eq!(again.qr_svg, first.qr_svg);
        let other = f.totp.begin_enrollment(EMAIL).unwrap();
        assert_ne!(
            other.secret_text, first.secret_text,
            "a new secret each time"
        );
    }

    #[tokio::test]
    async fn a_wrong_code_does_not_finish_the_enrollment() {
        let f = fixture();
        let enrollment = f.totp.begin_enrollment(EMAIL).unwrap();
        let secret = secret_of(&f, &enrollment.sealed);
        let late = app_code(&f, &secret, 2);
        for code in [late.as_str(), "abcdef", "12345"] {
            assert_eq!(
                f.totp
                    .finish_enrollment(EMAIL, None, &enrollment.sealed, code)
                    .unwrap(),
                CodeCheck::Invalid,
                "{code}"
            );
        }
        assert_eq!(f.store.totp(EMAIL).unwrap(), None);
    }

    #[tokio::test]
    async fn another_users_pending_secret_is_refused() {
        let f = fixture();
        let enrollment = f.totp.begin_enrollment("mallory@example.com").unwrap();
        assert!(matches!(
            f.totp.show_enrollment(EMAIL, &enrollment.sealed),
            Err(FactorError::Rejected(_))
        ));
        assert!(matches!(
            f.totp
                .finish_enrollment(EMAIL, None, &enrollment.sealed, "123456"),
            Err(FactorError::Rejected(_))
        ));
        assert_eq!(f.store.totp(EMAIL).unwrap(), None);
    }

    #[tokio::test]
    async fn the_enrollment_code_cannot_log_in() {
        let f = fixture();
        let enrollment = f.totp.begin_enrollment(EMAIL).unwrap();
        let secret = secret_of(&f, &enrollment.sealed);
        let code = app_code(&f, &secret, 0);
        f.totp
            .finish_enrollment(EMAIL, None, &enrollment.sealed, &code)
            .unwrap();
        assert_eq!(check(&f, &code).await, CodeCheck::Invalid);
    }

    #[tokio::test]
    async fn the_current_code_is_valid() {
        let f = fixture();
        let secret = enrolled(&f);
        assert_eq!(check(&f, &app_code(&f, &secret, 0)).await, CodeCheck::Valid);
        assert_eq!(
            f.store.totp(EMAIL).unwrap().unwrap().last_step,
            step_of(f.clock.now())
        );
    }

    #[tokio::test]
    async fn surrounding_whitespace_is_ignored() {
        let f = fixture();
        let secret = enrolled(&f);
        let code = format!(" {}\n", app_code(&f, &secret, 0));
        assert_eq!(check(&f, &code).await, CodeCheck::Valid);
    }

    #[tokio::test]
    async fn one_step_early_or_late_is_accepted() {
        let f = fixture();
        let secret = enrolled(&f);
        f.clock.advance(60);
        assert_eq!(
            check(&f, &app_code(&f, &secret, -1)).await,
            CodeCheck::Valid
        );
        f.clock.advance(60);
        assert_eq!(check(&f, &app_code(&f, &secret, 1)).await, CodeCheck::Valid);
    }

    #[tokio::test]
    async fn two_steps_off_is_refused() {
        let f = fixture();
        let secret = enrolled(&f);
        f.clock.advance(120);
        assert_eq!(
            check(&f, &app_code(&f, &secret, -2)).await,
            CodeCheck::Invalid
        );
        assert_eq!(
            check(&f, &app_code(&f, &secret, 2)).await,
            CodeCheck::Invalid
        );
        assert_eq!(check(&f, &app_code(&f, &secret, 0)).await, CodeCheck::Valid);
    }

    #[tokio::test]
    async fn a_code_is_accepted_once_even_from_another_session() {
        let f = fixture();
        let secret = enrolled(&f);
        let code = app_code(&f, &secret, 0);
        assert_eq!(check(&f, &code).await, CodeCheck::Valid);
        assert_eq!(
            check(&f, &code).await,
            CodeCheck::Invalid,
            "the same session"
        );
        // Another session only has the subject: the step is per user.
        let other = f.totp.subject(&user(None)).await.unwrap();
        assert_eq!(
            f.totp.check_code(&other, &code).await.unwrap(),
            CodeCheck::Invalid
        );
        f.clock.advance(30);
        assert_eq!(check(&f, &app_code(&f, &secret, 0)).await, CodeCheck::Valid);
    }

    #[tokio::test]
    async fn an_older_step_after_a_newer_one_is_refused() {
        let f = fixture();
        let secret = enrolled(&f);
        let newer = app_code(&f, &secret, 1);
        let older = app_code(&f, &secret, 0);
        assert_eq!(check(&f, &newer).await, CodeCheck::Valid);
        assert_eq!(check(&f, &older).await, CodeCheck::Invalid);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_submissions_of_one_code_pass_once() {
        let store = Arc::new(SledStore::temporary().unwrap());
        let clock = Arc::new(ManualClock::at(T0));
        let totp = Arc::new(TotpFactor::new(
            store,
            SecretSealer::new(KEY, &[]),
            "authgate".into(),
            clock.clone(),
        ));
        let enrollment = totp.begin_enrollment(EMAIL).unwrap();
        let secret = totp.sealer.open(EMAIL, &enrollment.sealed).unwrap().secret;
        let enroll_code = code_at(&secret, step_of(T0), DIGITS);
        totp.finish_enrollment(EMAIL, None, &enrollment.sealed, &enroll_code)
            .unwrap();
        clock.advance(30);
        let code = code_at(&secret, step_of(clock.now()), DIGITS);
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let totp = Arc::clone(&totp);
                let code = code.clone();
                tokio::spawn(async move { totp.check_code(EMAIL, &code).await })
            })
            .collect();
        let mut valid = 0;
        for task in tasks {
            if task.await.unwrap().unwrap() == CodeCheck::Valid {
                valid += 1;
            }
        }
        assert_eq!(valid, 1);
    }

    #[tokio::test]
    async fn malformed_codes_are_refused_without_touching_the_store() {
        // Nothing enrolled: any store read would make this `Rejected`.
        let f = fixture();
        for code in ["12345", "1234567", "abcdef", "", "12 345", "+12345"] {
            assert_eq!(
                f.totp.check_code(EMAIL, code).await.unwrap(),
                CodeCheck::Invalid,
                "{code:?}"
            );
        }
    }

    #[tokio::test]
    async fn an_enrollment_from_before_a_reset_no_longer_counts() {
        let f = fixture();
        let secret = enrolled(&f);
        let reset_at = f.clock.now();
        f.clock.advance(30);
        assert!(!f.totp.is_enrolled(&user(Some(reset_at))).unwrap());
        assert!(matches!(
            f.totp.subject(&user(Some(reset_at))).await,
            Err(FactorError::Rejected(_))
        ));
        assert!(
            !f.totp.is_enrolled(&user(Some(T0))).unwrap(),
            "a reset in the second of the enrollment is the newer event"
        );
        // Re-enrolling after the reset counts again, even in its second.
        let reset_now = f.clock.now();
        let enrollment = f.totp.begin_enrollment(EMAIL).unwrap();
        let fresh = secret_of(&f, &enrollment.sealed);
        assert_ne!(fresh, secret);
        let code = app_code(&f, &fresh, 0);
        f.totp
            .finish_enrollment(EMAIL, Some(reset_now), &enrollment.sealed, &code)
            .unwrap();
        assert!(f.totp.is_enrolled(&user(Some(reset_now))).unwrap());
    }

    #[tokio::test]
    async fn an_unconfirmed_enrollment_is_kept_and_its_codes_work() {
        let f = fixture();
        let base32 = f.totp.enroll_unconfirmed(EMAIL).unwrap();
        assert_eq!(base32.len(), 32);
        let kept = f.store.totp(EMAIL).unwrap().unwrap();
        let secret = secret_of(&f, &kept.sealed);
        assert_eq!(secret.to_base32(), base32);
        assert_eq!(kept.enrolled_at, T0);
        assert!(f.totp.is_enrolled(&user(None)).unwrap());
        assert_eq!(check(&f, &app_code(&f, &secret, 0)).await, CodeCheck::Valid);
    }

    #[tokio::test]
    async fn removing_the_secret_ends_it() {
        let f = fixture();
        let secret = enrolled(&f);
        assert!(f.totp.remove(EMAIL).unwrap());
        assert!(!f.totp.remove(EMAIL).unwrap());
        assert!(!f.totp.is_enrolled(&user(None)).unwrap());
        assert!(matches!(
            f.totp.check_code(EMAIL, &app_code(&f, &secret, 0)).await,
            Err(FactorError::Rejected(_))
        ));
    }

    #[tokio::test]
    async fn a_secret_under_a_previous_key_works_and_is_sealed_again() {
        let store = Arc::new(MemoryStore::default());
        let old = fixture_with(store.clone(), SecretSealer::new(OLD_KEY, &[]));
        let secret = enrolled(&old);
        let sealed_before = store.totp(EMAIL).unwrap().unwrap().sealed;

        let f = fixture_with(store.clone(), SecretSealer::new(KEY, &[OLD_KEY]));
        f.clock.advance(60);
        assert_eq!(check(&f, &app_code(&f, &secret, 0)).await, CodeCheck::Valid);
        let kept = store.totp(EMAIL).unwrap().unwrap();
        assert_ne!(kept.sealed, sealed_before);
        let opened = SecretSealer::new(KEY, &[])
            .open(EMAIL, &kept.sealed)
            .unwrap();
        assert_eq!(opened.secret, secret);
        assert!(!opened.needs_reseal);
        assert_eq!(
            kept.last_step,
            step_of(f.clock.now()),
            "the step stays used"
        );
    }

    #[tokio::test]
    async fn a_pending_secret_under_a_previous_key_is_kept_under_the_current_one() {
        let store = Arc::new(MemoryStore::default());
        let old = fixture_with(store.clone(), SecretSealer::new(OLD_KEY, &[]));
        let enrollment = old.totp.begin_enrollment(EMAIL).unwrap();
        let secret = secret_of(&old, &enrollment.sealed);

        let f = fixture_with(store.clone(), SecretSealer::new(KEY, &[OLD_KEY]));
        let code = app_code(&f, &secret, 0);
        assert_eq!(
            f.totp
                .finish_enrollment(EMAIL, None, &enrollment.sealed, &code)
                .unwrap(),
            CodeCheck::Valid
        );
        let kept = store.totp(EMAIL).unwrap().unwrap();
        assert!(
            SecretSealer::new(KEY, &[])
                .open(EMAIL, &kept.sealed)
                .is_ok()
        );
    }

    #[tokio::test]
    async fn a_secret_no_key_opens_is_unavailable_not_a_wrong_code() {
        let store = Arc::new(MemoryStore::default());
        let old = fixture_with(store.clone(), SecretSealer::new(OLD_KEY, &[]));
        let secret = enrolled(&old);
        let f = fixture_with(store, SecretSealer::new(KEY, &[]));
        assert!(matches!(
            f.totp.check_code(EMAIL, &app_code(&f, &secret, 0)).await,
            Err(FactorError::Unavailable(_))
        ));
    }

    #[tokio::test]
    async fn a_secret_copied_to_another_user_does_not_work_for_them() {
        let f = fixture();
        let secret = enrolled(&f);
        let mut record = f.store.totp(EMAIL).unwrap().unwrap();
        record.last_step = 0;
        f.store.set_totp("mallory@example.com", &record).unwrap();
        assert!(matches!(
            f.totp
                .check_code("mallory@example.com", &app_code(&f, &secret, 0))
                .await,
            Err(FactorError::Unavailable(_))
        ));
    }

    #[test]
    fn debug_output_shows_no_secret() {
        let f = fixture();
        let enrollment = f.totp.begin_enrollment(EMAIL).unwrap();
        let shown = format!("{enrollment:?}");
        assert_eq!(shown, "Enrollment { .. }");
    }
}
