//! What a portal handler answers, said once: the handlers build an
//! [`Answer`], and [`Portal::render`] turns it into a page for browsers or
//! JSON for API clients. No handler matches on the format.

use std::collections::HashMap;

use http::{Response, StatusCode};
use serde_json::{Value, json};

use super::Portal;
use super::error::GatewayError;
use super::response::{self, Format};
use crate::auth::ChallengeView;
use crate::auth::approval::ApprovalView;
use crate::auth::enrollment::EnrollmentView;
use crate::model::Delivery;
use crate::pages::{
    ApproveView, EnrollKeyView, EnrollView, KeyRow, LoginView, Pages, SecurityView, SessionRow,
    SessionsView, SignupView, StaticFile, VerifyView,
};
use crate::wire::Body;

/// A portal answer before it is rendered, with the cookies it sets.
pub(super) struct Answer {
    content: Content,
    /// `Set-Cookie` values, in order.
    cookies: Vec<String>,
}

enum Content {
    /// A portal form: the page for browsers, its fields for API clients.
    Form {
        status: StatusCode,
        form: Form,
        csrf: String,
    },
    /// On to `location` after a step: a 303 for browsers; for API clients
    /// 200 and `json`, which names where to go.
    Next {
        location: String,
        json: Value,
    },
    /// The same JSON for every client.
    Json {
        status: StatusCode,
        json: Value,
    },
    /// The same redirect for every client.
    Redirect {
        status: StatusCode,
        location: String,
    },
    /// A session is needed: browsers go to the login page at `location`,
    /// API clients get "login required".
    LoginFirst {
        location: String,
    },
    /// A failure shown as the error page or the JSON error; `json_only`
    /// for an endpoint that speaks JSON to every client.
    Failed {
        err: GatewayError,
        json_only: bool,
    },
    Asset(StaticFile),
}

/// A portal form and what it shows.
pub(super) enum Form {
    Login {
        rd: String,
        email: String,
        message: Option<String>,
        /// The form refused a rate-limited login: `Retry-After`.
        retry_after: Option<u64>,
    },
    Logout {
        user: Option<String>,
    },
    Verify {
        rd: String,
        view: ChallengeView,
        message: Option<String>,
    },
    Enroll {
        rd: String,
        view: EnrollmentView,
        /// The security-key enrollment page, when the user may pick that.
        webauthn_url: Option<String>,
        message: Option<String>,
    },
    EnrollKey {
        rd: String,
        /// The TOTP enrollment page, when the user may pick that.
        totp_url: Option<String>,
        was_reset: bool,
        message: Option<String>,
    },
    Security {
        keys: Vec<KeyRow>,
        can_change: bool,
        message: Option<String>,
    },
    Signup {
        fields: HashMap<String, String>,
        /// The second factors a new user may choose.
        methods: Vec<&'static str>,
        message: Option<String>,
    },
    /// "Your sessions" of a confirmed user.
    Sessions {
        user: String,
        rows: Vec<SessionRow>,
        message: Option<String>,
    },
    /// "Approve this action": a held request (docs/approval.md).
    Approve {
        id: String,
        /// Boxed: much larger than the other forms.
        view: Box<ApprovalView>,
        message: Option<String>,
    },
}

impl Answer {
    fn of(content: Content) -> Self {
        Answer {
            content,
            cookies: Vec::new(),
        }
    }

    pub fn form(status: StatusCode, form: Form, csrf: String) -> Self {
        Answer::of(Content::Form { status, form, csrf })
    }

    pub fn next(location: String, json: Value) -> Self {
        Answer::of(Content::Next { location, json })
    }

    pub fn json(status: StatusCode, json: Value) -> Self {
        Answer::of(Content::Json { status, json })
    }

    pub fn redirect(status: StatusCode, location: String) -> Self {
        Answer::of(Content::Redirect { status, location })
    }

    pub fn login_first(location: String) -> Self {
        Answer::of(Content::LoginFirst { location })
    }

    pub fn failed(err: GatewayError) -> Self {
        Answer::of(Content::Failed {
            err,
            json_only: false,
        })
    }

