//! Approving one held request (the `approve` policy, docs/approval.md).
//!
//! ```text
//! reserve (slot + bytes) --body read, push or code started--> Pending
//! Pending  --push approved / fresh code-->  Approved --continue (once)--> Released
//! Pending  --push denied / 5 wrong codes--> Denied
//! Pending  --approval.timeout------------->  Expired
//! Pending  --the user cancels------------->  Cancelled
//! ```
//!
//! [`Approvals`] holds the pending requests in memory only (a held body is
//! never written anywhere), bounded in total bytes and in count per
//! session. Bytes are reserved before they are read, so 100 requests at
//! once cannot hold more than `approval.max_pending_bytes` between them.
//! Each approval belongs to one session and to the SHA-256 of its method,
//! target and body; it is released once. Generic over the held request, so
//! nothing here knows HTTP.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use sha2::{Digest, Sha256};

use crate::factor::webauthn::BoundCeremony;
use crate::factor::{CodeCheck, PushRequest};
use crate::model::{Delivery, Method, PushStatus, User};
use crate::store::SessionKey;

use super::error::{AuthError, provider_error};
use super::flow::Authenticator;
use super::methods::factor_user;
use super::state::MAX_WRONG_CODES;

/// How long a decided approval can still be looked at (its page, its
/// status) after it ended; its body is dropped when it ends.
const KEPT_AFTER_END_SECS: u64 = 10 * 60;

/// The shortest gap between two questions to the provider about one push.
const POLL_EVERY_SECS: u64 = 1;

/// `[approval]`'s limits.
#[derive(Debug, Clone, Copy)]
pub struct ApprovalLimits {
    pub max_body: usize,
    pub max_pending_bytes: usize,
    pub max_per_session: usize,
    /// Seconds a held request waits.
    pub timeout: u64,
}

/// How the user approves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApprovalMeans {
    /// A push whose message and details describe the request.
    Push { method: Method, push_id: String },
    /// A fresh code of a code method (the login's code is refused by the
    /// method's own reuse guard).
    Code { method: Method },
    /// A fresh assertion by one of the user's security keys or passkeys,
    /// whose challenge binds the request's hash.
    Key,
}

impl ApprovalMeans {
    pub fn method(&self) -> Method {
        match self {
            ApprovalMeans::Push { method, .. } | ApprovalMeans::Code { method } => *method,
            ApprovalMeans::Key => Method::Webauthn,
        }
    }

    /// What the page and its JSON call it.
    pub fn as_str(&self) -> &'static str {
        match self {
            ApprovalMeans::Push { .. } => "push",
            ApprovalMeans::Code { .. } => "code",
            ApprovalMeans::Key => "key",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalState {
    Pending,
    Approved,
    Denied,
    Expired,
    Cancelled,
    /// Approved and sent upstream: it can never be sent again.
    Released,
}

impl ApprovalState {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalState::Pending => "pending",
            ApprovalState::Approved => "approved",
            ApprovalState::Denied => "denied",
            ApprovalState::Expired => "expired",
            ApprovalState::Cancelled => "cancelled",
            ApprovalState::Released => "released",
        }
    }

    fn is_over(self) -> bool {
        !matches!(self, ApprovalState::Pending | ApprovalState::Approved)
    }
}

/// What the user is shown about the request, already truncated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalDetails {
    /// The user asked (for the audit trail; not shown).
    pub user: String,
    pub message: String,
    /// The rule's fields, in order.
    pub fields: Vec<(String, String)>,
    pub method: String,
    pub host: String,
    pub path: String,
    pub client: String,
}

