//! Issue items 5 and 8: bodies stream through the gateway both ways without
//! being held whole (the gateway's RSS, read from /proc, stays flat while
//! a gigabyte passes), server-sent events arrive one by one, and upstream
//! faults (a stall before the head, a reset mid-body) end cleanly while the
//! gateway stays up. (Upstream down → 502 page/JSON is in upstream_errors.)

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::support::*;

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;
const FRAME: usize = 64 * 1024;
/// How far above its idle RSS the gateway may go while streaming.
const RSS_HEADROOM: u64 = 64 * MIB;

// ---------------------------------------------------------------------------
// Bodies and servers made for these tests
// ---------------------------------------------------------------------------

/// `len` bytes generated on the fly in 64 KiB frames (one shared buffer),
/// counting what was handed out, so the sender's memory stays flat too.
struct Generated {
    left: u64,
    frame: Bytes,
    produced: Arc<AtomicU64>,
}

impl Generated {
    fn new(len: u64, produced: Arc<AtomicU64>) -> Self {
        Generated {
            left: len,
            frame: Bytes::from(vec![b'x'; FRAME]),
            produced,
        }
    }
}

impl Body for Generated {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(FRAME as u64);
        self.left -= n;
        self.produced.fetch_add(n, Ordering::Relaxed);
        Poll::Ready(Some(Ok(Frame::data(self.frame.slice(..n as usize)))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

/// A body fed from a channel: each message is sent as one frame when it
/// arrives.
struct Channel(mpsc::Receiver<Bytes>);

impl Body for Channel {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|m| m.map(|b| Ok(Frame::data(b))))
    }
}

type TestBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// A hyper HTTP/1.1 server on 127.0.0.1:0 running `handler`; stops when
/// dropped.
struct Server {
    addr: std::net::SocketAddr,
    task: JoinHandle<()>,
}

impl Server {
    async fn start<F, Fut>(handler: F) -> Server
    where
        F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Response<TestBody>> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the upstream");
        let addr = listener.local_addr().expect("upstream addr");
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let handler = handler.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let answer = handler(req);
                        async move { Ok::<_, Infallible>(answer.await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Server { addr, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A raw TCP upstream: `each` runs on every accepted connection.
async fn raw_upstream<F, Fut>(each: F) -> (String, JoinHandle<()>)
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the raw upstream");
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(each(stream));
        }
    });
    (url, task)
}

/// Reads a request head (up to the blank line) and ignores it.
async fn read_head(stream: &mut TcpStream) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
}

// ---------------------------------------------------------------------------
// The gateway process, measured
// ---------------------------------------------------------------------------

/// The `authgate serve` child of this gateway: the process whose command
/// line names this setup's (unique, temp-dir) config file.
fn gateway_pid(gw: &Gateway) -> u32 {
    let config = gw.setup().config_path();
    let config = config.to_str().unwrap();
    for entry in std::fs::read_dir("/proc").expect("/proc") {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args.contains(&&b"serve"[..]) && args.contains(&config.as_bytes()) {
            return pid;
        }
    }
    panic!("no authgate process for {config}");
}

/// VmRSS of `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status");
    kb * 1024
}

/// Samples a process's RSS every 100 ms in the background until stopped.
struct RssSampler {
    stop: Arc<AtomicBool>,
    task: JoinHandle<Vec<u64>>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut samples = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                samples.push(rss(pid));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            samples.push(rss(pid));
            samples
        });
        RssSampler { stop, task }
    }

    async fn stop(self) -> Vec<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("sampler")
    }
}

/// The largest buffer TCP autotuning may give a socket (`tcp_rmem` or
/// `tcp_wmem`, third field), in bytes.
fn tcp_max(name: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}"))
        .ok()
        .and_then(|v| v.split_whitespace().nth(2)?.parse().ok())
        .unwrap_or(4 * MIB)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

