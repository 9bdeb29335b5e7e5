//! `order-platform gateway`: the settings of [`GatewayArgs`] checked and turned
//! into a running [`order_gateway::Gateway`].

use crate::GatewayArgs;
use crate::cli::UsageError;
use order_gateway::{Gateway, GatewayConfig};
use std::io::Write;

/// Starts a gateway on the current runtime (what the binary runs, and what
/// the tests start in their own process).
pub async fn start_gateway(args: GatewayArgs) -> anyhow::Result<Gateway> {
    let missing = |flag: &str, variable: &str, key: &str| {
        anyhow::Error::new(UsageError(format!(
            "the gateway needs {flag} ({variable}, or `{key}` in the configuration file)"
        )))
    };
    let command_url = args
        .command_url
        .clone()
        .ok_or_else(|| missing("--command-url", "ORDER_PLATFORM_COMMAND_URL", "command_url"))?;
    let query_url = args
        .query_url
        .clone()
        .ok_or_else(|| missing("--query-url", "ORDER_PLATFORM_QUERY_URL", "query_url"))?;
    let verifier =
        crate::service::trusted_verifier(&args.oidc, args.data_dir.as_deref(), "gateway").await?;
    let budgets = args.budgets();
    Gateway::start(GatewayConfig {
        listen: args.listen,
        command_url,
        query_url,
        verifier,
        budgets,
        redis_url: args.redis_url.clone(),
        redis_prefix: args.redis_prefix.clone(),
        body_limit: args.body_limit,
        command_timeout: args.command_timeout,
        query_timeout: args.query_timeout,
        retries: args.retries,
        max_in_flight: args.max_in_flight,
        cors_origins: args.cors_allow_origins.clone(),
        hsts: args.hsts,
        pages: crate::docs::router(),
    })
    .await
}

/// `order-platform gateway`, until Ctrl-C or SIGTERM.
pub async fn gateway(args: GatewayArgs) -> anyhow::Result<()> {
    let telemetry = crate::telemetry::start(&args.telemetry, "order-platform-gateway")?;
    let gateway = start_gateway(args).await?;
    let address = gateway.addr();
    let _ = writeln!(
        std::io::stdout(),
        "Order Platform gateway listening on http://{address}\n\
         API document: http://{address}/api/v1/openapi.json"
    );
    tracing::info!(%address, "gateway listening");
    gateway.run_until(crate::serve::shutdown_signal()).await;
    tracing::info!("stopped");
    telemetry.shutdown();
    Ok(())
}
