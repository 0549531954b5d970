//! The sign-up page (`signup.enabled`).

use std::collections::HashMap;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use super::Gateway;
use super::error::GatewayError;
use super::forms::Posted;
use super::request::field;
use super::response::{self, Format};
use crate::auth::SignUpForm;
use crate::pages::SignupView;
use crate::wire::Body;
use crate::wire::ConnInfo;

impl Gateway {
    pub(super) fn signup_page(&self, req: &Request<Incoming>, format: Format) -> Response<Body> {
        self.signup_form(req, format, StatusCode::OK, &HashMap::new(), None)
    }

    /// Success and "email exists" answer alike: on to the login page.
    pub(super) async fn signup_submit(
        &self,
        req: Request<Incoming>,
        conn: ConnInfo,
        format: Format,
    ) -> Response<Body> {
        let client = self.client_of(req.headers(), conn);
        let Posted { head, form, error } = self.posted(req).await;
        if let Some(err) = error {
            return self.signup_failed(&head, format, &err, &form);
        }
        let signup = SignUpForm {
            name: field(&form, "name"),
            email: field(&form, "email"),
            country_code: field(&form, "country_code"),
            phone: field(&form, "phone"),
            password: field(&form, "password"),
            second_factor: field(&form, "second_factor"),
        };
        match self.auth.sign_up(&signup, &self.signup).await {
            Ok(()) => {
                tracing::info!(user = %signup.email.trim(), client = %client, "sign-up accepted");
                let login = format!("{}/login", self.prefix);
                match format {
                    Format::Json => {
                        response::json(StatusCode::OK, &json!({"status": "ok", "next": login}))
                    }
                    Format::Html => response::redirect(StatusCode::SEE_OTHER, &login),
                }
            }
            Err(err) => {
                tracing::info!(client = %client, reason = %err, "sign-up refused");
                self.signup_failed(&head, format, &err.into(), &form)
            }
        }
    }

    fn signup_failed(
        &self,
        req: &Request<()>,
        format: Format,
        err: &GatewayError,
        form: &HashMap<String, String>,
    ) -> Response<Body> {
        match format {
            Format::Json => response::error(err, format, &self.pages),
            Format::Html => self.signup_form(req, format, err.status(), form, Some(err.message())),
        }
    }

    fn signup_form<B>(
        &self,
        req: &Request<B>,
        format: Format,
        status: StatusCode,
        fields: &HashMap<String, String>,
        message: Option<&str>,
    ) -> Response<Body> {
        self.form_page(req, format, |csrf| match format {
            Format::Json => response::json(status, &json!({"csrf": csrf})),
            Format::Html => {
                let methods: Vec<&str> = self
                    .auth
                    .signup_methods()
                    .into_iter()
                    .map(|m| m.as_str())
                    .collect();
                let view = SignupView {
                    prefix: &self.prefix,
                    csrf,
                    fields,
                    min_password: self.signup.min_password_length,
                    methods: &methods,
                    message,
                };
                response::html(status, self.pages.signup(&view))
            }
        })
    }
}
