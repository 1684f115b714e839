//! The DNS resolver of the outbound client. Filtering the answers here, inside the
//! connector, rather than resolving once to check and letting the HTTP stack resolve
//! again to connect, is what makes the checked address the one connected to: a name
//! that answers with a public address for the check and 169.254.169.254 for the
//! connection (DNS rebinding) gets no second chance.

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::{OutboundError, Policy};

pub(super) struct FilteringResolver {
    pub(super) policy: Arc<Policy>,
}

impl Resolve for FilteringResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = Arc::clone(&self.policy);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // Port 0: reqwest puts the URL's port on every address it gets back.
            let answers = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|error| OutboundError::Dns {
                    host: host.clone(),
                    message: error.to_string(),
                })?;
            let addresses = filter(&policy, &host, answers)?;
            Ok::<Addrs, Box<dyn std::error::Error + Send + Sync>>(Box::new(addresses.into_iter()))
        })
    }
}

/// The answers the policy allows; an error when there are none, naming the first
/// forbidden answer so the operator sees which network to allow.
fn filter(
    policy: &Policy,
    host: &str,
    answers: impl IntoIterator<Item = SocketAddr>,
) -> Result<Vec<SocketAddr>, OutboundError> {
    let mut allowed = Vec::new();
    let mut first_refusal = None;
    for answer in answers {
        match policy.forbidden_rule(answer.ip()) {
            None => allowed.push(answer),
            Some(rule) => {
                first_refusal.get_or_insert(OutboundError::DestinationForbidden {
                    host: host.to_owned(),
                    address: Some(answer.ip()),
                    rule,
                });
            }
        }
    }
    if !allowed.is_empty() {
        return Ok(allowed);
    }
    Err(first_refusal.unwrap_or_else(|| OutboundError::Dns {
        host: host.to_owned(),
        message: "no addresses found".to_owned(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::policy::rule;

    fn policy(allow: &[&str]) -> Policy {
        Policy {
            allow_networks: allow
                .iter()
                .map(|network| network.parse().unwrap())
                .collect(),
            http_registries: Vec::new(),
        }
    }

    fn answers(list: &[&str]) -> Vec<SocketAddr> {
        list.iter()
            .map(|address| SocketAddr::new(address.parse().unwrap(), 0))
            .collect()
    }

    #[test]
    fn forbidden_answers_are_dropped_and_allowed_ones_kept() {
        let kept = filter(
            &policy(&[]),
            "mixed.example",
            answers(&["10.0.0.1", "93.184.216.34", "::1"]),
        )
        .unwrap();
        assert_eq!(kept, answers(&["93.184.216.34"]));
    }

    #[test]
    fn only_forbidden_answers_name_the_first_one() {
        let error = filter(
            &policy(&[]),
            "localhost",
            answers(&["127.0.0.1", "169.254.169.254"]),
        )
        .unwrap_err();
        assert!(matches!(
            error,
            OutboundError::DestinationForbidden { ref host, address: Some(address), rule }
                if host == "localhost" && address.to_string() == "127.0.0.1" && rule == rule::LOOPBACK
        ));
        let empty = filter(&policy(&[]), "nothing.example", Vec::new()).unwrap_err();
        assert_eq!(empty.code(), "dns_failed");
    }

    #[test]
    fn allowed_networks_pass() {
        let kept = filter(
            &policy(&["127.0.0.0/8"]),
            "localhost",
            answers(&["127.0.0.1"]),
        );
        assert_eq!(kept.unwrap(), answers(&["127.0.0.1"]));
    }
}
