//! One response body type for generated pages and proxied bodies, and the
//! builders every handler uses.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION, RETRY_AFTER, SET_COOKIE};
use http::{HeaderValue, Response, StatusCode};

use super::error::GatewayError;
use crate::pages::Pages;
use crate::pages::assets::Asset;
use crate::wire::{Body, full};

/// Whether the client gets pages or JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Html,
    Json,
}

fn build(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Portal answers carry tokens and per-user state: never cache them.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub fn html(status: StatusCode, page: String) -> Response<Body> {
    build(status, "text/html; charset=utf-8", page)
}

pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    build(status, "application/json", value.to_string())
}

/// An embedded page asset: the same for everyone, and its URL carries a
/// hash of its content, so a browser may keep it for a year.
pub fn asset(asset: &'static Asset) -> Response<Body> {
    let mut response = Response::new(full(asset.body));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    response
}

pub fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = status;
    response
}

pub fn redirect(status: StatusCode, location: &str) -> Response<Body> {
    let mut response = empty(status);
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
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
    let body = serde_json::json!({"error": err.code(), "message": err.message()});
    with_retry_after(json(err.status(), &body), err)
}

fn with_retry_after(mut response: Response<Body>, err: &GatewayError) -> Response<Body> {
    if let Some(seconds) = err.retry_after() {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}
