//! The Authy API itself: `/protected/json/...` and `/onetouch/json/...`,
//! with the exact shapes of `authy-api.md` §1–§2 (string `error_code`,
//! `"success":"true"` on verify, the double space in "Call ignored", ...).

use http::StatusCode;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::sandbox::Shared;
use crate::sandbox::codes;
use crate::sandbox::state::DEFAULT_EXPIRY;
use crate::sandbox::state::{
    Approval, Channel, NewApproval, NewUser, SendOutcome, State, VerifyOutcome, Via,
};
use crate::sandbox::wire::{Incoming, Reply, authy_error, is_true, json_reply, text};

const API_KEY_HEADER: &str = "x-authy-api-key";
pub const APP_NAME: &str = "authgate sandbox";
/// The numeric app id of `app/details` and the customer id of callbacks.
pub const APP_SERIAL_ID: u64 = 1;
/// The Mongo-style app id of approval requests and callbacks.
pub const APP_ID: &str = "5a17d1a0c0ffee0000000001";

const SMS_IGNORED: &str = "Ignored: SMS is not needed for smartphones. \
    Pass force=true if you want to actually send it anyway.";
// The double space is Authy's own.
const CALL_IGNORED: &str = "Call ignored. User is using  App Tokens and this call is not \
    necessary. Pass force=true if you still want to call users that are using the App.";

pub fn handle(shared: &Shared, req: &Incoming) -> Reply {
    let params = req.params();
    if !key_is_valid(shared, req, &params) {
        return authy_error(StatusCode::UNAUTHORIZED, "Invalid API key", "60001");
    }
    let now = shared.now();
    let mut state = shared.state();
    let state = &mut *state;
    match (req.method.as_str(), req.segments().as_slice()) {
        ("POST", ["protected", "json", "users", "new"]) => register(state, &params, now),
        ("GET", ["protected", "json", "sms", id]) => send(state, id, Channel::Sms, &params, now),
        ("GET", ["protected", "json", "call", id]) => send(state, id, Channel::Call, &params, now),
        ("GET", ["protected", "json", "verify", token, id]) => {
            verify(state, token, id, &params, now)
        }
        ("GET", ["protected", "json", "users", id, "status"]) => user_status(state, id),
        // Three delete paths are in use by the client libraries.
        ("POST", ["protected", "json", "users", id, "remove" | "delete"])
        | ("POST", ["protected", "json", "users", "delete", id]) => remove(state, id),
        ("GET", ["protected", "json", "app", "details"]) => app_details(),
        ("POST", ["onetouch", "json", "users", id, "approval_requests"]) => {
            create_approval(state, id, &params, now)
        }
        ("GET", ["onetouch", "json", "approval_requests", uuid]) => {
            approval_status(state, uuid, now)
        }
        _ => authy_error(StatusCode::NOT_FOUND, "Not found", "60002"),
    }
}

/// The header wins over the legacy `api_key` param when both are present.
fn key_is_valid(shared: &Shared, req: &Incoming, params: &Value) -> bool {
    let given = match req.header(API_KEY_HEADER) {
        Some(header) => Some(header.to_owned()),
        None => text(params.get("api_key")),
    };
    given.is_some_and(|key| bool::from(key.as_bytes().ct_eq(shared.api_key.as_bytes())))
}

fn user_id(segment: &str) -> Option<u64> {
    if codes::is_digits(segment) {
        segment.parse().ok()
    } else {
        None
    }
}

fn user_not_found() -> Reply {
    authy_error(StatusCode::NOT_FOUND, "User not found.", "60026")
}

fn register(state: &mut State, params: &Value, now: u64) -> Reply {
    match new_user(params) {
        Ok(new) => {
            let id = state.register(new, now);
            let body = json!({
                "message": "User created successfully.",
                "user": {"id": id},
                "success": true,
            });
            json_reply(StatusCode::OK, &body)
        }
        Err(fields) => user_not_valid(&fields),
    }
}

