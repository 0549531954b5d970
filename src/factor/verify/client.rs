//! The Twilio Verify v2 REST client (`authy-api.md` §5): start a
//! verification (Twilio sends the code) and check the code the user typed.
//!
//! What decides security lives here: a code counts only on 200/201 with
//! `"status":"approved"` (and `"valid":true` when present); a code of the wrong shape never
//! leaves the process; every call has a timeout, and any failure to get an
//! answer is `VerifyError::Unavailable`, never a wrong code.

use std::fmt;
use std::time::Duration;

use reqwest::header::{ACCEPT, HeaderMap, RETRY_AFTER};
use serde_json::Value;
use url::Url;

use super::{Channel, VerifySettings, is_service_sid, is_verification_sid};

/// When a 429 carries no usable `Retry-After`.
pub const DEFAULT_RETRY_AFTER: u64 = 30;
/// A `Retry-After` beyond this is a server's mistake, not a plan.
const MAX_RETRY_AFTER: u64 = 3600;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Connect error, timeout or 5xx: not the user's fault, never a wrong code.
    #[error("Twilio Verify could not be reached: {0}")]
    Unavailable(String),
    /// 401: the account SID or auth token is wrong.
    #[error("Twilio rejected the account SID or auth token")]
    InvalidCredentials,
    /// 404 on a check: the verification expired, was approved already or
    /// ran out of check attempts; Twilio deleted it, a new code is needed.
    #[error("no pending verification for this recipient")]
    NoPendingVerification,
    /// 429: too many sends or checks for this recipient.
    #[error("Twilio asks to retry in {retry_after}s: {message}")]
    RateLimited { retry_after: u64, message: String },
    /// Refused before any call, so it never reaches Twilio.
    #[error("a code is 4 to 10 digits")]
    InvalidCodeFormat,
    /// Any other refusal, with Twilio's own error code and message.
    #[error("Twilio refused the request (HTTP {status}, error {code}): {message}")]
    Rejected {
        status: u16,
        code: u64,
        message: String,
    },
    #[error("Twilio's answer could not be read: {0}")]
    Decode(String),
}

impl VerifyError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, VerifyError::Unavailable(_))
    }
}

/// The settings cannot make a working client.
#[derive(Debug, thiserror::Error)]
#[error("Twilio Verify settings not usable: {0}")]
pub struct SettingsError(String);

/// Twilio's `status` of a verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerificationStatus {
    Pending,
    Approved,
    Canceled,
    MaxAttemptsReached,
    Deleted,
    Failed,
    Expired,
}

impl VerificationStatus {
    pub const ALL: [VerificationStatus; 7] = [
        VerificationStatus::Pending,
        VerificationStatus::Approved,
        VerificationStatus::Canceled,
        VerificationStatus::MaxAttemptsReached,
        VerificationStatus::Deleted,
        VerificationStatus::Failed,
        VerificationStatus::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            VerificationStatus::Pending => "pending",
            VerificationStatus::Approved => "approved",
            VerificationStatus::Canceled => "canceled",
            VerificationStatus::MaxAttemptsReached => "max_attempts_reached",
            VerificationStatus::Deleted => "deleted",
            VerificationStatus::Failed => "failed",
            VerificationStatus::Expired => "expired",
        }
    }

    pub fn parse(word: &str) -> Option<VerificationStatus> {
        VerificationStatus::ALL
            .into_iter()
            .find(|s| s.as_str() == word)
    }
}

/// A verification Twilio started (or restarted: a start for a recipient
/// with one pending keeps its sid and sends a new code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// `VE` and 32 hex digits.
    pub sid: String,
    pub to: String,
    pub channel: String,
    pub status: VerificationStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckOutcome {
    /// The right code; Twilio deleted the verification.
    Approved,
    /// A wrong code; the verification stays open for another try.
    Pending,
    /// A wrong code that closed the verification (`max_attempts_reached`,
    /// ...): the next check gets `NoPendingVerification`.
    Closed(VerificationStatus),
}

#[derive(Clone)]
pub struct VerifyClient {
    http: reqwest::Client,
    base: Url,
    account_sid: String,
    auth_token: String,
    service_sid: String,
    channel: Channel,
    timeout: Duration,
}

