//! `server.redirect_http`: a plain-HTTP listener whose only answer is a 301
//! to the same path on https. The target host comes from
//! `server.public_url`, never from the request's `Host`, so the listener
//! cannot be made to redirect anywhere else.

use bytes::Bytes;
use http::header::LOCATION;
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::wire::{Body, ConnInfo, Handler, full};

pub struct RedirectToHttps {
    /// `https://host[:port]`, no trailing slash.
    origin: String,
}

impl RedirectToHttps {
    /// `public_url` is https (validation checked): its origin is kept,
    /// including a non-default port, and its path is not (the request's
    /// own path is what the https listener serves).
    pub fn new(public_url: &url::Url) -> Self {
        RedirectToHttps {
            origin: public_url.origin().ascii_serialization(),
        }
    }

    pub fn location<B>(&self, req: &Request<B>) -> String {
        let target = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .trim_start_matches('*');
        match target.starts_with('/') {
            true => format!("{}{target}", self.origin),
            false => format!("{}/", self.origin),
        }
    }

    /// A 301 with no body; no `Location` for a target that is not a
    /// valid header value.
    pub fn respond<B>(&self, req: &Request<B>) -> Response<Body> {
        let mut response = Response::new(full(Bytes::new()));
        *response.status_mut() = StatusCode::MOVED_PERMANENTLY;
        if let Ok(location) = HeaderValue::from_str(&self.location(req)) {
            response.headers_mut().insert(LOCATION, location);
        }
        response
    }
}

impl Handler for RedirectToHttps {
    async fn handle(&self, req: Request<Incoming>, _conn: ConnInfo) -> Response<Body> {
        self.respond(&req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(public_url: &str, uri: &str, host: &str) -> String {
        let redirect = RedirectToHttps::new(&url::Url::parse(public_url).unwrap());
        let req = Request::get(uri).header("host", host).body(()).unwrap();
        redirect.location(&req)
    }

    #[test]
    fn keeps_path_and_query_and_ignores_the_host_header() {
        assert_eq!(
            location("https://auth.example.com/", "/app/x?a=1&b=%20", "evil.test"),
            "https://auth.example.com/app/x?a=1&b=%20"
        );
        assert_eq!(
            location("https://auth.example.com:8443/portal", "/", "evil.test"),
            "https://auth.example.com:8443/"
        );
    }

    #[test]
    fn absolute_form_and_asterisk_targets_keep_only_the_path() {
        assert_eq!(
            location("https://a.example", "http://evil.test/p?q", "x"),
            "https://a.example/p?q"
        );
        assert_eq!(
            location("https://a.example", "*", "x"),
            "https://a.example/"
        );
    }
}
