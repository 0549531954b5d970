//! HTML pages, rendered by minijinja with auto-escaping on (templates end
//! in `.html`), embedded in the binary with the files they load.

pub mod assets;

use minijinja::{Environment, context};

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("login.html", include_str!("templates/login.html")),
    ("logout.html", include_str!("templates/logout.html")),
    ("verify.html", include_str!("templates/verify.html")),
    ("signup.html", include_str!("templates/signup.html")),
    ("enroll.html", include_str!("templates/enroll.html")),
    ("error.html", include_str!("templates/error.html")),
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
    /// Approved by a push (else by a code of `method`).
    pub push: bool,
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
    pub action: &'a str,
    pub csrf: &'a str,
    pub rd: &'a str,
    pub email: &'a str,
    pub message: Option<&'a str>,
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

pub struct Pages {
    env: Environment<'static>,
}

impl Pages {
    /// `prefix`: `server.path_prefix`, where the assets are served.
    pub fn new(prefix: &str) -> Self {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            // The templates are part of the binary and covered by tests.
            env.add_template(name, source)
                .unwrap_or_else(|e| panic!("template {name}: {e}"));
        }
        env.add_global("stylesheet_url", assets::STYLESHEET.url(prefix));
        env.add_global("push_script_url", assets::PUSH_SCRIPT.url(prefix));
        env.add_global("approve_script_url", assets::APPROVE_SCRIPT.url(prefix));
        Pages { env }
    }

    pub fn login(&self, view: &LoginView<'_>) -> String {
        self.render(
            "login.html",
            context! {
                action => view.action,
                csrf => view.csrf,
                rd => view.rd,
                email => view.email,
                message => view.message,
            },
        )
    }

    pub fn verify(&self, view: &VerifyView<'_>) -> String {
        let action = format!("{}/verify", view.prefix);
        let rd_query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("rd", view.rd)
            .finish();
        let switch: Vec<minijinja::Value> = view
            .others
            .iter()
            .map(|m| {
                context! {
                    label => method_label(m),
                    url => format!("{action}?method={m}&{rd_query}"),
                }
            })
            .collect();
        self.render(
            "verify.html",
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
                message => view.message,
            },
        )
    }

    pub fn enroll(&self, view: &EnrollView<'_>) -> String {
        self.render(
            "enroll.html",
            context! {
                action => format!("{}/enroll/totp", view.prefix),
                csrf => view.csrf,
                rd => view.rd,
                issuer => view.issuer,
                secret_text => view.secret_text,
                uri => view.uri,
                qr_svg => minijinja::Value::from_safe_string(view.qr_svg.to_owned()),
                was_reset => view.was_reset,
                message => view.message,
            },
        )
    }

    pub fn signup(&self, view: &SignupView<'_>) -> String {
        let field = |name: &str| view.fields.get(name).map_or("", String::as_str);
        self.render(
            "signup.html",
            context! {
                action => format!("{}/signup", view.prefix),
                login_url => format!("{}/login", view.prefix),
                csrf => view.csrf,
                name => field("name"),
                email => field("email"),
                country_code => field("country_code"),
                phone => field("phone"),
                chosen => field("second_factor"),
                methods => view.methods.iter().map(|m| context! { value => *m, label => method_label(m) }).collect::<Vec<_>>(),
                min_password => view.min_password,
                message => view.message,
            },
        )
    }

    pub fn logout(&self, action: &str, csrf: &str, user: Option<&str>) -> String {
        self.render("logout.html", context! { action, csrf, user })
    }

    pub fn approve(&self, view: &ApproveView<'_>) -> String {
        let page_url = format!("{}/approval/{}", view.prefix, view.id);
        let fields: Vec<minijinja::Value> = view
            .fields
            .iter()
            .map(|(name, value)| context! { name, value })
            .collect();
        self.render(
            "approve.html",
            context! {
                status_url => format!("{page_url}/status"),
                continue_url => format!("{page_url}/continue"),
                cancel_url => format!("{page_url}/cancel"),
                page_url,
                csrf => view.csrf,
                state => view.state,
                push => view.push,
                method_name => view.method,
                summary => view.summary,
                fields,
                method => view.request_method,
                host => view.host,
                path => view.path,
                client => view.client,
                message => view.message,
            },
        )
    }

    pub fn error(&self, status: u16, message: &str) -> String {
        self.render("error.html", context! { status, message })
    }

    fn render(&self, name: &str, ctx: minijinja::Value) -> String {
        self.env
            .get_template(name)
            .and_then(|t| t.render(ctx))
            .unwrap_or_else(|e| {
                tracing::error!(template = name, error = %e, "page rendering failed");
                "<!doctype html><title>authgate</title><p>Internal error.</p>".to_owned()
            })
    }
}

/// How a method is named to the user.
fn method_label(method: &str) -> &'static str {
    match method {
        "authy" => "Authy app or SMS",
        "totp" => "Authenticator app",
        "verify" => "Code sent to your phone or email",
        _ => "Other method",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_html_escaped() {
        let pages = Pages::new("/_authgate");
        let page = pages.login(&LoginView {
            action: "/_authgate/login",
            csrf: "tok\"en",
            rd: "http://x/?a=<script>",
            email: "<b>a@example.com</b>",
            message: Some("<i>bad</i>"),
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
                action: "/_authgate/login",
                csrf: "t",
                rd: "/",
                email: "a@x",
                message: Some("Invalid email or password."),
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
            for push in [true, false] {
                all.push(pages.approve(&ApproveView {
                    prefix: "/_authgate",
                    csrf: "t",
                    id: "abc",
                    state,
                    push,
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
            for (method, sends_codes) in [("authy", true), ("totp", false), ("verify", true)] {
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
        let view = |state, push| ApproveView {
            prefix: "/_authgate",
            csrf: "t",
            id: "abc",
            state,
            push,
            method: "authy",
            summary: "Send 5 to <b>Bob</b>",
            fields: &fields,
            request_method: "POST",
            host: "app.local",
            path: "/transfer",
            client: "192.0.2.1",
            message: None,
        };
        let pending = unescape_slashes(&pages.approve(&view("pending", true)));
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
        let approved = unescape_slashes(&pages.approve(&view("approved", true)));
        assert!(
            approved.contains("action=\"/_authgate/approval/abc/continue\""),
            "{approved}"
        );
        assert!(
            !approved.contains("<script src"),
            "nothing to poll: {approved}"
        );
        let by_code = pages.approve(&view("pending", false));
        assert!(by_code.contains("name=\"code\""), "{by_code}");
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
}
