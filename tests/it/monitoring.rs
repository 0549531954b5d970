//! examples/monitoring names only metrics that exist: a login with an
//! Authy push, and one with Authy and Verify down, run against the spawned
//! gateway, `/metrics` is scraped, and every metric that a PromQL
//! expression of the Grafana dashboard or of the alert rules names must
//! have a series in the scrape (a histogram's `_bucket`, `_sum`, `_count`;
//! a counter's `_total`). The flow calls both providers, so their series
//! exist: prometheus-client leaves a family without series out entirely.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use authgate::sandbox::{
    DEFAULT_VERIFY_ACCOUNT_SID, DEFAULT_VERIFY_AUTH_TOKEN, DEFAULT_VERIFY_SERVICE_SID, Sandbox,
    SandboxConfig,
};
use reqwest::StatusCode;
use serde_json::Value;

use crate::metrics::{metrics_addr, scrape};
use crate::support::*;

const API_KEY: &str = "authy-monitoring-sandbox-key-0123456789";

fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/monitoring")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `expr` of the dashboard's panels and the query (`definition`)
/// of each of its variables.
fn dashboard_expressions(dashboard: &Value) -> Vec<String> {
    let mut found = Vec::new();
    collect(dashboard, &mut found);
    found
}

fn collect(value: &Value, into: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("expr" | "definition", Value::String(text)) => into.push(text.clone()),
                    _ => collect(inner, into),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect(item, into)),
        _ => {}
    }
}

/// The `expr:` values of a rules file: one line, or a `|`/`>` block of the
/// lines indented deeper than the key.
fn rule_expressions(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut found = Vec::new();
    for (at, line) in lines.iter().enumerate() {
        let key = line.trim_start().trim_start_matches("- ");
        let Some(value) = key.strip_prefix("expr:") else {
            continue;
        };
        let value = value.trim();
        if !value.starts_with('|') && !value.starts_with('>') {
            found.push(value.to_owned());
            continue;
        }
        let indent = line.len() - key.len();
        let block: Vec<&str> = lines[at + 1..]
            .iter()
            .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
            .map(|l| l.trim())
            .collect();
        found.push(block.join(" "));
    }
    found
}

/// The metric names in a PromQL expression: ours all start `authgate_`.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("authgate_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        rest = &rest[at + name.len()..];
        names.push(name);
    }
    names
}

/// The metric names of a scrape's series (`name{labels} value`): a
/// histogram shows as its `_bucket`, `_sum` and `_count`, a counter as
/// `_total`. A family with no series yet is not in the text at all.
fn scraped_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| line[..line.find(['{', ' ']).unwrap_or(line.len())].to_owned())
        .collect()
}

/// A login with the second factor by an Authy push, approved on the
/// "phone", then the page it was for; then, with Authy and Verify down, a
/// second login that tries both: what a bad morning does.
async fn login_flow(gw: &Gateway, sandbox: Sandbox) {
    let mut b = gw.browser();
    let first = b.get("/dashboard").await;
    assert_eq!(first.status, StatusCode::FOUND, "needs login: {first:?}");
    let verify_path = login(gw, &mut b).await;
    let verify = b.get(&verify_path).await;
    assert_eq!(verify.status, StatusCode::OK, "{verify:?}");
    let uuid = sandbox.snapshot()["approval_requests"][0]["uuid"]
        .as_str()
        .unwrap_or_else(|| panic!("a push was created: {}", sandbox.snapshot()))
        .to_owned();
    let approved = client()
        .post(format!("{}/_sandbox/api/approvals/{uuid}", sandbox.url()))
        .json(&serde_json::json!({"status": "approved"}))
        .send()
        .await
        .expect("sandbox control API");
    assert_eq!(approved.status(), StatusCode::OK);
    // The webhook confirms the session; its next request takes the new id.
    let mut status = Value::Null;
    for _ in 0..100 {
        status = b.get_json(&format!("{PREFIX}/status")).await.json();
        if status["status"] == "approved" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status["status"], "approved", "the push was confirmed");
    let page = b.get("/dashboard").await;
    assert_eq!(page.status, StatusCode::OK, "after the push: {page:?}");

    sandbox.shutdown();
    let mut b = gw.browser();
    let verify_path = login(gw, &mut b).await;
    let push = b.get_json(&verify_path).await.json();
    assert_eq!(push["push_failed"], true, "Authy is down: {push}");
    let code = b.get_json(&format!("{verify_path}&method=verify")).await;
    assert_eq!(code.status, StatusCode::OK, "{code:?}");
    assert_eq!(code.json()["code_sent"], false, "Verify is down: {code:?}");
}

