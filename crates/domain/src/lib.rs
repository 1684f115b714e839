//! regkeeper's domain: what it talks about (credentials, identities, policies, image
//! references, registries, sync targets, trusts), its one error type, and what has no
//! I/O — sealing secrets (`crypto`), the injected `clock`, audit records (`audit`) and
//! the safe echo of untrusted text (`text`).
//!
//! The compiler keeps the layers apart: this crate depends on no HTTP, SQL or network
//! crate (axum, sqlx, reqwest, tokio are not in its `Cargo.toml`), so the domain
//! cannot reach a socket, a database or a request. The server re-exports these
//! modules (`regkeeper::domain`, `regkeeper::crypto`, …) and adds the I/O around them.

pub mod audit;
pub mod clock;
pub mod credential;
pub mod crypto;
pub mod error;
pub mod identity;
pub mod json_keys;
pub mod policy;
pub mod reference;
pub mod registry;
pub mod registry_token;
pub mod sync_target;
pub mod text;
pub mod trust;

pub use error::{Error, Result};
