//! The Authy REST client (authy-api.md §1, §2, §4): register users, send
//! codes, verify codes, create and poll OneTouch approval requests.
//!
//! Security rules that live here (DESIGN.md "Talking to Authy"): the API key
//! travels only in the `X-Authy-API-Key` header and is never logged; verify
//! and sms/call always send `force=true`; a code is valid only on HTTP 200
//! with `"token":"is valid"`; every call has a timeout, and any failure to
//! get an answer is `AuthyError::Unavailable`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use reqwest::header::{ACCEPT, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

const API_KEY_HEADER: &str = "X-Authy-API-Key";
/// The shortest limit among clients (seegno); py/rb allow 200.
const MESSAGE_MAX_CHARS: usize = 144;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthyError {
    /// Connect error, timeout, 5xx or 429: the caller should offer another
    /// way in rather than fail the login outright.
    #[error("Authy could not be reached: {0}")]
    Unavailable(String),
    #[error("Authy rejected the API key")]
    InvalidApiKey,
    #[error("Authy does not know this user")]
    UserNotFound,
    #[error("Authy does not know this approval request")]
    ApprovalNotFound,
    #[error("a code is 6 to 10 digits")]
    InvalidTokenFormat,
    #[error("Authy refused the request (HTTP {status}, error {code}): {message}")]
    Rejected {
        status: u16,
        code: String,
        message: String,
    },
    #[error("Authy's answer could not be read: {0}")]
    Decode(String),
}

impl AuthyError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, AuthyError::Unavailable(_))
    }
}

