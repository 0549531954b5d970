//! HTML pages, rendered by minijinja with auto-escaping on (templates end
//! in `.html`), embedded in the binary.

use minijinja::{Environment, context};

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("login.html", include_str!("templates/login.html")),
    ("logout.html", include_str!("templates/logout.html")),
    ("error.html", include_str!("templates/error.html")),
];

/// What the login form shows.
pub struct LoginView<'a> {
    pub action: &'a str,
    pub csrf: &'a str,
    pub rd: &'a str,
    pub email: &'a str,
    pub message: Option<&'a str>,
}

pub struct Pages {
    env: Environment<'static>,
}

impl Pages {
    pub fn new() -> Self {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            // The templates are part of the binary and covered by tests.
            env.add_template(name, source)
                .unwrap_or_else(|e| panic!("template {name}: {e}"));
        }
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

    pub fn logout(&self, action: &str, csrf: &str, user: Option<&str>) -> String {
        self.render("logout.html", context! { action, csrf, user })
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

impl Default for Pages {
    fn default() -> Self {
        Pages::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_html_escaped() {
        let pages = Pages::new();
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

    #[test]
    fn every_template_renders() {
        let pages = Pages::new();
        assert!(
            pages
                .logout("/_authgate/logout", "t", Some("a@x"))
                .contains("a@x")
        );
        assert!(pages.error(502, "Upstream down").contains("502"));
    }
}
