//! Every move of a session's challenge, in one `match` to hold against the
//! diagram of DESIGN.md (the phases are `store::Phase`):
//!
//! ```text
//! none | any --started (resource asked, ?method=, enrollment)--> AwaitingPush | SendFailed | AwaitingCode | Enrolling
//! none       --a code posted first--> AwaitingCode
//! AwaitingPush{pending} --push answered (webhook or poll)--> AwaitingPush{approved | denied | expired}
//! any live   --code posted--> the same phase, one more wrong code (counted before the check)
//! any        --code unchecked (provider silent)--> the same phase, the try given back
//! any        --code sent (resend)--> the same phase, resend limit from now
//! ```
//!
//! The arrows that leave the challenge belong to the session: an approved
//! push or a valid code steps it up to `two_factor` (`Authenticator::step_up`
//! drops the challenge), and the fifth wrong code ends it (`CodeAttempt`).

use crate::model::PushStatus;
use crate::store::Challenge;

use super::error::AuthError;

/// Wrong codes that end the pending session.
pub const MAX_WRONG_CODES: u32 = 5;
/// The wait asked of a code refused while the tries left are taken by
/// codes being checked: those end within a second or two.
const CODES_IN_FLIGHT_RETRY_SECS: u64 = 1;

/// What happens to a session's challenge.
pub(super) enum Event<'a> {
    /// A challenge began (a `two_factor` resource was asked for, another
    /// method picked, an enrollment shown). It replaces the one before and
    /// keeps its count of wrong codes.
    Started(Challenge),
    /// A code was posted before any challenge began: this one, unless a
    /// concurrent post stored one first.
    CodeFirst(Challenge),
    /// The provider's answer to a push, for the subject it names (`None`:
    /// the poller, which asked about this push itself).
    PushAnswered {
        push_id: &'a str,
        subject: Option<&'a str>,
        status: PushStatus,
    },
    /// A code is about to be checked: it counts as wrong until its check
    /// says otherwise.
    CodePosted,
    /// The provider gave no answer about a posted code.
    CodeUnchecked,
    /// The provider sent a code (resend).
    CodeSent,
}

/// What an event did.
#[derive(Debug)]
pub(super) enum Transition {
    /// The challenge changed: the session is written.
    Moved,
    /// The posted code is wrong code number `n` until its check says
    /// otherwise.
    Counted(u32),
    /// Nothing changed. `stale`: the event will never apply (a push
    /// answered for a challenge that is gone or moved on).
    Ignored {
        stale: bool,
    },
    Refused(AuthError),
}

impl Transition {
    /// Whether the session must be written.
    pub(super) fn changed(&self) -> bool {
        matches!(self, Transition::Moved | Transition::Counted(_))
    }
}

/// The challenge of one session (`None`: it has none) after `event`, at
/// `now`.
pub(super) fn on(challenge: &mut Option<Box<Challenge>>, event: Event<'_>, now: u64) -> Transition {
    use crate::store::Phase::AwaitingPush;
    match (challenge.as_deref_mut(), event) {
        (current, Event::Started(mut started)) => {
            started.wrong_codes = current.map_or(0, |c| c.wrong_codes);
            *challenge = Some(Box::new(started));
            Transition::Moved
        }
        (None, Event::CodeFirst(first)) => {
            *challenge = Some(Box::new(first));
            Transition::Moved
        }
        (Some(_), Event::CodeFirst(_)) => Transition::Ignored { stale: false },
        (
            Some(Challenge {
                phase: AwaitingPush { push_id, status },
                subject,
                ..
            }),
            Event::PushAnswered {
                push_id: answered,
                subject: answered_for,
                status: answer,
            },
        ) if push_id == answered && *status == PushStatus::Pending => {
            // A mismatched subject is not stale: the real answer may
            // still come.
            if answered_for.is_some_and(|s| s != subject) {
                return Transition::Ignored { stale: false };
            }
            *status = answer;
            Transition::Moved
        }
        (_, Event::PushAnswered { .. }) => Transition::Ignored { stale: true },
        (Some(c), Event::CodePosted) if c.expires_at > now => {
            if c.wrong_codes >= MAX_WRONG_CODES {
                return Transition::Refused(AuthError::RateLimited {
                    retry_after: CODES_IN_FLIGHT_RETRY_SECS,
                });
            }
            c.wrong_codes += 1;
            Transition::Counted(c.wrong_codes)
        }
        (_, Event::CodePosted) => Transition::Refused(AuthError::ChallengeExpired),
        (Some(c), Event::CodeUnchecked) => {
            c.wrong_codes = c.wrong_codes.saturating_sub(1);
            Transition::Moved
        }
        (Some(c), Event::CodeSent) => {
            c.last_code_sent = Some(now);
            Transition::Moved
        }
        (None, Event::CodeUnchecked | Event::CodeSent) => Transition::Ignored { stale: true },
    }
}
