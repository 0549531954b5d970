//! The sign-up page (`signup.enabled`).

use std::collections::HashMap;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use super::Gateway;
use super::answer::{self, Answer, Form};
use super::error::GatewayError;
use super::forms::{Post, RefusedPost};
use super::request::field;
use super::response::Format;
use crate::auth::SignUpForm;
use crate::wire::ConnInfo;

impl Gateway {
    pub(super) fn signup_page(&self, req: &Request<Incoming>) -> Result<Answer, GatewayError> {
        self.signup_form(req, StatusCode::OK, HashMap::new(), None)
    }

    /// Success and "email exists" answer alike: on to the login page.
    pub(super) async fn signup_submit(
        &self,
        req: Request<Incoming>,
        conn: ConnInfo,
        format: Format,
    ) -> Result<Answer, GatewayError> {
        let client = self.client_of(req.headers(), conn);
        let Post { head, form } = match self.posted(req).await {
            Ok(post) => post,
            Err(RefusedPost { post, err }) => return self.signup_failed(post, format, err),
        };
        let signup = SignUpForm {
            name: field(&form, "name"),
            email: field(&form, "email"),
            country_code: field(&form, "country_code"),
            phone: field(&form, "phone"),
            password: field(&form, "password"),
            second_factor: field(&form, "second_factor"),
        };
        let signed_up = self.auth.sign_up(&signup, &self.portal.signup).await;
        match signed_up {
            Ok(()) => {
                tracing::info!(user = %signup.email.trim(), client = %client, "sign-up accepted");
                let login = format!("{}/login", self.portal.prefix);
                let json = json!({"status": "ok", "next": login});
                Ok(Answer::next(login, json))
            }
            Err(err) => {
                tracing::info!(client = %client, reason = %err, "sign-up refused");
                self.signup_failed(Post { head, form }, format, err.into())
            }
        }
    }

    /// The form again with the user's input and what went wrong, or the
    /// error.
    fn signup_failed(
        &self,
        post: Post,
        format: Format,
        err: GatewayError,
    ) -> Result<Answer, GatewayError> {
        answer::refused(format, err, |err| {
            let message = Some(err.message().to_owned());
            self.signup_form(&post.head, err.status(), post.form, message)
        })
    }

    fn signup_form<B>(
        &self,
        req: &Request<B>,
        status: StatusCode,
        fields: HashMap<String, String>,
        message: Option<String>,
    ) -> Result<Answer, GatewayError> {
        let methods = self
            .auth
            .signup_methods()
            .into_iter()
            .map(|m| m.as_str())
            .collect();
        let form = Form::Signup {
            fields,
            methods,
            message,
        };
        self.form(req, status, form)
    }
}
