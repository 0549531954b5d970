//! Users an operator disabled: they keep their factors but cannot log in.
//! Kept in the store for users-file and sign-up users alike (the users
//! file stays the operator's own), by lower-cased email, on every backend:
//! with Redis every replica reads the same set at each login.

use super::StoreError;

pub trait DisabledUsers: Send + Sync {
    fn is_disabled(&self, email: &str) -> Result<bool, StoreError>;
    /// Disables or enables; true when that changed anything.
    fn set_disabled(&self, email: &str, disabled: bool) -> Result<bool, StoreError>;
    /// Every disabled user's lower-cased email, sorted.
    fn disabled_users(&self) -> Result<Vec<String>, StoreError>;
}

/// The form every backend keys a disabled user by. ASCII only, so that
/// Redis and sled agree with each other whatever the locale.
pub(super) fn disabled_key(email: &str) -> String {
    email.trim().to_ascii_lowercase()
}

#[cfg(test)]
pub(super) mod contract {
    use super::DisabledUsers;

    pub fn users_are_disabled_and_enabled_by_email(store: &dyn DisabledUsers) {
        assert!(!store.is_disabled("a@example.com").unwrap());
        assert!(store.set_disabled("A@Example.com", true).unwrap());
        assert!(
            !store.set_disabled("a@example.com", true).unwrap(),
            "already"
        );
        assert!(store.is_disabled("a@EXAMPLE.com").unwrap());
        assert!(!store.is_disabled("b@example.com").unwrap());
        assert!(store.set_disabled("b@example.com", true).unwrap());
        assert_eq!(
            store.disabled_users().unwrap(),
            vec!["a@example.com".to_owned(), "b@example.com".to_owned()]
        );
        assert!(store.set_disabled("a@example.com", false).unwrap());
        assert!(!store.set_disabled("a@example.com", false).unwrap());
        assert!(!store.is_disabled("a@example.com").unwrap());
        assert_eq!(
            store.disabled_users().unwrap(),
            vec!["b@example.com".to_owned()]
        );
    }
}
