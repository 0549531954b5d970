//! Plain `GET`s answered without hyper. nginx `auth_request`, Traefik,
//! Caddy and HAProxy ask the gateway one small question per request over
//! keep-alive connections, and hyper's per-request machinery (dispatcher,
//! body channel, a new header-timeout timer) costs more than the answer.
//!
//! Every connection starts here. A complete HTTP/1.1 `GET` with no body and
//! no connection option but keep-alive is parsed with httparse and offered to
//! [`Handler::answer_plain_get`]; the answers go out in order. At the first
//! request that is anything else (another path, a body, an upgrade,
//! HTTP/1.0, HTTP/2, a parse error, a head longer than hyper's limit),
//! the bytes read so far and the connection go to hyper for the rest of
//! the connection's life. So every unusual request keeps hyper's handling,
//! and this module only ever sees the simplest one. A connection that had
//! answers here goes to hyper as HTTP/1.1 only: hyper picks HTTP/2 on a
//! connection's first bytes, and these were not.
//!
//! hyper's head limit is its read buffer (`max_buf_size`): a head that is
//! complete within that many bytes is parsed, a longer one is answered 431
//! once the buffer is full. Here a head is answered only if it is at most
//! that long, and a partial head that long goes to hyper, so which of the
//! two answers does not depend on how the bytes were split into reads.
//!
//! The same limits as hyper's: a request head must arrive within
//! `server.header_read_timeout` of the wait for it starting (idle
//! keep-alive included), and a shutdown closes connections between
//! requests. Unlike hyper's, the timer is one per connection, moved forward
//! per request, which costs no timer-wheel work.

use std::cell::RefCell;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING, UPGRADE};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderName, HeaderValue, Response};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use crate::wire::{ConnInfo, Handler};

/// hyper's default; a head with more headers goes to hyper, which answers 431.
const MAX_HEADERS: usize = 100;
/// hyper answers 414 to a longer target (`MAX_URI_LEN` in its `role.rs`).
const MAX_TARGET_BYTES: usize = u16::MAX as usize - 1;
/// Room made before each read.
const READ_CHUNK: usize = 4096;

#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub header_read_timeout: Duration,
    /// hyper's read buffer limit (`max_buf_size`): a head of this many
    /// bytes is parsed, one byte more is answered 431.
    pub max_head_bytes: usize,
}

pub(super) enum Outcome<I> {
    /// The connection is over: closed by either side, timed out, or shut down.
    Closed,
    /// A request this module leaves to hyper; it is read again from `Replay`.
    /// `answered`: requests were answered here before it, so the connection
    /// is HTTP/1.1 and must stay so (hyper's own choice between HTTP/1 and
    /// h2 is made on a connection's first bytes, which these were not).
    HandOff { io: Replay<I>, answered: bool },
}

/// What the connection does after the requests in its buffer.
enum Next {
    Read,
    Close,
    HandOff(Bytes),
}

/// One connection until it closes or hands off.
pub(super) async fn serve<I, H>(
    mut io: I,
    handler: &H,
    conn: ConnInfo,
    limits: Limits,
    stop: &CancellationToken,
) -> Outcome<I>
where
    I: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
{
    let mut buf = BytesMut::with_capacity(2 * READ_CHUNK);
    let mut headers = HeaderMap::new();
    let mut out = Vec::new();
    let deadline = tokio::time::sleep(limits.header_read_timeout);
    let stopped = stop.cancelled();
    tokio::pin!(deadline, stopped);
    let mut answered_before = false;
    loop {
        let max_head = limits.max_head_bytes;
        let next = answer_buffered(
            &mut buf,
            &mut headers,
            &mut out,
            handler,
            conn,
            stop,
            max_head,
        );
        let answered = !out.is_empty();
        if answered {
            answered_before = true;
            let written = io.write_all(&out).await.and(io.flush().await);
            out.clear();
            if written.is_err() {
                return Outcome::Closed;
            }
        }
        let hand_off = |prefix: Bytes, io: I| Outcome::HandOff {
            io: Replay::new(prefix, io),
            answered: answered_before,
        };
        match next {
            // hyper answers 431 to a partial head that fills its buffer.
            Next::Read if buf.len() >= max_head => return hand_off(buf.freeze(), io),
            Next::Read => {}
            Next::Close => return Outcome::Closed,
            Next::HandOff(prefix) => return hand_off(prefix, io),
        }
        // A new head starts after an answer, even one already in part read.
        let idle = buf.is_empty();
        if idle || answered {
            deadline
                .as_mut()
                .reset(Instant::now() + limits.header_read_timeout);
        }
        buf.reserve(READ_CHUNK);
        match read_more(&mut io, &mut buf, deadline.as_mut(), stopped.as_mut(), idle).await {
            Ok(true) => {}
            Ok(false) => return Outcome::Closed,
            Err(Interrupted::TimedOut) => {
                log_header_timeout(&conn);
                return Outcome::Closed;
            }
            Err(Interrupted::Stopped) => return Outcome::Closed,
        }
    }
}

