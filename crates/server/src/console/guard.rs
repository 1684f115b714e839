//! Who is asking and whether to believe a form: the signed-in extractor (the session
//! cookie opened and its API token re-authenticated on every request, so a revoked
//! token ends the session at once), the same-origin and CSRF checks every
//! state-changing POST passes, and what each answer carries along (`Visit`: the
//! Secure flag and the flash message).

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use maud::Markup;

use crate::crypto::MasterKeys;
use crate::domain::identity::Principal;
use crate::domain::Error;
use crate::http::ApiState;
use crate::service::identity;

use super::forms::FormFields;
use super::pages::{self, Shell, REFUSED_MESSAGE};
use super::session::{self, Flash, Lifetime, Session, FLASH_COOKIE, SESSION_COOKIE};
use super::{error_message, error_title, html, see_other};

/// Whether the request reached the server over TLS. The listener speaks plain HTTP, so
/// TLS means a terminating proxy in front that says so with `X-Forwarded-Proto: https`.
pub fn over_tls(headers: &HeaderMap) -> bool {
    first_value(headers, "x-forwarded-proto")
        .is_some_and(|proto| proto.eq_ignore_ascii_case("https"))
}

fn first_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)?
        .to_str()
        .ok()?
        .split(',')
        .next()
        .map(str::trim)
}

/// Whether a POST may be from one of the console's own pages: not marked cross-site or
/// same-site by the browser (`Sec-Fetch-Site`), and with an `Origin`, if any, naming
/// this server — its `Host` (or the request's authority, or a proxy's
/// `X-Forwarded-Host`, which a page of another site cannot set) and, behind TLS, the
/// https scheme. Because the console's pages say `Referrer-Policy: no-referrer`,
/// browsers send `Origin: null` on their form posts; that is accepted only together
/// with `Sec-Fetch-Site: same-origin`.
pub fn same_origin(headers: &HeaderMap, authority: Option<&str>) -> bool {
    let fetch_site = first_value(headers, "sec-fetch-site").map(str::to_ascii_lowercase);
    if matches!(fetch_site.as_deref(), Some("cross-site" | "same-site")) {
        return false;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    if origin.trim() == "null" {
        return fetch_site.as_deref() == Some("same-origin");
    }
    let Some((scheme, host)) = origin.split_once("://") else {
        return false;
    };
    let scheme = scheme.to_ascii_lowercase();
    if !matches!(scheme.as_str(), "http" | "https")
        || (over_tls(headers) && scheme != "https")
        || host.is_empty()
        || host.contains(['/', '@'])
    {
        return false;
    }
    let origin_host = normalized_host(host, &scheme);
    [
        headers
            .get(header::HOST)
            .and_then(|host| host.to_str().ok()),
        authority,
        first_value(headers, "x-forwarded-host"),
    ]
    .into_iter()
    .flatten()
    .any(|own| normalized_host(own, &scheme) == origin_host)
}

fn normalized_host(host: &str, scheme: &str) -> String {
    let host = host.trim().to_ascii_lowercase();
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    host.strip_suffix(default_port)
        .map_or_else(|| host.clone(), str::to_owned)
}

/// The client's address, for the failed sign-in limit.
pub struct ClientAddress(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip()),
        ))
    }
}

/// What every answer to one request carries: whether cookies get `Secure`, and the
/// flash message this page shows (and then removes).
pub struct Visit {
    pub secure: bool,
    pub flash: Option<Flash>,
    had_flash: bool,
}

impl Visit {
    pub fn of(headers: &HeaderMap, keys: Option<&MasterKeys>) -> Self {
        let value = session::cookie(headers, FLASH_COOKIE).filter(|value| !value.is_empty());
        Self {
            secure: over_tls(headers),
            flash: value
                .zip(keys)
                .and_then(|(value, keys)| session::open_flash(keys, value)),
            had_flash: value.is_some(),
        }
    }

    pub fn cookie(&self, name: &str, value: &str, lifetime: Lifetime) -> String {
        session::set_cookie(name, value, lifetime, self.secure)
    }

