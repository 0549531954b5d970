//! Prometheus metrics (prometheus-client, the official Rust client). One
//! [`Metrics`] per gateway, handed explicitly to whoever counts (the
//! gateway, the Authy and Verify providers) and to [`serve`], which answers
//! `GET /metrics` on `metrics.listen` only, never on the public listener.
//!
//! Every label value is a fixed word (`&'static str`) or a status code, so
//! no client input can grow the number of series.

mod server;

pub use server::{MetricsServer, serve};

use std::sync::OnceLock;
use std::time::Duration;

use http::StatusCode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// Time to the upstream's response headers: 1 ms … ~16 s.
fn upstream_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// One call to a provider's API (Authy, Verify): 10 ms … ~20 s (their
/// timeouts are 5 s by default).
fn provider_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 12))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ForwardAuthLabels {
    endpoint: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SecondFactorLabels {
    method: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    call: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallErrorLabels {
    call: &'static str,
    kind: &'static str,
}

/// How a `POST login` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginOutcome {
    Success,
    /// Wrong password or unknown email (the same answer on purpose).
    BadPassword,
    /// Refused by regulation (429).
    Banned,
    /// Missing or bad CSRF token.
    Csrf,
    /// The session could not be stored durably (503, no cookie).
    StoreUnavailable,
    /// A form the gateway would not take (too large, password too long).
    InvalidRequest,
    Error,
}

impl LoginOutcome {
    pub const ALL: [LoginOutcome; 7] = [
        LoginOutcome::Success,
        LoginOutcome::BadPassword,
        LoginOutcome::Banned,
        LoginOutcome::Csrf,
        LoginOutcome::StoreUnavailable,
        LoginOutcome::InvalidRequest,
        LoginOutcome::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LoginOutcome::Success => "success",
            LoginOutcome::BadPassword => "bad_password",
            LoginOutcome::Banned => "banned",
            LoginOutcome::Csrf => "csrf",
            LoginOutcome::StoreUnavailable => "store_unavailable",
            LoginOutcome::InvalidRequest => "invalid_request",
            LoginOutcome::Error => "error",
        }
    }
}

/// What a forward-auth endpoint answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// 2xx with identity headers.
    Allowed,
    NeedsLogin,
    NeedsSecondFactor,
    /// A rule denied (403).
    Denied,
    /// Not asked by a trusted proxy, or the original request is missing
    /// or cannot be normalized (400; 401 for nginx).
    Refused,
    /// The shared session store could not be read (503).
    Unavailable,
}

impl Decision {
    pub const ALL: [Decision; 6] = [
        Decision::Allowed,
        Decision::NeedsLogin,
        Decision::NeedsSecondFactor,
        Decision::Denied,
        Decision::Refused,
        Decision::Unavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allowed => "allowed",
            Decision::NeedsLogin => "needs_login",
            Decision::NeedsSecondFactor => "needs_second_factor",
            Decision::Denied => "denied",
            Decision::Refused => "refused",
            Decision::Unavailable => "unavailable",
        }
    }
}

/// Which forward-auth endpoint answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthEndpoint {
    /// `auth-request`, for nginx.
    Nginx,
    /// `forward-auth`, for Traefik, Caddy and HAProxy.
    Forward,
}

impl AuthEndpoint {
    const ALL: [AuthEndpoint; 2] = [AuthEndpoint::Nginx, AuthEndpoint::Forward];

    fn as_str(self) -> &'static str {
        match self {
            AuthEndpoint::Nginx => "nginx",
            AuthEndpoint::Forward => "forward",
        }
    }
}

/// The statuses nearly every request ends with. Their counters are looked
/// up once per route rather than per request: a `Family` lookup hashes the
/// labels (SipHash) under a lock, a tenth of a forward-auth answer's cost.
const FREQUENT_STATUSES: [u16; 8] = [200, 204, 301, 302, 304, 401, 403, 404];

/// The request counters of one route label.
pub struct RouteRequests {
    route: &'static str,
    family: Family<RequestLabels, Counter>,
    frequent: [OnceLock<Counter>; FREQUENT_STATUSES.len()],
}

impl RouteRequests {
    /// One answered request on the public listener.
    pub fn answered(&self, status: StatusCode) {
        let status = status.as_u16();
        let counter = || {
            self.family
                .get_or_create(&RequestLabels {
                    route: self.route,
                    status,
                })
                .clone()
        };
        match FREQUENT_STATUSES.iter().position(|&s| s == status) {
            Some(i) => self.frequent[i].get_or_init(counter).inc(),
            None => counter().inc(),
        };
    }
}

/// How the second factor was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactorMethod {
    /// A push approval (Authy OneTouch).
    Push,
    /// A one-time code (SMS or app).
    Code,
    /// A security key or passkey (WebAuthn).
    SecurityKey,
}

