//! Which IP addresses an outbound request may reach. A pure function over one address so
//! the rule is the same whether the address came from a URL literal, a DNS answer or a
//! redirect, and so it can be tested exhaustively without a network.
//!
//! The default is deny for everything that is not ordinary public unicast: a tenant who
//! can make regkeeper fetch a URL must not be able to reach the cloud metadata service,
//! the server's own admin ports or the private network it runs in. Operators open
//! specific networks with `REGKEEPER_OUTBOUND_ALLOW_NETWORKS` (tests open loopback).
//!
//! Cloud metadata and link-local service addresses ([`METADATA_ADDRESSES`]) are refused
//! before the operator's networks are consulted: allowing `10.0.0.0/8` or `fc00::/7`
//! for a private registry must not open AWS's `fd00:ec2::254`, and Azure's wireserver
//! `168.63.129.16` is a public address that no range rule catches. Only an allow entry
//! naming exactly that one address (`168.63.129.16/32`) opens it.
//!
//! [`Policy`] applies the rules, with the operator's settings, to a URL before anything
//! is sent: its IP literal or metadata host name, and its scheme (https, or plain http
//! for a listed `host:port`). The client, its resolver and its redirect policy share it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use url::{Host, Url};

use super::OutboundError;

/// The rules, as named in error messages ("{rule} addresses are not allowed").
pub mod rule {
    pub const LOOPBACK: &str = "loopback";
    pub const UNSPECIFIED: &str = "unspecified";
    pub const THIS_NETWORK: &str = "this-network (0.0.0.0/8)";
    pub const PRIVATE: &str = "private";
    pub const SHARED: &str = "shared (carrier-grade NAT, 100.64.0.0/10)";
    pub const LINK_LOCAL: &str = "link-local";
    pub const MULTICAST: &str = "multicast";
    pub const BROADCAST: &str = "broadcast";
    pub const DOCUMENTATION: &str = "documentation";
    pub const BENCHMARKING: &str = "benchmarking";
    pub const RESERVED: &str = "reserved";
    pub const METADATA: &str = "cloud metadata service";
}

/// Cloud providers' instance metadata, credential and link-local service addresses.
/// Each answers any process on the instance, often with credentials, so none of them is
/// ever a registry. Sources, each the provider's own documentation:
/// - AWS: instance metadata `169.254.169.254` and `fd00:ec2::254` (EC2 User Guide,
///   "Access instance metadata"); Route 53 Resolver `169.254.169.253` and
///   `fd00:ec2::253` (VPC User Guide, "Amazon DNS server"); Time Sync `169.254.169.123`
///   and `fd00:ec2::123` (EC2 User Guide, "Set the time"); ECS task metadata and
///   credentials `169.254.170.2` (ECS Developer Guide, "Task metadata endpoint");
///   EKS Pod Identity agent `169.254.170.23` and `fd00:ec2::23` (EKS User Guide, "EKS
///   Pod Identity").
/// - Google Cloud: metadata server `169.254.169.254` and `fd20:ce::254` (Compute Engine,
///   "About VM metadata"); the names in [`METADATA_HOSTS`].
/// - Azure: Instance Metadata Service `169.254.169.254`; the wireserver / platform
///   virtual IP `168.63.129.16` (Azure Virtual Network, "What is IP address
///   168.63.129.16?").
/// - Alibaba Cloud: instance metadata `100.100.100.200` (ECS, "Instance metadata").
/// - Oracle Cloud: instance metadata `169.254.169.254` and `192.0.0.192` (OCI,
///   "Getting Instance Metadata").
/// - Tencent Cloud: `169.254.0.23` (CVM, "Querying Instance Metadata").
/// - DigitalOcean, Hetzner, OpenStack, IBM Cloud, Huawei Cloud: `169.254.169.254`.
pub const METADATA_ADDRESSES: &[&str] = &[
    "169.254.169.254",
    "169.254.169.253",
    "169.254.169.123",
    "169.254.170.2",
    "169.254.170.23",
    "169.254.0.23",
    "168.63.129.16",
    "100.100.100.200",
    "192.0.0.192",
    "fd00:ec2::254",
    "fd00:ec2::253",
    "fd00:ec2::123",
    "fd00:ec2::23",
    "fd20:ce::254",
];

