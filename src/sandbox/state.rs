//! The sandbox's memory: users and their codes, approval requests, the logs
//! of what was "sent", and the callback settings. No HTTP here: `api.rs` and
//! `control.rs` translate requests into these calls and outcomes into JSON.

use serde_json::{Value, json};

use super::CallbackMethod;
use super::codes;
use super::verify::state::VerifyState;

/// An SMS or voice code stays valid this long.
pub const CODE_TTL: u64 = 600;
/// A token that verified cannot verify again for this long (60019).
pub const REUSE_WINDOW: u64 = 600;
/// Approval requests expire after a day unless told otherwise.
pub const DEFAULT_EXPIRY: u64 = 86_400;
/// Consecutive failed callback deliveries after which the sandbox stops
/// sending (simulator policy, modelled on Authy's documented 3 strikes).
pub const CALLBACK_STRIKES: u32 = 3;
/// Authy ids are small integers; starting high makes them look real.
const FIRST_ID: u64 = 1000;
/// Logs are capped so a long demo does not grow without bound.
const LOG_CAP: usize = 500;

pub struct NewUser {
    pub email: String,
    pub country_code: String,
    /// Digits only.
    pub cellphone: String,
    pub send_install_link: bool,
}

pub struct User {
    pub id: u64,
    pub email: String,
    pub country_code: String,
    pub cellphone: String,
    /// Has the Authy app (SMS and calls without `force` are ignored).
    pub registered: bool,
    /// Has verified a token once; until then verify without `force` passes.
    pub confirmed: bool,
    pub created: u64,
    pub object_id: String,
    secret: [u8; 32],
    sent: Option<SentCode>,
    used: Vec<(String, u64)>,
}

/// The code last sent by SMS or call; custom actions bind it to `action`.
struct SentCode {
    code: String,
    at: u64,
    action: Option<String>,
}

impl User {
    fn new(id: u64, new: NewUser, now: u64) -> User {
        User {
            id,
            email: new.email,
            country_code: new.country_code,
            cellphone: new.cellphone,
            registered: false,
            confirmed: false,
            created: now,
            object_id: codes::object_id(),
            secret: codes::random_bytes(),
            sent: None,
            used: Vec::new(),
        }
    }

    /// What the user's Authy app shows right now.
    pub fn app_code(&self, now: u64) -> String {
        codes::app_code(&self.secret, codes::app_step(now))
    }

    pub fn last_sent_code(&self) -> Option<&str> {
        self.sent.as_ref().map(|s| s.code.as_str())
    }

    pub fn phone(&self) -> String {
        codes::mask_international(&self.country_code, &self.cellphone)
    }

    /// The id of the user's (simulated) phone with the Authy app.
    pub fn device_id(&self) -> u64 {
        5_000_000 + self.id
    }

    /// The current step's code, and the previous one for clock skew.
    fn app_code_matches(&self, token: &str, now: u64) -> bool {
        let step = codes::app_step(now);
        [step, step.saturating_sub(1)]
            .iter()
            .any(|s| codes::app_code(&self.secret, *s) == token)
    }

    fn sent_code_matches(&self, token: &str, action: Option<&str>, now: u64) -> bool {
        self.sent.as_ref().is_some_and(|s| {
            s.code == token && now < s.at + CODE_TTL && s.action.as_deref() == action
        })
    }

    fn used_recently(&mut self, token: &str, now: u64) -> bool {
        self.used.retain(|(_, at)| now < at + REUSE_WINDOW);
        self.used.iter().any(|(used, _)| used == token)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Channel {
    Sms,
    Call,
}

pub enum SendOutcome {
    Sent {
        phone: String,
    },
    /// The user has the app and `force` was not true.
    Ignored {
        phone: String,
    },
    UnknownUser,
}

/// How a token was accepted, which decides the `device` in the answer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Via {
    /// Not checked: unconfirmed user, no `force` (Authy's lock-out rule).
    Unchecked,
    Sms,
    App,
}

#[derive(PartialEq, Eq, Debug)]
pub enum VerifyOutcome {
    Valid(Via),
    Invalid,
    Reused,
    UnknownUser,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Status {
    Pending,
    Approved,
    Denied,
    Expired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Denied => "denied",
            Status::Expired => "expired",
        }
    }

