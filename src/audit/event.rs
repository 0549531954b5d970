//! What one audit line holds, and how it is encoded. Never a secret: no
//! password, code, TOTP secret, cookie, CSRF token or session id has a
//! field here.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;

use crate::model::Method;
use crate::store::SessionKey;

/// The security events docs/audit.md lists; the tag is the `event` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    LoginSucceeded,
    LoginFailed {
        reason: LoginFailure,
    },
    SecondFactorSucceeded {
        #[serde(serialize_with = "method_name")]
        method: Method,
    },
    SecondFactorFailed {
        #[serde(serialize_with = "method_name")]
        method: Method,
    },
    PushApproved,
    PushDenied,
    PushExpired,
    TotpEnrolled,
    SecurityKeyAdded,
    SecurityKeyRemoved,
    Logout,
    /// A session ended by its user from another one, or by an operator.
    SessionRevoked,
    /// An operator disabled the user (their sessions are revoked, too).
    UserDisabled,
    UserEnabled,
    /// An operator removed a sign-up user's TOTP and security keys
    /// (`authgate user reset-2fa`).
    FactorRemoved,
    RegulationBan,
    ForwardAuthMalformedTarget,
    /// A request matched an `approve` rule and is held (docs/approval.md).
    ApprovalRequested,
    ApprovalApproved,
    ApprovalDenied,
    ApprovalExpired,
    ApprovalCancelled,
    /// The approved request was sent upstream (once).
    ApprovalReleased,
}

fn method_name<S: serde::Serializer>(method: &Method, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(method.as_str())
}

/// Why a password login was refused. Unknown email and wrong password are
/// one reason, as the answer is the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginFailure {
    InvalidCredentials,
    Banned,
    Csrf,
    InvalidRequest,
    Error,
}

/// Where a request event comes from; all `None` for events without a
/// browser request (a push answered by the webhook or the poller).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Context {
    pub client: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

/// A short hex prefix of the session's store key (the SHA-256 of the id):
/// enough to match lines of one session, useless to take it over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionRef([u8; SessionRef::BYTES]);

impl SessionRef {
    const BYTES: usize = 6;

    pub fn of(key: &SessionKey) -> Self {
        let mut prefix = [0; Self::BYTES];
        prefix.copy_from_slice(&key.0[..Self::BYTES]);
        SessionRef(prefix)
    }

    /// The reference as the audit line writes it: hex, 12 digits.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }
}

impl Serialize for SessionRef {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex(&self.0))
    }
}

/// An event as the caller knows it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub event: Event,
    /// The email as the users file has it; `None` for an unknown user.
    pub user: Option<String>,
    pub session: Option<SessionRef>,
    pub context: Context,
}

/// One line of the audit trail.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// RFC 3339, UTC, milliseconds.
    time: String,
    #[serde(flatten)]
    event: Event,
    user: Option<String>,
    client: Option<IpAddr>,
    user_agent: Option<String>,
    session: Option<SessionRef>,
    request_id: Option<String>,
    replica: Arc<str>,
}

impl Record {
    pub fn new(entry: Entry, at: SystemTime, replica: Arc<str>) -> Self {
        Record {
            time: humantime::format_rfc3339_millis(at).to_string(),
            event: entry.event,
            user: entry.user,
            client: entry.context.client,
            user_agent: entry.context.user_agent,
            session: entry.session,
            request_id: entry.context.request_id,
            replica,
        }
    }

    /// The JSON object, without the newline.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("a record always encodes")
    }
}

/// The longest `X-Request-Id` taken from a trusted proxy.
const MAX_REQUEST_ID: usize = 64;

/// The request's id: the trusted proxy's `X-Request-Id` when it is short
/// and printable, else a fresh random one (16 hex digits).
pub fn request_id(sent: Option<&[u8]>, from_trusted_proxy: bool) -> String {
    let usable = |id: &&[u8]| {
        !id.is_empty() && id.len() <= MAX_REQUEST_ID && id.iter().all(u8::is_ascii_graphic)
    };
    match sent.filter(|_| from_trusted_proxy).filter(usable) {
        Some(id) => String::from_utf8_lossy(id).into_owned(),
        None => {
            let mut random = [0u8; 8];
            // The id only ties lines together: a failed RNG leaves zeros.
            let _ = getrandom::getrandom(&mut random);
            hex(&random)
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
