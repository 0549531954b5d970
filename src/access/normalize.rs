//! The one shared normalization of a request target (DESIGN.md, "Public
//! surface", **Normalization**). Rules are matched against its output and,
//! in proxy mode, its path is what goes upstream, so the decision and the
//! upstream always see the same resource. Matching rules against the raw
//! path is the bypass peers shipped three times; nothing else in the crate
//! may parse a target for a rule match.
//!
//! Most requests are already in normal form: each part is checked for
//! that first and then borrowed, not rebuilt.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use http::Method;
use thiserror::Error;

/// The schemes a gateway target can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// A normalized request target: what every rule sees. It borrows from
/// the raw target wherever that was already normal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a> {
    pub scheme: Scheme,
    /// Lower-case, without a trailing dot; IPv6 literals in brackets.
    pub host: Cow<'a, str>,
    /// Only a non-default port; the scheme's own port is `None`.
    pub port: Option<u16>,
    /// Canonical path (see [`normalize`]), never with query or fragment.
    pub path: Cow<'a, str>,
    /// The query as sent (without `?`), except that characters a request
    /// line cannot carry (space, `"`, `<`, `>`, non-ASCII) are
    /// percent-encoded. `Some("")` for a bare `?`.
    pub query: Option<Cow<'a, str>>,
    /// Upper-case token.
    pub method: Method,
    /// IPv4-mapped IPv6 addresses are turned into IPv4, so a rule's
    /// `10.0.0.0/8` matches a client seen on a dual-stack listener.
    pub client: IpAddr,
}

/// Why a target was refused; every variant is a 400. The messages are
/// fixed: nothing of the attacker's input is echoed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum NormalizeError {
    #[error("unsupported scheme")]
    Scheme,
    #[error("invalid host")]
    Host,
    #[error("invalid port")]
    Port,
    #[error("request target is not an absolute path")]
    NotAbsolutePath,
    #[error("malformed percent-escape")]
    BadEscape,
    #[error("encoded slash or backslash in path")]
    EncodedSeparator,
    #[error("backslash in path")]
    Backslash,
    #[error("control character in request target")]
    Control,
    #[error("path is not valid UTF-8")]
    Utf8,
    #[error("dot segment with parameters in path")]
    DotParameters,
    #[error("invalid method")]
    Method,
}

/// Longest method accepted; real ones are far shorter.
const MAX_METHOD_LEN: usize = 32;

/// Normalizes the original request into the form rules are matched on.
///
/// - `scheme`: `http` or `https` (any case).
/// - `host`: a Host / X-Forwarded-Host value, with an optional port:
///   lower-cased, trailing dot and default port removed; must be a
///   hostname (letters, digits, `-`, `_`), an IPv4 address or a bracketed
///   IPv6 address. A host whose last label looks numeric must be a real
///   dotted-quad, so `127.1` or `0x7f.1` cannot pose as names.
/// - `path_and_query`: origin-form (`/…`); the fragment is dropped,
///   escapes of unreserved characters are decoded, other escapes
///   upper-cased, characters outside RFC 3986 `pchar` percent-encoded,
///   repeated slashes merged, `.`/`..` resolved (never above root).
///   `%2F`, `%5C`, `%00`, control characters, a raw backslash, invalid
///   UTF-8 once decoded, or a dot segment carrying `;` parameters
///   (`..;x`) are errors.
/// - `method`: a token, upper-cased.
pub fn normalize<'a>(
    scheme: &str,
    host: &'a str,
    path_and_query: &'a str,
    method: &str,
    client: IpAddr,
) -> Result<Target<'a>, NormalizeError> {
    let scheme = parse_scheme(scheme)?;
    let (host, port) = parse_authority(host, scheme)?;
    let (path, query) = parse_path_and_query(path_and_query)?;
    Ok(Target {
        scheme,
        host,
        port,
        path,
        query,
        method: parse_method(method)?,
        client: client.to_canonical(),
    })
}