    /// The two statuses a person (or test) may choose.
    pub fn decision(s: &str) -> Option<Status> {
        match s {
            "approved" => Some(Status::Approved),
            "denied" => Some(Status::Denied),
            _ => None,
        }
    }
}

pub struct NewApproval {
    pub message: String,
    pub details: Value,
    pub hidden_details: Value,
    pub logos: Value,
    /// 0 means never.
    pub seconds_to_expire: u64,
}

#[derive(Clone)]
pub struct Approval {
    pub uuid: String,
    pub object_id: String,
    pub authy_id: u64,
    pub device_id: u64,
    pub user_email: String,
    pub user_object_id: String,
    pub message: String,
    pub details: Value,
    pub hidden_details: Value,
    pub logos: Value,
    pub created: u64,
    pub seconds_to_expire: u64,
    decided: Option<(Status, u64)>,
}

impl Approval {
    pub fn expires_at(&self) -> Option<u64> {
        (self.seconds_to_expire > 0).then(|| self.created + self.seconds_to_expire)
    }

    /// Expiry is computed from the clock, never stored.
    pub fn status(&self, now: u64) -> Status {
        match (self.decided, self.expires_at()) {
            (Some((status, _)), _) => status,
            (None, Some(at)) if now >= at => Status::Expired,
            (None, _) => Status::Pending,
        }
    }

    pub fn processed_at(&self, now: u64) -> Option<u64> {
        match (self.decided, self.status(now)) {
            (Some((_, at)), _) => Some(at),
            (None, Status::Expired) => self.expires_at(),
            _ => None,
        }
    }
}

pub enum Decision {
    /// Boxed: an approval is large and the other outcomes are tiny.
    Done(Box<Approval>),
    NotFound,
    NotPending(Status),
}

pub struct CodeLog {
    pub authy_id: u64,
    pub code: String,
    pub at: u64,
}

pub struct InstallLink {
    pub authy_id: u64,
    pub phone: String,
    pub at: u64,
}

pub struct CallbackLog {
    pub uuid: String,
    pub status: Status,
    pub http_status: Option<u16>,
    pub error: Option<String>,
    pub at: u64,
}

pub enum Target {
    Off,
    /// Disabled after `CALLBACK_STRIKES` failures.
    GivenUp,
    Send {
        url: String,
        method: CallbackMethod,
    },
}

#[derive(Default)]
pub struct CallbackSettings {
    url: Option<String>,
    pub method: CallbackMethod,
    enabled: bool,
    failures: u32,
    given_up: bool,
}

impl CallbackSettings {
    /// A new URL or switch gets a fresh start, as re-saving it in the
    /// Twilio console would.
    pub fn set_url(&mut self, url: Option<String>) {
        self.url = url;
        self.reset();
    }

    pub fn set_enabled(&mut self, enabled: bool) {
        self.enabled = enabled;
        self.reset();
    }

    fn reset(&mut self) {
        self.failures = 0;
        self.given_up = false;
    }

    pub fn target(&self) -> Target {
        match &self.url {
            Some(_) if self.given_up => Target::GivenUp,
            Some(url) if self.enabled => Target::Send {
                url: url.clone(),
                method: self.method,
            },
            _ => Target::Off,
        }
    }

    /// Counts a delivery; returns true when this one made the sandbox give up.
    pub fn record_attempt(&mut self, delivered: bool) -> bool {
        if delivered {
            self.failures = 0;
            return false;
        }
        self.failures += 1;
        let gives_up = !self.given_up && self.failures >= CALLBACK_STRIKES;
        self.given_up |= gives_up;
        gives_up
    }

