//! Integration tests, built as one binary: real SQLite and PostgreSQL, and the real
//! `regkeeper` binary started on 127.0.0.1:0 and driven over HTTP and through its CLI.

// `.clippy.toml`'s rules are for the product's code. These tests drive real servers and
// peers in real time (deadlines, timestamps for signed requests), build their own HTTP
// clients to talk to them, and share state with fakes from synchronous handlers.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod api;
mod audit_log;
mod authorization;
mod aws_secrets;
mod backup_restore;
mod canary;
mod cli;
mod cloud_logins;
mod connection_limits;
mod console;
mod console_http;
mod consumers;
mod container_image;
mod fake_azure_ad;
mod fake_ecr_public;
mod fake_google_oauth;
mod fake_kubernetes_api;
mod faults;
mod federation;
mod federation_consumers;
mod freshness_metrics;
mod grants;
mod master_key;
mod operator_commands;
mod outbound;
mod peers;
mod policy_documents;
mod proxy;
mod registry_logins;
mod registry_trust;
mod replicas;
mod resolve_explain;
mod roles;
mod shared_cache;
mod single_sign_on;
mod startup;
mod store_contract;
mod support;
mod sync_targets;
mod systemd;
mod token_refresh;
mod traces;
mod trust_migration;
mod upgrades;
mod users;