/// Answers every complete request in `buf` into `out`, in order.
fn answer_buffered<H: Handler>(
    buf: &mut BytesMut,
    headers: &mut HeaderMap,
    out: &mut Vec<u8>,
    handler: &H,
    conn: ConnInfo,
    stop: &CancellationToken,
    max_head: usize,
) -> Next {
    loop {
        let response = match next_request(buf, headers, handler, conn, max_head) {
            Parsed::Answered(response) => response,
            Parsed::Incomplete => return Next::Read,
            Parsed::NotOurs(prefix) => return Next::HandOff(prefix),
        };
        let closing = stop.is_cancelled();
        encode(response, closing, out);
        if closing {
            return Next::Close;
        }
    }
}

enum Parsed {
    Answered(Response<Bytes>),
    Incomplete,
    /// Not a request for this module: every byte read so far, for hyper.
    NotOurs(Bytes),
}

/// Parses the first request in `buf` and asks the handler; only an
/// answered request's bytes are taken out of `buf`. A head longer than
/// `max_head` is hyper's (431), however it arrived.
fn next_request<H: Handler>(
    buf: &mut BytesMut,
    headers: &mut HeaderMap,
    handler: &H,
    conn: ConnInfo,
    max_head: usize,
) -> Parsed {
    if buf.is_empty() {
        return Parsed::Incomplete;
    }
    // Frozen first, so header values share the read buffer, as in hyper.
    let bytes = buf.split().freeze();
    let mut slots = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    let len = match request.parse_with_uninit_headers(&bytes, &mut slots) {
        Ok(httparse::Status::Complete(len)) if len <= max_head => len,
        Ok(httparse::Status::Complete(_)) => return Parsed::NotOurs(bytes),
        Ok(httparse::Status::Partial) => {
            // Rare: a head split over reads. Copied back whole.
            let mut again = BytesMut::with_capacity(bytes.len() + READ_CHUNK);
            again.extend_from_slice(&bytes);
            *buf = again;
            return Parsed::Incomplete;
        }
        Err(_) => return Parsed::NotOurs(bytes),
    };
    let answer = plain_get_target(&request, &bytes)
        .filter(|_| fill_headers(headers, request.headers, &bytes))
        .and_then(|target| handler.answer_plain_get(target.path(), headers, conn));
    headers.clear();
    match answer {
        Some(response) => {
            buf.extend_from_slice(&bytes[len..]);
            Parsed::Answered(response)
        }
        None => Parsed::NotOurs(bytes),
    }
}

/// The target of an HTTP/1.1 `GET` in origin form, read by `http` as
/// hyper reads it: `None` for a target hyper refuses (400, 414), and the
/// path without query or fragment, as hyper's handler sees it.
fn plain_get_target(request: &httparse::Request<'_, '_>, bytes: &Bytes) -> Option<PathAndQuery> {
    if request.method != Some("GET") || request.version != Some(1) {
        return None;
    }
    let target = request.path.filter(|t| t.len() <= MAX_TARGET_BYTES)?;
    if !target.starts_with('/') {
        return None;
    }
    // Shares `bytes`, as hyper's URI does: no copy.
    PathAndQuery::from_maybe_shared(bytes.slice_ref(target.as_bytes())).ok()
}

