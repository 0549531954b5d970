//! Several replicas on one Redis (issue 15), with real `redis-server` and
//! `redis-sentinel` processes (scripts/proxy-deps installs them): a session
//! made on one replica works on the other, a logout on one is refused on
//! the other within a second, a dead Redis is a 503 everywhere (never a
//! 2xx) and is survived without a restart, and so is a Sentinel failover.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::proxies::{example, nginx_command, program, render};
use crate::support::*;

/// How long a revocation may take to reach another replica.
const PROPAGATION_BOUND: Duration = Duration::from_secs(1);

/// One `redis-server` (or `redis-sentinel`) on a loopback port, writing
/// only inside its temp dir; killed when dropped.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    args: Vec<String>,
}

impl Redis {
    /// A server that keeps its data on disk (append-only, fsync on every
    /// write), so that a restart loses nothing.
    pub fn start() -> Redis {
        Redis::spawn(&["--appendonly", "yes", "--appendfsync", "always"])
    }

    pub fn replica_of(master: &Redis) -> Redis {
        Redis::spawn(&["--replicaof", "127.0.0.1", &master.port.to_string()])
    }

    fn spawn(extra: &[&str]) -> Redis {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let mut args: Vec<String> = ["--port", &port.to_string(), "--bind", "127.0.0.1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(["--dir".into(), dir.path().display().to_string()]);
        args.extend(["--save".into(), String::new()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut redis = Redis {
            child: None,
            port,
            dir,
            args,
        };
        redis.run("redis-server");
        redis
    }

    /// A Sentinel watching `master` as `authgate-master`, quick to decide;
    /// `quorum` of the Sentinels must agree that the master is down.
    pub fn sentinel(master: &Redis, quorum: u32) -> Redis {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let config = dir.path().join("sentinel.conf");
        std::fs::write(
            &config,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor authgate-master 127.0.0.1 {} {quorum}\n\
                 sentinel down-after-milliseconds authgate-master 1000\n\
                 sentinel failover-timeout authgate-master 5000\n",
                dir.path().display(),
                master.port
            ),
        )
        .expect("write sentinel.conf");
        let mut sentinel = Redis {
            child: None,
            port,
            args: vec![config.display().to_string()],
            dir,
        };
        sentinel.run("redis-sentinel");
        sentinel
    }

    fn run(&mut self, program: &str) {
        let child = Command::new(crate::proxies::program(program))
            .args(&self.args)
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{program}: {e} (scripts/proxy-deps installs it)"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.cli(&["PING"]) != "PONG" {
            assert!(Instant::now() < deadline, "{program} did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `redis-cli` against this server; its output, trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(program("redis-cli"))
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The same server again, on the same port, with what it had saved.
    pub fn restart(&mut self) {
        self.stop();
        self.run("redis-server");
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A replica's setup: proxy mode in front of `upstream`, alice in its
/// users file, the store on `redis`.
async fn replica(redis: toml::Value, upstream: &str) -> Setup {
    let mut setup = Setup::new(Some(upstream));
    setup
        .set("store.backend", "redis")
        .set("store.redis", redis);
    setup.add_alice().await;
    setup
}

pub fn plain(redis: &Redis) -> toml::Value {
    toml::Value::Table(
        toml::from_str(&format!(
            "url = \"{}\"\nkey_prefix = \"it:\"\ntimeout = \"1s\"",
            redis.url()
        ))
        .expect("redis table"),
    )
}

/// `rd`-less GET of `path` with the session cookie `cookie`.
async fn get_with(gw: &Gateway, cookie: &str, path: &str, accept: &str) -> reqwest::Response {
    client()
        .get(gw.url(path))
        .header("cookie", format!("{SESSION_COOKIE}={cookie}"))
        .header("accept", accept)
        .send()
        .await
        .expect("request")
}

/// A forward-auth check of `GET http://app.example.com/` as nginx's
/// `auth_request` asks it, with the session cookie `cookie`.
async fn ask_nginx_style(url: &str, cookie: &str) -> reqwest::Response {
    client()
        .get(url)
        .header("cookie", format!("{SESSION_COOKIE}={cookie}"))
        .header("x-original-url", "http://app.example.com/")
        .header("x-original-method", "GET")
        .send()
        .await
        .expect("request")
}

async fn status_with(gw: &Gateway, cookie: &str) -> StatusCode {
    get_with(gw, cookie, "/app", "text/html").await.status()
}

/// Polls `check` every 20 ms until it holds or `bound` has passed.
async fn within<F, Fut>(bound: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + bound;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_session_works_on_every_replica_and_a_logout_on_one_ends_it_on_all_within_a_second() {
    let redis = Redis::start();
    let upstream = Upstream::start().await;
    let a = replica(plain(&redis), &upstream.url()).await.start().await;
    let b = replica(plain(&redis), &upstream.url()).await.start().await;

    let cookie = a.browser().login(ALICE, ALICE_PW).await;
    // Both replicas serve it, from memory after the first read.
    for gw in [&a, &b, &a, &b] {
        let reply = get_with(gw, &cookie, "/app", "text/html").await;
        assert_eq!(reply.status(), StatusCode::OK);
        let echo = Echo(reply.json().await.unwrap());
        assert_eq!(echo.header("remote-user").as_deref(), Some(ALICE));
    }

    let mut on_b = b.browser();
    on_b.set_cookie_value(SESSION_COOKIE, &cookie);
    on_b.logout().await;
    let logged_out = Instant::now();
    assert!(
        within(PROPAGATION_BOUND, || async {
            status_with(&a, &cookie).await != StatusCode::OK
        })
        .await,
        "replica a still let the session through {:?} after the logout on b",
        logged_out.elapsed()
    );
    assert_ne!(status_with(&b, &cookie).await, StatusCode::OK);
    let mut a = a;
    let stopped = a.stop().await;
    assert!(stopped.success(), "{stopped:?}: {}", a.stderr());
}

#[tokio::test]
async fn with_redis_down_every_answer_is_503_never_a_2xx_and_it_heals_without_a_restart() {
    let mut redis = Redis::start();
    let upstream = Upstream::start().await;
    let gw = replica(plain(&redis), &upstream.url()).await.start().await;
    let cookie = gw.browser().login(ALICE, ALICE_PW).await;
    assert_eq!(status_with(&gw, &cookie).await, StatusCode::OK);
    let healthz = || async {
        client()
            .get(gw.url(&format!("{PREFIX}/healthz")))
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(healthz().await, StatusCode::OK);

    // Forward-auth load all through the outage: a session that was logged
    // out, and one that never existed, never get a 2xx.
    let mut gone = gw.browser();
    let gone_cookie = gone.login(ALICE, ALICE_PW).await;
    gone.logout().await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (url, stop) = (gw.url(&format!("{PREFIX}/auth-request")), stop.clone());
        let cookies = [gone_cookie, "x".repeat(43)];
        tokio::spawn(async move {
            let mut asked = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for cookie in &cookies {
                    let reply = ask_nginx_style(&url, cookie).await;
                    assert!(
                        !reply.status().is_success(),
                        "{} without a session",
                        reply.status()
                    );
                    asked += 1;
                }
            }
            asked
        })
    };

    redis.stop();
    assert!(
        within(PROPAGATION_BOUND, || async {
            status_with(&gw, &cookie).await == StatusCode::SERVICE_UNAVAILABLE
        })
        .await,
        "the cached session was still served with Redis down"
    );
    let page = get_with(&gw, &cookie, "/app", "text/html").await;
    assert_eq!(page.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(page.text().await.unwrap().contains("</html>"), "a page");
    let api = get_with(&gw, &cookie, "/app", "application/json").await;
    assert_eq!(api.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = api.json().await.expect("JSON for an API client");
    assert_eq!(body["error"], "store_unavailable", "{body}");
    let asked = ask_nginx_style(&gw.url(&format!("{PREFIX}/auth-request")), &cookie).await;
    assert_eq!(asked.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        within(Duration::from_secs(3), || async {
            healthz().await == StatusCode::SERVICE_UNAVAILABLE
        })
        .await
    );
    let login = gw.browser().post_login(ALICE, ALICE_PW, None).await;
    assert_eq!(login.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        login.set_cookie(SESSION_COOKIE).is_none(),
        "no session cookie"
    );

    redis.restart();
    assert!(
        within(Duration::from_secs(10), || async {
            healthz().await == StatusCode::OK
        })
        .await,
        "healthz stayed 503 after Redis came back"
    );
    // Redis kept the session on disk: nobody was logged out.
    assert_eq!(status_with(&gw, &cookie).await, StatusCode::OK);
    gw.browser().login(ALICE, ALICE_PW).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let asked = load.await.expect("no 2xx without a session");
    assert!(asked > 10, "the load ran: {asked} requests");
}

#[tokio::test]
async fn the_primary_killed_under_three_sentinels_loses_no_confirmed_session_and_logins_come_back()
{
    let mut primary = Redis::start();
    let replica_server = Redis::replica_of(&primary);
    // Online for the primary, then loaded on the replica's side: until
    // then a login that waits for one replica is refused (503).
    assert!(
        within(Duration::from_secs(15), || async {
            let info = replica_server.cli(&["INFO", "replication"]);
            primary
                .cli(&["INFO", "replication"])
                .contains("state=online")
                && info.contains("master_link_status:up")
                && info.contains("master_sync_in_progress:0")
                && replica_server
                    .cli(&["INFO", "persistence"])
                    .contains("loading:0")
        })
        .await,
        "the replica never caught up"
    );
    let sentinels: Vec<Redis> = (0..3).map(|_| Redis::sentinel(&primary, 2)).collect();
    // Each Sentinel must know the replica and the other Sentinels.
    assert!(
        within(Duration::from_secs(20), || async {
            sentinels.iter().all(|s| {
                s.cli(&["SENTINEL", "REPLICAS", "authgate-master"])
                    .contains(&replica_server.port.to_string())
                    && s.cli(&["SENTINEL", "CKQUORUM", "authgate-master"])
                        .starts_with("OK 3")
            })
        })
        .await,
        "the sentinels never saw the replica and each other"
    );
    let upstream = Upstream::start().await;
    let nodes: Vec<String> = sentinels
        .iter()
        .map(|s| format!("\"127.0.0.1:{}\"", s.port))
        .collect();
    let store: toml::Value = toml::Value::Table(
        toml::from_str(&format!(
            "url = \"redis://authgate-master\"\nkey_prefix = \"it:\"\ntimeout = \"1s\"\n\
             min_replicas_ack = 1\n\
             [sentinel]\nmaster_name = \"authgate-master\"\nnodes = [{}]",
            nodes.join(", ")
        ))
        .expect("redis table"),
    );
    let gw = replica(store, &upstream.url()).await.start().await;
    let cookie = gw.browser().login(ALICE, ALICE_PW).await;
    assert_eq!(status_with(&gw, &cookie).await, StatusCode::OK);

    primary.stop();
    let promoted = replica_server.port.to_string();
    assert!(
        within(Duration::from_secs(30), || async {
            sentinels[0]
                .cli(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "authgate-master"])
                .contains(&promoted)
        })
        .await,
        "the replica was never promoted"
    );
    // The session the login waited to see replicated is still there.
    assert!(
        within(Duration::from_secs(10), || async {
            status_with(&gw, &cookie).await == StatusCode::OK
        })
        .await,
        "the session did not survive the failover"
    );
    // With no replica left, a login that must be held by one is refused.
    let login = gw.browser().post_login(ALICE, ALICE_PW, None).await;
    assert_eq!(login.status, StatusCode::SERVICE_UNAVAILABLE);
    // The old primary comes back; the Sentinels make it the new master's
    // replica, and logins work again.
    primary.restart();
    assert!(
        within(Duration::from_secs(30), || async {
            let login = gw.browser().post_login(ALICE, ALICE_PW, None).await;
            login.status == StatusCode::SEE_OTHER
        })
        .await,
        "logins never worked again after the failover"
    );
    assert!(
        replica_server
            .cli(&["INFO", "replication"])
            .contains("role:master"),
        "the replica is the master now"
    );
}

/// `examples/ha/nginx.conf` on a free port, in front of replicas `a` and
/// `b`; killed when dropped.
struct RoundRobin {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl RoundRobin {
    async fn start_on(port: u16, a: u16, b: u16) -> RoundRobin {
        let dir = tempfile::tempdir().expect("temp dir");
        let site = render(
            &example("ha/nginx.conf"),
            &[
                ("127.0.0.1:9091", format!("127.0.0.1:{a}")),
                ("127.0.0.1:9092", format!("127.0.0.1:{b}")),
                ("listen 8080;", format!("listen 127.0.0.1:{port};")),
            ],
        );
        let child = nginx_command(dir.path(), &site)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        let proxy = RoundRobin {
            child,
            port,
            _dir: dir,
        };
        let up = within(Duration::from_secs(10), || async {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .await;
        assert!(up, "nginx did not start");
        proxy
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for RoundRobin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A replica behind nginx: nginx's address is its public URL, the users
/// file is `users` (one file for both), and three failures ban.
async fn behind_nginx(
    redis: &Redis,
    app: &str,
    nginx_port: u16,
    users: &std::path::Path,
) -> Gateway {
    let mut setup = Setup::new(Some(app));
    setup
        .set("store.backend", "redis")
        .set("store.redis", plain(redis))
        .set(
            "server.public_url",
            format!("http://127.0.0.1:{nginx_port}"),
        )
        .set("users.file", users.to_str().unwrap())
        .set("regulation.max_failures", 3)
        .set("regulation.ban", "15m");
    setup.start().await
}

#[tokio::test]
async fn two_replicas_behind_nginx_round_robin_share_sessions_limits_and_users() {
    let redis = Redis::start();
    let app = Upstream::start().await;
    // nginx's port first: both replicas name it as their public URL.
    let nginx_port = free_port();
    let users_dir = tempfile::tempdir().unwrap();
    let users = users_dir.path().join("users.toml");
    let mut first = Setup::new(Some(&app.url()));
    first.set("users.file", users.to_str().unwrap());
    first.add_alice().await;
    let a = behind_nginx(&redis, &app.url(), nginx_port, &users).await;
    let b = behind_nginx(&redis, &app.url(), nginx_port, &users).await;
    let nginx = RoundRobin::start_on(nginx_port, a.setup().port, b.setup().port).await;

    // The login form is posted to one replica, the pages asked of both.
    let mut browser = Browser::new(&nginx.base());
    let cookie = browser.login(ALICE, ALICE_PW).await;
    for _ in 0..6 {
        let echo = browser.get("/app").await.echo();
        assert_eq!(echo.header("remote-user").as_deref(), Some(ALICE));
    }
    for gw in [&a, &b] {
        assert_eq!(status_with(gw, &cookie).await, StatusCode::OK);
    }

    // Failures split across the replicas count against one limit.
    let mut bob_tries = Vec::new();
    for (i, gw) in [&a, &b, &a].into_iter().enumerate() {
        let reply = gw
            .browser()
            .post_login(ALICE, &format!("wrong {i}"), None)
            .await;
        bob_tries.push(reply.status);
    }
    let after = b.browser().post_login(ALICE, ALICE_PW, None).await;
    assert_eq!(
        after.status,
        StatusCode::TOO_MANY_REQUESTS,
        "three failures on a, b, a must ban on b: {bob_tries:?}"
    );

    // Removed from the shared users file: refused on both within the
    // users file's reload (1 s) and the bound.
    first.remove_user(ALICE).await;
    for gw in [&a, &b] {
        assert!(
            within(Duration::from_secs(3), || async {
                status_with(gw, &cookie).await != StatusCode::OK
            })
            .await,
            "a removed user's session still worked"
        );
    }
    drop(nginx);
}

#[tokio::test]
async fn a_user_who_signs_up_on_one_replica_logs_in_on_the_other() {
    let redis = Redis::start();
    let upstream = Upstream::start().await;
    let mut with_signup = Vec::new();
    for _ in 0..2 {
        let mut setup = replica(plain(&redis), &upstream.url()).await;
        setup.set("signup.enabled", true);
        with_signup.push(setup.start().await);
    }
    let (a, b) = (&with_signup[0], &with_signup[1]);
    let mut on_a = a.browser();
    let csrf = on_a.csrf().await;
    let form = [
        ("name", "Bob Signup"),
        ("email", "bob@example.com"),
        ("country_code", ""),
        ("phone", ""),
        ("password", "bob-password-0123"),
        ("csrf", csrf.as_str()),
    ];
    let signed_up = on_a.post_form(&format!("{PREFIX}/signup"), &form).await;
    assert!(
        signed_up.status.is_success() || signed_up.status.is_redirection(),
        "{signed_up:?}"
    );
    let cookie = b
        .browser()
        .login("bob@example.com", "bob-password-0123")
        .await;
    assert_eq!(status_with(b, &cookie).await, StatusCode::OK);
}
