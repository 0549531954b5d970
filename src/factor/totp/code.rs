//! RFC 6238 codes: HMAC-SHA-1, 6 digits, 30-second steps, one step of
//! clock drift either way. totp-rs computes a code; which steps are tried
//! and how a submitted code is compared stay here, so the RFC vectors in
//! the tests run through the very function the checker calls.

use std::fmt;

use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, Builder, Secret};

pub const DIGITS: u8 = 6;
pub const STEP_SECS: u64 = 30;
/// RFC 6238 section 5.2 recommends at most one step of drift.
const SKEW_STEPS: u64 = 1;
/// 160 bits, the length RFC 4226 recommends and every app takes.
pub const SECRET_BYTES: usize = 20;

/// A TOTP shared secret in the clear; only ever held in memory.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpSecret([u8; SECRET_BYTES]);

impl TotpSecret {
    pub fn from_bytes(bytes: [u8; SECRET_BYTES]) -> Self {
        TotpSecret(bytes)
    }

    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = [0; SECRET_BYTES];
        getrandom::getrandom(&mut bytes)?;
        Ok(TotpSecret(bytes))
    }

    pub fn as_bytes(&self) -> &[u8; SECRET_BYTES] {
        &self.0
    }

    /// RFC 4648 base32 without padding, as otpauth URIs and apps want it.
    pub fn to_base32(&self) -> String {
        Secret::new_stack(self.0).to_base32()
    }
}

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret(<redacted>)")
    }
}

/// The step a Unix time falls in.
pub fn step_of(unix_secs: u64) -> u64 {
    unix_secs / STEP_SECS
}

/// The `digits`-digit code of `step` (the HOTP counter).
pub fn code_at(secret: &TotpSecret, step: u64, digits: u8) -> String {
    debug_assert!(
        (6..=8).contains(&digits),
        "RFC 4226 codes have 6 to 8 digits"
    );
    // A one-second step makes totp-rs's time argument the counter itself,
    // so no multiplication can overflow. `build_noncompliant` because
    // nothing here can be out of range: the secret has 160 bits by type,
    // the step is non-zero, the digits are the callers' constants.
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(digits)
        .with_step_duration(1)
        .with_skew(0)
        .with_secret(Secret::new_stack(secret.0))
        .build_noncompliant()
        .generate(step)
        .to_string()
}

/// The submitted code when it has the shape of one: exactly six ASCII
/// digits once surrounding whitespace is trimmed.
pub fn well_formed(code: &str) -> Option<&str> {
    let code = code.trim();
    (code.len() == usize::from(DIGITS) && code.bytes().all(|b| b.is_ascii_digit())).then_some(code)
}

/// The oldest step within the allowed drift of `now` that is newer than
/// `after` and whose code is `code`. Every candidate is computed and
/// compared in constant time, so the time taken does not tell which step
/// (if any) matched.
pub fn matching_step(secret: &TotpSecret, code: &str, now: u64, after: Option<u64>) -> Option<u64> {
    let current = step_of(now);
    let mut found = None;
    for step in current.saturating_sub(SKEW_STEPS)..=current.saturating_add(SKEW_STEPS) {
        let matches: bool = code_at(secret, step, DIGITS)
            .as_bytes()
            .ct_eq(code.as_bytes())
            .into();
        let fresh = after.is_none_or(|used| step > used);
        if matches && fresh && found.is_none() {
            found = Some(step);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The RFC 6238 appendix B and RFC 4226 appendix D secret.
    fn rfc_secret() -> TotpSecret {
        TotpSecret::from_bytes(*b"12345678901234567890")
    }

    #[test]
    fn rfc_6238_appendix_b_sha1_vectors() {
        let vectors = [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ];
        for (time, expected) in vectors {
            assert_eq!(
                code_at(&rfc_secret(), step_of(time), 8),
                expected,
                "T={time}"
            );
        }
    }

    #[test]
    fn rfc_4226_appendix_d_hotp_vectors() {
        let expected = [
            "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583",
            "399871", "520489",
        ];
        for (counter, code) in expected.into_iter().enumerate() {
            assert_eq!(
                code_at(&rfc_secret(), counter as u64, 6),
                code,
                "counter {counter}"
            );
        }
    }

    #[test]
    fn the_checker_finds_the_rfc_codes_at_their_steps() {
        // 6-digit truncations of the appendix B codes: the same path.
        assert_eq!(matching_step(&rfc_secret(), "287082", 59, None), Some(1));
        assert_eq!(
            matching_step(&rfc_secret(), "005924", 1_234_567_890, None),
            Some(41_152_263)
        );
    }

    #[test]
    fn one_step_of_drift_is_allowed_two_are_not() {
        let secret = rfc_secret();
        let now = 1_000_000_000;
        let current = step_of(now);
        for (delta, expected) in [
            (-2i64, None),
            (-1, Some(-1)),
            (0, Some(0)),
            (1, Some(1)),
            (2, None),
        ] {
            let step = current.checked_add_signed(delta).unwrap();
            let code = code_at(&secret, step, DIGITS);
            let found = matching_step(&secret, &code, now, None);
            assert_eq!(
                found,
                expected.map(|d| current.checked_add_signed(d).unwrap()),
                "delta {delta}"
            );
        }
    }

    #[test]
    fn steps_already_used_are_skipped() {
        let secret = rfc_secret();
        let now = 1_000_000_000;
        let current = step_of(now);
        let code = code_at(&secret, current, DIGITS);
        assert_eq!(
            matching_step(&secret, &code, now, Some(current - 1)),
            Some(current)
        );
        assert_eq!(matching_step(&secret, &code, now, Some(current)), None);
    }

    #[test]
    fn only_six_ascii_digits_are_a_code() {
        assert_eq!(well_formed(" 123456\n"), Some("123456"));
        for bad in [
            "12345",
            "1234567",
            "abcdef",
            "12 456",
            "+12345",
            "１２３４５６",
            "",
        ] {
            assert_eq!(well_formed(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn secrets_are_random_and_base32_has_no_padding() {
        let a = TotpSecret::generate().unwrap();
        let b = TotpSecret::generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(rfc_secret().to_base32(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let shown = format!("{:?}", rfc_secret());
        assert!(!shown.contains("1234"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }
}