/// Fills `headers`; false for a header that could mean a body, an
/// upgrade or a closing connection (all hyper's), or that `http` refuses.
fn fill_headers(headers: &mut HeaderMap, parsed: &[httparse::Header], bytes: &Bytes) -> bool {
    for header in parsed {
        let Ok(name) = HeaderName::from_bytes(header.name.as_bytes()) else {
            return false;
        };
        let not_plain = name == CONTENT_LENGTH
            || name == TRANSFER_ENCODING
            || name == UPGRADE
            || name == EXPECT
            || (name == CONNECTION && !header.value.eq_ignore_ascii_case(b"keep-alive"));
        if not_plain {
            return false;
        }
        let Ok(value) = HeaderValue::from_maybe_shared(bytes.slice_ref(header.value)) else {
            return false;
        };
        headers.append(name, value);
    }
    true
}

/// Writes the response as hyper would: status line, the handler's
/// headers, `content-length`, `date`, then the body.
fn encode(response: Response<Bytes>, closing: bool, out: &mut Vec<u8>) {
    let (parts, body) = response.into_parts();
    let status = parts.status;
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        // The framing is ours to write.
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"content-length: ");
    push_decimal(out, body.len());
    out.extend_from_slice(b"\r\ndate: ");
    push_http_date(out);
    out.extend_from_slice(b"\r\n");
    if closing {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body);
}

fn push_decimal(out: &mut Vec<u8>, n: usize) {
    if n >= 10 {
        push_decimal(out, n / 10);
    }
    out.push(b'0' + (n % 10) as u8);
}

thread_local! {
    /// The `date` value, formatted once per second per thread.
    static DATE: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
}

fn push_http_date(out: &mut Vec<u8>) {
    let now = SystemTime::now();
    let second = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|(cached, text)| {
        if *cached != second || text.is_empty() {
            *cached = second;
            *text = httpdate::fmt_http_date(now);
        }
        out.extend_from_slice(text.as_bytes());
    });
}

/// Also the listener's, for hyper's own header timeout: one message for
/// both.
pub(super) fn log_header_timeout(conn: &ConnInfo) {
    let peer = conn.peer;
    tracing::info!(%peer, "no request head within server.header_read_timeout (slow or idle client); connection closed");
}

enum Interrupted {
    TimedOut,
    Stopped,
}

/// `Ok(false)`: the client closed the connection (or it failed). A
/// shutdown closes the connection only when it is `idle`, between requests.
async fn read_more<I: AsyncRead + Unpin>(
    io: &mut I,
    buf: &mut BytesMut,
    deadline: Pin<&mut Sleep>,
    stopped: Pin<&mut WaitForCancellationFuture<'_>>,
    idle: bool,
) -> Result<bool, Interrupted> {
    tokio::select! {
        biased;
        read = io.read_buf(buf) => Ok(matches!(read, Ok(n) if n > 0)),
        () = deadline => Err(Interrupted::TimedOut),
        () = stopped, if idle => Err(Interrupted::Stopped),
    }
}

/// A connection handed to hyper, with the bytes already read in front.
pub(super) struct Replay<I> {
    prefix: Bytes,
    io: I,
}

impl<I> Replay<I> {
    pub(super) fn new(prefix: Bytes, io: I) -> Self {
        Replay { prefix, io }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Replay<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.prefix.is_empty() {
            return Pin::new(&mut self.io).poll_read(cx, buf);
        }
        let n = self.prefix.len().min(buf.remaining());
        buf.put_slice(&self.prefix[..n]);
        self.prefix.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Replay<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, StatusCode};
    use hyper::body::Incoming;
    use tokio::io::DuplexStream;
    use tokio::task::JoinHandle;

    use crate::wire::Body;

    const TIMEOUT: Duration = Duration::from_secs(30);
    const LIMITS: Limits = Limits {
        header_read_timeout: TIMEOUT,
        max_head_bytes: 1024,
    };