/// The gateway's RSS after a few ordinary proxied requests (pools, buffers
/// and allocator arenas warmed up).
async fn baseline(b: &mut Browser, pid: u32) -> u64 {
    for _ in 0..3 {
        let r = b.get("/warmup").await;
        assert!(r.status.is_success(), "warm-up: {r:?}");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    rss(pid)
}

/// An HTTP/1.1 connection to the gateway, for requests reqwest cannot make
/// (streamed uploads, a reader that stops reading).
async fn gateway_conn(gw: &Gateway) -> hyper::client::conn::http1::SendRequest<TestBody> {
    let stream = TcpStream::connect(("127.0.0.1", gw.setup().port))
        .await
        .expect("connect to the gateway");
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    sender
}

fn gateway_request(gw: &Gateway, b: &Browser, method: &str, path: &str) -> http::request::Builder {
    Request::builder()
        .method(method)
        .uri(path)
        .header("host", format!("127.0.0.1:{}", gw.setup().port))
        .header("cookie", b.cookie_header())
}

/// A gateway with a confirmed session for alice in front of `upstream`.
async fn gateway_for(upstream: &str, config: &[(&str, &str)]) -> (Gateway, Browser) {
    let mut setup = Setup::new(Some(upstream));
    for (key, value) in config {
        setup.set(key, *value);
    }
    setup.add_alice().await;
    let gw = setup.start().await;
    let mut b = gw.browser();
    b.login(ALICE, ALICE_PW).await;
    (gw, b)
}

/// A streaming upstream: `GET /bytes/N` sends N generated bytes with a
/// Content-Length (counting them in `produced`), `POST` counts the body
/// it receives and answers `{"received": n}`, anything else a small 200.
async fn streaming_upstream(produced: Arc<AtomicU64>) -> Server {
    Server::start(move |req: Request<Incoming>| {
        let produced = produced.clone();
        async move {
            if req.method() == http::Method::POST {
                let mut body = req.into_body();
                let mut received = 0u64;
                while let Some(frame) = body.frame().await {
                    match frame {
                        Ok(frame) => {
                            received += frame.data_ref().map_or(0, |d| d.len() as u64);
                        }
                        Err(_) => break,
                    }
                }
                let json = json!({ "received": received }).to_string();
                return Response::new(Full::new(Bytes::from(json)).boxed());
            }
            let len = req
                .uri()
                .path()
                .strip_prefix("/bytes/")
                .and_then(|n| n.parse::<u64>().ok());
            match len {
                Some(len) => {
                    let mut response = Response::new(Generated::new(len, produced).boxed());
                    response.headers_mut().insert(
                        "content-type",
                        http::HeaderValue::from_static("application/octet-stream"),
                    );
                    response
                }
                None => Response::new(Full::new(Bytes::from_static(b"ok")).boxed()),
            }
        }
    })
    .await
}

// ---------------------------------------------------------------------------
// Streaming
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gigabyte_download_streams_through_with_flat_gateway_memory() {
    let produced = Arc::new(AtomicU64::new(0));
    let upstream = streaming_upstream(produced.clone()).await;
    let (gw, mut b) = gateway_for(&upstream.url(), &[]).await;
    let pid = gateway_pid(&gw);
    let before = baseline(&mut b, pid).await;

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let started = Instant::now();
    let sampler = RssSampler::start(pid);
    let download = async {
        let mut resp = client
            .get(gw.url(&format!("/bytes/{GIB}")))
            .header("cookie", b.cookie_header())
            .send()
            .await
            .expect("download starts");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.content_length(), Some(GIB));
        let mut got = 0u64;
        while let Some(chunk) = resp.chunk().await.expect("the body streams to the end") {
            got += chunk.len() as u64;
        }
        got
    };
    let got = tokio::time::timeout(Duration::from_secs(60), download)
        .await
        .expect("1 GiB within 60 s");
    let elapsed = started.elapsed();
    let samples = sampler.stop().await;
    assert_eq!(got, GIB);
    assert_eq!(produced.load(Ordering::Relaxed), GIB);

    let max = samples.iter().copied().max().unwrap();
    eprintln!(
        "1 GiB download in {elapsed:.1?}: gateway RSS baseline {:.1} MiB, max {:.1} MiB over {} samples",
        mib(before),
        mib(max),
        samples.len()
    );
    assert!(samples.len() >= 3, "too few samples: {samples:?}");
    assert!(
        max < before + RSS_HEADROOM,
        "the gateway grew from {:.1} MiB to {:.1} MiB while streaming",
        mib(before),
        mib(max)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_upload_streams_to_the_upstream_with_flat_gateway_memory() {
    const UPLOAD: u64 = 512 * MIB;
    let upstream = streaming_upstream(Arc::default()).await;
    let (gw, mut b) = gateway_for(&upstream.url(), &[]).await;
    let pid = gateway_pid(&gw);
    let before = baseline(&mut b, pid).await;

    let sent = Arc::new(AtomicU64::new(0));
    let body = Generated::new(UPLOAD, sent.clone()).boxed();
    let req = gateway_request(&gw, &b, "POST", "/upload")
        .header("content-length", UPLOAD)
        .header("content-type", "application/octet-stream")
        .body(body)
        .unwrap();
    let sampler = RssSampler::start(pid);
    let started = Instant::now();
    let upload = async {
        let mut sender = gateway_conn(&gw).await;
        let resp = sender.send_request(req).await.expect("upload answered");
        let status = resp.status();
        let body = resp.into_body().collect().await.expect("answer").to_bytes();
        (status, body)
    };
    let (status, body) = tokio::time::timeout(Duration::from_secs(60), upload)
        .await
        .expect("512 MiB upload within 60 s");
    let elapsed = started.elapsed();
    let samples = sampler.stop().await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let answer: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(answer["received"], json!(UPLOAD));
    assert_eq!(sent.load(Ordering::Relaxed), UPLOAD);

    let max = samples.iter().copied().max().unwrap();
    eprintln!(
        "512 MiB upload in {elapsed:.1?}: gateway RSS baseline {:.1} MiB, max {:.1} MiB over {} samples",
        mib(before),
        mib(max),
        samples.len()
    );
    assert!(
        max < before + RSS_HEADROOM,
        "the gateway grew from {:.1} MiB to {:.1} MiB while receiving",
        mib(before),
        mib(max)
    );
}

/// A client that reads 1 MiB and then stops reading: backpressure holds
/// the upstream back; the gateway neither buffers the rest nor grows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_holds_the_upstream_back_instead_of_filling_the_gateway() {
    const SENT: u64 = 256 * MIB;
    let produced = Arc::new(AtomicU64::new(0));
    let upstream = streaming_upstream(produced.clone()).await;
    let (gw, mut b) = gateway_for(&upstream.url(), &[]).await;
    let pid = gateway_pid(&gw);
    let before = baseline(&mut b, pid).await;

    let req = gateway_request(&gw, &b, "GET", &format!("/bytes/{SENT}"))
        .body(Full::new(Bytes::new()).boxed())
        .unwrap();
    let mut sender = gateway_conn(&gw).await;
    let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .expect("head within 10 s")
        .expect("answered");
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let mut read = 0u64;
    while read < MIB {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("a frame within 10 s")
            .expect("more body")
            .expect("a good frame");
        read += frame.data_ref().map_or(0, |d| d.len() as u64);
    }

    // Stop reading for a while; the upstream can only fill socket and
    // hyper buffers, not push its 256 MiB into the gateway.
    let sampler = RssSampler::start(pid);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let samples = sampler.stop().await;
    let stalled_at = produced.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let still = produced.load(Ordering::Relaxed);
    let max = samples.iter().copied().max().unwrap();
    eprintln!(
        "slow reader: read {:.1} MiB, upstream produced {:.1} MiB of {:.0} MiB; gateway RSS baseline {:.1} MiB, max {:.1} MiB",
        mib(read),
        mib(still),
        mib(SENT),
        mib(before),
        mib(max)
    );
    assert_eq!(
        stalled_at, still,
        "the upstream kept sending while nobody read"
    );
    // Two TCP hops (upstream → gateway → client), each able to hold up to
    // the kernel's autotuning maxima, plus hyper's own small buffers.
    let in_flight = 2 * (tcp_max("tcp_rmem") + tcp_max("tcp_wmem")) + 16 * MIB;
    assert!(
        still < in_flight.min(SENT * 3 / 4),
        "{:.1} MiB left the upstream for a client that read 1 MiB (kernel buffers allow {:.1} MiB)",
        mib(still),
        mib(in_flight)
    );
    assert!(
        max < before + RSS_HEADROOM,
        "the gateway grew from {:.1} MiB to {:.1} MiB",
        mib(before),
        mib(max)
    );

    // Reading again resumes the stream.
    let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .expect("the stream resumes")
        .expect("more body")
        .expect("a good frame");
    assert!(frame.is_data());
    drop(body);
    drop(sender);
    let r = b.get(&format!("{PREFIX}/healthz")).await;
    assert_eq!(r.status, StatusCode::OK);
}

/// Server-sent events pass one by one: the upstream sends the second event
/// only after the test has received the first through the gateway.
#[tokio::test]
async fn server_sent_events_are_relayed_as_they_are_sent() {
    let (go_tx, go_rx) = oneshot::channel::<()>();
    let go = Arc::new(Mutex::new(Some(go_rx)));
    let upstream = Server::start(move |_req: Request<Incoming>| {
        let go = go.clone();
        async move {
            let (tx, rx) = mpsc::channel(4);
            let go = go.lock().unwrap().take();
            tokio::spawn(async move {
                let _ = tx.send(Bytes::from_static(b"id: 1\ndata: one\n\n")).await;
                if let Some(go) = go {
                    let _ = go.await;
                }
                let _ = tx.send(Bytes::from_static(b"id: 2\ndata: two\n\n")).await;
            });
            let mut response = Response::new(Channel(rx).boxed());
            response.headers_mut().insert(
                "content-type",
                http::HeaderValue::from_static("text/event-stream"),
            );
            response
                .headers_mut()
                .insert("cache-control", http::HeaderValue::from_static("no-cache"));
            response
        }
    })
    .await;
    let (_gw, b) = gateway_for(&upstream.url(), &[]).await;

    let mut resp = b
        .request(reqwest::Method::GET, "/events")
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("the event stream opens");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["content-type"],
        "text/event-stream",
        "{:?}",
        resp.headers()
    );
    let mut seen = Vec::new();
    while !seen.ends_with(b"\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), resp.chunk())
            .await
            .expect("event 1 arrives while the upstream still holds event 2")
            .expect("the stream")
            .expect("more of the stream");
        seen.extend_from_slice(&chunk);
    }
    assert_eq!(seen, b"id: 1\ndata: one\n\n");

    go_tx.send(()).expect("the upstream waits for the signal");
    let mut rest = Vec::new();
    let read_rest = async {
        while let Some(chunk) = resp.chunk().await.expect("the stream") {
            rest.extend_from_slice(&chunk);
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read_rest)
        .await
        .expect("event 2 and the end of the stream");
    assert_eq!(rest, b"id: 2\ndata: two\n\n");
}

// ---------------------------------------------------------------------------
// Upstream faults
// ---------------------------------------------------------------------------

/// An upstream that accepts the connection and never answers: 504 after
/// `upstream.response_timeout`, as a page or as JSON.
#[tokio::test]
async fn an_upstream_that_stalls_before_the_head_gives_504_in_time() {
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    let (url, task) = raw_upstream(move |stream| {
        keep.lock().unwrap().push(stream);
        async {}
    })
    .await;
    let (_gw, mut b) = gateway_for(&url, &[("upstream.response_timeout", "1s")]).await;

    let started = Instant::now();
    let r = b.get_json("/stalls").await;
    let elapsed = started.elapsed();
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT, "{r:?}");
    assert_eq!(r.json()["error"], json!("upstream_timeout"));
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(5),
        "504 after {elapsed:?}"
    );

    let r = b.get("/stalls").await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT, "{r:?}");
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "{r:?}"
    );
    assert!(!held.lock().unwrap().is_empty(), "the upstream was reached");
    assert_eq!(
        b.get(&format!("{PREFIX}/healthz")).await.status,
        StatusCode::OK
    );
    task.abort();
}

