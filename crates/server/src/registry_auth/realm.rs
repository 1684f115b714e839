//! Whether a registry's login may be sent to the token realm its `Bearer` challenge
//! names. The challenge comes from the registry, so a hostile or compromised registry
//! (or anyone who can answer for it) could otherwise point regkeeper at any host and
//! receive the password in the token request.
//!
//! A realm is trusted when it is on the registry's own host (any port: distribution
//! and Harbor often serve their token service on another port of the same host), or
//! in the same registrable domain by the public suffix list (`registry.gitlab.com` and
//! `gitlab.com`; `registry-1.docker.io` and `auth.docker.io`; but not `a.github.io` and
//! `b.github.io`, since `github.io` is itself a public suffix), or when the operator
//! listed the pair in `REGKEEPER_OUTBOUND_TOKEN_REALMS`. IP-literal hosts are trusted
//! only by equality: addresses have no registrable domain.

use url::{Host, Url};

use crate::config::TokenRealmGrant;

/// Whether the login for `registry` (`host[:port]`, as regkeeper reaches it) may go to
/// `realm`.
pub fn realm_trusted(registry: &str, realm: &Url, grants: &[TokenRealmGrant]) -> bool {
    let Some(realm_host) = realm.host().map(normalised) else {
        return false;
    };
    let Ok(registry_url) = Url::parse(&format!("https://{registry}/")) else {
        return false;
    };
    let Some(registry_host) = registry_url.host().map(normalised) else {
        return false;
    };
    if realm_host == registry_host {
        return true;
    }
    if let (Host::Domain(registry_name), Host::Domain(realm_name)) = (&registry_host, &realm_host) {
        if let (Some(registry_domain), Some(realm_domain)) = (
            registrable_domain(registry_name),
            registrable_domain(realm_name),
        ) {
            if registry_domain == realm_domain {
                return true;
            }
        }
    }
    grants
        .iter()
        .any(|grant| grant.matches(&registry_url, realm))
}

fn normalised(host: Host<&str>) -> Host<String> {
    match host {
        Host::Domain(name) => Host::Domain(name.trim_end_matches('.').to_ascii_lowercase()),
        Host::Ipv4(address) => Host::Ipv4(address),
        Host::Ipv6(address) => Host::Ipv6(address),
    }
}

/// The registrable domain (public suffix plus one label) of a host name, or `None`
/// when the name is itself a public suffix or has no known suffix.
fn registrable_domain(name: &str) -> Option<String> {
    let domain = psl::domain(name.as_bytes())?;
    // The list's implicit `*` rule makes any unknown top-level label a suffix, so
    // `localhost` or `corp` alone has no registrable domain, while `a.corp` and
    // `b.corp` would share `corp`'s: require a suffix the list names.
    if !domain.suffix().is_known() {
        return None;
    }
    std::str::from_utf8(domain.as_bytes())
        .ok()
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(registry: &str, realm: &str) -> bool {
        realm_trusted(registry, &Url::parse(realm).unwrap(), &[])
    }

    /// Issue 12 item 8: credentials go only to a realm on the registry's own host or in
    /// its registrable domain by the public suffix list, never to another host.
    #[test]
    fn realms_in_the_registrys_host_or_registrable_domain_are_trusted() {
        for (registry, realm) in [
            ("registry-1.docker.io", "https://auth.docker.io/token"),
            ("registry.gitlab.com", "https://gitlab.com/jwt/auth"),
            ("ghcr.io", "https://ghcr.io/token"),
            ("quay.io", "https://quay.io/v2/auth"),
            (
                "myregistry.azurecr.io",
                "https://myregistry.azurecr.io/oauth2/token",
            ),
            (
                "harbor.example.com:8443",
                "https://harbor.example.com/service/token",
            ),
            ("Registry.Example.COM", "https://auth.example.com./token"),
            ("127.0.0.1:5000", "https://127.0.0.1:5001/token"),
            ("[::1]:5000", "https://[::1]:443/token"),
            ("registry.example.co.uk", "https://auth.example.co.uk/token"),
        ] {
            assert!(trusted(registry, realm), "{registry} -> {realm}");
        }
        for (registry, realm) in [
            ("registry.example.com", "https://otherhost/token"),
            ("registry.example.com", "https://auth.example.org/token"),
            ("registry.example.com", "https://example.com.evil.net/token"),
            ("127.0.0.1:5000", "https://localhost:5001/token"),
            ("localhost:5000", "https://127.0.0.1:5001/token"),
            ("127.0.0.1:5000", "https://127.0.0.2/token"),
            // Public suffixes separate their owners: github.io, co.uk, s3 buckets.
            ("alice.github.io", "https://mallory.github.io/token"),
            ("registry.example.co.uk", "https://other.co.uk/token"),
            // Unknown top-level names are not a shared domain.
            ("registry.corp", "https://auth.corp/token"),
            ("registry", "https://auth/token"),
        ] {
            assert!(!trusted(registry, realm), "{registry} -> {realm}");
        }
    }

    #[test]
    fn the_operators_grants_open_exactly_their_pairs() {
        let grants = [
            TokenRealmGrant::parse("registry.example.com=auth.example.net").unwrap(),
            TokenRealmGrant::parse("127.0.0.1:5000=localhost:9443").unwrap(),
        ];
        let allowed = |registry: &str, realm: &str| {
            realm_trusted(registry, &Url::parse(realm).unwrap(), &grants)
        };
        assert!(allowed(
            "registry.example.com",
            "https://auth.example.net/token"
        ));
        assert!(allowed(
            "registry.example.com:443",
            "https://AUTH.example.net:8443/t"
        ));
        assert!(allowed("127.0.0.1:5000", "https://localhost:9443/token"));
        assert!(!allowed("127.0.0.1:5000", "https://localhost:9444/token"));
        assert!(!allowed("127.0.0.1:5001", "https://localhost:9443/token"));
        assert!(!allowed(
            "registry.example.com",
            "https://auth.example.org/token"
        ));
        assert!(!allowed(
            "other.example.org",
            "https://auth.example.net/token"
        ));
    }
}
