//! HTML pages, rendered by minijinja with auto-escaping on (templates end
//! in `.html`), embedded in the binary with the files they load; their
//! words come from the message catalogues (`i18n`), in the language the
//! browser asks for. `[portal]` may replace templates, add languages and
//! brand the pages (`brand`).

pub mod assets;
mod brand;
pub mod i18n;

use std::sync::Arc;

use bytes::Bytes;
use minijinja::value::Kwargs;
use minijinja::{Environment, State, context};

use crate::config::PortalConfig;
use brand::Brand;
pub use brand::PagesError;
use i18n::{Catalogues, Language};

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("login.html", include_str!("templates/login.html")),
    ("logout.html", include_str!("templates/logout.html")),
    ("verify.html", include_str!("templates/verify.html")),
    ("signup.html", include_str!("templates/signup.html")),
    ("enroll.html", include_str!("templates/enroll.html")),
    (
        "enroll_webauthn.html",
        include_str!("templates/enroll_webauthn.html"),
    ),
    ("security.html", include_str!("templates/security.html")),
    (
        "webauthn_widget.html",
        include_str!("templates/webauthn_widget.html"),
    ),
    ("error.html", include_str!("templates/error.html")),
    ("sessions.html", include_str!("templates/sessions.html")),
    ("approve.html", include_str!("templates/approve.html")),
];

/// What the "Approve this action" page shows.
pub struct ApproveView<'a> {
    pub prefix: &'a str,
    pub csrf: &'a str,
    /// The approval's id, in its URLs.
    pub id: &'a str,
    /// `pending`, `approved`, `denied`, `expired`, `cancelled`, `released`.
    pub state: &'a str,
    /// How it is approved: `push`, `code` (of `method`) or `key`.
    pub by: &'a str,
    pub method: &'a str,
    /// The rule's rendered message; may be empty.
    pub summary: &'a str,
    /// The rule's fields, values already truncated (escaped here).
    pub fields: &'a [(String, String)],
    pub request_method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub client: &'a str,
    pub message: Option<&'a str>,
}

/// What the login form shows.
pub struct LoginView<'a> {
    pub prefix: &'a str,
    pub action: &'a str,
    pub csrf: &'a str,
    pub rd: &'a str,
    pub email: &'a str,
    pub message: Option<&'a str>,
    /// "Sign in with a passkey" is offered.
    pub passkeys: bool,
}

/// What the second-factor page shows.
pub struct VerifyView<'a> {
    pub prefix: &'a str,
    pub csrf: &'a str,
    pub rd: &'a str,
    /// The method of the challenge: `authy`, `totp`, `verify`.
    pub method: &'a str,
    /// `pending`, `approved`, `denied`, `expired`, or None without a push.
    pub push: Option<&'a str>,
    /// The push or code could not be sent.
    pub push_failed: bool,
    /// Whether this method sends codes, so "send a new code" makes sense.
    pub sends_codes: bool,
    /// The user's other methods, to switch to.
    pub others: &'a [&'a str],
    pub message: Option<&'a str>,
}

/// What the TOTP enrollment page shows.
pub struct EnrollView<'a> {
    pub prefix: &'a str,
    pub csrf: &'a str,
    pub rd: &'a str,
    pub issuer: &'a str,
    pub secret_text: &'a str,
    pub uri: &'a str,
    /// Rendered by our QR encoder from `uri`: markup, not user text.
    pub qr_svg: &'a str,
    pub was_reset: bool,
    pub message: Option<&'a str>,
    /// The security-key enrollment page, when the user may pick that.
    pub webauthn_url: Option<&'a str>,
}

/// The page that registers a first security key or passkey.
pub struct EnrollKeyView<'a> {
    pub prefix: &'a str,
    pub csrf: &'a str,
    pub rd: &'a str,
    /// The TOTP enrollment page, when the user may pick that instead.
    pub totp_url: Option<&'a str>,
    pub was_reset: bool,
    pub message: Option<&'a str>,
}

/// One registered key as the security page lists it.
pub struct KeyRow {
    pub id: String,
    pub name: String,
    pub created: String,
    pub last_used: String,
}

/// The security page: the user's keys, and adding or removing one.
pub struct SecurityView<'a> {
    pub prefix: &'a str,
    pub csrf: &'a str,
    pub keys: &'a [KeyRow],
    /// Confirmed recently enough to add or remove a key.
    pub can_change: bool,
    pub message: Option<&'a str>,
}

/// What the sign-up form shows again after an error (never the password).
pub struct SignupView<'a> {
    pub prefix: &'a str,
    pub csrf: &'a str,
    pub fields: &'a std::collections::HashMap<String, String>,
    pub min_password: usize,
    /// The second factors a new account may choose.
    pub methods: &'a [&'a str],
    pub message: Option<&'a str>,
}

