//! Rails/Sinatra bracket-notation parameters (`user[email]`, `logos[][res]`),
//! the shape Authy speaks on the wire and signs callbacks over
//! (authy-api.md §1 and §3.3). Shared by the client, the webhook signature
//! and the sandbox.

use serde_json::{Map, Value};

/// Keys with more brackets are dropped: the callback endpoint is public, and
/// a query of `a[a][a]...` must not recurse without bound (Rack stops at 100).
const MAX_DEPTH: usize = 32;

/// One step of a flattened key: an object member or an array position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

/// Calls `leaf` for every scalar under `value`, in object-key order and
/// array order, with the path that leads to it. Empty objects and arrays
/// have no leaves, so they produce nothing (what Authy's verifiers do).
pub(crate) fn for_each_leaf<'a>(value: &'a Value, leaf: &mut impl FnMut(&[Segment<'a>], String)) {
    let mut path = Vec::new();
    walk(value, &mut path, leaf);
}

fn walk<'a>(
    value: &'a Value,
    path: &mut Vec<Segment<'a>>,
    leaf: &mut impl FnMut(&[Segment<'a>], String),
) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                path.push(Segment::Key(k));
                walk(v, path, leaf);
                path.pop();
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                path.push(Segment::Index(i));
                walk(v, path, leaf);
                path.pop();
            }
        }
        scalar => leaf(path, scalar_text(scalar)),
    }
}

/// Rails `to_param` of a JSON scalar: null is the empty string.
fn scalar_text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        // Containers never reach here; `walk` descends into them.
        Value::Array(_) | Value::Object(_) => String::new(),
    }
}

/// `p[k]` for members, `p[]` for array elements; the first key stays bare.
pub(crate) fn bracket_key(path: &[Segment<'_>]) -> String {
    let mut key = String::new();
    for (i, seg) in path.iter().enumerate() {
        match seg {
            Segment::Key(k) if i == 0 => key.push_str(k),
            Segment::Key(k) => {
                key.push('[');
                key.push_str(k);
                key.push(']');
            }
            Segment::Index(_) => key.push_str("[]"),
        }
    }
    key
}

/// Flattens nested JSON into bracket-notation pairs, as a form body or a
/// GET callback carries them.
pub fn flatten(value: &Value) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for_each_leaf(value, &mut |path, text| {
        pairs.push((bracket_key(path), text))
    });
    pairs
}

/// Builds the nested params map from bracket-notation pairs the way
/// Rack's `normalize_params` does; every leaf is a string. Where Rack would
/// answer 400 (a key used both as scalar and as hash/array) the later pair
/// wins; pairs with an empty name or nested too deep are dropped.
pub fn nest(pairs: impl IntoIterator<Item = (String, String)>) -> Value {
    let mut root = Map::new();
    for (key, value) in pairs {
        // Each level of `insert` consumes at least one `[`.
        if key.matches('[').count() <= MAX_DEPTH {
            insert(&mut root, &key, value);
        }
    }
    Value::Object(root)
}

/// Rack's split of a name: skip leading brackets, take the first name, skip
/// the `]`s closing it; the rest ("after") says what the name holds.
fn split_name(name: &str) -> (&str, &str) {
    let rest = name.trim_start_matches(['[', ']']);
    let end = rest.find(['[', ']']).unwrap_or(rest.len());
    let (k, after) = rest.split_at(end);
    (k, after.trim_start_matches(']'))
}

fn insert(params: &mut Map<String, Value>, name: &str, value: String) {
    let (k, after) = split_name(name);
    if k.is_empty() {
        return;
    }
    if after.is_empty() {
        params.insert(k.to_owned(), Value::String(value));
    } else if after == "[" {
        params.insert(name.to_owned(), Value::String(value));
    } else if after == "[]" {
        array_at(params, k).push(Value::String(value));
    } else if let Some(child) = array_child_key(after) {
        let items = array_at(params, k);
        // A repeated field starts the next element: `a[][x]=1&a[][x]=2`.
        match items.last_mut() {
            Some(Value::Object(last)) if !has_key(last, child) => insert(last, child, value),
            _ => {
                let mut element = Map::new();
                insert(&mut element, child, value);
                items.push(Value::Object(element));
            }
        }
    } else {
        insert(object_at(params, k), after, value);
    }
}

/// `[][child]` or `[]rest` → the name inside each array element.
fn array_child_key(after: &str) -> Option<&str> {
    let rest = after.strip_prefix("[]")?;
    let simple = rest
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .filter(|inner| !inner.is_empty() && !inner.contains(['[', ']']));
    simple.or(Some(rest).filter(|r| !r.is_empty()))
}

