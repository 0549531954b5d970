//! Issue item 4: WebSockets (HTTP/1.1 upgrades) through the gateway. The
//! upgrade request is checked like any other request; a confirmed session
//! gets a tunnel to the upstream, anyone else a 401 (a WebSocket client
//! cannot follow a redirect to the login page).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::HeaderMap;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::support::*;

const WS_TIMEOUT: Duration = Duration::from_secs(10);

/// A WebSocket server on 127.0.0.1:0 that echoes every text and binary
/// message and records the handshake headers it received.
struct WsEcho {
    addr: std::net::SocketAddr,
    handshakes: Arc<Mutex<Vec<HeaderMap>>>,
    task: JoinHandle<()>,
}

impl WsEcho {
    // tungstenite's handshake callback returns its (large) error response
    // by value; that is its API, not ours.
    #[allow(clippy::result_large_err)]
    async fn start() -> WsEcho {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the WebSocket upstream");
        let addr = listener.local_addr().expect("upstream addr");
        let handshakes = Arc::new(Mutex::new(Vec::new()));
        let seen = handshakes.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let seen = seen.clone();
                tokio::spawn(async move {
                    let record = |req: &Request, resp: Response| {
                        seen.lock().unwrap().push(req.headers().clone());
                        Ok(resp)
                    };
                    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, record).await
                    else {
                        return;
                    };
                    while let Some(Ok(msg)) = ws.next().await {
                        if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        WsEcho {
            addr,
            handshakes,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn handshakes(&self) -> Vec<HeaderMap> {
        self.handshakes.lock().unwrap().clone()
    }
}

impl Drop for WsEcho {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A `ws://` handshake request to the gateway with extra headers.
fn ws_request(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> http::Request<()> {
    let url = format!("ws://127.0.0.1:{}{path}", gw.setup().port);
    let mut req = url.into_client_request().expect("a ws request");
    for (name, value) in headers {
        req.headers_mut().append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::HeaderValue::from_str(value).unwrap(),
        );
    }
    req
}

#[tokio::test]
async fn websocket_echoes_through_the_gateway_for_a_confirmed_session() {
    let upstream = WsEcho::start().await;
    let setup = Setup::new(Some(&upstream.url()));
    setup.add_alice().await;
    let gw = setup.start().await;
    let mut b = gw.browser();
    b.login(ALICE, ALICE_PW).await;

    // A forged identity rides along in every spelling; only the gateway's
    // own values may reach the upstream.
    let req = ws_request(
        &gw,
        "/ws/chat?room=1",
        &[
            ("cookie", &b.cookie_header()),
            ("remote-user", "mallory@evil.example"),
            ("remote_user", "mallory@evil.example"),
            ("remote-groups", "admins"),
        ],
    );
    let (mut ws, response) =
        tokio::time::timeout(WS_TIMEOUT, tokio_tungstenite::connect_async(req))
            .await
            .expect("handshake within 10 s")
            .expect("the upgrade succeeds");
    // tungstenite checked Sec-WebSocket-Accept: the 101 came through intact.
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);

    for text in ["hello", "second message"] {
        ws.send(Message::text(text)).await.expect("send");
        let echoed = tokio::time::timeout(WS_TIMEOUT, ws.next())
            .await
            .expect("echo within 10 s")
            .expect("the tunnel is open")
            .expect("a message");
        assert_eq!(echoed.into_text().expect("text").as_str(), text);
    }
    let blob: Vec<u8> = (0..=255u8).cycle().take(200_000).collect();
    ws.send(Message::binary(blob.clone())).await.expect("send");
    let echoed = tokio::time::timeout(WS_TIMEOUT, ws.next())
        .await
        .expect("echo within 10 s")
        .expect("the tunnel is open")
        .expect("a message");
    assert_eq!(echoed.into_data().as_ref(), blob.as_slice());
    ws.close(None).await.expect("close");

    let handshakes = upstream.handshakes();
    assert_eq!(handshakes.len(), 1, "{handshakes:?}");
    let h = &handshakes[0];
    let all = |name: &str| -> Vec<String> {
        h.get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(all("remote-user"), [ALICE]);
    assert_eq!(all("remote-email"), [ALICE]);
    assert_eq!(all("remote-groups"), ["a,b"]);
    assert!(all("remote_user").is_empty(), "{h:?}");
    let everything = format!("{h:?}");
    assert!(!everything.contains("mallory"), "{everything}");
    assert!(!everything.contains("admins"), "{everything}");
    // The gateway's cookie is the credential: it never reaches the upstream.
    assert!(!everything.contains(SESSION_COOKIE), "{everything}");
    assert!(
        all("connection")[0].eq_ignore_ascii_case("upgrade"),
        "{h:?}"
    );
    assert_eq!(all("upgrade"), ["websocket"]);
    assert_eq!(all("x-forwarded-for"), ["127.0.0.1"]);
}

async fn refused(gw: &Gateway, headers: &[(&str, &str)]) -> http::Response<Option<Vec<u8>>> {
    let req = ws_request(gw, "/ws", headers);
    match tokio::time::timeout(WS_TIMEOUT, tokio_tungstenite::connect_async(req))
        .await
        .expect("an answer within 10 s")
    {
        Err(WsError::Http(response)) => *response,
        Err(other) => panic!("expected an HTTP answer, got {other:?}"),
        Ok((_, response)) => panic!("the upgrade went through: {response:?}"),
    }
}

fn json_body(response: &http::Response<Option<Vec<u8>>>) -> Value {
    let body = response.body().as_deref().unwrap_or_default();
    serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!("not JSON ({e}): {}", String::from_utf8_lossy(body));
    })
}

#[tokio::test]
async fn an_upgrade_without_a_session_gets_401_and_never_reaches_the_upstream() {
    let upstream = WsEcho::start().await;
    let setup = Setup::new(Some(&upstream.url()));
    setup.add_alice().await;
    let gw = setup.start().await;

    // Even when it says it accepts HTML (as browsers' WebSocket handshakes
    // may), the answer is a 401, not a redirect it cannot follow.
    for headers in [
        vec![],
        vec![("accept", "text/html,*/*")],
        vec![("cookie", "authgate_session=forged-session-id")],
    ] {
        let response = refused(&gw, &headers).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{headers:?}");
        assert!(response.headers().get("location").is_none(), "{response:?}");
        assert_eq!(json_body(&response)["error"], json!("login_required"));
    }

    // A logged-out session is no better than none.
    let mut b = gw.browser();
    b.login(ALICE, ALICE_PW).await;
    let cookies = b.cookie_header();
    b.logout().await;
    let response = refused(&gw, &[("cookie", &cookies)]).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    assert!(
        upstream.handshakes().is_empty(),
        "{:?}",
        upstream.handshakes()
    );
}

#[tokio::test]
async fn an_upgrade_with_a_body_is_refused() {
    let upstream = WsEcho::start().await;
    let setup = Setup::new(Some(&upstream.url()));
    setup.add_alice().await;
    let gw = setup.start().await;
    let mut b = gw.browser();
    b.login(ALICE, ALICE_PW).await;
    let port = gw.setup().port;
    let request = format!(
        "GET /ws HTTP/1.1\r\n\
         Host: 127.0.0.1:{port}\r\n\
         Accept: application/json\r\n\
         Cookie: {cookies}\r\n\
         Connection: Upgrade, close\r\n\
         Upgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Content-Length: 5\r\n\
         \r\n\
         hello",
        cookies = b.cookie_header()
    );
    let raw = raw_request(port, request.as_bytes()).await;
    assert_eq!(raw.status, 400, "{raw:?}");
    assert!(upstream.handshakes().is_empty());
}

/// An upstream that does not switch answers normally, and that answer is
/// relayed as it is; the request it saw asked for the upgrade.
#[tokio::test]
async fn an_upstream_that_declines_the_upgrade_is_relayed() {
    let upstream = Upstream::start().await;
    let setup = Setup::new(Some(&upstream.url()));
    setup.add_alice().await;
    let gw = setup.start().await;
    let mut b = gw.browser();
    b.login(ALICE, ALICE_PW).await;
    let port = gw.setup().port;
    let request = format!(
        "GET /not-a-socket HTTP/1.1\r\n\
         Host: 127.0.0.1:{port}\r\n\
         Cookie: {cookies}\r\n\
         Remote-User: mallory\r\n\
         Connection: Upgrade, close, X-Hop\r\n\
         X-Hop: secret\r\n\
         Upgrade: websocket\r\n\
         \r\n",
        cookies = b.cookie_header()
    );
    let raw = raw_request(port, request.as_bytes()).await;
    assert_eq!(raw.status, 200, "{raw:?}");
    let echo = Echo(serde_json::from_str(&raw.body).expect("the upstream's echo"));
    assert_eq!(echo.header("upgrade").as_deref(), Some("websocket"));
    assert_eq!(echo.header("connection").as_deref(), Some("upgrade"));
    assert_eq!(echo.header("remote-user").as_deref(), Some(ALICE));
    assert!(echo.header_all("x-hop").is_empty(), "{:?}", echo.0);
    assert_eq!(upstream.hits(), 1);
}

/// A tunnel outlives the HTTP connection that opened it, so graceful
/// shutdown does not wait on it: SIGTERM with a WebSocket open still stops
/// the gateway, and the client sees its socket close.
#[tokio::test]
async fn an_open_websocket_does_not_keep_the_gateway_from_stopping() {
    let upstream = WsEcho::start().await;
    let setup = Setup::new(Some(&upstream.url()));
    setup.add_alice().await;
    let mut gw = setup.start().await;
    let mut b = gw.browser();
    b.login(ALICE, ALICE_PW).await;
    let req = ws_request(&gw, "/ws", &[("cookie", &b.cookie_header())]);
    let (mut ws, _) = tokio::time::timeout(WS_TIMEOUT, tokio_tungstenite::connect_async(req))
        .await
        .expect("handshake within 10 s")
        .expect("the upgrade succeeds");
    ws.send(Message::text("ping")).await.expect("send");
    let echoed = tokio::time::timeout(WS_TIMEOUT, ws.next()).await;
    assert!(matches!(echoed, Ok(Some(Ok(_)))), "{echoed:?}");

    let status = gw.stop().await;
    assert!(status.success(), "{status:?}\n{}", gw.stderr());
    let after = tokio::time::timeout(WS_TIMEOUT, ws.next())
        .await
        .expect("the client learns the tunnel is gone");
    assert!(
        !matches!(after, Some(Ok(Message::Text(_) | Message::Binary(_)))),
        "{after:?}"
    );
}
