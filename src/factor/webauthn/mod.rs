//! WebAuthn: passkeys and security keys, through webauthn-rs's ceremony
//! engine. Nothing is sent anywhere: the browser asks the authenticator to
//! sign our challenge for our origin, and the answer is checked here. The
//! ceremony state (the challenge) is the caller's to keep, bound to the
//! session; credentials live in the factor store with an id → user index.

mod attested;

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use webauthn_rs_core::WebauthnCore;
use webauthn_rs_core::proto::{
    AttestationConveyancePreference, AuthenticationResult, AuthenticationState, Credential,
    PublicKeyCredential, RegisterPublicKeyCredential, RegistrationState, RequestChallengeResponse,
    ResidentKeyRequirement, UserVerificationPolicy,
};

use super::{CodeCheck, FactorError, FactorUser, SecondFactor};
use crate::clock::Clock;
use crate::config::{Attestation, UserVerification, WebauthnConfig};
use crate::model::{Delivery, Method};
use crate::store::{CredentialUse, CredentialUseOutcome, FactorStore, StoreError, WebauthnRecord};

/// How long the browser lets the user find their key.
const CEREMONY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);
/// A key's name as the user typed it, cut to this many characters.
const MAX_NAME_CHARS: usize = 64;

/// What the browser gets (JSON for `navigator.credentials`) and what the
/// server keeps until the answer (the ceremony, serialised).
#[derive(Debug)]
pub struct Ceremony {
    pub options: String,
    pub state: String,
}

/// Why an answer was not taken; the text is for the log and the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the browser's answer is not a WebAuthn credential")]
    Malformed,
    #[error("this key is not registered to this account")]
    NotThisUsersKey,
    #[error("the key's answer does not check out: {0}")]
    Invalid(String),
    #[error(
        "the key's signature counter went backwards (stored {stored}, seen {seen}): a cloned key?"
    )]
    CounterRegressed { stored: u32, seen: u32 },
    #[error("this kind of authenticator is not allowed here")]
    ModelNotAllowed,
    #[error("this key is registered already")]
    AlreadyRegistered,
}

/// An assertion ceremony bound to one thing the user approves: its
/// challenge is SHA-256 over a fresh nonce and that thing's hash, so the
/// key's signature covers it and nothing else. The caller keeps both.
#[derive(Debug, Clone)]
pub struct BoundCeremony {
    pub state: String,
    pub nonce: [u8; 32],
}

/// The challenge of a bound ceremony; the nonce keeps it fresh when the
/// same request is approved twice.
fn bound_challenge(nonce: &[u8; 32], binding: &[u8; 32]) -> [u8; 32] {
    Sha256::new()
        .chain_update(b"authgate webauthn approval v1\0")
        .chain_update(nonce)
        .chain_update(binding)
        .finalize()
        .into()
}

/// `state` asking for `challenge` instead of the engine's random one (the
/// engine keeps its challenge private to its serialised form).
fn with_challenge(state: &AuthenticationState, challenge: &[u8]) -> Result<String, FactorError> {
    let mut value =
        serde_json::to_value(state).map_err(|e| FactorError::Unavailable(e.to_string()))?;
    let field = value
        .get_mut("challenge")
        .ok_or_else(|| FactorError::Unavailable("webauthn: no challenge in the state".into()))?;
    *field = serde_json::Value::String(URL_SAFE_NO_PAD.encode(challenge));
    encode_state(&value)
}

/// A checked assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asserted {
    /// The user (lower-cased email) the key belongs to.
    pub email: String,
    /// The authenticator checked a PIN or a biometric.
    pub user_verified: bool,
}

pub struct WebauthnFactor {
    core: WebauthnCore,
    store: Arc<dyn FactorStore>,
    clock: Arc<dyn Clock>,
    policy: UserVerificationPolicy,
    attestation: Attestation,
    /// New credentials are discoverable, for "Sign in with a passkey".
    passwordless: bool,
}

fn store_error(err: StoreError) -> FactorError {
    FactorError::Unavailable(err.to_string())
}

fn engine_error(err: webauthn_rs_core::error::WebauthnError) -> FactorError {
    FactorError::Unavailable(format!("webauthn: {err:?}"))
}

fn encode_state<T: serde::Serialize>(state: &T) -> Result<String, FactorError> {
    serde_json::to_string(state).map_err(|e| FactorError::Unavailable(e.to_string()))
}

/// A state this gateway wrote; unreadable only after an upgrade changed
/// its layout, when the user simply tries again.
fn decode_state<T: serde::de::DeserializeOwned>(state: &str) -> Result<T, Refused> {
    serde_json::from_str(state).map_err(|_| Refused::Invalid("the ceremony expired".into()))
}