/// Rack's `params_hash_has_key?`: does `key` (possibly `a[b]`) already
/// exist in this element? Keys with `[]` never count as present.
fn has_key(map: &Map<String, Value>, key: &str) -> bool {
    if key.contains("[]") {
        return false;
    }
    let mut current = map;
    let mut parts = key.split(['[', ']']).filter(|p| !p.is_empty()).peekable();
    while let Some(part) = parts.next() {
        match current.get(part) {
            None => return false,
            Some(Value::Object(inner)) => current = inner,
            Some(_) if parts.peek().is_none() => return true,
            Some(_) => return false,
        }
    }
    true
}

fn array_at<'m>(params: &'m mut Map<String, Value>, k: &str) -> &'m mut Vec<Value> {
    let slot = params
        .entry(k.to_owned())
        .or_insert_with(|| Value::Array(Vec::new()));
    if !slot.is_array() {
        *slot = Value::Array(Vec::new());
    }
    slot.as_array_mut().expect("just made an array")
}

fn object_at<'m>(params: &'m mut Map<String, Value>, k: &str) -> &'m mut Map<String, Value> {
    let slot = params
        .entry(k.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut().expect("just made an object")
}

/// `application/x-www-form-urlencoded` encoding as Authy signs it (Ruby's
/// `CGI.escape`): unreserved bytes kept, space → `+`, the rest `%XX`.
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn flatten_follows_rails_rules() {
        let v = json!({
            "user": {"email": "a@b.c", "id": 7, "ok": true, "gone": null},
            "logos": [{"res": "default", "url": "u1"}, {"res": "med", "url": "u2"}],
            "tags": ["x", "y"],
            "empty_obj": {}, "empty_arr": [],
            "s": "plain text"
        });
        assert_eq!(
            flatten(&v),
            pairs(&[
                ("logos[][res]", "default"),
                ("logos[][url]", "u1"),
                ("logos[][res]", "med"),
                ("logos[][url]", "u2"),
                ("s", "plain text"),
                ("tags[]", "x"),
                ("tags[]", "y"),
                ("user[email]", "a@b.c"),
                ("user[gone]", ""),
                ("user[id]", "7"),
                ("user[ok]", "true"),
            ])
        );
    }

    #[test]
    fn nest_builds_hashes_and_arrays() {
        let v = nest(pairs(&[
            ("user[email]", "x"),
            ("user[cellphone]", "555"),
            ("logos[][res]", "a"),
            ("logos[][url]", "b"),
            ("logos[][res]", "c"),
            ("tags[]", "1"),
            ("tags[]", "2"),
            ("send_install_link_via_sms", "false"),
            ("a[b][c]", "deep"),
        ]));
        assert_eq!(
            v,
            json!({
                "user": {"email": "x", "cellphone": "555"},
                "logos": [{"res": "a", "url": "b"}, {"res": "c"}],
                "tags": ["1", "2"],
                "send_install_link_via_sms": "false",
                "a": {"b": {"c": "deep"}}
            })
        );
    }

    #[test]
    fn nest_handles_nested_fields_inside_array_elements() {
        let v = nest(pairs(&[
            ("x[][a][b]", "1"),
            ("x[][a][c]", "2"),
            ("x[][a][b]", "3"),
        ]));
        assert_eq!(
            v,
            json!({"x": [{"a": {"b": "1", "c": "2"}}, {"a": {"b": "3"}}]})
        );
    }

    #[test]
    fn nest_conflicts_later_pair_wins_and_bad_names_drop() {
        assert_eq!(
            nest(pairs(&[("a", "1"), ("a[b]", "2")])),
            json!({"a": {"b": "2"}})
        );
        assert_eq!(nest(pairs(&[("a[b]", "2"), ("a", "1")])), json!({"a": "1"}));
        assert_eq!(nest(pairs(&[("a", "1"), ("a", "2")])), json!({"a": "2"}));
        assert_eq!(nest(pairs(&[("[]", "1"), ("", "2")])), json!({}));
    }

    #[test]
    fn nest_stops_at_depth_limit() {
        let deep = format!("a{}", "[a]".repeat(10_000));
        assert_eq!(nest([(deep, "x".to_string())]), json!({}));
    }

    #[test]
    fn nest_reverses_flatten() {
        let v = json!({
            "approval_request": {
                "logos": [{"res": "default", "url": "u"}],
                "transaction": {"details": {"Process ID": "1"}, "message": "hi"}
            },
            "status": "approved"
        });
        assert_eq!(nest(flatten(&v)), v);
    }

    #[test]
    fn form_encode_matches_cgi_escape() {
        assert_eq!(form_encode("aZ09-._~"), "aZ09-._~");
        assert_eq!(form_encode("a b"), "a+b");
        assert_eq!(
            form_encode("[]/|&,:*+=%"),
            "%5B%5D%2F%7C%26%2C%3A%2A%2B%3D%25"
        );
        assert_eq!(form_encode("é"), "%C3%A9");
    }
}