/// The binding of an approval: SHA-256 of (method, target, body).
pub fn request_hash(method: &str, target: &str, body: &[u8]) -> [u8; 32] {
    let mut hash = Sha256::new();
    for part in [method.as_bytes(), target.as_bytes()] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    hash.update(body);
    hash.finalize().into()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalError {
    /// Unknown, or another session's: the same answer, so an id reveals nothing.
    #[error("no such approval")]
    NotFound,
    #[error("this session has too many requests waiting for approval")]
    TooManyPending,
    #[error("too many requests are waiting for approval")]
    Full,
    #[error("the request body is larger than approval.max_body")]
    TooLarge,
    /// The step asked for does not fit the approval's state.
    #[error("the approval is {}", .0.as_str())]
    State(ApprovalState),
    /// A code for an approval by push or key, a key's answer for one by
    /// push or code.
    #[error("this approval is approved another way")]
    OtherMeans,
    /// A key's answer with no ceremony waiting for it (used, or never started).
    #[error("no key ceremony is waiting for this approval")]
    NoCeremony,
}

/// What the gateway is told about an approval.
#[derive(Debug, Clone)]
pub struct ApprovalView {
    pub state: ApprovalState,
    pub means: ApprovalMeans,
    pub details: ApprovalDetails,
    pub wrong_codes_left: u32,
    /// A push still waiting whose answer may be asked of the provider now.
    pub poll_push: Option<String>,
}

/// The pending approvals of this process.
pub struct Approvals<H> {
    limits: ApprovalLimits,
    inner: Arc<Mutex<Inner<H>>>,
}

struct Inner<H> {
    by_id: HashMap<String, Entry<H>>,
    /// Bytes reserved by every slot and held body.
    bytes: usize,
    /// Slots and pending (or approved, not yet released) approvals, per session.
    per_session: HashMap<SessionKey, usize>,
    /// Timed out since the last [`Approvals::sweep`].
    expired: Vec<ApprovalDetails>,
}

struct Entry<H> {
    session: SessionKey,
    hash: [u8; 32],
    state: ApprovalState,
    means: ApprovalMeans,
    subject: String,
    details: ApprovalDetails,
    expires_at: u64,
    /// The held request while it may still go upstream.
    held: Option<H>,
    bytes: usize,
    /// Codes and key answers counted before their check.
    wrong_codes: u32,
    /// The key ceremony waiting for its one answer (approval by key).
    key_ceremony: Option<BoundCeremony>,
    last_polled: u64,
}

/// A place among the pending approvals, taken before the body is read:
/// it counts for its session and holds the bytes reserved so far. Dropped
/// without becoming an approval, it gives both back.
pub struct Slot<H> {
    inner: Arc<Mutex<Inner<H>>>,
    limits: ApprovalLimits,
    session: SessionKey,
    bytes: usize,
    /// Became an approval: its count and bytes moved there.
    kept: bool,
}

/// A new approval for [`Approvals::hold`].
pub struct NewApproval<H> {
    pub hash: [u8; 32],
    pub means: ApprovalMeans,
    pub subject: String,
    pub details: ApprovalDetails,
    pub held: H,
}

impl<H> Approvals<H> {
    pub fn new(limits: ApprovalLimits) -> Self {
        Approvals {
            limits,
            inner: Arc::new(Mutex::new(Inner {
                by_id: HashMap::new(),
                bytes: 0,
                per_session: HashMap::new(),
                expired: Vec::new(),
            })),
        }
    }

    pub fn limits(&self) -> ApprovalLimits {
        self.limits
    }

    /// Takes a place for one more held request of `session`, or refuses
    /// when it has `max_per_session` already.
    pub fn reserve(&self, session: SessionKey, now: u64) -> Result<Slot<H>, ApprovalError> {
        let mut inner = lock(&self.inner);
        inner.expire(now);
        let count = inner.per_session.entry(session).or_insert(0);
        if *count >= self.limits.max_per_session {
            return Err(ApprovalError::TooManyPending);
        }
        *count += 1;
        Ok(Slot {
            inner: self.inner.clone(),
            limits: self.limits,
            session,
            bytes: 0,
            kept: false,
        })
    }

    /// Turns a slot with its body read into a pending approval; returns
    /// its id (random, 128 bits).
    pub fn hold(
        &self,
        mut slot: Slot<H>,
        new: NewApproval<H>,
        now: u64,
    ) -> Result<String, AuthError> {
        let id = random_id()?;
        let mut inner = lock(&self.inner);
        slot.kept = true;
        inner.by_id.insert(
            id.clone(),
            Entry {
                session: slot.session,
                hash: new.hash,
                state: ApprovalState::Pending,
                means: new.means,
                subject: new.subject,
                details: new.details,
                expires_at: now + self.limits.timeout,
                held: Some(new.held),
                bytes: slot.bytes,
                wrong_codes: 0,
                key_ceremony: None,
                last_polled: now,
            },
        );
        Ok(id)
    }

    /// The approval `id` of `session`, as it is now.
    pub fn view(
        &self,
        id: &str,
        session: &SessionKey,
        now: u64,
    ) -> Result<ApprovalView, ApprovalError> {
        let mut inner = lock(&self.inner);
        inner.expire(now);
        let entry = inner.entry_mut(id, session)?;
        let poll_push = match (&entry.means, entry.state) {
            (ApprovalMeans::Push { push_id, .. }, ApprovalState::Pending)
                if now >= entry.last_polled + POLL_EVERY_SECS =>
            {
                entry.last_polled = now;
                Some(push_id.clone())
            }
            _ => None,
        };
        Ok(ApprovalView {
            state: entry.state,
            means: entry.means.clone(),
            details: entry.details.clone(),
            wrong_codes_left: MAX_WRONG_CODES.saturating_sub(entry.wrong_codes),
            poll_push,
        })
    }

    /// Applies the provider's answer to a pending push; returns the state.
    pub fn push_answered(
        &self,
        id: &str,
        session: &SessionKey,
        status: PushStatus,
        now: u64,
    ) -> Result<ApprovalState, ApprovalError> {
        let next = match status {
            PushStatus::Approved => ApprovalState::Approved,
            PushStatus::Denied => ApprovalState::Denied,
            PushStatus::Expired => ApprovalState::Expired,
            PushStatus::Pending => ApprovalState::Pending,
        };
        self.moved(id, session, now, |state| {
            (state == ApprovalState::Pending).then_some(next)
        })
    }

    /// Counts a code as wrong before it is checked; the method and subject
    /// to check it with. A code beyond the last try denies the approval.
    pub fn reserve_code(
        &self,
        id: &str,
        session: &SessionKey,
        now: u64,
    ) -> Result<(Method, String), ApprovalError> {
        let mut inner = lock(&self.inner);
        inner.expire(now);
        let entry = inner.entry_mut(id, session)?;
        if entry.state != ApprovalState::Pending {
            return Err(ApprovalError::State(entry.state));
        }
        let ApprovalMeans::Code { method } = entry.means else {
            return Err(ApprovalError::OtherMeans);
        };
        entry.wrong_codes += 1;
        Ok((method, entry.subject.clone()))
    }

    /// The hash a key must sign to approve `id`: pending, by key.
    pub fn key_binding(
        &self,
        id: &str,
        session: &SessionKey,
        now: u64,
    ) -> Result<[u8; 32], ApprovalError> {
        self.by_key(id, session, now, |entry| Ok(entry.hash))
    }

    /// Keeps the ceremony started for `id`; a newer one replaces it, so
    /// only the last options shown can be answered.
    pub fn keep_ceremony(
        &self,
        id: &str,
        session: &SessionKey,
        ceremony: BoundCeremony,
        now: u64,
    ) -> Result<(), ApprovalError> {
        self.by_key(id, session, now, |entry| {
            entry.key_ceremony = Some(ceremony);
            Ok(())
        })
    }

    /// Takes the ceremony for its one answer, with the hash it binds; the
    /// answer counts as wrong before its check, as a code does
    /// ([`Approvals::code_checked`] settles it).
    pub fn take_ceremony(
        &self,
        id: &str,
        session: &SessionKey,
        now: u64,
    ) -> Result<(BoundCeremony, [u8; 32]), ApprovalError> {
        self.by_key(id, session, now, |entry| {
            let ceremony = entry.key_ceremony.take().ok_or(ApprovalError::NoCeremony)?;
            entry.wrong_codes += 1;
            Ok((ceremony, entry.hash))
        })
    }

    /// `step` on the approval `id` of `session`, pending and approved by key.
    fn by_key<T>(
        &self,
        id: &str,
        session: &SessionKey,
        now: u64,
        step: impl FnOnce(&mut Entry<H>) -> Result<T, ApprovalError>,
    ) -> Result<T, ApprovalError> {
        let mut inner = lock(&self.inner);
        inner.expire(now);
        let entry = inner.entry_mut(id, session)?;
        if entry.state != ApprovalState::Pending {
            return Err(ApprovalError::State(entry.state));
        }
        if entry.means != ApprovalMeans::Key {
            return Err(ApprovalError::OtherMeans);
        }
        step(entry)
    }

    /// A reserved code was checked: valid approves, wrong stays counted
    /// (the last try denies), unchecked gives the try back.
    pub fn code_checked(
        &self,
        id: &str,
        session: &SessionKey,
        check: Option<CodeCheck>,
        now: u64,
    ) -> Result<ApprovalState, ApprovalError> {
        let mut inner = lock(&self.inner);
        let entry = inner.entry_mut(id, session)?;
        match check {
            None => entry.wrong_codes = entry.wrong_codes.saturating_sub(1),
            Some(CodeCheck::Invalid) if entry.wrong_codes >= MAX_WRONG_CODES => {
                drop(inner);
                return self.moved(id, session, now, |state| {
                    (state == ApprovalState::Pending).then_some(ApprovalState::Denied)
                });
            }
            Some(CodeCheck::Invalid) => {}
            Some(CodeCheck::Valid) => {
                drop(inner);
                return self.moved(id, session, now, |state| {
                    (state == ApprovalState::Pending).then_some(ApprovalState::Approved)
                });
            }
        }
        Ok(entry.state)
    }

    pub fn cancel(
        &self,
        id: &str,
        session: &SessionKey,
        now: u64,
    ) -> Result<ApprovalState, ApprovalError> {
        self.moved(id, session, now, |state| {
            (state == ApprovalState::Pending).then_some(ApprovalState::Cancelled)
        })
    }

    /// Approved --> Released, once: the held request, to send upstream,
    /// with the hash it was approved under. Any other state keeps it.
    pub fn release(
        &self,
        id: &str,
        session: &SessionKey,
        now: u64,
    ) -> Result<(H, [u8; 32]), ApprovalError> {
        let mut inner = lock(&self.inner);
        inner.expire(now);
        let entry = inner.entry_mut(id, session)?;
        if entry.state != ApprovalState::Approved {
            return Err(ApprovalError::State(entry.state));
        }
        let hash = entry.hash;
        let held = entry.held.take().ok_or(ApprovalError::State(entry.state))?;
        entry.state = ApprovalState::Released;
        inner.ended(id, now);
        Ok((held, hash))
    }

    /// Moves a state by `next` (None: no move) and frees a body that can
    /// no longer go upstream.
    fn moved(
        &self,
        id: &str,
        session: &SessionKey,
        now: u64,
        next: impl FnOnce(ApprovalState) -> Option<ApprovalState>,
    ) -> Result<ApprovalState, ApprovalError> {
        let mut inner = lock(&self.inner);
        inner.expire(now);
        let entry = inner.entry_mut(id, session)?;
        if let Some(next) = next(entry.state) {
            entry.state = next;
            if next.is_over() {
                inner.ended(id, now);
            }
        }
        Ok(inner.entry_mut(id, session)?.state)
    }

    /// Bytes held now, every session together (for tests and metrics).
    pub fn held_bytes(&self) -> usize {
        lock(&self.inner).bytes
    }

    /// The approvals that timed out since the last sweep (ended when
    /// they were found), for the audit trail and the metrics.
    pub fn sweep(&self, now: u64) -> Vec<ApprovalDetails> {
        let mut inner = lock(&self.inner);
        inner.expire(now);
        std::mem::take(&mut inner.expired)
    }
}

impl<H> Slot<H> {
    /// Reserves `more` bytes before they are read: refused when the body
    /// would pass `max_body` or every held body together would pass
    /// `max_pending_bytes`.
    pub fn grow(&mut self, more: usize) -> Result<(), ApprovalError> {
        let wanted = self.bytes.saturating_add(more);
        if wanted > self.limits.max_body {
            return Err(ApprovalError::TooLarge);
        }
        let mut inner = lock(&self.inner);
        let total = inner.bytes.saturating_add(more);
        if total > self.limits.max_pending_bytes {
            return Err(ApprovalError::Full);
        }
        inner.bytes = total;
        self.bytes = wanted;
        Ok(())
    }
}

impl<H> Drop for Slot<H> {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        let mut inner = lock(&self.inner);
        inner.bytes -= self.bytes;
        inner.leave(&self.session);
    }
}

