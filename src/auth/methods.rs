//! Which second factors a user can confirm with, in the order the verify
//! page offers them: the method they used last first, then `auth.methods`
//! order. A users-file entry naming `second_factor` pins the user to that
//! one method.

use crate::factor::{FactorUser, SecondFactor};
use crate::model::Method;
use crate::model::User;

use super::error::{AuthError, provider_error};
use super::flow::Authenticator;

impl Authenticator {
    /// The user's methods that this gateway offers and they can use now.
    pub fn methods_of(&self, user: &User) -> Result<Vec<Method>, AuthError> {
        let who = factor_user(user);
        let mut methods = Vec::new();
        for provider in self.candidates(user) {
            if provider.is_enrolled(&who).map_err(provider_error)? {
                methods.push(provider.method());
            }
        }
        if let Some(last) = self.last_method(user)
            && let Some(at) = methods.iter().position(|m| *m == last)
        {
            methods[..=at].rotate_right(1);
        }
        Ok(methods)
    }

    /// The offered providers this user may use at all, enrolled or not.
    pub(super) fn candidates<'a>(
        &'a self,
        user: &'a User,
    ) -> impl Iterator<Item = &'a dyn SecondFactor> + 'a {
        let pinned = user.second_factor.as_deref();
        self.providers
            .iter()
            .map(|p| p.as_ref())
            .filter(move |p| pinned.is_none_or(|name| name == p.method().as_str()))
    }

    pub(super) fn provider_for(&self, method: Method) -> Result<&dyn SecondFactor, AuthError> {
        self.providers
            .iter()
            .map(|p| p.as_ref())
            .find(|p| p.method() == method)
            .ok_or(AuthError::NoSecondFactor)
    }

    fn last_method(&self, user: &User) -> Option<Method> {
        let store = self.factor_store.as_ref()?;
        match store.last_method(&user.email) {
            Ok(method) => method,
            Err(err) => {
                tracing::warn!(error = %err, "reading the last used second factor failed");
                None
            }
        }
    }

    /// Remembers the method that just confirmed a login, to offer it first
    /// next time; a failure only changes the order, so it is logged.
    pub(super) fn remember_method(&self, user: &User, method: Method) {
        if let Some(store) = &self.factor_store
            && let Err(err) = store.set_last_method(&user.email, method)
        {
            tracing::warn!(error = %err, "keeping the last used second factor failed");
        }
    }
}

pub(super) fn factor_user(user: &User) -> FactorUser<'_> {
    FactorUser {
        email: &user.email,
        country_code: &user.country_code,
        phone: &user.phone,
        reset_at: user.second_factor_reset,
    }
}