/// Host names that lead to a metadata service from inside a cloud network (compared
/// without case and without a trailing dot): Google's `metadata.google.internal`, its
/// short form and `metadata.goog`; AWS's `instance-data` names; Tencent's.
pub const METADATA_HOSTS: &[&str] = &[
    "metadata.google.internal",
    "metadata",
    "metadata.goog",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.tencentyun.com",
];

/// Whether `host` (a URL's host name) is one of [`METADATA_HOSTS`].
pub fn is_metadata_host(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    METADATA_HOSTS
        .iter()
        .any(|known| known.eq_ignore_ascii_case(host))
}

/// Whether `address`, or the IPv4 address an IPv6 form of it leads to, is a metadata
/// address that `allow` does not name exactly. The embedded forms are looked at here
/// because an allow entry such as `::ffff:0:0/96` would otherwise open them before
/// they are judged by their IPv4 address.
fn metadata_refused(address: IpAddr, allow: &[IpNet]) -> bool {
    let named_exactly = |candidate: IpAddr| {
        allow.iter().any(|network| {
            network.prefix_len() == network.max_prefix_len() && network.addr() == candidate
        })
    };
    let refused = |candidate: IpAddr| {
        METADATA_ADDRESSES.iter().any(|known| {
            known
                .parse::<IpAddr>()
                .is_ok_and(|known| known == candidate)
        }) && !named_exactly(candidate)
    };
    match address {
        IpAddr::V4(_) => refused(address),
        IpAddr::V6(v6) => {
            refused(address) || embedded_ipv4(v6).is_some_and(|v4| refused(IpAddr::V4(v4)))
        }
    }
}

/// The IPv4 address an IPv6 address leads to: mapped, compatible, NAT64 or 6to4.
fn embedded_ipv4(address: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(address);
    if let Some(mapped) = address.to_ipv4_mapped() {
        return Some(mapped);
    }
    if bits >> 32 == 0 || prefix_matches_v6(bits, 0x0064_ff9b_u128 << 96, 96) {
        return Some(Ipv4Addr::from(bits as u32));
    }
    if prefix_matches_v6(bits, 0x2002_u128 << 112, 16) {
        return Some(Ipv4Addr::from((bits >> 80) as u32));
    }
    None
}

/// IPv4 special-purpose ranges (IANA registry), most specific first where they nest.
const IPV4_RULES: &[(Ipv4Addr, u8, &str)] = &[
    (Ipv4Addr::new(255, 255, 255, 255), 32, rule::BROADCAST),
    (Ipv4Addr::new(0, 0, 0, 0), 32, rule::UNSPECIFIED),
    (Ipv4Addr::new(0, 0, 0, 0), 8, rule::THIS_NETWORK),
    (Ipv4Addr::new(127, 0, 0, 0), 8, rule::LOOPBACK),
    (Ipv4Addr::new(10, 0, 0, 0), 8, rule::PRIVATE),
    (Ipv4Addr::new(172, 16, 0, 0), 12, rule::PRIVATE),
    (Ipv4Addr::new(192, 168, 0, 0), 16, rule::PRIVATE),
    (Ipv4Addr::new(100, 64, 0, 0), 10, rule::SHARED),
    // Also holds most metadata services, refused on their own in METADATA_ADDRESSES.
    (Ipv4Addr::new(169, 254, 0, 0), 16, rule::LINK_LOCAL),
    // IETF protocol assignments (DS-Lite, NAT64 discovery, ...): never a registry.
    (Ipv4Addr::new(192, 0, 0, 0), 24, rule::RESERVED),
    (Ipv4Addr::new(192, 0, 2, 0), 24, rule::DOCUMENTATION),
    (Ipv4Addr::new(198, 51, 100, 0), 24, rule::DOCUMENTATION),
    (Ipv4Addr::new(203, 0, 113, 0), 24, rule::DOCUMENTATION),
    // The deprecated 6to4 relay anycast.
    (Ipv4Addr::new(192, 88, 99, 0), 24, rule::RESERVED),
    (Ipv4Addr::new(198, 18, 0, 0), 15, rule::BENCHMARKING),
    (Ipv4Addr::new(224, 0, 0, 0), 4, rule::MULTICAST),
    (Ipv4Addr::new(240, 0, 0, 0), 4, rule::RESERVED),
];