impl<H> Inner<H> {
    /// The approval `id` if it is `session`'s; another session's is "not found".
    fn entry_mut(
        &mut self,
        id: &str,
        session: &SessionKey,
    ) -> Result<&mut Entry<H>, ApprovalError> {
        self.by_id
            .get_mut(id)
            .filter(|e| e.session == *session)
            .ok_or(ApprovalError::NotFound)
    }

    /// An approval left its last state that may go upstream: its body and
    /// its place are given back; it stays to be looked at for a while.
    fn ended(&mut self, id: &str, now: u64) {
        let Some(entry) = self.by_id.get_mut(id) else {
            return;
        };
        entry.held = None;
        entry.key_ceremony = None;
        entry.expires_at = now + KEPT_AFTER_END_SECS;
        let (bytes, session) = (std::mem::take(&mut entry.bytes), entry.session);
        self.bytes -= bytes;
        self.leave(&session);
    }

    fn leave(&mut self, session: &SessionKey) {
        if let Some(count) = self.per_session.get_mut(session) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_session.remove(session);
            }
        }
    }

    /// Ends what timed out (Pending or Approved → Expired) and forgets
    /// ended approvals kept long enough.
    fn expire(&mut self, now: u64) {
        let timed_out: Vec<String> = self
            .by_id
            .iter()
            .filter(|(_, e)| e.expires_at <= now && !e.state.is_over())
            .map(|(id, _)| id.clone())
            .collect();
        for id in timed_out {
            if let Some(entry) = self.by_id.get_mut(&id) {
                entry.state = ApprovalState::Expired;
                self.expired.push(entry.details.clone());
            }
            self.ended(&id, now);
        }
        self.by_id
            .retain(|_, e| !(e.state.is_over() && e.expires_at <= now));
    }
}

