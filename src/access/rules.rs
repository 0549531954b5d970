//! `[access_control]`: ordered rules, first match wins, `default_policy`
//! when none matches. Rules are compiled once at load (regexes, networks,
//! methods), so a per-request decision is a walk over plain data.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use http::Method;
use ipnet::IpNet;
use regex::{Regex, RegexBuilder};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::approve::{ApprovalSpec, RawApprove};
use super::normalize::{Target, is_tchar, normalize_host};
use crate::model::Policy;
use crate::model::User;

/// Compiled size limit of one path regex: an operator typo like
/// `(a{1000}){1000}` is refused at load instead of eating memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// One `[[access_control.rules]]` table as written. Every list field also
/// accepts a single string (`domain = "a.example.com"`).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// Exact hosts or `*.` wildcards; any of.
    #[serde(default, deserialize_with = "one_or_many")]
    pub domain: Vec<String>,
    /// Regexes on the normalized path (no query); any of.
    #[serde(default, deserialize_with = "one_or_many")]
    pub path: Vec<String>,
    /// Method tokens; any of.
    #[serde(default, deserialize_with = "one_or_many")]
    pub methods: Vec<String>,
    /// CIDR networks or bare addresses; any of.
    #[serde(default, deserialize_with = "one_or_many")]
    pub networks: Vec<String>,
    /// `user:EMAIL` or `group:NAME`; any of.
    #[serde(default, deserialize_with = "one_or_many")]
    pub subject: Vec<String>,
    /// `bypass`, `one_factor`, `two_factor`, `approve` or `deny`.
    pub policy: String,
    /// What an `approve` rule shows the user (docs/approval.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approve: Option<RawApprove>,
}

/// A rule that cannot be loaded, named by its place in the file.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{}: {problem}", self.key())]
pub struct RuleError {
    pub index: usize,
    pub field: &'static str,
    /// Below `field`, for a table (`fields.pin` of `approve`); often empty.
    pub subkey: String,
    pub problem: String,
}

impl RuleError {
    /// The configuration key, e.g. `access_control.rules[2].path`.
    pub fn key(&self) -> String {
        let dot = if self.subkey.is_empty() { "" } else { "." };
        format!(
            "access_control.rules[{}].{}{dot}{}",
            self.index, self.field, self.subkey
        )
    }
}

/// The outcome of [`AccessControl::decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<'a> {
    pub policy: Policy,
    /// Index of the deciding rule; `None` for the default policy.
    pub rule: Option<usize>,
    /// True when a `subject` rule was reached without a user: the client
    /// must log in, then the request is decided again with the user.
    pub needs_user: bool,
    /// For logs and `check-access`: which rule and which criteria.
    pub reason: Reason<'a>,
}

/// Why a decision was made. Written out only when shown: the request path
/// never reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason<'a> {
    /// The deciding rule, described when it was loaded.
    Rule(&'a str),
    /// A `subject` rule reached without a user.
    NeedsUser(&'a str),
    Default(Policy),
    Preflight,
}

impl fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Rule(rule) => f.write_str(rule),
            Reason::NeedsUser(rule) => write!(f, "{rule}; it needs to know the user: log in first"),
            Reason::Default(policy) => write!(
                f,
                "no rule matched; access_control.default_policy = {}",
                policy.as_str()
            ),
            Reason::Preflight => f.write_str("CORS preflight (access_control.allow_preflight)"),
        }
    }
}

/// The compiled `[access_control]` section.
#[derive(Debug, Clone)]
pub struct AccessControl {
    default_policy: Policy,
    allow_preflight: bool,
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    domains: Vec<Domain>,
    paths: Vec<Regex>,
    methods: Vec<Method>,
    networks: Vec<IpNet>,
    subjects: Vec<Subject>,
    policy: Policy,
    /// `approve` rules: what the user is shown.
    approval: Option<ApprovalSpec>,
    /// Built once at load; a decision borrows it.
    reason: String,
}