/// One row of "Your sessions".
#[derive(serde::Serialize)]
pub struct SessionRow {
    /// The session's reference (a hex prefix of its store key).
    pub reference: String,
    /// When it signed in and was last used, as the page shows them.
    pub created: String,
    pub last_seen: String,
    /// `one_factor` or `two_factor`.
    pub level: &'static str,
    /// "Firefox on Linux", or "Unknown browser" for a session of before.
    pub device: String,
    /// The second factor that confirmed it, if any.
    pub method: Option<String>,
    /// The client's address at the login; none for a session of before.
    pub client: Option<String>,
    pub this_device: bool,
}

/// What "Your sessions" shows.
pub struct SessionsView<'a> {
    pub action: &'a str,
    pub csrf: &'a str,
    pub user: &'a str,
    pub rows: &'a [SessionRow],
    pub message: Option<&'a str>,
}

/// The portal's pages in one language (as made: `portal.default_language`):
/// [`Pages::for_browser`] makes the same pages in another, cheaply.
#[derive(Clone)]
pub struct Pages {
    shared: Arc<Shared>,
    language: Language,
}

/// Everything that is the same for every request, made once at start.
struct Shared {
    env: Environment<'static>,
    catalogues: Arc<Catalogues>,
    /// `portal.default_language`: when the browser asks for none we have.
    default_language: Language,
    brand: Brand,
}

/// A file the pages load, as it is served.
pub struct StaticFile {
    pub content_type: &'static str,
    pub body: Bytes,
}

impl Pages {
    /// The built-in pages in English, with no brand. `prefix`:
    /// `server.path_prefix`, where the assets are served.
    pub fn new(prefix: &str) -> Self {
        let catalogues = Catalogues::built_in();
        // The built-in templates and catalogues are covered by tests.
        Self::build(prefix, catalogues, Brand::default(), Vec::new(), "en")
            .unwrap_or_else(|e| panic!("built-in pages: {e}"))
    }

    /// The pages as `[portal]` has them: the operator's templates,
    /// languages and brand files read, every template rendered once with
    /// sample data, so that a broken one stops the start (and
    /// `check-config`) with its name.
    pub fn load(portal: &PortalConfig, prefix: &str) -> Result<Self, PagesError> {
        let mut catalogues = Catalogues::built_in();
        let mut templates = Vec::new();
        if let Some(dir) = &portal.templates_dir {
            brand::add_catalogues(dir, &mut catalogues)?;
            templates = brand::templates(dir)?;
        }
        let brand = Brand::load(portal, prefix)?;
        let pages = Self::build(
            prefix,
            catalogues,
            brand,
            templates,
            &portal.default_language,
        )?;
        pages.check()?;
        Ok(pages)
    }

