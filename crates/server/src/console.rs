//! The web console (SPEC §2.6): server-rendered pages under `/console` on the REST
//! API's listener, for people signed in with an API token. Handlers call `service`
//! with the signed-in `Principal` exactly as the REST handlers do — never the API over
//! HTTP, never SQL. `session` keeps the token sealed in a cookie, `guard` re-checks it
//! on every request and refuses forged posts, `pages` renders (maud escapes every
//! value), and here domain errors become sentences on a page.
//!
//! Every page leaves through `html`, which escapes non-printing characters in text
//! between tags (attribute values, which forms post back, stay exact), and a
//! middleware sets the Content-Security-Policy and the other security headers on every
//! answer. Failed sign-ins count in the REST API's `AuthLimiter`. The console holds no
//! state of its own (sign-outs are `service::sign_outs`, shared by every replica),
//! reads the store only to find a single sign-on token to revoke at sign-out, and
//! never puts a secret in a page, a URL, the log or a cookie in plain text.

mod credentials;
mod forms;
mod guard;
mod handlers;
mod pages;
mod paths;
mod session;
mod single_sign_on;

use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get, post};
use axum::Router;
use maud::Markup;

use crate::domain::Error;
use crate::http::ApiState;

/// Scripts, styles and images only from the console itself, no inline script or
/// style, no framing, forms only to the console.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// `/` and everything under `/console`, to be merged into the REST API's router.
pub fn router() -> Router<ApiState> {
    const CREDENTIAL: &str = "/console/workspaces/{workspace}/credentials/{name}";
    Router::new()
        .route("/", get(handlers::root))
        .route("/console", get(handlers::root))
        .route("/console/", get(handlers::home))
        .route("/console/sign-in", post(handlers::sign_in))
        .route("/console/sign-in/sso", get(single_sign_on::start))
        .route(single_sign_on::CALLBACK_PATH, get(single_sign_on::callback))
        .route("/console/sign-out", post(handlers::sign_out))
        .route("/console/workspaces", get(handlers::workspaces))
        .route("/console/workspaces/{workspace}", get(handlers::workspace))
        .route(
            "/console/workspaces/{workspace}/credentials",
            get(credentials::list).post(credentials::create),
        )
        .route(
            "/console/workspaces/{workspace}/credentials/new",
            get(credentials::new),
        )
        .route(CREDENTIAL, get(credentials::show))
        .route(
            &format!("{CREDENTIAL}/edit"),
            get(credentials::edit).post(credentials::update),
        )
        .route(&format!("{CREDENTIAL}/verify"), post(credentials::verify))
        .route(
            &format!("{CREDENTIAL}/delete"),
            get(credentials::confirm_delete).post(credentials::delete),
        )
        .route(
            "/console/workspaces/{workspace}/audit",
            get(handlers::audit),
        )
        .route("/console/detect-type", get(handlers::detect_type))
        .route("/console/static/console.css", get(handlers::stylesheet))
        .route("/console/static/console.js", get(handlers::script))
        .route("/console/static/favicon.svg", get(handlers::icon))
        .route("/console/{*rest}", any(handlers::not_found))
        .layer(middleware::map_response(security_headers))
}

/// The headers of every console answer. Pages are never cached (they show who is
/// signed in and carry CSRF tokens); the static assets set their own caching.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// An HTML answer that sets `cookies`. Every page goes out through here, so every
/// page's text is escaped by [`printable_text`].
fn html(status: StatusCode, markup: Markup, cookies: &[String]) -> Response {
    let document = printable_text(&markup.into_string()).into_owned();
    let mut response = (status, axum::response::Html(document)).into_response();
    set_cookies(&mut response, cookies);
    response
}

/// A rendered page with the non-printing characters of its text shown escaped
/// (`\n`, `\u{202e}`; `crate::text::printable`): maud escapes what HTML would
/// interpret, but a bidi override would still reorder a table cell, and NUL or a
/// zero-width character hide what a name really is. Only text between tags changes:
/// maud writes `<` and `>` inside values as entities, so every raw `<`…`>` is a tag,
/// and attribute values — links, and form fields that must post back exactly what
/// they were given — are left exact. (The console has no `<textarea>`, whose text
/// would be posted back too.)
fn printable_text(document: &str) -> std::borrow::Cow<'_, str> {
    if document.chars().all(crate::text::is_printable) {
        return std::borrow::Cow::Borrowed(document);
    }
    let mut shown = String::with_capacity(document.len() + 16);
    let mut in_tag = false;
    for character in document.chars() {
        match character {
            '<' => in_tag = true,
            '>' => in_tag = false,
            _ => {}
        }
        if in_tag {
            shown.push(character);
        } else {
            crate::text::push_printable(&mut shown, character);
        }
    }
    std::borrow::Cow::Owned(shown)
}

/// A 303 See Other to one of the console's own paths, setting `cookies`.
fn see_other(location: &str, cookies: &[String]) -> Response {
    let mut response = Redirect::to(location).into_response();
    set_cookies(&mut response, cookies);
    response
}

fn set_cookies(response: &mut Response, cookies: &[String]) {
    for cookie in cookies {
        // Cookie values are base64url and fixed words, so this never fails.
        if let Ok(value) = HeaderValue::from_str(cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
}

/// A page's heading for a failure.
fn error_title(error: &Error) -> &'static str {
    match error {
        Error::NotFound(_) | Error::Hidden(_) => "Not found",
        Error::Forbidden(_) => "Not allowed",
        Error::Unauthenticated(_) => "Signed out",
        Error::RateLimited(_) => "Too many attempts",
        Error::Upstream { .. } => "A registry or cloud service failed",
        Error::Unavailable { .. } => "Temporarily unavailable",
        Error::Internal(_) => "Something went wrong",
        Error::Invalid { .. } | Error::Unprocessable { .. } | Error::Conflict { .. } => {
            "That did not work"
        }
    }
}

/// The sentence a page shows for a domain error: the REST API's client message
/// (`http::error::client_message`, which logs internal, 502 and 503 failures once)
/// in the form's words rather than the command line's.
fn error_message(error: &Error) -> String {
    let text = match error {
        Error::NotFound(what) | Error::Hidden(what) => {
            format!("{what} was not found, or you do not have access to it")
        }
        other => forms::console_wording(&crate::http::error::client_message(other)),
    };
    sentence(&text)
}

/// Starts with a capital letter and ends with a full stop.
fn sentence(text: &str) -> String {
    let mut characters = text.trim().chars();
    let capitalised: String = characters
        .next()
        .map(|first| first.to_uppercase().chain(characters).collect())
        .unwrap_or_default();
    with_full_stop(&capitalised)
}

/// Ends with a full stop (or another sentence end) exactly once.
fn with_full_stop(text: &str) -> String {
    let text = text.trim();
    if text.ends_with(['.', '!', '?']) {
        text.to_owned()
    } else {
        format!("{text}.")
    }
}

#[cfg(test)]
mod tests;
