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
    let (gw, b) = alice_logged_in(&upstream.url()).await;

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
    let (gw, b) = alice_logged_in(&upstream.url()).await;
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
    let (gw, b) = alice_logged_in(&upstream.url()).await;
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

/// An upstream that switches to h2c whenever asked (as an h2c-capable app
/// would) and otherwise answers every request head with 200 and the head
/// as the body. Records every head it receives.
struct H2cUpstream {
    addr: std::net::SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl H2cUpstream {
    async fn start() -> H2cUpstream {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the h2c upstream");
        let addr = listener.local_addr().expect("upstream addr");
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = heads.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head: Vec<u8> = buf.drain(..end + 4).collect();
                            let head = String::from_utf8_lossy(&head).into_owned();
                            seen.lock().unwrap().push(head.clone());
                            let answer = if head.to_ascii_lowercase().contains("upgrade: h2c") {
                                "HTTP/1.1 101 Switching Protocols\r\n\
                                 Connection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
                                    .to_owned()
                            } else {
                                format!(
                                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{head}",
                                    head.len()
                                )
                            };
                            if stream.write_all(answer.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                });
            }
        });
        H2cUpstream { addr, heads, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

impl Drop for H2cUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One response from a kept-alive connection: status line and headers
/// (lower-case names), and the body its `Content-Length` frames.
async fn read_response(stream: &mut tokio::net::TcpStream) -> (u16, String, String) {
    use tokio::io::AsyncReadExt;
    let read = async {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).await?;
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse::<usize>().unwrap());
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body).await?;
        Ok::<_, std::io::Error>((head, String::from_utf8_lossy(&body).into_owned()))
    };
    let (head, body) = tokio::time::timeout(WS_TIMEOUT, read)
        .await
        .expect("an answer within 10 s")
        .expect("an answer");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad head {head:?}"));
    (status, head, body)
}

/// Issue 13 item 4: `Upgrade: h2c` is not in `server.allowed_upgrades`, so
/// it never reaches the app (nor does `HTTP2-Settings`): no tunnel opens,
/// and the next request on the connection is checked by the gateway.
#[tokio::test]
async fn an_h2c_upgrade_is_forwarded_as_plain_http_and_opens_no_tunnel() {
    use tokio::io::AsyncWriteExt;
    let upstream = H2cUpstream::start().await;
    let (gw, b) = alice_logged_in(&upstream.url()).await;
    let port = gw.setup().port;

    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let upgrade = format!(
        "GET /first HTTP/1.1\r\n\
         Host: 127.0.0.1:{port}\r\n\
         Cookie: {cookies}\r\n\
         Connection: Upgrade\r\n\
         Upgrade: h2c\r\n\
         HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\
         \r\n",
        cookies = b.cookie_header()
    );
    conn.write_all(upgrade.as_bytes()).await.unwrap();
    let (status, head, body) = read_response(&mut conn).await;
    assert_eq!(status, 200, "{head}{body}");
    assert!(body.starts_with("GET /first "), "{body}");

    // No cookie: outside a tunnel the gateway sends this to the login page.
    let anonymous =
        format!("GET /second HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/html\r\n\r\n");
    conn.write_all(anonymous.as_bytes()).await.unwrap();
    let (status, head, body) = read_response(&mut conn).await;
    assert_eq!(status, 302, "{head}{body}");
    assert!(
        head.contains(
            &format!("location: {}", login_redirect(&gw.base(), "/second")).to_ascii_lowercase()
        ),
        "{head}"
    );

    let heads = upstream.heads();
    assert_eq!(heads.len(), 1, "{heads:?}");
    let seen = heads[0].to_ascii_lowercase();
    assert!(!seen.contains("h2c"), "{seen}");
    assert!(!seen.contains("http2-settings"), "{seen}");
    assert!(!seen.contains("upgrade"), "{seen}");
}

/// One WebSocket through the gateway, retried while the gateway answers
/// 503 (a slot still held by a connection that is closing).
async fn open_tunnel(
    gw: &Gateway,
    cookies: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    for _ in 0..100 {
        let req = ws_request(gw, "/ws", &[("cookie", cookies)]);
        match tokio::time::timeout(WS_TIMEOUT, tokio_tungstenite::connect_async(req))
            .await
            .expect("handshake within 10 s")
        {
            Ok((mut ws, _)) => {
                ws.send(Message::text("open?")).await.expect("send");
                let echoed = tokio::time::timeout(WS_TIMEOUT, ws.next()).await;
                assert!(matches!(echoed, Ok(Some(Ok(_)))), "{echoed:?}");
                return ws;
            }
            Err(WsError::Http(r)) if r.status() == StatusCode::SERVICE_UNAVAILABLE => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(other) => panic!("the upgrade failed: {other:?}"),
        }
    }
    panic!("no connection slot came free in 5 s");
}

/// Issue 13 item 5: an open tunnel keeps its connection slot, so tunnels
/// cannot exceed `server.max_connections`; closing one frees its slot.
#[tokio::test]
async fn websocket_tunnels_keep_their_connection_slots() {
    const SLOTS: usize = 4;
    let upstream = WsEcho::start().await;
    let mut setup = Setup::new(Some(&upstream.url()));
    setup.set("server.max_connections", SLOTS as i64);
    setup.add_alice().await;
    let gw = setup.start().await;
    let mut b = gw.browser();
    b.login(ALICE, ALICE_PW).await;
    let cookies = b.cookie_header();
    // The browser's kept-alive connection gives its slot back as it closes.
    drop(b);

    let mut tunnels = Vec::new();
    for _ in 0..SLOTS {
        tunnels.push(open_tunnel(&gw, &cookies).await);
    }
    let port = gw.setup().port;
    let request = format!(
        "GET {PREFIX}/healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    );
    let extra = raw_request(port, request.as_bytes()).await;
    assert_eq!(
        extra.status, 503,
        "{SLOTS} open tunnels, max_connections {SLOTS}, and one more connection was served: {extra:?}"
    );

    let mut first = tunnels.remove(0);
    first.close(None).await.expect("close");
    drop(first);
    let served = eventually(100, Duration::from_millis(50), || async {
        raw_request(port, request.as_bytes()).await.status == 200
    })
    .await;
    assert!(served, "a closed tunnel did not give its slot back");
    // The others are still open.
    for ws in &mut tunnels {
        ws.send(Message::text("still here")).await.expect("send");
        let echoed = tokio::time::timeout(WS_TIMEOUT, ws.next()).await;
        assert!(matches!(echoed, Ok(Some(Ok(_)))), "{echoed:?}");
    }
}