/// The id a credential is known by in the store: base64url of its bytes.
pub fn credential_id(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The user handle the authenticator keeps with a passkey: derived from
/// the email, so that nothing per user needs storing, and not the email
/// itself (`user.name` carries that, for the browser's account picker).
fn user_handle(email: &str) -> [u8; 16] {
    let digest = Sha256::new()
        .chain_update(b"authgate webauthn user handle v1\0")
        .chain_update(email.to_lowercase().as_bytes())
        .finalize();
    let mut handle = [0u8; 16];
    handle.copy_from_slice(&digest[..16]);
    handle
}

impl WebauthnFactor {
    pub fn new(
        config: &WebauthnConfig,
        store: Arc<dyn FactorStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let mut origin = config.origin.clone();
        origin.set_path("");
        let core = WebauthnCore::new_unsafe_experts_only(
            &config.rp_name,
            &config.rp_id,
            vec![origin],
            CEREMONY_TIMEOUT,
            Some(false),
            Some(false),
        );
        WebauthnFactor {
            core,
            store,
            clock,
            policy: match config.user_verification {
                UserVerification::Preferred => UserVerificationPolicy::Preferred,
                UserVerification::Required => UserVerificationPolicy::Required,
                UserVerification::Discouraged => UserVerificationPolicy::Discouraged_DO_NOT_USE,
            },
            attestation: config.attestation.clone(),
            passwordless: config.passwordless,
        }
    }

    /// The user's credentials that count: one registered before an admin
    /// reset no longer does, and is removed on the way.
    pub fn credentials(&self, user: &FactorUser<'_>) -> Result<Vec<WebauthnRecord>, FactorError> {
        let mut all = self
            .store
            .webauthn_credentials(user.email)
            .map_err(store_error)?;
        if let Some(reset) = user.reset_at {
            for voided in all.iter().filter(|c| c.created_at <= reset) {
                self.store
                    .remove_webauthn(user.email, &voided.id)
                    .map_err(store_error)?;
            }
            all.retain(|c| c.created_at > reset);
        }
        Ok(all)
    }

    pub fn remove(&self, email: &str, id: &str) -> Result<bool, FactorError> {
        self.store.remove_webauthn(email, id).map_err(store_error)
    }

    /// A registration: a new key or passkey for `user`, none of whose keys
    /// may register again.
    pub fn start_registration(
        &self,
        user: &FactorUser<'_>,
        display_name: &str,
    ) -> Result<Ceremony, FactorError> {
        let known = self
            .credentials(user)?
            .iter()
            .filter_map(|c| URL_SAFE_NO_PAD.decode(&c.id).ok())
            .collect();
        let conveyance = match self.attestation {
            Attestation::None => AttestationConveyancePreference::None,
            Attestation::Aaguids(_) => AttestationConveyancePreference::Direct,
        };
        let email = user.email.to_lowercase();
        let display = if display_name.trim().is_empty() {
            email.as_str()
        } else {
            display_name
        };
        let builder = self
            .core
            .new_challenge_register_builder(&user_handle(&email), &email, display)
            .map_err(engine_error)?
            .attestation(conveyance)
            .user_verification_policy(self.policy)
            .exclude_credentials(Some(known));
        let (mut options, state) = self
            .core
            .generate_challenge_register(builder)
            .map_err(engine_error)?;
        if self.passwordless {
            // A passkey where the authenticator can keep one, for "Sign in
            // with a passkey"; a plain security key still registers as a
            // second factor (the engine knows only "required" or not).
            if let Some(selection) = options.public_key.authenticator_selection.as_mut() {
                selection.resident_key = Some(ResidentKeyRequirement::Preferred);
                selection.require_resident_key = false;
            }
        }
        Ok(Ceremony {
            options: encode_state(&options)?,
            state: encode_state(&state)?,
        })
    }

    /// The browser's answer to `start_registration`, kept under `name`.
    pub fn finish_registration(
        &self,
        user: &FactorUser<'_>,
        state: &str,
        answer: &str,
        name: &str,
    ) -> Result<Result<WebauthnRecord, Refused>, FactorError> {
        let state: RegistrationState = match decode_state(state) {
            Ok(state) => state,
            Err(refused) => return Ok(Err(refused)),
        };
        let Ok(answer) = serde_json::from_str::<RegisterPublicKeyCredential>(answer) else {
            return Ok(Err(Refused::Malformed));
        };
        let credential = match self.core.register_credential(&answer, &state, None) {
            Ok(credential) => credential,
            Err(err) => return Ok(Err(Refused::Invalid(format!("{err:?}")))),
        };
        if let Attestation::Aaguids(allowed) = &self.attestation {
            let model = attested::aaguid(&answer.response.attestation_object);
            if !model.is_some_and(|m| allowed.contains(&m)) {
                return Ok(Err(Refused::ModelNotAllowed));
            }
        }
        let now = self.clock.now();
        let record = WebauthnRecord {
            id: credential_id(credential.cred_id.as_ref()),
            name: key_name(name),
            credential: encode_state(&credential)?,
            // After the reset it follows, even within the same second.
            created_at: user.reset_at.map_or(now, |reset| now.max(reset + 1)),
            last_used: None,
            counter: credential.counter,
            backup_eligible: credential.backup_eligible,
            backup_state: credential.backup_state,
        };
        if !self
            .store
            .add_webauthn(user.email, &record)
            .map_err(store_error)?
        {
            return Ok(Err(Refused::AlreadyRegistered));
        }
        Ok(Ok(record))
    }

    /// The second step: a challenge that only `user`'s keys can answer.
    pub fn start_assertion(&self, user: &FactorUser<'_>) -> Result<Ceremony, FactorError> {
        let credentials = self
            .credentials(user)?
            .iter()
            .filter_map(|r| stored_credential(r).ok())
            .collect();
        self.start_authentication(credentials)
    }

    /// An assertion by one of `user`'s keys that approves `binding` (the
    /// hash of a held request) and nothing else.
    pub fn start_bound_assertion(
        &self,
        user: &FactorUser<'_>,
        binding: &[u8; 32],
    ) -> Result<(String, BoundCeremony), FactorError> {
        let credentials = self
            .credentials(user)?
            .iter()
            .filter_map(|r| stored_credential(r).ok())
            .collect();
        let (mut options, state) = self.authentication(credentials)?;
        let mut nonce = [0u8; 32];
        getrandom::getrandom(&mut nonce)
            .map_err(|e| FactorError::Unavailable(format!("no randomness: {e}")))?;
        let challenge = bound_challenge(&nonce, binding);
        options.public_key.challenge = challenge.to_vec();
        let state = with_challenge(&state, &challenge)?;
        Ok((encode_state(&options)?, BoundCeremony { state, nonce }))
    }

    /// The answer to `start_bound_assertion`, checked against the
    /// challenge that `binding` gives: an answer made for any other
    /// request does not check out.
    pub fn finish_bound_assertion(
        &self,
        user: &FactorUser<'_>,
        ceremony: &BoundCeremony,
        binding: &[u8; 32],
        answer: &str,
    ) -> Result<Result<Asserted, Refused>, FactorError> {
        let Ok(state) = decode_state::<AuthenticationState>(&ceremony.state) else {
            return Ok(Err(Refused::Invalid("the ceremony expired".into())));
        };
        let state = with_challenge(&state, &bound_challenge(&ceremony.nonce, binding))?;
        self.finish_assertion(user, &state, answer)
    }

    /// A passkey login: any discoverable credential may answer; the answer
    /// names the key, and through the index its user.
    pub fn start_passwordless(&self) -> Result<Ceremony, FactorError> {
        self.start_authentication(Vec::new())
    }

    fn start_authentication(&self, credentials: Vec<Credential>) -> Result<Ceremony, FactorError> {
        let (options, state) = self.authentication(credentials)?;
        Ok(Ceremony {
            options: encode_state(&options)?,
            state: encode_state(&state)?,
        })
    }

    fn authentication(
        &self,
        credentials: Vec<Credential>,
    ) -> Result<(RequestChallengeResponse, AuthenticationState), FactorError> {
        let builder = self
            .core
            .new_challenge_authenticate_builder(credentials, Some(self.policy))
            .map_err(engine_error)?
            .allow_backup_eligible_upgrade(true);
        self.core
            .generate_challenge_authenticate(builder)
            .map_err(engine_error)
    }

    /// The answer to `start_assertion`: valid only from one of `user`'s
    /// own keys, for this challenge and origin, with a counter that moved.
    pub fn finish_assertion(
        &self,
        user: &FactorUser<'_>,
        state: &str,
        answer: &str,
    ) -> Result<Result<Asserted, Refused>, FactorError> {
        let (state, answer) = match parse_assertion(state, answer) {
            Ok(parsed) => parsed,
            Err(refused) => return Ok(Err(refused)),
        };
        let id = credential_id(answer.get_credential_id());
        let Some(record) = self.credentials(user)?.into_iter().find(|c| c.id == id) else {
            return Ok(Err(Refused::NotThisUsersKey));
        };
        self.check_assertion(user.email, &record, state, &answer)
    }

    /// The answer to `start_passwordless`, for whichever user holds the
    /// key. `reset_of`: when the key's user was last reset (None: no such
    /// user, or no reset), looked up by the caller.
    pub fn finish_passwordless(
        &self,
        state: &str,
        answer: &str,
        reset_of: impl Fn(&str) -> Option<Option<u64>>,
    ) -> Result<Result<Asserted, Refused>, FactorError> {
        let (state, answer) = match parse_assertion(state, answer) {
            Ok(parsed) => parsed,
            Err(refused) => return Ok(Err(refused)),
        };
        let id = credential_id(answer.get_credential_id());
        let Some(email) = self.store.webauthn_owner(&id).map_err(store_error)? else {
            return Ok(Err(Refused::NotThisUsersKey));
        };
        // A handle the key claims must be the one we gave that user.
        if answer
            .get_user_unique_id()
            .is_some_and(|handle| handle != user_handle(&email))
        {
            return Ok(Err(Refused::NotThisUsersKey));
        }
        let Some(reset_at) = reset_of(&email) else {
            return Ok(Err(Refused::NotThisUsersKey));
        };
        let user = FactorUser {
            email: &email,
            country_code: "",
            phone: "",
            reset_at,
        };
        let Some(record) = self.credentials(&user)?.into_iter().find(|c| c.id == id) else {
            return Ok(Err(Refused::NotThisUsersKey));
        };
        self.check_assertion(&email, &record, state, &answer)
    }

    fn check_assertion(
        &self,
        email: &str,
        record: &WebauthnRecord,
        mut state: AuthenticationState,
        answer: &PublicKeyCredential,
    ) -> Result<Result<Asserted, Refused>, FactorError> {
        let Ok(credential) = stored_credential(record) else {
            return Ok(Err(Refused::Invalid(
                "the stored key cannot be read".into(),
            )));
        };
        state.set_allowed_credentials(vec![credential]);
        let checked: AuthenticationResult = match self.core.authenticate_credential(answer, &state)
        {
            Ok(checked) => checked,
            Err(webauthn_rs_core::error::WebauthnError::CredentialPossibleCompromise) => {
                return Ok(Err(self.regressed(email, record, record.counter)));
            }
            Err(err) => return Ok(Err(Refused::Invalid(format!("{err:?}")))),
        };
        let used = CredentialUse {
            counter: checked.counter(),
            backup_state: checked.backup_state(),
            at: self.clock.now(),
        };
        match self
            .store
            .use_webauthn(email, &record.id, used)
            .map_err(store_error)?
        {
            CredentialUseOutcome::Recorded => Ok(Ok(Asserted {
                email: email.to_lowercase(),
                user_verified: checked.user_verified(),
            })),
            CredentialUseOutcome::Unknown => Ok(Err(Refused::NotThisUsersKey)),
            CredentialUseOutcome::CounterRegressed { stored } => Ok(Err(self
                .regressed(email, record, stored)
                .with_seen(used.counter))),
        }
    }

    fn regressed(&self, email: &str, record: &WebauthnRecord, stored: u32) -> Refused {
        tracing::error!(
            user = %email,
            credential = %record.id,
            key = %record.name,
            stored_counter = stored,
            "a WebAuthn key's signature counter went backwards: refused (a cloned key?)"
        );
        Refused::CounterRegressed { stored, seen: 0 }
    }
}

impl Refused {
    fn with_seen(self, seen: u32) -> Self {
        match self {
            Refused::CounterRegressed { stored, .. } => Refused::CounterRegressed { stored, seen },
            other => other,
        }
    }
}

fn parse_assertion(
    state: &str,
    answer: &str,
) -> Result<(AuthenticationState, PublicKeyCredential), Refused> {
    let state = decode_state(state)?;
    let answer = serde_json::from_str(answer).map_err(|_| Refused::Malformed)?;
    Ok((state, answer))
}

/// The credential as registered, with the counter as last seen.
fn stored_credential(record: &WebauthnRecord) -> Result<Credential, serde_json::Error> {
    let mut credential: Credential = serde_json::from_str(&record.credential)?;
    credential.counter = record.counter;
    credential.backup_state = record.backup_state;
    Ok(credential)
}

fn key_name(typed: &str) -> String {
    let name: String = typed
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_CHARS)
        .collect();
    if name.is_empty() {
        "Security key".into()
    } else {
        name
    }
}

#[async_trait::async_trait]
impl SecondFactor for WebauthnFactor {
    fn method(&self) -> Method {
        Method::Webauthn
    }

    fn delivery(&self) -> Delivery {
        Delivery::Assertion
    }

    fn is_enrolled(&self, user: &FactorUser<'_>) -> Result<bool, FactorError> {
        Ok(!self.credentials(user)?.is_empty())
    }

    async fn subject(&self, user: &FactorUser<'_>) -> Result<String, FactorError> {
        Ok(user.email.to_lowercase())
    }

    async fn send_code(&self, _subject: &str) -> Result<(), FactorError> {
        Err(FactorError::Rejected(
            "a security key answers in the browser; there is nothing to send".into(),
        ))
    }

    async fn check_code(&self, _subject: &str, _code: &str) -> Result<CodeCheck, FactorError> {
        Err(FactorError::Rejected(
            "a security key answers in the browser, not with a code".into(),
        ))
    }
}

#[cfg(test)]
mod tests;
