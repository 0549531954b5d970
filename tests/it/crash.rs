//! Crash safety: `kill -9` of the gateway under load, then a restart on the
//! same store. Every session confirmed more than `store.flush_interval`
//! before the kill still reaches the upstream; so does the one confirmed
//! just before it, because a new session is flushed before its cookie goes
//! out.
//!
//! The test owns the `authgate serve` process here (the harness's gateway
//! only stops gracefully), so the kill is a real SIGKILL: no shutdown
//! flush, no destructors.

use std::os::unix::process::ExitStatusExt;
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::StatusCode;

use crate::support::*;

const SESSIONS: usize = 12;

async fn wait_ready(setup: &Setup, child: &mut Child) {
    let url = format!("{}{PREFIX}/healthz", setup.base());
    let client = client();
    let ready = eventually(200, Duration::from_millis(50), || {
        let request = client.get(&url).send();
        async move { request.await.is_ok_and(|r| r.status() == StatusCode::OK) }
    })
    .await;
    if !ready {
        let _ = child.kill();
        let _ = child.wait();
        let log = std::fs::read_to_string(setup.stderr_path()).unwrap_or_default();
        panic!("the gateway did not become ready; stderr:\n{log}");
    }
}

/// Kills the child on drop, whatever the test did.
struct Killed(Option<Child>);

impl Drop for Killed {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A light, bounded request load: sessions' requests and anonymous ones,
/// until told to stop. Errors (while the gateway is down) are expected.
fn start_load(base: String, cookies: Arc<std::sync::Mutex<Vec<String>>>) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let (flag, count) = (stop.clone(), sent.clone());
    let task = tokio::spawn(async move {
        let client = client();
        for i in 0..20_000usize {
            if flag.load(Ordering::SeqCst) {
                break;
            }
            let cookie = {
                let cookies = cookies.lock().unwrap();
                (!cookies.is_empty()).then(|| cookies[i % cookies.len()].clone())
            };
            let mut request = client.get(format!("{base}/load/{i}"));
            if let Some(cookie) = cookie.filter(|_| i % 4 != 0) {
                request = request.header("cookie", format!("{SESSION_COOKIE}={cookie}"));
            }
            let _ = request.send().await;
            count.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    Load { stop, sent, task }
}

struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    async fn finish(self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.task.await;
        self.sent.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn sessions_confirmed_before_a_kill_9_survive_the_restart() {
    let upstream = Upstream::start().await;
    let mut setup = Setup::new(Some(&upstream.url()));
    setup
        .set("store.flush_interval", "1s")
        .set("metrics.listen", "");
    setup.add_alice().await;
    let mut gateway = Killed(Some(spawn_serve(&setup)));
    wait_ready(&setup, gateway.0.as_mut().unwrap()).await;

    let cookies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let load = start_load(setup.base(), cookies.clone());
    for _ in 0..SESSIONS {
        let mut b = Browser::new(&setup.base());
        let cookie = b.login(ALICE, ALICE_PW).await;
        assert_eq!(b.get("/confirmed").await.status, StatusCode::OK);
        cookies.lock().unwrap().push(cookie);
    }
    // More than store.flush_interval after the last confirmed session.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // And one confirmed right before the kill: flushed before its cookie.
    let mut last = Browser::new(&setup.base());
    let last_cookie = last.login(ALICE, ALICE_PW).await;

    let mut child = gateway.0.take().unwrap();
    child.kill().expect("kill -9 the gateway");
    let status = child.wait().expect("reap the gateway");
    assert_eq!(
        status.signal(),
        Some(9),
        "not killed by SIGKILL: {status:?}"
    );
    let sent = load.finish().await;
    assert!(sent > 50, "the load ran only {sent} requests");
    let log = std::fs::read_to_string(setup.stderr_path()).unwrap_or_default();
    assert!(
        !log.contains("authgate stopped"),
        "a graceful stop ran:\n{log}"
    );

    gateway.0 = Some(spawn_serve(&setup));
    wait_ready(&setup, gateway.0.as_mut().unwrap()).await;
    let mut all = cookies.lock().unwrap().clone();
    all.push(last_cookie);
    for (i, cookie) in all.iter().enumerate() {
        let mut b = Browser::new(&setup.base());
        b.set_cookie_value(SESSION_COOKIE, cookie);
        let r = b.get(&format!("/after-crash/{i}")).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "session {i} of {} was lost in the crash: {r:?}",
            all.len()
        );
        assert_eq!(r.echo().header("remote-user").as_deref(), Some(ALICE));
    }
    drop(gateway);
}