/// An upstream that sends the head and part of the body, then resets the
/// connection (SO_LINGER 0): the client's body ends in an error (never a
/// short body taken as complete, never a hang), and the gateway stays up.
#[tokio::test]
async fn an_upstream_reset_mid_body_ends_the_client_response_with_an_error() {
    // The first connection cuts a Content-Length body, the second a
    // chunked one.
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (url, task) = raw_upstream(move |mut stream| {
        let by_length = connections.fetch_add(1, Ordering::SeqCst).is_multiple_of(2);
        async move {
            read_head(&mut stream).await;
            let head: &[u8] = if by_length {
                b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\nContent-Type: text/plain\r\n\r\n"
            } else {
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n"
            };
            let _ = stream.write_all(head).await;
            let part = vec![b'y'; 100_000];
            if by_length {
                let _ = stream.write_all(&part).await;
            } else {
                let _ = stream
                    .write_all(format!("{:x}\r\n", part.len()).as_bytes())
                    .await;
                let _ = stream.write_all(&part).await;
                let _ = stream.write_all(b"\r\n").await;
            }
            let _ = stream.flush().await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            let _ = stream.set_zero_linger();
            drop(stream);
        }
    })
    .await;
    let (gw, b) = gateway_for(&url, &[]).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    for framing in ["content-length", "chunked"] {
        let started = Instant::now();
        let resp = client
            .get(gw.url("/resets"))
            .header("cookie", b.cookie_header())
            .send()
            .await
            .unwrap_or_else(|e| panic!("{framing}: the head arrives: {e}"));
        assert_eq!(resp.status(), StatusCode::OK, "{framing}");
        let body = resp.bytes().await;
        let elapsed = started.elapsed();
        let err = match body {
            Ok(bytes) => panic!(
                "{framing}: a cut body of {} bytes was taken as complete",
                bytes.len()
            ),
            Err(e) => e,
        };
        assert!(!err.is_timeout(), "{framing}: the client hung: {err:?}");
        assert!(elapsed < Duration::from_secs(5), "{framing}: {elapsed:?}");

        // The gateway is still up and still proxies.
        assert_eq!(
            client
                .get(gw.url(&format!("{PREFIX}/healthz")))
                .send()
                .await
                .expect("healthz")
                .status(),
            StatusCode::OK
        );
    }
    task.abort();
}
