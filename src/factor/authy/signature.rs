//! The OneTouch callback signature (`X-Authy-Signature`, authy-api.md §3.3):
//! `base64(HMAC-SHA256(api_key, nonce|METHOD|url|canonical_params))`.
//!
//! The canonical params are Rails `Hash#to_query` of the callback data:
//! bracket keys, form-encoded, sorted by byte order, except that array
//! elements keep their order. What is signed is the data `params::nest`
//! (GET) or `serde_json` (POST) gives, so read the callback through those.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::params::{self, Segment, form_encode};

type HmacSha256 = Hmac<Sha256>;

/// Canonical params of a parsed JSON body (POST callbacks).
pub fn canonical_params(params: &Value) -> String {
    let mut items: Vec<(String, String)> = Vec::new();
    params::for_each_leaf(params, &mut |path, text| {
        let value = form_encode(&text);
        let sort_key = format!("{}={value}", encoded_key(path, true));
        items.push((sort_key, format!("{}={value}", encoded_key(path, false))));
    });
    // Zero-padded indices in the sort key keep array elements in order and
    // interleaved (`logos[][res]=a&logos[][url]=A&logos[][res]=b...`); only
    // real array positions collapse to `[]`, never a digit-only object key.
    items.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    join(items.into_iter().map(|(_, out)| out))
}

