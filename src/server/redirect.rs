//! `server.redirect_http`: a plain-HTTP listener whose only answer is a 301
//! to the same path on https. The target host comes from
//! `server.public_url`, never from the request's `Host`, so the listener
//! cannot be made to redirect anywhere else.

use http::{Request, Response, StatusCode};

use crate::gateway::response::{self};
use crate::wire::Body;

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

    pub fn respond<B>(&self, req: &Request<B>) -> Response<Body> {
        response::redirect(StatusCode::MOVED_PERMANENTLY, &self.location(req))
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
