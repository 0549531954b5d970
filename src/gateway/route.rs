//! Which part of the gateway answers a path.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Login,
    Logout,
    Verify,
    Resend,
    Status,
    /// TOTP enrollment for a user with no second factor.
    EnrollTotp,
    /// The first security key or passkey of a user with no second factor.
    EnrollWebauthn,
    /// The WebAuthn ceremonies' JSON endpoints (`webauthn/…`).
    Webauthn,
    /// The security page: the user's keys, added and removed.
    Security,
    /// "Your sessions": a confirmed user's sessions, to sign out of.
    AccountSessions,
    AuthyCallback,
    Signup,
    Healthz,
    /// An embedded file the pages load (`static/…`).
    Asset,
    /// nginx `auth_request` (also Authelia's `/api/authz/auth-request`, `/api/verify`).
    AuthRequest,
    /// Traefik, Caddy, HAProxy (also Authelia's `/api/authz/forward-auth`).
    ForwardAuth,
    /// `/` of a forward-auth deployment: on to the login page.
    PortalRoot,
    /// Under the prefix but not a page of ours: never forwarded upstream.
    NotFound,
    Proxy,
    /// `approval/{id}…`: a request held for an `approve` rule; its continue
    /// URL answers with the upstream's answer.
    Approval,
}

impl Route {
    /// In declaration order, so that `route as usize` indexes it.
    pub const ALL: [Route; 20] = [
        Route::Login,
        Route::Logout,
        Route::Verify,
        Route::Resend,
        Route::Status,
        Route::EnrollTotp,
        Route::EnrollWebauthn,
        Route::Webauthn,
        Route::Security,
        Route::AccountSessions,
        Route::AuthyCallback,
        Route::Signup,
        Route::Healthz,
        Route::Asset,
        Route::AuthRequest,
        Route::ForwardAuth,
        Route::PortalRoot,
        Route::NotFound,
        Route::Proxy,
        Route::Approval,
    ];

    /// Answered by the portal itself: everything but the forward-auth
    /// answers and the proxy (and the approvals, whose continue URL gives
    /// the upstream's answer: their own pages set the headers).
    pub fn is_portal(self) -> bool {
        !matches!(
            self,
            Route::Proxy | Route::AuthRequest | Route::ForwardAuth | Route::Approval
        )
    }
}

/// The ceremonies' endpoints under the prefix: options, then the answer.
pub const WEBAUTHN_ENDPOINTS: [&str; 6] = [
    "/webauthn/register/options",
    "/webauthn/register",
    "/webauthn/assert/options",
    "/webauthn/assert",
    "/webauthn/passkey/options",
    "/webauthn/passkey",
];

/// `authelia_paths`: serve Authelia's forward-auth paths (always without
/// an upstream; with one only when `server.authelia_paths` is on, so they
/// never shadow the upstream's own paths).
pub fn route(path: &str, prefix: &str, has_upstream: bool, authelia_paths: bool) -> Route {
    if authelia_paths && let Some(route) = authelia_route(path) {
        return route;
    }
    if path == "/" && !has_upstream {
        return Route::PortalRoot;
    }
    let Some(rest) = path.strip_prefix(prefix) else {
        return proxy_or_not_found(has_upstream);
    };
    match rest {
        "/login" => Route::Login,
        "/logout" => Route::Logout,
        "/verify" => Route::Verify,
        "/resend" => Route::Resend,
        "/status" => Route::Status,
        "/enroll/totp" => Route::EnrollTotp,
        "/enroll/webauthn" => Route::EnrollWebauthn,
        "/account/security" => Route::Security,
        rest if WEBAUTHN_ENDPOINTS.contains(&rest) => Route::Webauthn,
        "/account/sessions" => Route::AccountSessions,
        "/authy/callback" => Route::AuthyCallback,
        "/signup" => Route::Signup,
        "/auth-request" => Route::AuthRequest,
        "/forward-auth" => Route::ForwardAuth,
        "/healthz" => Route::Healthz,
        "" => Route::NotFound,
        _ if rest.starts_with("/static/") => Route::Asset,
        _ if rest.starts_with("/approval/") => Route::Approval,
        _ if rest.starts_with('/') => Route::NotFound,
        // `/_authgatex` is an upstream path that merely shares the prefix.
        _ => proxy_or_not_found(has_upstream),
    }
}

fn authelia_route(path: &str) -> Option<Route> {
    match path {
        "/api/authz/auth-request" | "/api/verify" => Some(Route::AuthRequest),
        "/api/authz/forward-auth" => Some(Route::ForwardAuth),
        _ => None,
    }
}

fn proxy_or_not_found(has_upstream: bool) -> Route {
    if has_upstream {
        Route::Proxy
    } else {
        Route::NotFound
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_routes_are_listed_in_declaration_order() {
        for (i, route) in Route::ALL.into_iter().enumerate() {
            assert_eq!(route as usize, i);
        }
    }

    #[test]
    fn authelia_paths_only_when_asked_and_root_only_without_upstream() {
        assert_eq!(
            route("/api/verify", "/_authgate", true, false),
            Route::Proxy
        );
        assert_eq!(
            route("/api/verify", "/_authgate", true, true),
            Route::AuthRequest
        );
        assert_eq!(
            route("/api/authz/forward-auth", "/_authgate", false, true),
            Route::ForwardAuth
        );
        assert_eq!(
            route("/_authgate/auth-request", "/_authgate", true, false),
            Route::AuthRequest
        );
        assert_eq!(
            route("/_authgate/forward-auth", "/_authgate", true, false),
            Route::ForwardAuth
        );
        assert_eq!(route("/", "/_authgate", false, true), Route::PortalRoot);
        assert_eq!(route("/", "/_authgate", true, false), Route::Proxy);
    }

    #[test]
    fn portal_paths_live_under_the_prefix_only() {
        assert_eq!(
            route("/_authgate/login", "/_authgate", true, false),
            Route::Login
        );
        assert_eq!(
            route("/_authgate/logout", "/_authgate", true, false),
            Route::Logout
        );
        assert_eq!(
            route("/_authgate/healthz", "/_authgate", true, false),
            Route::Healthz
        );
        assert_eq!(
            route("/_authgate/nope", "/_authgate", true, false),
            Route::NotFound
        );
        assert_eq!(
            route("/_authgate", "/_authgate", true, false),
            Route::NotFound
        );
        assert_eq!(
            route("/_authgatex", "/_authgate", true, false),
            Route::Proxy
        );
        assert_eq!(route("/login", "/_authgate", true, false), Route::Proxy);
        assert_eq!(route("/login", "/_authgate", false, false), Route::NotFound);
        assert_eq!(route("/auth/login", "/auth", true, false), Route::Login);
        assert_eq!(
            route("/_authgate/enroll/totp", "/_authgate", true, false),
            Route::EnrollTotp
        );
        assert_eq!(
            route("/_authgate/static/push.js", "/_authgate", true, false),
            Route::Asset
        );
        assert_eq!(
            route("/static/push.js", "/_authgate", true, false),
            Route::Proxy
        );
    }
}