    /// A page; the flash it shows is removed.
    pub fn page(&self, status: StatusCode, markup: Markup) -> Response {
        self.page_with(status, markup, Vec::new())
    }

    pub fn page_with(
        &self,
        status: StatusCode,
        markup: Markup,
        mut cookies: Vec<String>,
    ) -> Response {
        if self.had_flash {
            cookies.push(self.cookie(FLASH_COOKIE, "", Lifetime::Expired));
        }
        html(status, markup, &cookies)
    }

    /// A 303 to `location`, with a flash message for the page there.
    pub fn redirect(
        &self,
        location: &str,
        flash: Option<&Flash>,
        keys: Option<&MasterKeys>,
        mut cookies: Vec<String>,
    ) -> Response {
        if let Some(value) = flash
            .zip(keys)
            .and_then(|(flash, keys)| session::seal_flash(keys, flash))
        {
            cookies.push(self.cookie(FLASH_COOKIE, &value, Lifetime::Flash));
        }
        see_other(location, &cookies)
    }

    /// The 403 for a POST that failed the origin or CSRF check; nothing was changed.
    pub fn refused(&self, shell: Option<&Shell<'_>>) -> Response {
        tracing::info!("console.form_refused");
        self.page(
            StatusCode::FORBIDDEN,
            pages::problem(shell, "Request refused", REFUSED_MESSAGE),
        )
    }

    /// The sign-in page with a message, after the session ended.
    fn signed_out(&self, keys: Option<&MasterKeys>, flash: &Flash) -> Response {
        let cookies = vec![self.cookie(SESSION_COOKIE, "", Lifetime::Expired)];
        self.redirect("/console/", Some(flash), keys, cookies)
    }
}

/// A signed-in person. Extracting it opens the session cookie and authenticates its
/// API token again; otherwise the request is answered with a 303 to the sign-in page
/// (or a page explaining why the server cannot tell who it is).
pub struct SignedIn {
    pub principal: Principal,
    pub csrf: String,
    pub visit: Visit,
    pub keys: Arc<MasterKeys>,
    session: Session,
}

impl FromRequestParts<ApiState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        let keys = state.app.keyring.keys();
        let visit = Visit::of(&parts.headers, keys.as_deref().ok());
        let keys = match keys {
            Ok(keys) => keys,
            Err(error) => return Err(problem(&visit, None, &error)),
        };
        let Some(value) =
            session::cookie(&parts.headers, SESSION_COOKIE).filter(|value| !value.is_empty())
        else {
            return Err(visit.redirect(
                "/console/",
                Some(&Flash::status("Sign in to continue.")),
                Some(&keys),
                Vec::new(),
            ));
        };
        let Some(session) = session::open_session(&keys, value, state.app.now())
            .filter(|session| !state.app.sign_outs.contains(session.id()))
        else {
            return Err(visit.signed_out(
                Some(&keys),
                &Flash::alert("Your session has ended; sign in again."),
            ));
        };
        let principal = match identity::authenticate(&state.app, session.token()).await {
            Ok(principal) if principal.role.is_none() => principal,
            Ok(_) => {
                return Err(visit.signed_out(Some(&keys), &Flash::alert(WORKLOAD_ROLE_MESSAGE)));
            }
            Err(Error::Unauthenticated(reason)) => {
                return Err(visit.signed_out(
                    Some(&keys),
                    &Flash::alert(format!("Your session has ended: {reason}. Sign in again.")),
                ));
            }
            Err(error) => return Err(problem(&visit, None, &error)),
        };
        let Some(csrf) = session::csrf_token(&keys, &session) else {
            return Err(problem(
                &visit,
                None,
                &Error::internal("console CSRF key not derivable"),
            ));
        };
        Ok(Self {
            principal,
            csrf,
            visit,
            keys,
            session,
        })
    }
}

pub const WORKLOAD_ROLE_MESSAGE: &str =
    "That is a workload role's API token. The console is for people: sign in with a user's API token.";

