//! regkeeper: a container-registry credentials broker. See `ARCHITECTURE.md` for the
//! code map; `cli` is the entry point of the `regkeeper` binary.

pub mod cli;
pub mod config;
pub mod connections;
pub mod console;
pub mod http;
pub mod key_encryption;
pub mod key_file;
pub mod login_cache;
pub mod metrics;
pub mod outbound;
pub mod providers;
pub mod proxy;
pub mod push;
pub mod registry_auth;
pub mod serve;
pub mod service;
pub mod store;
pub mod systemd;
pub mod telemetry;

// The domain crate, under the names the server has always used for its parts.
pub use regkeeper_domain as domain;
pub use regkeeper_domain::{audit, clock, crypto};
/// How untrusted text is shown to a person; shared with the thin clients, so it lives
/// in the wire crate.
pub use regkeeper_wire::text;
