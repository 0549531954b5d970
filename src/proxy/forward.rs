//! Forwarding to `upstream.url` over the pool's keep-alive connections.
//! Bodies stream both ways (`Incoming` in, `Incoming` out); nothing is
//! buffered whole.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HOST, UPGRADE};
use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use super::ProxyError;
use super::headers::{self, StrippedHeaders};
use super::pool::{Endpoint, UpstreamPool};
use super::upgrade;
use crate::config::{ProxyConfig, UpstreamConfig};
use crate::model::User;
use crate::wire::{Body, ConnectionSlot};

/// What the gateway decided about the request, for the headers upstream.
pub struct ForwardContext<'a> {
    pub peer: IpAddr,
    pub peer_trusted: bool,
    pub proto: &'static str,
    /// The normalized target: what the rules decided on is what goes up.
    pub path_and_query: &'a str,
    /// The normalized target's `host[:port]`, the host the rules decided
    /// on: the upstream's `X-Forwarded-Host`.
    pub decided_host: HeaderValue,
    pub identity: Option<&'a User>,
    pub own_cookies: [&'a str; 2],
}

pub struct Upstream {
    pool: Arc<UpstreamPool>,
    /// For requests held for an approval and sent once approved: their
    /// body is in memory (`approve` rules only, never the hot path).
    held: Arc<UpstreamPool<Full<Bytes>>>,
    /// `host[:port]` of `upstream.url`: the `Host` of a request that came
    /// without one.
    authority: HeaderValue,
    response_timeout: Duration,
    /// `server.allowed_upgrades`, lower case.
    allowed_upgrades: Vec<String>,
    stripped: StrippedHeaders,
}

impl Upstream {
    pub fn new(
        config: &UpstreamConfig,
        allowed_upgrades: &[String],
        proxy: &ProxyConfig,
    ) -> Result<Self, ProxyError> {
        let url = &config.url;
        let (Some(scheme), Some(authority)) = (url.scheme_str(), url.authority()) else {
            return Err(ProxyError::Config("needs a scheme and a host".into()));
        };
        // A bracketed IPv6 literal resolves and is verified without its
        // brackets.
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let tls = match scheme {
            "http" => None,
            "https" => Some(upstream_tls(config, host)?),
            other => return Err(ProxyError::Config(format!("unsupported scheme {other}"))),
        };
        let port = authority
            .port_u16()
            .unwrap_or(if tls.is_some() { 443 } else { 80 });
        let endpoint = Endpoint {
            host: host.to_owned(),
            port,
            tls,
            connect_timeout: config.connect_timeout,
        };
        Ok(Upstream {
            held: UpstreamPool::new(endpoint.clone()),
            pool: UpstreamPool::new(endpoint),
            authority: HeaderValue::from_str(authority.as_str())
                .map_err(|e| ProxyError::Config(e.to_string()))?,
            response_timeout: config.response_timeout,
            allowed_upgrades: allowed_upgrades.to_vec(),
            stripped: StrippedHeaders::new(&proxy.strip_request_headers),
        })
    }

    /// Whether the request asks to switch to a protocol of
    /// `server.allowed_upgrades` (WebSocket): HTTP/1.1 with
    /// `Connection: upgrade` and an `Upgrade` header naming one. Any other
    /// upgrade is forwarded as a plain request.
    pub fn is_upgrade<B>(&self, req: &Request<B>) -> bool {
        upgrade::requested(req, &self.allowed_upgrades).is_some()
    }

    pub async fn forward(
        &self,
        mut req: Request<Incoming>,
        ctx: &ForwardContext<'_>,
    ) -> Result<Response<Body>, ProxyError> {
        let upgrade = upgrade::requested(&req, &self.allowed_upgrades);
        // The client's half of an upgrade must be taken before the request
        // moves into the client; afterwards it is gone.
        let client_half = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
        let slot = req.extensions_mut().remove::<ConnectionSlot>();
        let req = self.prepare(req, ctx, upgrade.clone())?;
        let mut response = tokio::time::timeout(self.response_timeout, self.pool.send(req))
            .await
            .map_err(|_| ProxyError::Timeout)??;
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
            upgrade::tunnels().open(client_half, upstream_half, slot);
            Some(answered)
        } else {
            None
        };
        let (mut parts, body) = response.into_parts();
        answer_headers(&mut parts.headers, ctx);
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

