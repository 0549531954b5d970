//! TOTP secrets at rest: XChaCha20-Poly1305 under a key derived with
//! HKDF-SHA256 from the configured key material, with the user's
//! lower-cased email as associated data so a sealed secret copied to
//! another user does not open. Text form: `v1.` + base64url(nonce ‖
//! ciphertext ‖ tag). Old keys stay usable for opening, so a key can be
//! rotated without re-enrolling anyone: whatever opens with an old key is
//! sealed again under the current one.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{Key, KeyInit, XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use sha2::Sha256;

use super::code::{SECRET_BYTES, TotpSecret};

const VERSION: &str = "v1.";
const NONCE_BYTES: usize = 24;
/// Names this one use of the key material: the same bytes (often
/// `session.secret`) also key the cookies and CSRF tokens, and a
/// different label makes each derived key independent of the others.
const HKDF_INFO: &[u8] = b"authgate totp secret sealing v1";

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the sealed TOTP secret is not in the v1 format")]
    Malformed,
    /// Wrong key (a key dropped from the previous keys too early), another
    /// user's secret, or tampering: AEAD cannot tell which.
    #[error("the sealed TOTP secret does not open with any configured key for this user")]
    Undecryptable,
    #[error("the OS random number generator failed: {0}")]
    Random(getrandom::Error),
}

/// A secret opened by `SecretSealer::open`.
#[derive(Debug)]
pub struct Opened {
    pub secret: TotpSecret,
    /// It opened with a previous key: the caller seals it again with the
    /// current one.
    pub needs_reseal: bool,
}

pub struct SecretSealer {
    current: XChaCha20Poly1305,
    previous: Vec<XChaCha20Poly1305>,
}

/// The derived keys are as secret as the material.
impl fmt::Debug for SecretSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretSealer")
            .field("keys", &"<redacted>")
            .field("previous_keys", &self.previous.len())
            .finish()
    }
}

fn cipher_from(material: &[u8]) -> XChaCha20Poly1305 {
    let mut key = [0u8; 32];
    // HKDF-Expand only fails for outputs over 255 hash lengths; 32 bytes
    // is one.
    Hkdf::<Sha256>::new(None, material)
        .expand(HKDF_INFO, &mut key)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    XChaCha20Poly1305::new(&Key::from(key))
}

fn aad(email: &str) -> Vec<u8> {
    email.to_lowercase().into_bytes()
}

impl SecretSealer {
    /// `current`: `totp.encryption_key`, or `session.secret` when that is
    /// not set; `previous`: `totp.previous_encryption_keys`, newest first.
    /// Their length is checked where the config is read.
    pub fn new(current: &[u8], previous: &[&[u8]]) -> Self {
        SecretSealer {
            current: cipher_from(current),
            previous: previous.iter().map(|m| cipher_from(m)).collect(),
        }
    }

