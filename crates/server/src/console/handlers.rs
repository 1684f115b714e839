//! Signing in and out, the workspace picker, the audit view, type detection and the
//! static assets. The credential pages are in `credentials`.
//!
//! Signing in: the form carries a double-submit token that must equal the
//! `regkeeper_csrf` cookie and come from this origin; the token is authenticated (a
//! workload role's is refused) and sealed into the session cookie, and the browser goes
//! to the workspaces — not to the page it first asked for. Signing out expires the
//! cookie, records the session id for every replica (`service::sign_outs`), so a
//! copied cookie stops working everywhere at once, and revokes a single sign-on's token.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use zeroize::Zeroizing;

use crate::domain::Error;
use crate::http::ApiState;
use crate::service::oidc::sign_in::Client;
use crate::service::{audit_log, identity};

use super::forms::{detect, FormFields};
use super::guard::{problem, same_origin, ClientAddress, SignedIn, Visit, WORKLOAD_ROLE_MESSAGE};

use super::session::{self, Flash, Lifetime, CSRF_COOKIE, SESSION_COOKIE};
use super::{error_message, html, pages, paths, see_other};

/// How many audit entries the audit view shows.
const AUDIT_LIMIT: i64 = 200;
/// Assets change only with the binary; an hour keeps an upgrade visible soon.
const ASSET_CACHE: &str = "public, max-age=3600";

pub async fn root() -> Response {
    see_other("/console/", &[])
}

/// The sign-in page, or the workspaces for someone signed in.
pub async fn home(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    let keys = state.app.keyring.keys().ok();
    let visit = Visit::of(&headers, keys.as_deref());
    let signed_in = keys
        .as_deref()
        .zip(session::cookie(&headers, SESSION_COOKIE))
        .and_then(|(keys, value)| session::open_session(keys, value, state.app.now()))
        .is_some_and(|session| !state.app.sign_outs.contains(session.id()));
    if signed_in {
        return see_other("/console/workspaces", &[]);
    }
    sign_in_page(
        &state,
        &visit,
        &headers,
        StatusCode::OK,
        visit.flash.clone(),
    )
}

/// The sign-in form with its double-submit token: the one in the browser's cookie if
/// it has a plausible one, else a new one set now.
pub(super) fn sign_in_page(
    state: &ApiState,
    visit: &Visit,
    headers: &HeaderMap,
    status: StatusCode,
    notice: Option<Flash>,
) -> Response {
    let existing = session::cookie(headers, CSRF_COOKIE).filter(|value| {
        (32..=128).contains(&value.len())
            && value
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
    });
    let (token, cookies) = match existing {
        Some(token) => (token.to_owned(), Vec::new()),
        None => {
            let token = session::new_sign_in_token();
            let cookie = visit.cookie(CSRF_COOKIE, &token, Lifetime::Browser);
            (token, vec![cookie])
        }
    };
    let methods = pages::SignInMethods {
        single_sign_on: state.app.config.single_sign_on.is_some(),
        token: state.app.config.console_token_sign_in,
    };
    visit.page_with(
        status,
        pages::sign_in(&token, notice.as_ref(), methods),
        cookies,
    )
}

pub async fn sign_in(
    State(state): State<ApiState>,
    ClientAddress(address): ClientAddress,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let app = &state.app;
    let keys = app.keyring.keys();
    let visit = Visit::of(&headers, keys.as_deref().ok());
    let Ok(body) = body else {
        return visit.refused(None);
    };
    let fields = FormFields::parse(&body);
    let given = fields.get("csrf").unwrap_or_default();
    if !same_origin(
        &headers,
        uri.authority().map(|authority| authority.as_str()),
    ) || !session::sign_in_token_matches(session::cookie(&headers, CSRF_COOKIE), given)
    {
        return visit.refused(None);
    }
    let again = |status: StatusCode, message: String| {
        sign_in_page(
            &state,
            &visit,
            &headers,
            status,
            Some(Flash::alert(message)),
        )
    };
    if !app.config.console_token_sign_in {
        return again(
            StatusCode::FORBIDDEN,
            "Signing in with an API token is turned off on this server; use Sign in with SSO."
                .into(),
        );
    }
    let now = app.now();
    if state.limiter.blocked(address, now) {
        return again(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many failed sign-ins from your address; wait a minute and try again.".into(),
        );
    }
    let token = Zeroizing::new(fields.text("token"));
    if token.is_empty() {
        return again(StatusCode::BAD_REQUEST, "Enter your API token.".into());
    }
    let outcome = if token.chars().count() > session::MAX_TOKEN_CHARS {
        Err(Error::Unauthenticated("the API token is not valid"))
    } else {
        identity::authenticate(app, &token).await
    };
    let principal = match outcome {
        Ok(principal) => principal,
        Err(error @ Error::Unauthenticated(_)) => {
            app.metrics.auth_failures.inc();
            state.limiter.record_failure(address, now);
            tracing::info!(client.address = %address, reason = %error, "auth.failed");
            return again(StatusCode::UNAUTHORIZED, sign_in_failure(&error));
        }
        Err(error) => {
            return again(crate::http::error::status_of(&error), error_message(&error));
        }
    };
    if principal.role.is_some() {
        return again(StatusCode::FORBIDDEN, WORKLOAD_ROLE_MESSAGE.into());
    }
    let keys = match keys {
        Ok(keys) => keys,
        Err(error) => {
            return again(
                crate::http::error::status_of(&error),
                format!(
                    "The server cannot keep you signed in while its master key is unavailable; an operator can see why with `regkeeper key status`. ({})",
                    error_message(&error)
                ),
            );
        }
    };
    let Some(sealed) = session::seal_session(&keys, &token, now) else {
        return problem(
            &visit,
            None,
            &Error::internal("console session key not derivable"),
        );
    };
    tracing::info!(user.name = %principal.user_name, client.address = %address, "console.signed_in");
    see_other(
        "/console/workspaces",
        &[visit.cookie(SESSION_COOKIE, &sealed, Lifetime::Session)],
    )
}

