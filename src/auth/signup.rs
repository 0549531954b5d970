//! Self-service sign-up: the account is registered with the second-factor
//! provider and kept in the store beside the users file. An email that
//! exists already gets the same answer as a new one, after the same work,
//! so sign-up cannot be used to find out which accounts exist.

use crate::config::SignupConfig;
use crate::users::User;

use super::flow::{AuthError, Authenticator};
use super::password::MAX_PASSWORD_CHARS;

/// The fields of the sign-up form.
pub struct SignUpForm<'a> {
    pub name: &'a str,
    pub email: &'a str,
    pub country_code: &'a str,
    pub phone: &'a str,
    pub password: &'a str,
}

impl Authenticator {
    pub async fn sign_up(
        &self,
        form: &SignUpForm<'_>,
        rules: &SignupConfig,
    ) -> Result<(), AuthError> {
        check_form(form, rules)?;
        let email = form.email.trim();
        let hash = self.passwords.hash(form.password).await.map_err(|e| {
            tracing::error!(error = %e, "sign-up: hashing failed");
            AuthError::Signup("The account could not be created. Please try again.")
        })?;
        if self.users.find(email).is_some() {
            tracing::info!(user = %email, "sign-up for an existing email ignored");
            return Ok(());
        }
        let user = User {
            email: email.to_owned(),
            name: form.name.trim().to_owned(),
            country_code: digits(form.country_code),
            phone: digits(form.phone),
            password: hash,
            groups: rules.groups.clone(),
            second_factor: None,
        };
        self.enroll_signup(&user).await?;
        if self.sessions.store().insert_signup_user(&user)? {
            self.users.add_signed_up(user);
        }
        Ok(())
    }

    async fn enroll_signup(&self, user: &User) -> Result<(), AuthError> {
        let provider = self
            .provider
            .as_deref()
            .ok_or(AuthError::ProviderUnavailable)?;
        self.enroll(provider, user).await.map(|_| ())
    }
}

fn check_form(form: &SignUpForm<'_>, rules: &SignupConfig) -> Result<(), AuthError> {
    let email = form.email.trim();
    let Some((local, domain)) = email.rsplit_once('@') else {
        return Err(AuthError::Signup("Enter a valid email address."));
    };
    if local.is_empty() || !domain.contains('.') || email.chars().any(char::is_whitespace) {
        return Err(AuthError::Signup("Enter a valid email address."));
    }
    let domain = domain.to_lowercase();
    if !rules.allowed_email_domains.is_empty() && !rules.allowed_email_domains.contains(&domain) {
        return Err(AuthError::Signup(
            "Sign-up is not open to this email domain.",
        ));
    }
    if form.name.trim().is_empty() {
        return Err(AuthError::Signup("Enter your name."));
    }
    let cc = digits(form.country_code);
    if cc.is_empty() || cc.len() > 4 {
        return Err(AuthError::Signup(
            "Enter a country calling code, such as 1 or 44.",
        ));
    }
    let phone = digits(form.phone);
    if phone.len() < 7
        || phone.len() > 15
        || form.phone.chars().any(|c| !"0123456789 -.()".contains(c))
    {
        return Err(AuthError::Signup("Enter a phone number."));
    }
    let length = form.password.chars().count();
    if length < rules.min_password_length || length > MAX_PASSWORD_CHARS {
        return Err(AuthError::Signup("The password is too short or too long."));
    }
    Ok(())
}

fn digits(value: &str) -> String {
    value.chars().filter(char::is_ascii_digit).collect()
}