    /// Answers `/fast` with the `X-Probe` it saw, as a header and in the
    /// body; every other path is hyper's.
    struct Probe;

    impl Handler for Probe {
        async fn handle(&self, _req: Request<Incoming>, _conn: ConnInfo) -> Response<Body> {
            let mut teapot = Response::new(crate::wire::full(Bytes::new()));
            *teapot.status_mut() = StatusCode::IM_A_TEAPOT;
            teapot
        }

        fn answer_plain_get(
            &self,
            path: &str,
            headers: &HeaderMap,
            _conn: ConnInfo,
        ) -> Option<Response<Bytes>> {
            let probe = headers.get("x-probe")?.clone();
            (path == "/fast").then(|| {
                let body = format!("seen {}", probe.to_str().unwrap());
                let mut answer = Response::new(Bytes::from(body));
                answer.headers_mut().insert("x-probe", probe);
                answer
            })
        }
    }

    fn start(stop: &CancellationToken) -> (DuplexStream, JoinHandle<Outcome<DuplexStream>>) {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let conn = ConnInfo {
            peer: "127.0.0.1:1".parse().unwrap(),
            tls: false,
        };
        let stop = stop.clone();
        let task = tokio::spawn(async move { serve(server, &Probe, conn, LIMITS, &stop).await });
        (client, task)
    }

    fn get(path: &str, probe: &str) -> String {
        format!("GET {path} HTTP/1.1\r\nHost: app\r\nX-Probe: {probe}\r\n\r\n")
    }

    /// One response: its head, then as many body bytes as it announces.
    async fn read_response(client: &mut DuplexStream) -> String {
        let mut seen = Vec::new();
        loop {
            let text = String::from_utf8_lossy(&seen).into_owned();
            if let Some(end) = text.find("\r\n\r\n") {
                let length: usize = text[..end]
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length: "))
                    .expect("no content-length")
                    .parse()
                    .unwrap();
                if seen.len() >= end + 4 + length {
                    return text;
                }
            }
            let mut chunk = [0u8; 512];
            let n = client.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed after {text:?}");
            seen.extend_from_slice(&chunk[..n]);
        }
    }

