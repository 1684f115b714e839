//! Domain types and errors: what regkeeper talks about, with no HTTP and no SQL in it.

pub mod credential;
pub mod error;
pub mod identity;
pub mod json_keys;
pub mod policy;
pub mod reference;
pub mod registry;
pub mod registry_token;
pub mod sync_target;
pub mod trust;

pub use error::{Error, Result};