impl FactorMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            FactorMethod::Push => "push",
            FactorMethod::Code => "code",
            FactorMethod::SecurityKey => "security_key",
        }
    }
}

/// What became of a request held for an `approve` rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalOutcome {
    /// A request was held and the user asked.
    Requested,
    Approved,
    Denied,
    Expired,
    Cancelled,
    /// Sent upstream after its approval.
    Released,
    /// Not held: too large, too many waiting, or the provider failed.
    Refused,
}

impl ApprovalOutcome {
    pub const ALL: [ApprovalOutcome; 7] = [
        ApprovalOutcome::Requested,
        ApprovalOutcome::Approved,
        ApprovalOutcome::Denied,
        ApprovalOutcome::Expired,
        ApprovalOutcome::Cancelled,
        ApprovalOutcome::Released,
        ApprovalOutcome::Refused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalOutcome::Requested => "requested",
            ApprovalOutcome::Approved => "approved",
            ApprovalOutcome::Denied => "denied",
            ApprovalOutcome::Expired => "expired",
            ApprovalOutcome::Cancelled => "cancelled",
            ApprovalOutcome::Released => "released",
            ApprovalOutcome::Refused => "refused",
        }
    }
}

/// How a second-factor attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactorOutcome {
    /// Confirmed: the session is now `two_factor`.
    Success,
    /// Push: the user denied it on the phone.
    Denied,
    /// The push or the challenge expired.
    Expired,
    /// A wrong code.
    Invalid,
    /// The fifth wrong code: the session was ended.
    TooManyAttempts,
    ProviderUnavailable,
    Error,
}

impl FactorOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            FactorOutcome::Success => "success",
            FactorOutcome::Denied => "denied",
            FactorOutcome::Expired => "expired",
            FactorOutcome::Invalid => "invalid",
            FactorOutcome::TooManyAttempts => "too_many_attempts",
            FactorOutcome::ProviderUnavailable => "provider_unavailable",
            FactorOutcome::Error => "error",
        }
    }
}

/// Why a call to a provider's API failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallError {
    /// Not reached, timed out, or a 5xx.
    Unavailable,
    /// Answered with a refusal.
    Rejected,
    /// Throttled (429); Verify only, Authy's 429 counts as unavailable.
    RateLimited,
    /// Nothing left to check (404): expired, used or out of attempts;
    /// Verify only.
    NotFound,
}

impl CallError {
    fn as_str(self) -> &'static str {
        match self {
            CallError::Unavailable => "unavailable",
            CallError::Rejected => "rejected",
            CallError::RateLimited => "rate_limited",
            CallError::NotFound => "not_found",
        }
    }
}