    pub fn to_json(&self) -> Value {
        json!({
            "url": self.url,
            "method": self.method.as_str(),
            "enabled": self.enabled,
            "consecutive_failures": self.failures,
            "disabled_after_failures": self.given_up,
        })
    }
}

pub struct State {
    users: Vec<User>,
    next_id: u64,
    approvals: Vec<Approval>,
    sms: Vec<CodeLog>,
    calls: Vec<CodeLog>,
    install_links: Vec<InstallLink>,
    callbacks: Vec<CallbackLog>,
    pub callback: CallbackSettings,
    pub verify: VerifyState,
}

impl Default for State {
    fn default() -> Self {
        State {
            users: Vec::new(),
            next_id: FIRST_ID,
            approvals: Vec::new(),
            sms: Vec::new(),
            calls: Vec::new(),
            install_links: Vec::new(),
            callbacks: Vec::new(),
            callback: CallbackSettings::default(),
            verify: VerifyState::default(),
        }
    }
}

fn push_capped<T>(log: &mut Vec<T>, entry: T) {
    if log.len() >= LOG_CAP {
        log.remove(0);
    }
    log.push(entry);
}

impl State {
    pub fn user(&self, id: u64) -> Option<&User> {
        self.users.iter().find(|u| u.id == id)
    }

    fn user_mut(&mut self, id: u64) -> Option<&mut User> {
        self.users.iter_mut().find(|u| u.id == id)
    }

    /// Users are keyed on (country code, cellphone): registering the same
    /// phone again gives the same id and takes the new email.
    pub fn register(&mut self, new: NewUser, now: u64) -> u64 {
        let phone = codes::mask_international(&new.country_code, &new.cellphone);
        let send_link = new.send_install_link;
        let existing = self
            .users
            .iter_mut()
            .find(|u| u.country_code == new.country_code && u.cellphone == new.cellphone);
        let id = match existing {
            Some(user) => {
                user.email = new.email;
                user.id
            }
            None => self.insert_user(new, now),
        };
        if send_link {
            let link = InstallLink {
                authy_id: id,
                phone,
                at: now,
            };
            push_capped(&mut self.install_links, link);
        }
        id
    }

