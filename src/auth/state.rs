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
//! Ceremony{state} --answered--> Ceremony{taken} (once; the answer is checked after)
//! ```
//!
//! The arrows that leave the challenge belong to the session: an approved
//! push or a valid code steps it up to `two_factor` (`Authenticator::step_up`
//! drops the challenge), and the fifth wrong code ends it (`CodeAttempt`).

use crate::model::PushStatus;
use crate::store::{CeremonyKind, Challenge};

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
    /// The browser answered the WebAuthn ceremony of this kind: its state
    /// is taken, so the same challenge is never answered twice.
    CeremonyAnswered(CeremonyKind),
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
        (
            Some(Challenge {
                phase:
                    crate::store::Phase::Ceremony {
                        kind,
                        state: state @ Some(_),
                    },
                expires_at,
                ..
            }),
            Event::CeremonyAnswered(answered),
        ) if *kind == answered && *expires_at > now => {
            *state = None;
            Transition::Moved
        }
        (_, Event::CeremonyAnswered(_)) => Transition::Ignored { stale: true },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Method;
    use crate::store::Phase;

    const NOW: u64 = 1_000;

    fn pushed(wrong_codes: u32) -> Option<Box<Challenge>> {
        Some(Box::new(Challenge {
            method: Method::Authy,
            subject: "1001".into(),
            phase: Phase::AwaitingPush {
                push_id: "p-1".into(),
                status: PushStatus::Pending,
            },
            wrong_codes,
            expires_at: NOW + 300,
            last_code_sent: None,
        }))
    }

    fn answer<'a>(push_id: &'a str, subject: Option<&'a str>) -> Event<'a> {
        Event::PushAnswered {
            push_id,
            subject,
            status: PushStatus::Approved,
        }
    }

    #[test]
    fn a_push_answer_applies_once_to_its_pending_push_and_subject() {
        let mut challenge = pushed(0);
        let other_subject = on(&mut challenge, answer("p-1", Some("9999")), NOW);
        assert!(matches!(
            other_subject,
            Transition::Ignored { stale: false }
        ));
        let other_push = on(&mut challenge, answer("p-2", Some("1001")), NOW);
        assert!(matches!(other_push, Transition::Ignored { stale: true }));
        assert!(matches!(
            on(&mut challenge, answer("p-1", None), NOW),
            Transition::Moved
        ));
        assert_eq!(
            challenge.as_ref().unwrap().push_status(),
            Some(PushStatus::Approved)
        );
        let again = on(&mut challenge, answer("p-1", Some("1001")), NOW);
        assert!(matches!(again, Transition::Ignored { stale: true }));
        let gone = on(&mut None, answer("p-1", Some("1001")), NOW);
        assert!(matches!(gone, Transition::Ignored { stale: true }));
    }

    #[test]
    fn codes_are_counted_until_the_last_try_and_only_while_live() {
        let mut challenge = pushed(MAX_WRONG_CODES - 1);
        let last = on(&mut challenge, Event::CodePosted, NOW);
        assert!(matches!(last, Transition::Counted(MAX_WRONG_CODES)));
        let beyond = on(&mut challenge, Event::CodePosted, NOW);
        assert!(matches!(
            beyond,
            Transition::Refused(AuthError::RateLimited { retry_after: 1 })
        ));
        assert!(on(&mut challenge, Event::CodeUnchecked, NOW).changed());
        let expired = on(&mut challenge, Event::CodePosted, NOW + 300);
        assert!(matches!(
            expired,
            Transition::Refused(AuthError::ChallengeExpired)
        ));
        let none = on(&mut None, Event::CodePosted, NOW);
        assert!(matches!(
            none,
            Transition::Refused(AuthError::ChallengeExpired)
        ));
    }

    #[test]
    fn a_new_challenge_keeps_the_count_and_a_first_code_keeps_the_first() {
        let mut challenge = pushed(3);
        let code = Challenge {
            method: Method::Verify,
            phase: Phase::AwaitingCode,
            last_code_sent: Some(NOW),
            ..*pushed(0).unwrap()
        };
        assert!(on(&mut challenge, Event::Started(code.clone()), NOW).changed());
        assert_eq!(challenge.as_deref().map(|c| c.method), Some(Method::Verify));
        assert_eq!(challenge.as_ref().unwrap().wrong_codes, 3);
        let first = on(&mut challenge, Event::CodeFirst(*pushed(0).unwrap()), NOW);
        assert!(matches!(first, Transition::Ignored { stale: false }));
        assert_eq!(challenge.as_deref().map(|c| c.method), Some(Method::Verify));
        let mut none = None;
        assert!(on(&mut none, Event::CodeFirst(code), NOW).changed());
        assert_eq!(none.unwrap().wrong_codes, 0);
    }
}
