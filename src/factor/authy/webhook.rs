//! The OneTouch callback: signature check against the configured
//! `authy.callback_url` (never rebuilt from request headers), replay guard,
//! and the approval answer it carries.

use std::sync::Arc;

use serde_json::Value;

use super::{params, signature};
use crate::config::Secret;
use crate::model::PushStatus;
use crate::store::ReplayGuard;

/// How long a (nonce, signature) pair is remembered against replays.
const REPLAY_WINDOW_SECS: u64 = 3600;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookError {
    #[error("missing or invalid X-Authy-Signature")]
    BadSignature,
    #[error("callback seen before (same nonce and signature)")]
    Replayed,
    #[error("signed callback without a usable uuid, authy_id or status")]
    Malformed,
    /// The replay guard could not be asked (the shared store is down):
    /// the call is not trusted.
    #[error("callback not checked against replays: {0}")]
    ReplayUnchecked(String),
}

/// What a verified callback says about one approval request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushAnswer {
    pub uuid: String,
    pub authy_id: String,
    pub status: PushStatus,
}

/// The parts of the HTTP request the check needs.
pub struct CallbackRequest<'a> {
    pub method: &'a str,
    pub nonce: Option<&'a str>,
    pub signature: Option<&'a str>,
    pub query: Option<&'a str>,
    pub body: &'a [u8],
}

pub struct WebhookVerifier {
    api_key: Secret,
    signed_url: String,
    /// The (nonce, signature) pairs seen: shared by the replicas that
    /// share a store, so a call replayed to another one is refused too.
    seen: Arc<dyn ReplayGuard>,
}

impl WebhookVerifier {
    pub fn new(api_key: Secret, callback_url: &str, seen: Arc<dyn ReplayGuard>) -> Self {
        WebhookVerifier {
            api_key,
            signed_url: signature::callback_url_for_signing(callback_url),
            seen,
        }
    }

    /// Verifies the signature, then refuses replays, then reads the answer.
    pub fn check(&self, req: &CallbackRequest<'_>, now: u64) -> Result<PushAnswer, WebhookError> {
        let (Some(nonce), Some(sig)) = (req.nonce, req.signature) else {
            return Err(WebhookError::BadSignature);
        };
        let method = req.method.to_ascii_uppercase();
        let (canonical, fields) = if method == "GET" {
            let query = req.query.unwrap_or("");
            (
                signature::canonical_query(query),
                params::nest(query_pairs(query)),
            )
        } else {
            let body: Value =
                serde_json::from_slice(req.body).map_err(|_| WebhookError::BadSignature)?;
            (signature::canonical_params(&body), body)
        };
        let key = self.api_key.expose();
        if !signature::verify(key, nonce, &method, &self.signed_url, &canonical, sig) {
            return Err(WebhookError::BadSignature);
        }
        self.remember(nonce, sig, now)?;
        answer(&fields).ok_or(WebhookError::Malformed)
    }

    fn remember(&self, nonce: &str, sig: &str, now: u64) -> Result<(), WebhookError> {
        // A header value holds no line break: the pair reads back one way.
        let id = format!("{nonce}\n{sig}");
        match self.seen.first_use(&id, REPLAY_WINDOW_SECS, now) {
            Ok(true) => Ok(()),
            Ok(false) => Err(WebhookError::Replayed),
            Err(err) => Err(WebhookError::ReplayUnchecked(err.to_string())),
        }
    }
}

