//! The signed OneTouch callback (`authy-api.md` §3): the §3.2 body, sent by
//! POST as JSON or by GET as Rails bracket query params, with
//! `X-Authy-Signature-Nonce` (unix seconds) and `X-Authy-Signature` signed
//! as in §3.3 with the API key.
//!
//! Simulator policy (real Authy's retry behaviour is unknown): one attempt
//! per decision, never retried, 5 s timeout. After `CALLBACK_STRIKES`
//! consecutive failures (a non-2xx answer or no answer at all) the callback
//! URL is disabled, as Authy documents, and nothing more is sent until the
//! URL is set again or callbacks are switched on again
//! (`POST /_sandbox/api/callbacks`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::header::CONTENT_TYPE;
use serde_json::{Value, json};

use super::api::{APP_ID, APP_SERIAL_ID};
use crate::factor::authy::params::{flatten, form_encode};
use crate::factor::authy::signature::{
    callback_url_for_signing, canonical_params, canonical_query, sign,
};
use crate::sandbox::state::{Approval, CALLBACK_STRIKES, CallbackLog, Status, Target};
use crate::sandbox::{CallbackMethod, Shared, codes};

const NONCE_HEADER: &str = "X-Authy-Signature-Nonce";
const SIGNATURE_HEADER: &str = "X-Authy-Signature";

/// What one callback attempt gave.
pub struct Delivery {
    pub http_status: Option<u16>,
    pub error: Option<String>,
}

impl Delivery {
    fn failed(error: String) -> Delivery {
        Delivery {
            http_status: None,
            error: Some(error),
        }
    }

    fn delivered(&self) -> bool {
        self.http_status.is_some_and(|s| (200..300).contains(&s))
    }

    pub fn to_json(&self) -> Value {
        json!({"http_status": self.http_status, "error": self.error})
    }
}

/// Sends the callback for a request just decided. `None` when callbacks
/// are off or no URL is set, so nothing was attempted.
pub async fn notify(shared: &Shared, approval: &Approval, status: Status) -> Option<Delivery> {
    // Bound first: the guard must be gone before `log` locks again.
    let target = shared.state().callback.target();
    let (url, method) = match target {
        Target::Off => return None,
        Target::GivenUp => {
            let delivery = Delivery::failed(format!(
                "callback URL disabled after {CALLBACK_STRIKES} consecutive failures"
            ));
            log(shared, approval, status, &delivery);
            return Some(delivery);
        }
        Target::Send { url, method } => (url, method),
    };
    let body = body(approval, status, shared.now());
    let delivery = deliver(shared, &url, method, &body).await;
    let gave_up = shared.state().callback.record_attempt(delivery.delivered());
    if gave_up {
        tracing::warn!(%url, "Authy sandbox: callback URL disabled after repeated failures");
    }
    log(shared, approval, status, &delivery);
    Some(delivery)
}

fn log(shared: &Shared, approval: &Approval, status: Status, delivery: &Delivery) {
    let entry = CallbackLog {
        uuid: approval.uuid.clone(),
        status,
        http_status: delivery.http_status,
        error: delivery.error.clone(),
        at: shared.now(),
    };
    shared.state().log_callback(entry);
}

async fn deliver(shared: &Shared, url: &str, method: CallbackMethod, body: &Value) -> Delivery {
    let nonce = shared.now().to_string();
    let request = match method {
        CallbackMethod::Post => post_request(shared, url, &nonce, body),
        CallbackMethod::Get => get_request(shared, url, &nonce, body),
    };
    let result = match request {
        Ok(request) => request.send().await,
        Err(error) => return Delivery::failed(error),
    };
    match result {
        Ok(response) => Delivery {
            http_status: Some(response.status().as_u16()),
            error: None,
        },
        Err(error) => Delivery::failed(error_chain(&error)),
    }
}

fn post_request(
    shared: &Shared,
    url: &str,
    nonce: &str,
    body: &Value,
) -> Result<reqwest::RequestBuilder, String> {
    let canonical = canonical_params(body);
    let signature = sign(
        &shared.api_key,
        nonce,
        "POST",
        &callback_url_for_signing(url),
        &canonical,
    );
    let bytes = serde_json::to_vec(body).map_err(|e| e.to_string())?;
    Ok(shared
        .http
        .post(url)
        .header(CONTENT_TYPE, "application/json")
        .header(NONCE_HEADER, nonce)
        .header(SIGNATURE_HEADER, signature)
        .body(bytes))
}

/// The body's flattened pairs are appended to any query the URL already
/// has; the signature covers the whole query, as the receiver sees it.
fn get_request(
    shared: &Shared,
    url: &str,
    nonce: &str,
    body: &Value,
) -> Result<reqwest::RequestBuilder, String> {
    let mut target = url::Url::parse(url).map_err(|e| e.to_string())?;
    let ours = encode_pairs(&flatten(body));
    let query = match target.query() {
        Some(existing) if !existing.is_empty() => format!("{existing}&{ours}"),
        _ => ours,
    };
    target.set_query(Some(&query));
    let canonical = canonical_query(&query);
    let signature = sign(
        &shared.api_key,
        nonce,
        "GET",
        &callback_url_for_signing(url),
        &canonical,
    );
    Ok(shared
        .http
        .get(target)
        .header(NONCE_HEADER, nonce)
        .header(SIGNATURE_HEADER, signature))
}

fn encode_pairs(pairs: &[(String, String)]) -> String {
    let encoded: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
        .collect();
    encoded.join("&")
}

/// reqwest's own message is terse ("error sending request"); the causes
/// say what went wrong (refused, timed out, ...).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The §3.2 body, as real Authy-signed callbacks carry it.
fn body(approval: &Approval, status: Status, now: u64) -> Value {
    let transaction = json!({
        "details": approval.details,
        "device_details": {},
        "device_geolocation": "",
        "device_signing_time": now,
        "encrypted": false,
        "flagged": false,
        "hidden_details": approval.hidden_details,
        "message": approval.message,
        "reason": "",
        "requester_details": null,
        "status": status.as_str(),
        "uuid": approval.uuid,
        "created_at_time": approval.created,
        "customer_uuid": APP_SERIAL_ID,
    });
    json!({
        "authy_id": approval.authy_id,
        "device_uuid": approval.device_id,
        "callback_action": "approval_request_status",
        "uuid": approval.uuid,
        "status": status.as_str(),
        "approval_request": {
            "transaction": transaction,
            "expiration_timestamp": approval.expires_at(),
            "logos": approval.logos,
            "app_id": APP_ID,
        },
        // Real Authy puts the device's RSA signature here; nobody checks it.
        "signature": STANDARD.encode(codes::random_bytes::<64>()),
        "device": device(approval, now),
    })
}

fn device(approval: &Approval, now: u64) -> Value {
    json!({
        "city": null,
        "country": "Sandbox",
        "ip": "127.0.0.1",
        "region": null,
        "registration_city": null,
        "registration_country": "Sandbox",
        "registration_ip": "127.0.0.1",
        "registration_method": "sms",
        "registration_region": null,
        "os_type": "android",
        "last_account_recovery_at": null,
        "id": approval.device_id,
        "registration_date": approval.created,
        "last_sync_date": now,
    })
}
