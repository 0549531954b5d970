//! The socket's messages: one JSON object per line each way.

use serde::{Deserialize, Serialize};

use crate::auth::SessionSummary;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Request {
    /// Every live session, or the user's.
    ListSessions {
        #[serde(default)]
        user: Option<String>,
    },
    /// Ends every session of the user.
    RevokeUser {
        user: String,
    },
    /// Ends the one session whose reference (a hex prefix of its store
    /// key, at least 6 digits) is `id`.
    RevokeSession {
        id: String,
    },
    /// The user cannot log in, and their sessions end now.
    DisableUser {
        user: String,
    },
    EnableUser {
        user: String,
    },
    ListDisabled,
    /// A sign-up user's TOTP is removed: they enroll again at their next
    /// login (users-file users are reset in the users file).
    ResetSecondFactor {
        user: String,
    },
}

impl Request {
    /// Whether the request only reads: nothing of it is audited.
    pub fn is_read_only(&self) -> bool {
        matches!(self, Request::ListSessions { .. } | Request::ListDisabled)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Reply {
    Sessions {
        sessions: Vec<SessionSummary>,
    },
    Revoked {
        sessions: usize,
    },
    Disabled {
        user: String,
        was_enabled: bool,
        sessions_ended: usize,
    },
    Enabled {
        user: String,
        was_disabled: bool,
    },
    DisabledUsers {
        users: Vec<String>,
    },
    SecondFactorReset {
        user: String,
        had_totp: bool,
        /// Security keys and passkeys removed.
        #[serde(default)]
        security_keys: usize,
    },
    /// The request could not be done; the text is for the operator.
    Error {
        message: String,
    },
}
