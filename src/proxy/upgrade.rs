//! HTTP/1.1 upgrades (WebSocket and the like): telling an upgrade request
//! apart, checking the upstream's `101`, and the tunnel that joins the
//! client's upgraded connection to the upstream's.
//!
//! The upgrade request itself is authenticated like any other request (the
//! gateway's `proxy()` path); once switched, the tunnel carries opaque bytes
//! and nothing in it is checked again. A tunnel ends when either side
//! closes, after [`TUNNEL_IDLE`] without a byte in either direction, or on
//! [`Tunnels::shutdown`].

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::UPGRADE;
use http::{HeaderMap, HeaderValue, Request, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::headers;
use crate::wire::ConnectionSlot;

/// A tunnel with no byte in either direction for this long is closed.
/// Generous on purpose: WebSocket apps commonly ping every 30–60 s, and a
/// shorter limit (nginx's 60 s `proxy_read_timeout`) is a well-known source
/// of dropped sockets. Not tied to `server.keepalive_timeout`, which is
/// about idle HTTP connections between requests.
pub const TUNNEL_IDLE: Duration = Duration::from_secs(300);

/// The protocol(s) an HTTP/1.1 request asks to switch to, of those in
/// `allowed` (`server.allowed_upgrades`, lower case): only with a
/// `Connection` header naming `upgrade` and an `Upgrade` header (hyper
/// upgrades HTTP/1.1 connections only; HTTP/1.0 and h2 requests are
/// ordinary requests whose `Upgrade` is stripped as hop-by-hop). `None`
/// when no allowed protocol is offered: the request then goes upstream as
/// plain HTTP/1.1, without `Upgrade`, so no other protocol (h2c) can open a
/// tunnel past the gateway's checks.
pub fn requested<B>(req: &Request<B>, allowed: &[String]) -> Option<HeaderValue> {
    let offered = requested_in(req.version(), req.headers())?;
    allowed_only(offered, allowed)
}

/// `offered` with only the allowed protocols (by name, any version and
/// letter case); shared as it is when all are allowed, as WebSocket
/// handshakes are.
fn allowed_only(offered: HeaderValue, allowed: &[String]) -> Option<HeaderValue> {
    let list = offered.to_str().ok()?;
    let is_allowed = |protocol: &&str| {
        let name = protocol.split_once('/').map_or(*protocol, |(name, _)| name);
        allowed.iter().any(|a| a.eq_ignore_ascii_case(name.trim()))
    };
    let mut protocols = list.split(',').map(str::trim).filter(|p| !p.is_empty());
    if protocols.clone().all(|p| is_allowed(&p)) {
        return protocols.next().is_some().then_some(offered);
    }
    let kept: Vec<&str> = protocols.filter(is_allowed).collect();
    if kept.is_empty() {
        return None;
    }
    HeaderValue::from_str(&kept.join(", ")).ok()
}

fn requested_in(version: Version, headers: &HeaderMap) -> Option<HeaderValue> {
    if version != Version::HTTP_11 || !headers::connection_has(headers, "upgrade") {
        return None;
    }
    headers
        .get(UPGRADE)
        .filter(|v| !v.as_bytes().iter().all(u8::is_ascii_whitespace))
        .cloned()
}

/// Whether the upstream switched to a protocol the client offered
/// (`Upgrade` may list several; RFC 9110 7.8). Compared by name, without
/// letter case.
pub fn accepted(asked: &HeaderValue, answered: &HeaderValue) -> bool {
    let Ok(answered) = answered.to_str() else {
        return false;
    };
    let answered = answered.trim();
    !answered.is_empty()
        && asked.to_str().is_ok_and(|list| {
            list.split(',')
                .any(|p| p.trim().eq_ignore_ascii_case(answered))
        })
}

/// The open tunnels of this process. Their tasks outlive the HTTP
/// connection that started them (hyper's connection future resolves when
/// it hands the socket over), so graceful shutdown cannot see them: the
/// gateway's `Handler::shutdown_upgraded` calls [`Tunnels::shutdown`] for
/// that.
pub struct Tunnels {
    tracker: TaskTracker,
    stop: CancellationToken,
}

static TUNNELS: LazyLock<Tunnels> = LazyLock::new(|| Tunnels {
    tracker: TaskTracker::new(),
    stop: CancellationToken::new(),
});

/// The process's tunnels.
pub fn tunnels() -> &'static Tunnels {
    &TUNNELS
}

impl Tunnels {
    /// How many tunnels are open (or waiting for both sides to switch).
    pub fn len(&self) -> usize {
        self.tracker.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tracker.is_empty()
    }

