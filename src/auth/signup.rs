//! Self-service sign-up: the account is registered with the second-factor
//! provider and kept in the store beside the users file. An email that
//! exists already gets the same answer as a new one, after the same work,
//! so sign-up cannot be used to find out which accounts exist.

use crate::config::{SignupConfig, TotpEnrollment};
use crate::model::Method;
use crate::model::User;

use super::error::{AuthError, provider_error};
use super::flow::Authenticator;
use super::methods::factor_user;
use super::password::MAX_PASSWORD_CHARS;

/// The fields of the sign-up form.
pub struct SignUpForm<'a> {
    pub name: &'a str,
    pub email: &'a str,
    pub country_code: &'a str,
    pub phone: &'a str,
    pub password: &'a str,
    /// The chosen method's name; may be empty when one method is offered.
    pub second_factor: &'a str,
}

impl Authenticator {
    pub async fn sign_up(
        &self,
        form: &SignUpForm<'_>,
        rules: &SignupConfig,
    ) -> Result<(), AuthError> {
        check_form(form, rules)?;
        let method = self.signup_method(form.second_factor)?;
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
            second_factor: Some(method.as_str().to_owned()),
            second_factor_reset: None,
            identity: Default::default(),
        };
        self.enroll_signup(&user, method).await?;
        if self.sessions.store().insert_signup_user(&user)? {
            self.users.add_signed_up(user);
        }
        Ok(())
    }

    /// The methods a new account may choose: the offered ones, TOTP only
    /// when it can be enrolled at the first login.
    pub fn signup_methods(&self) -> Vec<Method> {
        self.providers
            .iter()
            .map(|p| p.method())
            .filter(|m| {
                *m != Method::Totp || self.settings.totp_enrollment == TotpEnrollment::FirstLogin
            })
            .collect()
    }

    fn signup_method(&self, chosen: &str) -> Result<Method, AuthError> {
        let offered = self.signup_methods();
        let method = match (chosen.trim(), offered.as_slice()) {
            ("", [only]) => Some(*only),
            (name, _) => Method::parse(name).filter(|m| offered.contains(m)),
        };
        method.ok_or(AuthError::Signup("Choose how you confirm your logins."))
    }

    /// Registers the user with the provider they chose (Authy: now, as the
    /// original sample did). TOTP is enrolled at the first login instead.
    async fn enroll_signup(&self, user: &User, method: Method) -> Result<(), AuthError> {
        let provider = self.provider_for(method)?;
        let who = factor_user(user);
        if provider.is_enrolled(&who).map_err(provider_error)? {
            provider.subject(&who).await.map_err(provider_error)?;
            return Ok(());
        }
        if method == Method::Totp {
            return Ok(());
        }
        Err(AuthError::Signup(
            "Enter the phone number where you get your codes.",
        ))
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
    if !form.country_code.trim().is_empty() || !form.phone.trim().is_empty() {
        check_phone(form)?;
    }
    let length = form.password.chars().count();
    if length < rules.min_password_length || length > MAX_PASSWORD_CHARS {
        return Err(AuthError::Signup("The password is too short or too long."));
    }
    Ok(())
}

/// A phone is optional (TOTP needs none), but one given must be whole.
fn check_phone(form: &SignUpForm<'_>) -> Result<(), AuthError> {
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
    Ok(())
}

fn digits(value: &str) -> String {
    value.chars().filter(char::is_ascii_digit).collect()
}
