//! What an access rule asks of a request.

/// Declared from the most permissive to the strictest, so `max` of two
/// readings of one request is the stricter decision.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    Bypass,
    OneFactor,
    TwoFactor,
    /// Two-factor, and each matching request is held until the user
    /// approves that one request (proxy mode only: docs/approval.md).
    Approve,
    Deny,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Bypass => "bypass",
            Policy::OneFactor => "one_factor",
            Policy::TwoFactor => "two_factor",
            Policy::Approve => "approve",
            Policy::Deny => "deny",
        }
    }
}
