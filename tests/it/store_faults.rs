//! Store faults: a `store.path` that cannot be opened stops `serve` with
//! exit 1 and an error naming the key; a full disk while running makes new
//! logins fail closed (503, no session cookie) and healthz answer 503, and
//! both heal once there is space again.
//!
//! The full disk is a real one: a 2 MiB tmpfs (tests run as root, so file
//! permission bits would prove nothing), filled up with a file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use reqwest::{Method, StatusCode};

use crate::support::*;

/// Exit code 1 and an error line that starts by naming `store.path`.
fn assert_store_path_refused(out: &Output, path: &Path, what: &str) {
    let err = stderr_of(out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what}: {:?}\n{err}",
        out.status
    );
    assert!(
        err.lines().any(|l| l.starts_with("authgate: store.path")),
        "{what}: no error line starting with store.path:\n{err}"
    );
    assert!(
        err.contains(&path.display().to_string()),
        "{what}: the path is not named:\n{err}"
    );
    assert!(!err.contains("panicked"), "{what}: {err}");
}

async fn serve_once(setup: &Setup) -> Output {
    let config = setup.config_path();
    setup
        .run(&["serve", "--config", config.to_str().unwrap()], "", &[])
        .await
}

/// A valid setup with its own (empty) users file and no metrics listener.
fn setup() -> Setup {
    let mut setup = Setup::new(Some("http://127.0.0.1:9"));
    setup.set("metrics.listen", "");
    std::fs::write(setup.path("users.toml"), "").unwrap();
    setup
}

#[tokio::test]
async fn a_regular_file_as_store_path_exits_1_naming_the_key() {
    let mut setup = setup();
    let file = setup.path("not-a-directory");
    std::fs::write(&file, "a regular file, not a sled database").unwrap();
    setup.set("store.path", file.to_str().unwrap());
    let out = serve_once(&setup).await;
    assert_store_path_refused(&out, &file, "store.path is a regular file");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "a regular file, not a sled database",
        "the file was changed"
    );
}

#[tokio::test]
async fn a_second_gateway_on_the_same_store_exits_1_naming_the_key() {
    let upstream = Upstream::start().await;
    let mut first = Setup::new(Some(&upstream.url()));
    first.set("metrics.listen", "");
    first.add_alice().await;
    let store = first.path("data");
    let first = first.start().await;
    let mut b = first.browser();
    b.login(ALICE, ALICE_PW).await;

    let mut second = setup();
    second.set("store.path", store.to_str().unwrap());
    let out = serve_once(&second).await;
    assert_store_path_refused(&out, &store, "a second gateway on a locked store");
    assert!(
        stderr_of(&out).contains("another authgate"),
        "the lock is not explained:\n{}",
        stderr_of(&out)
    );

    // The first one is untouched.
    assert_eq!(
        b.get("/still")
            .await
            .echo()
            .header("remote-user")
            .as_deref(),
        Some(ALICE)
    );
}

