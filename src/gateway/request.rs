//! Facts read off a request: the client's address, whether it wants JSON or
//! pages, and a size-bounded form body.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use http::HeaderMap;
use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use ipnet::IpNet;

use super::error::GatewayError;
use super::response::Format;
use crate::proxy::headers::X_FORWARDED_FOR;

pub fn response_format(headers: &HeaderMap) -> Format {
    let wants_json = headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/json"));
    if wants_json {
        Format::Json
    } else {
        Format::Html
    }
}

/// DESIGN.md's "needs login" test: HTML when `Accept` is absent or names
/// `text/html` or `*/*`, unless the request says it is XHR.
pub fn accepts_html(headers: &HeaderMap) -> bool {
    let xhr = headers
        .get("x-requested-with")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"XMLHttpRequest"));
    if xhr {
        return false;
    }
    let mut accepts = headers.get_all(ACCEPT).iter().peekable();
    if accepts.peek().is_none() {
        return true;
    }
    accepts
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html") || v.contains("*/*"))
}

/// The peer address, or from a trusted proxy the right-most entry of
/// `X-Forwarded-For` that is not itself a trusted proxy.
pub fn client_addr(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let peer_ip = peer.ip().to_canonical();
    if !is_trusted(&peer_ip) {
        return peer_ip;
    }
    let chain: Vec<IpAddr> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().parse::<IpAddr>())
        .collect::<Result<_, _>>()
        .unwrap_or_default();
    chain
        .into_iter()
        .rev()
        .map(|ip| ip.to_canonical())
        .find(|ip| !is_trusted(ip))
        .unwrap_or(peer_ip)
}

/// A whole body of at most `limit` bytes (413 beyond).
pub async fn read_bytes(
    headers: &HeaderMap,
    body: Incoming,
    limit: usize,
) -> Result<Bytes, GatewayError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(GatewayError::PayloadTooLarge);
    }
    Ok(Limited::new(body, limit)
        .collect()
        .await
        .map_err(|_| GatewayError::PayloadTooLarge)?
        .to_bytes())
}

/// The posted fields, from a urlencoded or a JSON body of at most `limit`
/// bytes (413 beyond).
pub async fn read_form(
    headers: &HeaderMap,
    body: Incoming,
    limit: usize,
) -> Result<HashMap<String, String>, GatewayError> {
    let bytes = read_bytes(headers, body, limit).await?;
    let is_json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let fields = if is_json {
        serde_json::from_slice(&bytes).ok()
    } else {
        serde_urlencoded::from_bytes(&bytes).ok()
    };
    fields.ok_or(GatewayError::BadRequest("The form could not be read."))
}

/// A posted field, empty when absent.
pub fn field<'a>(form: &'a HashMap<String, String>, name: &str) -> &'a str {
    form.get(name).map_or("", String::as_str)
}

pub fn query_param<B>(req: &http::Request<B>, name: &str) -> Option<String> {
    let query = req.uri().query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, HeaderValue::from_str(value).unwrap());
        }
        h
    }

    #[test]
    fn html_is_the_default_and_xhr_or_json_is_not() {
        assert!(accepts_html(&headers(&[])));
        assert!(accepts_html(&headers(&[(
            "accept",
            "text/html,application/xhtml+xml"
        )])));
        assert!(accepts_html(&headers(&[("accept", "*/*")])));
        assert!(!accepts_html(&headers(&[("accept", "application/json")])));
        assert!(!accepts_html(&headers(&[
            ("accept", "*/*"),
            ("x-requested-with", "XMLHttpRequest")
        ])));
        assert_eq!(
            response_format(&headers(&[("accept", "application/json")])),
            Format::Json
        );
        assert_eq!(
            response_format(&headers(&[("accept", "*/*")])),
            Format::Html
        );
    }

    #[test]
    fn forwarded_for_is_read_only_from_trusted_peers() {
        let trusted: Vec<IpNet> = vec![
            "127.0.0.1/32".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ];
        let h = headers(&[("x-forwarded-for", "203.0.113.9, 198.51.100.7, 10.1.1.1")]);
        let proxy: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let stranger: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        assert_eq!(client_addr(proxy, &h, &trusted).to_string(), "198.51.100.7");
        assert_eq!(client_addr(stranger, &h, &trusted).to_string(), "192.0.2.1");
        let junk = headers(&[("x-forwarded-for", "not-an-ip")]);
        assert_eq!(client_addr(proxy, &junk, &trusted).to_string(), "127.0.0.1");
    }
}
