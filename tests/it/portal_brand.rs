//! The operator's brand (`[portal]`) on a spawned gateway: a
//! `templates_dir` override renders and still escapes what it shows, the
//! logo and style sheet are served from the gateway's own origin with
//! their types and the portal's Content-Security-Policy, which allows
//! them; `check-config` names a broken template; a browser that asks for
//! German gets the German login page.

use std::process::Output;

use reqwest::StatusCode;

use crate::support::*;

/// A PNG's signature and the start of its header: enough for a browser to
/// know the type, and for this test to know the bytes.
const LOGO: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

const LOGIN_OVERRIDE: &str = r#"{% extends "base.html" %}
{% block content %}
<h1 id="acme-login">{{ t("login.title") }} · Acme</h1>
{% if message %}<p class="message">{{ message }}</p>{% endif %}
<form method="post" action="{{ action }}">
  <input type="hidden" name="csrf" value="{{ csrf }}">
  <input type="hidden" name="rd" value="{{ rd }}">
  <p id="typed">{{ email }}</p>
  <input name="email" value="{{ email }}"><input type="password" name="password">
  <button>{{ t("login.submit") }}</button>
</form>
{% endblock %}
"#;

/// A gateway with alice, a logo, a style sheet, a footer link and a
/// `templates_dir` that replaces the login page.
async fn branded() -> Gateway {
    let mut setup = Setup::new(None);
    let templates = setup.path("templates");
    std::fs::create_dir_all(&templates).unwrap();
    std::fs::write(templates.join("login.html"), LOGIN_OVERRIDE).unwrap();
    std::fs::write(setup.path("logo.png"), LOGO).unwrap();
    std::fs::write(
        setup.path("acme.css"),
        "main { border-top: 4px solid teal; }",
    )
    .unwrap();
    let mut link = toml::Table::new();
    link.insert("text".into(), "Help desk".into());
    link.insert("url".into(), "https://help.example.com/".into());
    let (logo, css) = (path_text(&setup, "logo.png"), path_text(&setup, "acme.css"));
    setup
        .set("portal.title", "Acme Sign-in")
        .set("portal.logo_file", logo)
        .set("portal.css_file", css)
        .set("portal.templates_dir", templates.to_str().unwrap())
        .set("portal.footer_links", toml::Value::Array(vec![link.into()]));
    setup.add_alice().await;
    setup.start().await
}

fn path_text(setup: &Setup, name: &str) -> String {
    setup.path(name).to_str().unwrap().to_owned()
}

/// The `href`/`src` that follows `marker` (auto-escaping writes `/` as
/// `&#x2f;`).
fn url_after(html: &str, marker: &str) -> String {
    let start = html
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} in {html}"))
        + marker.len();
    let end = html[start..].find('"').expect("a closing quote") + start;
    html[start..end].replace("&#x2f;", "/")
}

fn csp_allows_own_files(reply: &Reply, what: &str) {
    let csp = reply
        .header("content-security-policy")
        .unwrap_or_else(|| panic!("{what}: no CSP: {reply:?}"));
    for directive in ["img-src 'self'", "style-src 'self'", "default-src 'self'"] {
        assert!(
            csp.split(';').any(|d| d.trim() == directive),
            "{what}: {directive} in {csp}"
        );
    }
    assert!(!csp.contains("unsafe"), "{what}: {csp}");
}

