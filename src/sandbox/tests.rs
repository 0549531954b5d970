//! The sandbox over real HTTP on 127.0.0.1, as the gateway sees it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Response};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::*;
use crate::clock::testing::ManualClock;
use crate::factor::authy::params;
use crate::factor::authy::signature::{canonical_params, canonical_query, sign};

const KEY: &str = "sandbox-test-key";
const PHONE: &str = "555-123-4567";

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn config() -> SandboxConfig {
    SandboxConfig::new(KEY)
}

/// A reqwest client aimed at one sandbox.
struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn new(sandbox: &Sandbox) -> Client {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Client {
            http,
            base: sandbox.url(),
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let request = self.http.get(format!("{}{path}", self.base));
        self.send(request.header("X-Authy-API-Key", KEY)).await
    }

    async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let request = self.http.post(format!("{}{path}", self.base)).form(form);
        self.send(request.header("X-Authy-API-Key", KEY)).await
    }

    async fn post_json(&self, path: &str, body: Value) -> (u16, Value) {
        let request = self.http.post(format!("{}{path}", self.base)).json(&body);
        self.send(request.header("X-Authy-API-Key", KEY)).await
    }

    /// The control API needs no key.
    async fn control(&self, path: &str, body: Value) -> (u16, Value) {
        let request = self.http.post(format!("{}{path}", self.base)).json(&body);
        self.send(request).await
    }

    async fn state(&self) -> Value {
        let url = format!("{}/_sandbox/api/state", self.base);
        self.send(self.http.get(url)).await.1
    }

    async fn register(&self, phone: &str) -> u64 {
        let form = [
            ("user[email]", "ada@example.com"),
            ("user[cellphone]", phone),
            ("user[country_code]", "1"),
        ];
        let (status, body) = self.post_form("/protected/json/users/new", &form).await;
        assert_eq!(status, 200, "{body}");
        body["user"]["id"].as_u64().unwrap()
    }

    async fn approval(&self, id: u64, body: Value) -> String {
        let path = format!("/onetouch/json/users/{id}/approval_requests");
        let (status, body) = self.post_json(&path, body).await;
        assert_eq!(status, 200, "{body}");
        body["approval_request"]["uuid"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn decide(&self, uuid: &str, status: &str) -> (u16, Value) {
        let path = format!("/_sandbox/api/approvals/{uuid}");
        self.control(&path, json!({ "status": status })).await
    }
}

async fn started(config: SandboxConfig) -> (Sandbox, Client) {
    let sandbox = Sandbox::start(loopback(), config).await.unwrap();
    let client = Client::new(&sandbox);
    (sandbox, client)
}

/// What the test's callback receiver got.
struct Received {
    method: String,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Bytes,
}

/// A tiny hyper server that answers `status` to everything and hands each
/// request to the test.
async fn receiver(status: u16) -> (String, mpsc::UnboundedReceiver<Received>) {
    let listener = TcpListener::bind(loopback()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let tx = tx.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let body = body.collect().await.unwrap().to_bytes();
                    let _ = tx.send(Received {
                        method: parts.method.to_string(),
                        path: parts.uri.path().to_owned(),
                        query: parts.uri.query().unwrap_or("").to_owned(),
                        headers: parts.headers,
                        body,
                    });
                    let mut response = Response::new(Full::new(Bytes::new()));
                    *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
                    Ok::<_, Infallible>(response)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new();
            tokio::spawn(async move {
                let _ = conn.serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    (format!("http://{addr}/authy/callback"), rx)
}

fn header<'a>(received: &'a Received, name: &str) -> &'a str {
    received.headers.get(name).unwrap().to_str().unwrap()
}

#[tokio::test]
async fn a_wrong_or_missing_key_is_401_60001() {
    let (_sandbox, client) = started(config()).await;
    let url = format!("{}/protected/json/app/details", client.base);
    let expected = json!({
        "message": "Invalid API key", "success": false,
        "errors": {"message": "Invalid API key"}, "error_code": "60001",
    });
    assert_eq!(
        client.send(client.http.get(&url)).await,
        (401, expected.clone())
    );
    let wrong = client.http.get(&url).header("X-Authy-API-Key", "nope");
    assert_eq!(client.send(wrong).await, (401, expected.clone()));
    // The legacy query parameter works, but the header wins over it.
    let legacy = client.http.get(format!("{url}?api_key={KEY}"));
    assert_eq!(client.send(legacy).await.0, 200);
    let both = client
        .http
        .get(format!("{url}?api_key={KEY}"))
        .header("X-Authy-API-Key", "nope");
    assert_eq!(client.send(both).await, (401, expected));
}

#[tokio::test]
async fn registration_is_idempotent_on_the_phone() {
    let (_sandbox, client) = started(config()).await;
    let first = client.register("5551234567").await;
    assert_eq!(first, 1000);
    let json_form = json!({
        "user": {"email": "other@example.com", "cellphone": PHONE, "country_code": "1"},
        "send_install_link_via_sms": false,
    });
    let (status, body) = client
        .post_json("/protected/json/users/new", json_form)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"message": "User created successfully.", "user": {"id": 1000}, "success": true})
    );
    assert_eq!(client.register("5559999999").await, 1001);
    let state = client.state().await;
    assert_eq!(state["users"][0]["email"], "other@example.com");
    assert_eq!(state["install_links"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn an_invalid_cellphone_is_400_60027() {
    let (_sandbox, client) = started(config()).await;
    let form = [
        ("user[email]", "ada@example.com"),
        ("user[cellphone]", "12345"),
        ("user[country_code]", "1"),
    ];
    let (status, body) = client.post_form("/protected/json/users/new", &form).await;
    assert_eq!(status, 400);
    let expected = json!({
        "message": "User was not valid", "success": false,
        "errors": {"cellphone": "is invalid", "message": "User was not valid"},
        "cellphone": "is invalid", "error_code": "60027",
    });
    assert_eq!(body, expected);
}

#[tokio::test]
async fn verify_without_force_lets_an_unconfirmed_user_in_with_any_code() {
    let (_sandbox, client) = started(config()).await;
    let id = client.register(PHONE).await;
    let (status, body) = client
        .get(&format!("/protected/json/verify/1234567/{id}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["token"], "is valid");
    assert_eq!(body["success"], "true");
    let (status, body) = client
        .get(&format!("/protected/json/verify/1234567/{id}?force=true"))
        .await;
    assert_eq!(status, 401);
    let expected = json!({
        "message": "Token is invalid", "token": "is invalid", "success": false,
        "errors": {"message": "Token is invalid"}, "error_code": "60020",
    });
    assert_eq!(body, expected);
}

#[tokio::test]
async fn forced_verify_takes_only_the_sms_code_and_only_once() {
    let (_sandbox, client) = started(config()).await;
    let id = client.register(PHONE).await;
    let (status, body) = client
        .get(&format!("/protected/json/sms/{id}?force=true"))
        .await;
    assert_eq!(status, 200);
    let expected =
        json!({"success": true, "message": "SMS token was sent", "cellphone": "+1-XXX-XXX-XX67"});
    assert_eq!(body, expected);
    let state = client.state().await;
    let code = state["users"][0]["last_sms_code"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(state["sms"][0]["code"], code.as_str());
    let path = format!("/protected/json/verify/{code}/{id}?force=true");
    let (status, body) = client.get(&path).await;
    assert_eq!(
        (status, body["message"].clone()),
        (200, json!("Token is valid."))
    );
    assert_eq!(body["device"]["os_type"], "sms");
    let (status, body) = client.get(&path).await;
    assert_eq!(status, 401);
    assert_eq!(body["error_code"], "60019");
    assert_eq!(body["message"], "Token is invalid. Token was used recently");
    // Confirmed now: even without force a wrong code fails.
    let (status, _) = client
        .get(&format!("/protected/json/verify/0000000/{id}"))
        .await;
    assert_eq!(status, 401);
    assert_eq!(client.state().await["users"][0]["confirmed"], true);
}

#[tokio::test]
async fn verify_rejects_non_digits_and_unknown_users() {
    let (_sandbox, client) = started(config()).await;
    let id = client.register(PHONE).await;
    let (status, body) = client
        .get(&format!("/protected/json/verify/12a4567/{id}?force=true"))
        .await;
    assert_eq!((status, body["error_code"].clone()), (401, json!("60020")));
    let (status, body) = client
        .get("/protected/json/verify/1234567/999?force=true")
        .await;
    let expected = json!({
        "message": "User doesn't exist", "success": false,
        "errors": {"message": "User doesn't exist"}, "error_code": "60016",
    });
    assert_eq!((status, body), (404, expected));
}

#[tokio::test]
async fn app_users_get_ignored_sms_and_calls_without_force_and_their_app_code_verifies() {
    let (_sandbox, client) = started(config()).await;
    let id = client.register(PHONE).await;
    let (status, _) = client
        .control(
            &format!("/_sandbox/api/users/{id}/registered"),
            json!({"registered": true}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = client.get(&format!("/protected/json/sms/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        (body["ignored"].clone(), body["device"].clone()),
        (json!(true), json!("android"))
    );
    let (_, body) = client.get(&format!("/protected/json/call/{id}")).await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("User is using  App Tokens")
    );
    let (_, body) = client
        .get(&format!("/protected/json/call/{id}?force=true"))
        .await;
    assert_eq!(body["message"], "Call started...");
    assert_eq!(client.state().await["calls"].as_array().unwrap().len(), 1);
    let app_code = client.state().await["users"][0]["app_code"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = client
        .get(&format!(
            "/protected/json/verify/{app_code}/{id}?force=true"
        ))
        .await;
    assert_eq!(
        (status, body["device"]["os_type"].clone()),
        (200, json!("android"))
    );
    let (status, body) = client.get("/protected/json/sms/4242?force=true").await;
    assert_eq!((status, body["error_code"].clone()), (404, json!("60026")));
    assert_eq!(body["message"], "User not found.");
}

#[tokio::test]
async fn status_details_and_the_three_delete_paths() {
    let (_sandbox, client) = started(config()).await;
    let id = client.register("5551231118").await;
    let (status, body) = client
        .get(&format!("/protected/json/users/{id}/status"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["message"], "User status.");
    assert_eq!(body["status"]["phone_number"], "XXX-XXX-1118");
    assert_eq!(body["status"]["country_code"], 1);
    assert_eq!(body["status"]["registered"], false);
    let (_, body) = client.get("/protected/json/app/details").await;
    assert_eq!(body["message"], "Application information.");
    assert!(body["app"]["app_id"].is_u64());
    for path in [
        "/protected/json/users/{}/remove",
        "/protected/json/users/delete/{}",
        "/protected/json/users/{}/delete",
    ] {
        let id = client.register(PHONE).await;
        let path = path.replace("{}", &id.to_string());
        let (status, body) = client.post_form(&path, &[]).await;
        assert_eq!(
            (status, body["message"].clone()),
            (200, json!("User removed from application"))
        );
        let (status, body) = client.post_form(&path, &[]).await;
        assert_eq!((status, body["error_code"].clone()), (404, json!("60026")));
    }
}

#[tokio::test]
async fn an_approval_request_is_created_polled_and_approved() {
    let (_sandbox, client) = started(config()).await;
    let id = client.register(PHONE).await;
    let form = [
        ("message", "Log in to example.org?"),
        ("details[Account]", "ada"),
        ("hidden_details[ip]", "10.0.0.1"),
        ("seconds_to_expire", "120"),
    ];
    let path = format!("/onetouch/json/users/{id}/approval_requests");
    let (status, body) = client.post_form(&path, &form).await;
    assert_eq!(status, 200);
    let uuid = body["approval_request"]["uuid"]
        .as_str()
        .unwrap()
        .to_owned();
    let status_path = format!("/onetouch/json/approval_requests/{uuid}");
    let (_, body) = client.get(&status_path).await;
    assert_eq!(body["approval_request"]["status"], "pending");
    assert_eq!(body["approval_request"]["_authy_id"], id);
    assert_eq!(body["approval_request"]["seconds_to_expire"], 120);
    assert!(body["approval_request"]["processed_at"].is_null());
    let state = client.state().await;
    assert_eq!(
        state["approval_requests"][0]["details"],
        json!({"Account": "ada"})
    );
    let (status, body) = client.decide(&uuid, "approved").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"uuid": uuid, "status": "approved", "callback": null})
    );
    let (_, body) = client.get(&status_path).await;
    assert_eq!(body["approval_request"]["status"], "approved");
    assert!(body["approval_request"]["processed_at"].is_string());
    assert_eq!(client.decide(&uuid, "denied").await.0, 409);
}

#[tokio::test]
async fn approval_request_errors() {
    let (_sandbox, client) = started(config()).await;
    let id = client.register(PHONE).await;
    let path = format!("/onetouch/json/users/{id}/approval_requests");
    let (status, body) = client
        .post_json(&path, json!({"details": {"a": "b"}}))
        .await;
    assert_eq!((status, body["error_code"].clone()), (400, json!("60004")));
    let (status, body) = client
        .post_json(
            "/onetouch/json/users/4242/approval_requests",
            json!({"message": "hi"}),
        )
        .await;
    assert_eq!((status, body["error_code"].clone()), (404, json!("60026")));
    let missing = "9d5b3c55-0000-4000-8000-000000000000";
    let (status, body) = client
        .get(&format!("/onetouch/json/approval_requests/{missing}"))
        .await;
    let expected = json!({
        "message": format!("Approval request not found: {missing}"),
        "success": false, "errors": {}, "error_code": "60049",
    });
    assert_eq!((status, body), (404, expected));
    assert_eq!(client.decide(missing, "approved").await.0, 404);
}

#[tokio::test]
async fn approval_requests_expire_by_the_clock() {
    let clock = Arc::new(ManualClock::at(1_700_000_000));
    let sandbox = Sandbox::start_with_clock(loopback(), config(), clock.clone())
        .await
        .unwrap();
    let client = Client::new(&sandbox);
    let id = client.register(PHONE).await;
    let uuid = client
        .approval(id, json!({"message": "hi", "seconds_to_expire": 60}))
        .await;
    clock.advance(61);
    let (_, body) = client
        .get(&format!("/onetouch/json/approval_requests/{uuid}"))
        .await;
    assert_eq!(body["approval_request"]["status"], "expired");
    let (status, body) = client.decide(&uuid, "approved").await;
    assert_eq!(status, 409);
    assert!(body["error"].as_str().unwrap().contains("expired"));
}

#[tokio::test]
async fn a_post_callback_is_signed_over_its_json_body() {
    let (url, mut received) = receiver(200).await;
    let config = SandboxConfig {
        callback_url: Some(url.clone()),
        ..config()
    };
    let (_sandbox, client) = started(config).await;
    let id = client.register(PHONE).await;
    let request = json!({
        "message": "Log in?",
        "details": {"Account Number": "981266321", "location": "California, USA"},
        "hidden_details": {"ip_address": "10.10.3.203"},
        "logos": [
            {"res": "default", "url": "https://example.com/a.png"},
            {"res": "low", "url": "https://example.com/b.png"},
        ],
    });
    let uuid = client.approval(id, request).await;
    let (status, body) = client.decide(&uuid, "approved").await;
    assert_eq!(
        (status, body["callback"]["http_status"].clone()),
        (200, json!(200))
    );
    let got = received.recv().await.unwrap();
    assert_eq!(
        (got.method.as_str(), got.path.as_str()),
        ("POST", "/authy/callback")
    );
    assert!(header(&got, "content-type").starts_with("application/json"));
    let data: Value = serde_json::from_slice(&got.body).unwrap();
    let nonce = header(&got, "x-authy-signature-nonce");
    let expected = sign(KEY, nonce, "POST", &url, &canonical_params(&data));
    assert_eq!(header(&got, "x-authy-signature"), expected);
    assert_eq!(
        (data["uuid"].as_str(), data["status"].as_str()),
        (Some(uuid.as_str()), Some("approved"))
    );
    assert_eq!(data["authy_id"], id);
    assert_eq!(data["callback_action"], "approval_request_status");
    let transaction = &data["approval_request"]["transaction"];
    assert_eq!(transaction["hidden_details"]["ip_address"], "10.10.3.203");
    assert_eq!(data["approval_request"]["logos"][1]["res"], "low");
    let callbacks = client.state().await["callbacks"].clone();
    assert_eq!(callbacks[0]["http_status"], 200);
}

#[tokio::test]
async fn a_get_callback_is_signed_over_its_query() {
    let (url, mut received) = receiver(204).await;
    let config = SandboxConfig {
        callback_url: Some(url.clone()),
        callback_method: CallbackMethod::Get,
        ..config()
    };
    let (_sandbox, client) = started(config).await;
    let id = client.register(PHONE).await;
    let request = json!({"message": "Log in?", "details": {"who": "ada & bob"}});
    let uuid = client.approval(id, request).await;
    let (_, body) = client.decide(&uuid, "denied").await;
    assert_eq!(body["callback"]["http_status"], 204);
    let got = received.recv().await.unwrap();
    assert_eq!(got.method, "GET");
    let nonce = header(&got, "x-authy-signature-nonce");
    let expected = sign(KEY, nonce, "GET", &url, &canonical_query(&got.query));
    assert_eq!(header(&got, "x-authy-signature"), expected);
    let pairs = url::form_urlencoded::parse(got.query.as_bytes()).into_owned();
    let data = params::nest(pairs);
    assert_eq!(
        (data["uuid"].as_str(), data["status"].as_str()),
        (Some(uuid.as_str()), Some("denied"))
    );
    assert_eq!(
        data["approval_request"]["transaction"]["details"]["who"],
        "ada & bob"
    );
}

#[tokio::test]
async fn with_callbacks_off_nothing_is_sent_but_the_status_changes() {
    let (url, mut received) = receiver(200).await;
    let config = SandboxConfig {
        callback_url: Some(url),
        ..config()
    };
    let (_sandbox, client) = started(config).await;
    let (status, body) = client
        .control("/_sandbox/api/callbacks", json!({"enabled": false}))
        .await;
    assert_eq!((status, body["enabled"].clone()), (200, json!(false)));
    let id = client.register(PHONE).await;
    let uuid = client.approval(id, json!({"message": "hi"})).await;
    let (_, body) = client.decide(&uuid, "approved").await;
    assert!(body["callback"].is_null());
    let (_, body) = client
        .get(&format!("/onetouch/json/approval_requests/{uuid}"))
        .await;
    assert_eq!(body["approval_request"]["status"], "approved");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(received.try_recv().is_err());
    assert!(
        client.state().await["callbacks"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn three_failed_callbacks_disable_the_callback_url() {
    let (url, mut received) = receiver(500).await;
    let config = SandboxConfig {
        callback_url: Some(url),
        ..config()
    };
    let (_sandbox, client) = started(config).await;
    let id = client.register(PHONE).await;
    for _ in 0..3 {
        let uuid = client.approval(id, json!({"message": "hi"})).await;
        let (_, body) = client.decide(&uuid, "approved").await;
        assert_eq!(body["callback"]["http_status"], 500);
    }
    let uuid = client.approval(id, json!({"message": "hi"})).await;
    let (_, body) = client.decide(&uuid, "approved").await;
    assert!(
        body["callback"]["error"]
            .as_str()
            .unwrap()
            .contains("disabled")
    );
    for _ in 0..3 {
        received.recv().await.unwrap();
    }
    assert!(received.try_recv().is_err());
    assert_eq!(
        client.state().await["callback"]["disabled_after_failures"],
        true
    );
}

#[tokio::test]
async fn non_loopback_addresses_are_refused() {
    for addr in ["0.0.0.0:0", "192.0.2.1:0", "[::]:0"] {
        let addr: SocketAddr = addr.parse().unwrap();
        let refused = Sandbox::start(addr, config()).await;
        assert!(
            matches!(refused, Err(SandboxError::NotLoopback(_))),
            "{addr}"
        );
        let refused = run_until(addr, config(), async {}).await;
        assert!(
            matches!(refused, Err(SandboxError::NotLoopback(_))),
            "{addr}"
        );
    }
}

#[tokio::test]
async fn the_page_lists_pending_pushes_escaped_and_its_form_approves() {
    let (_sandbox, client) = started(config()).await;
    let id = client.register(PHONE).await;
    let request =
        json!({"message": "<script>alert(1)</script>", "details": {"Note": "<b>bold</b>"}});
    let uuid = client.approval(id, request).await;
    let page_url = format!("{}/_sandbox/", client.base);
    let response = client.http.get(&page_url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let html = response.text().await.unwrap();
    assert!(html.contains("&lt;script&gt;alert(1)"));
    assert!(!html.contains("<script>alert"));
    assert!(!html.contains("<b>bold</b>"));
    assert!(html.contains(&format!("action=\"/_sandbox/approvals/{uuid}\"")));
    let form_url = format!("{}/_sandbox/approvals/{uuid}", client.base);
    let response = client
        .http
        .post(&form_url)
        .form(&[("status", "denied")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/_sandbox/");
    assert_eq!(
        client.state().await["approval_requests"][0]["status"],
        "denied"
    );
}

#[tokio::test]
async fn the_control_surface_refuses_foreign_hosts_and_origins() {
    let (_sandbox, client) = started(config()).await;
    let id = client.register(PHONE).await;
    let uuid = client.approval(id, json!({"message": "hi"})).await;
    let page = client.http.get(format!("{}/_sandbox/", client.base));
    let rebound = page.header("Host", "evil.example");
    assert_eq!(rebound.send().await.unwrap().status(), 403);
    let form_url = format!("{}/_sandbox/approvals/{uuid}", client.base);
    let cross = client
        .http
        .post(&form_url)
        .header("Origin", "https://evil.example");
    let response = cross.form(&[("status", "approved")]).send().await.unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(
        client.state().await["approval_requests"][0]["status"],
        "pending"
    );
}

#[tokio::test]
async fn shutdown_stops_the_server() {
    let (sandbox, client) = started(config()).await;
    let url = format!("{}/protected/json/app/details", client.base);
    sandbox.shutdown();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let fresh = reqwest::Client::new();
    assert!(fresh.get(url).send().await.is_err());
}

// ---- Twilio Verify v2 ----

const TO: &str = "+15551234567";

fn service_path(resource: &str) -> String {
    format!("/v2/Services/{DEFAULT_VERIFY_SERVICE_SID}/{resource}")
}

impl Client {
    /// A Verify call with the default sandbox credentials.
    async fn twilio(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let request =
            request.basic_auth(DEFAULT_VERIFY_ACCOUNT_SID, Some(DEFAULT_VERIFY_AUTH_TOKEN));
        self.send(request).await
    }

    async fn verify_start(&self, to: &str) -> (u16, Value) {
        let url = format!("{}{}", self.base, service_path("Verifications"));
        let form = [("To", to), ("Channel", "sms")];
        self.twilio(self.http.post(url).form(&form)).await
    }

    async fn verify_check(&self, to: &str, code: &str) -> (u16, Value) {
        let url = format!("{}{}", self.base, service_path("VerificationCheck"));
        let form = [("To", to), ("Code", code)];
        self.twilio(self.http.post(url).form(&form)).await
    }

    async fn verify_fetch(&self, sid: &str) -> (u16, Value) {
        let url = format!(
            "{}{}",
            self.base,
            service_path(&format!("Verifications/{sid}"))
        );
        self.twilio(self.http.get(url)).await
    }

    /// The control API's view of the last code sent to `to`.
    async fn verify_sent(&self, to: &str) -> (u16, Value) {
        let url = format!("{}/_sandbox/api/verify/codes", self.base);
        self.send(self.http.get(url).query(&[("to", to)])).await
    }

    async fn verify_code(&self, to: &str) -> String {
        let (status, body) = self.verify_sent(to).await;
        assert_eq!(status, 200, "{body}");
        body["code"].as_str().unwrap().to_owned()
    }
}

fn keys(body: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

fn is_sid(sid: &Value, prefix: &str) -> bool {
    sid.as_str().is_some_and(|s| {
        s.len() == 34 && s.starts_with(prefix) && s[2..].bytes().all(|b| b.is_ascii_hexdigit())
    })
}

fn twilio_envelope(code: u64, message: &str, status: u16) -> Value {
    json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status,
    })
}

fn wrong_code(code: &str) -> &'static str {
    if code == "000000" { "111111" } else { "000000" }
}

#[tokio::test]
async fn verify_start_fetch_and_check_answer_in_twilio_shapes() {
    let (_sandbox, client) = started(config()).await;
    let (status, body) = client.verify_start(TO).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        keys(&body),
        [
            "account_sid",
            "amount",
            "channel",
            "date_created",
            "date_updated",
            "lookup",
            "payee",
            "send_code_attempts",
            "service_sid",
            "sid",
            "sna",
            "status",
            "to",
            "url",
            "valid",
        ]
    );
    assert!(is_sid(&body["sid"], "VE"), "{body}");
    let sid = body["sid"].as_str().unwrap().to_owned();
    assert_eq!(body["service_sid"], DEFAULT_VERIFY_SERVICE_SID);
    assert_eq!(body["account_sid"], DEFAULT_VERIFY_ACCOUNT_SID);
    assert_eq!(
        (
            &body["to"],
            &body["channel"],
            &body["status"],
            &body["valid"]
        ),
        (&json!(TO), &json!("sms"), &json!("pending"), &json!(false))
    );
    assert_eq!((&body["lookup"], &body["sna"]), (&json!({}), &Value::Null));
    let created = body["date_created"].as_str().unwrap();
    assert!(humantime::parse_rfc3339(created).is_ok(), "{created}");
    let attempt = &body["send_code_attempts"][0];
    assert_eq!(attempt["channel"], "SMS");
    assert!(is_sid(&attempt["attempt_sid"], "VL"), "{attempt}");
    assert_eq!(attempt["time"], created);
    assert_eq!(
        body["url"],
        format!(
            "{}{}",
            client.base,
            service_path(&format!("Verifications/{sid}"))
        )
    );

    let (status, fetched) = client.verify_fetch(&sid).await;
    assert_eq!(
        (status, &fetched["sid"], &fetched["status"]),
        (200, &json!(sid), &json!("pending"))
    );

    let code = client.verify_code(TO).await;
    assert_eq!(code.len(), 6);
    assert!(code.bytes().all(|b| b.is_ascii_digit()));
    let (status, body) = client.verify_check(TO, wrong_code(&code)).await;
    assert_eq!(status, 200);
    assert_eq!(
        keys(&body),
        [
            "account_sid",
            "amount",
            "channel",
            "date_created",
            "date_updated",
            "payee",
            "service_sid",
            "sid",
            "sna_attempts_error_codes",
            "status",
            "to",
            "valid",
        ]
    );
    assert_eq!(
        (&body["status"], &body["valid"]),
        (&json!("pending"), &json!(false))
    );
    let (status, body) = client.verify_check(TO, &code).await;
    assert_eq!(status, 200);
    assert_eq!(
        (&body["sid"], &body["status"], &body["valid"]),
        (&json!(sid), &json!("approved"), &json!(true))
    );
    assert_eq!(body["sna_attempts_error_codes"], json!([]));

    // Approved means deleted: every later call is Twilio's 404.
    let check_path = service_path("VerificationCheck");
    let resource = check_path.strip_prefix("/v2").unwrap();
    let gone = twilio_envelope(
        20404,
        &format!("The requested resource {resource} was not found"),
        404,
    );
    assert_eq!(client.verify_check(TO, &code).await, (404, gone));
    assert_eq!(client.verify_fetch(&sid).await.0, 404);
    let (_, sent) = client.verify_sent(TO).await;
    assert_eq!(
        sent,
        json!({"to": TO, "code": code, "status": "approved", "sid": sid, "channel": "sms", "attempts": 1})
    );
}

#[tokio::test]
async fn verify_restarts_keep_the_sid_and_the_sixth_start_is_429() {
    // A fixed clock: Retry-After counts from the first send.
    let clock = Arc::new(ManualClock::at(1_700_000_000));
    let sandbox = Sandbox::start_with_clock(loopback(), config(), clock.clone())
        .await
        .unwrap();
    let client = Client::new(&sandbox);
    let (_, first) = client.verify_start(TO).await;
    let mut last = first.clone();
    for _ in 0..4 {
        let (status, body) = client.verify_start(TO).await;
        assert_eq!(status, 201);
        last = body;
    }
    assert_eq!(last["sid"], first["sid"]);
    assert_eq!(last["send_code_attempts"].as_array().unwrap().len(), 5);
    let state = client.state().await;
    let verifications = state["verify"]["verifications"].as_array().unwrap();
    assert_eq!(verifications.len(), 1);
    assert_eq!(verifications[0]["sends"], 5);
    assert_eq!(
        verifications[0]["code"],
        client.verify_code(TO).await.as_str()
    );

    let url = format!("{}{}", client.base, service_path("Verifications"));
    let request = client
        .http
        .post(url)
        .basic_auth(DEFAULT_VERIFY_ACCOUNT_SID, Some(DEFAULT_VERIFY_AUTH_TOKEN))
        .form(&[("To", TO), ("Channel", "call")]);
    clock.advance(100);
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "500");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        twilio_envelope(60203, "Max send attempts reached", 429)
    );
    // Another recipient has its own budget.
    assert_eq!(client.verify_start("+15557654321").await.0, 201);
}

#[tokio::test]
async fn verify_five_wrong_checks_end_it_and_ten_minutes_expire_it() {
    let clock = Arc::new(ManualClock::at(1_700_000_000));
    let sandbox = Sandbox::start_with_clock(loopback(), config(), clock.clone())
        .await
        .unwrap();
    let client = Client::new(&sandbox);
    client.verify_start(TO).await;
    let code = client.verify_code(TO).await;
    for _ in 0..4 {
        let (_, body) = client.verify_check(TO, wrong_code(&code)).await;
        assert_eq!(body["status"], "pending");
    }
    let (status, body) = client.verify_check(TO, wrong_code(&code)).await;
    assert_eq!(
        (status, &body["status"], &body["valid"]),
        (200, &json!("max_attempts_reached"), &json!(false))
    );
    assert_eq!(client.verify_check(TO, &code).await.0, 404);
    let (_, sent) = client.verify_sent(TO).await;
    assert_eq!(
        (&sent["status"], &sent["attempts"]),
        (&json!("max_attempts_reached"), &json!(5))
    );

    let other = "+15557654321";
    let (_, started) = client.verify_start(other).await;
    let sid = started["sid"].as_str().unwrap().to_owned();
    let code = client.verify_code(other).await;
    clock.advance(599);
    assert_eq!(client.verify_fetch(&sid).await.0, 200);
    clock.advance(1);
    assert_eq!(client.verify_fetch(&sid).await.0, 404);
    assert_eq!(client.verify_check(other, &code).await.0, 404);
    assert_eq!(client.verify_sent(other).await.1["status"], "expired");
    // After expiry a start is a new verification.
    let (_, again) = client.verify_start(other).await;
    assert_ne!(again["sid"], json!(sid));
}

#[tokio::test]
async fn verify_checks_credentials_service_and_params() {
    let (_sandbox, client) = started(config()).await;
    let url = format!("{}{}", client.base, service_path("Verifications"));
    let form = [("To", TO), ("Channel", "sms")];
    let response = client.http.post(&url).form(&form).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    let denied = twilio_envelope(20003, "Authenticate", 401);
    assert_eq!(response.json::<Value>().await.unwrap(), denied);
    let wrong_token = client
        .http
        .post(&url)
        .basic_auth(DEFAULT_VERIFY_ACCOUNT_SID, Some("wrong"))
        .form(&form);
    assert_eq!(client.send(wrong_token).await, (401, denied.clone()));
    // The Authy key is no Verify credential.
    let authy_key = client
        .http
        .post(&url)
        .header("X-Authy-API-Key", KEY)
        .form(&form);
    assert_eq!(client.send(authy_key).await.0, 401);

    let other_service = format!(
        "{}/v2/Services/VA{}/Verifications",
        client.base,
        "f".repeat(32)
    );
    let (status, body) = client
        .twilio(client.http.post(other_service).form(&form))
        .await;
    assert_eq!((status, &body["code"]), (404, &json!(20404)));

    for bad in [
        vec![("Channel", "sms")],
        vec![("To", TO)],
        vec![("To", TO), ("Channel", "whatsapp")],
        vec![("To", "5551234567"), ("Channel", "sms")],
        vec![("To", TO), ("Channel", "email")],
    ] {
        let (status, body) = client.twilio(client.http.post(&url).form(&bad)).await;
        assert_eq!((status, &body["code"]), (400, &json!(60200)), "{bad:?}");
    }
    let (_, started) = client.verify_start(TO).await;
    for code in ["12a456", "123", ""] {
        let (status, body) = client.verify_check(TO, code).await;
        assert_eq!((status, &body["code"]), (400, &json!(60200)), "{code:?}");
    }
    let check_url = format!("{}{}", client.base, service_path("VerificationCheck"));
    let (status, _) = client
        .twilio(client.http.post(&check_url).form(&[("Code", "123456")]))
        .await;
    assert_eq!(status, 400);
    let code = client.verify_code(TO).await;
    let by_sid = [
        ("VerificationSid", started["sid"].as_str().unwrap()),
        ("Code", code.as_str()),
    ];
    let (status, body) = client
        .twilio(client.http.post(&check_url).form(&by_sid))
        .await;
    assert_eq!((status, &body["status"]), (200, &json!("approved")));
    let (status, _) = client
        .twilio(client.http.get(format!("{}/v2/Services", client.base)))
        .await;
    assert_eq!(status, 404);
    // Malformed codes were refused before they could count as attempts.
    assert_eq!(client.verify_sent(TO).await.1["attempts"], 0);
}

#[tokio::test]
async fn verify_fault_knob_and_request_counters() {
    let (_sandbox, client) = started(config()).await;
    let (status, body) = client
        .control("/_sandbox/api/verify/fault", json!({"mode": "error"}))
        .await;
    assert_eq!((status, body), (200, json!({"mode": "error"})));
    assert_eq!(
        client.verify_start(TO).await,
        (500, twilio_envelope(20500, "Internal Server Error", 500))
    );
    client
        .control("/_sandbox/api/verify/fault", json!({"mode": "hang"}))
        .await;
    let url = format!("{}{}", client.base, service_path("VerificationCheck"));
    let hanging = client
        .http
        .post(url)
        .timeout(Duration::from_millis(300))
        .form(&[("To", TO), ("Code", "123456")])
        .send()
        .await;
    assert!(hanging.unwrap_err().is_timeout());
    let (status, _) = client
        .control("/_sandbox/api/verify/fault", json!({"mode": "sometimes"}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(client.state().await["verify"]["fault"], "hang");
    client
        .control("/_sandbox/api/verify/fault", json!({"mode": "none"}))
        .await;
    assert_eq!(client.verify_start(TO).await.0, 201);
    let verify = client.state().await["verify"].clone();
    assert_eq!(
        verify["requests"],
        json!({"start": 2, "check": 1, "fetch": 0, "other": 0})
    );
    assert_eq!(verify["fault"], "none");
}

#[tokio::test]
async fn verify_codes_endpoint_needs_a_recipient_and_takes_a_raw_plus() {
    let (_sandbox, client) = started(config()).await;
    let url = format!("{}/_sandbox/api/verify/codes", client.base);
    assert_eq!(client.send(client.http.get(&url)).await.0, 400);
    assert_eq!(client.verify_sent(TO).await.0, 404);
    client.verify_start(TO).await;
    let raw = client.http.get(format!("{url}?to=+15551234567"));
    let (status, body) = client.send(raw).await;
    assert_eq!(
        (status, &body["to"], &body["status"]),
        (200, &json!(TO), &json!("pending"))
    );
}

#[tokio::test]
async fn the_page_shows_verify_codes_and_its_fault_form_works() {
    let (_sandbox, client) = started(config()).await;
    client.verify_start(TO).await;
    let code = client.verify_code(TO).await;
    let page = client.http.get(format!("{}/_sandbox/", client.base));
    let html = page.send().await.unwrap().text().await.unwrap();
    assert!(html.contains("Twilio Verify codes sent"));
    assert!(
        html.contains(&format!("<td class=\"code\">{code}</td>")),
        "{html}"
    );
    assert!(html.contains(TO));
    let form_url = format!("{}/_sandbox/verify/fault", client.base);
    let cross = client
        .http
        .post(&form_url)
        .header("Origin", "https://evil.example")
        .form(&[("mode", "error")]);
    assert_eq!(cross.send().await.unwrap().status(), 403);
    assert_eq!(client.state().await["verify"]["fault"], "none");
    let response = client
        .http
        .post(&form_url)
        .form(&[("mode", "error")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(client.state().await["verify"]["fault"], "error");
}

#[test]
fn debug_of_the_config_masks_both_secrets() {
    let shown = format!("{:?}", config());
    assert!(
        !shown.contains(KEY) && !shown.contains(DEFAULT_VERIFY_AUTH_TOKEN),
        "{shown}"
    );
    assert!(shown.contains(DEFAULT_VERIFY_SERVICE_SID), "{shown}");
}
