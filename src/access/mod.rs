//! Access control: the one normalization of a request target
//! (`normalize.rs`) and the `[access_control]` rules decided on it
//! (`rules.rs`). Forward-auth and proxy mode both call [`normalize`] once
//! and hand the [`Target`] to [`AccessControl::decide`]; no rule ever sees
//! a raw path.

mod normalize;
mod rules;

pub use normalize::{NormalizeError, Scheme, Target, normalize};
pub use rules::{AccessControl, Decision, RawRule, Reason, RuleError};