impl Target<'_> {
    /// `host[:port]`, the port only when not the scheme's default.
    pub fn authority(&self) -> String {
        match self.port {
            Some(port) => format!("{}:{port}", self.host),
            None => self.host.clone().into_owned(),
        }
    }

    /// What goes upstream in proxy mode: the normalized path and the query.
    pub fn path_and_query(&self) -> Cow<'_, str> {
        match &self.query {
            Some(query) => Cow::Owned(format!("{}?{query}", self.path)),
            None => Cow::Borrowed(&self.path),
        }
    }

    /// `scheme://host[:port]path[?query]`, the URL to come back to (`rd`).
    pub fn url(&self) -> String {
        format!(
            "{}://{}{}",
            self.scheme.as_str(),
            self.authority(),
            self.path_and_query()
        )
    }
}

fn parse_scheme(scheme: &str) -> Result<Scheme, NormalizeError> {
    if scheme.eq_ignore_ascii_case("http") {
        Ok(Scheme::Http)
    } else if scheme.eq_ignore_ascii_case("https") {
        Ok(Scheme::Https)
    } else {
        Err(NormalizeError::Scheme)
    }
}

fn parse_method(method: &str) -> Result<Method, NormalizeError> {
    let method = method.as_bytes();
    if method.is_empty() || method.len() > MAX_METHOD_LEN || !method.iter().all(|&b| is_tchar(b)) {
        return Err(NormalizeError::Method);
    }
    let mut upper = [0u8; MAX_METHOD_LEN];
    let upper = &mut upper[..method.len()];
    upper.copy_from_slice(method);
    upper.make_ascii_uppercase();
    Method::from_bytes(upper).map_err(|_| NormalizeError::Method)
}

/// RFC 9110 `tchar`.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

// ---------------------------------------------------------------- host

fn parse_authority(
    raw: &str,
    scheme: Scheme,
) -> Result<(Cow<'_, str>, Option<u16>), NormalizeError> {
    let (host, port) = split_port(raw)?;
    let port = match port {
        Some(digits) => parse_port(digits)?,
        None => None,
    };
    let port = port.filter(|&p| p != scheme.default_port());
    Ok((normalize_host(host)?, port))
}

/// Splits `host[:port]`; a bare IPv6 address (colons without brackets)
/// cannot be told from a port and is refused.
fn split_port(raw: &str) -> Result<(&str, Option<&str>), NormalizeError> {
    if raw.starts_with('[') {
        let end = raw.find(']').ok_or(NormalizeError::Host)?;
        let (host, rest) = raw.split_at(end + 1);
        return match rest.strip_prefix(':') {
            Some(port) => Ok((host, Some(port))),
            None if rest.is_empty() => Ok((host, None)),
            None => Err(NormalizeError::Host),
        };
    }
    match raw.split_once(':') {
        Some((_, port)) if port.contains(':') => Err(NormalizeError::Host),
        Some((host, port)) => Ok((host, Some(port))),
        None => Ok((raw, None)),
    }
}

fn parse_port(digits: &str) -> Result<Option<u16>, NormalizeError> {
    if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NormalizeError::Port);
    }
    match digits.parse::<u16>() {
        Ok(0) | Err(_) => Err(NormalizeError::Port),
        Ok(port) => Ok(Some(port)),
    }
}

/// Lower-cases a host without port and checks it is a name or an IP
/// literal. Shared with the rules, so a rule's `domain` is written in the
/// very form it is compared against.
pub(crate) fn normalize_host(raw: &str) -> Result<Cow<'_, str>, NormalizeError> {
    if is_normal_host(raw) {
        return Ok(Cow::Borrowed(raw));
    }
    rebuild_host(raw).map(Cow::Owned)
}

/// A lower-case name or a dotted quad, which [`rebuild_host`] would
/// return unchanged (Rust's IPv4 parser takes no leading zeros, so a
/// parsed quad is written back as it was). One pass over the bytes: the
/// check of every request's host.
fn is_normal_host(raw: &str) -> bool {
    let label_ok = |len: usize| (1..=MAX_LABEL).contains(&len);
    let mut label = 0;
    for b in raw.bytes() {
        match b {
            b'.' if label_ok(label) => label = 0,
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => label += 1,
            _ => return false,
        }
    }
    raw.len() <= MAX_HOST
        && label_ok(label)
        && (!looks_numeric(raw) || raw.parse::<Ipv4Addr>().is_ok())
}