/// By hand, so the auth token can never reach a log line.
impl fmt::Debug for VerifyClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyClient")
            .field("api_url", &self.base.as_str())
            .field("account_sid", &self.account_sid)
            .field("service_sid", &self.service_sid)
            .field("channel", &self.channel)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl VerifyClient {
    pub fn new(settings: &VerifySettings) -> Result<Self, SettingsError> {
        let base = &settings.api_url;
        if !matches!(base.scheme(), "http" | "https") || !base.has_host() {
            return Err(SettingsError(format!(
                "api_url {base} is not an http(s) URL"
            )));
        }
        // It becomes a path segment: nothing that could walk elsewhere.
        if !is_service_sid(&settings.service_sid) {
            return Err(SettingsError(format!(
                "service_sid {:?} is not VA and 32 hex digits",
                settings.service_sid
            )));
        }
        let http = crate::factor::http::client(base, settings.timeout)
            .map_err(|e| SettingsError(e.to_string()))?;
        Ok(VerifyClient {
            http,
            base: base.clone(),
            account_sid: settings.account_sid.clone(),
            auth_token: settings.auth_token.clone(),
            service_sid: settings.service_sid.clone(),
            channel: settings.channel,
            timeout: settings.timeout,
        })
    }

    /// The configured `verify.channel`.
    pub fn channel(&self) -> Channel {
        self.channel
    }

    /// `POST /v2/Services/{ServiceSid}/Verifications` with `To` and
    /// `Channel`; Twilio answers 201.
    pub async fn start(&self, to: &str, channel: Channel) -> Result<Verification, VerifyError> {
        let form = [("To", to), ("Channel", channel.as_str())];
        let (status, headers, body) = self.post("Verifications", &form, "start").await?;
        let body = success_body(status, &headers, &body)?;
        parse_verification(&body)
    }

    /// `POST /v2/Services/{ServiceSid}/VerificationCheck` with `To` and
    /// `Code`. The code's shape is checked first, so a malformed one never
    /// reaches Twilio.
    pub async fn check(&self, to: &str, code: &str) -> Result<CheckOutcome, VerifyError> {
        if !is_code_format(code) {
            return Err(VerifyError::InvalidCodeFormat);
        }
        let form = [("To", to), ("Code", code)];
        let (status, headers, body) = self.post("VerificationCheck", &form, "check").await?;
        if status == 404 {
            return Err(VerifyError::NoPendingVerification);
        }
        if (200..300).contains(&status) && !matches!(status, 200 | 201) {
            return Err(VerifyError::Decode(format!(
                "a check answered HTTP {status}"
            )));
        }
        let body = success_body(status, &headers, &body)?;
        parse_check(&body)
    }

    fn endpoint(&self, resource: &str) -> Url {
        let mut url = self.base.clone();
        let prefix = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!(
            "{prefix}/v2/Services/{}/{resource}",
            self.service_sid
        ));
        url.set_query(None);
        url
    }

    async fn post(
        &self,
        resource: &str,
        form: &[(&str, &str)],
        call: &'static str,
    ) -> Result<(u16, HeaderMap, bytes::Bytes), VerifyError> {
        let request = self
            .http
            .post(self.endpoint(resource))
            .basic_auth(&self.account_sid, Some(&self.auth_token))
            .header(ACCEPT, "application/json")
            .form(form);
        let response = request
            .send()
            .await
            .map_err(|e| self.transport_error(call, e))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(call, e))?;
        tracing::debug!(call, status, "Twilio Verify answered");
        Ok((status, headers, body))
    }

    fn transport_error(&self, call: &'static str, e: reqwest::Error) -> VerifyError {
        let e = e.without_url();
        let detail = if e.is_timeout() {
            format!("no answer within {:?}", self.timeout)
        } else {
            crate::factor::http::error_chain(&e)
        };
        tracing::debug!(call, error = %detail, "Twilio Verify unreachable");
        VerifyError::Unavailable(detail)
    }
}

/// 4 to 10 ASCII digits (Twilio's `CustomCode` range; the sandbox sends 6).
pub fn is_code_format(code: &str) -> bool {
    (4..=10).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_digit())
}

/// The JSON of a 2xx answer, or the error a non-2xx one means. 5xx means
/// "try later" whatever the body says.
fn success_body(status: u16, headers: &HeaderMap, bytes: &[u8]) -> Result<Value, VerifyError> {
    let parsed = serde_json::from_slice::<Value>(bytes);
    if (200..300).contains(&status) {
        return parsed.map_err(|e| VerifyError::Decode(format!("HTTP {status}: {e}")));
    }
    let body = parsed.unwrap_or(Value::Null);
    let message = body["message"].as_str().unwrap_or_default().to_owned();
    Err(match status {
        500.. => VerifyError::Unavailable(format!("HTTP {status} {message}").trim_end().to_owned()),
        429 => VerifyError::RateLimited {
            retry_after: retry_after(headers),
            message,
        },
        401 => VerifyError::InvalidCredentials,
        _ => VerifyError::Rejected {
            status,
            code: body["code"].as_u64().unwrap_or(0),
            message: if message.is_empty() {
                format!("HTTP {status} without a Twilio error body")
            } else {
                message
            },
        },
    })
}

