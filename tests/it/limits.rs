//! Test 11: `server.max_form_bytes` bounds portal posts (413), whether the
//! size is declared or the body is chunked.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn portal_posts_larger_than_max_form_bytes_get_413() {
    let upstream = Upstream::start().await;
    let mut setup = Setup::new(Some(&upstream.url()));
    setup.set("server.max_form_bytes", 1024);
    setup.add_alice().await;
    let gw = setup.start().await;
    let login = format!("{PREFIX}/login");
    let mut b = gw.browser();
    let csrf = b.csrf().await;
    let padding = "x".repeat(4096);

    let big_form = [
        ("email", ALICE),
        ("password", ALICE_PW),
        ("csrf", csrf.as_str()),
        ("padding", padding.as_str()),
    ];
    let r = b
        .send(b.request(Method::POST, &login).form(&big_form))
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{r:?}");
    assert!(r.set_cookie(SESSION_COOKIE).is_none(), "{r:?}");

    let r = b
        .send(
            b.request(Method::POST, &login)
                .header("accept", "application/json")
                .header("x-csrf-token", &csrf)
                .json(&json!({"email": ALICE, "password": ALICE_PW, "padding": padding})),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{r:?}");
    assert_eq!(r.json()["error"], json!("payload_too_large"));

    // Chunked, so no Content-Length to refuse up front.
    let port = gw.setup().port;
    let body = serde_urlencoded_form(&big_form);
    let mut request = format!(
        "POST {login} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        b.cookie_header()
    )
    .into_bytes();
    request.extend(chunked(body.as_bytes(), 512));
    let raw = raw_request(port, &request).await;
    assert_eq!(raw.status, 413, "{raw:?}");
    assert!(
        !raw.headers
            .iter()
            .any(|(n, v)| n == "set-cookie" && v.starts_with(SESSION_COOKIE)),
        "{raw:?}"
    );
    assert!(b.cookie(SESSION_COOKIE).is_none());

    // A normal-sized login still works, and so does the logout limit.
    b.login(ALICE, ALICE_PW).await;
    let r = b
        .send(
            b.request(Method::POST, &format!("{PREFIX}/logout"))
                .form(&[("csrf", csrf.as_str()), ("padding", padding.as_str())]),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{r:?}");
    assert_eq!(b.get("/still-in").await.status, StatusCode::OK);
    assert_eq!(upstream.hits(), 1);
}

fn serde_urlencoded_form(pairs: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

#[tokio::test]
async fn oversized_heads_get_431_and_excess_connections_503() {
    let upstream = Upstream::start().await;
    let mut setup = Setup::new(Some(&upstream.url()));
    setup
        .set("server.max_header_bytes", 8192)
        .set("server.max_connections", 2);
    setup.add_alice().await;
    let gw = setup.start().await;
    let port = gw.setup().port;

    let big = "y".repeat(32 * 1024);
    let request = format!(
        "GET {PREFIX}/healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Big: {big}\r\n\
         Connection: close\r\n\r\n"
    );
    let raw = raw_request(port, request.as_bytes()).await;
    assert_eq!(raw.status, 431, "{raw:?}");

    // Two kept-alive connections take both slots; the third is refused
    // with 503.
    let first = held_connection(port).await;
    let second = held_connection(port).await;
    let request = format!(
        "GET {PREFIX}/healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    );
    let third = raw_request(port, request.as_bytes()).await;
    assert_eq!(
        third.status, 503,
        "a third connection was served: {third:?}"
    );
    drop((first, second));
    let served = eventually(100, std::time::Duration::from_millis(50), || async {
        raw_request(port, request.as_bytes()).await.status == 200
    })
    .await;
    assert!(served, "slots are not given back when connections close");
}

/// Slowloris: a client that never finishes its request head is cut off
/// after `server.header_read_timeout`, and the event is logged.
#[tokio::test]
async fn an_unfinished_request_head_is_closed_after_the_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut setup = Setup::new(None);
    setup.set("server.header_read_timeout", "1s");
    setup.add_alice().await;
    let gw = setup.start().await;
    let port = gw.setup().port;
    let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    slow.write_all(format!("GET {PREFIX}/healthz HTTP/1.1\r\nHost: x\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), slow.read(&mut buf))
        .await
        .expect("the gateway kept a half-sent request open for 10 s");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "expected a closed connection, got {read:?}"
    );
    let logged = eventually(40, std::time::Duration::from_millis(50), || async {
        gw.stderr().contains("server.header_read_timeout")
    })
    .await;
    assert!(logged, "not logged:\n{}", gw.stderr());
}

/// A kept-alive connection that holds one of the gateway's connection
/// slots: it has had an answer. A connection that came while an earlier
/// one (the one before, closing) still held its slot gets 503 and is
/// closed; it is tried again.
async fn held_connection(port: u16) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!("GET {PREFIX}/healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    for _ in 0..100 {
        let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let mut status = [0u8; 12];
        let answered = conn.write_all(request.as_bytes()).await.is_ok()
            && conn.read_exact(&mut status).await.is_ok();
        if answered && &status == b"HTTP/1.1 200" {
            return conn;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no connection slot came free in 5 s");
}

/// Issue 13 item 6: a forward-auth head of every size around
/// `server.max_header_bytes`, sent in one write, gets the same status from
/// the listener's fast path (kept alive) as from hyper (`Connection:
/// close`, which the fast path leaves to hyper): up to the limit the
/// gateway's answer, above it 431.
#[tokio::test]
async fn forward_auth_heads_around_the_limit_get_the_same_status_either_way() {
    const LIMIT: usize = 16384;
    let mut setup = Setup::new(None);
    setup.set("server.max_header_bytes", LIMIT as i64);
    setup.add_alice().await;
    let gw = setup.start().await;
    let port = gw.setup().port;
    for size in LIMIT - 2..=LIMIT + 3000 {
        let fast = one_status(port, &auth_request_head(port, size, "")).await;
        let close = auth_request_head(port, size, "Connection: close\r\n");
        let hyper = one_status(port, &close).await;
        assert_eq!(fast, hyper, "a head of {size} bytes");
        let expected = if size <= LIMIT { 401 } else { 431 };
        assert_eq!(hyper, expected, "a head of {size} bytes");
    }
}

/// Issue 13 item 6: a connection that began as HTTP/1.1 never becomes
/// h2. After a fast-path answer, the HTTP/2 preface gets no SETTINGS frame
/// and the connection is closed; on a fresh connection h2c by prior
/// knowledge still works.
#[tokio::test]
async fn an_h2_preface_after_a_fast_path_answer_does_not_switch_to_h2() {
    use tokio::io::AsyncWriteExt;
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    /// An empty SETTINGS frame: length 0, type 4, no flags, stream 0.
    const SETTINGS: [u8; 9] = [0, 0, 0, 4, 0, 0, 0, 0, 0];
    let setup = Setup::new(None);
    setup.add_alice().await;
    let gw = setup.start().await;
    let port = gw.setup().port;
    let h2_start = [PREFACE, &SETTINGS].concat();

    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let first = auth_request_head(port, 0, "");
    conn.write_all(first.as_bytes()).await.unwrap();
    assert_eq!(read_one_status(&mut conn).await, 401);
    conn.write_all(&h2_start).await.unwrap();
    let (rest, closed) = read_until_closed(&mut conn).await;
    assert!(
        rest.is_empty() || rest.starts_with(b"HTTP/1.1 "),
        "an HTTP/2 answer: {rest:?}"
    );
    assert!(closed, "still open after {rest:?}");

    let mut fresh = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    fresh.write_all(&h2_start).await.unwrap();
    let mut frame = [0u8; 9];
    tokio::io::AsyncReadExt::read_exact(&mut fresh, &mut frame)
        .await
        .unwrap();
    assert_eq!(frame[3], 4, "h2c by prior knowledge: {frame:?}");
}

/// An anonymous nginx `auth_request` head (401) of exactly `size` bytes,
/// padded with `X-Pad`, or unpadded for a `size` of 0; `extra` goes in
/// before the padding.
fn auth_request_head(port: u16, size: usize, extra: &str) -> String {
    let head = format!(
        "GET {PREFIX}/auth-request HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         X-Original-URL: http://app.example.com/\r\n{extra}"
    );
    if size == 0 {
        return head + "\r\n";
    }
    let padding = size - head.len() - "X-Pad: \r\n\r\n".len();
    let head = format!("{head}X-Pad: {}\r\n\r\n", "p".repeat(padding));
    assert_eq!(head.len(), size);
    head
}

/// The status of the one answer to `head`, sent in one write on a new
/// connection.
async fn one_status(port: u16, head: &str) -> u16 {
    use tokio::io::AsyncWriteExt;
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    conn.write_all(head.as_bytes()).await.unwrap();
    read_one_status(&mut conn).await
}

/// Reads one response head and returns its status.
async fn read_one_status(conn: &mut tokio::net::TcpStream) -> u16 {
    use tokio::io::AsyncReadExt;
    let mut seen = Vec::new();
    let read = async {
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut chunk = [0u8; 1024];
            let n = conn.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed after {seen:?}");
            seen.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), read)
        .await
        .expect("answered within 10 s");
    let status = String::from_utf8_lossy(&seen[9..12]).into_owned();
    status.parse().unwrap()
}

/// What the gateway sends until it closes the connection, and whether it
/// did within 5 s.
async fn read_until_closed(conn: &mut tokio::net::TcpStream) -> (Vec<u8>, bool) {
    use tokio::io::AsyncReadExt;
    let mut seen = Vec::new();
    let read = async {
        loop {
            let mut chunk = [0u8; 1024];
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let closed = tokio::time::timeout(std::time::Duration::from_secs(5), read)
        .await
        .is_ok();
    (seen, closed)
}