    pub fn seal(&self, email: &str, secret: &TotpSecret) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::getrandom(&mut nonce).map_err(SealError::Random)?;
        let aad = aad(email);
        let ciphertext = self
            .current
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: secret.as_bytes(),
                    aad: &aad,
                },
            )
            // Encryption fails only for inputs beyond 2^38 bytes.
            .expect("a 20-byte secret always encrypts");
        let mut raw = Vec::with_capacity(NONCE_BYTES + ciphertext.len());
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&ciphertext);
        Ok(format!("{VERSION}{}", URL_SAFE_NO_PAD.encode(raw)))
    }

    pub fn open(&self, email: &str, sealed: &str) -> Result<Opened, SealError> {
        let raw = sealed
            .strip_prefix(VERSION)
            .and_then(|b64| URL_SAFE_NO_PAD.decode(b64).ok())
            .ok_or(SealError::Malformed)?;
        if raw.len() <= NONCE_BYTES {
            return Err(SealError::Malformed);
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_BYTES);
        let nonce = XNonce::try_from(nonce).map_err(|_| SealError::Malformed)?;
        let aad = aad(email);
        let payload = || Payload {
            msg: ciphertext,
            aad: &aad,
        };
        let keys = std::iter::once(&self.current).chain(&self.previous);
        for (index, cipher) in keys.enumerate() {
            if let Ok(plain) = cipher.decrypt(&nonce, payload()) {
                let bytes: [u8; SECRET_BYTES] =
                    plain.try_into().map_err(|_| SealError::Malformed)?;
                return Ok(Opened {
                    secret: TotpSecret::from_bytes(bytes),
                    needs_reseal: index > 0,
                });
            }
        }
        Err(SealError::Undecryptable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &[u8] = b"the old key material, 32 bytes or more";
    const NEW: &[u8] = b"the new key material, 32 bytes or more";

    fn secret() -> TotpSecret {
        TotpSecret::from_bytes(*b"12345678901234567890")
    }

    #[test]
    fn a_sealed_secret_opens_for_its_user_in_any_letter_case() {
        let sealer = SecretSealer::new(NEW, &[]);
        let sealed = sealer.seal("Alice@Example.com", &secret()).unwrap();
        assert!(sealed.starts_with("v1."), "{sealed}");
        let opened = sealer.open("alice@example.com", &sealed).unwrap();
        assert_eq!(opened.secret, secret());
        assert!(!opened.needs_reseal);
    }

    #[test]
    fn the_secret_is_not_readable_in_the_sealed_text_and_nonces_differ() {
        let sealer = SecretSealer::new(NEW, &[]);
        let a = sealer.seal("a@example.com", &secret()).unwrap();
        let b = sealer.seal("a@example.com", &secret()).unwrap();
        assert_ne!(a, b, "a fresh random nonce each time");
        let raw = URL_SAFE_NO_PAD.decode(&a[3..]).unwrap();
        assert!(!raw.windows(SECRET_BYTES).any(|w| w == secret().as_bytes()));
    }

    #[test]
    fn a_secret_copied_to_another_user_does_not_open() {
        let sealer = SecretSealer::new(NEW, &[]);
        let sealed = sealer.seal("alice@example.com", &secret()).unwrap();
        assert!(matches!(
            sealer.open("mallory@example.com", &sealed),
            Err(SealError::Undecryptable)
        ));
    }

    #[test]
    fn a_previous_key_opens_and_asks_for_a_reseal() {
        let sealed = SecretSealer::new(OLD, &[])
            .seal("a@example.com", &secret())
            .unwrap();
        let rotated = SecretSealer::new(NEW, &[b"some other retired key material!!", OLD]);
        let opened = rotated.open("a@example.com", &sealed).unwrap();
        assert_eq!(opened.secret, secret());
        assert!(opened.needs_reseal);
        assert!(matches!(
            SecretSealer::new(NEW, &[]).open("a@example.com", &sealed),
            Err(SealError::Undecryptable)
        ));
    }

    #[test]
    fn the_key_is_derived_not_the_material_itself() {
        let sealed = SecretSealer::new(NEW, &[])
            .seal("a@example.com", &secret())
            .unwrap();
        let raw = URL_SAFE_NO_PAD.decode(&sealed[3..]).unwrap();
        let (nonce, ciphertext) = raw.split_at(NONCE_BYTES);
        let mut material = [0u8; 32];
        material.copy_from_slice(&NEW[..32]);
        let raw_key = XChaCha20Poly1305::new(&Key::from(material));
        let aad = aad("a@example.com");
        let attempt = raw_key.decrypt(
            &XNonce::try_from(nonce).unwrap(),
            Payload {
                msg: ciphertext,
                aad: &aad,
            },
        );
        assert!(attempt.is_err());
    }

    #[test]
    fn tampered_or_foreign_text_is_refused() {
        let sealer = SecretSealer::new(NEW, &[]);
        let sealed = sealer.seal("a@example.com", &secret()).unwrap();
        let mut raw = URL_SAFE_NO_PAD.decode(&sealed[3..]).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        let tampered = format!("v1.{}", URL_SAFE_NO_PAD.encode(&raw));
        assert!(matches!(
            sealer.open("a@example.com", &tampered),
            Err(SealError::Undecryptable)
        ));
        for bad in ["", "v1.", "v2.AAAA", "v1.!!!", "v1.AAAA"] {
            assert!(
                matches!(sealer.open("a@example.com", bad), Err(SealError::Malformed)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn debug_output_shows_no_key() {
        let shown = format!("{:?}", SecretSealer::new(NEW, &[OLD]));
        assert_eq!(
            shown,
            r#"SecretSealer { keys: "<redacted>", previous_keys: 1 }"#
        );
    }
}