/// Seconds; the HTTP-date form and nonsense get the default.
fn retry_after(headers: &HeaderMap) -> u64 {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(DEFAULT_RETRY_AFTER, |s| s.clamp(1, MAX_RETRY_AFTER))
}

fn status_of(body: &Value) -> Result<VerificationStatus, VerifyError> {
    let status = &body["status"];
    status
        .as_str()
        .and_then(VerificationStatus::parse)
        .ok_or_else(|| VerifyError::Decode(format!("unknown verification status {status}")))
}

fn parse_verification(body: &Value) -> Result<Verification, VerifyError> {
    let text = |name: &str| body[name].as_str().unwrap_or_default().to_owned();
    let sid = text("sid");
    if !is_verification_sid(&sid) {
        return Err(VerifyError::Decode(format!(
            "answer lacks a verification sid: {:?}",
            body["sid"]
        )));
    }
    Ok(Verification {
        sid,
        to: text("to"),
        channel: text("channel"),
        status: status_of(body)?,
    })
}

/// Approved when the status says so and the legacy `valid`, if present,
/// agrees: an answer that contradicts itself is not a yes.
fn parse_check(body: &Value) -> Result<CheckOutcome, VerifyError> {
    let valid = body.get("valid").map(Value::as_bool);
    match (status_of(body)?, valid) {
        (VerificationStatus::Approved, None | Some(Some(true))) => Ok(CheckOutcome::Approved),
        (VerificationStatus::Approved, _) => Err(VerifyError::Decode(
            "status approved without \"valid\":true".into(),
        )),
        (VerificationStatus::Pending, _) => Ok(CheckOutcome::Pending),
        (closed, _) => Ok(CheckOutcome::Closed(closed)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::sync::{Arc, Mutex};

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use reqwest::header::HeaderValue;
    use serde_json::json;
    use tokio::net::TcpListener;

    const TOKEN: &str = "token-3f9c2a71e4b8d605";
    const SERVICE: &str = "VA0123456789abcdef0123456789abcdef";
    const ACCOUNT: &str = "ACfedcba9876543210fedcba9876543210";
    const VE: &str = "VEaaaabbbbccccddddeeeeffff00001111";

    fn settings(api_url: &str) -> VerifySettings {
        VerifySettings {
            api_url: api_url.parse().unwrap(),
            account_sid: ACCOUNT.into(),
            auth_token: TOKEN.into(),
            service_sid: SERVICE.into(),
            channel: Channel::Sms,
            timeout: Duration::from_secs(5),
        }
    }

    fn headers(retry_after: Option<&'static str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from_static(value));
        }
        headers
    }

    fn answer(status: u16, body: &Value) -> Result<Value, VerifyError> {
        success_body(status, &headers(None), body.to_string().as_bytes())
    }

    #[test]
    fn code_shapes() {
        for good in ["1234", "000000", "1234567890"] {
            assert!(is_code_format(good), "{good}");
        }
        for bad in [
            "",
            "123",
            "12345678901",
            "12a456",
            "12 456",
            "١٢٣٤٥٦",
            "../x",
        ] {
            assert!(!is_code_format(bad), "{bad}");
        }
    }

    #[test]
    fn check_bodies() {
        let approved = json!({"sid": VE, "status": "approved", "valid": true});
        assert_eq!(parse_check(&approved), Ok(CheckOutcome::Approved));
        let pending = json!({"sid": VE, "status": "pending", "valid": false});
        assert_eq!(parse_check(&pending), Ok(CheckOutcome::Pending));
        let closed = json!({"status": "max_attempts_reached", "valid": false});
        assert_eq!(
            parse_check(&closed),
            Ok(CheckOutcome::Closed(VerificationStatus::MaxAttemptsReached))
        );
        assert_eq!(
            parse_check(&json!({"status": "approved"})),
            Ok(CheckOutcome::Approved),
            "`valid` is legacy: its absence is no contradiction"
        );
        for contradiction in [
            json!({"status": "approved", "valid": false}),
            json!({"status": "approved", "valid": null}),
            json!({"status": "approved", "valid": "true"}),
        ] {
            assert!(
                matches!(parse_check(&contradiction), Err(VerifyError::Decode(_))),
                "{contradiction}"
            );
        }
        assert!(matches!(
            parse_check(&json!({"status": "maybe", "valid": true})),
            Err(VerifyError::Decode(_))
        ));
    }

    #[test]
    fn start_bodies() {
        let body = json!({"sid": VE, "to": "+15017122661", "channel": "sms", "status": "pending", "valid": false});
        assert_eq!(
            parse_verification(&body),
            Ok(Verification {
                sid: VE.into(),
                to: "+15017122661".into(),
                channel: "sms".into(),
                status: VerificationStatus::Pending,
            })
        );
        let no_sid = json!({"to": "+15017122661", "status": "pending"});
        assert!(matches!(
            parse_verification(&no_sid),
            Err(VerifyError::Decode(_))
        ));
    }

    #[test]
    fn error_envelopes_map_to_errors() {
        let envelope = |code: u64, message: &str, status: u16| {
            json!({"code": code, "message": message,
                   "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
                   "status": status})
        };
        assert_eq!(
            answer(401, &envelope(20003, "Authenticate", 401)),
            Err(VerifyError::InvalidCredentials)
        );
        assert_eq!(
            answer(400, &envelope(60200, "Invalid parameter `To`", 400)),
            Err(VerifyError::Rejected {
                status: 400,
                code: 60200,
                message: "Invalid parameter `To`".into()
            })
        );
        assert!(
            answer(503, &envelope(20503, "Service unavailable", 503))
                .unwrap_err()
                .is_unavailable()
        );
        assert!(
            success_body(502, &headers(None), b"<html>bad gateway</html>")
                .unwrap_err()
                .is_unavailable()
        );
        assert!(matches!(
            success_body(403, &headers(None), b"<html>no</html>"),
            Err(VerifyError::Rejected {
                status: 403,
                code: 0,
                ..
            })
        ));
        assert!(matches!(
            success_body(201, &headers(None), b"<html>ok</html>"),
            Err(VerifyError::Decode(_))
        ));
    }

    #[test]
    fn retry_after_is_seconds_with_a_default() {
        let limited = |value| {
            let body = br#"{"code":60203,"message":"Max send attempts reached","status":429}"#;
            success_body(429, &headers(value), body)
        };
        assert_eq!(
            limited(Some("120")),
            Err(VerifyError::RateLimited {
                retry_after: 120,
                message: "Max send attempts reached".into()
            })
        );
        for (value, expected) in [
            (None, DEFAULT_RETRY_AFTER),
            (Some("Wed, 21 Oct 2015 07:28:00 GMT"), DEFAULT_RETRY_AFTER),
            (Some("-5"), DEFAULT_RETRY_AFTER),
            (Some("0"), 1),
            (Some("999999"), MAX_RETRY_AFTER),
        ] {
            assert!(
                matches!(limited(value), Err(VerifyError::RateLimited { retry_after, .. }) if retry_after == expected),
                "{value:?}"
            );
        }
    }

    #[test]
    fn settings_that_cannot_work_are_refused() {
        assert!(VerifyClient::new(&settings("ftp://verify.example/")).is_err());
        let mut bad_service = settings("https://verify.twilio.com");
        bad_service.service_sid = "VA../../Accounts".into();
        assert!(VerifyClient::new(&bad_service).is_err());
        assert!(VerifyClient::new(&settings("https://verify.twilio.com")).is_ok());
    }

    #[test]
    fn debug_hides_the_token() {
        let client = VerifyClient::new(&settings("https://verify.twilio.com")).unwrap();
        let shown = format!("{client:?}");
        assert!(shown.contains(SERVICE) && !shown.contains(TOKEN), "{shown}");
    }

    // ---- The exact request, through a recording server ----

    #[derive(Debug, Clone)]
    struct Seen {
        uri: String,
        authorization: Option<String>,
        content_type: Option<String>,
        body: String,
    }

    /// Answers every request with `status`, `body` and `extra` headers,
    /// and records what it received.
    async fn recorder(
        status: u16,
        body: &'static str,
        extra: &'static [(&'static str, &'static str)],
    ) -> (String, Arc<Mutex<Vec<Seen>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let seen = log.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let seen = seen.clone();
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let (parts, incoming) = req.into_parts();
                        let bytes = incoming.collect().await.unwrap().to_bytes();
                        let header = |name: &str| {
                            parts
                                .headers
                                .get(name)
                                .map(|v| v.to_str().unwrap().to_owned())
                        };
                        seen.lock().unwrap().push(Seen {
                            uri: parts.uri.to_string(),
                            authorization: header("authorization"),
                            content_type: header("content-type"),
                            body: String::from_utf8(bytes.to_vec()).unwrap(),
                        });
                        let mut response =
                            hyper::Response::new(Full::new(Bytes::from_static(body.as_bytes())));
                        *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
                        for (name, value) in extra {
                            response
                                .headers_mut()
                                .insert(*name, HeaderValue::from_static(value));
                        }
                        Ok::<_, Infallible>(response)
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        (format!("http://{addr}"), log)
    }

    fn form(seen: &Seen) -> Vec<(String, String)> {
        url::form_urlencoded::parse(seen.body.as_bytes())
            .into_owned()
            .collect()
    }

    #[tokio::test]
    async fn start_posts_pascal_case_form_with_basic_auth() {
        let body = r#"{"sid":"VEaaaabbbbccccddddeeeeffff00001111","to":"+15551234567","channel":"call","status":"pending","valid":false}"#;
        let (base, log) = recorder(201, body, &[]).await;
        let client = VerifyClient::new(&settings(&format!("{base}/prefix/"))).unwrap();
        let started = client.start("+15551234567", Channel::Call).await.unwrap();
        assert_eq!(started.sid, VE);
        let seen = log.lock().unwrap()[0].clone();
        assert_eq!(
            seen.uri,
            format!("/prefix/v2/Services/{SERVICE}/Verifications")
        );
        assert_eq!(
            seen.content_type.as_deref(),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(
            form(&seen),
            [
                ("To".to_owned(), "+15551234567".to_owned()),
                ("Channel".to_owned(), "call".to_owned())
            ]
        );
        use base64::Engine;
        let expected =
            base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT}:{TOKEN}"));
        assert_eq!(seen.authorization, Some(format!("Basic {expected}")));
    }

    #[tokio::test]
    async fn the_code_goes_in_the_body_only() {
        let body =
            r#"{"sid":"VEaaaabbbbccccddddeeeeffff00001111","status":"approved","valid":true}"#;
        let (base, log) = recorder(200, body, &[]).await;
        let client = VerifyClient::new(&settings(&base)).unwrap();
        assert_eq!(
            client.check("+15551234567", "8472911").await,
            Ok(CheckOutcome::Approved)
        );
        let seen = log.lock().unwrap()[0].clone();
        assert_eq!(
            seen.uri,
            format!("/v2/Services/{SERVICE}/VerificationCheck")
        );
        assert_eq!(
            form(&seen),
            [
                ("To".to_owned(), "+15551234567".to_owned()),
                ("Code".to_owned(), "8472911".to_owned())
            ]
        );
    }

    #[tokio::test]
    async fn a_check_answered_204_is_not_approval() {
        let (base, _) = recorder(204, "", &[]).await;
        let client = VerifyClient::new(&settings(&base)).unwrap();
        assert!(matches!(
            client.check("+15551234567", "123456").await,
            Err(VerifyError::Decode(_))
        ));
    }

    #[tokio::test]
    async fn rate_limits_carry_retry_after() {
        let body = r#"{"code":20429,"message":"Too many requests","more_info":"https://www.twilio.com/docs/errors/20429","status":429}"#;
        let (base, _) = recorder(429, body, &[("retry-after", "17")]).await;
        let client = VerifyClient::new(&settings(&base)).unwrap();
        assert_eq!(
            client.start("+15551234567", Channel::Sms).await,
            Err(VerifyError::RateLimited {
                retry_after: 17,
                message: "Too many requests".into()
            })
        );
    }

    #[tokio::test]
    async fn a_silent_server_is_unavailable_within_the_timeout_and_the_code_stays_hidden() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let holder = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let mut slow = settings(&base);
        slow.timeout = Duration::from_millis(300);
        let client = VerifyClient::new(&slow).unwrap();
        let started = std::time::Instant::now();
        let err = client.check("+15551234567", "7654321").await.unwrap_err();
        assert!(err.is_unavailable(), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(3));
        let shown = format!("{err} {err:?}");
        assert!(
            !shown.contains("7654321") && !shown.contains(TOKEN),
            "{shown}"
        );
        holder.abort();
    }
}