    fn build(
        prefix: &str,
        catalogues: Catalogues,
        brand: Brand,
        operator_templates: Vec<(String, String)>,
        default_language: &str,
    ) -> Result<Self, PagesError> {
        let default_language = catalogues
            .language(default_language)
            .ok_or_else(|| PagesError::UnknownLanguage(default_language.to_owned()))?;
        let catalogues = Arc::new(catalogues);
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .map_err(|e| PagesError::template(name, &e))?;
        }
        // After the built-in ones: the same name replaces.
        for (name, source) in operator_templates {
            env.add_template_owned(name.clone(), source)
                .map_err(|e| PagesError::template(&name, &e))?;
        }
        env.add_global("stylesheet_url", assets::STYLESHEET.url(prefix));
        env.add_global("push_script_url", assets::PUSH_SCRIPT.url(prefix));
        env.add_global("webauthn_script_url", assets::WEBAUTHN_SCRIPT.url(prefix));
        env.add_global("approve_script_url", assets::APPROVE_SCRIPT.url(prefix));
        brand.add_globals(&mut env);
        let words = catalogues.clone();
        env.add_function("t", move |state: &State, key: &str, args: Kwargs| {
            translate(&words, state, key, &args)
        });
        let shared = Shared {
            env,
            catalogues,
            default_language,
            brand,
        };
        Ok(Pages {
            shared: Arc::new(shared),
            language: default_language,
        })
    }

    /// These pages in the language `Accept-Language` asks for, else in
    /// `portal.default_language`.
    pub fn for_browser(&self, accept_language: Option<&str>) -> Pages {
        let catalogues = &self.shared.catalogues;
        self.in_language(catalogues.negotiate(accept_language, self.shared.default_language))
    }

    fn in_language(&self, language: Language) -> Pages {
        Pages {
            shared: self.shared.clone(),
            language,
        }
    }

    /// The file under `{prefix}/static/{name}`: a built-in asset or one of
    /// the operator's brand files.
    pub fn static_file(&self, name: &str) -> Option<StaticFile> {
        if let Some(asset) = assets::named(name) {
            return Some(StaticFile {
                content_type: asset.content_type,
                body: Bytes::from_static(asset.body.as_bytes()),
            });
        }
        self.shared.brand.file(name)
    }

    pub fn login(&self, view: &LoginView<'_>) -> String {
        self.render("login.html", self.login_context(view))
    }

    fn login_context(&self, view: &LoginView<'_>) -> minijinja::Value {
        context! {
            action => view.action,
            csrf => view.csrf,
            rd => view.rd,
            email => view.email,
            message => self.message(view.message),
            passkeys => view.passkeys,
            options_url => format!("{}/webauthn/passkey/options", view.prefix),
            finish_url => format!("{}/webauthn/passkey", view.prefix),
        }
    }

    pub fn verify(&self, view: &VerifyView<'_>) -> String {
        self.render("verify.html", self.verify_context(view))
    }

    fn verify_context(&self, view: &VerifyView<'_>) -> minijinja::Value {
        let action = format!("{}/verify", view.prefix);
        let rd_query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("rd", view.rd)
            .finish();
        let switch: Vec<minijinja::Value> = view
            .others
            .iter()
            .map(|m| {
                context! {
                    label => self.method_label(m),
                    url => format!("{action}?method={m}&{rd_query}"),
                }
            })
            .collect();
        context! {
            continue_url => format!("{action}?method={}&{rd_query}", view.method),
            action,
            resend_action => format!("{}/resend", view.prefix),
            status_url => format!("{}/status", view.prefix),
            csrf => view.csrf,
            rd => view.rd,
            method => view.method,
            push => view.push,
            push_failed => view.push_failed,
            sends_codes => view.sends_codes,
            switch,
            message => self.message(view.message),
            webauthn_options_url => format!("{}/webauthn/assert/options", view.prefix),
            webauthn_finish_url => format!("{}/webauthn/assert", view.prefix),
        }
    }

    pub fn enroll(&self, view: &EnrollView<'_>) -> String {
        self.render("enroll.html", self.enroll_context(view))
    }

    fn enroll_context(&self, view: &EnrollView<'_>) -> minijinja::Value {
        context! {
            action => format!("{}/enroll/totp", view.prefix),
            csrf => view.csrf,
            rd => view.rd,
            issuer => view.issuer,
            secret_text => view.secret_text,
            uri => view.uri,
            qr_svg => minijinja::Value::from_safe_string(view.qr_svg.to_owned()),
            was_reset => view.was_reset,
            message => self.message(view.message),
            webauthn_url => view.webauthn_url,
        }
    }

    pub fn enroll_key(&self, view: &EnrollKeyView<'_>) -> String {
        self.render("enroll_webauthn.html", self.enroll_key_context(view))
    }

    fn enroll_key_context(&self, view: &EnrollKeyView<'_>) -> minijinja::Value {
        context! {
            csrf => view.csrf,
            rd => view.rd,
            options_url => register_options_url(view.prefix),
            finish_url => register_finish_url(view.prefix),
            totp_url => view.totp_url,
            was_reset => view.was_reset,
            message => self.message(view.message),
        }
    }

    pub fn security(&self, view: &SecurityView<'_>) -> String {
        self.render("security.html", self.security_context(view))
    }

    fn security_context(&self, view: &SecurityView<'_>) -> minijinja::Value {
        let keys: Vec<minijinja::Value> = view
            .keys
            .iter()
            .map(|k| {
                context! { id => &k.id, name => &k.name, created => &k.created, last_used => &k.last_used }
            })
            .collect();
        context! {
            action => format!("{}/account/security", view.prefix),
            csrf => view.csrf,
            rd => format!("{}/account/security", view.prefix),
            keys,
            can_change => view.can_change,
            options_url => register_options_url(view.prefix),
            finish_url => register_finish_url(view.prefix),
            message => self.message(view.message),
        }
    }

    pub fn signup(&self, view: &SignupView<'_>) -> String {
        self.render("signup.html", self.signup_context(view))
    }

    fn signup_context(&self, view: &SignupView<'_>) -> minijinja::Value {
        let field = |name: &str| view.fields.get(name).map_or("", String::as_str);
        let methods: Vec<minijinja::Value> = view
            .methods
            .iter()
            .map(|m| context! { value => *m, label => self.method_label(m) })
            .collect();
        context! {
            action => format!("{}/signup", view.prefix),
            login_url => format!("{}/login", view.prefix),
            csrf => view.csrf,
            name => field("name"),
            email => field("email"),
            country_code => field("country_code"),
            phone => field("phone"),
            chosen => field("second_factor"),
            methods,
            min_password => view.min_password,
            message => self.message(view.message),
        }
    }

    pub fn sessions(&self, view: &SessionsView<'_>) -> String {
        self.render("sessions.html", self.sessions_context(view))
    }

    fn sessions_context(&self, view: &SessionsView<'_>) -> minijinja::Value {
        let rows: Vec<minijinja::Value> = view
            .rows
            .iter()
            .map(|row| {
                context! {
                    reference => &row.reference,
                    created => &row.created,
                    last_seen => &row.last_seen,
                    level => row.level,
                    device => &row.device,
                    method => &row.method,
                    client => &row.client,
                    this_device => row.this_device,
                }
            })
            .collect();
        context! {
            action => view.action,
            csrf => view.csrf,
            user => view.user,
            rows,
            message => self.message(view.message),
        }
    }

    pub fn logout(&self, action: &str, csrf: &str, user: Option<&str>) -> String {
        self.render("logout.html", context! { action, csrf, user })
    }

    pub fn approve(&self, view: &ApproveView<'_>) -> String {
        self.render("approve.html", self.approve_context(view))
    }

    fn approve_context(&self, view: &ApproveView<'_>) -> minijinja::Value {
        let page_url = format!("{}/approval/{}", view.prefix, view.id);
        let fields: Vec<minijinja::Value> = view
            .fields
            .iter()
            .map(|(name, value)| context! { name, value })
            .collect();
        context! {
            status_url => format!("{page_url}/status"),
            continue_url => format!("{page_url}/continue"),
            cancel_url => format!("{page_url}/cancel"),
            key_options_url => format!("{page_url}/key/options"),
            key_finish_url => format!("{page_url}/key"),
            page_url,
            csrf => view.csrf,
            state => view.state,
            by => view.by,
            method_name => view.method,
            summary => view.summary,
            fields,
            method => view.request_method,
            host => view.host,
            path => view.path,
            client => view.client,
            message => self.message(view.message),
        }
    }

    /// `message`: the gateway's English text, translated here.
    pub fn error(&self, status: u16, message: &str) -> String {
        let message = self.message(Some(message));
        self.render("error.html", context! { status, message })
    }

    fn render(&self, name: &str, ctx: minijinja::Value) -> String {
        self.try_render(name, ctx).unwrap_or_else(|e| {
            tracing::error!(template = name, error = %e, "page rendering failed");
            "<!doctype html><title>authgate</title><p>Internal error.</p>".to_owned()
        })
    }

    fn try_render(&self, name: &str, ctx: minijinja::Value) -> Result<String, minijinja::Error> {
        let lang = self.shared.catalogues.tag(self.language);
        self.shared
            .env
            .get_template(name)?
            .render(context! { lang, ..ctx })
    }

    /// Renders every page once with sample data: the first that fails is
    /// named, with the template and line minijinja reports.
    pub fn check(&self) -> Result<(), PagesError> {
        let fields = std::collections::HashMap::new();
        let keys = samples::keys();
        let sessions = samples::session_rows();
        let samples = [
            ("login.html", self.login_context(&samples::LOGIN)),
            ("verify.html", self.verify_context(&samples::VERIFY)),
            ("enroll.html", self.enroll_context(&samples::ENROLL)),
            (
                "enroll_webauthn.html",
                self.enroll_key_context(&samples::ENROLL_KEY),
            ),
            (
                "security.html",
                self.security_context(&samples::security(&keys)),
            ),
            (
                "signup.html",
                self.signup_context(&samples::signup(&fields)),
            ),
            (
                "sessions.html",
                self.sessions_context(&samples::sessions(&sessions)),
            ),
            ("approve.html", self.approve_context(&samples::APPROVE)),
            (
                "logout.html",
                context! { action => "/logout", csrf => "t", user => "a@example.com" },
            ),
            (
                "error.html",
                context! { status => 502, message => "Sample." },
            ),
        ];
        for (name, ctx) in samples {
            self.try_render(name, ctx)
                .map_err(|e| PagesError::template(name, &e))?;
        }
        Ok(())
    }

    /// A message the gateway puts on a page, in this page's language.
    fn message<'a>(&'a self, english: Option<&'a str>) -> Option<&'a str> {
        english.map(|text| self.shared.catalogues.message(self.language, text))
    }

    /// How a method is named to the user.
    fn method_label<'a>(&'a self, method: &'a str) -> &'a str {
        let key = match method {
            "authy" => "method.authy",
            "totp" => "method.totp",
            "verify" => "method.verify",
            "webauthn" => "method.webauthn",
            _ => "method.other",
        };
        self.shared
            .catalogues
            .text(self.language, key)
            .unwrap_or(method)
    }
}