/// A small tmpfs mounted for one test; unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("temp dir for the tmpfs");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mounting a {size} tmpfs at {} failed: these tests run as root and need \
             `mount -t tmpfs` to simulate a full disk (file permissions prove nothing \
             to root). mount said: {}",
            dir.path().display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `name` until the file system refuses (ENOSPC).
    fn fill(&self, name: &str) {
        let mut file = std::fs::File::create(self.path(name)).expect("create the filler");
        let block = vec![0u8; 4096];
        loop {
            if let Err(e) = file.write_all(&block).and_then(|()| file.flush()) {
                assert_eq!(e.raw_os_error(), Some(28), "expected ENOSPC, got {e}");
                return;
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a gateway that is still being reaped must not keep it busy.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

async fn healthz(b: &mut Browser) -> Reply {
    b.get_json(&format!("{PREFIX}/healthz")).await
}

#[tokio::test]
async fn a_full_disk_fails_logins_closed_and_healthz_until_space_is_back() {
    let upstream = Upstream::start().await;
    let disk = Tmpfs::mount("2m");
    let mut setup = Setup::new(Some(&upstream.url()));
    let store = disk.path("store");
    setup
        .set("store.path", store.to_str().unwrap())
        .set("store.flush_interval", "250ms")
        .set("metrics.listen", "");
    setup.add_alice().await;
    let mut gw = setup.start().await;

    let mut before = gw.browser();
    let before_cookie = before.login(ALICE, ALICE_PW).await;
    assert_eq!(healthz(&mut before).await.status, StatusCode::OK);

    disk.fill("filler");
    // The store's last page may still have room for a few records; the
    // first login that needs a new block must fail, and fail closed.
    let mut refused = None;
    for attempt in 0..60 {
        let mut b = gw.browser();
        let r = b.post_login(ALICE, ALICE_PW, None).await;
        match r.status {
            StatusCode::SEE_OTHER => {
                assert!(r.set_cookie(SESSION_COOKIE).is_some(), "{r:?}");
                continue;
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                refused = Some((attempt, r, b));
                break;
            }
            other => panic!("login on a full disk: unexpected {other}: {r:?}"),
        }
    }
    let (attempt, r, mut b) = refused.expect("60 logins on a full disk and none was refused");
    eprintln!("full disk: login refused after {attempt} accepted logins");
    assert!(
        r.set_cookie(SESSION_COOKIE).is_none(),
        "a session cookie without a stored session (attempt {attempt}): {r:?}"
    );
    assert!(b.cookie(SESSION_COOKIE).is_none());
    let page = b.get("/after-refused").await;
    assert_ne!(page.status, StatusCode::OK, "{page:?}");
    assert_eq!(upstream.hits(), 0);

    // JSON clients get the error code.
    let csrf = b.csrf().await;
    let json = b
        .request(Method::POST, &format!("{PREFIX}/login"))
        .header("accept", "application/json")
        .form(&[("email", ALICE), ("password", ALICE_PW), ("csrf", &csrf)]);
    let json = b.send(json).await;
    assert_eq!(json.status, StatusCode::SERVICE_UNAVAILABLE, "{json:?}");
    assert_eq!(json.json()["error"], "store_unavailable", "{json:?}");
    assert!(json.set_cookie(SESSION_COOKIE).is_none(), "{json:?}");

    let health = healthz(&mut b).await;
    assert_eq!(health.status, StatusCode::SERVICE_UNAVAILABLE, "{health:?}");
    assert_eq!(health.json()["status"], "store_unavailable");
    // Still unhealthy a few flush intervals later: nothing pretends.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        healthz(&mut b).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    // A session made before the disk filled keeps working from memory.
    assert_eq!(
        before
            .get("/during")
            .await
            .echo()
            .header("remote-user")
            .as_deref(),
        Some(ALICE)
    );

    std::fs::remove_file(disk.path("filler")).unwrap();
    let healed = eventually(80, Duration::from_millis(250), || {
        let mut probe = gw.browser();
        async move { healthz(&mut probe).await.status == StatusCode::OK }
    })
    .await;
    assert!(
        healed,
        "healthz did not recover once space was back:\n{}",
        gw.stderr()
    );

    let mut after = gw.browser();
    let after_cookie = after.login(ALICE, ALICE_PW).await;
    assert_eq!(
        after
            .get("/after")
            .await
            .echo()
            .header("remote-user")
            .as_deref(),
        Some(ALICE)
    );

    // What the store holds after healing is what memory held: both
    // sessions survive a restart.
    assert_eq!(gw.stop().await.code(), Some(0), "{}", gw.stderr());
    gw.restart().await;
    for (name, cookie) in [("before", before_cookie), ("after", after_cookie)] {
        let mut again = gw.browser();
        again.set_cookie_value(SESSION_COOKIE, &cookie);
        let r = again.get(&format!("/restarted-{name}")).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "the {name} session was lost: {r:?}"
        );
    }
    drop(gw);
}
