//! Single sign-on for people (issue 13 §4): the OIDC authorization code flow with PKCE
//! (S256), `state` and `nonce`, shared by the console and `regkeeper login`.
//!
//! Hand-written rather than built on the `openidconnect` crate: that crate brings its
//! own HTTP plumbing and its own ID-token verifier (JWKS fetching, algorithm choice),
//! while here discovery, JWKS and the token endpoint must be reached only through
//! `outbound` and an ID token must pass exactly the checks the exchange applies (the
//! same key cache, algorithm allow-list and clock). What is left is two requests and a
//! few comparisons.
//!
//! The browser (or the CLI) holds `state`, `nonce` and the PKCE verifier; the server
//! holds the client secret. [`authorization_url`] builds the provider's URL;
//! [`complete`] trades the code for tokens at the provider's token endpoint, verifies
//! the ID token (issuer exactly as configured, audience = client id, `azp` if present,
//! nonce, signature, lifetime), finds the user named by the configured claim and issues
//! an ordinary API token of that user expiring after [`SIGN_IN_LIFETIME_MS`]: what the
//! console's session carries and what `regkeeper login` saves. Every sign-in, accepted
//! or refused, is audited as `auth.sso_sign_in` with the reason of a refusal.
//!
//! Limits: expired sign-in tokens stay in `api_tokens` (expired or revoked, never
//! usable) until the user's tokens are cleaned up; the configured claim cannot be an
//! email address, since user names hold no `@`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use url::Url;

use crate::audit::Outcome;
use crate::config::SingleSignOn;
use crate::domain::identity::{personal_workspace_name, validate_user_name, WorkspaceKind};
use crate::domain::Error;
use crate::outbound::OutboundClient;
use crate::store::{NewUser, TokenOwner, UserRow, WorkspaceRow};
use crate::text::echo;

use super::super::identity::{generate_token, token_row};
use super::super::{new_id, App};
use super::{audiences, claim_text, label, parse, principal_label, verified_claims, ExchangeError};

/// How long a sign-in lasts: the console's session, and the token `regkeeper login`
/// saves. A working day, so people sign in once a day and a lost laptop's token dies
/// by the next.
pub const SIGN_IN_LIFETIME_MS: i64 = 12 * 60 * 60 * 1000;
/// The token endpoint's answer holds an ID token, an access token and perhaps a
/// refresh token: a few KiB.
const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;
/// What regkeeper asks the provider for: the ID token and the claims that name people.
const SCOPES: &str = "openid profile email";
/// The claims tried, in order, when no `REGKEEPER_OIDC_USERNAME_CLAIM` is set.
const DEFAULT_CLAIMS: [&str; 2] = ["preferred_username", "email"];

/// Where a sign-in comes from, which names the token it issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    Console,
    CommandLine,
}

impl Client {
    /// The issued token's name, by which sign-out recognises the console's.
    pub fn token_name(self) -> &'static str {
        match self {
            Self::Console => "sso: console",
            Self::CommandLine => "sso: regkeeper login",
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Console => "console",
            Self::CommandLine => "cli",
        }
    }
}

/// Why a sign-in failed. Never holds a code, verifier, token or the client secret.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("single sign-on is not configured on this server")]
    NotConfigured,
    /// The provider refused the code (used, expired, wrong verifier or redirect URI).
    #[error("the identity provider refused the sign-in: {0}")]
    Provider(String),
    #[error("the identity provider's ID token was rejected: {0}")]
    Rejected(String),
    #[error("{0}")]
    NoUserName(String),
    #[error("no regkeeper user is named `{0}`; ask an administrator to create it")]
    UnknownUser(String),
    #[error("the regkeeper user `{0}` is disabled")]
    Disabled(String),
    #[error(transparent)]
    Other(#[from] Error),
}

impl SignInError {
    /// The short reason in the audit entry of a refusal.
    fn reason(&self) -> &'static str {
        match self {
            Self::NotConfigured => "not_configured",
            Self::Provider(_) => "provider_refused",
            Self::Rejected(_) => "id_token_rejected",
            Self::NoUserName(_) => "no_user_name",
            Self::UnknownUser(_) => "unknown_user",
            Self::Disabled(_) => "user_disabled",
            Self::Other(_) => "failed",
        }
    }
}

impl From<ExchangeError> for SignInError {
    fn from(error: ExchangeError) -> Self {
        match error {
            ExchangeError::Rejected(check) => Self::Rejected(check),
            ExchangeError::Other(error) => Self::Other(error),
        }
    }
}

