//! The demo's upstream app: a page that shows who the gateway says you
//! are, from the identity headers it received, and a transfer form whose
//! posts the gateway holds for an approval (the `approve` rule of the
//! demo's config). It counts the transfers it received, so one can see
//! that an approved transfer arrives once.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use minijinja::{Environment, context};
use tokio::net::TcpListener;

const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Demo app</title>
<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:10vh auto;padding:0 1rem}
td{padding:.3rem .8rem;border-bottom:1px solid #ddd}</style></head>
<body><h1>Hello, {{ name or user }}!</h1>
<p>This page is the demo upstream app. authgate let your request through and told it who you are:</p>
<table>{% for h in headers %}<tr><td><code>{{ h.0 }}</code></td><td>{{ h.1 }}</td></tr>{% endfor %}</table>
<p>You asked for <code>{{ path }}</code>.</p>
{% if transfer %}<h2>Transfer received</h2>
<p id="transfer">Sent {{ transfer.amount }} {{ transfer.currency }} to {{ transfer.to }}.</p>
<p>The request body, as this app received it: <code id="transfer-body">{{ transfer.body }}</code></p>
{% else %}<h2>Send money</h2>
<form method="post" action="/transfer">
<p><label>Amount <input name="amount" value="120.00"></label>
<label>Currency <input name="currency" value="EUR"></label></p>
<p><label>To <input name="to" value="Bob"></label></p>
<p><button type="submit" id="send">Send</button> (authgate asks you to approve it)</p>
</form>{% endif %}
<p>Transfers received by this app so far: <span id="transfers">{{ transfers }}</span></p>
<p><a href="/_authgate/logout">Log out</a></p>
</body></html>
"#;

/// The largest transfer form this app reads.
const MAX_FORM_BYTES: usize = 16 * 1024;

const SHOWN: [&str; 4] = [
    "remote-user",
    "remote-name",
    "remote-email",
    "remote-groups",
];

/// Serves the page on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener) {
    let transfers = Arc::new(AtomicUsize::new(0));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let transfers = transfers.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let transfers = transfers.clone();
                async move { Ok::<_, Infallible>(answer(req, &transfers).await) }
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

pub async fn bind() -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

/// A posted transfer is read and counted; anything else gets the page.
async fn answer(req: Request<Incoming>, transfers: &AtomicUsize) -> Response<Full<Bytes>> {
    let is_transfer = req.method() == http::Method::POST && req.uri().path() == "/transfer";
    if !is_transfer {
        return page(&req, None, transfers.load(Ordering::SeqCst));
    }
    let (parts, body) = req.into_parts();
    let body = Limited::new(body, MAX_FORM_BYTES)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let count = transfers.fetch_add(1, Ordering::SeqCst) + 1;
    let field = |name: &str| {
        url::form_urlencoded::parse(&body)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let transfer = context! {
        amount => field("amount"),
        currency => field("currency"),
        to => field("to"),
        body => String::from_utf8_lossy(&body),
    };
    page(&Request::from_parts(parts, ()), Some(transfer), count)
}

fn page<B>(
    req: &Request<B>,
    transfer: Option<minijinja::Value>,
    transfers: usize,
) -> Response<Full<Bytes>> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let headers: Vec<(&str, String)> = SHOWN.iter().map(|n| (*n, header(n))).collect();
    let mut env = Environment::new();
    let html = env
        .add_template("page.html", PAGE)
        .and_then(|()| env.get_template("page.html"))
        .and_then(|t| {
            t.render(context! {
                user => header("remote-user"),
                name => header("remote-name"),
                headers,
                path => req.uri().path(),
                transfer,
                transfers,
            })
        })
        .unwrap_or_else(|e| format!("template error: {e}"));
    let mut response = Response::new(Full::new(Bytes::from(html)));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}