fn rebuild_host(raw: &str) -> Result<String, NormalizeError> {
    let lower = raw.to_ascii_lowercase();
    let host = lower.strip_suffix('.').unwrap_or(&lower);
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        let ip: Ipv6Addr = inner.parse().map_err(|_| NormalizeError::Host)?;
        return Ok(format!("[{ip}]"));
    }
    if looks_numeric(host) {
        let ip: Ipv4Addr = host.parse().map_err(|_| NormalizeError::Host)?;
        return Ok(ip.to_string());
    }
    check_hostname(host)?;
    Ok(host.to_owned())
}

/// A host whose last label is a number is an IPv4 address to browsers
/// (WHATWG URL), so it must be one we parse the same way.
fn looks_numeric(host: &str) -> bool {
    let last = host.rsplit('.').next().unwrap_or(host);
    (!last.is_empty() && last.bytes().all(|b| b.is_ascii_digit())) || last.starts_with("0x")
}

const MAX_LABEL: usize = 63;
const MAX_HOST: usize = 253;

/// Labels of 1 to 63 letters, digits, `-` or `_`; 253 bytes at most.
fn check_hostname(host: &str) -> Result<(), NormalizeError> {
    let label_ok = |len: usize| (1..=MAX_LABEL).contains(&len);
    let mut label = 0;
    for b in host.bytes() {
        match b {
            b'.' if label_ok(label) => label = 0,
            b if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' => label += 1,
            _ => return Err(NormalizeError::Host),
        }
    }
    if host.len() > MAX_HOST || !label_ok(label) {
        return Err(NormalizeError::Host);
    }
    Ok(())
}

// ---------------------------------------------------------------- path

type PathAndQuery<'a> = (Cow<'a, str>, Option<Cow<'a, str>>);

fn parse_path_and_query(raw: &str) -> Result<PathAndQuery<'_>, NormalizeError> {
    // The path ends at the first `?` or `#`, the query at the next `#`.
    let (path, query) = match memchr::memchr2(b'?', b'#', raw.as_bytes()) {
        Some(end) if raw.as_bytes()[end] == b'?' => {
            let rest = &raw[end + 1..];
            let query = memchr::memchr(b'#', rest.as_bytes()).map_or(rest, |i| &rest[..i]);
            (&raw[..end], Some(canonical_query(query)?))
        }
        Some(end) => (&raw[..end], None),
        None => (raw, None),
    };
    if !path.starts_with('/') {
        return Err(NormalizeError::NotAbsolutePath);
    }
    if is_normal_path(path) {
        return Ok((Cow::Borrowed(path), query));
    }
    Ok((Cow::Owned(resolve_dots(&canonical_escapes(path)?)?), query))
}

/// Only `pchar` and `/` (no escape, nothing to encode), no empty segment
/// but a last one, and no segment that starts with a dot: the one pass
/// and `resolve_dots` would both give it back unchanged.
fn is_normal_path(path: &str) -> bool {
    let mut previous = 0;
    path.bytes().all(|b| {
        let segment_start = previous == b'/';
        previous = b;
        is_pchar_or_slash(b) && !(segment_start && matches!(b, b'/' | b'.'))
    })
}

/// Keeps the query as sent, but refuses control characters and encodes
/// what a request line cannot carry, so `path_and_query()` is always a
/// valid `http::uri::PathAndQuery`.
fn canonical_query(raw: &str) -> Result<Cow<'_, str>, NormalizeError> {
    if raw.bytes().all(is_query_byte_as_sent) {
        return Ok(Cow::Borrowed(raw));
    }
    encode_query(raw).map(Cow::Owned)
}

/// What the query keeps as it is: printable ASCII but for space and `"<>`.
fn is_query_byte_as_sent(b: u8) -> bool {
    b.is_ascii_graphic() && !matches!(b, b'"' | b'<' | b'>')
}

fn encode_query(raw: &str) -> Result<String, NormalizeError> {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        if c.is_control() {
            return Err(NormalizeError::Control);
        }
        if c.is_ascii() && !matches!(c, ' ' | '"' | '<' | '>') {
            out.push(c);
        } else {
            push_encoded(&mut out, c);
        }
    }
    Ok(out)
}

