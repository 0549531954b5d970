//! HTTP plumbing shared by the API and the control surface: a request read
//! into memory, Authy's merged params, and the response builders.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue, LOCATION};
use http::{HeaderMap, Method, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{Value, json};

use crate::factor::authy::params;

/// Authy requests are small; a bigger body is a mistake or an attack.
const MAX_BODY: usize = 1 << 20;

pub type Reply = Response<Full<Bytes>>;

/// A request with its body read.
pub struct Incoming {
    pub method: Method,
    pub path: String,
    pub query: String,
    /// The authority the client asked for (Host header or h2 :authority).
    pub host: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Incoming {
    pub async fn read(req: hyper::Request<hyper::body::Incoming>) -> Result<Incoming, Reply> {
        let (parts, body) = req.into_parts();
        let body = match Limited::new(body, MAX_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => return Err(json_error(StatusCode::PAYLOAD_TOO_LARGE, "body too large")),
        };
        let host = parts.uri.authority().map(|a| a.to_string()).or_else(|| {
            let host = parts.headers.get(http::header::HOST)?;
            host.to_str().ok().map(str::to_owned)
        });
        Ok(Incoming {
            method: parts.method,
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().unwrap_or("").to_owned(),
            host,
            headers: parts.headers,
            body,
        })
    }

    /// The path split on `/`, without the leading empty segment. Segments
    /// stay percent-encoded: ids, tokens and uuids never need decoding, and
    /// `..%2f` tricks then simply fail to match.
    pub fn segments(&self) -> Vec<&str> {
        self.path.split('/').skip(1).collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn content_type(&self) -> &str {
        self.header(CONTENT_TYPE.as_str()).unwrap_or("")
    }

    /// Query string, form body and JSON body merged into one nested map
    /// (Rails rules; later sources win), as Authy's Sinatra stack did.
    pub fn params(&self) -> Value {
        let mut pairs = form_pairs(self.query.as_bytes());
        if self
            .content_type()
            .starts_with("application/x-www-form-urlencoded")
        {
            pairs.extend(form_pairs(&self.body));
        }
        let mut merged = params::nest(pairs);
        // A JSON array or scalar body carries no named params.
        if let Some(json @ Value::Object(_)) = self.json_body() {
            deep_merge(&mut merged, json);
        }
        merged
    }

    /// The body as JSON when it is declared as such (or undeclared and
    /// looks like an object).
    pub fn json_body(&self) -> Option<Value> {
        let declared = self.content_type().contains("json");
        let guessed = self.content_type().is_empty() && self.body.first() == Some(&b'{');
        if declared || guessed {
            serde_json::from_slice(&self.body).ok()
        } else {
            None
        }
    }
}

fn form_pairs(raw: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw).into_owned().collect()
}

/// Objects merge member by member; anything else is replaced.
fn deep_merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(into), Value::Object(from)) => {
            for (key, value) in from {
                deep_merge(into.entry(key).or_insert(Value::Null), value);
            }
        }
        (into, from) => *into = from,
    }
}

/// A scalar param as text: form params are strings, JSON ones may be
/// numbers or booleans. Objects, arrays and null count as absent.
pub fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `force=true` style flags: only an explicit true counts, so a client
/// that sends nothing (or garbage) is caught by the lock-out behaviour.
pub fn is_true(value: Option<&Value>) -> bool {
    text(value).is_some_and(|s| s.eq_ignore_ascii_case("true"))
}

/// Authy's generic error envelope.
pub fn authy_error(status: StatusCode, message: &str, code: &str) -> Reply {
    let body = json!({
        "message": message,
        "success": false,
        "errors": {"message": message},
        "error_code": code,
    });
    json_reply(status, &body)
}

/// The control surface's errors: plain and short.
pub fn json_error(status: StatusCode, message: &str) -> Reply {
    json_reply(status, &json!({"error": message}))
}

pub fn json_reply(status: StatusCode, body: &Value) -> Reply {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    reply(status, "application/json; charset=utf-8", bytes)
}

pub fn html_reply(status: StatusCode, html: String) -> Reply {
    reply(status, "text/html; charset=utf-8", html.into_bytes())
}

/// 303 so the browser follows with a GET (post/redirect/get).
pub fn see_other(location: &'static str) -> Reply {
    let mut response = reply(
        StatusCode::SEE_OTHER,
        "text/plain; charset=utf-8",
        Vec::new(),
    );
    response
        .headers_mut()
        .insert(LOCATION, HeaderValue::from_static(location));
    response
}

fn reply(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Reply {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