/// `t(key, name=value…)` in a template: the text of `key` in the page's
/// language (`lang`), with `{name}` filled in. An unknown key is an error,
/// so `check` catches a misspelt one in an operator's template.
fn translate(
    catalogues: &Catalogues,
    state: &State,
    key: &str,
    args: &Kwargs,
) -> Result<String, minijinja::Error> {
    let language = state
        .lookup("lang")
        .and_then(|tag| catalogues.language(tag.as_str()?))
        .unwrap_or(i18n::ENGLISH);
    let text = catalogues.text(language, key).ok_or_else(|| {
        minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!("no message {key:?} in the catalogues"),
        )
    })?;
    let mut text = text.to_owned();
    for name in args.args() {
        let value: minijinja::Value = args.get(name)?;
        text = text.replace(&format!("{{{name}}}"), &value.to_string());
    }
    Ok(text)
}

/// The sample data `check` renders every page with.
mod samples {
    use super::*;

    pub const LOGIN: LoginView<'static> = LoginView {
        prefix: "",
        action: "/login",
        csrf: "t",
        rd: "/",
        email: "a@example.com",
        message: Some("Invalid email or password."),
        passkeys: true,
    };

    pub const ENROLL_KEY: EnrollKeyView<'static> = EnrollKeyView {
        prefix: "",
        csrf: "t",
        rd: "/",
        totp_url: Some("/enroll/totp"),
        was_reset: true,
        message: None,
    };

    pub const APPROVE: ApproveView<'static> = ApproveView {
        prefix: "",
        csrf: "t",
        id: "0123abcd",
        state: "pending",
        by: "push",
        method: "authy",
        summary: "Send 10 EUR to Bob",
        fields: &[],
        request_method: "POST",
        host: "app.example.com",
        path: "/transfer",
        client: "192.0.2.1",
        message: None,
    };

    pub fn session_rows() -> Vec<SessionRow> {
        vec![SessionRow {
            reference: "0a1b2c3d".into(),
            created: "2026-12-05 10:00 UTC".into(),
            last_seen: "2026-12-05 10:05 UTC".into(),
            level: "two_factor",
            device: "Firefox on Linux".into(),
            method: Some("totp".into()),
            client: Some("203.0.113.9".into()),
            this_device: true,
        }]
    }

    pub fn sessions(rows: &[SessionRow]) -> SessionsView<'_> {
        SessionsView {
            action: "/account/sessions",
            csrf: "t",
            user: "a@example.com",
            rows,
            message: None,
        }
    }

    pub fn keys() -> Vec<KeyRow> {
        vec![KeyRow {
            id: "k1".into(),
            name: "YubiKey".into(),
            created: "2026-12-05 10:00 UTC".into(),
            last_used: "never".into(),
        }]
    }

    pub fn security(keys: &[KeyRow]) -> SecurityView<'_> {
        SecurityView {
            prefix: "",
            csrf: "t",
            keys,
            can_change: true,
            message: None,
        }
    }

    pub const VERIFY: VerifyView<'static> = VerifyView {
        prefix: "",
        csrf: "t",
        rd: "/",
        method: "authy",
        push: Some("pending"),
        push_failed: false,
        sends_codes: true,
        others: &["totp"],
        message: Some("Wrong code. Please try again."),
    };

    pub const ENROLL: EnrollView<'static> = EnrollView {
        prefix: "",
        csrf: "t",
        rd: "/",
        issuer: "authgate",
        secret_text: "ABCD EFGH",
        uri: "otpauth://totp/x?secret=ABCDEFGH",
        qr_svg: "<svg></svg>",
        was_reset: true,
        message: None,
        webauthn_url: Some("/enroll/webauthn"),
    };

    pub fn signup(fields: &std::collections::HashMap<String, String>) -> SignupView<'_> {
        SignupView {
            prefix: "",
            csrf: "t",
            fields,
            min_password: 12,
            methods: &["authy", "totp"],
            message: Some("Enter your name."),
        }
    }
}

