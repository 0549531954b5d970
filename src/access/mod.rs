//! Access control: the one normalization of a request target
//! (`normalize.rs`) and the `[access_control]` rules decided on it
//! (`rules.rs`). Forward-auth and proxy mode both call [`normalize`] once
//! and hand the [`Target`] to [`AccessControl::decide_as_sent`]. A raw
//! path is never the only reading: in forward-auth, where the app gets the
//! path as sent, it is a second reading and the stricter one decides.

mod approve;
mod normalize;
mod rules;

pub use approve::{ApprovalSpec, MAX_VALUE_CHARS, RawApprove, RequestParts, Shown};
pub use normalize::{NormalizeError, Scheme, Target, has_dot_or_empty_segment, normalize};
pub use rules::{AccessControl, Decision, RawRule, Reason, RuleError};

#[cfg(test)]
pub(crate) use normalize::strategies;