    /// Closes every tunnel and waits until their tasks are gone. A tunnel
    /// asked for afterwards closes right after its `101`. Bound the wait
    /// from outside, as with the HTTP connections.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }

    /// Joins the two halves once both have switched, in a tracked task
    /// that holds the client connection's slot until the tunnel closes.
    pub(super) fn open(
        &self,
        client: OnUpgrade,
        upstream: OnUpgrade,
        slot: Option<ConnectionSlot>,
    ) {
        let stop = self.stop.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                end = run(client, upstream) => tracing::debug!(end, "tunnel closed"),
                () = stop.cancelled() => tracing::debug!("tunnel closed for shutdown"),
            }
            drop(slot);
        });
    }
}

async fn run(client: OnUpgrade, upstream: OnUpgrade) -> &'static str {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(halves) => halves,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade did not complete");
            return "upgrade failed";
        }
    };
    let activity = Arc::new(Activity::new());
    let mut client = Watched {
        io: TokioIo::new(client),
        activity: activity.clone(),
    };
    let mut upstream = TokioIo::new(upstream);
    let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
    tokio::pin!(copy);
    loop {
        let deadline = activity.last() + TUNNEL_IDLE;
        tokio::select! {
            done = &mut copy => return match done {
                Ok(_) => "closed by a side",
                Err(e) => {
                    tracing::debug!(error = %e, "tunnel I/O error");
                    "I/O error"
                }
            },
            () = tokio::time::sleep_until(deadline) => {
                if activity.last() + TUNNEL_IDLE <= Instant::now() {
                    return "idle timeout";
                }
            }
        }
    }
}

/// When a byte last moved through the tunnel, as milliseconds since the
/// tunnel opened.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// The client side of the tunnel: every byte read from it (client to
/// upstream) or written to it (upstream to client) counts as activity, so
/// one wrapper sees both directions.
struct Watched<T> {
    io: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::CONNECTION;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn an_upgrade_needs_http11_connection_upgrade_and_an_upgrade_header() {
        let ws = headers(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
        ]);
        assert_eq!(
            requested_in(Version::HTTP_11, &ws)
                .as_ref()
                .map(HeaderValue::as_bytes),
            Some(&b"websocket"[..])
        );
        assert_eq!(requested_in(Version::HTTP_10, &ws), None);
        assert_eq!(requested_in(Version::HTTP_2, &ws), None);

        let no_token = headers(&[("connection", "keep-alive"), ("upgrade", "websocket")]);
        assert_eq!(requested_in(Version::HTTP_11, &no_token), None);
        let no_upgrade = headers(&[("connection", "upgrade")]);
        assert_eq!(requested_in(Version::HTTP_11, &no_upgrade), None);
        let blank = headers(&[("connection", "upgrade"), ("upgrade", " ")]);
        assert_eq!(requested_in(Version::HTTP_11, &blank), None);
        let split = headers(&[
            ("connection", "keep-alive"),
            ("connection", "upgrade"),
            ("upgrade", "websocket"),
        ]);
        assert!(requested_in(Version::HTTP_11, &split).is_some());
        assert!(!split.get(CONNECTION).unwrap().is_empty());
    }

    #[test]
    fn only_allowed_protocols_are_kept() {
        let allowed = ["websocket".to_owned()];
        let only = |offered: &'static str| {
            allowed_only(HeaderValue::from_static(offered), &allowed)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        assert_eq!(only("websocket").as_deref(), Some("websocket"));
        assert_eq!(only("WebSocket").as_deref(), Some("WebSocket"));
        assert_eq!(only("h2c"), None);
        assert_eq!(only("H2C, HTTP/2.0"), None);
        assert_eq!(only("h2c, websocket").as_deref(), Some("websocket"));
        assert_eq!(only("websocket/13, irc").as_deref(), Some("websocket/13"));
        assert_eq!(only(" , "), None);
        assert_eq!(
            allowed_only(HeaderValue::from_static("websocket"), &[]),
            None
        );
    }

    #[test]
    fn the_upstream_must_switch_to_an_offered_protocol() {
        let asked = HeaderValue::from_static("h2c, WebSocket");
        assert!(accepted(&asked, &HeaderValue::from_static("websocket")));
        assert!(accepted(&asked, &HeaderValue::from_static(" h2c ")));
        assert!(!accepted(&asked, &HeaderValue::from_static("irc")));
        assert!(!accepted(&asked, &HeaderValue::from_static("")));
    }

    #[tokio::test]
    async fn activity_moves_the_idle_deadline() {
        let activity = Activity::new();
        let opened = activity.last();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(activity.last(), opened);
        activity.touch();
        assert!(activity.last() >= opened + Duration::from_millis(20));
    }
}