/// One pass over the path: decodes escapes of unreserved characters,
/// upper-cases the others, encodes raw characters outside `pchar`, and
/// collects the fully decoded bytes to check UTF-8 and control characters
/// (which catches C1 controls such as `%C2%85` too).
fn canonical_escapes(path: &str) -> Result<String, NormalizeError> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut decoded = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let value = escape_at(bytes, i)?;
            push_escape(&mut out, value);
            decoded.push(value);
            i += 3;
        } else {
            let c = path[i..].chars().next().ok_or(NormalizeError::Utf8)?;
            push_raw(&mut out, c)?;
            decoded.extend_from_slice(&bytes[i..i + c.len_utf8()]);
            i += c.len_utf8();
        }
    }
    check_decoded(&decoded)?;
    Ok(out)
}

/// The byte of the escape starting at `bytes[at]` (a `%`).
fn escape_at(bytes: &[u8], at: usize) -> Result<u8, NormalizeError> {
    let hex = |i: usize| {
        bytes
            .get(i)
            .and_then(|&b| (b as char).to_digit(16))
            .ok_or(NormalizeError::BadEscape)
    };
    let value = (hex(at + 1)? * 16 + hex(at + 2)?) as u8;
    match value {
        b'/' | b'\\' => Err(NormalizeError::EncodedSeparator),
        v if v < 0x20 || v == 0x7f => Err(NormalizeError::Control),
        v => Ok(v),
    }
}

fn push_escape(out: &mut String, value: u8) {
    if is_unreserved(value) {
        out.push(value as char);
    } else {
        let _ = write!(out, "%{value:02X}");
    }
}

fn push_raw(out: &mut String, c: char) -> Result<(), NormalizeError> {
    match c {
        '\\' => Err(NormalizeError::Backslash),
        c if c.is_control() => Err(NormalizeError::Control),
        c if c.is_ascii() && is_pchar_or_slash(c as u8) => {
            out.push(c);
            Ok(())
        }
        c => {
            push_encoded(out, c);
            Ok(())
        }
    }
}

fn push_encoded(out: &mut String, c: char) {
    let mut buf = [0; 4];
    for b in c.encode_utf8(&mut buf).bytes() {
        let _ = write!(out, "%{b:02X}");
    }
}

fn check_decoded(decoded: &[u8]) -> Result<(), NormalizeError> {
    let text = std::str::from_utf8(decoded).map_err(|_| NormalizeError::Utf8)?;
    if text.chars().any(char::is_control) {
        return Err(NormalizeError::Control);
    }
    Ok(())
}

/// RFC 3986 `unreserved`: the only escapes that are decoded, because
/// decoding them never changes what the path means.
const fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 `pchar` (without `%`, handled apart) plus the separator.
fn is_pchar_or_slash(b: u8) -> bool {
    PCHAR_OR_SLASH[b as usize]
}

/// [`pchar_or_slash`] of every byte: one lookup per byte of every path.
static PCHAR_OR_SLASH: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = pchar_or_slash(b as u8);
        b += 1;
    }
    table
};

const fn pchar_or_slash(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
                | b'/'
        )
}

/// Merges repeated slashes and resolves dot segments (RFC 3986 5.2.4):
/// never above the root, and a trailing dot segment leaves a trailing
/// slash (`/a/b/..` → `/a/`).
fn resolve_dots(path: &str) -> Result<String, NormalizeError> {
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len() - 1;
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    for (i, segment) in segments.into_iter().enumerate() {
        check_dot_parameters(segment)?;
        match segment {
            "." | "" => {}
            ".." => {
                out.pop();
            }
            other => out.push(other),
        }
        if i == last && matches!(segment, "." | ".." | "") {
            out.push("");
        }
    }
    Ok(format!("/{}", out.join("/")))
}

/// `..;x` is `..` to Tomcat and some others but a plain name to a regex:
/// refuse it rather than guess which reading the upstream makes. An
/// escaped `;` (`..%3B`) counts too.
fn check_dot_parameters(segment: &str) -> Result<(), NormalizeError> {
    if !segment.starts_with('.') || matches!(segment, "." | "..") {
        return Ok(());
    }
    let unescaped = segment.replace("%3B", ";");
    match unescaped.split(';').next() {
        Some("." | "..") => Err(NormalizeError::DotParameters),
        _ => Ok(()),
    }
}