#[derive(Debug, Clone)]
enum Domain {
    Exact(String),
    /// `*.example.com` stored as `.example.com`: the leading dot is the
    /// label boundary that keeps `evilexample.com` out.
    Suffix(String),
}

#[derive(Debug, Clone)]
enum Subject {
    /// Lower-cased email.
    User(String),
    Group(String),
}

impl AccessControl {
    /// Compiles and validates the rules; the first bad one is reported by
    /// index and field.
    pub fn new(
        default_policy: Policy,
        allow_preflight: bool,
        rules: &[RawRule],
    ) -> Result<Self, RuleError> {
        let rules = rules
            .iter()
            .enumerate()
            .map(|(index, raw)| Rule::compile(index, raw))
            .collect::<Result<_, _>>()?;
        Ok(AccessControl {
            default_policy,
            allow_preflight,
            rules,
        })
    }

    pub fn default_policy(&self) -> Policy {
        self.default_policy
    }

    pub fn allow_preflight(&self) -> bool {
        self.allow_preflight
    }

    /// The index of the first `approve` rule (they need an upstream).
    pub fn first_approve_rule(&self) -> Option<usize> {
        self.rules.iter().position(|r| r.policy == Policy::Approve)
    }

    /// What the `approve` rule at `index` (a decision's `rule`) shows.
    pub fn approval(&self, index: usize) -> Option<&ApprovalSpec> {
        self.rules.get(index)?.approval.as_ref()
    }

    /// Decides a normalized target. Pass the session's user whenever there
    /// is a session, even a `one_factor` one: rules with a `subject` can
    /// only be decided with it.
    ///
    /// A `subject` rule whose other criteria match, reached with no user,
    /// cannot be decided or skipped (the unknown client may or may not be
    /// that subject). Following Authelia, the answer is then "log in
    /// first": `needs_user = true` and a policy of at least `one_factor`
    /// (`two_factor` when the rule says so). A `deny` rule gives
    /// `one_factor` here, not `deny`, since the client may not be the
    /// subject it denies; once logged in, the request is decided again and
    /// the rule applies or is skipped.
    pub fn decide(&self, target: &Target, user: Option<&User>) -> Decision<'_> {
        let client = target.client.to_canonical();
        for (index, rule) in self.rules.iter().enumerate() {
            if !rule.matches_request(target, client) {
                continue;
            }
            match (rule.subjects.is_empty(), user) {
                (true, _) => return rule.decision(index),
                (false, None) => return rule.needs_user(index),
                (false, Some(user)) if rule.matches_user(user) => return rule.decision(index),
                (false, Some(_)) => {}
            }
        }
        self.default_decision()
    }

    /// The decision for a request whose next hop receives the path as the
    /// client sent it (`raw_path`, no query), not our normalized one: in
    /// forward-auth the front proxy forwards the raw target. When
    /// normalization changed the path, the stricter of the two readings
    /// decides, so no spelling can be more permissive than the path the
    /// app is given. (Dot and empty segments are refused before this: no
    /// reading of them is safe.)
    pub fn decide_as_sent(
        &self,
        target: &Target,
        raw_path: &str,
        user: Option<&User>,
    ) -> Decision<'_> {
        let normalized = self.decide(target, user);
        if target.path == raw_path {
            return normalized;
        }
        let as_sent = Target {
            path: Cow::Borrowed(raw_path),
            ..target.clone()
        };
        let as_sent = self.decide(&as_sent, user);
        if as_sent.policy > normalized.policy {
            as_sent
        } else {
            normalized
        }
    }

    /// CORS preflight: with `allow_preflight = true`, an `OPTIONS` request
    /// that carries `Access-Control-Request-Method` is let through
    /// (`bypass`) whatever the rules say, because browsers send preflights
    /// without credentials and a login redirect would break every
    /// cross-origin call. `None` means "not a preflight that is let
    /// through: call [`decide`](Self::decide)". The gateway checks this
    /// first:
    /// `ac.decide_preflight(&t, has_acrm).unwrap_or_else(|| ac.decide(&t, user))`.
    pub fn decide_preflight(
        &self,
        target: &Target,
        has_request_method_header: bool,
    ) -> Option<Decision<'_>> {
        let preflight = target.method == Method::OPTIONS && has_request_method_header;
        (self.allow_preflight && preflight).then_some(Decision {
            policy: Policy::Bypass,
            rule: None,
            needs_user: false,
            reason: Reason::Preflight,
        })
    }

    fn default_decision(&self) -> Decision<'_> {
        Decision {
            policy: self.default_policy,
            rule: None,
            needs_user: false,
            reason: Reason::Default(self.default_policy),
        }
    }
}

