//! What every portal form shares: the CSRF token for the page (and the
//! pre-session cookie it is bound to), and reading a post whose token
//! checks out.

use std::collections::HashMap;

use http::{Request, StatusCode};
use hyper::body::Incoming;

use super::Gateway;
use super::answer::{Answer, Form};
use super::error::GatewayError;
use super::request;

const CSRF_HEADER: &str = "x-csrf-token";

/// A post read off the wire whose CSRF token checks out.
pub(super) struct Post {
    pub head: Request<()>,
    pub form: HashMap<String, String>,
}

/// A post that stops: its body was unreadable or its CSRF token did not
/// check out. `post.form` holds what could be read, so a page can be shown
/// again with the user's input.
pub(super) struct RefusedPost {
    pub post: Post,
    pub err: GatewayError,
}

impl From<RefusedPost> for GatewayError {
    fn from(refused: RefusedPost) -> Self {
        refused.err
    }
}

impl Gateway {
    /// A form with a CSRF token, setting the CSRF cookie when the browser
    /// has none yet.
    pub(super) fn form<B>(
        &self,
        req: &Request<B>,
        status: StatusCode,
        form: Form,
    ) -> Result<Answer, GatewayError> {
        let (value, set_cookie) = match self.cookies.csrf_cookie(req.headers()) {
            Some(value) => (value, None),
            None => {
                let (value, set) = self
                    .cookies
                    .new_csrf_cookie()
                    .ok_or(GatewayError::NoRandomness)?;
                (value, Some(set))
            }
        };
        let answer = Answer::form(status, form, self.cookies.csrf_token(&value));
        Ok(match set_cookie {
            Some(cookie) => answer.with_cookie(cookie),
            None => answer,
        })
    }

    /// Reads a portal post (at most `server.max_form_bytes`) and checks its
    /// CSRF token.
    pub(super) async fn posted(&self, req: Request<Incoming>) -> Result<Post, RefusedPost> {
        let (parts, body) = req.into_parts();
        let head = Request::from_parts(parts, ());
        let read = request::read_form(head.headers(), body, self.portal.max_form_bytes).await;
        let (form, checked) = match read {
            Ok(form) => {
                let checked = self.check_csrf(&head, &form);
                (form, checked)
            }
            Err(err) => (HashMap::new(), Err(err)),
        };
        let post = Post { head, form };
        match checked {
            Ok(()) => Ok(post),
            Err(err) => Err(RefusedPost { post, err }),
        }
    }

    /// Every state-changing post carries a token bound to the CSRF cookie,
    /// in the `csrf` field or (JSON clients) the `X-CSRF-Token` header.
    fn check_csrf(
        &self,
        req: &Request<()>,
        form: &HashMap<String, String>,
    ) -> Result<(), GatewayError> {
        let cookie = self
            .cookies
            .csrf_cookie(req.headers())
            .ok_or(GatewayError::Csrf)?;
        let token = form
            .get("csrf")
            .map(String::as_str)
            .or_else(|| req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()))
            .ok_or(GatewayError::Csrf)?;
        if self.cookies.csrf_valid(&cookie, token) {
            Ok(())
        } else {
            Err(GatewayError::Csrf)
        }
    }
}