/// Whether a path as the client sent it (without query) has a dot
/// segment (`.` or `..`, also escaped: `%2e`, `.%2E`) or an empty segment
/// (`//`). [`normalize`] resolves them, but a front proxy in forward-auth
/// forwards the path as sent, and the app behind it may resolve them
/// differently (Flask routes `/admin/x/../../public/y` to `/admin/...`;
/// Tomcat keeps `//`). Browsers resolve dots before sending, so a dot
/// segment is always crafted; a `//` can come from a sloppy link, and is
/// refused all the same (when in doubt, deny).
pub fn has_dot_or_empty_segment(raw_path: &str) -> bool {
    let mut segments = raw_path.split('/').skip(1).peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        if (segment.is_empty() && !last) || is_dot_segment(segment) {
            return true;
        }
    }
    false
}

/// `.` or `..`, each dot possibly written `%2e` / `%2E`.
fn is_dot_segment(segment: &str) -> bool {
    let mut rest = segment.as_bytes();
    let mut dots = 0;
    while !rest.is_empty() {
        rest = match rest {
            [b'.', tail @ ..] => tail,
            [b'%', b'2', e, tail @ ..] if e.eq_ignore_ascii_case(&b'e') => tail,
            _ => return false,
        };
        dots += 1;
    }
    matches!(dots, 1 | 2)
}

#[cfg(test)]
mod tests {
    use super::strategies::tricky_path;
    use super::*;
    use proptest::prelude::*;

    const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

    fn path(raw: &str) -> Result<String, NormalizeError> {
        normalize("https", "app.example.com", raw, "GET", CLIENT).map(|t| t.path.into_owned())
    }

