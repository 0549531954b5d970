//! hyper-proxy: the floor of a hyper reverse proxy on this machine. The
//! listener of `hyper-empty` (`floor_listener.rs`) in front of
//! hyper-util's legacy pooled client: every request goes to the upstream
//! as it came, with its path and headers, over kept-alive connections. No
//! session, no rules, no header work: what `bench/run` compares authgate's
//! proxy mode against, to see our own cost apart from hyper's.
//!
//! Usage: hyper-proxy LISTEN_ADDR UPSTREAM_ADDR

#[path = "../floor_listener.rs"]
mod floor_listener;

use std::time::Duration;

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

type Body = BoxBody<Bytes, hyper::Error>;

async fn forward(
    client: Client<HttpConnector, Incoming>,
    upstream: &str,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let Ok(uri) = format!("http://{upstream}{target}").parse::<Uri>() else {
        return status(StatusCode::BAD_REQUEST);
    };
    *req.uri_mut() = uri;
    match client.request(req).await {
        Ok(response) => response.map(BodyExt::boxed),
        Err(_) => status(StatusCode::BAD_GATEWAY),
    }
}

fn status(code: StatusCode) -> Response<Body> {
    let mut response = Response::new(Empty::new().map_err(|never| match never {}).boxed());
    *response.status_mut() = code;
    response
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let upstream: &'static str = Box::leak(args.next().expect("UPSTREAM_ADDR").into_boxed_str());
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(connector);
    floor_listener::serve("hyper-proxy", &addr, move |req| {
        forward(client.clone(), upstream, req)
    })
    .await
}
