//! What every portal form shares: the CSRF token for the page (and the
//! pre-session cookie it is bound to), and reading a post whose token
//! checks out.

use std::collections::HashMap;

use http::{Request, Response};
use hyper::body::Incoming;

use super::Gateway;
use super::error::GatewayError;
use super::request;
use super::response::{self, Format};
use crate::wire::Body;

const CSRF_HEADER: &str = "x-csrf-token";

/// A post read off the wire. `error` is set when the body was unreadable
/// or the CSRF token did not check out; `form` then holds what could be
/// read, so a page can be shown again with the user's input.
pub(super) struct Posted {
    pub head: Request<()>,
    pub form: HashMap<String, String>,
    pub error: Option<GatewayError>,
}

impl Posted {
    /// The form, or the error that stops the post.
    pub fn checked(self) -> Result<(Request<()>, HashMap<String, String>), GatewayError> {
        match self.error {
            Some(err) => Err(err),
            None => Ok((self.head, self.form)),
        }
    }
}

impl Gateway {
    /// Renders a page that carries a CSRF token, setting the CSRF cookie
    /// when the browser has none yet.
    pub(super) fn form_page<B>(
        &self,
        req: &Request<B>,
        format: Format,
        render: impl FnOnce(&str) -> Response<Body>,
    ) -> Response<Body> {
        let grant = match self.cookies.csrf_cookie(req.headers()) {
            Some(value) => Some((value, None)),
            None => self
                .cookies
                .new_csrf_cookie()
                .map(|(value, set)| (value, Some(set))),
        };
        let Some((value, set_cookie)) = grant else {
            let err = GatewayError::StoreUnavailable("no randomness for a CSRF cookie".into());
            return response::error(&err, format, &self.pages);
        };
        let page = render(&self.cookies.csrf_token(&value));
        response::with_cookies(page, set_cookie.as_slice())
    }

    /// Reads a portal post (at most `server.max_form_bytes`) and checks its
    /// CSRF token.
    pub(super) async fn posted(&self, req: Request<Incoming>) -> Posted {
        let (parts, body) = req.into_parts();
        let head = Request::from_parts(parts, ());
        let (form, error) =
            match request::read_form(head.headers(), body, self.max_form_bytes).await {
                Ok(form) => {
                    let error = self.check_csrf(&head, &form).err();
                    (form, error)
                }
                Err(err) => (HashMap::new(), Some(err)),
            };
        Posted { head, form, error }
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
