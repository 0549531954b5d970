//! The response builders every handler uses (the body type is `wire`'s),
//! and `whole`: answers whose body is whole at once, for the fast path.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, SET_COOKIE};
use http::{HeaderValue, Response, StatusCode};

use super::error::GatewayError;
use crate::pages::{Pages, StaticFile};
use crate::wire::{Body, full};

/// Whether the client gets pages or JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Html,
    Json,
}

fn build(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    whole::build(status, content_type, body).map(full)
}

pub fn html(status: StatusCode, page: String) -> Response<Body> {
    build(status, "text/html; charset=utf-8", page)
}

pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    build(status, "application/json", value.to_string())
}

/// A file the pages load: the same for everyone, and its URL carries a
/// hash of its content, so a browser may keep it for a year.
pub fn asset(file: StaticFile) -> Response<Body> {
    let mut response = Response::new(full(file.body));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(file.content_type));
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    response
}

pub fn empty(status: StatusCode) -> Response<Body> {
    whole::empty(status).map(full)
}

pub fn redirect(status: StatusCode, location: &str) -> Response<Body> {
    whole::redirect(status, location).map(full)
}

pub fn with_cookies(mut response: Response<Body>, cookies: &[String]) -> Response<Body> {
    for cookie in cookies {
        if let Ok(value) = HeaderValue::from_str(cookie) {
            response.headers_mut().append(SET_COOKIE, value);
        }
    }
    response
}

/// The error's status and text as a page or as
/// `{"error": code, "message": text}`.
pub fn error(err: &GatewayError, format: Format, pages: &Pages) -> Response<Body> {
    match format {
        Format::Json => json_error(err),
        Format::Html => {
            let page = pages.error(err.status().as_u16(), err.message());
            with_retry_after(html(err.status(), page), err)
        }
    }
}

/// The error as `{"error": code, "message": text}`, whatever the client
/// accepts.
pub fn json_error(err: &GatewayError) -> Response<Body> {
    whole::error_json(err).map(full)
}

fn with_retry_after<B>(mut response: Response<B>, err: &GatewayError) -> Response<B> {
    if let Some(seconds) = err.retry_after() {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// Answers whose body is whole at once: the listener's fast path writes
/// them as they are, and `wire::full` makes them hyper's body without a
/// copy. Forward-auth answers are built here, for both paths.
pub mod whole {
    use bytes::Bytes;
    use http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION};
    use http::{HeaderValue, Response, StatusCode};

    use super::{GatewayError, with_retry_after};

    pub(super) fn build(
        status: StatusCode,
        content_type: &'static str,
        body: impl Into<Bytes>,
    ) -> Response<Bytes> {
        let mut response = Response::new(body.into());
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        // Portal answers carry tokens and per-user state: never cache them.
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }

    pub fn empty(status: StatusCode) -> Response<Bytes> {
        let mut response = Response::new(Bytes::new());
        *response.status_mut() = status;
        response
    }

    pub fn redirect(status: StatusCode, location: &str) -> Response<Bytes> {
        let mut response = empty(status);
        if let Ok(value) = HeaderValue::from_str(location) {
            response.headers_mut().insert(LOCATION, value);
        }
        response
    }

    /// The error as `{"error": code, "message": text}`.
    pub fn error_json(err: &GatewayError) -> Response<Bytes> {
        let value = serde_json::json!({"error": err.code(), "message": err.message()});
        with_retry_after(
            build(err.status(), "application/json", value.to_string()),
            err,
        )
    }
}