    fn insert_user(&mut self, new: NewUser, now: u64) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.users.push(User::new(id, new, now));
        id
    }

    pub fn remove_user(&mut self, id: u64) -> bool {
        let before = self.users.len();
        self.users.retain(|u| u.id != id);
        self.users.len() != before
    }

    pub fn set_registered(&mut self, id: u64, registered: bool) -> bool {
        self.user_mut(id)
            .map(|u| u.registered = registered)
            .is_some()
    }

    /// "Sends" a fresh code unless the user has the app and `force` is off.
    pub fn send_code(
        &mut self,
        id: u64,
        channel: Channel,
        force: bool,
        action: Option<String>,
        now: u64,
    ) -> SendOutcome {
        let Some(user) = self.user_mut(id) else {
            return SendOutcome::UnknownUser;
        };
        let phone = user.phone();
        if user.registered && !force {
            return SendOutcome::Ignored { phone };
        }
        let code = codes::random_code();
        user.sent = Some(SentCode {
            code: code.clone(),
            at: now,
            action,
        });
        let log = match channel {
            Channel::Sms => &mut self.sms,
            Channel::Call => &mut self.calls,
        };
        push_capped(
            log,
            CodeLog {
                authy_id: id,
                code,
                at: now,
            },
        );
        SendOutcome::Sent { phone }
    }

    pub fn verify(
        &mut self,
        id: u64,
        token: &str,
        force: bool,
        action: Option<&str>,
        now: u64,
    ) -> VerifyOutcome {
        let Some(user) = self.user_mut(id) else {
            return VerifyOutcome::UnknownUser;
        };
        if !codes::is_digits(token) {
            return VerifyOutcome::Invalid;
        }
        // Real Authy's lock-out prevention: a client that forgets
        // force=true lets anyone in until the user's first real check.
        if !user.confirmed && !force {
            return VerifyOutcome::Valid(Via::Unchecked);
        }
        if user.used_recently(token, now) {
            return VerifyOutcome::Reused;
        }
        let via = if user.sent_code_matches(token, action, now) {
            Via::Sms
        } else if user.app_code_matches(token, now) {
            Via::App
        } else {
            return VerifyOutcome::Invalid;
        };
        user.confirmed = true;
        user.used.push((token.to_owned(), now));
        VerifyOutcome::Valid(via)
    }

    /// The new request's uuid, or `None` for an unknown user.
    pub fn create_approval(&mut self, authy_id: u64, new: NewApproval, now: u64) -> Option<String> {
        let user = self.user(authy_id)?;
        let approval = Approval {
            uuid: codes::uuid_v4(),
            object_id: codes::object_id(),
            authy_id,
            device_id: user.device_id(),
            user_email: user.email.clone(),
            user_object_id: user.object_id.clone(),
            message: new.message,
            details: new.details,
            hidden_details: new.hidden_details,
            logos: new.logos,
            created: now,
            seconds_to_expire: new.seconds_to_expire,
            decided: None,
        };
        let uuid = approval.uuid.clone();
        self.approvals.push(approval);
        Some(uuid)
    }

    pub fn approval(&self, uuid: &str) -> Option<&Approval> {
        self.approvals.iter().find(|a| a.uuid == uuid)
    }

    /// Only a pending, unexpired request can be approved or denied.
    pub fn decide(&mut self, uuid: &str, status: Status, now: u64) -> Decision {
        let Some(approval) = self.approvals.iter_mut().find(|a| a.uuid == uuid) else {
            return Decision::NotFound;
        };
        match approval.status(now) {
            Status::Pending => {
                approval.decided = Some((status, now));
                Decision::Done(Box::new(approval.clone()))
            }
            other => Decision::NotPending(other),
        }
    }

    pub fn log_callback(&mut self, entry: CallbackLog) {
        push_capped(&mut self.callbacks, entry);
    }

    /// Everything, for `GET /_sandbox/api/state` and the page.
    pub fn to_json(&self, now: u64) -> Value {
        let users: Vec<Value> = self.users.iter().map(|u| user_json(u, now)).collect();
        let approvals: Vec<Value> = self
            .approvals
            .iter()
            .map(|a| approval_json(a, now))
            .collect();
        json!({
            "users": users,
            "approval_requests": approvals,
            "sms": self.sms.iter().map(code_log_json).collect::<Vec<_>>(),
            "calls": self.calls.iter().map(code_log_json).collect::<Vec<_>>(),
            "install_links": self.install_links.iter().map(install_link_json).collect::<Vec<_>>(),
            "callbacks": self.callbacks.iter().map(callback_log_json).collect::<Vec<_>>(),
            "callback": self.callback.to_json(),
            "verify": self.verify.to_json(now),
        })
    }
}

fn user_json(user: &User, now: u64) -> Value {
    json!({
        "authy_id": user.id,
        "email": user.email,
        "country_code": user.country_code,
        "cellphone": user.cellphone,
        "phone": user.phone(),
        "registered": user.registered,
        "confirmed": user.confirmed,
        "app_code": user.app_code(now),
        "last_sms_code": user.last_sent_code(),
    })
}

fn approval_json(approval: &Approval, now: u64) -> Value {
    json!({
        "uuid": approval.uuid,
        "authy_id": approval.authy_id,
        "message": approval.message,
        "details": approval.details,
        "hidden_details": approval.hidden_details,
        "logos": approval.logos,
        "status": approval.status(now).as_str(),
        "seconds_to_expire": approval.seconds_to_expire,
        "created_at": approval.created,
        "expires_at": approval.expires_at(),
    })
}

