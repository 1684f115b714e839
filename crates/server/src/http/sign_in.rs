//! Single sign-on for `regkeeper login` (issue 13 §4): the CLI runs the browser part
//! of the authorization code flow on a loopback redirect (RFC 8252) and the server,
//! which alone holds the client secret, builds the provider's URL and redeems the code.
//! Both endpoints need no authentication; refusals are one 401 `sso_sign_in_refused`
//! saying why.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use regkeeper_wire as wire;
use secrecy::{ExposeSecret, SecretString};
use url::{Host, Url};

use crate::clock::format_timestamp;
use crate::domain::Error;
use crate::service::oidc::sign_in::{self, Callback, Client, SignInError};
use crate::text::echo;

use super::error::{error_response, ApiError, ApiJson};
use super::ApiState;

/// `state` and `nonce` are random values the CLI makes; this bounds what is echoed.
const MAX_VALUE_CHARS: usize = 256;

/// Only a loopback `http` redirect (RFC 8252 §7.3): the code must come back to the
/// machine that asked, never to a host the request names.
fn loopback_redirect(redirect_uri: &str) -> Result<(), Error> {
    let refused = |message: String| Err(Error::invalid("invalid_redirect_uri", message));
    let Ok(url) = Url::parse(redirect_uri) else {
        return refused(format!("`{}` is not a URL", echo(redirect_uri)));
    };
    let loopback = match url.host() {
        Some(Host::Ipv4(address)) => address.is_loopback(),
        Some(Host::Ipv6(address)) => address.is_loopback(),
        _ => false,
    };
    if url.scheme() != "http"
        || !loopback
        || url.port().is_none()
        || url.fragment().is_some()
        || !url.username().is_empty()
    {
        return refused(
            "the redirect URI must be a loopback address with a port, http://127.0.0.1:PORT/PATH or http://[::1]:PORT/PATH (RFC 8252)".into(),
        );
    }
    Ok(())
}

fn bounded(name: &str, value: &str) -> Result<(), Error> {
    if value.len() < 16 || value.len() > MAX_VALUE_CHARS {
        return Err(Error::invalid(
            "invalid_sign_in",
            format!("`{name}` must be 16-{MAX_VALUE_CHARS} random characters"),
        ));
    }
    Ok(())
}

fn refusal(error: SignInError) -> Response {
    match error {
        SignInError::NotConfigured => error_response(
            StatusCode::NOT_FOUND,
            "sso_not_configured",
            error.to_string(),
        ),
        SignInError::Other(error) => ApiError(error).into_response(),
        refused => error_response(
            StatusCode::UNAUTHORIZED,
            "sso_sign_in_refused",
            refused.to_string(),
        ),
    }
}

/// Where to send the person's browser to sign in with the server's identity provider.
#[utoipa::path(post, path = "/api/v1/oidc/login/start", tag = "oidc",
    request_body = wire::SignInStart, security(()),
    responses((status = 200, body = wire::SignInStarted), (status = 400, body = wire::ErrorBody),
        (status = 404, body = wire::ErrorBody), (status = 502, body = wire::ErrorBody)))]
pub async fn start(
    State(state): State<ApiState>,
    ApiJson(input): ApiJson<wire::SignInStart>,
) -> Response {
    if let Err(error) = loopback_redirect(&input.redirect_uri)
        .and_then(|()| bounded("state", &input.state))
        .and_then(|()| bounded("nonce", &input.nonce))
        .and_then(|()| bounded("codeChallenge", &input.code_challenge))
    {
        return ApiError(error).into_response();
    }
    match sign_in::authorization_url(
        &state.app,
        &input.redirect_uri,
        &input.state,
        &input.nonce,
        &input.code_challenge,
    )
    .await
    {
        Ok(url) => Json(wire::SignInStarted {
            authorization_url: url.into(),
        })
        .into_response(),
        Err(error) => refusal(error),
    }
}

/// Redeem the code the identity provider sent to the CLI's loopback redirect for a
/// short-lived API token of the user it names.
#[utoipa::path(post, path = "/api/v1/oidc/login", tag = "oidc",
    request_body = wire::SignInInput, security(()),
    responses((status = 200, body = wire::SignedIn), (status = 400, body = wire::ErrorBody),
        (status = 401, body = wire::ErrorBody), (status = 404, body = wire::ErrorBody),
        (status = 502, body = wire::ErrorBody)))]
pub async fn complete(
    State(state): State<ApiState>,
    ApiJson(input): ApiJson<wire::SignInInput>,
) -> Response {
    if let Err(error) =
        loopback_redirect(&input.redirect_uri).and_then(|()| bounded("nonce", &input.nonce))
    {
        return ApiError(error).into_response();
    }
    let code = SecretString::from(input.code.expose().to_owned());
    let verifier = SecretString::from(input.code_verifier.expose().to_owned());
    let callback = Callback {
        code: &code,
        verifier: &verifier,
        redirect_uri: &input.redirect_uri,
        nonce: &input.nonce,
    };
    match sign_in::complete(&state.app, callback, Client::CommandLine).await {
        Ok(signed_in) => Json(wire::SignedIn {
            user: signed_in.user.name,
            token: wire::Sensitive::new(signed_in.token.expose_secret()),
            expires_at: format_timestamp(signed_in.expires_at),
        })
        .into_response(),
        Err(error) => refusal(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_redirects_are_accepted() {
        for good in [
            "http://127.0.0.1:5000/callback",
            "http://[::1]:5000/",
            "http://127.0.0.1:1",
        ] {
            assert!(loopback_redirect(good).is_ok(), "{good}");
        }
        for bad in [
            "https://127.0.0.1:5000/",
            "http://localhost:5000/",
            "http://example.com:5000/",
            "http://127.0.0.1/",
            "http://user@127.0.0.1:5000/",
            "not a url",
        ] {
            assert!(loopback_redirect(bad).is_err(), "{bad}");
        }
    }
}