impl Rule {
    fn compile(index: usize, raw: &RawRule) -> Result<Rule, RuleError> {
        let fail = |field, problem| RuleError {
            index,
            field,
            subkey: String::new(),
            problem,
        };
        let policy = parse_policy(&raw.policy).map_err(|p| fail("policy", p))?;
        if policy == Policy::Bypass && !raw.subject.is_empty() {
            let problem = "a bypass rule cannot have a subject: bypass never knows the user";
            return Err(fail("subject", problem.into()));
        }
        let approval = compile_approval(index, policy, raw.approve.as_ref())?;
        Ok(Rule {
            domains: each(&raw.domain, parse_domain).map_err(|p| fail("domain", p))?,
            paths: each(&raw.path, parse_path).map_err(|p| fail("path", p))?,
            methods: each(&raw.methods, parse_method).map_err(|p| fail("methods", p))?,
            networks: each(&raw.networks, parse_network).map_err(|p| fail("networks", p))?,
            subjects: each(&raw.subject, parse_subject).map_err(|p| fail("subject", p))?,
            policy,
            approval,
            reason: describe(index, raw),
        })
    }

    /// Every given criterion but `subject`; an empty list matches anything.
    fn matches_request(&self, target: &Target, client: IpAddr) -> bool {
        any_or_empty(&self.domains, |d| d.matches(&target.host))
            && any_or_empty(&self.paths, |re| re.is_match(&target.path))
            && any_or_empty(&self.methods, |m| *m == target.method)
            && any_or_empty(&self.networks, |net| net.contains(&client))
    }

    fn matches_user(&self, user: &User) -> bool {
        let email = user.email.to_lowercase();
        self.subjects.iter().any(|subject| match subject {
            Subject::User(wanted) => *wanted == email,
            Subject::Group(wanted) => user.groups.iter().any(|g| g == wanted),
        })
    }

    fn decision(&self, index: usize) -> Decision<'_> {
        Decision {
            policy: self.policy,
            rule: Some(index),
            needs_user: false,
            reason: Reason::Rule(&self.reason),
        }
    }

    fn needs_user(&self, index: usize) -> Decision<'_> {
        let policy = match self.policy {
            Policy::TwoFactor | Policy::Approve => Policy::TwoFactor,
            _ => Policy::OneFactor,
        };
        Decision {
            policy,
            rule: Some(index),
            needs_user: true,
            reason: Reason::NeedsUser(&self.reason),
        }
    }
}

impl Domain {
    fn matches(&self, host: &str) -> bool {
        match self {
            Domain::Exact(exact) => host == exact,
            Domain::Suffix(suffix) => host.len() > suffix.len() && host.ends_with(suffix.as_str()),
        }
    }
}

fn any_or_empty<T>(items: &[T], matches: impl Fn(&T) -> bool) -> bool {
    items.is_empty() || items.iter().any(matches)
}

/// Parses every entry, naming the bad one by its position in the list.
fn each<T>(items: &[String], parse: impl Fn(&str) -> Result<T, String>) -> Result<Vec<T>, String> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| parse(item).map_err(|p| format!("entry {i} ({item:?}): {p}")))
        .collect()
}

