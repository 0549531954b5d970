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