    /// Sends a request held for an approval (its body whole in memory):
    /// the same headers as [`forward`](Self::forward), never an upgrade,
    /// plus `Authgate-Approval` naming the approval.
    pub async fn forward_held(
        &self,
        req: Request<Bytes>,
        ctx: &ForwardContext<'_>,
        approval: HeaderValue,
    ) -> Result<Response<Body>, ProxyError> {
        let mut req = self.prepare(req.map(Full::new), ctx, None)?;
        // After `prepare` stripped any client copy.
        req.headers_mut().insert(headers::APPROVAL_HEADER, approval);
        let response = tokio::time::timeout(self.response_timeout, self.held.send(req))
            .await
            .map_err(|_| ProxyError::Timeout)??;
        let (mut parts, body) = response.into_parts();
        answer_headers(&mut parts.headers, ctx);
        Ok(Response::from_parts(parts, body.boxed()))
    }

    fn prepare<B>(
        &self,
        req: Request<B>,
        ctx: &ForwardContext<'_>,
        upgrade: Option<HeaderValue>,
    ) -> Result<Request<B>, ProxyError> {
        let (mut parts, body) = req.into_parts();
        let host = headers::request_host_value(&parts.uri, &parts.headers);
        // The client's own path when normalization left it as it was:
        // shared, not parsed and copied again. Origin-form: the connection
        // already goes to the upstream.
        let path = match std::mem::take(&mut parts.uri).into_parts().path_and_query {
            Some(sent) if sent.as_str() == ctx.path_and_query => sent,
            _ => PathAndQuery::try_from(ctx.path_and_query)
                .map_err(|e| ProxyError::Request(e.to_string()))?,
        };
        parts.uri = Uri::from(path);
        // The upstream speaks HTTP/1.1 whatever the client spoke.
        parts.version = Version::HTTP_11;
        let h = &mut parts.headers;
        headers::remove_hop_by_hop(h);
        if let Some(protocol) = upgrade {
            headers::set_upgrade(h, protocol);
        }
        self.stripped.strip(h);
        headers::strip_own_cookies(h, &ctx.own_cookies);
        if let Some(user) = ctx.identity {
            headers::set_identity(h, user);
        }
        let decided_host = ctx.decided_host.clone();
        headers::set_forwarded(h, ctx.peer, ctx.peer_trusted, ctx.proto, decided_host);
        // Keep the public host: what most apps build their links from.
        h.insert(HOST, host.unwrap_or_else(|| self.authority.clone()));
        Ok(Request::from_parts(parts, body))
    }
}

/// The upstream's answer headers as the client gets them.
fn answer_headers(h: &mut http::HeaderMap, ctx: &ForwardContext<'_>) {
    headers::remove_hop_by_hop(h);
    headers::drop_accel(h);
    headers::drop_own_set_cookies(h, &ctx.own_cookies);
}

/// An https upstream is checked against `upstream.ca_file` alone when set,
/// else against the Mozilla roots built in (webpki-roots), so the result
/// does not depend on the machine's CA bundle. HTTP/1.1 only.
fn upstream_tls(
    config: &UpstreamConfig,
    host: &str,
) -> Result<(TlsConnector, ServerName<'static>), ProxyError> {
    let mut roots = rustls::RootCertStore::empty();
    match &config.ca {
        Some(ca) => {
            roots.add_parsable_certificates(ca.certs.iter().cloned());
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ProxyError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| ProxyError::Config(format!("{host}: {e}")))?;
    Ok((TlsConnector::from(Arc::new(tls)), name))
}