/// A person signed in: their user and a fresh API token of theirs.
pub struct SignedIn {
    pub user: UserRow,
    pub token: SecretString,
    pub expires_at: i64,
}

/// The PKCE S256 challenge of `verifier` (RFC 7636 §4.2).
pub fn code_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Whether `verifier` is shaped as RFC 7636 §4.1 requires: 43-128 unreserved characters.
pub fn valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-._~".contains(&byte))
}

fn configured(app: &App) -> Result<&SingleSignOn, SignInError> {
    app.config
        .single_sign_on
        .as_ref()
        .ok_or(SignInError::NotConfigured)
}

fn endpoint(document: &serde_json::Value, name: &str) -> Result<Url, SignInError> {
    document
        .get(name)
        .and_then(serde_json::Value::as_str)
        .and_then(|text| Url::parse(text).ok())
        .ok_or_else(|| {
            SignInError::Other(Error::upstream(
                "oidc_discovery_invalid",
                format!("the identity provider's discovery document has no valid `{name}`"),
            ))
        })
}

async fn discovery(
    app: &App,
    issuer: &str,
) -> Result<std::sync::Arc<serde_json::Value>, SignInError> {
    app.oidc_keys
        .discovery(&app.outbound, issuer, app.now())
        .await
        .map_err(|error| {
            SignInError::Other(Error::upstream(
                "oidc_issuer_unreachable",
                format!("the identity provider's discovery document: {error}"),
            ))
        })
}

/// The provider's authorization URL for a code flow returning to `redirect_uri`.
pub async fn authorization_url(
    app: &App,
    redirect_uri: &str,
    state: &str,
    nonce: &str,
    challenge: &str,
) -> Result<Url, SignInError> {
    let settings = configured(app)?;
    let document = discovery(app, &settings.issuer).await?;
    let mut url = endpoint(&document, "authorization_endpoint")?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &settings.client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("scope", SCOPES)
        .append_pair("state", state)
        .append_pair("nonce", nonce)
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256");
    Ok(url)
}

/// What the browser (or CLI) brings back, and what it kept from the start.
pub struct Callback<'a> {
    pub code: &'a SecretString,
    pub verifier: &'a SecretString,
    pub redirect_uri: &'a str,
    pub nonce: &'a str,
}

/// Completes a sign-in; audited whatever the outcome.
pub async fn complete(
    app: &App,
    callback: Callback<'_>,
    client: Client,
) -> Result<SignedIn, SignInError> {
    let mut principal = None;
    let result = attempt(app, &callback, client, &mut principal).await;
    let actor = principal.unwrap_or_else(|| "oidc:unknown".to_owned());
    match &result {
        Ok(signed_in) => {
            tracing::info!(user.name = %signed_in.user.name, client = client.as_str(), "sso.signed_in");
        }
        Err(error) => {
            record_refusal(app, actor, client, error.reason(), &error.to_string()).await;
        }
    }
    result
}

/// Audits and logs a refused sign-in: by the service, or by the console before it
/// (a `state` that does not match, an error the provider sent back).
pub async fn record_refusal(
    app: &App,
    actor: String,
    client: Client,
    reason: &'static str,
    message: &str,
) {
    let mut record = app.record(None, "auth.sso_sign_in");
    record.actor = actor;
    let record = record.outcome(Outcome::Denied).detail(serde_json::json!({
        "client": client.as_str(),
        "reason": reason,
        "message": label(message),
    }));
    if let Err(audit_error) = app.audit_writer.append(record).await {
        tracing::error!(error.code = audit_error.code(), "audit.append_failed");
    }
    tracing::info!(reason, client = client.as_str(), "sso.refused");
}