    /// A failure of an endpoint that answers JSON to every client.
    pub fn failed_as_json(err: GatewayError) -> Self {
        Answer::of(Content::Failed {
            err,
            json_only: true,
        })
    }

    pub fn asset(file: StaticFile) -> Self {
        Answer::of(Content::Asset(file))
    }

    pub fn with_cookie(mut self, cookie: String) -> Self {
        self.cookies.push(cookie);
        self
    }
}

impl Format {
    /// Where browsers and API clients part ways in the flow, not only in
    /// the rendering: `page` runs only for a browser (it may read state or
    /// make a CSRF cookie), `other` only for an API client.
    pub(super) fn choose<T>(self, page: impl FnOnce() -> T, other: impl FnOnce() -> T) -> T {
        match self {
            Format::Html => page(),
            Format::Json => other(),
        }
    }
}

/// A refused post: browsers get the form `again` (which shows the error),
/// API clients the error itself.
pub(super) fn refused(
    format: Format,
    err: GatewayError,
    again: impl FnOnce(GatewayError) -> Result<Answer, GatewayError>,
) -> Result<Answer, GatewayError> {
    match format {
        Format::Html => again(err),
        Format::Json => Ok(Answer::failed(err)),
    }
}

impl Portal {
    /// The one place an answer becomes a page or JSON; `pages` speak the
    /// browser's language.
    pub(super) fn render(&self, answer: Answer, format: Format, pages: &Pages) -> Response<Body> {
        let response = match (answer.content, format) {
            (Content::Form { status, form, csrf }, Format::Html) => {
                let mut page = response::html(status, self.page(&form, &csrf, pages));
                if let Form::Login {
                    retry_after: Some(seconds),
                    ..
                } = form
                {
                    page.headers_mut()
                        .insert(http::header::RETRY_AFTER, seconds.into());
                }
                page
            }
            (Content::Form { status, form, csrf }, Format::Json) => {
                response::json(status, &form_json(&form, &csrf))
            }
            (Content::Next { location, .. }, Format::Html) => {
                response::redirect(StatusCode::SEE_OTHER, &location)
            }
            (Content::Next { json, .. }, Format::Json) => response::json(StatusCode::OK, &json),
            (Content::Json { status, json }, _) => response::json(status, &json),
            (Content::Redirect { status, location }, _) => response::redirect(status, &location),
            (Content::LoginFirst { location }, Format::Html) => {
                response::redirect(StatusCode::SEE_OTHER, &location)
            }
            (Content::LoginFirst { .. }, Format::Json) => {
                response::json_error(&GatewayError::LOGIN_REQUIRED)
            }
            (Content::Failed { err, json_only }, format) => {
                let format = if json_only { Format::Json } else { format };
                response::error(&err, format, pages)
            }
            (Content::Asset(file), _) => response::asset(file),
        };
        response::with_cookies(response, &answer.cookies)
    }