fn query_pairs(query: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn answer(fields: &Value) -> Option<PushAnswer> {
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let status = match fields.get("status")?.as_str()? {
        "approved" => PushStatus::Approved,
        "denied" => PushStatus::Denied,
        "expired" => PushStatus::Expired,
        _ => return None,
    };
    Some(PushAnswer {
        uuid: text(fields.get("uuid")?)?,
        authy_id: text(fields.get("authy_id")?)?,
        status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryReplayGuard;

    const KEY: &str = "sandbox-api-key";
    const URL: &str = "https://auth.example.com/_authgate/authy/callback";

    fn signed_post(body: &str, nonce: &str) -> (String, String) {
        let params: Value = serde_json::from_str(body).unwrap();
        let sig = signature::sign(
            KEY,
            nonce,
            "POST",
            URL,
            &signature::canonical_params(&params),
        );
        (body.to_owned(), sig)
    }

    fn verifier() -> WebhookVerifier {
        WebhookVerifier::new(Secret::new(KEY.into()), URL, guard())
    }

    fn guard() -> Arc<dyn ReplayGuard> {
        Arc::new(MemoryReplayGuard::default())
    }

    fn request<'a>(
        method: &'a str,
        body: &'a str,
        nonce: &'a str,
        sig: &'a str,
    ) -> CallbackRequest<'a> {
        CallbackRequest {
            method,
            nonce: Some(nonce),
            signature: Some(sig),
            query: None,
            body: body.as_bytes(),
        }
    }

    const BODY: &str = r#"{"authy_id":1001,"uuid":"u-1","status":"approved","callback_action":"approval_request_status"}"#;

    #[test]
    fn a_well_signed_callback_yields_its_answer_once() {
        let v = verifier();
        let (body, sig) = signed_post(BODY, "1700000000");
        let answer = v
            .check(&request("POST", &body, "1700000000", &sig), 100)
            .unwrap();
        assert_eq!(answer.uuid, "u-1");
        assert_eq!(answer.authy_id, "1001");
        assert_eq!(answer.status, PushStatus::Approved);
        assert_eq!(
            v.check(&request("POST", &body, "1700000000", &sig), 101),
            Err(WebhookError::Replayed)
        );
    }

    #[test]
    fn forged_or_unsigned_callbacks_are_refused() {
        let v = verifier();
        let (body, sig) = signed_post(BODY, "1");
        let tampered = body.replace("approved", "denied");
        assert_eq!(
            v.check(&request("POST", &tampered, "1", &sig), 0),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            v.check(&request("POST", &body, "2", &sig), 0),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            v.check(&request("POST", &body, "1", ""), 0),
            Err(WebhookError::BadSignature)
        );
        let other = WebhookVerifier::new(
            Secret::new(KEY.into()),
            "https://other.example.com/cb",
            guard(),
        );
        assert_eq!(
            other.check(&request("POST", &body, "1", &sig), 0),
            Err(WebhookError::BadSignature)
        );
        let unsigned = CallbackRequest {
            signature: None,
            ..request("POST", &body, "1", &sig)
        };
        assert_eq!(v.check(&unsigned, 0), Err(WebhookError::BadSignature));
    }

    #[test]
    fn get_callbacks_are_signed_over_the_query() {
        let v = verifier();
        let query = "authy_id=1001&status=denied&uuid=u-2";
        let sig = signature::sign(KEY, "7", "GET", URL, &signature::canonical_query(query));
        let req = CallbackRequest {
            query: Some(query),
            ..request("GET", "", "7", &sig)
        };
        let answer = v.check(&req, 0).unwrap();
        assert_eq!(
            (answer.uuid.as_str(), answer.status),
            ("u-2", PushStatus::Denied)
        );
    }

    #[test]
    fn a_callback_replayed_to_another_replica_is_refused() {
        use crate::store::RedisReplayGuard;
        use crate::store::redis::{Link, testing::TestRedis};
        let redis = TestRedis::start();
        let replica = || {
            let link = Arc::new(Link::new(&redis.config("ha:")).unwrap());
            WebhookVerifier::new(
                Secret::new(KEY.into()),
                URL,
                Arc::new(RedisReplayGuard::new(link)),
            )
        };
        let (a, b) = (replica(), replica());
        let (body, sig) = signed_post(BODY, "1700000000");
        let call = request("POST", &body, "1700000000", &sig);
        assert!(a.check(&call, 100).is_ok());
        assert_eq!(b.check(&call, 101), Err(WebhookError::Replayed));
        assert_eq!(a.check(&call, 102), Err(WebhookError::Replayed));
    }

    /// A guard whose store cannot be reached.
    struct Unreachable;

    impl ReplayGuard for Unreachable {
        fn first_use(&self, _: &str, _: u64, _: u64) -> Result<bool, crate::store::StoreError> {
            Err(crate::store::StoreError::Unavailable("down".into()))
        }
    }

    #[test]
    fn a_callback_that_cannot_be_checked_for_replays_is_not_trusted() {
        let v = WebhookVerifier::new(Secret::new(KEY.into()), URL, Arc::new(Unreachable));
        let (body, sig) = signed_post(BODY, "1700000000");
        let outcome = v.check(&request("POST", &body, "1700000000", &sig), 100);
        assert!(
            matches!(outcome, Err(WebhookError::ReplayUnchecked(_))),
            "{outcome:?}"
        );
    }
}
