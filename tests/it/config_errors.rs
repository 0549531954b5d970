//! Tests 9 and 13: a bad config stops `serve` with exit code 1 and an error
//! that names the key; `check-config` masks the secret; the environment
//! overrides the file.

use std::process::Output;

use crate::support::*;

/// A valid setup (empty users file) to break one key of.
fn setup() -> Setup {
    let setup = Setup::new(Some("http://127.0.0.1:9"));
    std::fs::write(setup.path("users.toml"), "").unwrap();
    setup
}

async fn serve(setup: &Setup, env: &[(&str, &str)]) -> Output {
    let config = setup.config_path();
    setup
        .run(&["serve", "--config", config.to_str().unwrap()], "", env)
        .await
}

async fn check_config(setup: &Setup, env: &[(&str, &str)]) -> Output {
    let config = setup.config_path();
    setup
        .run(
            &["check-config", "--config", config.to_str().unwrap()],
            "",
            env,
        )
        .await
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Exit code 1, the key named on stderr, no panic, no secret.
fn assert_refused(out: &Output, key: &str, what: &str) {
    let err = stderr_of(out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what}: {:?}\n{err}",
        out.status
    );
    assert!(
        err.contains(key),
        "{what}: stderr does not name {key}:\n{err}"
    );
    assert!(!err.contains("panicked"), "{what}: {err}");
    assert!(
        !err.contains(SECRET),
        "{what}: the secret is printed:\n{err}"
    );
    assert!(
        !stdout(out).contains(SECRET),
        "{what}: the secret is printed"
    );
}

#[tokio::test]
async fn serve_refuses_a_bad_config_naming_the_key() {
    let mut cases: Vec<(&str, Setup, &str)> = Vec::new();

    let mut s = setup();
    s.unset("session.secret");
    cases.push(("no secret", s, "session.secret"));

    let mut s = setup();
    s.set("session.secret", "0123456789");
    cases.push(("10-byte secret", s, "session.secret"));

    let mut s = setup();
    s.set("session.idle_timeout", "abc");
    cases.push(("idle_timeout abc", s, "session.idle_timeout"));

    let mut s = setup();
    let missing = s.path("missing-users.toml");
    s.set("users.file", missing.to_str().unwrap());
    cases.push(("missing users file", s, "users.file"));

    let mut s = setup();
    s.set("upstream.url", "ftp://x");
    cases.push(("ftp upstream", s, "upstream.url"));

    let mut s = setup();
    s.set("server.listn", "127.0.0.1:1");
    cases.push(("misspelt key", s, "server.listn"));

    for prefix in [0, 129] {
        let mut s = setup();
        s.set("regulation.ipv6_prefix", prefix);
        cases.push(("ipv6_prefix out of range", s, "regulation.ipv6_prefix"));
    }

    for (what, setup, key) in &cases {
        let out = serve(setup, &[]).await;
        assert_refused(&out, key, what);
        let out = check_config(setup, &[]).await;
        assert_refused(&out, key, &format!("check-config, {what}"));
    }
    // The 10-byte case says how long the secret is, not what it is.
    let out = serve(&cases[1].1, &[]).await;
    assert!(stderr_of(&out).contains("10 bytes"), "{}", stderr_of(&out));
    assert!(
        !stderr_of(&out).contains("0123456789"),
        "{}",
        stderr_of(&out)
    );
}

#[tokio::test]
async fn second_factor_off_is_refused_on_a_non_loopback_listener() {
    for listen in ["0.0.0.0", "[::]"] {
        let mut s = setup();
        s.set("server.listen", format!("{listen}:{}", free_port()));
        let out = serve(&s, &[]).await;
        assert_refused(&out, "auth.second_factor", listen);
    }
    // Loopback in any spelling is fine: check-config accepts it.
    let mut s = setup();
    s.set("server.listen", format!("[::1]:{}", free_port()));
    let out = check_config(&s, &[]).await;
    assert_success(&out, "check-config on [::1]");
}

