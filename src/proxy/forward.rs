//! The pooled hyper-util client to `upstream.url`. Bodies stream both ways
//! (`Incoming` in, `Incoming` out); nothing is buffered whole.

use std::net::IpAddr;
use std::time::Duration;

use http::header::UPGRADE;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::{headers, upgrade};
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
    pub proto: &'static str,
    /// The normalized target: what the rules decided on is what goes up.
    pub path_and_query: &'a str,
    pub identity: Option<&'a User>,
    pub own_cookies: [&'a str; 2],
}

pub struct Upstream {
    client: Client<HttpsConnector<HttpConnector>, Incoming>,
    scheme: Scheme,
    authority: Authority,
    response_timeout: Duration,
}

impl Upstream {
    pub fn new(config: &UpstreamConfig) -> Result<Self, ProxyError> {
        let (Some(scheme), Some(authority)) = (config.url.scheme(), config.url.authority()) else {
            return Err(ProxyError::Config("needs a scheme and a host".into()));
        };
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.connect_timeout));
        // The TLS layer takes https URIs; plain http ones pass through it.
        http.enforce_http(false);
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(upstream_tls(config)?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
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
        mut req: Request<Incoming>,
        ctx: &ForwardContext<'_>,
    ) -> Result<Response<Body>, ProxyError> {
        let upgrade = upgrade::requested(&req);
        // The client's half of an upgrade must be taken before the request
        // moves into the client; afterwards it is gone.
        let client_half = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
        let req = self.prepare(req, ctx, upgrade.clone())?;
        let mut response = tokio::time::timeout(self.response_timeout, self.client.request(req))
            .await
            .map_err(|_| ProxyError::Timeout)?
            .map_err(|e| classify(&e))?;
        let switched = if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            let (Some(asked), Some(client_half)) = (upgrade, client_half) else {
                return Err(ProxyError::Request(
                    "101 to a request that asked for no upgrade".into(),
                ));
            };
            let answered = response.headers().get(UPGRADE).cloned();
            let Some(answered) = answered.filter(|a| upgrade::accepted(&asked, a)) else {
                return Err(ProxyError::Request(
                    "101 to a protocol the client did not offer".into(),
                ));
            };
            let upstream_half = hyper::upgrade::on(&mut response);
            upgrade::tunnels().open(client_half, upstream_half);
            Some(answered)
        } else {
            None
        };
        let (mut parts, body) = response.into_parts();
        headers::remove_hop_by_hop(&mut parts.headers);
        headers::drop_own_set_cookies(&mut parts.headers, &ctx.own_cookies);
        let body = match switched {
            Some(protocol) => {
                headers::set_upgrade(&mut parts.headers, protocol);
                Empty::new().map_err(|never| match never {}).boxed()
            }
            // Streams as it arrives: nothing is collected here.
            None => body.boxed(),
        };
        Ok(Response::from_parts(parts, body))
    }

    fn prepare(
        &self,
        req: Request<Incoming>,
        ctx: &ForwardContext<'_>,
        upgrade: Option<HeaderValue>,
    ) -> Result<Request<Incoming>, ProxyError> {
        let (mut parts, body) = req.into_parts();
        let host = headers::request_host_value(&parts.uri, &parts.headers);
        // The client's own path when normalization left it as it was:
        // shared, not parsed and copied again.
        let path = match std::mem::take(&mut parts.uri).into_parts().path_and_query {
            Some(sent) if sent.as_str() == ctx.path_and_query => sent,
            _ => PathAndQuery::try_from(ctx.path_and_query)
                .map_err(|e| ProxyError::Request(e.to_string()))?,
        };
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(self.scheme.clone());
        uri.authority = Some(self.authority.clone());
        uri.path_and_query = Some(path);
        parts.uri = Uri::from_parts(uri).map_err(|e| ProxyError::Request(e.to_string()))?;
        // The upstream speaks HTTP/1.1 whatever the client spoke.
        parts.version = Version::HTTP_11;
        let h = &mut parts.headers;
        headers::remove_hop_by_hop(h);
        if let Some(protocol) = upgrade {
            headers::set_upgrade(h, protocol);
        }
        headers::strip_identity(h);
        headers::strip_own_cookies(h, &ctx.own_cookies);
        if let Some(user) = ctx.identity {
            headers::set_identity(h, user);
        }
        headers::set_forwarded(h, ctx.peer, ctx.peer_trusted, ctx.proto, host.clone());
        // Keep the public host: what most apps build their links from.
        if let Some(host) = host {
            h.insert(http::header::HOST, host);
        }
        Ok(Request::from_parts(parts, body))
    }
}

/// An https upstream is checked against `upstream.ca_file` alone when set,
/// else against the Mozilla roots built in (webpki-roots), so the result
/// does not depend on the machine's CA bundle. HTTP/1.1 only (no ALPN).
fn upstream_tls(config: &UpstreamConfig) -> Result<rustls::ClientConfig, ProxyError> {
    let mut roots = rustls::RootCertStore::empty();
    match &config.ca {
        Some(ca) => {
            roots.add_parsable_certificates(ca.certs.iter().cloned());
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    // No ALPN here: the connector sets it from the enabled versions (and
    // panics on a config that has one).
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ProxyError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn classify(err: &hyper_util::client::legacy::Error) -> ProxyError {
    if err.is_connect() {
        ProxyError::Connect(err.to_string())
    } else {
        ProxyError::Request(err.to_string())
    }
}