    fn page(&self, form: &Form, csrf: &str, pages: &Pages) -> String {
        let prefix = self.prefix.as_str();
        match form {
            Form::Login {
                rd, email, message, ..
            } => pages.login(&LoginView {
                prefix,
                action: &format!("{prefix}/login"),
                csrf,
                rd,
                email,
                message: message.as_deref(),
                passkeys: self.passkeys,
            }),
            Form::Logout { user } => {
                pages.logout(&format!("{prefix}/logout"), csrf, user.as_deref())
            }
            Form::Verify { rd, view, message } => {
                let method = view.method.as_str();
                let others: Vec<&str> = view
                    .methods
                    .iter()
                    .map(|m| m.as_str())
                    .filter(|m| *m != method)
                    .collect();
                pages.verify(&VerifyView {
                    prefix,
                    csrf,
                    rd,
                    method,
                    push: view.push.map(|p| p.as_str()),
                    push_failed: view.push_failed,
                    sends_codes: matches!(view.delivery, Delivery::Push | Delivery::SentCode),
                    others: &others,
                    message: message.as_deref(),
                })
            }
            Form::Enroll {
                rd,
                view,
                webauthn_url,
                message,
            } => pages.enroll(&EnrollView {
                prefix,
                csrf,
                rd,
                issuer: &self.totp_issuer,
                secret_text: &view.secret_text,
                uri: &view.uri,
                qr_svg: &view.qr_svg,
                was_reset: view.was_reset,
                message: message.as_deref(),
                webauthn_url: webauthn_url.as_deref(),
            }),
            Form::EnrollKey {
                rd,
                totp_url,
                was_reset,
                message,
            } => pages.enroll_key(&EnrollKeyView {
                prefix,
                csrf,
                rd,
                totp_url: totp_url.as_deref(),
                was_reset: *was_reset,
                message: message.as_deref(),
            }),
            Form::Security {
                keys,
                can_change,
                message,
            } => pages.security(&SecurityView {
                prefix,
                csrf,
                keys,
                can_change: *can_change,
                message: message.as_deref(),
            }),
            Form::Signup {
                fields,
                methods,
                message,
            } => pages.signup(&SignupView {
                prefix,
                csrf,
                fields,
                min_password: self.signup.min_password_length,
                methods,
                message: message.as_deref(),
            }),
            Form::Sessions {
                user,
                rows,
                message,
            } => self.pages.sessions(&SessionsView {
                action: &format!("{prefix}/account/sessions"),
                csrf,
                user,
                rows,
                message: message.as_deref(),
            }),
            Form::Approve { id, view, message } => {
                let details = &view.details;
                pages.approve(&ApproveView {
                    prefix,
                    csrf,
                    id,
                    state: view.state.as_str(),
                    by: view.means.as_str(),
                    method: view.means.method().as_str(),
                    summary: &details.message,
                    fields: &details.fields,
                    request_method: &details.method,
                    host: &details.host,
                    path: &details.path,
                    client: &details.client,
                    message: message.as_deref(),
                })
            }
        }
    }
}

/// A form's fields as API clients read them.
fn form_json(form: &Form, csrf: &str) -> Value {
    match form {
        Form::Login { .. } | Form::Signup { .. } => json!({"csrf": csrf}),
        Form::Logout { user } => json!({"csrf": csrf, "user": user}),
        Form::Verify { view, message, .. } => {
            let methods: Vec<&str> = view.methods.iter().map(|m| m.as_str()).collect();
            json!({"method": view.method.as_str(), "methods": methods,
                   "push": view.push.map(|p| p.as_str()),
                   "push_failed": view.push_failed, "code_sent": view.code_sent,
                   "csrf": csrf, "message": message})
        }
        Form::Sessions { user, rows, .. } => {
            json!({"csrf": csrf, "user": user, "sessions": rows})
        }
        Form::Approve { id, view, message } => {
            let details = &view.details;
            let fields: serde_json::Map<String, Value> = details
                .fields
                .iter()
                .map(|(name, value)| (name.clone(), Value::from(value.as_str())))
                .collect();
            json!({"id": id, "status": view.state.as_str(),
                   "method": view.means.method().as_str(),
                   "by": view.means.as_str(),
                   "message": message, "summary": details.message, "fields": fields,
                   "request": {"method": details.method, "host": details.host, "path": details.path},
                   "wrong_codes_left": view.wrong_codes_left, "csrf": csrf})
        }
        Form::Enroll { view, message, .. } => {
            json!({"secret": view.secret_text.replace(' ', ""), "uri": view.uri,
                   "was_reset": view.was_reset, "csrf": csrf, "message": message})
        }
        Form::EnrollKey {
            was_reset, message, ..
        } => json!({"csrf": csrf, "was_reset": was_reset, "message": message}),
        Form::Security {
            keys,
            can_change,
            message,
        } => {
            let keys: Vec<Value> = keys
                .iter()
                .map(|k| json!({"id": k.id, "name": k.name, "created": k.created, "last_used": k.last_used}))
                .collect();
            json!({"csrf": csrf, "keys": keys, "can_change": can_change, "message": message})
        }
    }
}
