//! The login state machine and what it needs: argon2 passwords and
//! brute-force regulation; sessions live in `store`, time in `clock`. Nothing
//! here knows HTTP. Every move of a challenge is one arm of `state::on`;
//! `LIFECYCLE.md` maps DESIGN.md's diagram to the code.

pub mod approval;
pub mod challenge;
pub mod enrollment;
mod error;
pub mod flow;
pub mod methods;
pub mod password;
pub mod regulation;
pub mod sessions;
pub mod signup;
mod state;
pub mod webauthn;

pub use challenge::{ChallengeView, Requester, StatusOutcome, format_utc};
pub use error::AuthError;
pub use flow::{Access, AuthDeps, AuthSettings, Authenticator, Identified, LoginSuccess, StepUp};
pub use sessions::{ByReference, Lifetimes, SessionAdmin, SessionSummary};
pub use signup::SignUpForm;
