//! What each request does, over the store: the same for the socket of a
//! running gateway and for the CLI working on the store directly.

use std::sync::Arc;

use crate::audit::{Audit, Context};
use crate::auth::sessions::MIN_REFERENCE_DIGITS;
use crate::auth::{ByReference, Lifetimes, SessionAdmin};
use crate::clock::SystemClock;
use crate::config::Config;
use crate::store::{Backend, FactorStore, LiveSessions, StoreError};

use super::protocol::{Reply, Request};

pub struct AdminService {
    admin: Arc<SessionAdmin>,
    sessions: Arc<LiveSessions>,
    factors: Arc<dyn FactorStore>,
}

impl AdminService {
    pub fn new(
        admin: Arc<SessionAdmin>,
        sessions: Arc<LiveSessions>,
        factors: Arc<dyn FactorStore>,
    ) -> Self {
        AdminService {
            admin,
            sessions,
            factors,
        }
    }

    /// Over the store itself, for the CLI when no gateway runs (sled's
    /// store is locked by a running gateway; Redis is not). Revokes,
    /// disables and enables go to `audit` as the gateway's would.
    pub fn open(config: &Config, audit: Audit) -> Result<Self, StoreError> {
        let store = Backend::open(&config.store, &config.session)?;
        let sessions = Arc::new(store.live_sessions()?);
        let admin = SessionAdmin::new(
            sessions.clone(),
            store.disabled.clone(),
            Arc::new(SystemClock),
            lifetimes(config),
        )
        .with_audit(audit);
        Ok(AdminService::new(
            Arc::new(admin),
            sessions,
            store.factors.clone(),
        ))
    }

    /// Answers one request; a store failure is an `Error` reply.
    pub fn handle(&self, request: Request) -> Reply {
        self.answer(request).unwrap_or_else(|err| Reply::Error {
            message: err.to_string(),
        })
    }

    /// Makes every change so far durable (the CLI without a gateway,
    /// before it exits).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.sessions.flush()
    }

    fn answer(&self, request: Request) -> Result<Reply, StoreError> {
        Ok(match request {
            Request::ListSessions { user } => Reply::Sessions {
                sessions: self.admin.list(user.as_deref())?,
            },
            Request::RevokeUser { user } => Reply::Revoked {
                sessions: self.admin.revoke_user(&user)?,
            },
            Request::RevokeSession { id } => self.revoke_session(&id)?,
            Request::DisableUser { user } => {
                let (was_enabled, sessions_ended) = self.admin.disable(&user)?;
                Reply::Disabled {
                    user,
                    was_enabled,
                    sessions_ended,
                }
            }
            Request::EnableUser { user } => Reply::Enabled {
                was_disabled: self.admin.enable(&user)?,
                user,
            },
            Request::ListDisabled => Reply::DisabledUsers {
                users: self.admin.disabled_users()?,
            },
            Request::ResetSecondFactor { user } => self.reset_second_factor(&user)?,
        })
    }

    fn revoke_session(&self, id: &str) -> Result<Reply, StoreError> {
        let message = match self.admin.revoke_reference(id, None, &Context::default())? {
            ByReference::Ended(_) => return Ok(Reply::Revoked { sessions: 1 }),
            ByReference::NoMatch => format!("no live session's reference starts with {id:?}"),
            ByReference::Ambiguous(n) => {
                format!("{n} sessions' references start with {id:?}: give more digits")
            }
            ByReference::Malformed => {
                format!("a reference is at least {MIN_REFERENCE_DIGITS} hex digits, not {id:?}")
            }
        };
        Ok(Reply::Error { message })
    }

    /// Only a sign-up user: a users-file user is reset in the users file,
    /// which the gateway reloads by itself.
    fn reset_second_factor(&self, user: &str) -> Result<Reply, StoreError> {
        let user = user.trim();
        if self.sessions.store().signup_user(user)?.is_none() {
            return Ok(Reply::Error {
                message: format!("no user {user} among the sign-up users"),
            });
        }
        let had_totp = self.factors.remove_totp(user)?;
        let security_keys = self.factors.remove_all_webauthn(user)?;
        if had_totp || security_keys > 0 {
            self.admin.factors_removed(user);
        }
        Ok(Reply::SecondFactorReset {
            user: user.to_owned(),
            had_totp,
            security_keys,
        })
    }
}

/// The sessions' limits as `[session]` sets them.
pub fn lifetimes(config: &Config) -> Lifetimes {
    Lifetimes {
        idle: config.session.idle_timeout.as_secs(),
        lifetime: config.session.lifetime.as_secs(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemoryStore, SessionStore, TotpRecord};

    /// A reset of a sign-up user's factors is an operator's action on the
    /// trail, the same through the socket and on the store directly (both
    /// answer with this service); a reset that removed nothing is not.
    #[test]
    fn a_reset_of_a_sign_up_users_factors_is_audited() {
        let store = Arc::new(MemoryStore::default());
        let user: crate::model::User = serde_json::from_str(
            r#"{"email":"new@example.com","name":"N","password":"$argon2id$x"}"#,
        )
        .unwrap();
        assert!(store.insert_signup_user(&user).unwrap());
        let totp = TotpRecord {
            sealed: "v1.sealed".into(),
            enrolled_at: 1,
            last_step: 0,
        };
        store.set_totp("new@example.com", &totp).unwrap();
        let sessions = Arc::new(LiveSessions::load(store.clone()).unwrap());
        let (audit, mut records) = Audit::bounded(
            8,
            "it",
            prometheus_client::metrics::counter::Counter::default(),
        );
        let lifetimes = Lifetimes {
            idle: 600,
            lifetime: 3_600,
        };
        let admin = SessionAdmin::new(
            sessions.clone(),
            store.clone(),
            Arc::new(SystemClock),
            lifetimes,
        )
        .with_audit(audit);
        let service = AdminService::new(Arc::new(admin), sessions, store);
        let reset = || Request::ResetSecondFactor {
            user: "new@example.com".into(),
        };
        assert!(matches!(
            service.handle(reset()),
            Reply::SecondFactorReset { had_totp: true, .. }
        ));
        let line: serde_json::Value =
            serde_json::from_str(&records.try_recv().unwrap().to_line()).unwrap();
        assert_eq!(line["event"], "factor_removed");
        assert_eq!(line["user"], "new@example.com");
        assert_eq!(line["client"], serde_json::Value::Null);
        assert!(matches!(
            service.handle(reset()),
            Reply::SecondFactorReset {
                had_totp: false,
                ..
            }
        ));
        assert!(
            records.try_recv().is_err(),
            "nothing removed, nothing written"
        );
    }
}
