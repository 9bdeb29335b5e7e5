//! The Order Platform as a library: the `order-platform` command line
//! ([`cli`]) and the all-in-one server it runs ([`App`], configured by
//! [`ServeArgs`]). The binary (`src/main.rs`) only calls [`cli::run`]; the
//! end-to-end tests start an [`App`] on `127.0.0.1:0` in their own process, and
//! spawn the binary only where a process is the point (kill -9, the command
//! line, configuration).

mod admin;
pub mod cli;
mod command_service;
mod config;
mod dead_letters;
mod docs;
mod gateway;
mod projection_admin;
mod query_service;
mod rebuild;
mod relay;
mod serve;
mod service;
pub mod telemetry;

pub use cli::{GatewayArgs, OidcArgs, QueryServiceArgs, ServeArgs, StoreArgs};
pub use command_service::{CommandServiceArgs, command_service_router};
pub use gateway::start_gateway;
pub use query_service::QueryServiceApp;
pub use serve::App;