    fn target<'a>(scheme: &str, host: &'a str) -> Result<Target<'a>, NormalizeError> {
        normalize(scheme, host, "/", "GET", CLIENT)
    }

    #[test]
    fn dot_dot_is_resolved_before_matching() {
        assert_eq!(path("/public/../admin").unwrap(), "/admin");
        assert_eq!(path("/public/%2e%2e/admin").unwrap(), "/admin");
        assert_eq!(path("/public/.%2E/admin").unwrap(), "/admin");
        assert_eq!(path("/public/./../../../admin").unwrap(), "/admin");
    }

    #[test]
    fn encoded_slash_and_backslash_are_refused() {
        assert_eq!(
            path("/public/..%2fadmin"),
            Err(NormalizeError::EncodedSeparator)
        );
        assert_eq!(
            path("/public/..%5Cadmin"),
            Err(NormalizeError::EncodedSeparator)
        );
        assert_eq!(path("/public\\..\\admin"), Err(NormalizeError::Backslash));
    }

    #[test]
    fn repeated_slashes_are_merged() {
        assert_eq!(path("//admin").unwrap(), "/admin");
        assert_eq!(path("/a//b///c//").unwrap(), "/a/b/c/");
    }

    #[test]
    fn unreserved_escapes_are_decoded() {
        assert_eq!(path("/adm%69n").unwrap(), "/admin");
        assert_eq!(path("/%61dmin").unwrap(), "/admin");
        assert_eq!(path("/%41%7e%2D%5f").unwrap(), "/A~-_");
    }

    #[test]
    fn other_escapes_are_kept_upper_case() {
        assert_eq!(path("/a%3ab%3Bc%20d").unwrap(), "/a%3Ab%3Bc%20d");
        assert_eq!(path("/caf%c3%a9").unwrap(), "/caf%C3%A9");
        assert_eq!(path("/café").unwrap(), "/caf%C3%A9", "raw UTF-8 is encoded");
        assert_eq!(path("/a b{c}").unwrap(), "/a%20b%7Bc%7D");
    }

    #[test]
    fn semicolon_parameters_are_kept_so_prefix_rules_still_match() {
        assert_eq!(path("/admin;x=1").unwrap(), "/admin;x=1");
        assert_eq!(
            path("/admin;jsessionid=1/x").unwrap(),
            "/admin;jsessionid=1/x"
        );
    }

    #[test]
    fn dot_segments_with_parameters_are_refused() {
        for raw in [
            "/public/..;/admin",
            "/public/..;x=1/admin",
            "/a/.;/b",
            "/a/..%3b/b",
        ] {
            assert_eq!(path(raw), Err(NormalizeError::DotParameters), "{raw}");
        }
        assert_eq!(path("/a/...;x").unwrap(), "/a/...;x", "not a dot segment");
    }

    #[test]
    fn nul_and_control_characters_are_refused() {
        assert_eq!(path("/admin%00"), Err(NormalizeError::Control));
        assert_eq!(path("/admin%0a"), Err(NormalizeError::Control));
        assert_eq!(path("/admin%7F"), Err(NormalizeError::Control));
        assert_eq!(path("/admin\t"), Err(NormalizeError::Control));
        assert_eq!(path("/admin%C2%85"), Err(NormalizeError::Control), "C1 NEL");
        assert_eq!(path("/a?b=\u{1}"), Err(NormalizeError::Control));
    }

    #[test]
    fn invalid_utf8_and_bad_escapes_are_refused() {
        assert_eq!(path("/a%ff"), Err(NormalizeError::Utf8));
        assert_eq!(path("/a%C3"), Err(NormalizeError::Utf8));
        assert_eq!(path("/a%zz"), Err(NormalizeError::BadEscape));
        assert_eq!(path("/a%4"), Err(NormalizeError::BadEscape));
        assert_eq!(path("/a%"), Err(NormalizeError::BadEscape));
    }

    #[test]
    fn query_and_fragment_never_reach_the_path() {
        let t = normalize(
            "https",
            "a.example.com",
            "/public?x=/../admin",
            "GET",
            CLIENT,
        );
        let t = t.unwrap();
        assert_eq!(t.path, "/public", "the query is not part of the path");
        assert_eq!(t.query.as_deref(), Some("x=/../admin"));
        assert_eq!(path("/admin#/public").unwrap(), "/admin");
        assert_eq!(path("/public#/../admin").unwrap(), "/public");
        assert_eq!(path("/public%3F/../admin").unwrap(), "/admin");
        assert_eq!(path("/public%23/../admin").unwrap(), "/admin");
    }

    #[test]
    fn query_is_kept_as_sent() {
        let t = normalize("http", "h", "/p?a=%2f&b=..;#frag", "GET", CLIENT).unwrap();
        assert_eq!(t.query.as_deref(), Some("a=%2f&b=..;"));
        assert_eq!(t.path_and_query(), "/p?a=%2f&b=..;");
        let bare = normalize("http", "h", "/p?", "GET", CLIENT).unwrap();
        assert_eq!(bare.query.as_deref(), Some(""));
        let spaced = normalize("http", "h", "/p?a b\"é", "GET", CLIENT).unwrap();
        assert_eq!(spaced.query.as_deref(), Some("a%20b%22%C3%A9"));
    }

    #[test]
    fn path_must_be_absolute() {
        for raw in ["", "admin", "*", "http://evil.example/admin", "?x"] {
            assert_eq!(path(raw), Err(NormalizeError::NotAbsolutePath), "{raw:?}");
        }
    }

    #[test]
    fn host_is_lower_cased_without_trailing_dot() {
        assert_eq!(
            target("https", "App.Example.COM.").unwrap().host,
            "app.example.com"
        );
        assert_eq!(target("https", "a.b.").unwrap().host, "a.b");
    }

    #[test]
    fn default_port_is_dropped_other_ports_kept() {
        let t = target("https", "app.example.com:443").unwrap();
        assert_eq!((&*t.host, t.port), ("app.example.com", None));
        let t = target("http", "app.example.com:80").unwrap();
        assert_eq!(t.port, None);
        assert_eq!(
            target("https", "app.example.com:8443").unwrap().port,
            Some(8443)
        );
        assert_eq!(
            target("http", "app.example.com:443").unwrap().port,
            Some(443)
        );
        assert_eq!(target("https", "[::1]:443").unwrap().host, "[::1]");
        let t = target("http", "[2001:DB8::0:1]:8080").unwrap();
        assert_eq!((&*t.host, t.port), ("[2001:db8::1]", Some(8080)));
    }

    #[test]
    fn bad_hosts_and_ports_are_refused() {
        for host in [
            "",
            ".",
            "a..b",
            "a b",
            "user@host",
            "::1",
            "[::1",
            "[::1]x",
            "[zz]",
            "127.1",
            "0x7f.0.0.1",
            "1.2.3.256",
            "exa\\mple.com",
            "é.example",
            "a.b..",
        ] {
            assert_eq!(target("https", host), Err(NormalizeError::Host), "{host:?}");
        }
        for host in ["a:", "a:0", "a:65536", "a:+1", "a:1x"] {
            assert_eq!(target("https", host), Err(NormalizeError::Port), "{host:?}");
        }
        assert_eq!(target("https", "10.0.0.1.").unwrap().host, "10.0.0.1");
    }

    #[test]
    fn scheme_and_method() {
        assert_eq!(target("ftp", "h"), Err(NormalizeError::Scheme));
        assert_eq!(target("HTTPS", "h").unwrap().scheme, Scheme::Https);
        let t = normalize("http", "h", "/", "get", CLIENT).unwrap();
        assert_eq!(t.method, Method::GET);
        for bad in ["", "GE T", "GET\r\n", "(GET)", &"X".repeat(33)] {
            let r = normalize("http", "h", "/", bad, CLIENT);
            assert_eq!(r, Err(NormalizeError::Method), "{bad:?}");
        }
    }

    #[test]
    fn mapped_ipv6_client_becomes_ipv4() {
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        let t = normalize("http", "h", "/", "GET", mapped).unwrap();
        assert_eq!(t.client, "10.1.2.3".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn url_and_path_and_query() {
        let t = normalize(
            "HTTPS",
            "App.Example.com:8443",
            "/a/../b?x=1#f",
            "GET",
            CLIENT,
        );
        let t = t.unwrap();
        assert_eq!(t.path_and_query(), "/b?x=1");
        assert_eq!(t.url(), "https://app.example.com:8443/b?x=1");
    }

    #[test]
    fn errors_never_echo_input() {
        let err = path("/secret%00").unwrap_err();
        assert!(!err.to_string().contains("secret"));
    }

    fn renormalizes_to_itself(t: &Target) -> bool {
        let pq = t.path_and_query();
        let authority = t.authority();
        let again = normalize(
            t.scheme.as_str(),
            &authority,
            &pq,
            t.method.as_str(),
            t.client,
        );
        again.as_ref() == Ok(t)
    }

    #[test]
    fn a_target_in_normal_form_is_borrowed_not_rebuilt() {
        let t = normalize(
            "https",
            "app.example.com",
            "/a/b;c/?x=1&y=%2F",
            "GET",
            CLIENT,
        )
        .unwrap();
        assert!(matches!(t.host, Cow::Borrowed("app.example.com")));
        assert!(matches!(t.path, Cow::Borrowed("/a/b;c/")));
        assert!(matches!(t.query, Some(Cow::Borrowed("x=1&y=%2F"))));
        assert!(matches!(t.path_and_query(), Cow::Owned(_)));
        let t = normalize("http", "10.0.0.1:8080", "/", "get", CLIENT).unwrap();
        assert!(matches!(t.host, Cow::Borrowed("10.0.0.1")));
        assert!(matches!(t.path_and_query(), Cow::Borrowed("/")));
        assert_eq!(t.method, Method::GET);
        let t = normalize("http", "App.example.com", "/a/./b", "GET", CLIENT).unwrap();
        assert!(matches!(t.host, Cow::Owned(_)));
        assert!(matches!(t.path, Cow::Owned(_)));
    }

    fn tricky_host() -> impl Strategy<Value = String> {
        const LABELS: &[&str] = &["a", "App", "EXAMPLE", "x-y", "_svc", "10", "0x7f", "é", ""];
        const PORTS: &[&str] = &["", ":", ":80", ":443", ":08443", ":0", ":99999", ":x"];
        const LITERALS: &[&str] = &[
            "127.0.0.1",
            "[::1]",
            "[2001:DB8::0:1]",
            "::1",
            "[::1",
            "1.2.3.256",
        ];
        let name =
            prop::collection::vec(prop::sample::select(LABELS), 1..5).prop_map(|v| v.join("."));
        let dot = prop::sample::select(&["", ".", ".."][..]);
        let base =
            prop_oneof![3 => name, 1 => prop::sample::select(LITERALS).prop_map(String::from)];
        let structured =
            (base, dot, prop::sample::select(PORTS)).prop_map(|(h, d, p)| format!("{h}{d}{p}"));
        prop_oneof![4 => structured, 1 => any::<String>()]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn never_panics(
            scheme in prop_oneof![Just("https".to_string()), any::<String>()],
            host in tricky_host(),
            path in tricky_path(),
            method in prop_oneof![Just("get".to_string()), any::<String>()],
        ) {
            let _ = normalize(&scheme, &host, &path, &method, CLIENT);
        }

        /// Whatever the checks let through unchanged, the full rebuild
        /// would have left unchanged too.
        #[test]
        fn normal_form_checks_agree_with_the_rebuild(
            host in tricky_host(),
            path in tricky_path(),
            quad in any::<[u8; 4]>(),
            zeros in "0{1,2}",
        ) {
            let host = host.split(':').next().unwrap_or_default();
            if is_normal_host(host) {
                let rebuilt = rebuild_host(host);
                prop_assert_eq!(rebuilt.as_deref(), Ok(host));
            }
            let ip = std::net::Ipv4Addr::from(quad).to_string();
            prop_assert!(is_normal_host(&ip));
            let padded = format!("{zeros}{ip}");
            prop_assert_eq!(is_normal_host(&padded), rebuild_host(&padded).as_deref() == Ok(&*padded));
            let (path, query) = path.split_once('?').unwrap_or((&path, ""));
            if path.starts_with('/') && is_normal_path(path) {
                let rebuilt = canonical_escapes(path).and_then(|p| resolve_dots(&p));
                prop_assert_eq!(rebuilt.as_deref(), Ok(path));
            }
            if query.bytes().all(is_query_byte_as_sent) {
                let encoded = encode_query(query);
                prop_assert_eq!(encoded.as_deref(), Ok(query));
            }
        }

        #[test]
        fn idempotent_and_well_formed(
            https in any::<bool>(),
            host in prop_oneof![Just("App.Example.COM.:443".to_string()), tricky_host()],
            path in tricky_path(),
        ) {
            let scheme = if https { "https" } else { "http" };
            if let Ok(t) = normalize(scheme, &host, &path, "get", CLIENT) {
                prop_assert!(renormalizes_to_itself(&t), "{:?}", t);
                prop_assert!(t.path.starts_with('/'));
                prop_assert!(!t.path.contains("//"));
                prop_assert!(t.path.split('/').all(|s| s != "." && s != ".."));
                prop_assert!(!has_dot_or_empty_segment(&t.path), "{:?}", t);
                prop_assert!(http::uri::PathAndQuery::try_from(&*t.path_and_query()).is_ok());
                prop_assert!(t.url().parse::<http::Uri>().is_ok(), "{}", t.url());
            }
        }
    }
}

/// Generators shared by the property tests of normalization and of the
/// decisions made on its output.
#[cfg(test)]
pub(crate) mod strategies {
    use proptest::prelude::*;

    /// Pieces that hit every branch: mostly harmless ones, so many paths
    /// normalize and idempotence is really exercised, plus refused ones.
    pub(crate) fn tricky_path() -> impl Strategy<Value = String> {
        const GOOD: &[&str] = &[
            "/", "//", ".", "..", "%2e", "%2E", ";", ";x=1", "%3b", "a", "Z", "%61", "%7e", "%20",
            "%C3%A9", "é", "?", "#", "?x=/..", " ", "{", "~", "%25", "@:", "public", "admin",
            "publi%63", "%61dmin", "docs",
        ];
        const BAD: &[&str] = &[
            "%2f", "%5c", "%00", "%", "%4", "%c3", "\\", "\u{85}", "\t", "%41%",
        ];
        let mixed = prop::collection::vec(
            prop_oneof![9 => prop::sample::select(GOOD), 1 => prop::sample::select(BAD)],
            0..24,
        )
        .prop_map(|v| v.concat());
        prop_oneof![
            4 => mixed.clone().prop_map(|s| format!("/{s}")),
            1 => mixed,
            1 => any::<String>(),
            1 => any::<String>().prop_map(|s| format!("/{s}")),
        ]
    }
}