/// Answer to an SMS or voice request. `ignored` means Authy did not send
/// anything (only happens without `force=true`, which this client always sets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeSent {
    /// Masked by Authy, e.g. `+1-XXX-XXX-XX02`.
    pub cellphone: String,
    pub ignored: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenCheck {
    Valid,
    Invalid,
    Reused,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApprovalRequest {
    /// Cut to 144 characters on the wire.
    pub message: String,
    /// Shown in the app. Keys should not contain `[` or `]`.
    pub details: BTreeMap<String, String>,
    /// Not shown, but echoed back in the callback.
    pub hidden_details: BTreeMap<String, String>,
    /// 0 means the request never expires (Authy's rule).
    pub seconds_to_expire: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    Pending,
    Approved,
    Denied,
    Expired,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserStatus {
    /// The Authy app is registered for this user.
    pub registered: bool,
    /// The user has used a valid code before.
    pub confirmed: bool,
    /// e.g. `"iphone"`, `"android"`, `"sms"`.
    pub devices: Vec<String>,
}

#[derive(Clone)]
pub struct AuthyClient {
    http: reqwest::Client,
    base: Url,
    api_key: HeaderValue,
    timeout: Duration,
}

/// By hand, so the API key can never reach a log line.
impl fmt::Debug for AuthyClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthyClient")
            .field("api_url", &self.base.as_str())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl AuthyClient {
    /// `timeout` bounds every call as a whole (connect included). A client
    /// that cannot be built is reported as `Unavailable`: Authy cannot be
    /// reached through it.
    pub fn new(api_url: &str, api_key: String, timeout: Duration) -> Result<Self, AuthyError> {
        let base = base_url(api_url)?;
        let mut api_key = HeaderValue::from_str(&api_key)
            .map_err(|_| unusable("the API key is not a valid header value"))?;
        api_key.set_sensitive(true);
        let http =
            crate::factor::http::client(&base, timeout).map_err(|e| unusable(&e.to_string()))?;
        Ok(Self {
            http,
            base,
            api_key,
            timeout,
        })
    }

    /// `POST /protected/json/users/new`; the same phone gives the same id.
    pub async fn register_user(
        &self,
        email: &str,
        cellphone: &str,
        country_code: &str,
        send_install_link: bool,
    ) -> Result<u64, AuthyError> {
        let form = owned(&[
            ("user[email]", email),
            ("user[cellphone]", cellphone),
            ("user[country_code]", country_code),
            (
                "send_install_link_via_sms",
                if send_install_link { "true" } else { "false" },
            ),
        ]);
        let url = self.endpoint(&["protected", "json", "users", "new"], false);
        parse_user_id(&self.post(url, &form, "users/new").await?)
    }

    /// `GET /protected/json/sms/{id}?force=true`.
    pub async fn request_sms(&self, authy_id: u64) -> Result<CodeSent, AuthyError> {
        let url = self.endpoint(&["protected", "json", "sms", &authy_id.to_string()], true);
        parse_code_sent(&self.get(url, "sms").await?)
    }

    /// `GET /protected/json/call/{id}?force=true`.
    pub async fn request_call(&self, authy_id: u64) -> Result<CodeSent, AuthyError> {
        let url = self.endpoint(&["protected", "json", "call", &authy_id.to_string()], true);
        parse_code_sent(&self.get(url, "call").await?)
    }

    /// `GET /protected/json/verify/{token}/{id}?force=true`. The format is
    /// checked first, so a malformed code never reaches Authy (the 2015
    /// `../sms` path trick needs a non-digit token).
    pub async fn verify_token(&self, authy_id: u64, token: &str) -> Result<TokenCheck, AuthyError> {
        if !is_token_format(token) {
            return Err(AuthyError::InvalidTokenFormat);
        }
        let id = authy_id.to_string();
        let url = self.endpoint(&["protected", "json", "verify", token, &id], true);
        parse_token_check(&self.get(url, "verify").await?)
    }

    /// `POST /onetouch/json/users/{id}/approval_requests`; returns the uuid.
    pub async fn create_approval_request(
        &self,
        authy_id: u64,
        req: &ApprovalRequest,
    ) -> Result<String, AuthyError> {
        let id = authy_id.to_string();
        let url = self.endpoint(
            &["onetouch", "json", "users", &id, "approval_requests"],
            false,
        );
        parse_approval_uuid(
            &self
                .post(url, &approval_form(req), "approval_requests")
                .await?,
        )
    }

    /// `GET /onetouch/json/approval_requests/{uuid}`.
    pub async fn approval_status(&self, uuid: &str) -> Result<ApprovalStatus, AuthyError> {
        // Only uuid-like names go into the path: nothing that a server
        // could read as another path (`..`, `/`, `%2f`).
        if !is_uuid_like(uuid) {
            return Err(AuthyError::ApprovalNotFound);
        }
        let url = self.endpoint(&["onetouch", "json", "approval_requests", uuid], false);
        parse_approval_status(&self.get(url, "approval_status").await?)
    }

    /// `GET /protected/json/users/{id}/status`.
    pub async fn user_status(&self, authy_id: u64) -> Result<UserStatus, AuthyError> {
        let id = authy_id.to_string();
        let url = self.endpoint(&["protected", "json", "users", &id, "status"], false);
        parse_user_status(&self.get(url, "user_status").await?)
    }

    /// The base URL's path, then the escaped segments.
    fn endpoint(&self, segments: &[&str], force: bool) -> Url {
        let mut url = self.base.clone();
        let prefix = url.path().trim_end_matches('/').to_owned();
        let tail: Vec<String> = segments.iter().map(|s| escape_segment(s)).collect();
        url.set_path(&format!("{prefix}/{}", tail.join("/")));
        if force {
            url.query_pairs_mut().append_pair("force", "true");
        }
        url
    }

    async fn get(&self, url: Url, what: &'static str) -> Result<Reply, AuthyError> {
        self.send(self.http.get(url), what).await
    }

    /// Form body with bracket keys, as rb/go/rs and the curl docs send it.
    async fn post(
        &self,
        url: Url,
        form: &[(String, String)],
        what: &'static str,
    ) -> Result<Reply, AuthyError> {
        self.send(self.http.post(url).form(form), what).await
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        what: &'static str,
    ) -> Result<Reply, AuthyError> {
        let request = request
            .header(API_KEY_HEADER, self.api_key.clone())
            .header(ACCEPT, "application/json");
        let response = request
            .send()
            .await
            .map_err(|e| self.transport_error(what, e))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(what, e))?;
        tracing::debug!(call = what, status, "Authy answered");
        reply_from(status, &body)
    }

    fn transport_error(&self, what: &'static str, e: reqwest::Error) -> AuthyError {
        // The URL goes: the verify path carries the user's code.
        let e = e.without_url();
        let detail = if e.is_timeout() {
            format!("no answer within {:?}", self.timeout)
        } else {
            crate::factor::http::error_chain(&e)
        };
        tracing::debug!(call = what, error = %detail, "Authy unreachable");
        AuthyError::Unavailable(detail)
    }
}

fn unusable(why: &str) -> AuthyError {
    AuthyError::Unavailable(format!("client not usable: {why}"))
}

fn base_url(api_url: &str) -> Result<Url, AuthyError> {
    let mut url = Url::parse(api_url).map_err(|e| unusable(&format!("api_url: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(unusable("api_url must be an http(s) URL"));
    }
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

/// Path-segment escape: unreserved bytes kept, everything else `%XX`.
fn escape_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for &b in segment.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `^[0-9]{6,10}$` (authy-api.md §4).
fn is_token_format(token: &str) -> bool {
    (6..=10).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_digit())
}

fn is_uuid_like(uuid: &str) -> bool {
    (1..=128).contains(&uuid.len())
        && uuid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `message`, `details[K]`, `hidden_details[K]`, `seconds_to_expire`.
fn approval_form(req: &ApprovalRequest) -> Vec<(String, String)> {
    let message: String = req.message.chars().take(MESSAGE_MAX_CHARS).collect();
    let mut form = vec![("message".to_owned(), message)];
    for (field, map) in [
        ("details", &req.details),
        ("hidden_details", &req.hidden_details),
    ] {
        form.extend(
            map.iter()
                .map(|(k, v)| (format!("{field}[{k}]"), v.clone())),
        );
    }
    form.push((
        "seconds_to_expire".to_owned(),
        req.seconds_to_expire.to_string(),
    ));
    form
}

/// An Authy answer: the status and the body parsed as JSON.
#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    body: Value,
}

/// 5xx and 429 mean "try later" whatever the body says; anything else must
/// be JSON, whatever its Content-Type (Authy sometimes says text/html).
fn reply_from(status: u16, bytes: &[u8]) -> Result<Reply, AuthyError> {
    let parsed = serde_json::from_slice::<Value>(bytes);
    if status >= 500 || status == 429 {
        let said = parsed.map(|b| message(&b)).unwrap_or_default();
        return Err(AuthyError::Unavailable(
            format!("HTTP {status} {said}").trim_end().to_owned(),
        ));
    }
    let body = parsed.map_err(|e| AuthyError::Decode(format!("HTTP {status}: {e}")))?;
    Ok(Reply { status, body })
}

/// `error_code` is a string in Authy bodies; a number is accepted too.
fn error_code(body: &Value) -> String {
    match &body["error_code"] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// Authy's message, at top level or inside `errors`.
fn message(body: &Value) -> String {
    [&body["message"], &body["errors"]["message"]]
        .into_iter()
        .find_map(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// `true`, `"true"` (token verify), `false`, `"false"`.
fn flag(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s == "true" => Some(true),
        Value::String(s) if s == "false" => Some(false),
        _ => None,
    }
}

fn authy_error(reply: &Reply) -> AuthyError {
    let code = error_code(&reply.body);
    match (reply.status, code.as_str()) {
        (401, "60001") => AuthyError::InvalidApiKey,
        (404, "60026" | "60016") => AuthyError::UserNotFound,
        (404, "60049") => AuthyError::ApprovalNotFound,
        _ => AuthyError::Rejected {
            status: reply.status,
            code,
            message: message(&reply.body),
        },
    }
}

/// A 2xx whose `success` is not false; otherwise the Authy error it carries.
fn expect_ok(reply: &Reply) -> Result<&Value, AuthyError> {
    let ok = (200..300).contains(&reply.status) && flag(&reply.body["success"]) != Some(false);
    if ok {
        Ok(&reply.body)
    } else {
        Err(authy_error(reply))
    }
}

fn missing(what: &str) -> AuthyError {
    AuthyError::Decode(format!("answer lacks {what}"))
}

fn parse_user_id(reply: &Reply) -> Result<u64, AuthyError> {
    match &expect_ok(reply)?["user"]["id"] {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| missing("user.id"))
}

fn parse_code_sent(reply: &Reply) -> Result<CodeSent, AuthyError> {
    let body = expect_ok(reply)?;
    Ok(CodeSent {
        cellphone: body["cellphone"].as_str().unwrap_or_default().to_owned(),
        ignored: flag(&body["ignored"]).unwrap_or(false),
    })
}

/// Valid only on 200 with `"token":"is valid"`: status or `success` alone
/// were fooled before (authy-api.md §4).
fn parse_token_check(reply: &Reply) -> Result<TokenCheck, AuthyError> {
    let body = &reply.body;
    match (reply.status, error_code(body).as_str()) {
        (200, _) if body["token"] == "is valid" && flag(&body["success"]) != Some(false) => {
            Ok(TokenCheck::Valid)
        }
        (200, code) => Err(AuthyError::Rejected {
            status: 200,
            code: code.to_owned(),
            message: format!(
                "verify answered 200 without \"token\":\"is valid\": {}",
                message(body)
            ),
        }),
        (401, "60020") => Ok(TokenCheck::Invalid),
        (401, "60019") => Ok(TokenCheck::Reused),
        _ => Err(authy_error(reply)),
    }
}

fn parse_approval_uuid(reply: &Reply) -> Result<String, AuthyError> {
    expect_ok(reply)?["approval_request"]["uuid"]
        .as_str()
        .filter(|uuid| !uuid.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| missing("approval_request.uuid"))
}

fn parse_approval_status(reply: &Reply) -> Result<ApprovalStatus, AuthyError> {
    let status = &expect_ok(reply)?["approval_request"]["status"];
    ApprovalStatus::deserialize(status)
        .map_err(|_| AuthyError::Decode(format!("unknown approval_request.status {status}")))
}

fn parse_user_status(reply: &Reply) -> Result<UserStatus, AuthyError> {
    let status = &expect_ok(reply)?["status"];
    let devices = status["devices"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    Ok(UserStatus {
        registered: flag(&status["registered"]).ok_or_else(|| missing("status.registered"))?,
        confirmed: flag(&status["confirmed"]).ok_or_else(|| missing("status.confirmed"))?,
        devices: devices
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::body::Incoming;
    use hyper::service::service_fn;
    use hyper::{Request, Response};
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpListener;

    const KEY: &str = "test-api-key-0123456789";

    fn reply(status: u16, body: &str) -> Result<Reply, AuthyError> {
        reply_from(status, body.as_bytes())
    }

    fn rejected(status: u16, code: &str, message: &str) -> AuthyError {
        AuthyError::Rejected {
            status,
            code: code.to_owned(),
            message: message.to_owned(),
        }
    }

    // ---- Recorded bodies (authy-api.md §1, §2) ----

    const INVALID_KEY: &str = r#"{"message":"Invalid API key","success":false,"errors":{"message":"Invalid API key"},"error_code":"60001"}"#;
    const USER_NOT_FOUND: &str = r#"{"message":"User not found.","success":false,"errors":{"message":"User not found."},"error_code":"60026"}"#;

    #[test]
    fn register_user_bodies() {
        let ok = r#"{"message":"User created successfully.","user":{"id":1000},"success":true}"#;
        assert_eq!(parse_user_id(&reply(200, ok).unwrap()), Ok(1000));
        let invalid = r#"{"message":"User was not valid","success":false,"errors":{"cellphone":"is invalid","message":"User was not valid"},"cellphone":"is invalid","error_code":"60027"}"#;
        assert_eq!(
            parse_user_id(&reply(400, invalid).unwrap()),
            Err(rejected(400, "60027", "User was not valid"))
        );
        assert_eq!(
            parse_user_id(&reply(401, INVALID_KEY).unwrap()),
            Err(AuthyError::InvalidApiKey)
        );
        let old_key = r#"{"message":"Invalid API key.","success":false,"errors":{"message":"Invalid API key."},"error_code":"60001"}"#;
        assert_eq!(
            parse_user_id(&reply(401, old_key).unwrap()),
            Err(AuthyError::InvalidApiKey)
        );
        let no_id = r#"{"message":"User created successfully.","user":{},"success":true}"#;
        assert!(matches!(
            parse_user_id(&reply(200, no_id).unwrap()),
            Err(AuthyError::Decode(_))
        ));
    }

    #[test]
    fn sms_and_call_bodies() {
        let sent =
            r#"{"success":true,"message":"SMS token was sent","cellphone":"+1-XXX-XXX-XX02"}"#;
        let expect = CodeSent {
            cellphone: "+1-XXX-XXX-XX02".into(),
            ignored: false,
        };
        assert_eq!(parse_code_sent(&reply(200, sent).unwrap()), Ok(expect));
        let ignored = r#"{"message":"Ignored: SMS is not needed for smartphones. Pass force=true if you want to actually send it anyway.","cellphone":"+57-XXX-XXX-XX12","device":"android","ignored":true,"success":true}"#;
        assert!(
            parse_code_sent(&reply(200, ignored).unwrap())
                .unwrap()
                .ignored
        );
        let call =
            r#"{"success":true,"message":"Call started...","cellphone":"+351-XXX-XXX-XX67"}"#;
        assert_eq!(
            parse_code_sent(&reply(200, call).unwrap())
                .unwrap()
                .cellphone,
            "+351-XXX-XXX-XX67"
        );
        let call_ignored = r#"{"message":"Call ignored. User is using  App Tokens and this call is not necessary. Pass force=true if you still want to call users that are using the App.","cellphone":"+57-XXX-XXX-XX12","device":"android","ignored":true,"success":true}"#;
        assert!(
            parse_code_sent(&reply(200, call_ignored).unwrap())
                .unwrap()
                .ignored
        );
        assert_eq!(
            parse_code_sent(&reply(404, USER_NOT_FOUND).unwrap()),
            Err(AuthyError::UserNotFound)
        );
        let disabled = r#"{"message":"SMS is not enabled","success":false,"errors":{"message":"SMS is not enabled"},"error_code":"60007"}"#;
        assert_eq!(
            parse_code_sent(&reply(403, disabled).unwrap()),
            Err(rejected(403, "60007", "SMS is not enabled"))
        );
        let not_sent =
            r#"{"message":"SMS token was not sent","success":false,"error_code":"60083"}"#;
        assert_eq!(
            reply(503, not_sent).unwrap_err(),
            AuthyError::Unavailable("HTTP 503 SMS token was not sent".into())
        );
    }

    #[test]
    fn verify_bodies() {
        let valid = r#"{"message":"Token is valid.","token":"is valid","success":"true","device":{"id":null,"os_type":"sms","registration_date":1500648405,"registration_method":null,"registration_country":null,"registration_region":null,"registration_city":null,"country":null,"region":null,"city":null,"ip":null,"last_account_recovery_at":1494631010,"last_sync_date":null}}"#;
        assert_eq!(
            parse_token_check(&reply(200, valid).unwrap()),
            Ok(TokenCheck::Valid)
        );
        let valid_old = r#"{"message":"Token is valid.","token":"is valid","success":true}"#;
        assert_eq!(
            parse_token_check(&reply(200, valid_old).unwrap()),
            Ok(TokenCheck::Valid)
        );
        let invalid = r#"{"message":"Token is invalid","token":"is invalid","success":false,"errors":{"message":"Token is invalid"},"error_code":"60020"}"#;
        assert_eq!(
            parse_token_check(&reply(401, invalid).unwrap()),
            Ok(TokenCheck::Invalid)
        );
        let reused = r#"{"message":"Token is invalid. Token was used recently","token":"is invalid","success":false,"errors":{"message":"Token is invalid. Token was used recently"},"error_code":"60019"}"#;
        assert_eq!(
            parse_token_check(&reply(401, reused).unwrap()),
            Ok(TokenCheck::Reused)
        );
        assert_eq!(
            parse_token_check(&reply(401, INVALID_KEY).unwrap()),
            Err(AuthyError::InvalidApiKey)
        );
        let no_user = r#"{"message":"User doesn't exist","success":false,"errors":{"message":"User doesn't exist"},"error_code":"60016"}"#;
        assert_eq!(
            parse_token_check(&reply(404, no_user).unwrap()),
            Err(AuthyError::UserNotFound)
        );
        let php_mock = r#"{"errors":{"message":"User doesn't exist"}}"#;
        assert_eq!(
            parse_token_check(&reply(404, php_mock).unwrap()),
            Err(rejected(404, "", "User doesn't exist"))
        );
    }

    #[test]
    fn verify_needs_token_is_valid_not_just_200() {
        // The `../sms` bypass answered 200 with an SMS body.
        let sms_body =
            r#"{"success":true,"message":"SMS token was sent","cellphone":"+1-XXX-XXX-XX02"}"#;
        assert!(matches!(
            parse_token_check(&reply(200, sms_body).unwrap()),
            Err(AuthyError::Rejected { status: 200, .. })
        ));
        let contradictory = r#"{"token":"is valid","success":false}"#;
        assert!(parse_token_check(&reply(200, contradictory).unwrap()).is_err());
        // "is valid" on a non-200 is never valid.
        let odd = r#"{"token":"is valid","success":true}"#;
        assert!(parse_token_check(&reply(201, odd).unwrap()).is_err());
    }

    #[test]
    fn user_status_bodies() {
        let ok = r#"{"status":{"authy_id":290907,"confirmed":true,"registered":false,"country_code":1,"phone_number":"XXX-XXX-1118","email":"alfvawmu@authy.com","devices":["iphone","sms"],"has_hard_token":false,"account_disabled":false,"detailed_devices":[{"device_type":"authy","os_type":"unknown","registration_device_id":null,"registration_method":null,"device_id":290908,"last_sync_date":0,"creation_date":1433868212}],"deleted_devices":[]},"message":"User status.","success":true}"#;
        let expect = UserStatus {
            registered: false,
            confirmed: true,
            devices: vec!["iphone".into(), "sms".into()],
        };
        assert_eq!(parse_user_status(&reply(200, ok).unwrap()), Ok(expect));
        assert_eq!(
            parse_user_status(&reply(404, USER_NOT_FOUND).unwrap()),
            Err(AuthyError::UserNotFound)
        );
        let no_flags = r#"{"status":{"devices":[]},"success":true}"#;
        assert!(matches!(
            parse_user_status(&reply(200, no_flags).unwrap()),
            Err(AuthyError::Decode(_))
        ));
    }

    #[test]
    fn approval_bodies() {
        let created = r#"{"approval_request":{"uuid":"550e8400-e29b-41d4-a716-446655440000"},"success":true}"#;
        assert_eq!(
            parse_approval_uuid(&reply(200, created).unwrap()).unwrap(),
            "550e8400-e29b-41d4-a716-446655440000"
        );
        assert_eq!(
            parse_approval_uuid(&reply(404, USER_NOT_FOUND).unwrap()),
            Err(AuthyError::UserNotFound)
        );
        let forbidden =
            r#"{"message":"OneTouch is not enabled","success":false,"error_code":"60050"}"#;
        assert_eq!(
            parse_approval_uuid(&reply(403, forbidden).unwrap()),
            Err(rejected(403, "60050", "OneTouch is not enabled"))
        );
        let expired = r#"{"approval_request":{"_app_name":"testhans","_app_serial_id":46113,"_authy_id":28894864,"_id":"589d12e07d558e6b91e9370a","_user_email":"hans+1@allcode.com","app_id":"58547f6f4014250a11c201f6","created_at":"2017-02-10T01:09:52Z","notified":false,"processed_at":"2017-02-13T11:11:58Z","seconds_to_expire":86400,"status":"expired","updated_at":"2017-02-13T11:11:58Z","user_id":"5840a9328aa2fb674c485436","uuid":"8d031630-d15b-0134-b0a8-0a77bbe8093e"},"success":true}"#;
        assert_eq!(
            parse_approval_status(&reply(200, expired).unwrap()),
            Ok(ApprovalStatus::Expired)
        );
        for (word, status) in [
            ("pending", ApprovalStatus::Pending),
            ("approved", ApprovalStatus::Approved),
            ("denied", ApprovalStatus::Denied),
        ] {
            let body = format!(
                r#"{{"approval_request":{{"status":"{word}","processed_at":null}},"success":true}}"#
            );
            assert_eq!(
                parse_approval_status(&reply(200, &body).unwrap()),
                Ok(status)
            );
        }
        let weird = r#"{"approval_request":{"status":"maybe"},"success":true}"#;
        assert!(matches!(
            parse_approval_status(&reply(200, weird).unwrap()),
            Err(AuthyError::Decode(_))
        ));
        let gone = r#"{"message":"Approval request not found: abc","success":false,"errors":{},"error_code":"60049"}"#;
        assert_eq!(
            parse_approval_status(&reply(404, gone).unwrap()),
            Err(AuthyError::ApprovalNotFound)
        );
    }

    #[test]
    fn status_codes_and_unparsable_bodies() {
        assert!(
            reply(500, "<html>oops</html>")
                .unwrap_err()
                .is_unavailable()
        );
        assert!(reply(502, "").unwrap_err().is_unavailable());
        assert!(
            reply(429, r#"{"message":"Too many requests"}"#)
                .unwrap_err()
                .is_unavailable()
        );
        assert!(matches!(
            reply(200, "<html>hi</html>"),
            Err(AuthyError::Decode(_))
        ));
        assert!(matches!(reply(404, ""), Err(AuthyError::Decode(_))));
        let numeric_code = r#"{"message":"x","success":false,"error_code":60001}"#;
        assert_eq!(
            parse_user_id(&reply(401, numeric_code).unwrap()),
            Err(AuthyError::InvalidApiKey)
        );
    }

    #[test]
    fn token_format_and_escaping() {
        for good in ["123456", "0000000", "1234567890"] {
            assert!(is_token_format(good), "{good}");
        }
        for bad in [
            "",
            "12345",
            "12345678901",
            "12345a",
            "123 456",
            "../sms",
            "١٢٣٤٥٦",
        ] {
            assert!(!is_token_format(bad), "{bad}");
        }
        assert_eq!(escape_segment("a b/..%2f?#"), "a%20b%2F..%252f%3F%23");
        assert_eq!(escape_segment("8d031630-d15b-0134"), "8d031630-d15b-0134");
        assert!(!is_uuid_like(".."));
        assert!(!is_uuid_like(""));
        assert!(!is_uuid_like("a/b"));
    }

    #[test]
    fn approval_form_fields() {
        let req = ApprovalRequest {
            message: "é".repeat(200),
            details: BTreeMap::from([("Account Number".into(), "42".into())]),
            hidden_details: BTreeMap::from([("ip".into(), "10.0.0.1".into())]),
            seconds_to_expire: 120,
        };
        let form = approval_form(&req);
        assert_eq!(form[0].1.chars().count(), MESSAGE_MAX_CHARS);
        assert_eq!(
            form[1..],
            [
                ("details[Account Number]".into(), "42".into()),
                ("hidden_details[ip]".into(), "10.0.0.1".into()),
                ("seconds_to_expire".into(), "120".into()),
            ]
        );
    }

    #[test]
    fn debug_hides_the_key() {
        let client =
            AuthyClient::new("https://api.authy.com", KEY.into(), Duration::from_secs(5)).unwrap();
        let shown = format!("{client:?}");
        assert!(
            shown.contains("api.authy.com") && !shown.contains(KEY),
            "{shown}"
        );
    }

    #[test]
    fn bad_api_urls_are_refused() {
        for url in ["not a url", "ftp://x/", "mailto:a@b"] {
            assert!(
                AuthyClient::new(url, KEY.into(), Duration::from_secs(1)).is_err(),
                "{url}"
            );
        }
    }

    // ---- Through a real local HTTP server ----

    #[derive(Debug, Clone)]
    struct Seen {
        method: String,
        uri: String,
        api_key: Option<String>,
        content_type: Option<String>,
        body: String,
    }

    impl Seen {
        fn form(&self) -> Vec<(String, String)> {
            url::form_urlencoded::parse(self.body.as_bytes())
                .into_owned()
                .collect()
        }
    }

    type Log = Arc<Mutex<Vec<Seen>>>;

    /// Answers every request with `status` and `body`, labelled text/html
    /// (Authy sometimes does), and records what it received.
    async fn fake_authy(status: u16, body: &'static str) -> (String, Log) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log: Log = Arc::default();
        let seen = log.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let seen = seen.clone();
                let service = service_fn(move |req: Request<Incoming>| {
                    record(seen.clone(), req, status, body)
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        (format!("http://{addr}"), log)
    }

    async fn record(
        log: Log,
        req: Request<Incoming>,
        status: u16,
        body: &'static str,
    ) -> Result<Response<Full<Bytes>>, hyper::Error> {
        let header = |name: &str| {
            req.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let mut seen = Seen {
            method: req.method().to_string(),
            uri: req.uri().to_string(),
            api_key: header("x-authy-api-key"),
            content_type: header("content-type"),
            body: String::new(),
        };
        seen.body =
            String::from_utf8(req.into_body().collect().await?.to_bytes().to_vec()).unwrap();
        log.lock().unwrap().push(seen);
        Ok(Response::builder()
            .status(status)
            .header("content-type", "text/html; charset=utf-8")
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap())
    }

    fn client(base: &str) -> AuthyClient {
        AuthyClient::new(base, KEY.into(), Duration::from_secs(5)).unwrap()
    }

    fn only(log: &Log) -> Seen {
        let seen = log.lock().unwrap();
        assert_eq!(seen.len(), 1, "{seen:?}");
        seen[0].clone()
    }

    #[tokio::test]
    async fn register_user_sends_bracket_form_and_key_header() {
        let (base, log) = fake_authy(
            200,
            r#"{"message":"User created successfully.","user":{"id":1000},"success":true}"#,
        )
        .await;
        let id = client(&base)
            .register_user("a b@example.com", "555-123-4567", "1", false)
            .await;
        assert_eq!(id, Ok(1000));
        let seen = only(&log);
        assert_eq!(
            (seen.method.as_str(), seen.uri.as_str()),
            ("POST", "/protected/json/users/new")
        );
        assert_eq!(seen.api_key.as_deref(), Some(KEY));
        assert_eq!(
            seen.content_type.as_deref(),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(
            seen.form(),
            owned(&[
                ("user[email]", "a b@example.com"),
                ("user[cellphone]", "555-123-4567"),
                ("user[country_code]", "1"),
                ("send_install_link_via_sms", "false"),
            ])
        );
    }

    #[tokio::test]
    async fn sms_and_call_force_sending() {
        let body =
            r#"{"success":true,"message":"SMS token was sent","cellphone":"+1-XXX-XXX-XX02"}"#;
        let (base, log) = fake_authy(200, body).await;
        let c = client(&base);
        assert_eq!(
            c.request_sms(42).await.unwrap().cellphone,
            "+1-XXX-XXX-XX02"
        );
        assert!(!c.request_call(43).await.unwrap().ignored);
        let seen = log.lock().unwrap().clone();
        let uris: Vec<&str> = seen.iter().map(|s| s.uri.as_str()).collect();
        assert_eq!(
            uris,
            [
                "/protected/json/sms/42?force=true",
                "/protected/json/call/43?force=true"
            ]
        );
        assert!(
            seen.iter()
                .all(|s| s.method == "GET" && s.api_key.as_deref() == Some(KEY))
        );
    }

    #[tokio::test]
    async fn verify_forces_the_check() {
        let (base, log) = fake_authy(
            200,
            r#"{"message":"Token is valid.","token":"is valid","success":"true"}"#,
        )
        .await;
        assert_eq!(
            client(&base).verify_token(42, "0123456").await,
            Ok(TokenCheck::Valid)
        );
        let seen = only(&log);
        assert_eq!(seen.uri, "/protected/json/verify/0123456/42?force=true");
        assert_eq!(seen.api_key.as_deref(), Some(KEY));
    }

    #[tokio::test]
    async fn malformed_tokens_never_reach_authy() {
        let (base, log) = fake_authy(200, r#"{"token":"is valid","success":true}"#).await;
        let c = client(&base);
        for token in ["..%2fsms", "../sms/1", "12345", "1234567a", "12345678901"] {
            assert_eq!(
                c.verify_token(42, token).await,
                Err(AuthyError::InvalidTokenFormat)
            );
        }
        assert!(matches!(
            c.approval_status("../../sms/1").await,
            Err(AuthyError::ApprovalNotFound)
        ));
        assert!(log.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn approval_request_fields_and_status_path() {
        let (base, log) = fake_authy(
            200,
            r#"{"approval_request":{"uuid":"u-1","status":"approved"},"success":true}"#,
        )
        .await;
        let c = client(&format!("{base}/prefix/"));
        let req = ApprovalRequest {
            message: "Log in to Wiki".into(),
            details: BTreeMap::from([
                ("Email".into(), "a@b.c".into()),
                ("From".into(), "10.0.0.1".into()),
            ]),
            hidden_details: BTreeMap::from([("session".into(), "s1".into())]),
            seconds_to_expire: 120,
        };
        assert_eq!(c.create_approval_request(7, &req).await.unwrap(), "u-1");
        assert_eq!(
            c.approval_status("8d031630-d15b-0134").await,
            Ok(ApprovalStatus::Approved)
        );
        let seen = log.lock().unwrap().clone();
        assert_eq!(seen[0].method, "POST");
        assert_eq!(
            seen[0].uri,
            "/prefix/onetouch/json/users/7/approval_requests"
        );
        assert_eq!(
            seen[0].form(),
            owned(&[
                ("message", "Log in to Wiki"),
                ("details[Email]", "a@b.c"),
                ("details[From]", "10.0.0.1"),
                ("hidden_details[session]", "s1"),
                ("seconds_to_expire", "120"),
            ])
        );
        assert_eq!(
            (seen[1].method.as_str(), seen[1].uri.as_str()),
            (
                "GET",
                "/prefix/onetouch/json/approval_requests/8d031630-d15b-0134"
            )
        );
        assert!(seen.iter().all(|s| s.api_key.as_deref() == Some(KEY)));
    }

    #[tokio::test]
    async fn user_status_path() {
        let (base, log) = fake_authy(200, r#"{"status":{"registered":true,"confirmed":true,"devices":["android"]},"success":true}"#).await;
        assert!(client(&base).user_status(9).await.unwrap().registered);
        assert_eq!(only(&log).uri, "/protected/json/users/9/status");
    }

    #[tokio::test]
    async fn error_answers_map_to_errors() {
        let (base, _) = fake_authy(401, INVALID_KEY).await;
        assert_eq!(
            client(&base).request_sms(1).await,
            Err(AuthyError::InvalidApiKey)
        );
        let (base, _) = fake_authy(503, "<html>Service Unavailable</html>").await;
        assert!(
            client(&base)
                .verify_token(1, "123456")
                .await
                .unwrap_err()
                .is_unavailable()
        );
    }

    #[tokio::test]
    async fn silent_server_gives_unavailable_within_the_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        // Accept and hold connections, never answer.
        let holder = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let timeout = Duration::from_millis(300);
        let c = AuthyClient::new(&base, KEY.into(), timeout).unwrap();
        let started = Instant::now();
        let err = c.verify_token(1, "1234567").await.unwrap_err();
        assert!(err.is_unavailable(), "{err:?}");
        assert!(
            started.elapsed() < timeout + Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(
            !err.to_string().contains("1234567"),
            "the code leaked: {err}"
        );
        holder.abort();
    }

    #[tokio::test]
    async fn refused_connection_is_unavailable() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let err = client(&base).user_status(1).await.unwrap_err();
        assert!(err.is_unavailable(), "{err:?}");
    }
}