fn sign_in_failure(error: &Error) -> String {
    match error {
        Error::Unauthenticated(reason) if reason.contains("revoked") => {
            "That API token has been revoked. Ask an administrator for a new one.".into()
        }
        Error::Unauthenticated(reason) if reason.contains("expired") => {
            "That API token has expired. Ask an administrator for a new one.".into()
        }
        _ => "That API token is not valid. Check that you pasted all of it; regkeeper tokens start with rk_.".into(),
    }
}

/// Ends the session. A usable session must prove the form is its own; without one
/// there is nothing to protect and the cookie is simply removed.
pub async fn sign_out(
    State(state): State<ApiState>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let keys = state.app.keyring.keys().ok();
    let visit = Visit::of(&headers, keys.as_deref());
    if let Some(keys) = &keys {
        let open = session::cookie(&headers, SESSION_COOKIE)
            .and_then(|value| session::open_session(keys, value, state.app.now()));
        if let Some(open) = open {
            let fields = body.map(|body| FormFields::parse(&body)).ok();
            let token = fields
                .as_ref()
                .and_then(|fields| fields.get("csrf"))
                .unwrap_or_default();
            if !same_origin(
                &headers,
                uri.authority().map(|authority| authority.as_str()),
            ) || !session::csrf_valid(keys, &open, token)
            {
                return visit.refused(None);
            }
            let recorded = state
                .app
                .sign_outs
                .record(&state.app, *open.id(), open.expires_at)
                .await;
            if let Err(error) = recorded {
                // Ended here all the same; other replicas learn of it only if its token
                // is revoked below or when the cookie expires.
                tracing::warn!(error.code = error.code(), "console.sign_out_record_failed");
            }
            revoke_single_sign_on_token(&state, open.token()).await;
        }
    }
    visit.redirect(
        "/console/",
        Some(&Flash::status("You have signed out.")),
        keys.as_deref(),
        vec![visit.cookie(SESSION_COOKIE, "", Lifetime::Expired)],
    )
}

/// A single sign-on's API token exists only for its console session, so signing out
/// revokes it: a copied session cookie then stops working on every replica, not only
/// on this one. A pasted token is the person's own and stays.
async fn revoke_single_sign_on_token(state: &ApiState, token: &str) {
    let app = &state.app;
    let Ok(principal) = identity::authenticate(app, token).await else {
        return;
    };
    let is_session_token = matches!(
        app.store.api_token_by_id(&principal.token_id).await,
        Ok(Some(row)) if row.name == Client::Console.token_name()
    );
    if is_session_token {
        if let Err(error) = identity::revoke_token(app, &principal, &principal.token_id).await {
            tracing::warn!(error.code = error.code(), "console.sign_out_revoke_failed");
        }
    }
}

pub async fn workspaces(State(state): State<ApiState>, signed: SignedIn) -> Response {
    match identity::list_workspaces(&state.app, &signed.principal).await {
        Ok(list) => signed.page(
            StatusCode::OK,
            pages::workspaces(&signed.shell(), signed.flash(), &list),
        ),
        Err(error) => signed.problem(&error),
    }
}

pub async fn workspace(Path(workspace): Path<String>) -> Response {
    see_other(&paths::credentials(&workspace), &[])
}

pub async fn audit(
    State(state): State<ApiState>,
    signed: SignedIn,
    Path(workspace): Path<String>,
) -> Response {
    match audit_log::list(&state.app, &signed.principal, Some(&workspace), AUDIT_LIMIT).await {
        Ok(entries) => signed.page(
            StatusCode::OK,
            pages::audit(&signed.shell(), &workspace, &entries, AUDIT_LIMIT),
        ),
        Err(error) => signed.problem(&error),
    }
}

/// `GET /console/detect-type?registry=…`: what the add form would detect. A pure
/// function of the text, so it needs no session.
pub async fn detect_type(RawQuery(query): RawQuery) -> Response {
    let registry = query
        .as_deref()
        .map(|query| FormFields::parse(query.as_bytes()).text("registry"))
        .unwrap_or_default();
    Json(detect(&registry).json()).into_response()
}

pub async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, ASSET_CACHE),
        ],
        include_str!("assets/console.css"),
    )
        .into_response()
}

pub async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, ASSET_CACHE),
        ],
        include_str!("assets/console.js"),
    )
        .into_response()
}

pub async fn icon() -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, ASSET_CACHE),
        ],
        include_str!("assets/favicon.svg"),
    )
        .into_response()
}

pub(super) async fn not_found() -> Response {
    html(
        StatusCode::NOT_FOUND,
        pages::problem(
            None,
            "Page not found",
            "There is no console page at this address. Start again from your workspaces.",
        ),
        &[],
    )
}
