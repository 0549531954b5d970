//! The second factors `auth.methods` offers, built from the config.

use std::sync::Arc;

use crate::clock::SystemClock;
use crate::config::{Config, VerifyChannel, VerifyConfig};
use crate::factor::SecondFactor;
use crate::factor::authy::client::AuthyClient;
use crate::factor::authy::provider::AuthyFactor;
use crate::factor::totp::{SecretSealer, TotpFactor};
use crate::factor::verify::{Channel, VerifyClient, VerifyFactor, VerifySettings};
use crate::factor::webauthn::WebauthnFactor;
use crate::metrics::Metrics;
use crate::model::Method;
use crate::store::{Backend, FactorStore};

use super::AppError;

pub struct Factors {
    /// In `auth.methods` order.
    pub providers: Vec<Arc<dyn SecondFactor>>,
    pub totp: Option<Arc<TotpFactor>>,
    pub webauthn: Option<Arc<WebauthnFactor>>,
    pub store: Arc<dyn FactorStore>,
}

pub fn build(
    config: &Config,
    metrics: &Arc<Metrics>,
    store: &Backend,
) -> Result<Factors, AppError> {
    let mut providers: Vec<Arc<dyn SecondFactor>> = Vec::new();
    let mut totp = None;
    let mut webauthn = None;
    for method in &config.auth.methods {
        match method {
            Method::Authy => providers.push(authy(config, metrics, store)?),
            Method::Verify => providers.push(verify(config, metrics)?),
            Method::Totp => {
                let factor = Arc::new(totp_factor(config, store.factors.clone()));
                totp = Some(factor.clone());
                providers.push(factor);
            }
            Method::Webauthn => {
                let factor = Arc::new(webauthn_factor(config, store.factors.clone())?);
                webauthn = Some(factor.clone());
                providers.push(factor);
            }
        }
    }
    Ok(Factors {
        providers,
        totp,
        webauthn,
        store: store.factors.clone(),
    })
}

/// `totp.encryption_key`, or `session.secret` when it is not set (the
/// sealer derives its own key from either). With an encryption key set,
/// `session.secret` still opens: secrets sealed before the key was
/// introduced keep working and move to the key when next used.
pub fn sealer(config: &Config) -> SecretSealer {
    let totp = &config.totp;
    let session_secret = config.session.secret.expose().as_bytes();
    let mut previous: Vec<&[u8]> = totp
        .previous_encryption_keys
        .iter()
        .map(|k| k.expose().as_bytes())
        .collect();
    let current = match &totp.encryption_key {
        Some(key) => {
            previous.push(session_secret);
            key.expose().as_bytes()
        }
        None => session_secret,
    };
    SecretSealer::new(current, &previous)
}

fn totp_factor(config: &Config, store: Arc<dyn FactorStore>) -> TotpFactor {
    TotpFactor::new(
        store,
        sealer(config),
        config.totp.issuer.clone(),
        Arc::new(SystemClock),
    )
}

fn webauthn_factor(
    config: &Config,
    store: Arc<dyn FactorStore>,
) -> Result<WebauthnFactor, AppError> {
    let webauthn = config
        .webauthn
        .as_ref()
        .ok_or_else(|| AppError::Provider("webauthn: no [webauthn] section".into()))?;
    Ok(WebauthnFactor::new(webauthn, store, Arc::new(SystemClock)))
}

fn authy(
    config: &Config,
    metrics: &Arc<Metrics>,
    store: &Backend,
) -> Result<Arc<dyn SecondFactor>, AppError> {
    let authy = config
        .authy
        .as_ref()
        .ok_or_else(|| AppError::Provider("authy: no [authy] api_key".into()))?;
    let key = authy.api_key.expose().to_owned();
    let client = AuthyClient::new(authy.api_url.as_str(), key, authy.timeout)
        .map_err(|e| AppError::Provider(format!("authy: {e}")))?;
    Ok(Arc::new(AuthyFactor::new(
        client,
        authy.send_install_link,
        metrics.clone(),
        store.subjects.clone(),
    )))
}

fn verify(config: &Config, metrics: &Arc<Metrics>) -> Result<Arc<dyn SecondFactor>, AppError> {
    let verify = config
        .verify
        .as_ref()
        .ok_or_else(|| AppError::Provider("verify: no [verify] account_sid".into()))?;
    let client = VerifyClient::new(&settings(verify))
        .map_err(|e| AppError::Provider(format!("verify: {e}")))?;
    Ok(Arc::new(VerifyFactor::new(client, metrics.clone())))
}

fn settings(verify: &VerifyConfig) -> VerifySettings {
    VerifySettings {
        api_url: verify.api_url.clone(),
        account_sid: verify.account_sid.clone(),
        auth_token: verify.auth_token.expose().to_owned(),
        service_sid: verify.service_sid.clone(),
        channel: match verify.channel {
            VerifyChannel::Sms => Channel::Sms,
            VerifyChannel::Call => Channel::Call,
            VerifyChannel::Email => Channel::Email,
        },
        timeout: verify.timeout,
    }
}