async fn attempt(
    app: &App,
    callback: &Callback<'_>,
    client: Client,
    principal: &mut Option<String>,
) -> Result<SignedIn, SignInError> {
    let settings = configured(app)?;
    if !valid_verifier(callback.verifier.expose_secret()) {
        return Err(SignInError::Provider(
            "the PKCE verifier is not 43-128 unreserved characters".into(),
        ));
    }
    let id_token = redeem(app, settings, callback).await?;
    let jwt = id_token.expose_secret();
    let (header, payload, algorithm) = parse(jwt)?;
    let issuer = claim_text(&payload, "iss").unwrap_or_default();
    let subject = claim_text(&payload, "sub").unwrap_or_default();
    *principal = Some(principal_label(&issuer, &subject));
    let algorithm = algorithm?;
    if issuer != settings.issuer {
        return Err(SignInError::Rejected(format!(
            "issuer: `{}` is not the configured provider",
            echo(&issuer)
        )));
    }
    let (claims, _) = verified_claims(app, jwt, &header, algorithm, &issuer).await?;
    if !audiences(&claims).contains(&settings.client_id.as_str()) {
        return Err(SignInError::Rejected("audience".into()));
    }
    // OIDC Core §3.1.3.7: an authorized party, when named, must be this client.
    if claim_text(&claims, "azp").is_some_and(|party| party != settings.client_id) {
        return Err(SignInError::Rejected("authorized party (azp)".into()));
    }
    let nonce = claim_text(&claims, "nonce").unwrap_or_default();
    if nonce.is_empty() || !bool::from(nonce.as_bytes().ct_eq(callback.nonce.as_bytes())) {
        return Err(SignInError::Rejected(
            "nonce: the ID token was not issued for this sign-in".into(),
        ));
    }
    if subject.is_empty() {
        return Err(SignInError::Rejected("the ID token has no `sub`".into()));
    }
    let name = user_name(settings, &claims)?;
    let user = match app.store.user_by_name(&name).await? {
        Some(user) if user.disabled_at.is_some() => return Err(SignInError::Disabled(name)),
        Some(user) => Some(user),
        None if settings.auto_create => None,
        None => return Err(SignInError::UnknownUser(name)),
    };
    let now = app.now();
    let token = generate_token();
    let expires_at = now + SIGN_IN_LIFETIME_MS;
    let principal = principal.clone().unwrap_or_default();
    let detail = |token_id: &str| {
        serde_json::json!({
            "client": client.as_str(),
            "issuer": label(&issuer),
            "subject": label(&subject),
            "tokenId": token_id,
            "expiresAt": expires_at,
        })
    };
    // The session's token, for a known user or one this sign-in creates.
    let token_for = |user_id: &str| {
        token_row(
            TokenOwner::User(user_id.to_owned()),
            client.token_name(),
            &token,
            now,
            Some(expires_at),
        )
    };
    let user = match user {
        Some(user) => {
            let row = token_for(&user.id);
            let mut record = app.record(None, "auth.sso_sign_in").target(&user.name);
            record.actor = user.name.clone();
            app.store
                .insert_api_token(&row, record.detail(detail(&row.id)))
                .await?;
            user
        }
        None => {
            let user = UserRow {
                id: new_id(),
                name: name.clone(),
                admin: false,
                created_at: now,
                disabled_at: None,
            };
            let row = token_for(&user.id);
            let workspace = WorkspaceRow {
                id: new_id(),
                name: personal_workspace_name(&name),
                kind: WorkspaceKind::Personal,
                created_at: now,
            };
            let mut detail = detail(&row.id);
            detail["created"] = serde_json::Value::Bool(true);
            let mut record = app
                .record(None, "user.create")
                .target(&name)
                .workspace(Some(&workspace.id), &workspace.name)
                .detail(detail);
            // Created by the provider's word, not by an administrator.
            record.actor = principal;
            let new = NewUser {
                user,
                workspace,
                token: Some(row),
            };
            match app.store.create_user(&new, record).await {
                Ok(()) => {}
                // Two first sign-ins at once: the other created the user; sign in again.
                Err(Error::Conflict { .. }) => {
                    return Err(SignInError::Other(Error::conflict(
                        "sign_in_raced",
                        "the user was being created by another sign-in; try again",
                    )))
                }
                Err(error) => return Err(error.into()),
            }
            app.caches.forget_identities();
            new.user
        }
    };
    Ok(SignedIn {
        user,
        token,
        expires_at,
    })
}

