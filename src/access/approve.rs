//! The `approve` table of an `approve` rule: what the user is shown about
//! the one request they approve. `approve.message` is a template such as
//! `"Send {amount} {currency} to {to}"`; `approve.fields` names where each
//! value comes from (`form:NAME`, `json:/pointer`, `query:NAME`,
//! `header:NAME`). A field named like a secret is refused at load: an
//! approval shows its values on a phone's lock screen.

use std::collections::BTreeMap;

use http::HeaderMap;
use http::header::HeaderName;
use serde::{Deserialize, Serialize};

/// The longest value shown, in characters; longer ones end in `…`.
pub const MAX_VALUE_CHARS: usize = 64;

/// Parts of a name that say "this is a secret": such a field is refused.
const SECRET_WORDS: &[&str] = &[
    "password", "passwd", "pwd", "secret", "token", "otp", "code", "pin", "cvv", "cvc", "csrf",
    "cookie", "auth", "key", "session", "ssn", "iban_pin",
];

/// `approve` as written in a rule.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawApprove {
    /// Shown as the push's message and the page's heading.
    #[serde(default)]
    pub message: String,
    /// Detail name → `form:NAME`, `json:/pointer`, `query:NAME` or `header:NAME`.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}

/// A compiled `approve` table.
#[derive(Debug, Clone, Default)]
pub struct ApprovalSpec {
    message: String,
    fields: Vec<Field>,
}

#[derive(Debug, Clone)]
struct Field {
    name: String,
    source: Source,
}

#[derive(Debug, Clone)]
enum Source {
    Form(String),
    /// An RFC 6901 pointer into a JSON body.
    Json(String),
    Query(String),
    Header(HeaderName),
}

/// The parts of a held request the fields read.
pub struct RequestParts<'a> {
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// What an approval shows: the rendered message and each field's value,
/// truncated, control characters removed (escaping is the page's job).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    pub message: String,
    pub fields: Vec<(String, String)>,
}

/// A problem with `approve`, with the key below it (`fields.pin`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApproveError {
    pub key: String,
    pub problem: String,
}

impl ApprovalSpec {
    pub fn compile(raw: &RawApprove) -> Result<Self, ApproveError> {
        let fail = |key: String, problem: String| ApproveError { key, problem };
        let mut fields = Vec::new();
        for (name, source) in &raw.fields {
            let key = format!("fields.{name}");
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(fail(key, "a field name is letters, digits and _".into()));
            }
            let source = parse_source(source).map_err(|p| fail(key.clone(), p))?;
            if let Some(word) = secret_word(name).or_else(|| secret_word(source.name())) {
                let problem = format!(
                    "looks like a secret ({word:?}): an approval shows its values on a phone"
                );
                return Err(fail(key, problem));
            }
            fields.push(Field {
                name: name.clone(),
                source,
            });
        }
        for placeholder in placeholders(&raw.message) {
            if !fields.iter().any(|f| f.name == placeholder) {
                let problem = format!("{{{placeholder}}} names no field of approve.fields");
                return Err(fail("message".into(), problem));
            }
        }
        Ok(ApprovalSpec {
            message: raw.message.clone(),
            fields,
        })
    }

    /// The message and the field values of one request.
    pub fn show(&self, request: &RequestParts<'_>) -> Shown {
        let fields: Vec<(String, String)> = self
            .fields
            .iter()
            .map(|f| (f.name.clone(), shown_value(&f.source.read(request))))
            .collect();
        let mut message = self.message.clone();
        for (name, value) in &fields {
            message = message.replace(&format!("{{{name}}}"), value);
        }
        Shown { message, fields }
    }
}

impl Source {
    fn name(&self) -> &str {
        match self {
            Source::Form(name) | Source::Json(name) | Source::Query(name) => name,
            Source::Header(name) => name.as_str(),
        }
    }

    /// The value in the request, empty when absent.
    fn read(&self, request: &RequestParts<'_>) -> String {
        match self {
            Source::Form(name) => form_value(request.body, name),
            Source::Query(name) => form_value(request.query.unwrap_or("").as_bytes(), name),
            Source::Header(name) => request
                .headers
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default(),
            Source::Json(pointer) => serde_json::from_slice::<serde_json::Value>(request.body)
                .ok()
                .and_then(|json| json.pointer(pointer).map(json_text))
                .unwrap_or_default(),
        }
    }
}

