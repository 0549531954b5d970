//! The shared vocabulary: second-factor methods, access policies and user
//! records. A leaf: it imports nothing of ours, so every layer may use it.

mod device;
mod method;
mod policy;
mod user;

pub use device::{Browser, Device, Os};
pub use method::{Delivery, Method, PushStatus};
pub use policy::Policy;
pub use user::{IDENTITY_HEADERS, IdentityHeaders, User};
