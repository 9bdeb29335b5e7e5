//! The end-to-end suite, in one test binary: every case starts its own server
//! in this process ([`support::Server::start`]) on `127.0.0.1:0`, with its own
//! data dir (and, for PostgreSQL, its own database from `DATABASE_URL`), and
//! talks HTTP to it. What needs a process of its own (kill -9, the command
//! line, configuration) is in the `process` binary.

#[path = "../support/mod.rs"]
mod support;

mod app;
mod concurrency;
mod docs_page;
mod errors;
mod fresh_start;
mod gateway;
mod gateway_security;
mod history_pages;
mod hostile;
mod key_rotation;
mod lifecycle;
mod oidc;
mod openapi_contract;
mod operations;
mod ownership;
mod readiness;
mod roles;