fn code_log_json(entry: &CodeLog) -> Value {
    json!({"authy_id": entry.authy_id, "code": entry.code, "at": entry.at})
}

fn install_link_json(entry: &InstallLink) -> Value {
    json!({"authy_id": entry.authy_id, "cellphone": entry.phone, "at": entry.at})
}

fn callback_log_json(entry: &CallbackLog) -> Value {
    json!({
        "uuid": entry.uuid,
        "status": entry.status.as_str(),
        "http_status": entry.http_status,
        "error": entry.error,
        "at": entry.at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000;

    fn new_user(phone: &str) -> NewUser {
        NewUser {
            email: "a@example.com".into(),
            country_code: "1".into(),
            cellphone: phone.into(),
            send_install_link: false,
        }
    }

    fn approval(seconds_to_expire: u64) -> NewApproval {
        NewApproval {
            message: "Log in?".into(),
            details: Value::Null,
            hidden_details: Value::Null,
            logos: Value::Null,
            seconds_to_expire,
        }
    }

    #[test]
    fn app_code_verifies_for_two_steps_then_not() {
        let mut state = State::default();
        let id = state.register(new_user("5551234567"), NOW);
        let code = state.user(id).unwrap().app_code(NOW);
        let later = NOW + 2 * codes::APP_CODE_STEP;
        assert_eq!(
            state.verify(id, &code, true, None, later),
            VerifyOutcome::Invalid
        );
        assert_eq!(
            state.verify(id, &code, true, None, NOW),
            VerifyOutcome::Valid(Via::App)
        );
    }

    #[test]
    fn sms_code_expires_and_is_bound_to_its_action() {
        let mut state = State::default();
        let id = state.register(new_user("5551234567"), NOW);
        state.send_code(id, Channel::Sms, true, Some("login".into()), NOW);
        let code = state.user(id).unwrap().last_sent_code().unwrap().to_owned();
        assert_eq!(
            state.verify(id, &code, true, None, NOW),
            VerifyOutcome::Invalid
        );
        let late = NOW + CODE_TTL;
        assert_eq!(
            state.verify(id, &code, true, Some("login"), late),
            VerifyOutcome::Invalid
        );
        let ok = state.verify(id, &code, true, Some("login"), NOW + 1);
        assert_eq!(ok, VerifyOutcome::Valid(Via::Sms));
    }

    #[test]
    fn approvals_expire_unless_zero() {
        let mut state = State::default();
        let id = state.register(new_user("5551234567"), NOW);
        let short = state.create_approval(id, approval(60), NOW).unwrap();
        let never = state.create_approval(id, approval(0), NOW).unwrap();
        let later = NOW + 10 * DEFAULT_EXPIRY;
        assert_eq!(
            state.approval(&short).unwrap().status(later),
            Status::Expired
        );
        assert_eq!(
            state.approval(&never).unwrap().status(later),
            Status::Pending
        );
        assert!(matches!(
            state.decide(&short, Status::Approved, later),
            Decision::NotPending(Status::Expired)
        ));
        assert!(matches!(
            state.decide(&never, Status::Denied, later),
            Decision::Done(_)
        ));
    }

    #[test]
    fn three_failed_callbacks_disable_the_url_until_it_is_set_again() {
        let mut settings = CallbackSettings::default();
        settings.set_url(Some("http://127.0.0.1:9/cb".into()));
        settings.set_enabled(true);
        assert!(!settings.record_attempt(false));
        assert!(!settings.record_attempt(true));
        assert!(!settings.record_attempt(false));
        assert!(!settings.record_attempt(false));
        assert!(settings.record_attempt(false));
        assert!(matches!(settings.target(), Target::GivenUp));
        settings.set_url(Some("http://127.0.0.1:9/cb".into()));
        assert!(matches!(settings.target(), Target::Send { .. }));
    }
}