    fn assert_answer(response: &str, probe: &str) {
        let body = format!("seen {probe}");
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response:?}");
        assert!(
            response.contains(&format!("\r\nx-probe: {probe}\r\n")),
            "{response:?}"
        );
        let length = format!("\r\ncontent-length: {}\r\n", body.len());
        assert!(response.contains(&length), "{response:?}");
        let date = response.split("\r\ndate: ").nth(1).expect("no date");
        assert!(date.starts_with(&httpdate::fmt_http_date(SystemTime::now())[..5]));
        assert!(
            response.ends_with(&format!("\r\n\r\n{body}")),
            "{response:?}"
        );
    }

    /// The bytes hyper reads, and whether requests were answered before.
    async fn handed_off_after(task: JoinHandle<Outcome<DuplexStream>>) -> (Vec<u8>, bool) {
        let Outcome::HandOff { mut io, answered } = task.await.unwrap() else {
            panic!("closed instead of handed to hyper");
        };
        let mut replayed = Vec::new();
        io.read_to_end(&mut replayed).await.unwrap();
        (replayed, answered)
    }

    /// The bytes hyper reads, on a connection that had no answer before.
    async fn handed_off(task: JoinHandle<Outcome<DuplexStream>>) -> Vec<u8> {
        let (replayed, answered) = handed_off_after(task).await;
        assert!(!answered, "answered before");
        replayed
    }

    #[tokio::test]
    async fn answers_keep_alive_and_pipelined_requests_in_order() {
        let (mut client, task) = start(&CancellationToken::new());
        client
            .write_all(get("/fast", "one").as_bytes())
            .await
            .unwrap();
        assert_answer(&read_response(&mut client).await, "one");
        let pipelined = get("/fast?q=1", "two") + &get("/fast", "three");
        client.write_all(pipelined.as_bytes()).await.unwrap();
        client.shutdown().await.unwrap();
        let mut rest = String::new();
        client.read_to_string(&mut rest).await.unwrap();
        let second = rest[1..].find("HTTP/1.1 200").unwrap() + 1;
        assert_answer(&rest[..second], "two");
        assert_answer(&rest[second..], "three");
        assert!(matches!(task.await.unwrap(), Outcome::Closed));
    }

    #[tokio::test]
    async fn anything_but_a_plain_get_goes_to_hyper_with_every_byte() {
        let fast = "/fast HTTP/1.1\r\nHost: app\r\nX-Probe: p\r\n";
        let cases = [
            format!("POST {fast}\r\n"),
            format!("GET {fast}Content-Length: 0\r\n\r\n"),
            format!("GET {fast}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            format!("GET {fast}Connection: close\r\n\r\n"),
            format!("GET {fast}Connection: upgrade\r\nUpgrade: websocket\r\n\r\n"),
            format!("GET {fast}Expect: 100-continue\r\n\r\n"),
            "GET /fast HTTP/1.0\r\nX-Probe: p\r\n\r\n".to_owned(),
            "GET http://app/fast HTTP/1.1\r\nX-Probe: p\r\n\r\n".to_owned(),
            get("/other", "p"),
            // Found by the differential test: targets `http` refuses (400).
            get("/fast`b", "p"),
            get("/fast\u{7f}", "p"),
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_owned(),
            "\u{16}\u{3}\u{1}\u{0}".to_owned(),
        ];
        for raw in cases {
            let (mut client, task) = start(&CancellationToken::new());
            client.write_all(raw.as_bytes()).await.unwrap();
            client.shutdown().await.unwrap();
            assert_eq!(handed_off(task).await, raw.as_bytes(), "{raw:?}");
            let mut answered = Vec::new();
            client.read_to_end(&mut answered).await.unwrap();
            assert!(answered.is_empty(), "{raw:?} was answered");
        }
    }

    /// Found by the differential test: hyper's handler sees the path
    /// without the fragment, and so does this one.
    #[tokio::test]
    async fn a_target_with_a_fragment_is_answered_for_its_path() {
        let (mut client, task) = start(&CancellationToken::new());
        let request = get("/fast#part", "one") + &get("/fast?q#part", "two");
        client.write_all(request.as_bytes()).await.unwrap();
        client.shutdown().await.unwrap();
        let ended = task.await.unwrap();
        assert!(matches!(ended, Outcome::Closed), "handed to hyper");
        drop(ended);
        let mut answered = String::new();
        client.read_to_string(&mut answered).await.unwrap();
        let second = answered[1..].find("HTTP/1.1 200").unwrap() + 1;
        assert_answer(&answered[..second], "one");
        assert_answer(&answered[second..], "two");
    }

    #[tokio::test]
    async fn a_connection_is_handed_off_after_the_answers_before() {
        let (mut client, task) = start(&CancellationToken::new());
        let other = get("/other", "two");
        let both = get("/fast", "one") + &other;
        client.write_all(both.as_bytes()).await.unwrap();
        assert_answer(&read_response(&mut client).await, "one");
        client.shutdown().await.unwrap();
        assert_eq!(handed_off_after(task).await, (other.into_bytes(), true));
    }

    /// hyper's choice of HTTP/2 is for a connection's first bytes: after an
    /// answer, the preface is an HTTP/1.1 request that hyper refuses.
    #[tokio::test]
    async fn a_connection_answered_here_is_handed_off_as_http1() {
        let (mut client, task) = start(&CancellationToken::new());
        let preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        client
            .write_all(get("/fast", "one").as_bytes())
            .await
            .unwrap();
        assert_answer(&read_response(&mut client).await, "one");
        client.write_all(preface.as_bytes()).await.unwrap();
        client.shutdown().await.unwrap();
        assert_eq!(handed_off_after(task).await, (preface.into(), true));
    }

    /// A head of `max_head_bytes` is answered; one byte more is hyper's
    /// (431), even when it comes whole in one read.
    #[tokio::test]
    async fn a_head_is_answered_up_to_the_limit_and_handed_off_above_it() {
        let limit = LIMITS.max_head_bytes;
        for size in limit - 2..=limit + 2 {
            let head = padded_get(size);
            let (mut client, task) = start(&CancellationToken::new());
            client.write_all(head.as_bytes()).await.unwrap();
            if size <= limit {
                assert_answer(&read_response(&mut client).await, "p");
                drop(client);
                assert!(matches!(task.await.unwrap(), Outcome::Closed), "{size}");
            } else {
                client.shutdown().await.unwrap();
                assert_eq!(handed_off(task).await, head.as_bytes(), "{size}");
            }
        }
    }

    /// A complete `GET /fast` head of exactly `size` bytes.
    fn padded_get(size: usize) -> String {
        let bare = get("/fast", "p").len() + "X-Pad: \r\n".len();
        let head = get("/fast", "p").replace(
            "\r\n\r\n",
            &format!("\r\nX-Pad: {}\r\n\r\n", "a".repeat(size - bare)),
        );
        assert_eq!(head.len(), size);
        head
    }

    #[tokio::test]
    async fn a_head_over_the_limit_goes_to_hyper() {
        let (mut client, task) = start(&CancellationToken::new());
        let big = format!("GET /fast HTTP/1.1\r\nX-Big: {}", "a".repeat(2000));
        client.write_all(big.as_bytes()).await.unwrap();
        client.shutdown().await.unwrap();
        assert_eq!(handed_off(task).await, big.as_bytes());
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_must_arrive_within_the_timeout_however_it_trickles() {
        let began = Instant::now();
        let (mut client, task) = start(&CancellationToken::new());
        client.write_all(b"GET /fast HTTP/1.1\r\n").await.unwrap();
        tokio::time::sleep(TIMEOUT / 2).await;
        client.write_all(b"Host: app\r\n").await.unwrap();
        assert!(matches!(task.await.unwrap(), Outcome::Closed));
        assert_eq!(began.elapsed(), TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_read_with_the_answer_before_it_gets_its_own_timeout() {
        let (mut client, task) = start(&CancellationToken::new());
        tokio::time::sleep(TIMEOUT - Duration::from_secs(1)).await;
        let first_and_a_half = get("/fast", "one") + "GET /fast HTTP/1.1\r\n";
        client.write_all(first_and_a_half.as_bytes()).await.unwrap();
        assert_answer(&read_response(&mut client).await, "one");
        tokio::time::sleep(Duration::from_secs(2)).await;
        client.write_all(b"X-Probe: two\r\n\r\n").await.unwrap();
        assert_answer(&read_response(&mut client).await, "two");
        drop(client);
        assert!(matches!(task.await.unwrap(), Outcome::Closed));
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_closed_a_timeout_after_its_last_answer() {
        let (mut client, task) = start(&CancellationToken::new());
        tokio::time::sleep(TIMEOUT / 2).await;
        client
            .write_all(get("/fast", "one").as_bytes())
            .await
            .unwrap();
        assert_answer(&read_response(&mut client).await, "one");
        let answered = Instant::now();
        assert!(matches!(task.await.unwrap(), Outcome::Closed));
        assert_eq!(answered.elapsed(), TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_closes_between_requests_and_finishes_a_started_one() {
        let stop = CancellationToken::new();
        let (_idle, idle_task) = start(&stop);
        let (mut busy, busy_task) = start(&stop);
        busy.write_all(b"GET /fast HTTP/1.1\r\n").await.unwrap();
        tokio::task::yield_now().await;
        let began = Instant::now();
        stop.cancel();
        assert!(matches!(idle_task.await.unwrap(), Outcome::Closed));
        assert_eq!(began.elapsed(), Duration::ZERO);
        busy.write_all(b"X-Probe: last\r\n\r\n").await.unwrap();
        let last = read_response(&mut busy).await;
        assert_answer(&last.replace("connection: close\r\n", ""), "last");
        assert!(last.contains("\r\nconnection: close\r\n"), "{last:?}");
        assert!(matches!(busy_task.await.unwrap(), Outcome::Closed));
    }
}