/// Where webauthn.js asks for a registration's options.
fn register_options_url(prefix: &str) -> String {
    format!("{prefix}/webauthn/register/options")
}

/// Where webauthn.js sends the new key's answer.
fn register_finish_url(prefix: &str) -> String {
    format!("{prefix}/webauthn/register")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_html_escaped() {
        let pages = Pages::new("/_authgate");
        let page = pages.login(&LoginView {
            prefix: "/_authgate",
            action: "/_authgate/login",
            csrf: "tok\"en",
            rd: "http://x/?a=<script>",
            email: "<b>a@example.com</b>",
            message: Some("<i>bad</i>"),
            passkeys: true,
        });
        assert!(!page.contains("<script>"), "{page}");
        assert!(!page.contains("<b>a@"), "{page}");
        assert!(!page.contains("<i>bad"), "{page}");
        assert!(page.contains("&lt;b&gt;a@example.com"), "{page}");
        assert!(page.contains("name=\"csrf\""), "{page}");
    }

    /// Every page in every state the templates know, as the CSP sees it.
    fn every_page(pages: &Pages) -> Vec<String> {
        let fields = std::collections::HashMap::new();
        let mut all = vec![
            pages.login(&LoginView {
                prefix: "/_authgate",
                action: "/_authgate/login",
                csrf: "t",
                rd: "/",
                email: "a@x",
                message: Some("Invalid email or password."),
                passkeys: true,
            }),
            pages.enroll_key(&EnrollKeyView {
                prefix: "/_authgate",
                csrf: "t",
                rd: "/",
                totp_url: Some("/_authgate/enroll/totp"),
                was_reset: true,
                message: Some("Not accepted."),
            }),
            pages.security(&SecurityView {
                prefix: "/_authgate",
                csrf: "t",
                keys: &[KeyRow {
                    id: "k1".into(),
                    name: "<b>key</b>".into(),
                    created: "2026-12-05".into(),
                    last_used: "never".into(),
                }],
                can_change: true,
                message: Some("Removed."),
            }),
            pages.security(&SecurityView {
                prefix: "/_authgate",
                csrf: "t",
                keys: &[],
                can_change: false,
                message: None,
            }),
            pages.logout("/_authgate/logout", "t", Some("a@x")),
            pages.logout("/_authgate/logout", "t", None),
            pages.error(502, "Upstream down"),
            pages.signup(&SignupView {
                prefix: "/_authgate",
                csrf: "t",
                fields: &fields,
                min_password: 12,
                methods: &["authy", "totp"],
                message: Some("Try again."),
            }),
            pages.enroll(&EnrollView {
                prefix: "/_authgate",
                csrf: "t",
                rd: "/",
                issuer: "Acme",
                secret_text: "ABCD",
                uri: "otpauth://totp/x?secret=ABCD",
                qr_svg: "<svg id=\"qr\"></svg>",
                was_reset: true,
                message: Some("Wrong code."),
                webauthn_url: Some("/_authgate/enroll/webauthn"),
            }),
        ];
        let fields = [("to".to_owned(), "<b>Bob</b>".to_owned())];
        for state in [
            "pending",
            "approved",
            "denied",
            "expired",
            "cancelled",
            "released",
        ] {
            for by in ["push", "code", "key"] {
                all.push(pages.approve(&ApproveView {
                    prefix: "/_authgate",
                    csrf: "t",
                    id: "abc",
                    state,
                    by,
                    method: "totp",
                    summary: "Send 5 EUR to <b>Bob</b>",
                    fields: &fields,
                    request_method: "POST",
                    host: "app.local",
                    path: "/transfer",
                    client: "127.0.0.1",
                    message: Some("Wrong code."),
                }));
            }
        }
        for push in [Some("pending"), Some("denied"), Some("expired"), None] {
            for (method, sends_codes) in [
                ("authy", true),
                ("totp", false),
                ("verify", true),
                ("webauthn", false),
            ] {
                all.push(pages.verify(&VerifyView {
                    prefix: "/_authgate",
                    csrf: "t",
                    rd: "/",
                    method,
                    push,
                    push_failed: push.is_none(),
                    sends_codes,
                    others: &["totp"],
                    message: Some("Wrong code."),
                }));
            }
        }
        all
    }

    /// Auto-escaping writes `/` as `&#x2f;`, also in attributes.
    fn unescape_slashes(page: &str) -> String {
        page.replace("&#x2f;", "/")
    }

    /// `on…=` attributes (`onclick=`, `onload=`), which a CSP without
    /// 'unsafe-inline' blocks.
    fn has_event_handler(page: &str) -> bool {
        page.match_indices(" on").any(|(at, _)| {
            let name: String = page[at + 3..]
                .chars()
                .take_while(char::is_ascii_alphabetic)
                .collect();
            !name.is_empty() && page[at + 3 + name.len()..].starts_with('=')
        })
    }

    #[test]
    fn no_page_has_inline_script_or_style() {
        let pages = Pages::new("/_authgate");
        for page in every_page(&pages) {
            let page = unescape_slashes(&page);
            let scripts = page.matches("<script").count();
            let loaded = page.matches("<script src=\"/_authgate/static/").count();
            assert_eq!(scripts, loaded, "inline script: {page}");
            assert!(!page.contains("<style"), "inline style element: {page}");
            assert!(!page.contains(" style="), "style attribute: {page}");
            assert!(!has_event_handler(&page), "event handler: {page}");
            assert!(
                page.contains("<link rel=\"stylesheet\" href=\"/_authgate/static/authgate.css?v="),
                "the style sheet: {page}"
            );
        }
        assert!(has_event_handler("<a onclick=\"x()\">"));
        assert!(!has_event_handler("<p>turn on=off</p> <b one>"));
    }

    #[test]
    fn the_waiting_view_loads_the_push_script() {
        let pages = Pages::new("/auth");
        let page = pages.verify(&VerifyView {
            prefix: "/auth",
            csrf: "t",
            rd: "/",
            method: "authy",
            push: Some("pending"),
            push_failed: false,
            sends_codes: true,
            others: &[],
            message: None,
        });
        let page = unescape_slashes(&page);
        let src = assets::PUSH_SCRIPT.url("/auth");
        assert!(
            page.contains(&format!("<script src=\"{src}\" defer>")),
            "{page}"
        );
        assert!(page.contains("data-status-url=\"/auth/status\""), "{page}");
    }

    #[test]
    fn the_approval_page_escapes_the_details_and_polls_a_pending_push() {
        let pages = Pages::new("/_authgate");
        let fields = [("to".to_owned(), "<script>x()</script>".to_owned())];
        let view = |state, by| ApproveView {
            prefix: "/_authgate",
            csrf: "t",
            id: "abc",
            state,
            by,
            method: "authy",
            summary: "Send 5 to <b>Bob</b>",
            fields: &fields,
            request_method: "POST",
            host: "app.local",
            path: "/transfer",
            client: "192.0.2.1",
            message: None,
        };
        let pending = unescape_slashes(&pages.approve(&view("pending", "push")));
        assert!(!pending.contains("<script>x()"), "{pending}");
        assert!(!pending.contains("<b>Bob"), "{pending}");
        assert!(pending.contains("&lt;script&gt;x()"), "{pending}");
        let src = assets::APPROVE_SCRIPT.url("/_authgate");
        assert!(
            pending.contains(&format!("<script src=\"{src}\" defer>")),
            "{pending}"
        );
        assert!(
            pending.contains("data-status-url=\"/_authgate/approval/abc/status\""),
            "{pending}"
        );
        let approved = unescape_slashes(&pages.approve(&view("approved", "push")));
        assert!(
            approved.contains("action=\"/_authgate/approval/abc/continue\""),
            "{approved}"
        );
        assert!(
            !approved.contains("<script src"),
            "nothing to poll: {approved}"
        );
        let by_code = pages.approve(&view("pending", "code"));
        assert!(by_code.contains("name=\"code\""), "{by_code}");
        let by_key = unescape_slashes(&pages.approve(&view("pending", "key")));
        assert!(
            by_key.contains("data-options-url=\"/_authgate/approval/abc/key/options\"")
                && by_key.contains("data-finish-url=\"/_authgate/approval/abc/key\""),
            "{by_key}"
        );
        assert!(!by_key.contains("name=\"code\""), "{by_key}");
    }

    #[test]
    fn every_template_renders() {
        let pages = Pages::new("/_authgate");
        assert!(
            pages
                .logout("/_authgate/logout", "t", Some("a@x"))
                .contains("a@x")
        );
        assert!(pages.error(502, "Upstream down").contains("502"));
        let verify = pages.verify(&VerifyView {
            prefix: "/_authgate",
            csrf: "t",
            rd: "http://x/a?b=1&c=<2>",
            method: "authy",
            push: Some("pending"),
            push_failed: false,
            sends_codes: true,
            others: &["totp"],
            message: None,
        });
        assert!(
            verify.contains("verify?method=totp&amp;rd=")
                || verify.contains("verify?method=totp&rd="),
            "a link to switch: {verify}"
        );
        let enroll = pages.enroll(&EnrollView {
            prefix: "/_authgate",
            csrf: "t",
            rd: "/",
            issuer: "Acme <Ops>",
            secret_text: "ABCD EFGH",
            uri: "otpauth://totp/x?secret=ABCDEFGH&issuer=Acme",
            qr_svg: "<svg id=\"qr\"></svg>",
            was_reset: true,
            message: None,
            webauthn_url: None,
        });
        assert!(
            enroll.contains("<svg id=\"qr\">"),
            "the QR is markup: {enroll}"
        );
        assert!(enroll.contains("ABCD EFGH"), "{enroll}");
        assert!(
            !enroll.contains("Acme <Ops>"),
            "the issuer is escaped: {enroll}"
        );
        assert!(enroll.contains("reset"), "{enroll}");
        assert!(verify.contains("I approved it, continue"), "{verify}");
        assert!(
            verify.contains("verify?method=authy&amp;rd=http%3A%2F%2Fx%2Fa%3Fb%3D1%26c%3D%3C2%3E"),
            "{verify}"
        );
        assert!(!verify.contains("<2>"), "{verify}");
    }

    fn portal_config(dir: Option<&std::path::Path>) -> PortalConfig {
        PortalConfig {
            title: "Acme <Login>".into(),
            logo: None,
            css_file: None,
            templates_dir: dir.map(std::path::Path::to_owned),
            footer_links: Vec::new(),
            default_language: "en".into(),
        }
    }

    fn login_of(pages: &Pages, email: &str) -> String {
        pages.login(&LoginView {
            email,
            message: Some("Invalid email or password."),
            ..samples::LOGIN
        })
    }

    #[test]
    fn a_browser_that_asks_for_german_gets_german_pages() {
        let pages = Pages::new("/_authgate");
        let german = pages.for_browser(Some("de-DE,de;q=0.9,en;q=0.8"));
        let page = login_of(&german, "a@x");
        assert!(page.contains("<html lang=\"de\">"), "{page}");
        assert!(page.contains("<h1>Anmelden</h1>"), "{page}");
        assert!(
            page.contains("E-Mail-Adresse oder Passwort ist falsch."),
            "{page}"
        );
        assert!(!page.contains("Password"), "{page}");
        let english = login_of(&pages.for_browser(Some("fr, en;q=0.5")), "a@x");
        assert!(english.contains("<html lang=\"en\">"), "{english}");
        assert!(english.contains("<h1>Log in</h1>"), "{english}");
        for page in every_page(&german) {
            assert!(page.contains("<html lang=\"de\">"), "{page}");
            assert!(!page.contains("Internal error"), "{page}");
        }
    }

    #[test]
    fn every_page_renders_in_every_language() {
        let pages = Pages::new("/_authgate");
        for language in pages.shared.catalogues.languages() {
            pages.in_language(language).check().unwrap();
        }
    }

    fn write(dir: &std::path::Path, name: &str, text: &str) {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn an_operator_template_replaces_the_built_in_one_and_stays_escaped() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "login.html",
            "{% extends \"base.html\" %}{% block content %}<h1 id=\"acme\">{{ t(\"login.title\") }}</h1>\
             {% include \"acme-note.html\" %}<p>{{ email }}</p>{% endblock %}",
        );
        write(
            dir.path(),
            "acme-note.html",
            "<p class=\"note\">{{ portal_title }}</p>",
        );
        write(
            dir.path(),
            "i18n/fr.toml",
            "[login]\ntitle = \"Connexion\"\n",
        );
        let pages = Pages::load(&portal_config(Some(dir.path())), "/_authgate").unwrap();
        let page = login_of(&pages, "<script>alert(1)</script>");
        assert!(page.contains("<h1 id=\"acme\">Log in</h1>"), "{page}");
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&lt;script&gt;"), "{page}");
        assert!(
            page.contains("Acme &lt;Login&gt;"),
            "the title is escaped: {page}"
        );
        let french = login_of(&pages.for_browser(Some("fr-CA")), "a@x");
        assert!(french.contains("<html lang=\"fr\">"), "{french}");
        assert!(french.contains(">Connexion</h1>"), "{french}");
        let signup = pages.signup(&samples::signup(&Default::default()));
        assert!(
            signup.contains("<h1>Sign up</h1>"),
            "the others stay: {signup}"
        );
    }

    #[test]
    fn a_broken_operator_template_is_named() {
        let refused = |name: &str, source: &str| {
            let dir = tempfile::tempdir().unwrap();
            write(dir.path(), name, source);
            match Pages::load(&portal_config(Some(dir.path())), "/_authgate") {
                Err(err @ PagesError::Template { .. }) => err.to_string(),
                Err(other) => panic!("{name}: {other}"),
                Ok(_) => panic!("{name}: {source:?} was taken"),
            }
        };
        let syntax = refused("verify.html", "{% if %}");
        assert!(
            syntax.starts_with("portal.templates_dir: template verify.html: "),
            "{syntax}"
        );
        let unknown = refused("logout.html", "{{ t(\"logout.no_such_key\") }}");
        assert!(unknown.contains("template logout.html"), "{unknown}");
        assert!(unknown.contains("logout.no_such_key"), "{unknown}");
        let base = refused("base.html", "{{ nope() }}");
        assert!(base.contains("base.html"), "{base}");
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "i18n/fr.toml", "[login]\ntitle = 1\n");
        let err = Pages::load(&portal_config(Some(dir.path())), "/p")
            .err()
            .unwrap();
        assert!(err.to_string().contains("fr.toml"), "{err}");
        let mut unknown_language = portal_config(None);
        unknown_language.default_language = "fr".into();
        let err = Pages::load(&unknown_language, "/p").err().unwrap();
        assert!(
            err.to_string().starts_with("portal.default_language: "),
            "{err}"
        );
    }

    #[test]
    fn brand_files_are_served_from_our_origin_with_their_types() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "logo.svg",
            "<svg xmlns=\"http://www.w3.org/2000/svg\"/>",
        );
        write(dir.path(), "acme.css", "main { color: teal; }");
        let mut config = portal_config(None);
        config.logo = Some(crate::config::Logo {
            path: dir.path().join("logo.svg"),
            image: crate::config::ImageType::Svg,
        });
        config.css_file = Some(dir.path().join("acme.css"));
        config.footer_links = vec![crate::config::FooterLink {
            text: "Help <desk>".into(),
            url: url::Url::parse("https://help.example.com/").unwrap(),
        }];
        let pages = Pages::load(&config, "/_authgate").unwrap();
        let page = unescape_slashes(&login_of(&pages, "a@x"));
        let css = pages.static_file("brand/portal.css").unwrap();
        assert_eq!(css.content_type, "text/css; charset=utf-8");
        assert_eq!(&css.body[..], b"main { color: teal; }");
        let logo = pages.static_file("brand/logo.svg").unwrap();
        assert_eq!(logo.content_type, "image/svg+xml");
        let built_in = page.find("/_authgate/static/authgate.css?v=").unwrap();
        let brand = page
            .find("<link rel=\"stylesheet\" href=\"/_authgate/static/brand/portal.css?v=")
            .unwrap_or_else(|| panic!("{page}"));
        assert!(built_in < brand, "the operator's styles come last: {page}");
        assert!(
            page.contains("<img class=\"logo\" src=\"/_authgate/static/brand/logo.svg?v="),
            "{page}"
        );
        assert!(
            page.contains("<a href=\"https://help.example.com/\">Help &lt;desk&gt;</a>"),
            "{page}"
        );
        assert!(pages.static_file("brand/logo.png").is_none());
        assert!(pages.static_file("brand/../acme.css").is_none());
    }
}
