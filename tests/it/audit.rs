//! The audit trail (issue 17, docs/audit.md): a login flow writes exactly
//! the documented events in order, with the request's context and never a
//! secret; SIGHUP reopens `audit.file` after a rotation. (Every gateway the
//! suite starts writes a trail, and `support` checks each for the test
//! passwords, TOTP secrets and codes when it stops.)

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::support::*;

/// The trail's lines, once there are `count` of them (the writer is a
/// background task): bounded wait.
async fn trail(path: &Path, count: usize) -> Vec<Value> {
    let lines = || -> Vec<Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
            .collect()
    };
    eventually(100, Duration::from_millis(50), || async {
        lines().len() >= count
    })
    .await;
    // A moment more: an extra line would show up now.
    tokio::time::sleep(Duration::from_millis(200)).await;
    lines()
}

/// POST /login with a request id and a user agent of our own.
async fn login_as(b: &mut Browser, email: &str, password: &str, request_id: &str) -> Reply {
    let csrf = b.csrf().await;
    let builder = b
        .request(Method::POST, &format!("{PREFIX}/login"))
        .header("x-request-id", request_id)
        .header("user-agent", "audit-test/1.0")
        .form(&[("email", email), ("password", password), ("csrf", &csrf)]);
    b.send(builder).await
}