fn parse_policy(raw: &str) -> Result<Policy, String> {
    match raw {
        "bypass" => Ok(Policy::Bypass),
        "one_factor" => Ok(Policy::OneFactor),
        "two_factor" => Ok(Policy::TwoFactor),
        "approve" => Ok(Policy::Approve),
        "deny" => Ok(Policy::Deny),
        other => Err(format!(
            "{other:?} is not one of bypass, one_factor, two_factor, approve, deny"
        )),
    }
}

/// An `approve` rule's table (the default shows method, host and path
/// alone); refused on a rule of any other policy.
fn compile_approval(
    index: usize,
    policy: Policy,
    raw: Option<&RawApprove>,
) -> Result<Option<ApprovalSpec>, RuleError> {
    let fail = |subkey: String, problem: String| RuleError {
        index,
        field: "approve",
        subkey,
        problem,
    };
    match (policy, raw) {
        (Policy::Approve, raw) => ApprovalSpec::compile(&raw.cloned().unwrap_or_default())
            .map(Some)
            .map_err(|e| fail(e.key, e.problem)),
        (_, None) => Ok(None),
        (_, Some(_)) => Err(fail(
            String::new(),
            "only an approve rule has an approve table".into(),
        )),
    }
}

/// Domains go through the same host normalization as requests, so
/// `App.Example.COM.` in the file matches `app.example.com` on the wire.
fn parse_domain(raw: &str) -> Result<Domain, String> {
    let (wildcard, host) = match raw.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, raw),
    };
    if host.contains('*') {
        return Err("only a leading \"*.\" wildcard is allowed".into());
    }
    let host = normalize_host(host)
        .map_err(|_| "not a host name or IP address (no port, no scheme)".to_string())?;
    Ok(if wildcard {
        Domain::Suffix(format!(".{host}"))
    } else {
        Domain::Exact(host.into_owned())
    })
}

fn parse_path(raw: &str) -> Result<Regex, String> {
    RegexBuilder::new(raw)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| format!("invalid regex: {e}"))
}

fn parse_method(raw: &str) -> Result<Method, String> {
    let upper = raw.to_ascii_uppercase();
    if upper.is_empty() || !upper.bytes().all(is_tchar) {
        return Err("not an HTTP method token".into());
    }
    Method::from_bytes(upper.as_bytes()).map_err(|_| "not an HTTP method token".into())
}

/// A CIDR network, or a bare address meaning that address alone.
fn parse_network(raw: &str) -> Result<IpNet, String> {
    let net = raw
        .parse::<IpNet>()
        .or_else(|_| raw.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| "not a CIDR network or IP address".to_string())?;
    Ok(net.trunc())
}

fn parse_subject(raw: &str) -> Result<Subject, String> {
    let subject = if let Some(email) = raw.strip_prefix("user:") {
        Subject::User(email.to_lowercase())
    } else if let Some(group) = raw.strip_prefix("group:") {
        Subject::Group(group.to_owned())
    } else {
        return Err("must start with \"user:\" or \"group:\"".into());
    };
    match &subject {
        Subject::User(name) | Subject::Group(name) if name.trim().is_empty() => {
            Err("names no user or group".into())
        }
        _ => Ok(subject),
    }
}

/// `access_control.rules[2] (domain ["*.example.com"], path ["^/admin"]) → deny`
fn describe(index: usize, raw: &RawRule) -> String {
    let criteria: Vec<String> = [
        ("domain", &raw.domain),
        ("path", &raw.path),
        ("methods", &raw.methods),
        ("networks", &raw.networks),
        ("subject", &raw.subject),
    ]
    .into_iter()
    .filter(|(_, values)| !values.is_empty())
    .map(|(name, values)| format!("{name} {values:?}"))
    .collect();
    let criteria = if criteria.is_empty() {
        "no criteria: matches every request".to_string()
    } else {
        criteria.join(", ")
    };
    format!(
        "access_control.rules[{index}] ({criteria}) → {}",
        raw.policy
    )
}

