//! Test 12: `hash-password` and `user add|list|remove`; `store copy`.

use std::os::unix::fs::PermissionsExt;

use reqwest::StatusCode;

use crate::support::*;

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn hash_password_prints_an_argon2id_hash_that_logs_in() {
    let upstream = Upstream::start().await;
    let setup = Setup::new(Some(&upstream.url()));
    let out = setup
        .run(&["hash-password"], "dave's password\n", &[])
        .await;
    assert_success(&out, "hash-password");
    let text = stdout(&out);
    let hash = text.trim();
    assert!(hash.starts_with("$argon2id$"), "{text}");
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(!text.contains("dave's password"));

    // A fresh salt each time.
    let again = setup
        .run(&["hash-password"], "dave's password\n", &[])
        .await;
    assert_ne!(stdout(&again).trim(), hash);

    // An empty password is refused.
    let empty = setup.run(&["hash-password"], "\n", &[]).await;
    assert_eq!(empty.status.code(), Some(1), "{empty:?}");

    // The hash works in a hand-written users file.
    std::fs::write(
        setup.path("users.toml"),
        format!(
            "[[user]]\nemail = \"dave@example.com\"\nname = \"Dave\"\n\
             password = \"{hash}\"\ngroups = [\"x\"]\n"
        ),
    )
    .unwrap();
    let gw = setup.start().await;
    let mut b = gw.browser();
    b.login("dave@example.com", "dave's password").await;
    let echo = b.get("/").await.echo();
    assert_eq!(
        echo.header("remote-user").as_deref(),
        Some("dave@example.com")
    );
    assert_eq!(echo.header("remote-name").as_deref(), Some("Dave"));
    let r = gw
        .browser()
        .post_login("dave@example.com", "dave's passworD", None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn user_commands_edit_the_users_file_and_list_never_shows_hashes() {
    let setup = Setup::new(None);
    let config = setup.config_path();
    let config = config.to_str().unwrap();
    setup.add_alice().await;
    setup.add_user("bob@example.com", "Bob", "", "bob pw").await;

    let users = std::fs::read_to_string(setup.path("users.toml")).unwrap();
    assert!(users.contains("$argon2id$"), "{users}");
    assert!(!users.contains(ALICE_PW), "the plain password is stored");
    let mode = std::fs::metadata(setup.path("users.toml"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o077,
        0,
        "the users file is readable by others: {mode:o}"
    );

    let list = setup
        .run(&["user", "list", "--config", config], "", &[])
        .await;
    assert_success(&list, "user list");
    let text = stdout(&list);
    assert!(text.contains(ALICE), "{text}");
    assert!(text.contains("a,b"), "{text}");
    assert!(text.contains("bob@example.com"), "{text}");
    assert!(
        text.lines()
            .any(|line| line.starts_with(ALICE) && line.ends_with("\ttotp")),
        "each user's methods (here the default, TOTP):\n{text}"
    );
    assert!(!text.contains("argon2"), "a hash is listed:\n{text}");
    assert!(!String::from_utf8_lossy(&list.stderr).contains("argon2"));

    // A second user with the same email (any case) is refused.
    let dup = setup
        .run(
            &[
                "user",
                "add",
                "--config",
                config,
                "--email",
                "ALICE@example.com",
            ],
            "pw\n",
            &[],
        )
        .await;
    assert_eq!(dup.status.code(), Some(1), "{dup:?}");

    let rm = setup
        .run(&["user", "remove", "--config", config, ALICE], "", &[])
        .await;
    assert_success(&rm, "user remove");
    let text = stdout(
        &setup
            .run(&["user", "list", "--config", config], "", &[])
            .await,
    );
    assert!(!text.contains(ALICE), "{text}");
    assert!(text.contains("bob@example.com"), "{text}");

    let missing = setup
        .run(&["user", "remove", "--config", config, ALICE], "", &[])
        .await;
    assert_eq!(missing.status.code(), Some(1), "{missing:?}");
}

/// A session made on sled goes to Redis and back, and still logs the
/// browser in; a copy that cannot finish exits 1 and says why.
#[tokio::test]
async fn store_copy_moves_sessions_to_redis_and_back() {
    let upstream = Upstream::start().await;
    let setup = Setup::new(Some(&upstream.url()));
    setup.add_alice().await;
    let mut gw = setup.start().await;
    let mut b = gw.browser();
    b.login(ALICE, ALICE_PW).await;
    gw.stop().await;

    let dir = gw.setup().dir.path().to_owned();
    let config = gw.setup().config_path();
    let config = config.to_str().unwrap();
    let redis = crate::ha::Redis::start();
    let url = redis.url();
    let copy = |to: String, env: Vec<(&'static str, String)>| {
        let dir = dir.clone();
        async move {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            run_bin(
                &dir,
                &["store", "copy", "--config", config, "--to", &to],
                "",
                &env,
            )
            .await
        }
    };

    let out = copy(url.clone(), vec![]).await;
    assert_success(&out, "store copy --to redis://");
    assert!(
        stdout(&out).contains("sessions:      1"),
        "{}",
        stdout(&out)
    );

    // The target now holds data: a second copy is refused, not merged.
    let out = copy(url.clone(), vec![]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr_of(&out).contains("already holds"),
        "{}",
        stderr_of(&out)
    );

    // As on a new machine: no sled store. Copying from it is refused...
    std::fs::remove_dir_all(dir.join("data")).unwrap();
    let out = copy(url.clone(), vec![]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr_of(&out).contains("store.path"),
        "{}",
        stderr_of(&out)
    );
    assert!(!dir.join("data").exists(), "an empty store was made");

    // ...and copying back from Redis fills it.
    let out = copy(
        "sled".into(),
        vec![("AUTHGATE_STORE__REDIS__URL", url.clone())],
    )
    .await;
    assert_success(&out, "store copy --to sled");
    assert!(
        stdout(&out).contains("sessions:      1"),
        "{}",
        stdout(&out)
    );

    gw.restart().await;
    let echo = b.get("/").await.echo();
    assert_eq!(echo.header("remote-user").as_deref(), Some(ALICE));
    gw.stop().await;

    // Redis gone: exit 1, naming what failed.
    drop(redis);
    let fresh = dir.join("fresh").to_str().unwrap().to_owned();
    let out = copy(
        "sled".into(),
        vec![
            ("AUTHGATE_STORE__REDIS__URL", url.clone()),
            ("AUTHGATE_STORE__PATH", fresh),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr_of(&out).contains("reading the sessions from Redis"),
        "{}",
        stderr_of(&out)
    );
    assert!(!stdout(&out).contains("copied"), "{}", stdout(&out));
}