/// IPv6 ranges that are forbidden outright. The ranges that embed an IPv4 address
/// (mapped, compatible, NAT64, 6to4) are handled before this table is consulted.
const IPV6_RULES: &[(Ipv6Addr, u8, &str)] = &[
    (
        Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0),
        8,
        rule::MULTICAST,
    ),
    (
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0),
        10,
        rule::LINK_LOCAL,
    ),
    // Deprecated site-local: as private as unique-local in practice.
    (
        Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0),
        10,
        rule::PRIVATE,
    ),
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7, rule::PRIVATE),
    // Local-use IPv4/IPv6 translation (RFC 8215): leads into a private network.
    (
        Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0),
        48,
        rule::PRIVATE,
    ),
    (
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
        32,
        rule::DOCUMENTATION,
    ),
    (
        Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0),
        20,
        rule::DOCUMENTATION,
    ),
    (
        Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0),
        48,
        rule::BENCHMARKING,
    ),
    // IETF protocol assignments, Teredo (2001::/32, which tunnels to arbitrary IPv4)
    // and ORCHID among them.
    (
        Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0),
        23,
        rule::RESERVED,
    ),
    (
        Ipv6Addr::new(0x0100, 0, 0, 0, 0, 0, 0, 0),
        64,
        rule::RESERVED,
    ),
];

/// Why `address` may not be reached, or `None` when it may: it is ordinary public
/// unicast, or it lies inside one of the operator's `allow` networks — except a cloud
/// metadata address, which only an allow entry of exactly that address opens.
///
/// IPv6 forms that carry an IPv4 address (`::ffff:a.b.c.d`, `::a.b.c.d`,
/// `64:ff9b::a.b.c.d`, `2002:AABB:CCDD::/48`) are judged by the IPv4 address they lead
/// to, so `::ffff:127.0.0.1` is loopback and allowing `127.0.0.0/8` allows it too.
pub fn forbidden_rule(address: IpAddr, allow: &[IpNet]) -> Option<&'static str> {
    if metadata_refused(address, allow) {
        return Some(rule::METADATA);
    }
    if allow.iter().any(|network| network.contains(&address)) {
        return None;
    }
    match address {
        IpAddr::V4(address) => ipv4_rule(address),
        IpAddr::V6(address) => ipv6_rule(address, allow),
    }
}

fn ipv4_rule(address: Ipv4Addr) -> Option<&'static str> {
    let bits = u32::from(address);
    IPV4_RULES
        .iter()
        .find(|(network, length, _)| prefix_matches_v4(bits, u32::from(*network), *length))
        .map(|(_, _, rule)| *rule)
}

