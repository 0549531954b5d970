//! The login state machine and what it needs: sessions (memory + durable
//! store), argon2 passwords, brute-force regulation and the clock. Nothing
//! here knows HTTP; `LIFECYCLE.md` maps DESIGN.md's diagram to the code.

pub mod challenge;
pub mod clock;
pub mod enrollment;
pub mod flow;
pub mod methods;
pub mod password;
pub mod regulation;
pub mod session;
pub mod signup;

pub use challenge::{ChallengeView, Requester, StatusOutcome};
pub use clock::{Clock, SystemClock};
pub use flow::{
    Access, AuthDeps, AuthError, AuthSettings, Authenticator, Identified, LoginSuccess, StepUp,
};
pub use session::{LiveSessions, SessionId};
pub use signup::SignUpForm;
