//! Which part of the gateway answers a path.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Login,
    Logout,
    Verify,
    Resend,
    Status,
    AuthyCallback,
    Signup,
    Healthz,
    /// Under the prefix but not a page of ours: never forwarded upstream.
    NotFound,
    Proxy,
}

pub fn route(path: &str, prefix: &str, has_upstream: bool) -> Route {
    let Some(rest) = path.strip_prefix(prefix) else {
        return proxy_or_not_found(has_upstream);
    };
    match rest {
        "/login" => Route::Login,
        "/logout" => Route::Logout,
        "/verify" => Route::Verify,
        "/resend" => Route::Resend,
        "/status" => Route::Status,
        "/authy/callback" => Route::AuthyCallback,
        "/signup" => Route::Signup,
        "/healthz" => Route::Healthz,
        "" => Route::NotFound,
        _ if rest.starts_with('/') => Route::NotFound,
        // `/_authgatex` is an upstream path that merely shares the prefix.
        _ => proxy_or_not_found(has_upstream),
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
    fn portal_paths_live_under_the_prefix_only() {
        assert_eq!(route("/_authgate/login", "/_authgate", true), Route::Login);
        assert_eq!(
            route("/_authgate/logout", "/_authgate", true),
            Route::Logout
        );
        assert_eq!(
            route("/_authgate/healthz", "/_authgate", true),
            Route::Healthz
        );
        assert_eq!(
            route("/_authgate/nope", "/_authgate", true),
            Route::NotFound
        );
        assert_eq!(route("/_authgate", "/_authgate", true), Route::NotFound);
        assert_eq!(route("/_authgatex", "/_authgate", true), Route::Proxy);
        assert_eq!(route("/login", "/_authgate", true), Route::Proxy);
        assert_eq!(route("/login", "/_authgate", false), Route::NotFound);
        assert_eq!(route("/auth/login", "/auth", true), Route::Login);
    }
}