/// Encoded bracket key; `indexed` writes array positions as `[0000000007]`.
fn encoded_key(path: &[Segment<'_>], indexed: bool) -> String {
    let mut key = String::new();
    for (i, seg) in path.iter().enumerate() {
        match seg {
            Segment::Key(k) if i == 0 => key.push_str(&form_encode(k)),
            Segment::Key(k) => key.push_str(&format!("%5B{}%5D", form_encode(k))),
            Segment::Index(n) if indexed => key.push_str(&format!("%5B{n:010}%5D")),
            Segment::Index(_) => key.push_str("%5B%5D"),
        }
    }
    key
}

fn join(parts: impl Iterator<Item = String>) -> String {
    parts.collect::<Vec<_>>().join("&")
}

/// Canonical params of a GET callback's raw query string (without `?`).
pub fn canonical_query(raw_query: &str) -> String {
    let raw_query = raw_query.strip_prefix('?').unwrap_or(raw_query);
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(raw_query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let nested = params::nest(pairs.iter().cloned());
    if params::flatten(&nested).len() == pairs.len() {
        return canonical_params(&nested);
    }
    // Duplicates or conflicts that `nest` folded away: sign over every pair
    // as sent, so no pair can be added to a signed query without notice.
    let mut encoded: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
        .collect();
    encoded.sort_unstable();
    encoded.join("&")
}

/// The callback URL as it enters the signed string: query and fragment
/// dropped, everything else (scheme, host, port, trailing `/`) verbatim.
pub fn callback_url_for_signing(configured: &str) -> String {
    let end = configured.find(['?', '#']).unwrap_or(configured.len());
    configured[..end].to_owned()
}

fn mac(api_key: &str, nonce: &str, method: &str, url: &str, canonical: &str) -> HmacSha256 {
    let mut mac =
        HmacSha256::new_from_slice(api_key.as_bytes()).expect("HMAC takes any key length");
    let method = method.to_ascii_uppercase();
    for (i, part) in [nonce, method.as_str(), url, canonical].iter().enumerate() {
        if i > 0 {
            mac.update(b"|");
        }
        mac.update(part.as_bytes());
    }
    mac
}

/// The `X-Authy-Signature` value Authy (or the sandbox) sends.
pub fn sign(api_key: &str, nonce: &str, method: &str, url: &str, canonical: &str) -> String {
    STANDARD.encode(
        mac(api_key, nonce, method, url, canonical)
            .finalize()
            .into_bytes(),
    )
}

/// Constant-time check of an `X-Authy-Signature` header; a missing, empty
/// or non-base64 header is simply a wrong signature.
pub fn verify(
    api_key: &str,
    nonce: &str,
    method: &str,
    url: &str,
    canonical: &str,
    signature_header: &str,
) -> bool {
    let Ok(given) = STANDARD.decode(signature_header.trim()) else {
        return false;
    };
    !given.is_empty()
        && mac(api_key, nonce, method, url, canonical)
            .verify_slice(&given)
            .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const VECTORS: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/onetouch-signature-vectors.json"
    ));

    fn vectors() -> Vec<Value> {
        let file: Value = serde_json::from_str(VECTORS).unwrap();
        file["vectors"].as_array().unwrap().clone()
    }

    fn s<'a>(v: &'a Value, field: &str) -> &'a str {
        v[field]
            .as_str()
            .unwrap_or_else(|| panic!("vector lacks {field}"))
    }

    /// Canonical params from the vector's raw input, as the gateway would.
    fn canonical_of(v: &Value) -> Option<String> {
        if let Some(body) = v["raw_body"].as_str() {
            return Some(canonical_params(&serde_json::from_str(body).unwrap()));
        }
        v["raw_query"].as_str().map(canonical_query)
    }

    #[test]
    fn vector_file_has_fourteen_entries() {
        let all = vectors();
        assert_eq!(all.len(), 14);
        assert_eq!(all.iter().filter(|v| canonical_of(v).is_some()).count(), 12);
        assert_eq!(all.iter().filter(|v| v["raw_query"].is_string()).count(), 3);
    }

    #[test]
    fn raw_vectors_reproduce_canonical_params_and_signature() {
        for v in vectors() {
            let Some(canonical) = canonical_of(&v) else {
                continue;
            };
            let src = s(&v, "source");
            assert_eq!(canonical, s(&v, "canonical_params"), "canonical of {src}");
            let (key, nonce, method, url) = (
                s(&v, "api_key"),
                s(&v, "nonce"),
                s(&v, "method"),
                s(&v, "url"),
            );
            assert_eq!(
                sign(key, nonce, method, url, &canonical),
                s(&v, "expected_signature"),
                "{src}"
            );
            assert!(
                verify(
                    key,
                    nonce,
                    method,
                    url,
                    &canonical,
                    s(&v, "expected_signature")
                ),
                "{src}"
            );
        }
    }

    #[test]
    fn empty_params_vectors_check_the_hmac_step() {
        let quirks: Vec<Value> = vectors()
            .into_iter()
            .filter(|v| v["params_in_test"].is_object())
            .collect();
        assert_eq!(quirks.len(), 2);
        for v in quirks {
            let (key, nonce, method, url) = (
                s(&v, "api_key"),
                s(&v, "nonce"),
                s(&v, "method"),
                s(&v, "url"),
            );
            assert_eq!(s(&v, "canonical_params"), "");
            assert_eq!(
                sign(key, nonce, method, url, ""),
                s(&v, "expected_signature")
            );
            // With the params really included the signature must differ.
            let real = canonical_params(&v["params_in_test"]);
            assert_eq!(real, "a=value1&b=val%7Cue%262");
            assert!(!verify(
                key,
                nonce,
                method,
                url,
                &real,
                s(&v, "expected_signature")
            ));
        }
    }

    fn flip_last_char(s: &str) -> String {
        let mut bytes = s.as_bytes().to_vec();
        let last = bytes.len() - 1;
        bytes[last] = if bytes[last] == b'1' { b'2' } else { b'1' };
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn any_flipped_byte_fails_verification() {
        for v in vectors() {
            let Some(canonical) = canonical_of(&v) else {
                continue;
            };
            let (key, nonce, method, url) = (
                s(&v, "api_key"),
                s(&v, "nonce"),
                s(&v, "method"),
                s(&v, "url"),
            );
            let sig = s(&v, "expected_signature");
            assert!(!verify(
                key,
                nonce,
                method,
                url,
                &flip_last_char(&canonical),
                sig
            ));
            assert!(!verify(
                key,
                &flip_last_char(nonce),
                method,
                url,
                &canonical,
                sig
            ));
            assert!(!verify(
                key,
                nonce,
                method,
                &flip_last_char(url),
                &canonical,
                sig
            ));
            assert!(!verify(
                key,
                nonce,
                method,
                &format!("{url}/"),
                &canonical,
                sig
            ));
            assert!(!verify(key, nonce, "PUT", url, &canonical, sig));
            assert!(!verify(
                &flip_last_char(key),
                nonce,
                method,
                url,
                &canonical,
                sig
            ));
            let mut raw = STANDARD.decode(sig).unwrap();
            raw[0] ^= 1;
            assert!(!verify(
                key,
                nonce,
                method,
                url,
                &canonical,
                &STANDARD.encode(raw)
            ));
        }
    }

    #[test]
    fn flipped_byte_in_raw_body_changes_canonical() {
        let v = &vectors()[0];
        let body = s(v, "raw_body").replacen("approved", "denied", 1);
        let canonical = canonical_params(&serde_json::from_str(&body).unwrap());
        let (key, nonce, method, url) =
            (s(v, "api_key"), s(v, "nonce"), s(v, "method"), s(v, "url"));
        assert!(!verify(
            key,
            nonce,
            method,
            url,
            &canonical,
            s(v, "expected_signature")
        ));
    }

    #[test]
    fn malformed_headers_are_wrong_signatures() {
        for header in [
            "",
            "   ",
            "not base64!",
            "AAAA",
            "uq/wB8AR1Acvn0wFcjm7mmBJyR11nuuMhMy6semsAO8",
        ] {
            assert!(!verify(
                "foo",
                "1455825429",
                "POST",
                "https://foo.bar/",
                "qux=net",
                header
            ));
        }
    }

    #[test]
    fn arrays_keep_order_beyond_ten_elements() {
        let items: Vec<Value> = (0..12)
            .map(|i| json!({"res": format!("r{i}"), "url": format!("u{i}")}))
            .collect();
        let canonical = canonical_params(&json!({ "logos": items }));
        let expected: Vec<String> = (0..12)
            .flat_map(|i| {
                [
                    format!("logos%5B%5D%5Bres%5D=r{i}"),
                    format!("logos%5B%5D%5Burl%5D=u{i}"),
                ]
            })
            .collect();
        assert_eq!(canonical, expected.join("&"));
    }

    #[test]
    fn digit_keys_are_not_taken_for_array_positions() {
        let canonical = canonical_params(&json!({"details": {"10": "b", "2": "a"}}));
        assert_eq!(canonical, "details%5B10%5D=b&details%5B2%5D=a");
    }

    #[test]
    fn get_query_matches_post_body_of_same_data() {
        let body = json!({"status": "approved", "logos": [{"res": "a b", "url": "x"}, {"res": "c", "url": "y"}], "n": null});
        let query = params::flatten(&body)
            .iter()
            .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        assert_eq!(canonical_query(&query), canonical_params(&body));
        assert_eq!(
            canonical_query(&format!("?{query}")),
            canonical_params(&body)
        );
    }

    #[test]
    fn duplicate_query_pairs_stay_in_the_signed_string() {
        let one = canonical_query("status=denied");
        let two = canonical_query("status=approved&status=denied");
        assert_eq!(one, "status=denied");
        assert_eq!(two, "status=approved&status=denied");
    }

    #[test]
    fn callback_url_drops_query_and_fragment_only() {
        assert_eq!(
            callback_url_for_signing("https://foo.bar/"),
            "https://foo.bar/"
        );
        assert_eq!(
            callback_url_for_signing("https://h:8443/cb?x=1#f"),
            "https://h:8443/cb"
        );
        assert_eq!(callback_url_for_signing("https://h/cb#f"), "https://h/cb");
    }
}