/// Validates `user[...]`, collecting every field error like Rails does.
fn new_user(params: &Value) -> Result<NewUser, Vec<&'static str>> {
    let user = params.get("user").cloned().unwrap_or(Value::Null);
    let email = text(user.get("email")).unwrap_or_default();
    let cellphone = cellphone_digits(&text(user.get("cellphone")).unwrap_or_default());
    let country_code = text(user.get("country_code")).unwrap_or_default();
    let country_code = country_code.trim().trim_start_matches('+').to_owned();
    let mut invalid = Vec::new();
    if !email_looks_valid(&email) {
        invalid.push("email");
    }
    if cellphone.is_none() {
        invalid.push("cellphone");
    }
    if !codes::is_digits(&country_code) || country_code.len() > 4 {
        invalid.push("country_code");
    }
    // php sends the flag inside `user[...]`; accept it there too.
    let link = params
        .get("send_install_link_via_sms")
        .or(user.get("send_install_link_via_sms"));
    match cellphone {
        Some(cellphone) if invalid.is_empty() => Ok(NewUser {
            email: email.trim().to_owned(),
            country_code,
            cellphone,
            send_install_link: !is_false(link),
        }),
        _ => Err(invalid),
    }
}

fn is_false(value: Option<&Value>) -> bool {
    text(value).is_some_and(|s| s.eq_ignore_ascii_case("false") || s == "0")
}

fn email_looks_valid(email: &str) -> bool {
    let email = email.trim();
    match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && domain.contains('.') && !email.contains(char::is_whitespace)
        }
        None => false,
    }
}

/// Digits with optional dashes, dots or spaces; at least 7 digits.
fn cellphone_digits(raw: &str) -> Option<String> {
    let allowed = |c: char| c.is_ascii_digit() || matches!(c, '-' | '.' | ' ');
    if !raw.chars().all(allowed) {
        return None;
    }
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    (7..=15).contains(&digits.len()).then_some(digits)
}

/// Field errors appear both at top level and inside `errors`.
fn user_not_valid(fields: &[&str]) -> Reply {
    let message = "User was not valid";
    let mut body = json!({"message": message, "success": false, "error_code": "60027"});
    let mut errors = json!({"message": message});
    for field in fields {
        body[*field] = json!("is invalid");
        errors[*field] = json!("is invalid");
    }
    body["errors"] = errors;
    json_reply(StatusCode::BAD_REQUEST, &body)
}

fn send(state: &mut State, id: &str, channel: Channel, params: &Value, now: u64) -> Reply {
    let Some(id) = user_id(id) else {
        return user_not_found();
    };
    let force = is_true(params.get("force"));
    let action = text(params.get("action"));
    let body = match (state.send_code(id, channel, force, action, now), channel) {
        (SendOutcome::UnknownUser, _) => return user_not_found(),
        (SendOutcome::Sent { phone }, Channel::Sms) => {
            json!({"success": true, "message": "SMS token was sent", "cellphone": phone})
        }
        (SendOutcome::Sent { phone }, Channel::Call) => {
            json!({"success": true, "message": "Call started...", "cellphone": phone})
        }
        (SendOutcome::Ignored { phone }, Channel::Sms) => ignored(SMS_IGNORED, &phone),
        (SendOutcome::Ignored { phone }, Channel::Call) => ignored(CALL_IGNORED, &phone),
    };
    json_reply(StatusCode::OK, &body)
}

fn ignored(message: &str, phone: &str) -> Value {
    json!({
        "message": message,
        "cellphone": phone,
        "device": "android",
        "ignored": true,
        "success": true,
    })
}