fn parse_source(raw: &str) -> Result<Source, String> {
    let (kind, name) = raw
        .split_once(':')
        .ok_or("must be form:NAME, json:/pointer, query:NAME or header:NAME")?;
    if name.is_empty() {
        return Err("names nothing after the colon".into());
    }
    match kind {
        "form" => Ok(Source::Form(name.to_owned())),
        "query" => Ok(Source::Query(name.to_owned())),
        "json" if name.starts_with('/') => Ok(Source::Json(name.to_owned())),
        "json" => Err("a JSON pointer starts with \"/\"".into()),
        "header" => HeaderName::from_bytes(name.as_bytes())
            .map(Source::Header)
            .map_err(|_| "not a header name".into()),
        other => Err(format!("{other:?} is not one of form, json, query, header")),
    }
}

/// The secret-sounding word in `name`, if any (case and separators ignored).
fn secret_word(name: &str) -> Option<&'static str> {
    let lowered: String = name
        .to_ascii_lowercase()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    SECRET_WORDS
        .iter()
        .copied()
        .find(|word| lowered.contains(word))
}

/// The `{name}`s of a message template.
fn placeholders(message: &str) -> Vec<&str> {
    message
        .split('{')
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
        .collect()
}

fn form_value(encoded: &[u8], name: &str) -> String {
    url::form_urlencoded::parse(encoded)
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default()
}

fn json_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// At most `MAX_VALUE_CHARS` characters, no control characters.
fn shown_value(value: &str) -> String {
    let clean: String = value.chars().filter(|c| !c.is_control()).collect();
    if clean.chars().count() <= MAX_VALUE_CHARS {
        return clean;
    }
    let mut cut: String = clean.chars().take(MAX_VALUE_CHARS - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(message: &str, fields: &[(&str, &str)]) -> RawApprove {
        RawApprove {
            message: message.into(),
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn values_come_from_each_kind_of_source_and_fill_the_message() {
        let spec = ApprovalSpec::compile(&raw(
            "Send {amount} {currency} to {to}",
            &[
                ("amount", "form:amount"),
                ("currency", "query:cur"),
                ("to", "header:x-recipient"),
            ],
        ))
        .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-recipient", "Bob".parse().unwrap());
        let shown = spec.show(&RequestParts {
            query: Some("cur=EUR"),
            headers: &headers,
            body: b"amount=12.50&to=ignored",
        });
        assert_eq!(shown.message, "Send 12.50 EUR to Bob");
        let json = ApprovalSpec::compile(&raw("", &[("to", "json:/payee/name")])).unwrap();
        let shown = json.show(&RequestParts {
            query: None,
            headers: &HeaderMap::new(),
            body: br#"{"payee":{"name":"Carol"}}"#,
        });
        assert_eq!(shown.fields, vec![("to".into(), "Carol".into())]);
    }

    #[test]
    fn long_values_are_truncated_and_control_characters_dropped() {
        let spec = ApprovalSpec::compile(&raw("{to}", &[("to", "form:to")])).unwrap();
        let long = format!("to={}%0A{}", "a".repeat(40), "b".repeat(40));
        let shown = spec.show(&RequestParts {
            query: None,
            headers: &HeaderMap::new(),
            body: long.as_bytes(),
        });
        assert_eq!(shown.message.chars().count(), MAX_VALUE_CHARS);
        assert!(shown.message.ends_with('…'));
        assert!(!shown.message.contains('\n'));
    }

    #[test]
    fn secret_sounding_fields_and_bad_sources_are_refused_by_key() {
        for (name, source) in [
            ("password", "form:x"),
            ("to", "form:user_password"),
            ("pin", "form:x"),
            ("x", "header:Authorization"),
            ("card_cvv", "json:/cvv"),
            ("one_time", "form:otp"),
        ] {
            let err = ApprovalSpec::compile(&raw("", &[(name, source)])).unwrap_err();
            assert_eq!(err.key, format!("fields.{name}"), "{name} {source}");
            assert!(err.problem.contains("secret"), "{err:?}");
        }
        for source in ["amount", "body:x", "json:x", "form:"] {
            let err = ApprovalSpec::compile(&raw("", &[("amount", source)])).unwrap_err();
            assert_eq!(err.key, "fields.amount", "{source}");
        }
        let err = ApprovalSpec::compile(&raw("Send {amount}", &[])).unwrap_err();
        assert_eq!(err.key, "message");
    }
}
