//! The pooled hyper-util client to `upstream.url`. Bodies stream both ways
//! (`Incoming` in, `Incoming` out); nothing is buffered whole.

use std::net::IpAddr;
use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::headers;
use crate::config::UpstreamConfig;
use crate::gateway::response::Body;
use crate::users::User;

/// Idle pooled connections are dropped before a typical upstream's own
/// keep-alive timeout, so a request is rarely sent on a closing socket.
const POOL_IDLE: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("upstream connection failed: {0}")]
    Connect(String),
    #[error("upstream did not answer in time")]
    Timeout,
    #[error("upstream request failed: {0}")]
    Request(String),
    #[error("upstream.url: {0}")]
    Config(String),
}

/// What the gateway decided about the request, for the headers upstream.
pub struct ForwardContext<'a> {
    pub peer: IpAddr,
    pub peer_trusted: bool,
    pub proto: &'a str,
    /// The normalized target: what the rules decided on is what goes up.
    pub path_and_query: &'a str,
    pub identity: Option<&'a User>,
    pub own_cookies: [&'a str; 2],
}

pub struct Upstream {
    client: Client<HttpConnector, Incoming>,
    scheme: Scheme,
    authority: Authority,
    response_timeout: Duration,
}

impl Upstream {
    pub fn new(config: &UpstreamConfig) -> Result<Self, ProxyError> {
        let (Some(scheme), Some(authority)) = (config.url.scheme(), config.url.authority()) else {
            return Err(ProxyError::Config("needs a scheme and a host".into()));
        };
        if *scheme != Scheme::HTTP {
            return Err(ProxyError::Config(
                "only http:// upstreams are supported by this build".into(),
            ));
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(config.connect_timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_timer(TokioTimer::new())
            .build(connector);
        Ok(Upstream {
            client,
            scheme: scheme.clone(),
            authority: authority.clone(),
            response_timeout: config.response_timeout,
        })
    }

    pub async fn forward(
        &self,
        req: Request<Incoming>,
        ctx: &ForwardContext<'_>,
    ) -> Result<Response<Body>, ProxyError> {
        let req = self.prepare(req, ctx)?;
        let response = tokio::time::timeout(self.response_timeout, self.client.request(req))
            .await
            .map_err(|_| ProxyError::Timeout)?
            .map_err(|e| classify(&e))?;
        let (mut parts, body) = response.into_parts();
        headers::remove_hop_by_hop(&mut parts.headers);
        headers::drop_own_set_cookies(&mut parts.headers, &ctx.own_cookies);
        Ok(Response::from_parts(parts, body.boxed()))
    }

    fn prepare(
        &self,
        req: Request<Incoming>,
        ctx: &ForwardContext<'_>,
    ) -> Result<Request<Incoming>, ProxyError> {
        let (mut parts, body) = req.into_parts();
        let host = headers::request_host(&parts.uri, &parts.headers);
        let path = PathAndQuery::try_from(ctx.path_and_query)
            .map_err(|e| ProxyError::Request(e.to_string()))?;
        parts.uri = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path)
            .build()
            .map_err(|e| ProxyError::Request(e.to_string()))?;
        // The upstream speaks HTTP/1.1 whatever the client spoke.
        parts.version = Version::HTTP_11;
        let h = &mut parts.headers;
        headers::remove_hop_by_hop(h);
        headers::strip_identity(h);
        headers::strip_own_cookies(h, &ctx.own_cookies);
        if let Some(user) = ctx.identity {
            headers::set_identity(h, user);
        }
        headers::set_forwarded(h, ctx.peer, ctx.peer_trusted, ctx.proto, host.as_deref());
        // Keep the public host: what most apps build their links from.
        if let Some(host) = host.and_then(|h| HeaderValue::from_str(&h).ok()) {
            h.insert(http::header::HOST, host);
        }
        Ok(Request::from_parts(parts, body))
    }
}

fn classify(err: &hyper_util::client::legacy::Error) -> ProxyError {
    if err.is_connect() {
        ProxyError::Connect(err.to_string())
    } else {
        ProxyError::Request(err.to_string())
    }
}