/// Trades the code for the provider's tokens and returns the ID token. The client
/// authenticates with HTTP Basic (`client_secret_basic`, every provider's default);
/// redirects are not followed, so the secret reaches the token endpoint and no other.
async fn redeem(
    app: &App,
    settings: &SingleSignOn,
    callback: &Callback<'_>,
) -> Result<SecretString, SignInError> {
    let document = discovery(app, &settings.issuer).await?;
    let token_endpoint = endpoint(&document, "token_endpoint")?;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", callback.code.expose_secret()),
        ("redirect_uri", callback.redirect_uri),
        ("code_verifier", callback.verifier.expose_secret()),
        ("client_id", settings.client_id.as_str()),
    ];
    let encode =
        |text: &str| url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
    let request = app
        .outbound
        .request(reqwest::Method::POST, token_endpoint)
        .basic_auth(
            encode(&settings.client_id),
            Some(encode(settings.client_secret.expose_secret())),
        )
        .header(reqwest::header::ACCEPT, "application/json")
        .form(&form);
    let unreachable =
        |message: String| SignInError::Other(Error::upstream("oidc_issuer_unreachable", message));
    let response =
        app.outbound.send_once(request).await.map_err(|error| {
            unreachable(format!("the identity provider's token endpoint: {error}"))
        })?;
    let status = response.status();
    let body = OutboundClient::read_capped_secret(response, MAX_TOKEN_RESPONSE_BYTES)
        .await
        .map_err(|error| unreachable(format!("the identity provider's token endpoint: {error}")))?;
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if !status.is_success() {
        // RFC 6749 §5.2: `error` is a fixed word; the description is the provider's.
        let error =
            claim_text(&answer, "error").unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
        let description = claim_text(&answer, "error_description")
            .map(|text| format!(" ({})", echo(&text)))
            .unwrap_or_default();
        return Err(if status.is_server_error() {
            unreachable(format!(
                "the identity provider's token endpoint answered {error}"
            ))
        } else {
            SignInError::Provider(format!("{}{description}", echo(&error)))
        });
    }
    claim_text(&answer, "id_token")
        .map(SecretString::from)
        .ok_or_else(|| SignInError::Rejected("the provider's answer has no ID token".into()))
}

/// The regkeeper user name the ID token's claims name, lower-cased (providers keep the
/// case people typed; regkeeper names are lower-case).
fn user_name(settings: &SingleSignOn, claims: &serde_json::Value) -> Result<String, SignInError> {
    let candidates: Vec<&str> = match &settings.username_claim {
        Some(claim) => vec![claim.as_str()],
        None => DEFAULT_CLAIMS.to_vec(),
    };
    let Some((claim, value)) = candidates.iter().find_map(|claim| {
        claim_text(claims, claim)
            .filter(|value| !value.is_empty())
            .map(|value| (*claim, value))
    }) else {
        return Err(SignInError::NoUserName(format!(
            "the ID token has no `{}` claim to name a regkeeper user",
            candidates.join("` or `")
        )));
    };
    let name = value.to_lowercase();
    validate_user_name(&name).map_err(|_| {
        SignInError::NoUserName(format!(
            "the provider names you `{}` (claim `{claim}`), which is not a regkeeper user name (1-64 lower-case letters, digits, `-`, `_` or `.`); an administrator can set REGKEEPER_OIDC_USERNAME_CLAIM to a claim that holds one",
            echo(&value)
        ))
    })?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_challenge_is_rfc_7636_s256() {
        // RFC 7636 appendix B.
        assert_eq!(
            code_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(valid_verifier(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        ));
        assert!(!valid_verifier("short"));
        assert!(!valid_verifier(&"a".repeat(129)));
        assert!(!valid_verifier(&format!("{}!", "a".repeat(50))));
    }

    fn settings(claim: Option<&str>) -> SingleSignOn {
        SingleSignOn {
            issuer: "https://idp.example.com".into(),
            client_id: "regkeeper".into(),
            client_secret: SecretString::from("s".to_owned()),
            username_claim: claim.map(str::to_owned),
            auto_create: false,
        }
    }

    /// Issue 13 item 4: the user is named by `preferred_username`, else `email`, or by
    /// the configured claim alone.
    #[test]
    fn the_user_name_comes_from_the_configured_claim() {
        let claims = serde_json::json!({
            "preferred_username": "Alice", "email": "bob", "login": "carol",
        });
        assert_eq!(user_name(&settings(None), &claims).unwrap(), "alice");
        let only_email = serde_json::json!({ "email": "bob" });
        assert_eq!(user_name(&settings(None), &only_email).unwrap(), "bob");
        assert_eq!(
            user_name(&settings(Some("login")), &claims).unwrap(),
            "carol"
        );
        assert!(matches!(
            user_name(&settings(Some("login")), &only_email),
            Err(SignInError::NoUserName(_))
        ));
        let email = serde_json::json!({ "email": "alice@example.com" });
        let Err(SignInError::NoUserName(message)) = user_name(&settings(None), &email) else {
            panic!("an email address is no user name");
        };
        assert!(
            message.contains("REGKEEPER_OIDC_USERNAME_CLAIM"),
            "{message}"
        );
    }
}
