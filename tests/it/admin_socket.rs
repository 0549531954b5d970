//! The admin socket against a running gateway: `session list/revoke`,
//! `user disable/enable`, the socket's permissions and peer check, and
//! the user index after a `kill -9`.
//!
//! The peer check is tested by permission: the suite runs as root in CI,
//! so a child CLI is started as `nobody` (`CommandExt::uid`); once with the
//! socket as the gateway made it (0600: the kernel refuses the connect),
//! once with the file opened up by hand (0666: the gateway reads the
//! peer's uid with SO_PEERCRED and closes without an answer).

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use reqwest::{Method, StatusCode};

use crate::support::*;

const BOB: &str = "bob@example.com";
const BOB_PW: &str = "bob's own long password";
/// `nobody` on Debian and most others.
const NOBODY: u32 = 65534;

/// A gateway with the admin socket, alice and bob, and its upstream
/// (kept alive by the caller).
async fn gateway_with_socket() -> (Gateway, Upstream) {
    let upstream = Upstream::start().await;
    let mut setup = Setup::new(Some(&upstream.url()));
    let socket = setup.path("admin.sock");
    setup.set("server.admin_socket", socket.to_str().unwrap());
    setup.add_alice().await;
    setup.add_user(BOB, "Bob", "", BOB_PW).await;
    (setup.start().await, upstream)
}

/// `authgate ARGS --config …` against the gateway's config.
async fn cli(gw: &Gateway, args: &[&str]) -> Output {
    let config = gw.setup().config_path();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--config", config.to_str().unwrap()]);
    run_bin(gw.setup().dir.path(), &all, "", &[]).await
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Lines of `session list` naming `user` (the header line names none).
fn listed(out: &Output, user: &str) -> usize {
    stdout(out)
        .lines()
        .filter(|line| line.split('\t').nth(1) == Some(user))
        .count()
}

async fn logged_in(gw: &Gateway, email: &str, password: &str) -> Browser {
    let mut browser = gw.browser();
    browser.login(email, password).await;
    assert_eq!(browser.get("/").await.status, StatusCode::OK);
    browser
}

#[tokio::test]
async fn session_revoke_by_user_ends_every_session_of_theirs_at_the_next_request() {
    let (gw, _upstream) = gateway_with_socket().await;
    let socket = gw.setup().path("admin.sock");
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the socket is the gateway user's only");

    let mut first = logged_in(&gw, ALICE, ALICE_PW).await;
    let mut second = logged_in(&gw, ALICE, ALICE_PW).await;
    let mut bob = logged_in(&gw, BOB, BOB_PW).await;

    let list = cli(&gw, &["session", "list", "--user", "ALICE@example.com"]).await;
    assert_success(&list, "session list --user");
    assert_eq!(listed(&list, ALICE), 2, "{}", stdout(&list));
    assert_eq!(listed(&list, BOB), 0);

    let revoke = cli(&gw, &["session", "revoke", "--user", ALICE]).await;
    assert_success(&revoke, "session revoke --user");
    assert!(stdout(&revoke).contains("revoked 2"), "{}", stdout(&revoke));

    for browser in [&mut first, &mut second] {
        let reply = browser.get("/").await;
        assert_eq!(
            reply.status,
            StatusCode::FOUND,
            "revoked: to the login page"
        );
    }
    assert_eq!(
        bob.get("/").await.status,
        StatusCode::OK,
        "bob is untouched"
    );
    let all = cli(&gw, &["session", "list"]).await;
    assert_eq!((listed(&all, ALICE), listed(&all, BOB)), (0, 1));
}

#[tokio::test]
async fn session_revoke_by_reference_ends_that_session_only() {
    let (gw, _upstream) = gateway_with_socket().await;
    let mut first = logged_in(&gw, ALICE, ALICE_PW).await;
    let list = cli(&gw, &["session", "list"]).await;
    let reference = stdout(&list)
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            (fields.get(1) == Some(&ALICE)).then(|| fields[0].to_owned())
        })
        .expect("alice's session listed");
    let mut second = logged_in(&gw, ALICE, ALICE_PW).await;
    let out = cli(&gw, &["session", "revoke", "--id", "0"]).await;
    assert!(!out.status.success(), "a prefix of one digit is refused");
    // The one listed before the second login is the first browser's.
    let out = cli(&gw, &["session", "revoke", "--id", &reference]).await;
    assert_success(&out, "session revoke --id");
    assert_eq!(first.get("/").await.status, StatusCode::FOUND);
    assert_eq!(second.get("/").await.status, StatusCode::OK);
}