fn ipv6_rule(address: Ipv6Addr, allow: &[IpNet]) -> Option<&'static str> {
    let bits = u128::from(address);
    if address.is_unspecified() {
        return Some(rule::UNSPECIFIED);
    }
    if address.is_loopback() {
        return Some(rule::LOOPBACK);
    }
    // The operating system connects `::ffff:a.b.c.d` to a.b.c.d itself.
    if let Some(embedded) = address.to_ipv4_mapped() {
        return forbidden_rule(IpAddr::V4(embedded), allow);
    }
    // Deprecated IPv4-compatible form `::a.b.c.d`: judged by its IPv4 address, and
    // never reachable as itself.
    if bits >> 32 == 0 {
        let embedded = Ipv4Addr::from(bits as u32);
        return forbidden_rule(IpAddr::V4(embedded), allow).or(Some(rule::RESERVED));
    }
    // NAT64 well-known prefix: a gateway forwards to the embedded IPv4 address.
    if prefix_matches_v6(bits, 0x0064_ff9b_u128 << 96, 96) {
        return forbidden_rule(IpAddr::V4(Ipv4Addr::from(bits as u32)), allow);
    }
    // 6to4: the IPv4 address of the tunnel end point sits in bits 16..48.
    if prefix_matches_v6(bits, 0x2002_u128 << 112, 16) {
        let embedded = Ipv4Addr::from((bits >> 80) as u32);
        return forbidden_rule(IpAddr::V4(embedded), allow);
    }
    if let Some((_, _, rule)) = IPV6_RULES
        .iter()
        .find(|(network, length, _)| prefix_matches_v6(bits, u128::from(*network), *length))
    {
        return Some(rule);
    }
    // Only 2000::/3 is allocated as global unicast; anything else is not a registry.
    if !prefix_matches_v6(bits, 0x2000_u128 << 112, 3) {
        return Some(rule::RESERVED);
    }
    None
}

fn prefix_matches_v4(bits: u32, network: u32, length: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(length)).unwrap_or(0);
    bits & mask == network & mask
}

fn prefix_matches_v6(bits: u128, network: u128, length: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(length)).unwrap_or(0);
    bits & mask == network & mask
}

/// What the checks need, shared by the client, its resolver and its redirect policy.
pub(super) struct Policy {
    pub(super) allow_networks: Vec<IpNet>,
    /// Lower-case `host:port`, IPv6 hosts in brackets (as `Url::host_str` gives them).
    pub(super) http_registries: Vec<String>,
}

