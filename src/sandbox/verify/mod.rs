//! Twilio Verify v2 in the sandbox (`authy-api.md` §5), on the same
//! listener as the Authy API:
//!
//! - `POST /v2/Services/{ServiceSid}/Verifications` (`To`, `Channel`): 201;
//! - `POST /v2/Services/{ServiceSid}/VerificationCheck` (`Code` and `To` or
//!   `VerificationSid`): 200;
//! - `GET  /v2/Services/{ServiceSid}/Verifications/{Sid}`: 200.
//!
//! HTTP Basic with the configured account SID and auth token (else 401,
//! Twilio error 20003); one service, the configured one (else 404, 20404).
//!
//! Simulator policies, modelled on Twilio's documented behaviour:
//! - a 6-digit random code per send; a start for a recipient with a pending
//!   verification keeps its sid and replaces the code;
//! - the right code approves, and the verification is then deleted (404);
//!   the fifth wrong code answers `max_attempts_reached`, then 404;
//! - a verification is deleted 10 minutes after it started, resends
//!   included;
//! - a sixth start for one recipient within 10 minutes gets 429, error
//!   60203, with `Retry-After` (seconds until the oldest send leaves the
//!   window);
//! - `whatsapp`, `sna` and `auto` channels are refused (400, 60200).

pub mod state;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::StatusCode;
use http::header::{HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use self::state::{Endpoint, Fault, StartOutcome, Target, Verification};
use super::Shared;
use super::codes;
use super::wire::{Incoming, Reply, json_reply, text};
use crate::factor::verify::client::is_code_format;

/// How long a hanging endpoint waits before it answers 500 anyway: longer
/// than any client timeout worth testing, short enough not to pile up.
const HANG_FOR: Duration = Duration::from_secs(60);

/// What clients must present, and the one service that exists.
pub struct Credentials {
    pub account_sid: String,
    pub auth_token: String,
    pub service_sid: String,
}

pub async fn handle(shared: &Shared, req: &Incoming) -> Reply {
    let segments = req.segments();
    let endpoint = match (req.method.as_str(), segments.as_slice()) {
        ("POST", ["v2", "Services", _, "Verifications"]) => Endpoint::Start,
        ("POST", ["v2", "Services", _, "VerificationCheck"]) => Endpoint::Check,
        ("GET", ["v2", "Services", _, "Verifications", _]) => Endpoint::Fetch,
        _ => Endpoint::Other,
    };
    let fault = {
        let mut state = shared.state();
        state.verify.count(endpoint);
        state.verify.fault
    };
    match fault {
        Fault::None => {}
        Fault::Error => return internal_error(),
        Fault::Hang => {
            tokio::time::sleep(HANG_FOR).await;
            return internal_error();
        }
    }
    let credentials = &shared.verify;
    if !authorized(credentials, req) {
        let mut reply = twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
        reply.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"Twilio API\""),
        );
        return reply;
    }
    let service_known = segments
        .get(2)
        .is_some_and(|sid| *sid == credentials.service_sid);
    if endpoint == Endpoint::Other || !service_known {
        return not_found(&req.path);
    }
    let params = req.params();
    let origin = format!("http://{}", req.host.as_deref().unwrap_or("127.0.0.1"));
    let now = shared.now();
    let shaped = Shaped {
        credentials,
        origin: &origin,
        now,
    };
    match (endpoint, segments.as_slice()) {
        (Endpoint::Start, _) => start(shared, &shaped, &params),
        (Endpoint::Check, _) => check(shared, &shaped, &params, &req.path),
        (Endpoint::Fetch, [.., sid]) => match shared.state().verify.fetch(sid, now) {
            Some(v) => json_reply(StatusCode::OK, &shaped.verification(v)),
            None => not_found(&req.path),
        },
        _ => not_found(&req.path),
    }
}

/// What the JSON of a verification needs besides the verification.
struct Shaped<'a> {
    credentials: &'a Credentials,
    /// Where this sandbox was reached, for the `url` member.
    origin: &'a str,
    now: u64,
}

impl Shaped<'_> {
    /// The body of a start and a fetch.
    fn verification(&self, v: &Verification) -> Value {
        let service = &self.credentials.service_sid;
        let attempts: Vec<Value> = v
            .sends
            .iter()
            .map(|s| {
                json!({
                    "time": codes::rfc3339(s.at),
                    "channel": s.channel.to_ascii_uppercase(),
                    "attempt_sid": s.sid,
                })
            })
            .collect();
        json!({
            "sid": v.sid,
            "service_sid": service,
            "account_sid": self.credentials.account_sid,
            "to": v.to,
            "channel": v.channel,
            "status": v.status(self.now).as_str(),
            "valid": false,
            "date_created": codes::rfc3339(v.created),
            "date_updated": codes::rfc3339(v.updated),
            "lookup": {},
            "amount": null,
            "payee": null,
            "send_code_attempts": attempts,
            "sna": null,
            "url": format!("{}/v2/Services/{service}/Verifications/{}", self.origin, v.sid),
        })
    }

    /// The body of a check: `valid` only with `approved`.
    fn check(&self, v: &Verification) -> Value {
        let status = v.status(self.now);
        json!({
            "sid": v.sid,
            "service_sid": self.credentials.service_sid,
            "account_sid": self.credentials.account_sid,
            "to": v.to,
            "channel": v.channel,
            "status": status.as_str(),
            "valid": status == state::Status::Approved,
            "amount": null,
            "payee": null,
            "sna_attempts_error_codes": [],
            "date_created": codes::rfc3339(v.created),
            "date_updated": codes::rfc3339(v.updated),
        })
    }
}

