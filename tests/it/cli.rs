//! Test 12: `hash-password` and `user add|list|remove`.

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