fn verify(state: &mut State, token: &str, id: &str, params: &Value, now: u64) -> Reply {
    let unknown = || {
        let message = "User doesn't exist";
        authy_error(StatusCode::NOT_FOUND, message, "60016")
    };
    let Some(id) = user_id(id) else {
        return unknown();
    };
    let force = is_true(params.get("force"));
    let action = text(params.get("action"));
    match state.verify(id, token, force, action.as_deref(), now) {
        VerifyOutcome::UnknownUser => unknown(),
        VerifyOutcome::Invalid => token_invalid("Token is invalid", "60020"),
        VerifyOutcome::Reused => {
            token_invalid("Token is invalid. Token was used recently", "60019")
        }
        VerifyOutcome::Valid(via) => {
            let device = state
                .user(id)
                .map(|user| device_json(via, user.device_id(), user.created));
            token_valid(device.unwrap_or(Value::Null))
        }
    }
}

fn token_valid(device: Value) -> Reply {
    let body = json!({
        "message": "Token is valid.",
        "token": "is valid",
        // A string, unlike every other `success`.
        "success": "true",
        "device": device,
    });
    json_reply(StatusCode::OK, &body)
}

fn token_invalid(message: &str, code: &str) -> Reply {
    let body = json!({
        "message": message,
        "token": "is invalid",
        "success": false,
        "errors": {"message": message},
        "error_code": code,
    });
    json_reply(StatusCode::UNAUTHORIZED, &body)
}

/// The `device` of a valid token: the SMS pseudo-device, or the app.
fn device_json(via: Via, device_id: u64, registered_at: u64) -> Value {
    match via {
        Via::App => json!({
            "id": device_id, "os_type": "android", "registration_date": registered_at,
            "registration_method": "sms", "registration_device_id": device_id,
            "registration_country": null, "registration_region": null,
            "registration_city": null, "registration_ip": null, "country": null,
            "region": null, "city": null, "ip": null,
            "last_account_recovery_at": null, "last_sync_date": null,
        }),
        Via::Sms | Via::Unchecked => json!({
            "id": null, "os_type": "sms", "registration_date": registered_at,
            "registration_method": null, "registration_country": null,
            "registration_region": null, "registration_city": null, "country": null,
            "region": null, "city": null, "ip": null,
            "last_account_recovery_at": null, "last_sync_date": null,
        }),
    }
}

fn user_status(state: &State, id: &str) -> Reply {
    let Some(user) = user_id(id).and_then(|id| state.user(id)) else {
        return user_not_found();
    };
    let (devices, detailed) = if user.registered {
        let device = json!({
            "device_type": "authy", "os_type": "android", "registration_device_id": null,
            "registration_method": "sms", "device_id": user.device_id(),
            "last_sync_date": 0, "creation_date": user.created,
        });
        (json!(["android"]), json!([device]))
    } else {
        (json!([]), json!([]))
    };
    let status = json!({
        "authy_id": user.id,
        "confirmed": user.confirmed,
        "registered": user.registered,
        "country_code": user.country_code.parse::<u64>().unwrap_or(0),
        "phone_number": codes::mask_local(&user.cellphone),
        "email": user.email,
        "devices": devices,
        "has_hard_token": false,
        "account_disabled": false,
        "detailed_devices": detailed,
        "deleted_devices": [],
    });
    let body = json!({"status": status, "message": "User status.", "success": true});
    json_reply(StatusCode::OK, &body)
}

fn remove(state: &mut State, id: &str) -> Reply {
    match user_id(id) {
        Some(id) if state.remove_user(id) => {
            let body = json!({"message": "User removed from application", "success": true});
            json_reply(StatusCode::OK, &body)
        }
        _ => user_not_found(),
    }
}

fn app_details() -> Reply {
    let app = json!({
        "app_id": APP_SERIAL_ID,
        "name": APP_NAME,
        "plan": "pay_as_you_go",
        "sms_enabled": true,
        "onetouch_enabled": true,
        "phone_calls_enabled": true,
    });
    let body = json!({"app": app, "message": "Application information.", "success": true});
    json_reply(StatusCode::OK, &body)
}