impl Policy {
    pub(super) fn forbidden_rule(&self, address: IpAddr) -> Option<&'static str> {
        forbidden_rule(address, &self.allow_networks)
    }

    pub(super) fn check_url(&self, url: &Url) -> Result<(), OutboundError> {
        let (Some(host), Some(host_text)) = (url.host(), url.host_str()) else {
            return Err(OutboundError::Other("the URL has no host".to_owned()));
        };
        // Destination before scheme: `http://169.254.169.254/` is refused for where it
        // goes, which is the more useful thing to tell.
        let address = match host {
            Host::Ipv4(address) => Some(IpAddr::V4(address)),
            Host::Ipv6(address) => Some(IpAddr::V6(address)),
            // Metadata names are refused as names, since inside the cloud they resolve
            // to the metadata service; other names are judged by what they resolve to,
            // in the resolver.
            Host::Domain(name) if is_metadata_host(name) => {
                return Err(OutboundError::DestinationForbidden {
                    host: host_text.to_owned(),
                    address: None,
                    rule: rule::METADATA,
                })
            }
            Host::Domain(_) => None,
        };
        if let Some(address) = address {
            if let Some(rule) = self.forbidden_rule(address) {
                return Err(OutboundError::DestinationForbidden {
                    host: host_text.to_owned(),
                    address: Some(address),
                    rule,
                });
            }
        }
        match url.scheme() {
            "https" => Ok(()),
            "http" => {
                let port = url.port_or_known_default().unwrap_or(80);
                let host_port = format!("{}:{port}", host_text.to_ascii_lowercase());
                if self.http_registries.contains(&host_port) {
                    Ok(())
                } else {
                    Err(OutboundError::PlainHttpForbidden { host_port })
                }
            }
            other => Err(OutboundError::Other(format!(
                "URL scheme `{other}` is not allowed: only https, and http for \
                 REGKEEPER_OUTBOUND_HTTP_REGISTRIES"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn rule_of(address: &str) -> Option<&'static str> {
        forbidden_rule(address.parse().unwrap(), &[])
    }

    fn networks(list: &[&str]) -> Vec<IpNet> {
        list.iter()
            .map(|network| network.parse().unwrap())
            .collect()
    }

    #[test]
    fn ipv4_special_ranges_are_forbidden() {
        let cases = [
            ("127.0.0.1", rule::LOOPBACK),
            ("127.255.255.254", rule::LOOPBACK),
            ("0.0.0.0", rule::UNSPECIFIED),
            ("0.1.2.3", rule::THIS_NETWORK),
            ("10.0.0.1", rule::PRIVATE),
            ("172.16.0.1", rule::PRIVATE),
            ("172.31.255.255", rule::PRIVATE),
            ("192.168.1.1", rule::PRIVATE),
            ("100.64.0.1", rule::SHARED),
            ("100.127.255.255", rule::SHARED),
            ("169.254.169.254", rule::METADATA),
            ("169.254.0.1", rule::LINK_LOCAL),
            ("192.0.0.8", rule::RESERVED),
            ("192.0.2.10", rule::DOCUMENTATION),
            ("198.51.100.7", rule::DOCUMENTATION),
            ("203.0.113.9", rule::DOCUMENTATION),
            ("192.88.99.1", rule::RESERVED),
            ("198.18.0.1", rule::BENCHMARKING),
            ("198.19.255.255", rule::BENCHMARKING),
            ("224.0.0.1", rule::MULTICAST),
            ("239.255.255.250", rule::MULTICAST),
            ("240.0.0.1", rule::RESERVED),
            ("255.255.255.255", rule::BROADCAST),
        ];
        for (address, expected) in cases {
            assert_eq!(rule_of(address), Some(expected), "{address}");
        }
    }

    #[test]
    fn ipv4_public_and_range_edges_are_allowed() {
        for address in [
            "1.1.1.1",
            "8.8.8.8",
            "52.94.0.1",
            "172.15.255.255",
            "172.32.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "169.253.255.255",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "11.0.0.0",
            "126.255.255.255",
            "128.0.0.0",
        ] {
            assert_eq!(rule_of(address), None, "{address}");
        }
    }

    #[test]
    fn ipv6_special_ranges_are_forbidden() {
        let cases = [
            ("::1", rule::LOOPBACK),
            ("::", rule::UNSPECIFIED),
            ("::ffff:127.0.0.1", rule::LOOPBACK),
            ("::ffff:169.254.169.254", rule::METADATA),
            ("::ffff:10.1.2.3", rule::PRIVATE),
            ("::127.0.0.1", rule::LOOPBACK),
            ("::8.8.8.8", rule::RESERVED),
            ("64:ff9b::127.0.0.1", rule::LOOPBACK),
            ("64:ff9b::169.254.169.254", rule::METADATA),
            ("64:ff9b:1::1", rule::PRIVATE),
            ("2002:7f00:1::", rule::LOOPBACK),
            ("2002:a9fe:a9fe::1", rule::METADATA),
            ("2002:c0a8:101::1", rule::PRIVATE),
            ("fc00::1", rule::PRIVATE),
            ("fd12:3456::1", rule::PRIVATE),
            ("fec0::1", rule::PRIVATE),
            ("fe80::1", rule::LINK_LOCAL),
            ("febf::1", rule::LINK_LOCAL),
            ("ff02::1", rule::MULTICAST),
            ("2001:db8::1", rule::DOCUMENTATION),
            ("3fff::1", rule::DOCUMENTATION),
            ("2001:2::1", rule::BENCHMARKING),
            ("2001::1", rule::RESERVED),
            ("100::1", rule::RESERVED),
            ("4000::1", rule::RESERVED),
            ("1::1", rule::RESERVED),
        ];
        for (address, expected) in cases {
            assert_eq!(rule_of(address), Some(expected), "{address}");
        }
    }

    #[test]
    fn ipv6_public_is_allowed() {
        for address in [
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2001:200::1",
        ] {
            assert_eq!(rule_of(address), None, "{address}");
        }
    }

    #[test]
    fn allow_networks_open_exactly_what_they_contain() {
        let allow = networks(&["127.0.0.0/8", "10.1.0.0/16", "fd00::/8"]);
        let allowed = |address: &str| forbidden_rule(address.parse().unwrap(), &allow).is_none();
        assert!(allowed("127.0.0.2"));
        assert!(allowed("::ffff:127.0.0.1"), "mapped form follows its IPv4");
        assert!(allowed("64:ff9b::7f00:1"), "NAT64 form follows its IPv4");
        assert!(allowed("10.1.200.3"));
        assert!(!allowed("10.2.0.1"));
        assert!(allowed("fd00::5"));
        assert!(!allowed("fc00::5"));
        assert!(!allowed("::1"), "127.0.0.0/8 does not open IPv6 loopback");
        assert!(!allowed("169.254.169.254"));
    }

    /// Issue 12 item 7: every cloud metadata and link-local service address the
    /// providers document (see [`METADATA_ADDRESSES`] for the sources) is refused, in
    /// its IPv6 spellings too, and stays refused when the operator allows a broad
    /// network around it; only an allow entry naming exactly that address opens it.
    #[test]
    fn metadata_addresses_stay_refused_inside_allowed_networks() {
        let broad = networks(&[
            "10.0.0.0/8",
            "fc00::/7",
            "169.254.0.0/16",
            "100.64.0.0/10",
            "168.63.0.0/16",
            "192.0.0.0/24",
            "::ffff:0:0/96",
            "64:ff9b::/96",
            "2002::/16",
            "0.0.0.0/0",
            "::/0",
        ]);
        let cases: &[(&str, &str)] = &[
            (
                "169.254.169.254",
                "AWS, GCP, Azure, Oracle, DigitalOcean instance metadata",
            ),
            ("169.254.169.253", "AWS Route 53 Resolver"),
            ("169.254.169.123", "AWS Time Sync"),
            ("169.254.170.2", "AWS ECS task metadata and credentials"),
            ("169.254.170.23", "AWS EKS Pod Identity agent"),
            ("fd00:ec2::254", "AWS instance metadata over IPv6"),
            ("fd00:ec2::253", "AWS DNS over IPv6"),
            ("fd00:ec2::123", "AWS Time Sync over IPv6"),
            ("fd00:ec2::23", "AWS EKS Pod Identity over IPv6"),
            ("fd20:ce::254", "GCP metadata over IPv6"),
            ("168.63.129.16", "Azure wireserver"),
            ("100.100.100.200", "Alibaba Cloud metadata"),
            ("192.0.0.192", "Oracle Cloud metadata"),
            ("169.254.0.23", "Tencent Cloud metadata"),
            ("::ffff:168.63.129.16", "Azure wireserver, IPv4-mapped"),
            ("64:ff9b::a83f:8110", "Azure wireserver through NAT64"),
            ("2002:a83f:8110::1", "Azure wireserver through 6to4"),
            ("::ffff:169.254.169.254", "instance metadata, IPv4-mapped"),
        ];
        for (address, what) in cases {
            let parsed: IpAddr = address.parse().unwrap();
            assert_eq!(rule_of(address), Some(rule::METADATA), "{address} ({what})");
            assert_eq!(
                forbidden_rule(parsed, &broad),
                Some(rule::METADATA),
                "{address} ({what}) inside broad allowed networks"
            );
        }
        // Listing the one address opens it, as an operator running a registry there
        // (however unlikely) would need.
        let exact = networks(&["168.63.129.16/32", "fd00:ec2::254/128"]);
        assert_eq!(
            forbidden_rule("168.63.129.16".parse().unwrap(), &exact),
            None
        );
        assert_eq!(
            forbidden_rule("fd00:ec2::254".parse().unwrap(), &exact),
            None
        );
        // Neighbours are judged by the ordinary rules.
        assert_eq!(rule_of("168.63.129.17"), None);
        assert_eq!(rule_of("100.100.100.201"), Some(rule::SHARED));
        assert_eq!(forbidden_rule("fd00:ec2::1".parse().unwrap(), &broad), None);
        for host in [
            "metadata.google.internal",
            "METADATA.google.internal.",
            "metadata",
            "metadata.goog",
            "instance-data",
            "instance-data.ec2.internal",
        ] {
            assert!(is_metadata_host(host), "{host}");
        }
        assert!(!is_metadata_host("metadata.example.com"));
        assert!(!is_metadata_host("registry.example.com"));
    }

    fn in_network(bits: u32, network: &str) -> Ipv4Addr {
        let network: ipnet::Ipv4Net = network.parse().unwrap();
        let host_bits = !u32::from(network.netmask());
        Ipv4Addr::from(u32::from(network.network()) | (bits & host_bits))
    }

    proptest! {
        #[test]
        fn embedded_ipv4_forms_are_judged_by_their_ipv4(bits in any::<u32>()) {
            let ipv4 = Ipv4Addr::from(bits);
            let expected = forbidden_rule(IpAddr::V4(ipv4), &[]);
            let mapped = IpAddr::V6(ipv4.to_ipv6_mapped());
            prop_assert_eq!(forbidden_rule(mapped, &[]), expected);
            let nat64 = IpAddr::V6(Ipv6Addr::from((0x0064_ff9b_u128 << 96) | u128::from(bits)));
            prop_assert_eq!(forbidden_rule(nat64, &[]), expected);
            let six_to_four = IpAddr::V6(Ipv6Addr::from(
                (0x2002_u128 << 112) | (u128::from(bits) << 80) | 1,
            ));
            prop_assert_eq!(forbidden_rule(six_to_four, &[]), expected);
            if bits > 1 {
                let compatible = IpAddr::V6(Ipv6Addr::from(u128::from(bits)));
                prop_assert!(forbidden_rule(compatible, &[]).is_some());
            }
        }

        #[test]
        fn private_loopback_and_metadata_ranges_never_pass(bits in any::<u32>()) {
            for network in [
                "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                "169.254.0.0/16", "100.64.0.0/10", "0.0.0.0/8", "224.0.0.0/4",
            ] {
                let address = in_network(bits, network);
                prop_assert!(forbidden_rule(IpAddr::V4(address), &[]).is_some(), "{}", address);
                let mapped = IpAddr::V6(address.to_ipv6_mapped());
                prop_assert!(forbidden_rule(mapped, &[]).is_some(), "{}", mapped);
            }
        }

        #[test]
        fn an_allow_network_opens_every_address_inside_it(
            bits in any::<u128>(),
            length in 0u8..=128,
        ) {
            let address = Ipv6Addr::from(bits);
            // Metadata addresses are the one exception, tested above.
            prop_assume!(!metadata_refused(IpAddr::V6(address), &[]));
            prop_assume!(!metadata_refused(IpAddr::V4(Ipv4Addr::from(bits as u32)), &[]));
            let network = IpNet::new(IpAddr::V6(address), length).unwrap().trunc();
            prop_assert_eq!(forbidden_rule(IpAddr::V6(address), &[network]), None);
            let ipv4 = Ipv4Addr::from(bits as u32);
            let network = IpNet::new(IpAddr::V4(ipv4), length % 33).unwrap().trunc();
            prop_assert_eq!(forbidden_rule(IpAddr::V4(ipv4), &[network]), None);
        }

        #[test]
        fn allowing_more_never_forbids_more(bits in any::<u128>(), v4 in any::<bool>()) {
            let address = if v4 {
                IpAddr::V4(Ipv4Addr::from(bits as u32))
            } else {
                IpAddr::V6(Ipv6Addr::from(bits))
            };
            let allow = networks(&["127.0.0.0/8", "10.0.0.0/8", "fc00::/7"]);
            if forbidden_rule(address, &[]).is_none() {
                prop_assert_eq!(forbidden_rule(address, &allow), None);
            }
        }
    }
}
