//! The control surface under `/_sandbox/`, for tests and people; no API
//! key. The sandbox only listens on loopback, and on top of that these
//! endpoints refuse non-loopback `Host` names (DNS rebinding) and form posts
//! from other origins, so a web page in the same browser cannot approve.
//!
//! - `GET  /_sandbox/`: the HTML page (approve/deny buttons, codes sent).
//! - `POST /_sandbox/approvals/{uuid}`: the page's form (`status=approved|denied`), 303 back.
//! - `GET  /_sandbox/api/state`: everything as JSON.
//! - `POST /_sandbox/api/approvals/{uuid}` `{"status":"approved"|"denied"}`.
//! - `POST /_sandbox/api/users/{id}/registered` `{"registered":bool}`.
//! - `POST /_sandbox/api/callbacks` `{"enabled":bool,"url":str|null,"method":"POST"|"GET"}`
//!   (every member optional).
//! - `GET  /_sandbox/api/verify/codes?to=%2B15551234567`: the last Verify
//!   code sent there, `{"to","code","status","sid","channel","attempts"}`.
//! - `POST /_sandbox/api/verify/fault` `{"mode":"none"|"error"|"hang"}`: the
//!   Verify endpoints answer normally, 500, or not at all; the page's form
//!   posts `mode=...` to `/_sandbox/verify/fault`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use http::StatusCode;
use http::uri::Authority;
use minijinja::{Environment, context};
use serde_json::{Value, json};

use super::authy::callback::{self, Delivery};
use super::state::{Approval, Decision, Status};
use super::verify::state::Fault;
use super::wire::{Incoming, Reply, html_reply, json_error, json_reply, see_other, text};
use super::{CallbackMethod, Shared, checked_callback_url, codes};

const PAGE: &str = include_str!("page.html");

pub fn page_environment() -> Environment<'static> {
    let mut env = Environment::new();
    // The `.html` name turns auto-escaping on; the template is part of the
    // binary and covered by tests.
    env.add_template("page.html", PAGE)
        .unwrap_or_else(|e| panic!("sandbox page template: {e}"));
    env.add_filter("time", codes::rfc3339);
    env
}

pub async fn handle(shared: &Shared, req: &Incoming) -> Reply {
    if !req.host.as_deref().is_none_or(host_is_loopback) {
        return json_error(
            StatusCode::FORBIDDEN,
            "the sandbox answers loopback host names only",
        );
    }
    match (req.method.as_str(), req.segments().as_slice()) {
        ("GET", ["_sandbox"] | ["_sandbox", ""]) => page(shared),
        ("GET", ["_sandbox", "api", "state"]) => {
            json_reply(StatusCode::OK, &shared.state().to_json(shared.now()))
        }
        ("POST", ["_sandbox", "approvals", uuid]) => form_decide(shared, req, uuid).await,
        ("POST", ["_sandbox", "api", "approvals", uuid]) => api_decide(shared, req, uuid).await,
        ("POST", ["_sandbox", "api", "users", id, "registered"]) => set_registered(shared, req, id),
        ("POST", ["_sandbox", "api", "callbacks"]) => set_callbacks(shared, req),
        ("GET", ["_sandbox", "api", "verify", "codes"]) => verify_code(shared, req),
        ("POST", ["_sandbox", "api", "verify", "fault"]) => {
            let body = req.json_body().unwrap_or(Value::Null);
            set_fault(shared, body.get("mode"))
        }
        ("POST", ["_sandbox", "verify", "fault"]) => form_fault(shared, req),
        _ => json_error(StatusCode::NOT_FOUND, "no such sandbox endpoint"),
    }
}

/// `localhost`, `127.0.0.1:8080`, `[::1]:80`, ...
fn host_is_loopback(host: &str) -> bool {
    let Ok(authority) = host.parse::<Authority>() else {
        return false;
    };
    let name = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Browsers send `Origin` with form posts; a foreign one is a cross-site
/// request (or a sandboxed frame's `null`).
fn origin_is_loopback(req: &Incoming) -> bool {
    let Some(origin) = req.header("origin") else {
        return true;
    };
    url::Url::parse(origin)
        .ok()
        .and_then(|url| url.host_str().map(host_is_loopback))
        .unwrap_or(false)
}

fn page(shared: &Shared) -> Reply {
    let now = shared.now();
    let state = shared.state().to_json(now);
    let rendered = shared
        .page
        .get_template("page.html")
        .and_then(|template| template.render(page_context(&state)));
    match rendered {
        Ok(html) => html_reply(StatusCode::OK, html),
        Err(e) => {
            tracing::error!(error = %e, "Authy sandbox page rendering failed");
            html_reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                "page rendering failed".into(),
            )
        }
    }
}