/// Alice's password: 303 to the second-factor page (its path returned).
async fn login(gw: &Gateway, b: &mut Browser) -> String {
    let rd = format!("{}/dashboard", gw.base());
    let login = b.post_login(ALICE, ALICE_PW, Some(&rd)).await;
    assert_eq!(login.status, StatusCode::SEE_OTHER, "{login:?}");
    login.location().replace(&gw.base(), "")
}

#[tokio::test]
async fn the_dashboard_and_the_alert_rules_name_only_metrics_that_exist() {
    let upstream = Upstream::start().await;
    let sandbox = Sandbox::start("127.0.0.1:0".parse().unwrap(), SandboxConfig::new(API_KEY))
        .await
        .expect("the Authy sandbox starts");
    let mut setup = Setup::new(Some(&upstream.url()));
    setup
        .set("auth.second_factor", "required")
        .set("auth.methods", vec!["authy", "verify"])
        .set("authy.api_key", API_KEY)
        .set("authy.api_url", sandbox.url())
        .set("authy.poll_interval", "1h")
        .set("verify.api_url", sandbox.url())
        .set("verify.account_sid", DEFAULT_VERIFY_ACCOUNT_SID)
        .set("verify.auth_token", DEFAULT_VERIFY_AUTH_TOKEN)
        .set("verify.service_sid", DEFAULT_VERIFY_SERVICE_SID);
    setup.write_config();
    let phone = ["--country-code", "1", "--phone", "5551234567"];
    setup
        .add_user_with(ALICE, ALICE_NAME, "a,b", ALICE_PW, &phone)
        .await;
    let gw = setup.start().await;
    sandbox
        .set_callback_url(Some(gw.url(&format!("{PREFIX}/authy/callback"))))
        .expect("callback URL");
    login_flow(&gw, sandbox).await;

    let (status, _, text) = scrape(&metrics_addr(&gw).await).await;
    assert_eq!(status, StatusCode::OK);
    let scraped = scraped_names(&text);

    let dashboard: Value =
        serde_json::from_str(&example("grafana-dashboard.json")).expect("the dashboard is JSON");
    let rules = rule_expressions(&example("alerts.yml"));
    assert!(rules.len() >= 4, "the alert rules: {rules:?}");
    let mut checked = BTreeSet::new();
    for (file, exprs) in [
        ("grafana-dashboard.json", dashboard_expressions(&dashboard)),
        ("alerts.yml", rules),
    ] {
        for expr in exprs {
            let names = metric_names(&expr);
            assert!(!names.is_empty(), "{file}: no authgate metric in {expr:?}");
            for name in names {
                assert!(
                    scraped.contains(&name),
                    "{file}: {name} (in {expr:?}) is not in the scrape:\n{text}"
                );
                checked.insert(name);
            }
        }
    }
    for wanted in [
        "authgate_http_requests_total",
        "authgate_forward_auth_decisions_total",
        "authgate_logins_total",
        "authgate_second_factor_total",
        "authgate_authy_request_seconds_bucket",
        "authgate_authy_errors_total",
        "authgate_verify_request_seconds_bucket",
        "authgate_verify_errors_total",
        "authgate_live_sessions",
        "authgate_store_healthy",
    ] {
        assert!(
            checked.contains(wanted),
            "the examples use {wanted}: {checked:?}"
        );
    }
}

#[test]
fn expressions_and_names_are_read_as_prometheus_has_them() {
    let yaml = "groups:\n  - rules:\n      - expr: up == 0\n      - expr: |\n          a /\n            b\n        for: 1m\n";
    assert_eq!(rule_expressions(yaml), ["up == 0", "a / b"]);
    assert_eq!(
        metric_names("sum(rate(authgate_a_total{x=\"authgate_b\"}[5m])) / authgate_c"),
        ["authgate_a_total", "authgate_b", "authgate_c"]
    );
    let scraped = scraped_names(
        "# TYPE authgate_x counter\nauthgate_x_total 1\nauthgate_h_bucket{le=\"1\"} 2\nauthgate_g 3\n",
    );
    let names: Vec<&str> = scraped.iter().map(String::as_str).collect();
    assert_eq!(
        names,
        ["authgate_g", "authgate_h_bucket", "authgate_x_total"]
    );
}