#[tokio::test]
async fn check_config_masks_the_secret() {
    let s = setup();
    let out = check_config(&s, &[]).await;
    assert_success(&out, "check-config");
    let text = stdout(&out);
    assert!(text.contains("********"), "{text}");
    assert!(!text.contains(SECRET), "the secret is printed:\n{text}");
    assert!(!stderr_of(&out).contains(SECRET));
    // The effective config, e.g. the listener and a default.
    assert!(text.contains(&format!("127.0.0.1:{}", s.port)), "{text}");
    assert!(text.contains("/_authgate"), "defaults are shown: {text}");
}

#[tokio::test]
async fn environment_overrides_the_file() {
    let env_secret = "from-the-environment-0123456789abcdefghij";
    // The file's secret is too short; the environment's is fine.
    let mut s = setup();
    s.set("session.secret", "short");
    let out = check_config(&s, &[]).await;
    assert_refused(&out, "session.secret", "short secret in the file");
    let env = [("AUTHGATE_SESSION__SECRET", env_secret)];
    let out = check_config(&s, &env).await;
    assert_success(&out, "check-config with AUTHGATE_SESSION__SECRET");
    assert!(stdout(&out).contains("********"));
    assert!(!stdout(&out).contains(env_secret), "{}", stdout(&out));

    // The other way round: a good file secret, a short one in the env.
    let s = setup();
    let out = check_config(&s, &[("AUTHGATE_SESSION__SECRET", "short")]).await;
    assert_refused(&out, "session.secret", "short secret in the environment");
    let out = serve(&s, &[("AUTHGATE_SESSION__SECRET", "short")]).await;
    assert_refused(&out, "session.secret", "serve, short env secret");

    // Another key: the env listener wins over the file's.
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let out = check_config(&s, &[("AUTHGATE_SERVER__LISTEN", &listen)]).await;
    assert_success(&out, "check-config with AUTHGATE_SERVER__LISTEN");
    assert!(stdout(&out).contains(&listen), "{}", stdout(&out));
}

/// `[store.redis]` keys are checked with `backend = "redis"`, named in
/// full, from the file or the environment.
#[tokio::test]
async fn redis_store_settings_are_named_when_wrong() {
    let mut s = setup();
    s.set("store.backend", "redis");
    let out = serve(&s, &[]).await;
    assert_refused(&out, "store.redis.url", "redis backend without a URL");

    let url = [("AUTHGATE_STORE__REDIS__URL", "http://127.0.0.1:6379")];
    let out = check_config(&s, &url).await;
    assert_refused(&out, "store.redis.url", "an http URL");

    let nodes = [
        ("AUTHGATE_STORE__REDIS__URL", "redis://127.0.0.1:6379"),
        ("AUTHGATE_STORE__REDIS__SENTINEL__MASTER_NAME", "main"),
        ("AUTHGATE_STORE__REDIS__SENTINEL__NODES", "10.0.0.5"),
    ];
    let out = serve(&s, &nodes).await;
    assert_refused(&out, "store.redis.sentinel.nodes", "a node without a port");

    s.set("store.backend", "memcached");
    let out = check_config(&s, &[]).await;
    assert_refused(&out, "store.backend", "an unknown backend");

    // The Redis settings are read only for the Redis backend, and the
    // password is masked.
    let mut s = setup();
    s.set("store.backend", "redis");
    let env = [
        (
            "AUTHGATE_STORE__REDIS__URL",
            "rediss://redis.example.com:6380/0",
        ),
        ("AUTHGATE_STORE__REDIS__PASSWORD", "redis-password-0123"),
    ];
    let out = check_config(&s, &env).await;
    assert_success(&out, "check-config on redis");
    assert!(
        !stdout(&out).contains("redis-password-0123"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("backend = \"redis\""),
        "{}",
        stdout(&out)
    );
}