/// The state JSON split the way the page shows it, newest entries first.
fn page_context(state: &Value) -> minijinja::Value {
    let list = |key: &str| state[key].as_array().cloned().unwrap_or_default();
    let (pending, finished): (Vec<Value>, Vec<Value>) = list("approval_requests")
        .into_iter()
        .rev()
        .partition(|a| a["status"] == "pending");
    let mut sent: Vec<Value> = tagged(list("sms"), "SMS")
        .chain(tagged(list("calls"), "call"))
        .collect();
    sent.sort_by_key(|s| std::cmp::Reverse(s["at"].as_u64()));
    let newest_first = |key: &str| Value::Array(list(key).into_iter().rev().collect());
    let verify = &state["verify"];
    let verifications = verify["verifications"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let verifications = Value::Array(verifications.into_iter().rev().collect());
    context! {
        pending => template_value(&Value::Array(pending)),
        finished => template_value(&Value::Array(finished)),
        users => template_value(&state["users"]),
        sent => template_value(&Value::Array(sent)),
        install_links => template_value(&newest_first("install_links")),
        callbacks => template_value(&newest_first("callbacks")),
        callback => template_value(&state["callback"]),
        verifications => template_value(&verifications),
        verify_fault => template_value(&verify["fault"]),
    }
}

fn tagged(entries: Vec<Value>, channel: &'static str) -> impl Iterator<Item = Value> {
    entries.into_iter().map(move |mut entry| {
        entry["channel"] = json!(channel);
        entry
    })
}

/// minijinja is built without its serde feature, so JSON is converted by hand.
fn template_value(value: &Value) -> minijinja::Value {
    match value {
        Value::Null => minijinja::Value::from(()),
        Value::Bool(b) => minijinja::Value::from(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => minijinja::Value::from(u),
            (None, Some(i)) => minijinja::Value::from(i),
            _ => minijinja::Value::from(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => minijinja::Value::from(s.as_str()),
        Value::Array(items) => {
            minijinja::Value::from(items.iter().map(template_value).collect::<Vec<_>>())
        }
        Value::Object(map) => minijinja::Value::from(
            map.iter()
                .map(|(k, v)| (k.clone(), template_value(v)))
                .collect::<BTreeMap<_, _>>(),
        ),
    }
}

/// Decides, then (callbacks permitting) sends the callback and waits for
/// it, so a test sees the callback's outcome in the answer.
async fn decide(
    shared: &Shared,
    uuid: &str,
    status: Status,
) -> Result<(Approval, Option<Delivery>), Reply> {
    let decision = shared.state().decide(uuid, status, shared.now());
    match decision {
        Decision::Done(approval) => {
            let delivery = callback::notify(shared, &approval, status).await;
            Ok((*approval, delivery))
        }
        Decision::NotFound => Err(json_error(
            StatusCode::NOT_FOUND,
            "no such approval request",
        )),
        Decision::NotPending(current) => {
            let message = format!("the approval request is {}, not pending", current.as_str());
            Err(json_error(StatusCode::CONFLICT, &message))
        }
    }
}

fn chosen_status(value: Option<&Value>) -> Option<Status> {
    text(value).and_then(|s| Status::decision(&s))
}

fn bad_status() -> Reply {
    json_error(
        StatusCode::BAD_REQUEST,
        "status must be \"approved\" or \"denied\"",
    )
}

async fn api_decide(shared: &Shared, req: &Incoming, uuid: &str) -> Reply {
    let body = req.json_body().unwrap_or(Value::Null);
    let Some(status) = chosen_status(body.get("status")) else {
        return bad_status();
    };
    match decide(shared, uuid, status).await {
        Ok((approval, delivery)) => {
            let callback = delivery.as_ref().map(Delivery::to_json);
            let body =
                json!({"uuid": approval.uuid, "status": status.as_str(), "callback": callback});
            json_reply(StatusCode::OK, &body)
        }
        Err(reply) => reply,
    }
}

async fn form_decide(shared: &Shared, req: &Incoming, uuid: &str) -> Reply {
    if !origin_is_loopback(req) {
        return json_error(StatusCode::FORBIDDEN, "cross-site form post refused");
    }
    let form = req.params();
    let Some(status) = chosen_status(form.get("status")) else {
        return bad_status();
    };
    match decide(shared, uuid, status).await {
        Ok(_) => see_other("/_sandbox/"),
        Err(reply) => reply,
    }
}

fn set_registered(shared: &Shared, req: &Incoming, id: &str) -> Reply {
    let body = req.json_body().unwrap_or(Value::Null);
    let Some(registered) = body.get("registered").and_then(Value::as_bool) else {
        return json_error(StatusCode::BAD_REQUEST, "registered must be true or false");
    };
    let id = id.parse::<u64>().ok();
    match id.filter(|id| shared.state().set_registered(*id, registered)) {
        Some(id) => json_reply(
            StatusCode::OK,
            &json!({"authy_id": id, "registered": registered}),
        ),
        None => json_error(StatusCode::NOT_FOUND, "no such user"),
    }
}

/// Every member is optional; the request is checked whole before anything
/// changes.
fn set_callbacks(shared: &Shared, req: &Incoming) -> Reply {
    let body = req.json_body().unwrap_or(Value::Null);
    let change = match callback_change(&body) {
        Ok(change) => change,
        Err(message) => return json_error(StatusCode::BAD_REQUEST, &message),
    };
    let mut state = shared.state();
    if let Some(url) = change.url {
        state.callback.set_url(url);
    }
    if let Some(method) = change.method {
        state.callback.method = method;
    }
    if let Some(enabled) = change.enabled {
        state.callback.set_enabled(enabled);
    }
    json_reply(StatusCode::OK, &state.callback.to_json())
}

struct CallbackChange {
    enabled: Option<bool>,
    url: Option<Option<String>>,
    method: Option<CallbackMethod>,
}

fn callback_change(body: &Value) -> Result<CallbackChange, String> {
    let enabled = match body.get("enabled") {
        None => None,
        Some(value) => Some(value.as_bool().ok_or("enabled must be true or false")?),
    };
    let url = match body.get("url") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(url)) => Some(Some(
            checked_callback_url(url.clone()).map_err(|e| e.to_string())?,
        )),
        Some(_) => return Err("url must be a string or null".into()),
    };
    let method = match text(body.get("method")) {
        None => None,
        Some(method) => Some(
            method
                .parse::<CallbackMethod>()
                .map_err(|e| e.to_string())?,
        ),
    };
    Ok(CallbackChange {
        enabled,
        url,
        method,
    })
}

/// `?to=` with a raw `+` decodes to a space (form rules); a person typing
/// the URL by hand meant the plus.
fn verify_code(shared: &Shared, req: &Incoming) -> Reply {
    let to = url::form_urlencoded::parse(req.query.as_bytes())
        .find(|(name, _)| name == "to")
        .map(|(_, value)| match value.strip_prefix(' ') {
            Some(rest) => format!("+{rest}"),
            None => value.into_owned(),
        });
    let Some(to) = to.filter(|to| !to.is_empty()) else {
        return json_error(StatusCode::BAD_REQUEST, "give the recipient as ?to=");
    };
    let now = shared.now();
    let state = shared.state();
    match state.verify.last_for(&to) {
        Some(v) => {
            let body = json!({
                "to": v.to, "code": v.code, "status": v.status(now).as_str(),
                "sid": v.sid, "channel": v.channel, "attempts": v.attempts,
            });
            json_reply(StatusCode::OK, &body)
        }
        None => json_error(StatusCode::NOT_FOUND, "no Verify code was sent there"),
    }
}

fn set_fault(shared: &Shared, mode: Option<&Value>) -> Reply {
    let Some(fault) = text(mode).and_then(|m| Fault::parse(&m)) else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "mode must be \"none\", \"error\" or \"hang\"",
        );
    };
    shared.state().verify.fault = fault;
    json_reply(StatusCode::OK, &json!({"mode": fault.as_str()}))
}

fn form_fault(shared: &Shared, req: &Incoming) -> Reply {
    if !origin_is_loopback(req) {
        return json_error(StatusCode::FORBIDDEN, "cross-site form post refused");
    }
    let form = req.params();
    let reply = set_fault(shared, form.get("mode"));
    if reply.status().is_success() {
        see_other("/_sandbox/")
    } else {
        reply
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_only() {
        assert!(host_is_loopback("localhost:8080"));
        assert!(host_is_loopback("127.0.0.1"));
        assert!(host_is_loopback("[::1]:3000"));
        assert!(!host_is_loopback("evil.example:8080"));
        assert!(!host_is_loopback("192.168.1.2"));
    }
}