/// A JSON login: the status and the error body.
async fn json_login(browser: &mut Browser, email: &str, password: &str) -> (StatusCode, String) {
    let csrf = browser.csrf().await;
    let builder = browser
        .request(Method::POST, &format!("{PREFIX}/login"))
        .header("accept", "application/json")
        .header("x-csrf-token", csrf)
        .form(&[("email", email), ("password", password)]);
    let reply = browser.send(builder).await;
    (reply.status, reply.body)
}

#[tokio::test]
async fn a_disabled_user_is_refused_as_a_wrong_password_is_and_enable_lets_them_in() {
    let (gw, _upstream) = gateway_with_socket().await;
    let mut before = logged_in(&gw, ALICE, ALICE_PW).await;

    let out = cli(&gw, &["user", "disable", ALICE]).await;
    assert_success(&out, "user disable");
    assert!(
        stdout(&out).contains("1 session(s) ended"),
        "{}",
        stdout(&out)
    );
    assert_eq!(before.get("/").await.status, StatusCode::FOUND);

    let mut browser = gw.browser();
    let wrong = json_login(&mut browser, ALICE, "not her password").await;
    let disabled = json_login(&mut browser, ALICE, ALICE_PW).await;
    assert_eq!(wrong.0, StatusCode::UNAUTHORIZED);
    assert_eq!(disabled, wrong, "the same answer as a wrong password");

    let users = cli(&gw, &["user", "list"]).await;
    assert_success(&users, "user list");
    let alice = stdout(&users)
        .lines()
        .find(|l| l.starts_with(ALICE))
        .unwrap()
        .to_owned();
    assert!(alice.ends_with("\tdisabled"), "{alice}");

    let out = cli(&gw, &["user", "enable", ALICE]).await;
    assert_success(&out, "user enable");
    let (status, _) = json_login(&mut browser, ALICE, ALICE_PW).await;
    assert_eq!(status, StatusCode::OK);
}

/// `session list` as `nobody`, with a config `nobody` can read.
fn list_as_nobody(gw: &Gateway) -> Output {
    Command::new(BIN)
        .args(["session", "list", "--config"])
        .arg(gw.setup().config_path())
        .current_dir("/")
        .uid(NOBODY)
        .gid(NOBODY)
        .stdin(Stdio::null())
        .output()
        .expect("run the CLI as nobody")
}

#[tokio::test]
async fn the_socket_refuses_another_uid() {
    let (gw, _upstream) = gateway_with_socket().await;
    let socket = gw.setup().path("admin.sock");
    let own = cli(&gw, &["session", "list"]).await;
    assert_success(&own, "session list as the gateway's user");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: cannot start a child as another uid; only the mode was checked");
        return;
    }
    let dir = gw.setup().dir.path();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for file in [gw.setup().config_path(), gw.setup().path("users.toml")] {
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }

    let refused = list_as_nobody(&gw);
    assert!(!refused.status.success());
    let err = stderr_of(&refused);
    assert!(
        err.contains("admin socket") && err.contains("ermission denied"),
        "the file's mode: {err}"
    );

    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let refused = list_as_nobody(&gw);
    assert!(!refused.status.success());
    let err = stderr_of(&refused);
    assert!(
        err.contains("closed the connection"),
        "the peer check: {err}"
    );
    assert!(
        stdout(&refused).is_empty(),
        "nothing listed: {}",
        stdout(&refused)
    );
    let log = gw.stderr();
    assert!(
        log.contains("refused a connection from another user"),
        "{log}"
    );
}