#[tokio::test]
async fn a_login_flow_writes_the_documented_events_in_order() {
    let upstream = Upstream::start().await;
    let mut setup = Setup::new(Some(&upstream.url()));
    setup.set("auth.second_factor", "required");
    setup.add_alice().await;
    let gw = setup.start().await;
    let mut b = gw.browser();

    let wrong = login_as(&mut b, ALICE, "not alice's password", "it-1").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{wrong:?}");
    let unknown = login_as(&mut b, "mallory@example.com", ALICE_PW, "it-2").await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED, "{unknown:?}");
    let ok = login_as(&mut b, ALICE, ALICE_PW, "it-3").await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{ok:?}");

    // First login with TOTP: the enrollment page, a wrong code, the right one.
    let rd = app_rd(&gw);
    let page = b.get(&portal_path("enroll/totp", &rd)).await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    let secret = element_text(&page.body, "code", "totp-secret").expect("the secret shown");
    let csrf = csrf_field(&page.body).expect("a csrf field");
    let mut app = TotpApp::from_base32(&secret);
    let path = format!("{PREFIX}/enroll/totp");
    let wrong_code = wrong_totp_code(&app.secret);
    let form = [("code", wrong_code.as_str()), ("csrf", &csrf), ("rd", &rd)];
    let refused = b.post_form(&path, &form).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{refused:?}");
    let code = app.fresh_code().await;
    let form = [("code", code.as_str()), ("csrf", &csrf), ("rd", &rd)];
    let enrolled = b.post_form(&path, &form).await;
    assert_eq!(enrolled.status, StatusCode::SEE_OTHER, "{enrolled:?}");
    assert_eq!(b.get(APP_PATH).await.status, StatusCode::OK);
    assert_eq!(b.logout().await.status, StatusCode::SEE_OTHER);

    let lines = trail(&gw.setup().audit_path(), 7).await;
    let events: Vec<(&str, &str, &str)> = lines
        .iter()
        .map(|l| {
            let detail = l["reason"].as_str().or(l["method"].as_str()).unwrap_or("");
            (
                l["event"].as_str().unwrap(),
                l["user"].as_str().unwrap_or("-"),
                detail,
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            ("login_failed", ALICE, "invalid_credentials"),
            ("login_failed", "-", "invalid_credentials"),
            ("login_succeeded", ALICE, ""),
            ("second_factor_failed", ALICE, "totp"),
            ("totp_enrolled", ALICE, ""),
            ("second_factor_succeeded", ALICE, "totp"),
            ("logout", ALICE, ""),
        ],
        "{lines:#?}"
    );
    for line in &lines {
        assert_eq!(line["client"], "127.0.0.1", "{line}");
        assert_eq!(line["replica"], "it", "{line}");
        let time = line["time"].as_str().unwrap();
        assert!(humantime::parse_rfc3339(time).is_ok(), "{line}");
        let id = line["request_id"].as_str().unwrap();
        assert!(!id.is_empty(), "{line}");
    }
    // From a trusted proxy (loopback is one by default) the id is kept.
    let ids: Vec<&str> = lines[..3]
        .iter()
        .map(|l| l["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["it-1", "it-2", "it-3"]);
    assert_eq!(lines[0]["user_agent"], "audit-test/1.0");
    // One session from the login to the wrong code; a new one after the
    // step up, until the logout. A reference, never the cookie.
    let sessions: Vec<&Value> = lines.iter().map(|l| &l["session"]).collect();
    assert!(sessions[0].is_null() && sessions[1].is_null());
    assert_eq!(sessions[2], sessions[3]);
    assert_ne!(sessions[3], sessions[4]);
    assert_eq!(sessions[4], sessions[5]);
    assert_eq!(sessions[5], sessions[6]);
    let reference = sessions[2].as_str().unwrap();
    assert_eq!(reference.len(), 12, "{reference}");
    assert!(reference.bytes().all(|c| c.is_ascii_hexdigit()));
}

#[tokio::test]
async fn sighup_reopens_the_audit_file_after_a_rotation() {
    let setup = Setup::new(None);
    setup.add_alice().await;
    let gw = setup.start().await;
    let path = gw.setup().audit_path();
    let rotated = gw.setup().path("audit.jsonl.1");
    let mut b = gw.browser();

    b.post_login(ALICE, "wrong before the rotation", None).await;
    assert_eq!(trail(&path, 1).await.len(), 1);
    std::fs::rename(&path, &rotated).unwrap();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &gw.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let reopened = eventually(100, Duration::from_millis(50), || async { path.exists() }).await;
    assert!(reopened, "SIGHUP did not reopen {}", path.display());
    b.post_login(ALICE, "wrong after the rotation", None).await;

    let new = trail(&path, 1).await;
    assert_eq!(new.len(), 1, "{new:#?}");
    assert_eq!(new[0]["event"], "login_failed");
    assert_eq!(
        trail(&rotated, 1).await.len(),
        1,
        "the old file keeps its line only"
    );
    let healthz = client()
        .get(gw.url(&format!("{PREFIX}/healthz")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        healthz.status(),
        StatusCode::OK,
        "the gateway lives on after SIGHUP"
    );
}

#[tokio::test]
async fn the_start_of_a_ban_and_a_malformed_forward_auth_target_are_written() {
    let mut setup = Setup::new(None);
    setup
        .set("regulation.max_failures", 2)
        .set("regulation.ban", "15m");
    setup.add_alice().await;
    let gw = setup.start().await;
    let mut b = gw.browser();
    for _ in 0..3 {
        let reply = b.post_login(ALICE, "not alice's password", None).await;
        assert!(reply.status.is_client_error(), "{reply:?}");
    }
    let forward_auth = client()
        .get(gw.url(&format!("{PREFIX}/auth-request")))
        .header("x-original-url", "not a url")
        .header("x-original-method", "GET")
        .send()
        .await
        .unwrap();
    assert!(!forward_auth.status().is_success(), "{forward_auth:?}");

    let lines = trail(&gw.setup().audit_path(), 5).await;
    let events: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| {
            let event = l["event"].as_str().unwrap();
            (event, l["reason"].as_str().unwrap_or(""))
        })
        .collect();
    assert_eq!(
        events,
        [
            ("login_failed", "invalid_credentials"),
            ("login_failed", "invalid_credentials"),
            ("regulation_ban", ""),
            ("login_failed", "banned"),
            ("forward_auth_malformed_target", ""),
        ],
        "{lines:#?}"
    );
    assert_eq!(lines[2]["user"], ALICE);
    assert!(lines[4]["user"].is_null() && lines[4]["session"].is_null());
}

/// `authgate ARGS --config …` with the setup's config.
async fn offline_cli(setup: &Setup, args: &[&str]) -> Output {
    let config = setup.config_path();
    let mut all = args.to_vec();
    all.extend(["--config", config.to_str().unwrap()]);
    run_bin(setup.dir.path(), &all, "", &[]).await
}

/// Without a running gateway the CLI works on the store itself and writes
/// what the admin socket would: `user disable` of a user with a session
/// writes `user_disabled`, then `session_revoked` for that session, with
/// the replica's name and no request (`client`, `user_agent`,
/// `request_id` null), before the command exits.
#[tokio::test]
async fn the_cli_without_a_gateway_writes_the_operators_events() {
    let upstream = Upstream::start().await;
    let setup = Setup::new(Some(&upstream.url()));
    setup.add_alice().await;
    let mut gw = setup.start().await;
    gw.browser().login(ALICE, ALICE_PW).await;
    gw.stop().await;
    let setup = gw.setup();
    let list = offline_cli(setup, &["session", "list", "--user", ALICE]).await;
    assert_success(&list, "session list without a gateway");
    let listed = String::from_utf8_lossy(&list.stdout).into_owned();
    let reference = listed
        .lines()
        .find(|line| line.contains(ALICE))
        .and_then(|line| line.split('\t').next())
        .unwrap_or_else(|| panic!("{listed}"))
        .to_owned();
    let audit = setup.audit_path();
    let before = std::fs::read_to_string(&audit).unwrap_or_default();

    let out = offline_cli(setup, &["user", "disable", ALICE]).await;
    assert_success(&out, "user disable without a gateway");
    // No wait: the command has exited, so its lines are written.
    let after = std::fs::read_to_string(&audit).unwrap();
    let written: Vec<Value> = after
        .strip_prefix(before.as_str())
        .expect("the trail is appended to")
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let event = |event: &str, session: Value| {
        serde_json::json!({"event": event, "user": ALICE, "client": null,
            "user_agent": null, "session": session, "request_id": null, "replica": "it"})
    };
    let expected = vec![
        event("user_disabled", Value::Null),
        event("session_revoked", Value::from(reference)),
    ];
    let without_time: Vec<Value> = written
        .iter()
        .map(|line| {
            let mut line = line.clone();
            let time = line.as_object_mut().unwrap().remove("time").unwrap();
            assert!(time.as_str().unwrap().ends_with('Z'), "{time}");
            line
        })
        .collect();
    assert_eq!(without_time, expected, "{after}");
}