/// Accepts `"x"` or `["x", "y"]` for a list field.
fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    struct OneOrMany;

    impl<'de> Visitor<'de> for OneOrMany {
        type Value = Vec<String>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string or a list of strings")
        }

        fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
            Ok(vec![value.to_owned()])
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(item) = seq.next_element::<String>()? {
                out.push(item);
            }
            Ok(out)
        }
    }

    deserializer.deserialize_any(OneOrMany)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::normalize;

    fn rule(policy: &str) -> RawRule {
        RawRule {
            policy: policy.into(),
            ..RawRule::default()
        }
    }

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn acl(rules: &[RawRule]) -> AccessControl {
        AccessControl::new(Policy::TwoFactor, false, rules).unwrap()
    }

    fn req<'a>(host: &'a str, path: &'a str) -> Target<'a> {
        req_full("GET", host, path, "192.0.2.1")
    }

    fn req_full<'a>(method: &str, host: &'a str, path: &'a str, client: &str) -> Target<'a> {
        normalize("https", host, path, method, client.parse().unwrap()).unwrap()
    }

    fn user(email: &str, groups: &[&str]) -> User {
        User {
            email: email.into(),
            name: String::new(),
            country_code: String::new(),
            phone: String::new(),
            password: String::new(),
            groups: list(groups),
            second_factor: None,
            second_factor_reset: None,
            identity: Default::default(),
        }
    }

    fn domain_rule(domains: &[&str], policy: &str) -> RawRule {
        RawRule {
            domain: list(domains),
            ..rule(policy)
        }
    }

    fn path_rule(path: &str, policy: &str) -> RawRule {
        RawRule {
            path: list(&[path]),
            ..rule(policy)
        }
    }

    #[test]
    fn first_match_wins() {
        let ac = acl(&[path_rule("^/a", "deny"), path_rule("^/a/b", "bypass")]);
        let d = ac.decide(&req("h.example", "/a/b"), None);
        assert_eq!((d.policy, d.rule), (Policy::Deny, Some(0)));
        let ac = acl(&[path_rule("^/a/b", "bypass"), path_rule("^/a", "deny")]);
        let d = ac.decide(&req("h.example", "/a/b"), None);
        assert_eq!((d.policy, d.rule), (Policy::Bypass, Some(0)));
        let reason = d.reason.to_string();
        assert!(
            reason.contains("rules[0]") && reason.contains("^/a/b"),
            "{reason}"
        );
    }

    #[test]
    fn default_policy_when_nothing_matches() {
        let ac = AccessControl::new(Policy::OneFactor, false, &[path_rule("^/x", "deny")]);
        let ac = ac.unwrap();
        let d = ac.decide(&req("h.example", "/y"), None);
        assert_eq!((d.policy, d.rule), (Policy::OneFactor, None));
        assert_eq!(
            d.reason.to_string(),
            "no rule matched; access_control.default_policy = one_factor"
        );
        let empty = AccessControl::new(Policy::Deny, false, &[]).unwrap();
        assert_eq!(
            empty.decide(&req("h.example", "/"), None).policy,
            Policy::Deny
        );
    }

    #[test]
    fn wildcard_stops_at_a_dot_boundary() {
        let ac = acl(&[domain_rule(&["*.example.com"], "bypass")]);
        let policy = |host| ac.decide(&req(host, "/"), None).policy;
        assert_eq!(policy("a.example.com"), Policy::Bypass);
        assert_eq!(policy("a.b.example.com"), Policy::Bypass);
        assert_eq!(policy("example.com"), Policy::TwoFactor);
        assert_eq!(policy("evilexample.com"), Policy::TwoFactor);
        assert_eq!(policy("example.com.evil.net"), Policy::TwoFactor);
    }

    #[test]
    fn domains_are_case_insensitive_exact_matches() {
        let ac = acl(&[domain_rule(&["App.Example.COM"], "bypass")]);
        let policy = |host| ac.decide(&req(host, "/"), None).policy;
        assert_eq!(policy("app.example.com"), Policy::Bypass);
        assert_eq!(policy("APP.EXAMPLE.COM."), Policy::Bypass);
        assert_eq!(policy("app.example.com:443"), Policy::Bypass);
        assert_eq!(policy("x.app.example.com"), Policy::TwoFactor);
        assert_eq!(
            policy("app.example.com:8443"),
            Policy::Bypass,
            "port is not part of host"
        );
    }

    #[test]
    fn path_regex_sees_the_normalized_path() {
        let ac = acl(&[
            path_rule("^/admin", "deny"),
            path_rule("^/public", "bypass"),
        ]);
        let policy = |path| ac.decide(&req("h.example", path), None).policy;
        assert_eq!(policy("/public/../admin"), Policy::Deny);
        assert_eq!(policy("/public/%2e%2e/admin"), Policy::Deny);
        assert_eq!(policy("//admin"), Policy::Deny);
        assert_eq!(policy("/adm%69n"), Policy::Deny);
        assert_eq!(policy("/%61dmin"), Policy::Deny);
        assert_eq!(policy("/admin;x=1"), Policy::Deny);
        assert_eq!(policy("/admin?/public"), Policy::Deny);
        assert_eq!(policy("/admin#/public"), Policy::Deny);
        assert_eq!(policy("/public/x"), Policy::Bypass);
    }

    #[test]
    fn path_list_is_any_of() {
        let raw = RawRule {
            path: list(&["^/a$", "^/b$"]),
            ..rule("bypass")
        };
        let ac = acl(&[raw]);
        assert_eq!(ac.decide(&req("h", "/b"), None).policy, Policy::Bypass);
        assert_eq!(ac.decide(&req("h", "/c"), None).policy, Policy::TwoFactor);
    }

    #[test]
    fn methods_match_any_of() {
        let raw = RawRule {
            methods: list(&["get", "HEAD"]),
            ..rule("bypass")
        };
        let ac = acl(&[raw]);
        let policy = |m| ac.decide(&req_full(m, "h", "/", "192.0.2.1"), None).policy;
        assert_eq!(policy("GET"), Policy::Bypass);
        assert_eq!(policy("head"), Policy::Bypass);
        assert_eq!(policy("POST"), Policy::TwoFactor);
    }

    #[test]
    fn networks_match_the_client() {
        let raw = RawRule {
            networks: list(&["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"]),
            ..rule("one_factor")
        };
        let ac = acl(&[raw]);
        let policy = |ip| ac.decide(&req_full("GET", "h", "/", ip), None).policy;
        assert_eq!(policy("10.20.30.40"), Policy::OneFactor);
        assert_eq!(policy("::ffff:10.1.1.1"), Policy::OneFactor, "mapped IPv4");
        assert_eq!(policy("2001:db8::5"), Policy::OneFactor);
        assert_eq!(policy("192.0.2.7"), Policy::OneFactor);
        assert_eq!(policy("192.0.2.8"), Policy::TwoFactor);
        assert_eq!(policy("11.0.0.1"), Policy::TwoFactor);
    }

    #[test]
    fn all_given_criteria_must_match() {
        let raw = RawRule {
            domain: list(&["h.example"]),
            path: list(&["^/api/"]),
            methods: list(&["POST"]),
            ..rule("deny")
        };
        let ac = acl(&[raw]);
        let policy = |m, host, path| {
            ac.decide(&req_full(m, host, path, "192.0.2.1"), None)
                .policy
        };
        assert_eq!(policy("POST", "h.example", "/api/x"), Policy::Deny);
        assert_eq!(policy("GET", "h.example", "/api/x"), Policy::TwoFactor);
        assert_eq!(policy("POST", "o.example", "/api/x"), Policy::TwoFactor);
        assert_eq!(policy("POST", "h.example", "/web"), Policy::TwoFactor);
    }

    fn subject_rules() -> AccessControl {
        let admins = RawRule {
            path: list(&["^/admin"]),
            subject: list(&["group:admins", "user:Carol@Example.com"]),
            ..rule("two_factor")
        };
        let others = path_rule("^/admin", "deny");
        AccessControl::new(Policy::OneFactor, false, &[admins, others]).unwrap()
    }

    #[test]
    fn subject_user_and_group() {
        let ac = subject_rules();
        let t = req("h", "/admin");
        let alice = user("alice@example.com", &["admins"]);
        let carol = user("CAROL@example.COM", &[]);
        let bob = user("bob@example.com", &["staff"]);
        assert_eq!(ac.decide(&t, Some(&alice)).policy, Policy::TwoFactor);
        assert_eq!(ac.decide(&t, Some(&carol)).policy, Policy::TwoFactor);
        let d = ac.decide(&t, Some(&bob));
        assert_eq!(
            (d.policy, d.rule),
            (Policy::Deny, Some(1)),
            "skipped to the deny"
        );
        let admins_upper = user("x@example.com", &["ADMINS"]);
        assert_eq!(ac.decide(&t, Some(&admins_upper)).policy, Policy::Deny);
    }

    #[test]
    fn subject_rule_without_user_needs_login() {
        let ac = subject_rules();
        let d = ac.decide(&req("h", "/admin"), None);
        assert_eq!(
            (d.policy, d.rule, d.needs_user),
            (Policy::TwoFactor, Some(0), true)
        );
        let reason = d.reason.to_string();
        assert!(
            reason.starts_with("access_control.rules[0] (path [") && reason.contains("log in"),
            "{reason}"
        );
        let deny_group = RawRule {
            subject: list(&["group:contractors"]),
            ..rule("deny")
        };
        let denies = acl(&[deny_group]);
        let d = denies.decide(&req("h", "/"), None);
        assert_eq!(
            (d.policy, d.needs_user),
            (Policy::OneFactor, true),
            "log in, not deny"
        );
        let d = ac.decide(&req("h", "/other"), None);
        assert_eq!(
            (d.policy, d.needs_user),
            (Policy::OneFactor, false),
            "no match: default"
        );
    }

    #[test]
    fn preflight_on_and_off() {
        let deny_all = [rule("deny")];
        let on = AccessControl::new(Policy::Deny, true, &deny_all).unwrap();
        let off = AccessControl::new(Policy::Deny, false, &deny_all).unwrap();
        let options = req_full("OPTIONS", "h", "/api", "192.0.2.1");
        let get = req_full("GET", "h", "/api", "192.0.2.1");
        let d = on.decide_preflight(&options, true).unwrap();
        assert_eq!((d.policy, d.rule), (Policy::Bypass, None));
        assert_eq!(on.decide_preflight(&options, false), None, "no ACRM header");
        assert_eq!(on.decide_preflight(&get, true), None, "not OPTIONS");
        assert_eq!(off.decide_preflight(&options, true), None, "off by default");
        assert_eq!(off.decide(&options, None).policy, Policy::Deny);
    }

    fn error(raw: RawRule) -> RuleError {
        AccessControl::new(Policy::Deny, false, &[rule("bypass"), raw]).unwrap_err()
    }

    fn assert_error(raw: RawRule, field: &str) {
        let err = error(raw);
        assert_eq!((err.index, err.field), (1, field), "{err}");
        assert!(
            err.to_string()
                .starts_with(&format!("access_control.rules[1].{field}: ")),
            "{err}"
        );
    }

    #[test]
    fn validation_names_index_and_field() {
        assert_error(rule("allow"), "policy");
        assert_error(rule("Bypass"), "policy");
        let bypass_subject = RawRule {
            subject: list(&["user:a@example.com"]),
            ..rule("bypass")
        };
        assert_error(bypass_subject, "subject");
        assert_error(path_rule("^/(admin", "deny"), "path");
        assert_error(path_rule("(a{1000}){1000}", "deny"), "path");
        for bad in [
            "",
            "*",
            "*.",
            "a.*.example.com",
            "*example.com",
            "example.*",
            "a:80",
            "http://a",
        ] {
            assert_error(domain_rule(&["ok.example", bad], "deny"), "domain");
        }
        for bad in ["10.0.0.0/33", "10.0.0", "net", ""] {
            let raw = RawRule {
                networks: list(&[bad]),
                ..rule("deny")
            };
            assert_error(raw, "networks");
        }
        for bad in ["alice", "User:a@b", "group:", "user: ", "role:x"] {
            let raw = RawRule {
                subject: list(&[bad]),
                ..rule("deny")
            };
            assert_error(raw, "subject");
        }
        for bad in ["", "GE T", "GET\n", "(GET)"] {
            let raw = RawRule {
                methods: list(&[bad]),
                ..rule("deny")
            };
            assert_error(raw, "methods");
        }
    }

    #[test]
    fn validation_names_the_bad_entry() {
        let err = error(domain_rule(&["ok.example", "a.*.b"], "deny"));
        assert!(
            err.problem.contains("entry 1") && err.problem.contains("a.*.b"),
            "{err}"
        );
        assert_eq!(err.key(), "access_control.rules[1].domain");
    }

    #[derive(Deserialize)]
    struct Section {
        rules: Vec<RawRule>,
    }

    #[test]
    fn deserializes_one_or_many() {
        let toml = r#"
            [[rules]]
            domain = "a.example.com"
            path = ["^/x", "^/y"]
            policy = "bypass"
            [[rules]]
            domain = ["*.example.com"]
            methods = "GET"
            networks = ["10.0.0.0/8"]
            subject = ["group:admins"]
            policy = "two_factor"
        "#;
        let section: Section = toml::from_str(toml).unwrap();
        assert_eq!(section.rules[0].domain, ["a.example.com"]);
        assert_eq!(section.rules[0].path, ["^/x", "^/y"]);
        assert_eq!(section.rules[1].methods, ["GET"]);
        assert!(AccessControl::new(Policy::Deny, false, &section.rules).is_ok());
        let unknown = "[[rules]]\npolicy = \"deny\"\nresource = \"^/x\"\n";
        assert!(
            toml::from_str::<Section>(unknown).is_err(),
            "deny_unknown_fields"
        );
    }

    /// Every byte escape decoded: how an app such as Flask reads a path.
    fn decode_all(path: &str) -> String {
        let bytes = path.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(b) if bytes[i] == b'%' => {
                    out.push(b);
                    i += 3;
                }
                _ => {
                    out.push(bytes[i]);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

        /// Whatever the spelling, the decision on the path as sent is never
        /// more permissive than the rules say for any reading of it: ours
        /// (normalized), the raw one, and an app's that decodes every
        /// escape, whenever the path has no dot or empty segment (those
        /// are refused before any decision).
        #[test]
        fn the_decision_as_sent_is_never_more_permissive_than_a_reading(
            sent in crate::access::strategies::tricky_path(),
        ) {
            let ac = acl(&[
                path_rule("^/public/", "bypass"),
                path_rule("^/docs", "one_factor"),
                path_rule("^/admin", "deny"),
            ]);
            let raw = sent.split(['?', '#']).next().unwrap_or_default();
            let Ok(target) = normalize("https", "h.example", &sent, "GET", "192.0.2.1".parse().unwrap()) else {
                return Ok(());
            };
            let decided = ac.decide_as_sent(&target, raw, None).policy;
            let reading = |path: &str| {
                let read = Target { path: Cow::Borrowed(path), ..target.clone() };
                ac.decide(&read, None).policy
            };
            proptest::prop_assert!(decided >= reading(&target.path), "{sent}");
            proptest::prop_assert!(decided >= reading(raw), "{sent}");
            if !crate::access::has_dot_or_empty_segment(raw) {
                let decoded = decode_all(raw);
                proptest::prop_assert!(decided >= reading(&decoded), "{sent} read as {decoded}");
            }
        }
    }
}
