//! argon2id hashing and verification. Verification is CPU-bound for tens of
//! milliseconds, so it runs on the blocking pool behind a semaphore: a flood
//! of logins queues here instead of starving the proxied traffic.

use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use tokio::sync::Semaphore;

/// Passwords longer than this are refused before any hashing.
pub const MAX_PASSWORD_CHARS: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("could not hash the password: {0}")]
    Hash(String),
}

/// argon2id with the crate's defaults (19 MiB, 2 passes, 1 lane), printed
/// as a PHC string.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Checks a password against a PHC string; an unparsable hash never matches.
pub fn verify_password(phc: &str, password: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Runs argon2 off the async runtime, at most `limit` at once.
pub struct PasswordChecker {
    permits: Arc<Semaphore>,
    /// Verified against when the email is unknown, so that an unknown email
    /// costs the same time as a wrong password.
    dummy_hash: Arc<str>,
}

impl PasswordChecker {
    pub fn new(limit: usize) -> Result<Self, PasswordError> {
        let mut random = [0u8; 24];
        getrandom::getrandom(&mut random).map_err(|e| PasswordError::Hash(e.to_string()))?;
        let dummy = hash_password(&hex(&random))?;
        Ok(PasswordChecker {
            permits: Arc::new(Semaphore::new(limit.max(1))),
            dummy_hash: dummy.into(),
        })
    }

    /// True when `password` matches `phc`; with `phc = None` (unknown user)
    /// it does the same work and returns false.
    pub async fn verify(&self, phc: Option<&str>, password: &str) -> bool {
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
        };
        let known = phc.is_some();
        let phc: Arc<str> = phc
            .map(Arc::from)
            .unwrap_or_else(|| self.dummy_hash.clone());
        let password = password.to_owned();
        let matched = tokio::task::spawn_blocking(move || verify_password(&phc, &password))
            .await
            .unwrap_or(false);
        matched && known
    }
}

impl PasswordChecker {
    /// Hashes a new password (sign-up) under the same bound as `verify`.
    pub async fn hash(&self, password: &str) -> Result<String, PasswordError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| PasswordError::Hash(e.to_string()))?;
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(|e| PasswordError::Hash(e.to_string()))?
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_argon2id_phc_and_verifies() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
        assert!(verify_password(&hash, "correct horse"));
        assert!(!verify_password(&hash, "wrong horse"));
    }

    #[test]
    fn garbage_hash_never_matches() {
        assert!(!verify_password("not a phc string", ""));
        assert!(!verify_password("", ""));
    }

    #[tokio::test]
    async fn unknown_user_never_matches_even_the_dummy_password() {
        let checker = PasswordChecker::new(1).unwrap();
        let dummy = checker.dummy_hash.to_string();
        assert!(!checker.verify(None, "").await);
        assert!(!checker.verify(None, &dummy).await);
        let hash = hash_password("pw").unwrap();
        assert!(checker.verify(Some(&hash), "pw").await);
        assert!(!checker.verify(Some(&hash), "px").await);
    }
}