#[tokio::test]
async fn a_templates_dir_override_renders_escaped_with_the_brand_under_the_csp() {
    let gw = branded().await;
    let mut b = gw.browser();
    let page = b.get(&format!("{PREFIX}/login")).await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    assert!(
        page.body
            .contains("<h1 id=\"acme-login\">Log in · Acme</h1>"),
        "the operator's template: {}",
        page.body
    );
    assert!(
        page.body.contains("<title>Acme Sign-in</title>"),
        "{}",
        page.body
    );
    assert!(page.body.contains(">Help desk</a>"), "{}", page.body);
    csp_allows_own_files(&page, "the login page");

    let hostile = "<script>alert(1)</script>@example.com";
    let refused = b.post_login(hostile, "wrong password", None).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{refused:?}");
    assert!(!refused.body.contains("<script>"), "{}", refused.body);
    assert!(
        refused
            .body
            .contains("<p id=\"typed\">&lt;script&gt;alert(1)&lt;"),
        "escaped in the override: {}",
        refused.body
    );

    let logo_url = url_after(&page.body, "<img class=\"logo\" src=\"");
    let css_url = url_after(&page.body, "<link rel=\"stylesheet\" href=\"");
    assert!(
        css_url.contains("/static/authgate.css"),
        "built in first: {css_url}"
    );
    let brand_css = url_after(
        &page.body,
        "<link rel=\"stylesheet\" href=\"&#x2f;_authgate&#x2f;static&#x2f;brand",
    );
    let brand_css = format!("{PREFIX}/static/brand{brand_css}");
    for (url, content_type, what) in [
        (logo_url.as_str(), "image/png", "the logo"),
        (
            brand_css.as_str(),
            "text/css; charset=utf-8",
            "the style sheet",
        ),
    ] {
        assert!(
            url.starts_with(&format!("{PREFIX}/static/")),
            "{what}: {url}"
        );
        let file = client().get(gw.url(url)).send().await.unwrap();
        assert_eq!(file.status(), StatusCode::OK, "{what}: {url}");
        let headers = file.headers().clone();
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        assert_eq!(header("content-type"), Some(content_type), "{what}");
        assert_eq!(header("x-content-type-options"), Some("nosniff"), "{what}");
        let reply = Reply {
            status: file.status(),
            headers: headers.clone(),
            body: String::new(),
        };
        csp_allows_own_files(&reply, what);
        let body = file.bytes().await.unwrap();
        if what == "the logo" {
            assert_eq!(&body[..], LOGO);
        } else {
            assert_eq!(&body[..], b"main { border-top: 4px solid teal; }");
        }
    }
    let other = client()
        .get(gw.url(&format!("{PREFIX}/static/brand/logo.svg")))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_browser_that_asks_for_german_gets_the_german_login_page() {
    let setup = Setup::new(None);
    setup.add_alice().await;
    let gw = setup.start().await;
    let mut b = gw.browser();
    let german = b
        .send(
            b.request(reqwest::Method::GET, &format!("{PREFIX}/login"))
                .header("accept-language", "de-DE,de;q=0.9,en;q=0.5"),
        )
        .await;
    assert_eq!(german.status, StatusCode::OK);
    assert!(
        german.body.contains("<html lang=\"de\">"),
        "{}",
        german.body
    );
    assert!(german.body.contains("<h1>Anmelden</h1>"), "{}", german.body);
    assert!(german.body.contains(">Passwort</label>"), "{}", german.body);
    let csrf = csrf_field(&german.body).unwrap();
    let refused = b
        .send(
            b.request(reqwest::Method::POST, &format!("{PREFIX}/login"))
                .header("accept-language", "de")
                .form(&[("email", ALICE), ("password", "wrong"), ("csrf", &csrf)]),
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(
        refused
            .body
            .contains("E-Mail-Adresse oder Passwort ist falsch."),
        "{}",
        refused.body
    );
    let english = b.get(&format!("{PREFIX}/login")).await;
    assert!(
        english.body.contains("<html lang=\"en\">"),
        "{}",
        english.body
    );
    assert!(english.body.contains("<h1>Log in</h1>"), "{}", english.body);
}

async fn check_config(setup: &Setup) -> Output {
    let config = setup.config_path();
    let args = ["check-config", "--config", config.to_str().unwrap()];
    setup.run(&args, "", &[]).await
}

#[tokio::test]
async fn check_config_names_the_template_that_fails() {
    let mut setup = Setup::new(None);
    std::fs::write(setup.path("users.toml"), "").unwrap();
    let templates = setup.path("templates");
    std::fs::create_dir_all(&templates).unwrap();
    setup.set("portal.templates_dir", templates.to_str().unwrap());
    std::fs::write(templates.join("verify.html"), "{% extends \"base.html\" %}").unwrap();
    assert_success(&check_config(&setup).await, "check-config, a good override");

    for (broken, what) in [
        (
            "{% block content %}{% if %}{% endblock %}",
            "a syntax error",
        ),
        ("{{ t(\"verify.no_such_words\") }}", "an unknown message"),
    ] {
        std::fs::write(templates.join("verify.html"), broken).unwrap();
        let out = check_config(&setup).await;
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        assert!(
            err.contains("portal.templates_dir: template verify.html"),
            "{what}: {err}"
        );
        assert!(!err.contains("panicked"), "{what}: {err}");
        assert!(out.stdout.is_empty(), "{what}: nothing printed");
    }
    let serve = setup
        .run(
            &["serve", "--config", setup.config_path().to_str().unwrap()],
            "",
            &[],
        )
        .await;
    assert_eq!(serve.status.code(), Some(1), "{}", stderr_of(&serve));
    assert!(
        stderr_of(&serve).contains("template verify.html"),
        "{}",
        stderr_of(&serve)
    );
}