fn start(shared: &Shared, shaped: &Shaped<'_>, params: &Value) -> Reply {
    let Some(to) = text(params.get("To")).filter(|to| !to.is_empty()) else {
        return invalid("Missing required parameter To in the post body");
    };
    let channel = text(params.get("Channel")).unwrap_or_default();
    let to_ok = match channel.as_str() {
        "sms" | "call" => is_e164(&to),
        "email" => is_email(&to),
        "" => return invalid("Missing required parameter Channel in the post body"),
        _ => return invalid("Invalid parameter `Channel`: the sandbox sends sms, call and email"),
    };
    if !to_ok {
        return invalid("Invalid parameter `To`");
    }
    let outcome = shared.state().verify.start(&to, &channel, shaped.now);
    match outcome {
        StartOutcome::Started(v) => json_reply(StatusCode::CREATED, &shaped.verification(&v)),
        StartOutcome::RateLimited { retry_after } => {
            let mut reply = twilio_error(
                StatusCode::TOO_MANY_REQUESTS,
                60203,
                "Max send attempts reached",
            );
            reply
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(retry_after));
            reply
        }
    }
}

fn check(shared: &Shared, shaped: &Shaped<'_>, params: &Value, path: &str) -> Reply {
    let code = text(params.get("Code")).unwrap_or_default();
    if !is_code_format(&code) {
        return invalid("Invalid parameter `Code`");
    }
    let to = text(params.get("To")).filter(|to| !to.is_empty());
    let sid = text(params.get("VerificationSid")).filter(|sid| !sid.is_empty());
    let target = match (&to, &sid) {
        (_, Some(sid)) => Target::Sid(sid),
        (Some(to), None) => Target::To(to),
        (None, None) => {
            return invalid("Either a 'To' number or 'VerificationSid' must be specified");
        }
    };
    let checked = shared.state().verify.check(&target, &code, shaped.now);
    match checked {
        Some(v) => json_reply(StatusCode::OK, &shaped.check(&v)),
        None => not_found(path),
    }
}

/// Both halves compared in constant time, whatever the first gave.
fn authorized(credentials: &Credentials, req: &Incoming) -> bool {
    let Some(given) = basic_credentials(req) else {
        return false;
    };
    let (sid, token) = given;
    let sid_ok = sid.as_bytes().ct_eq(credentials.account_sid.as_bytes());
    let token_ok = token.as_bytes().ct_eq(credentials.auth_token.as_bytes());
    bool::from(sid_ok & token_ok)
}

fn basic_credentials(req: &Incoming) -> Option<(String, String)> {
    let header = req.header("authorization")?;
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (sid, token) = decoded.split_once(':')?;
    Some((sid.to_owned(), token.to_owned()))
}

fn is_e164(to: &str) -> bool {
    to.strip_prefix('+').is_some_and(|digits| {
        (2..=15).contains(&digits.len())
            && !digits.starts_with('0')
            && digits.bytes().all(|b| b.is_ascii_digit())
    })
}

fn is_email(to: &str) -> bool {
    to.split_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
        && !to.contains(char::is_whitespace)
}

/// Twilio's error envelope.
fn twilio_error(status: StatusCode, code: u32, message: &str) -> Reply {
    let body = json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status.as_u16(),
    });
    json_reply(status, &body)
}

fn invalid(message: &str) -> Reply {
    twilio_error(StatusCode::BAD_REQUEST, 60200, message)
}

/// Twilio names the resource without the `/v2` version prefix.
fn not_found(path: &str) -> Reply {
    let resource = path.strip_prefix("/v2").unwrap_or(path);
    let message = format!("The requested resource {resource} was not found");
    twilio_error(StatusCode::NOT_FOUND, 20404, &message)
}

fn internal_error() -> Reply {
    twilio_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        20500,
        "Internal Server Error",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients() {
        assert!(is_e164("+15551234567"));
        assert!(is_e164("+447700900123"));
        for bad in [
            "15551234567",
            "+",
            "+0555123",
            "+1555123456789012",
            "+1 555",
            "+1555-1234",
        ] {
            assert!(!is_e164(bad), "{bad}");
        }
        assert!(is_email("ada@example.com"));
        assert!(!is_email("ada@localhost"));
        assert!(!is_email("a da@example.com"));
        assert!(!is_email("@example.com"));
    }
}
