//! "Sign in with SSO" (issue 13 §4): the browser's half of the OIDC authorization code
//! flow. `start` makes `state`, `nonce` and a PKCE verifier, keeps them in a sealed,
//! short-lived `SameSite=Lax` cookie (see `session::set_pending_cookie` for why not
//! Strict) and sends the browser to the provider; `callback` checks the `state` it
//! brings back against that cookie and hands the code to `service::oidc::sign_in`,
//! whose API token the session then carries exactly as a pasted one.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use secrecy::{ExposeSecret, SecretString};

use crate::crypto::MasterKeys;
use crate::domain::Error;
use crate::http::ApiState;
use crate::service::oidc::sign_in::{self, Callback, Client, SignInError};
use crate::service::App;
use crate::text::echo;

use super::forms::FormFields;
use super::guard::{over_tls, problem, Visit};
use super::handlers::{not_found, sign_in_page};
use super::session::{self, Flash, Lifetime, Pending, PENDING_COOKIE, SESSION_COOKIE};
use super::{error_message, html, pages, see_other};

pub const CALLBACK_PATH: &str = "/console/sign-in/sso/callback";

/// The callback's absolute URL as the browser reaches the console: the scheme a TLS
/// proxy reports, and its `X-Forwarded-Host` or the `Host`. A forged host only makes
/// a redirect URI the provider has not registered, which it refuses.
fn callback_url(headers: &HeaderMap) -> Option<String> {
    let host = headers
        .get("x-forwarded-host")
        .or_else(|| headers.get(header::HOST))?
        .to_str()
        .ok()?
        .split(',')
        .next()?
        .trim();
    let plausible = !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b".-:[]".contains(&byte));
    if !plausible {
        return None;
    }
    let scheme = if over_tls(headers) { "https" } else { "http" };
    Some(format!("{scheme}://{host}{CALLBACK_PATH}"))
}

/// What both halves of the sign-in check first: single sign-on is configured (else
/// the console has no such page) and the master keys that seal the pending sign-in's
/// cookie are loaded. Otherwise, the response to give.
async fn entered(app: &App, headers: &HeaderMap) -> Result<(Visit, Arc<MasterKeys>), Response> {
    if app.config.single_sign_on.is_none() {
        return Err(not_found().await);
    }
    let keys = app.keyring.keys();
    let visit = Visit::of(headers, keys.as_deref().ok());
    match keys {
        Ok(keys) => Ok((visit, keys)),
        Err(error) => Err(problem(&visit, None, &error)),
    }
}

/// `GET /console/sign-in/sso`: off to the identity provider.
pub async fn start(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    let app = &state.app;
    let (visit, keys) = match entered(app, &headers).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let Some(redirect_uri) = callback_url(&headers) else {
        return problem(
            &visit,
            None,
            &Error::invalid(
                "invalid_host",
                "the request's Host header is not a host name",
            ),
        );
    };
    let pending = Pending {
        state: session::new_random_value(),
        nonce: session::new_random_value(),
        verifier: SecretString::from(session::new_random_value()),
        redirect_uri,
    };
    let challenge = sign_in::code_challenge(pending.verifier.expose_secret());
    let url = match sign_in::authorization_url(
        app,
        &pending.redirect_uri,
        &pending.state,
        &pending.nonce,
        &challenge,
    )
    .await
    {
        Ok(url) => url,
        Err(error) => return refused(&state, &visit, &headers, &error),
    };
    let Some(sealed) = session::seal_pending(&keys, &pending, app.now()) else {
        return problem(
            &visit,
            None,
            &Error::internal("console SSO key not derivable"),
        );
    };
    see_other(
        url.as_str(),
        &[session::set_pending_cookie(
            &sealed,
            Lifetime::Session,
            visit.secure,
        )],
    )
}