/// After a `kill -9` the restarted gateway's index is rebuilt from the
/// stored sessions: `session list` names exactly the sessions that work.
#[tokio::test]
async fn after_a_crash_the_list_is_exactly_the_sessions_that_work() {
    let upstream = Upstream::start().await;
    let mut setup = Setup::new(Some(&upstream.url()));
    let socket = setup.path("admin.sock");
    setup.set("server.admin_socket", socket.to_str().unwrap());
    setup.add_alice().await;
    let mut child = spawn_serve(&setup);
    let ready = |setup: &Setup| {
        let url = format!("{}{PREFIX}/healthz", setup.base());
        async move {
            let client = client();
            eventually(200, Duration::from_millis(50), || {
                let request = client.get(&url).send();
                async move { request.await.is_ok_and(|r| r.status() == StatusCode::OK) }
            })
            .await
        }
    };
    assert!(ready(&setup).await, "the gateway started");
    let base = setup.base();
    let mut browsers = Vec::new();
    for _ in 0..3 {
        let mut browser = Browser::new(&base);
        browser.login(ALICE, ALICE_PW).await;
        browsers.push(browser);
    }
    // Logged out, but the cookie kept: should the logout's delete not
    // have reached the disk, the session works again after the crash, and
    // is then listed again.
    let cookie = browsers[0].cookie(SESSION_COOKIE).unwrap().to_owned();
    browsers[0].logout().await;
    browsers[0].set_cookie_value(SESSION_COOKIE, &cookie);

    child.kill().unwrap();
    child.wait().unwrap();
    let mut child = spawn_serve(&setup);
    let started = ready(&setup).await;
    let config = setup.config_path();
    let args = [
        "session",
        "list",
        "--user",
        ALICE,
        "--config",
        config.to_str().unwrap(),
    ];
    let list = run_bin(setup.dir.path(), &args, "", &[]).await;
    let mut working = 0;
    for browser in &mut browsers {
        if browser.get("/").await.status == StatusCode::OK {
            working += 1;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(started, "the gateway restarted");
    assert_success(&list, "session list after the crash");
    assert!(working >= 2, "the sessions never logged out survive");
    let text = String::from_utf8_lossy(&list.stdout).into_owned();
    let listed = text.lines().filter(|l| l.contains(ALICE)).count();
    assert_eq!(listed, working, "{text}");
}

/// Two replicas on one Redis: disabling a user through one replica's
/// socket ends their session on the other (whose cache held it) within a
/// second, refuses their login there too, and the other's `session list`
/// (through its own socket) shows nothing of theirs.
#[tokio::test]
async fn with_redis_a_disable_on_one_replica_holds_on_the_other() {
    use crate::ha::{Redis, plain};
    let redis = Redis::start();
    let upstream = Upstream::start().await;
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let mut setup = Setup::new(Some(&upstream.url()));
        let socket = setup.path("admin.sock");
        setup
            .set("store.backend", "redis")
            .set("store.redis", plain(&redis))
            .set("server.admin_socket", socket.to_str().unwrap());
        setup.add_alice().await;
        replicas.push(setup.start().await);
    }
    let (a, b) = (&replicas[0], &replicas[1]);
    let mut on_a = a.browser();
    let cookie = on_a.login(ALICE, ALICE_PW).await;
    let mut on_b = b.browser();
    on_b.set_cookie_value(SESSION_COOKIE, &cookie);
    assert_eq!(on_b.get("/").await.status, StatusCode::OK, "cached on b");

    let out = cli(a, &["user", "disable", ALICE]).await;
    assert_success(&out, "user disable on a");
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    while on_b.get("/").await.status == StatusCode::OK {
        assert!(
            std::time::Instant::now() < deadline,
            "b still serves the disabled user's session"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = gw_login_status(b).await;
    assert_eq!(refused, StatusCode::UNAUTHORIZED);
    let list = cli(b, &["session", "list", "--user", ALICE]).await;
    assert_success(&list, "session list on b");
    assert_eq!(listed(&list, ALICE), 0, "{}", stdout(&list));

    let out = cli(b, &["user", "enable", ALICE]).await;
    assert_success(&out, "user enable on b");
    assert_eq!(gw_login_status(a).await, StatusCode::SEE_OTHER);
}

/// A fresh browser's password login on `gw`: its status.
async fn gw_login_status(gw: &Gateway) -> StatusCode {
    let mut browser = gw.browser();
    browser.post_login(ALICE, ALICE_PW, None).await.status
}