/// The gateway's metrics and the registry they are exported from.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    /// Every series exists from the start, so each is resolved once.
    forward_auth: [[Counter; Decision::ALL.len()]; AuthEndpoint::ALL.len()],
    logins: Family<OutcomeLabels, Counter>,
    second_factor: Family<SecondFactorLabels, Counter>,
    upstream_duration: Histogram,
    live_sessions: Gauge,
    store_healthy: Gauge,
    store_connected: Gauge,
    cache_hit_ratio: Gauge<f64, std::sync::atomic::AtomicU64>,
    authy_duration: Family<CallLabels, Histogram, fn() -> Histogram>,
    authy_errors: Family<CallErrorLabels, Counter>,
    verify_duration: Family<CallLabels, Histogram, fn() -> Histogram>,
    verify_errors: Family<CallErrorLabels, Counter>,
    audit_dropped: Counter,
    approvals: Family<OutcomeLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("authgate");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "Requests answered on the public listener, by route kind and status code",
            requests.clone(),
        );
        let forward_auth_family = Family::<ForwardAuthLabels, Counter>::default();
        registry.register(
            "forward_auth_decisions",
            "Forward-auth answers by endpoint (nginx auth-request, forward) and outcome",
            forward_auth_family.clone(),
        );
        let forward_auth = AuthEndpoint::ALL.map(|endpoint| {
            Decision::ALL.map(|outcome| {
                forward_auth_family
                    .get_or_create(&ForwardAuthLabels {
                        endpoint: endpoint.as_str(),
                        outcome: outcome.as_str(),
                    })
                    .clone()
            })
        });
        let logins = Family::<OutcomeLabels, Counter>::default();
        registry.register("logins", "Password logins by outcome", logins.clone());
        let second_factor = Family::<SecondFactorLabels, Counter>::default();
        registry.register(
            "second_factor",
            "Second-factor outcomes by method (push, code)",
            second_factor.clone(),
        );
        let upstream_duration = upstream_buckets();
        registry.register_with_unit(
            "upstream_response",
            "Time from forwarding a request to the upstream's response headers (or the error)",
            Unit::Seconds,
            upstream_duration.clone(),
        );
        let live_sessions = Gauge::default();
        registry.register(
            "live_sessions",
            "Sessions held in memory (and in the store)",
            live_sessions.clone(),
        );
        let store_healthy = Gauge::default();
        registry.register(
            "store_healthy",
            "1 while the last store write and flush worked, 0 otherwise",
            store_healthy.clone(),
        );
        let store_connected = Gauge::default();
        registry.register(
            "store_connected",
            "1 while the store can be reached (Redis: the connection and the invalidation feed work)",
            store_connected.clone(),
        );
        let cache_hit_ratio = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "session_cache_hit_ratio",
            "Share of session lookups answered from memory since start (a shared store's cache; 1 for sled)",
            cache_hit_ratio.clone(),
        );
        let authy_duration =
            Family::<CallLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                provider_buckets,
            );
        registry.register_with_unit(
            "authy_request",
            "Duration of calls to the Authy API, by call",
            Unit::Seconds,
            authy_duration.clone(),
        );
        let authy_errors = Family::<CallErrorLabels, Counter>::default();
        registry.register(
            "authy_errors",
            "Failed calls to the Authy API, by call and kind (unavailable, rejected)",
            authy_errors.clone(),
        );
        let verify_duration =
            Family::<CallLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                provider_buckets,
            );
        registry.register_with_unit(
            "verify_request",
            "Duration of calls to the Twilio Verify API, by call (start, check)",
            Unit::Seconds,
            verify_duration.clone(),
        );
        let verify_errors = Family::<CallErrorLabels, Counter>::default();
        registry.register(
            "verify_errors",
            "Failed calls to the Twilio Verify API, by call and kind \
             (unavailable, rejected, rate_limited, not_found)",
            verify_errors.clone(),
        );
        let audit_dropped = Counter::default();
        registry.register(
            "audit_dropped",
            "Audit events dropped because the writer's queue was full",
            audit_dropped.clone(),
        );
        let approvals = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "approvals",
            "Requests held for an approve rule, by outcome",
            approvals.clone(),
        );
        let metrics = Metrics {
            approvals,
            registry,
            requests,
            forward_auth,
            logins,
            second_factor,
            upstream_duration,
            live_sessions,
            store_healthy,
            store_connected,
            cache_hit_ratio,
            authy_duration,
            authy_errors,
            verify_duration,
            verify_errors,
            audit_dropped,
        };
        metrics.zero_known_series();
        metrics
    }

    /// Series that exist from the start at 0, so a rate() over them works
    /// before the first event and a dashboard shows every outcome.
    fn zero_known_series(&self) {
        for outcome in LoginOutcome::ALL {
            self.logins
                .get_or_create(&OutcomeLabels {
                    outcome: outcome.as_str(),
                })
                .inc_by(0);
        }
        for outcome in ApprovalOutcome::ALL {
            self.approval(outcome, 0);
        }
        self.store_healthy.set(1);
        self.store_connected.set(1);
        self.cache_hit_ratio.set(1.0);
    }

    /// The counters of requests answered under one route label.
    pub fn requests_of(&self, route: &'static str) -> RouteRequests {
        RouteRequests {
            route,
            family: self.requests.clone(),
            frequent: Default::default(),
        }
    }

    /// The counter the audit trail increments for each event it drops.
    pub fn audit_dropped(&self) -> Counter {
        self.audit_dropped.clone()
    }

    pub fn forward_auth(&self, endpoint: AuthEndpoint, decision: Decision) {
        self.forward_auth[endpoint as usize][decision as usize].inc();
    }

    pub fn login(&self, outcome: LoginOutcome) {
        self.logins
            .get_or_create(&OutcomeLabels {
                outcome: outcome.as_str(),
            })
            .inc();
    }

    pub fn second_factor(&self, method: FactorMethod, outcome: FactorOutcome) {
        self.second_factor
            .get_or_create(&SecondFactorLabels {
                method: method.as_str(),
                outcome: outcome.as_str(),
            })
            .inc();
    }

    /// `count` approvals reached `outcome`.
    pub fn approval(&self, outcome: ApprovalOutcome, count: u64) {
        self.approvals
            .get_or_create(&OutcomeLabels {
                outcome: outcome.as_str(),
            })
            .inc_by(count);
    }

    pub fn upstream_response(&self, took: Duration) {
        self.upstream_duration.observe(took.as_secs_f64());
    }

    /// One call to the Authy API (`call`: the API operation).
    pub fn authy_call(&self, call: &'static str, took: Duration, error: Option<CallError>) {
        self.authy_duration
            .get_or_create(&CallLabels { call })
            .observe(took.as_secs_f64());
        if let Some(kind) = error {
            self.authy_errors
                .get_or_create(&CallErrorLabels {
                    call,
                    kind: kind.as_str(),
                })
                .inc();
        }
    }

    /// One call to the Twilio Verify API (`call`: `start` or `check`).
    pub fn verify_call(&self, call: &'static str, took: Duration, error: Option<CallError>) {
        self.verify_duration
            .get_or_create(&CallLabels { call })
            .observe(took.as_secs_f64());
        if let Some(kind) = error {
            self.verify_errors
                .get_or_create(&CallErrorLabels {
                    call,
                    kind: kind.as_str(),
                })
                .inc();
        }
    }

    /// Sampled when scraped.
    pub fn set_live_sessions(&self, count: usize) {
        self.live_sessions
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Sampled when scraped.
    pub fn set_store_healthy(&self, healthy: bool) {
        self.store_healthy.set(i64::from(healthy));
    }

    pub fn set_store_connected(&self, connected: bool) {
        self.store_connected.set(i64::from(connected));
    }

    /// Lookups answered from memory and lookups that read the store.
    pub fn set_cache_lookups(&self, hits: u64, misses: u64) {
        let all = hits.saturating_add(misses);
        let ratio = if all == 0 {
            1.0
        } else {
            hits as f64 / all as f64
        };
        self.cache_hit_ratio.set(ratio);
    }

    /// The Prometheus text format (0.0.4).
    pub fn encode_prometheus(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// The OpenMetrics text format, for scrapers that ask for it.
    pub fn encode_openmetrics(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_show_up_by_label_in_the_text_format() {
        let m = Metrics::new();
        let proxy = m.requests_of("proxy");
        proxy.answered(StatusCode::OK);
        proxy.answered(StatusCode::OK);
        proxy.answered(StatusCode::BAD_GATEWAY);
        m.requests_of("login").answered(StatusCode::UNAUTHORIZED);
        m.forward_auth(AuthEndpoint::Nginx, Decision::Allowed);
        m.forward_auth(AuthEndpoint::Forward, Decision::NeedsSecondFactor);
        m.login(LoginOutcome::Banned);
        m.second_factor(FactorMethod::Code, FactorOutcome::Invalid);
        m.upstream_response(Duration::from_millis(3));
        m.authy_call(
            "create_approval_request",
            Duration::from_millis(20),
            Some(CallError::Unavailable),
        );
        m.verify_call("check", Duration::from_millis(30), None);
        m.verify_call(
            "check",
            Duration::from_millis(35),
            Some(CallError::NotFound),
        );
        m.verify_call(
            "start",
            Duration::from_millis(50),
            Some(CallError::RateLimited),
        );
        m.set_live_sessions(7);
        let text = m.encode_prometheus();
        for line in [
            "authgate_http_requests_total{route=\"proxy\",status=\"200\"} 2",
            "authgate_http_requests_total{route=\"proxy\",status=\"502\"} 1",
            "authgate_http_requests_total{route=\"login\",status=\"401\"} 1",
            "authgate_forward_auth_decisions_total{endpoint=\"nginx\",outcome=\"allowed\"} 1",
            "authgate_forward_auth_decisions_total{endpoint=\"forward\",outcome=\"denied\"} 0",
            "authgate_forward_auth_decisions_total{endpoint=\"forward\",outcome=\"needs_second_factor\"} 1",
            "authgate_forward_auth_decisions_total{endpoint=\"nginx\",outcome=\"needs_second_factor\"} 0",
            "authgate_logins_total{outcome=\"banned\"} 1",
            "authgate_logins_total{outcome=\"success\"} 0",
            "authgate_second_factor_total{method=\"code\",outcome=\"invalid\"} 1",
            "authgate_upstream_response_seconds_count 1",
            "authgate_upstream_response_seconds_bucket{le=\"0.004\"} 1",
            "authgate_live_sessions 7",
            "authgate_store_healthy 1",
            "authgate_authy_request_seconds_count{call=\"create_approval_request\"} 1",
            "authgate_authy_errors_total{call=\"create_approval_request\",kind=\"unavailable\"} 1",
            "authgate_verify_request_seconds_count{call=\"check\"} 2",
            "authgate_verify_request_seconds_bucket{call=\"check\",le=\"0.04\"} 2",
            "authgate_verify_errors_total{call=\"check\",kind=\"not_found\"} 1",
            "authgate_verify_errors_total{call=\"start\",kind=\"rate_limited\"} 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(m.encode_openmetrics().ends_with("# EOF\n"));
    }

    /// The pre-resolved counters are indexed by the enums' discriminants.
    #[test]
    fn label_tables_follow_declaration_order() {
        for (i, decision) in Decision::ALL.into_iter().enumerate() {
            assert_eq!(decision as usize, i);
        }
        for (i, endpoint) in AuthEndpoint::ALL.into_iter().enumerate() {
            assert_eq!(endpoint as usize, i);
        }
    }
}