/// The sign-in page again, with what went wrong; the pending sign-in is over.
fn refused(state: &ApiState, visit: &Visit, headers: &HeaderMap, error: &SignInError) -> Response {
    let (status, message) = match error {
        SignInError::Other(error) => (crate::http::error::status_of(error), error_message(error)),
        SignInError::NotConfigured => (StatusCode::NOT_FOUND, super::sentence(&error.to_string())),
        SignInError::UnknownUser(_) | SignInError::Disabled(_) => {
            (StatusCode::FORBIDDEN, super::sentence(&error.to_string()))
        }
        _ => (
            StatusCode::UNAUTHORIZED,
            super::sentence(&error.to_string()),
        ),
    };
    refused_with(state, visit, headers, status, message)
}

fn refused_with(
    state: &ApiState,
    visit: &Visit,
    headers: &HeaderMap,
    status: StatusCode,
    message: String,
) -> Response {
    let message = format!(
        "Single sign-on did not sign you in: {}",
        super::sentence(&message)
    );
    let mut response = sign_in_page(state, visit, headers, status, Some(Flash::alert(message)));
    if let Ok(value) = session::set_pending_cookie("", Lifetime::Expired, visit.secure).parse() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// The pending sign-in and the code, if the provider's answer belongs to it; else the
/// audit reason and the sentence for the page.
fn returned(
    pending: Option<Pending>,
    fields: &FormFields,
) -> Result<(Pending, SecretString), (&'static str, String)> {
    let Some(pending) = pending else {
        return Err((
            "no_pending_sign_in",
            "this sign-in took longer than 10 minutes or was started in another browser; start again".into(),
        ));
    };
    if let Some(error) = fields.get("error") {
        let description = fields
            .get("error_description")
            .map(|text| format!(" ({})", echo(text)))
            .unwrap_or_default();
        return Err((
            "provider_error",
            format!(
                "the identity provider answered `{}`{description}",
                echo(error)
            ),
        ));
    }
    let given_state = fields.get("state").unwrap_or_default();
    if !session::sign_in_token_matches(Some(&pending.state), given_state) {
        return Err((
            "state_mismatch",
            "the answer does not belong to the sign-in this browser started (state); start again"
                .into(),
        ));
    }
    let code = SecretString::from(fields.text("code"));
    if code.expose_secret().is_empty() {
        return Err(("no_code", "the answer carries no authorization code".into()));
    }
    Ok((pending, code))
}

/// `GET /console/sign-in/sso/callback?code=…&state=…`: back from the provider.
pub async fn callback(
    State(state): State<ApiState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let app = &state.app;
    let (visit, keys) = match entered(app, &headers).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let fields = FormFields::parse(query.as_deref().unwrap_or_default().as_bytes());
    let pending = session::cookie(&headers, PENDING_COOKIE)
        .and_then(|value| session::open_pending(&keys, value, app.now()));
    let (pending, code) = match returned(pending, &fields) {
        Ok(found) => found,
        Err((reason, message)) => {
            sign_in::record_refusal(
                app,
                "oidc:unknown".into(),
                Client::Console,
                reason,
                &message,
            )
            .await;
            return refused_with(&state, &visit, &headers, StatusCode::BAD_REQUEST, message);
        }
    };
    let callback = Callback {
        code: &code,
        verifier: &pending.verifier,
        redirect_uri: &pending.redirect_uri,
        nonce: &pending.nonce,
    };
    let signed_in = match sign_in::complete(app, callback, Client::Console).await {
        Ok(signed_in) => signed_in,
        Err(error) => return refused(&state, &visit, &headers, &error),
    };
    let Some(sealed) = session::seal_session(&keys, signed_in.token.expose_secret(), app.now())
    else {
        return problem(
            &visit,
            None,
            &Error::internal("console session key not derivable"),
        );
    };
    html(
        StatusCode::OK,
        pages::signed_in(&signed_in.user.name),
        &[
            visit.cookie(SESSION_COOKIE, &sealed, Lifetime::Session),
            session::set_pending_cookie("", Lifetime::Expired, visit.secure),
        ],
    )
}