fn lock<H>(inner: &Mutex<Inner<H>>) -> MutexGuard<'_, Inner<H>> {
    // Every change is whole before a panic could happen; keep serving.
    inner
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn random_id() -> Result<String, AuthError> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| AuthError::ProviderRejected(format!("no randomness: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl Authenticator {
    /// Asks `user` to approve the request `details` describes, with their
    /// first method (the one they last confirmed with): a push carrying the
    /// details, a code sent now or read from their app, or their security
    /// key (its ceremony starts when the page asks). Returns the means and
    /// the provider's name for the user.
    pub async fn begin_approval(
        &self,
        user: &User,
        details: &ApprovalDetails,
        hash: &[u8; 32],
        seconds_to_expire: u64,
    ) -> Result<(ApprovalMeans, String), AuthError> {
        let method = self
            .methods_of(user)?
            .into_iter()
            .next()
            .ok_or(AuthError::NoSecondFactor)?;
        let provider = self.provider_for(method)?;
        let subject = provider
            .subject(&factor_user(user))
            .await
            .map_err(provider_error)?;
        let means = match provider.delivery() {
            Delivery::Push => {
                let request = approval_push(user, details, hash, seconds_to_expire);
                let push_id = provider
                    .start_push(&subject, &request)
                    .await
                    .map_err(provider_error)?
                    .ok_or(AuthError::ProviderUnavailable)?;
                ApprovalMeans::Push { method, push_id }
            }
            Delivery::SentCode => {
                provider.send_code(&subject).await.map_err(provider_error)?;
                ApprovalMeans::Code { method }
            }
            Delivery::AppCode => ApprovalMeans::Code { method },
            Delivery::Assertion => ApprovalMeans::Key,
        };
        Ok((means, subject))
    }

    /// The options for one of `user`'s keys to approve the request whose
    /// hash is `hash`, and the ceremony to keep for the answer.
    pub fn approval_key_options(
        &self,
        user: &User,
        hash: &[u8; 32],
    ) -> Result<(String, BoundCeremony), AuthError> {
        self.webauthn()?
            .start_bound_assertion(&factor_user(user), hash)
            .map_err(provider_error)
    }

    /// A key's answer for an approval: valid only from one of `user`'s
    /// keys, for the ceremony that binds `hash`; else `KeyRefused`.
    pub fn check_approval_key(
        &self,
        user: &User,
        ceremony: &BoundCeremony,
        hash: &[u8; 32],
        answer: &str,
    ) -> Result<(), AuthError> {
        let checked = self
            .webauthn()?
            .finish_bound_assertion(&factor_user(user), ceremony, hash, answer)
            .map_err(provider_error)?;
        checked.map(drop).map_err(|refused| {
            tracing::warn!(user = %user.email, reason = %refused, "security key refused for an approval");
            AuthError::KeyRefused(refused)
        })
    }

    /// The provider's answer to an approval's push.
    pub async fn approval_push_status(
        &self,
        method: Method,
        push_id: &str,
    ) -> Result<PushStatus, AuthError> {
        self.provider_for(method)?
            .push_status(push_id)
            .await
            .map_err(provider_error)
    }

    /// Checks a code for an approval: the provider's own guards apply (a
    /// TOTP step is used once per user, so the login's code is refused).
    pub async fn check_approval_code(
        &self,
        method: Method,
        subject: &str,
        code: &str,
    ) -> Result<CodeCheck, AuthError> {
        self.provider_for(method)?
            .check_code(subject, code.trim())
            .await
            .map_err(provider_error)
    }
}

/// The push: the rule's message (or "Approve METHOD host/path") and every
/// detail; the request hash is kept with it, not shown.
fn approval_push(
    user: &User,
    details: &ApprovalDetails,
    hash: &[u8; 32],
    seconds_to_expire: u64,
) -> PushRequest {
    let message = if details.message.is_empty() {
        format!(
            "Approve {} {}{}",
            details.method, details.host, details.path
        )
    } else {
        details.message.clone()
    };
    let mut shown: BTreeMap<String, String> = details.fields.iter().cloned().collect();
    shown.insert("User".into(), user.email.clone());
    shown.insert(
        "Request".into(),
        format!("{} {}{}", details.method, details.host, details.path),
    );
    shown.insert("From".into(), details.client.clone());
    let hash: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    PushRequest {
        message,
        details: shown,
        hidden_details: BTreeMap::from([("request_sha256".to_owned(), hash)]),
        seconds_to_expire,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ApprovalLimits = ApprovalLimits {
        max_body: 100,
        max_pending_bytes: 250,
        max_per_session: 2,
        timeout: 120,
    };

    fn session(n: u8) -> SessionKey {
        SessionKey([n; 32])
    }

    fn details() -> ApprovalDetails {
        ApprovalDetails {
            user: "alice@example.com".into(),
            message: "Send 5 EUR to Bob".into(),
            fields: vec![("amount".into(), "5".into())],
            method: "POST".into(),
            host: "app.local".into(),
            path: "/transfer".into(),
            client: "127.0.0.1".into(),
        }
    }

    fn held(
        approvals: &Approvals<&'static str>,
        who: u8,
        body: &'static str,
        means: ApprovalMeans,
    ) -> String {
        let mut slot = approvals.reserve(session(who), 0).unwrap();
        slot.grow(body.len()).unwrap();
        let new = NewApproval {
            hash: request_hash("POST", "/transfer", body.as_bytes()),
            means,
            subject: "subject".into(),
            details: details(),
            held: body,
        };
        approvals.hold(slot, new, 0).unwrap()
    }

    fn push() -> ApprovalMeans {
        ApprovalMeans::Push {
            method: Method::Authy,
            push_id: "p".into(),
        }
    }

    #[test]
    fn an_approved_request_is_released_once_and_only_to_its_session() {
        let approvals = Approvals::new(LIMITS);
        let a = held(&approvals, 1, "amount=5", push());
        let b = held(&approvals, 1, "amount=6", push());
        assert_eq!(
            approvals.release(&a, &session(1), 1),
            Err(ApprovalError::State(ApprovalState::Pending))
        );
        assert_eq!(
            approvals
                .push_answered(&a, &session(2), PushStatus::Approved, 1)
                .unwrap_err(),
            ApprovalError::NotFound,
            "another session cannot approve it"
        );
        approvals
            .push_answered(&a, &session(1), PushStatus::Approved, 1)
            .unwrap();
        assert_eq!(
            approvals.release(&a, &session(2), 1).unwrap_err(),
            ApprovalError::NotFound
        );
        assert_eq!(
            approvals.release(&b, &session(1), 1).unwrap_err(),
            ApprovalError::State(ApprovalState::Pending),
            "approving A does not release B"
        );
        let (body, hash) = approvals.release(&a, &session(1), 1).unwrap();
        assert_eq!(body, "amount=5");
        assert_eq!(hash, request_hash("POST", "/transfer", b"amount=5"));
        assert_eq!(
            approvals.release(&a, &session(1), 2).unwrap_err(),
            ApprovalError::State(ApprovalState::Released),
            "a second continue sends nothing"
        );
        assert_eq!(approvals.held_bytes(), "amount=6".len());
    }

    #[test]
    fn denied_expired_and_cancelled_never_release_and_free_their_bytes() {
        let approvals = Approvals::new(LIMITS);
        let denied = held(&approvals, 1, "a", push());
        approvals
            .push_answered(&denied, &session(1), PushStatus::Denied, 1)
            .unwrap();
        let cancelled = held(&approvals, 1, "b", push());
        approvals.cancel(&cancelled, &session(1), 1).unwrap();
        let expired = held(&approvals, 2, "c", push());
        assert_eq!(approvals.sweep(LIMITS.timeout).len(), 1);
        for (id, who, state) in [
            (&denied, 1, ApprovalState::Denied),
            (&cancelled, 1, ApprovalState::Cancelled),
            (&expired, 2, ApprovalState::Expired),
        ] {
            assert_eq!(
                approvals
                    .view(id, &session(who), LIMITS.timeout)
                    .unwrap()
                    .state,
                state
            );
            assert_eq!(
                approvals
                    .release(id, &session(who), LIMITS.timeout)
                    .unwrap_err(),
                ApprovalError::State(state)
            );
            // A late approval does not revive it.
            approvals
                .push_answered(id, &session(who), PushStatus::Approved, LIMITS.timeout)
                .unwrap();
            assert_eq!(
                approvals
                    .view(id, &session(who), LIMITS.timeout)
                    .unwrap()
                    .state,
                state
            );
        }
        assert_eq!(approvals.held_bytes(), 0);
        assert!(approvals.reserve(session(1), LIMITS.timeout).is_ok());
    }

    #[test]
    fn bytes_are_reserved_before_reading_and_bounded_in_total() {
        let approvals: Approvals<()> = Approvals::new(LIMITS);
        let mut one = approvals.reserve(session(1), 0).unwrap();
        assert_eq!(one.grow(101), Err(ApprovalError::TooLarge));
        one.grow(100).unwrap();
        let mut two = approvals.reserve(session(2), 0).unwrap();
        two.grow(100).unwrap();
        let mut three = approvals.reserve(session(3), 0).unwrap();
        assert_eq!(three.grow(51), Err(ApprovalError::Full), "250 in all");
        three.grow(50).unwrap();
        assert_eq!(approvals.held_bytes(), 250);
        drop(two);
        assert_eq!(
            approvals.held_bytes(),
            150,
            "a dropped slot gives its bytes back"
        );
        let _second = approvals.reserve(session(1), 0).unwrap();
        assert_eq!(
            approvals.reserve(session(1), 0).err(),
            Some(ApprovalError::TooManyPending)
        );
    }

    #[test]
    fn many_concurrent_reservations_never_pass_the_total() {
        let approvals: Arc<Approvals<()>> = Arc::new(Approvals::new(ApprovalLimits {
            max_per_session: 1000,
            ..LIMITS
        }));
        let granted: usize = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..100)
                .map(|_| {
                    let approvals = approvals.clone();
                    scope.spawn(move || {
                        let mut slot = approvals.reserve(session(1), 0).unwrap();
                        let ok = slot.grow(10).is_ok();
                        // Kept while the others try.
                        std::mem::forget(slot);
                        usize::from(ok)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(granted, 25);
        assert_eq!(approvals.held_bytes(), 250);
    }

    #[test]
    fn codes_are_counted_before_their_check_and_the_last_wrong_one_denies() {
        let approvals = Approvals::new(LIMITS);
        let id = held(
            &approvals,
            1,
            "x",
            ApprovalMeans::Code {
                method: Method::Totp,
            },
        );
        let s = session(1);
        for _ in 1..MAX_WRONG_CODES {
            approvals.reserve_code(&id, &s, 1).unwrap();
            let state = approvals.code_checked(&id, &s, Some(CodeCheck::Invalid), 1);
            assert_eq!(state, Ok(ApprovalState::Pending));
        }
        approvals.reserve_code(&id, &s, 1).unwrap();
        approvals.code_checked(&id, &s, None, 1).unwrap();
        assert_eq!(
            approvals.view(&id, &s, 1).unwrap().wrong_codes_left,
            1,
            "unchecked: given back"
        );
        approvals.reserve_code(&id, &s, 1).unwrap();
        assert_eq!(
            approvals.code_checked(&id, &s, Some(CodeCheck::Invalid), 1),
            Ok(ApprovalState::Denied)
        );
        let pushed = held(&approvals, 2, "y", push());
        assert_eq!(
            approvals.reserve_code(&pushed, &session(2), 1),
            Err(ApprovalError::OtherMeans)
        );
        let code = held(
            &approvals,
            2,
            "z",
            ApprovalMeans::Code {
                method: Method::Totp,
            },
        );
        approvals.reserve_code(&code, &session(2), 1).unwrap();
        assert_eq!(
            approvals.code_checked(&code, &session(2), Some(CodeCheck::Valid), 1),
            Ok(ApprovalState::Approved)
        );
    }

    fn ceremony(tag: u8) -> BoundCeremony {
        BoundCeremony {
            state: format!("state {tag}"),
            nonce: [tag; 32],
        }
    }

    #[test]
    fn a_key_ceremony_is_answered_once_and_counts_like_a_code() {
        let approvals = Approvals::new(LIMITS);
        let by_key = held(&approvals, 1, "amount=5", ApprovalMeans::Key);
        let by_push = held(&approvals, 1, "amount=6", push());
        assert_eq!(
            approvals.key_binding(&by_push, &session(1), 1),
            Err(ApprovalError::OtherMeans)
        );
        assert_eq!(
            approvals.key_binding(&by_key, &session(2), 1),
            Err(ApprovalError::NotFound)
        );
        assert_eq!(
            approvals.key_binding(&by_key, &session(1), 1),
            Ok(request_hash("POST", "/transfer", b"amount=5"))
        );
        assert_eq!(
            approvals
                .take_ceremony(&by_key, &session(1), 1)
                .unwrap_err(),
            ApprovalError::NoCeremony,
            "no answer before options"
        );
        approvals
            .keep_ceremony(&by_key, &session(1), ceremony(1), 1)
            .unwrap();
        approvals
            .keep_ceremony(&by_key, &session(1), ceremony(2), 1)
            .unwrap();
        let (taken, hash) = approvals.take_ceremony(&by_key, &session(1), 1).unwrap();
        assert_eq!(
            taken.nonce, [2; 32],
            "the newest options are the ones answered"
        );
        assert_eq!(hash, request_hash("POST", "/transfer", b"amount=5"));
        assert_eq!(
            approvals
                .take_ceremony(&by_key, &session(1), 1)
                .unwrap_err(),
            ApprovalError::NoCeremony,
            "one answer per ceremony"
        );
        let wrong = Some(CodeCheck::Invalid);
        approvals
            .code_checked(&by_key, &session(1), wrong, 1)
            .unwrap();
        let left = approvals.view(&by_key, &session(1), 1).unwrap();
        assert_eq!(left.wrong_codes_left, MAX_WRONG_CODES - 1);
        for _ in 1..MAX_WRONG_CODES {
            approvals
                .keep_ceremony(&by_key, &session(1), ceremony(3), 1)
                .unwrap();
            approvals.take_ceremony(&by_key, &session(1), 1).unwrap();
            approvals
                .code_checked(&by_key, &session(1), wrong, 1)
                .unwrap();
        }
        assert_eq!(
            approvals.view(&by_key, &session(1), 1).unwrap().state,
            ApprovalState::Denied,
            "the last wrong answer denies"
        );
        assert_eq!(
            approvals.keep_ceremony(&by_key, &session(1), ceremony(4), 1),
            Err(ApprovalError::State(ApprovalState::Denied))
        );
    }

    #[test]
    fn the_hash_binds_method_target_and_body() {
        let base = request_hash("POST", "/t", b"a=1");
        assert_ne!(base, request_hash("PUT", "/t", b"a=1"));
        assert_ne!(base, request_hash("POST", "/t?x", b"a=1"));
        assert_ne!(base, request_hash("POST", "/t", b"a=2"));
        assert_ne!(
            request_hash("POST", "/ta", b""),
            request_hash("POST", "/t", b"a")
        );
    }
}