fn create_approval(state: &mut State, id: &str, params: &Value, now: u64) -> Reply {
    let Some(id) = user_id(id).filter(|id| state.user(*id).is_some()) else {
        return user_not_found();
    };
    let new = match new_approval(params) {
        Ok(new) => new,
        Err(message) => return authy_error(StatusCode::BAD_REQUEST, &message, "60004"),
    };
    match state.create_approval(id, new, now) {
        Some(uuid) => {
            let body = json!({"approval_request": {"uuid": uuid}, "success": true});
            json_reply(StatusCode::OK, &body)
        }
        None => user_not_found(),
    }
}

fn new_approval(params: &Value) -> Result<NewApproval, String> {
    let message = text(params.get("message")).unwrap_or_default();
    if message.trim().is_empty() {
        return Err(invalid_param("message", "must be present"));
    }
    Ok(NewApproval {
        message,
        details: hash_param(params, "details")?,
        hidden_details: hash_param(params, "hidden_details")?,
        logos: logos_param(params)?,
        seconds_to_expire: expiry_param(params)?,
    })
}

fn invalid_param(name: &str, why: &str) -> String {
    format!("Invalid parameter: {name} - {why}")
}

/// An optional hash; `null` when absent, as in real callbacks.
fn hash_param(params: &Value, name: &str) -> Result<Value, String> {
    match params.get(name) {
        None | Some(Value::Null) => Ok(Value::Null),
        Some(Value::Object(map)) => Ok(Value::Object(map.clone())),
        Some(_) => Err(invalid_param(name, "must be a hash")),
    }
}

fn logos_param(params: &Value) -> Result<Value, String> {
    match params.get("logos") {
        None | Some(Value::Null) => Ok(Value::Null),
        Some(Value::Array(logos)) if logos.iter().all(Value::is_object) => {
            Ok(Value::Array(logos.clone()))
        }
        Some(_) => Err(invalid_param("logos", "must be a list of {res, url}")),
    }
}

/// Default a day; 0 means never. py sends `null` when unset.
fn expiry_param(params: &Value) -> Result<u64, String> {
    match text(params.get("seconds_to_expire")) {
        None => Ok(DEFAULT_EXPIRY),
        Some(s) if s.is_empty() => Ok(DEFAULT_EXPIRY),
        Some(s) => s
            .parse()
            .map_err(|_| invalid_param("seconds_to_expire", "must be a whole number")),
    }
}

fn approval_status(state: &State, uuid: &str, now: u64) -> Reply {
    match state.approval(uuid) {
        Some(approval) => {
            let body =
                json!({"approval_request": approval_status_json(approval, now), "success": true});
            json_reply(StatusCode::OK, &body)
        }
        None => {
            let message = format!("Approval request not found: {uuid}");
            let body =
                json!({"message": message, "success": false, "errors": {}, "error_code": "60049"});
            json_reply(StatusCode::NOT_FOUND, &body)
        }
    }
}

fn approval_status_json(approval: &Approval, now: u64) -> Value {
    let processed_at = approval.processed_at(now);
    json!({
        "_app_name": APP_NAME,
        "_app_serial_id": APP_SERIAL_ID,
        "_authy_id": approval.authy_id,
        "_id": approval.object_id,
        "_user_email": approval.user_email,
        "app_id": APP_ID,
        "created_at": codes::rfc3339(approval.created),
        "notified": false,
        "processed_at": processed_at.map(codes::rfc3339),
        "seconds_to_expire": approval.seconds_to_expire,
        "status": approval.status(now).as_str(),
        "updated_at": codes::rfc3339(processed_at.unwrap_or(approval.created)),
        "user_id": approval.user_object_id,
        "uuid": approval.uuid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cellphones_accept_separators_and_need_seven_digits() {
        assert_eq!(
            cellphone_digits("555-123.45 67").as_deref(),
            Some("5551234567")
        );
        assert_eq!(cellphone_digits("123456"), None);
        assert_eq!(cellphone_digits("555123x567"), None);
    }

    #[test]
    fn emails_need_an_at_and_a_dotted_domain() {
        assert!(email_looks_valid("a@example.com"));
        assert!(!email_looks_valid("example.com"));
        assert!(!email_looks_valid("a b@example.com"));
    }
}
