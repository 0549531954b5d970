//! The files the pages load beside their HTML (the style sheet and the
//! waiting page's script), embedded in the binary. The pages'
//! Content-Security-Policy allows no inline script and no inline style,
//! so everything a page needs beyond its markup comes from here.

/// An embedded file, served under `{prefix}/static/{name}`.
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static str,
}

pub const STYLESHEET: Asset = Asset {
    name: "authgate.css",
    content_type: "text/css; charset=utf-8",
    body: include_str!("static/authgate.css"),
};

/// Polls `status` on the waiting view and moves on by itself.
pub const PUSH_SCRIPT: Asset = Asset {
    name: "push.js",
    content_type: "text/javascript; charset=utf-8",
    body: include_str!("static/push.js"),
};

/// Runs the WebAuthn ceremonies (security keys, passkeys).
pub const WEBAUTHN_SCRIPT: Asset = Asset {
    name: "webauthn.js",
    content_type: "text/javascript; charset=utf-8",
    body: include_str!("static/webauthn.js"),
};

/// Polls an approval's status on the "Approve this action" page.
pub const APPROVE_SCRIPT: Asset = Asset {
    name: "approve.js",
    content_type: "text/javascript; charset=utf-8",
    body: include_str!("static/approve.js"),
};

const ALL: [&Asset; 4] = [&STYLESHEET, &PUSH_SCRIPT, &WEBAUTHN_SCRIPT, &APPROVE_SCRIPT];

/// The asset called `name` (the path segment after `static/`).
pub fn named(name: &str) -> Option<&'static Asset> {
    ALL.into_iter().find(|asset| asset.name == name)
}

impl Asset {
    /// The URL the pages use: the version is a hash of the content, so a
    /// browser may cache the file for good and still never run a stale
    /// copy after an upgrade.
    pub fn url(&self, prefix: &str) -> String {
        format!("{prefix}/static/{}?v={:016x}", self.name, fnv1a(self.body))
    }
}

/// FNV-1a, 64 bits: a content fingerprint, not a security measure.
pub(super) fn fnv1a(content: impl AsRef<[u8]>) -> u64 {
    content
        .as_ref()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_changes_with_the_content() {
        let url = PUSH_SCRIPT.url("/_authgate");
        assert!(url.starts_with("/_authgate/static/push.js?v="), "{url}");
        assert_ne!(fnv1a("a"), fnv1a("b"));
        assert_eq!(STYLESHEET.url("/p"), STYLESHEET.url("/p"));
    }

    #[test]
    fn assets_are_found_by_name_only() {
        assert!(named("push.js").is_some());
        assert!(named("authgate.css").is_some());
        assert!(named("../push.js").is_none());
        assert!(named("").is_none());
    }
}
