//! Twilio Verify v2 (`authy-api.md` §5), Authy's successor: Twilio sends a
//! one-time code by SMS, call or email and checks it. There is no push.
//!
//! The auth token is a secret: it travels only in the `Authorization`
//! header (HTTP Basic, `AccountSid:AuthToken`), never in a URL or a log
//! line, and `Debug` of the settings masks it. The user's code travels only
//! in the form body.

pub mod client;
pub mod provider;

pub use client::{
    CheckOutcome, SettingsError, Verification, VerificationStatus, VerifyClient, VerifyError,
};
pub use provider::VerifyFactor;

use std::fmt;
use std::time::Duration;

/// How Twilio delivers the code. Verify has more channels (`whatsapp`,
/// `sna`, `auto`); these are the ones the users file can describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Sms,
    Call,
    Email,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Channel::Sms, Channel::Call, Channel::Email];

    /// The value of Twilio's `Channel` parameter and of `verify.channel`.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Sms => "sms",
            Channel::Call => "call",
            Channel::Email => "email",
        }
    }

    pub fn parse(name: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `[verify]` section, as the config layer built it.
#[derive(Clone)]
pub struct VerifySettings {
    /// `https://verify.twilio.com`, or the sandbox.
    pub api_url: url::Url,
    /// `AC` and 32 hex digits.
    pub account_sid: String,
    pub auth_token: String,
    /// `VA` and 32 hex digits.
    pub service_sid: String,
    pub channel: Channel,
    /// Bounds every call as a whole, connect included.
    pub timeout: Duration,
}

/// By hand, so the auth token can never reach a log line.
impl fmt::Debug for VerifySettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifySettings")
            .field("api_url", &self.api_url.as_str())
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"***")
            .field("service_sid", &self.service_sid)
            .field("channel", &self.channel)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// `^AC[0-9a-fA-F]{32}$`: a Twilio account SID.
pub fn is_account_sid(sid: &str) -> bool {
    is_sid(sid, "AC")
}

/// `^VA[0-9a-fA-F]{32}$`: a Verify service SID.
pub fn is_service_sid(sid: &str) -> bool {
    is_sid(sid, "VA")
}

/// `^VE[0-9a-fA-F]{32}$`: one verification.
pub fn is_verification_sid(sid: &str) -> bool {
    is_sid(sid, "VE")
}

fn is_sid(sid: &str, prefix: &str) -> bool {
    sid.strip_prefix(prefix)
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sid_shapes() {
        let hex = "0123456789abcdefABCDEF0123456789";
        assert!(is_account_sid(&format!("AC{hex}")));
        assert!(is_service_sid(&format!("VA{hex}")));
        assert!(is_verification_sid(&format!("VE{hex}")));
        assert!(!is_account_sid(&format!("VA{hex}")));
        assert!(!is_service_sid(&format!("AC{hex}")));
        assert!(!is_service_sid(&format!("va{hex}")));
        assert!(!is_service_sid(&format!("VA{hex}0")));
        assert!(!is_service_sid(&format!("VA{}", &hex[1..])));
        assert!(!is_service_sid(&format!("VA{}g", &hex[1..])));
        assert!(!is_account_sid("AC"));
        assert!(!is_account_sid(""));
        // Multi-byte characters must not pass a byte-length check.
        assert!(!is_account_sid(&format!("AC{}é", &hex[2..])));
    }

    #[test]
    fn channels_round_trip() {
        for channel in Channel::ALL {
            assert_eq!(Channel::parse(channel.as_str()), Some(channel));
        }
        assert_eq!(Channel::parse("whatsapp"), None);
        assert_eq!(Channel::parse("SMS"), None);
    }

    #[test]
    fn debug_masks_the_auth_token() {
        let settings = VerifySettings {
            api_url: "https://verify.twilio.com".parse().unwrap(),
            account_sid: format!("AC{}", "1".repeat(32)),
            auth_token: "very-secret-token-value".into(),
            service_sid: format!("VA{}", "2".repeat(32)),
            channel: Channel::Sms,
            timeout: Duration::from_secs(5),
        };
        let shown = format!("{settings:?}");
        assert!(!shown.contains("very-secret-token-value"), "{shown}");
        assert!(
            shown.contains("verify.twilio.com") && shown.contains("AC1111"),
            "{shown}"
        );
    }
}
