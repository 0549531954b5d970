//! The demo's upstream app: one page that shows who the gateway says you
//! are, from the identity headers it received.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
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
<form method="post" action="/_authgate/logout"><p><a href="/_authgate/logout">Log out</a></p></form>
</body></html>
"#;

const SHOWN: [&str; 4] = [
    "remote-user",
    "remote-name",
    "remote-email",
    "remote-groups",
];

/// Serves the page on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let service = service_fn(|req| async move { Ok::<_, Infallible>(page(&req)) });
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

fn page(req: &Request<Incoming>) -> Response<Full<Bytes>> {
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
