//! Random and derived values: SMS codes, the per-user app code, approval
//! uuids, the masks Authy puts on phone numbers, timestamps.

use std::time::{Duration, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Seconds per app-code step, as in the Authy app.
pub const APP_CODE_STEP: u64 = 30;

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // Without the OS RNG a test server has nothing sensible left to do.
    getrandom::getrandom(&mut buf).expect("the OS random number generator failed");
    buf
}

/// A fresh 7-digit SMS or voice code (the modulo bias is irrelevant here).
pub fn random_code() -> String {
    let n = u64::from_le_bytes(random_bytes::<8>()) % 10_000_000;
    format!("{n:07}")
}

/// The 7 digits the user's Authy app would show during `step`: HMAC-SHA256
/// of the step under the user's secret, truncated as in RFC 4226. It is not
/// RFC TOTP (SHA-1) and need not be: only the sandbox checks it.
pub fn app_code(secret: &[u8], step: u64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let at = usize::from(digest[digest.len() - 1] & 0x0f);
    let word = [digest[at], digest[at + 1], digest[at + 2], digest[at + 3]];
    let n = u32::from_be_bytes(word) & 0x7fff_ffff;
    format!("{:07}", n % 10_000_000)
}

pub fn app_step(now: u64) -> u64 {
    now / APP_CODE_STEP
}

/// A random (version 4) uuid for an approval request.
pub fn uuid_v4() -> String {
    let mut b = random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// 24 hex digits, the look of the Mongo ids in approval-request status.
pub fn object_id() -> String {
    hex(&random_bytes::<12>())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `+1-XXX-XXX-XX67`, the mask of the SMS and call answers.
pub fn mask_international(country_code: &str, digits: &str) -> String {
    format!("+{country_code}-XXX-XXX-XX{}", last(digits, 2))
}

/// `XXX-XXX-1118`, the mask of the user-status answer.
pub fn mask_local(digits: &str) -> String {
    format!("XXX-XXX-{}", last(digits, 4))
}

/// The last `n` characters of an ASCII string.
fn last(s: &str, n: usize) -> &str {
    &s[s.len().saturating_sub(n)..]
}

/// `2017-02-10T01:09:52Z`, as in approval-request status.
pub fn rfc3339(unix: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_code_is_seven_digits_and_changes_with_the_step() {
        let secret = [7u8; 32];
        let code = app_code(&secret, 1000);
        assert_eq!(code.len(), 7);
        assert!(is_digits(&code));
        assert_eq!(code, app_code(&secret, 1000));
        let others: Vec<String> = (1001..1005).map(|s| app_code(&secret, s)).collect();
        assert!(others.iter().any(|c| *c != code));
    }

    #[test]
    fn uuid_is_version_4() {
        let id = uuid_v4();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!("89ab".contains(&id[19..20]));
        assert_ne!(id, uuid_v4());
    }

    #[test]
    fn masks_look_like_authys() {
        assert_eq!(mask_international("54", "1155550102"), "+54-XXX-XXX-XX02");
        assert_eq!(mask_local("5551118"), "XXX-XXX-1118");
    }

    #[test]
    fn timestamps_are_rfc3339_seconds() {
        assert_eq!(rfc3339(1_486_688_992), "2017-02-10T01:09:52Z");
    }

    #[test]
    fn random_codes_are_seven_digits() {
        let code = random_code();
        assert_eq!(code.len(), 7);
        assert!(is_digits(&code));
    }
}