impl SignedIn {
    pub fn shell(&self) -> Shell<'_> {
        Shell {
            user: &self.principal.user_name,
            csrf: &self.csrf,
        }
    }

    pub fn flash(&self) -> Option<&Flash> {
        self.visit.flash.as_ref()
    }

    /// The origin and CSRF checks of a state-changing POST; `Err` is the 403 to answer.
    #[expect(clippy::result_large_err, reason = "the error is the response to send")]
    pub fn check_form(
        &self,
        headers: &HeaderMap,
        authority: Option<&str>,
        fields: &FormFields,
    ) -> Result<(), Response> {
        let token = fields.get("csrf").unwrap_or_default();
        if same_origin(headers, authority) && session::csrf_valid(&self.keys, &self.session, token)
        {
            Ok(())
        } else {
            Err(self.visit.refused(Some(&self.shell())))
        }
    }

    pub fn page(&self, status: StatusCode, markup: Markup) -> Response {
        self.visit.page(status, markup)
    }

    pub fn redirect(&self, location: &str, flash: Option<&Flash>) -> Response {
        self.visit
            .redirect(location, flash, Some(&self.keys), Vec::new())
    }

    /// A page that explains `error`.
    pub fn problem(&self, error: &Error) -> Response {
        problem(&self.visit, Some(&self.shell()), error)
    }
}

/// A page that explains `error`, or the sign-in page when it means the caller is no
/// longer signed in.
pub fn problem(visit: &Visit, shell: Option<&Shell<'_>>, error: &Error) -> Response {
    if let Error::Unauthenticated(reason) = error {
        return visit.signed_out(
            None,
            &Flash::alert(format!("Your session has ended: {reason}. Sign in again.")),
        );
    }
    visit.page(
        crate::http::error::status_of(error),
        pages::problem(shell, error_title(error), &error_message(error)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn same_origin_posts_pass() {
        let host = ("host", "regkeeper.example:7070");
        assert!(same_origin(&headers(&[host]), None));
        assert!(same_origin(
            &headers(&[host, ("origin", "http://regkeeper.example:7070")]),
            None
        ));
        assert!(same_origin(
            &headers(&[
                host,
                ("origin", "http://regkeeper.example:7070"),
                ("sec-fetch-site", "same-origin")
            ]),
            None
        ));
        // HTTP/2 has no Host header: the request's authority stands in.
        assert!(same_origin(
            &headers(&[("origin", "http://127.0.0.1:7070")]),
            Some("127.0.0.1:7070")
        ));
        // Behind a TLS proxy that forwards the host it was asked for.
        assert!(same_origin(
            &headers(&[
                ("host", "10.0.0.5:7070"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "keys.example.com"),
                ("origin", "https://keys.example.com"),
            ]),
            None
        ));
        assert!(same_origin(
            &headers(&[
                ("host", "keys.example.com:443"),
                ("x-forwarded-proto", "https"),
                ("origin", "https://keys.example.com")
            ]),
            None
        ));
    }

    #[test]
    fn cross_origin_posts_are_refused() {
        let host = ("host", "regkeeper.example:7070");
        for origin in [
            "http://evil.example",
            "http://regkeeper.example:7071",
            "http://regkeeper.example",
            "null",
            "file://regkeeper.example:7070",
            "http://regkeeper.example:7070/path",
            "",
        ] {
            assert!(
                !same_origin(&headers(&[host, ("origin", origin)]), None),
                "{origin}"
            );
        }
        assert!(!same_origin(
            &headers(&[host, ("sec-fetch-site", "cross-site")]),
            None
        ));
        // Downgraded: the proxy says TLS but the page was plain http.
        assert!(!same_origin(
            &headers(&[
                ("host", "keys.example.com"),
                ("x-forwarded-proto", "https"),
                ("origin", "http://keys.example.com")
            ]),
            None
        ));
    }

    #[test]
    fn tls_is_what_the_proxy_says() {
        assert!(over_tls(&headers(&[("x-forwarded-proto", "https")])));
        assert!(over_tls(&headers(&[("x-forwarded-proto", "HTTPS, http")])));
        assert!(!over_tls(&headers(&[("x-forwarded-proto", "http")])));
        assert!(!over_tls(&HeaderMap::new()));
    }
}
