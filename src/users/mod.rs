//! The users file: parsing and editing it (`file.rs`), and the live
//! directory the server reads, swapped atomically when the file changes
//! (`watch.rs`).

mod file;
mod watch;

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use dashmap::DashMap;

use crate::model::User;

pub use file::{UsersFile, UsersFileError};
pub use watch::watch_users_file;

/// Looks users up by email; the auth flow depends on this, not on the file.
pub trait UserDirectory: Send + Sync {
    /// Case-insensitive lookup by email.
    fn find(&self, email: &str) -> Option<Arc<User>>;
    /// Adds a sign-up user (kept beside the users file); false when the
    /// directory takes none.
    fn add_signed_up(&self, _user: User) -> bool {
        false
    }
}

/// The users file plus the sign-up users from the store. The users file
/// wins when both have an email.
pub struct Directory {
    file: Arc<LiveUsers>,
    signed_up: DashMap<String, Arc<User>>,
}

impl Directory {
    pub fn new(file: Arc<LiveUsers>, signed_up: Vec<User>) -> Self {
        let directory = Directory {
            file,
            signed_up: DashMap::new(),
        };
        for user in signed_up {
            directory.add_signed_up(user);
        }
        directory
    }
}

impl UserDirectory for Directory {
    fn find(&self, email: &str) -> Option<Arc<User>> {
        self.file.find(email).or_else(|| {
            self.signed_up
                .get(&email.to_lowercase())
                .map(|u| u.value().clone())
        })
    }

    fn add_signed_up(&self, user: User) -> bool {
        self.signed_up
            .insert(user.email.to_lowercase(), Arc::new(user));
        true
    }
}

/// The users currently loaded, replaced as a whole on reload so that a
/// request never sees half a file.
#[derive(Default)]
pub struct LiveUsers {
    by_email: ArcSwap<HashMap<String, Arc<User>>>,
}

impl LiveUsers {
    pub fn new(users: Vec<User>) -> Self {
        let live = LiveUsers::default();
        live.replace(users);
        live
    }

    pub fn replace(&self, users: Vec<User>) {
        let map = users
            .into_iter()
            .map(|u| (u.email.to_lowercase(), Arc::new(u)))
            .collect();
        self.by_email.store(Arc::new(map));
    }

    pub fn len(&self) -> usize {
        self.by_email.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl UserDirectory for LiveUsers {
    fn find(&self, email: &str) -> Option<Arc<User>> {
        let map = self.by_email.load();
        match map.get(email) {
            Some(user) => Some(user.clone()),
            None => map.get(&email.to_lowercase()).cloned(),
        }
    }
}
