//! regkeeper: a container-registry credentials broker. See `ARCHITECTURE.md` for the
//! code map; `cli` is the entry point of the `regkeeper` binary.

pub mod audit;
pub mod cli;
pub mod clock;
pub mod config;
pub mod connections;
pub mod console;
pub mod crypto;
pub mod domain;
pub mod http;
pub mod metrics;
pub mod outbound;
pub mod providers;
pub mod proxy;
pub mod registry_auth;
pub mod serve;
pub mod service;
pub mod store;
pub mod sync;
pub mod text;
pub mod tokens;
