//! The configuration file's keys for the production services and the read-side admin
//! commands: `gateway`, `relay`, `command-service`, `rebuild`, `verify`.

use super::{FileConfig, fill_one};
use crate::cli::{GatewayArgs, RelayArgs};
use crate::command_service::CommandServiceArgs;
use anyhow::anyhow;
use clap::ArgMatches;

impl FileConfig {
    /// Fills the settings of `gateway` that neither a flag nor the environment set.
    pub fn apply_to_gateway(
        &self,
        args: &mut GatewayArgs,
        given: &ArgMatches,
    ) -> anyhow::Result<()> {
        fill!(self => args, given; listen, command_url, query_url, data_dir, redis_url,
            redis_prefix, body_limit, command_timeout, query_timeout, retries, max_in_flight,
            cors_allow_origins, hsts, shutdown_timeout);
        if let Some(limits) = &self.rate_limits {
            let parsed = limits
                .iter()
                .map(|(class, budget)| {
                    crate::cli::parse_rate_limit(&format!("{class}={budget}"))
                        .map_err(|e| anyhow!("configuration file: rate_limits: {e}"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            fill_one(&mut args.rate_limits, Some(parsed), given, "rate_limits");
        }
        self.apply_to_oidc(&mut args.oidc, given);
        self.apply_to_telemetry(&mut args.telemetry, given);
        Ok(())
    }

    /// Fills the settings of `relay` that neither a flag nor the environment set.
    pub fn apply_to_relay(&self, args: &mut RelayArgs, given: &ArgMatches) {
        fill!(self => args, given; listen, database_url, kafka_bootstrap_servers,
            schema_registry_url, topic, partitions, replication_factor, batch_size,
            kafka_timeout);
        self.apply_to_kafka_options(&mut args.kafka_options, given);
        self.apply_to_telemetry(&mut args.telemetry, given);
    }

    /// Fills the settings of `rebuild` and `verify` that neither a flag nor the
    /// environment set.
    pub fn apply_to_read_side(&self, args: &mut crate::rebuild::ReadSideArgs, given: &ArgMatches) {
        fill!(self => args, given; database_url, elasticsearch_url, es_index_prefix,
            elasticsearch_timeout);
    }

    /// Fills the settings of `rebuild` that neither a flag nor the environment set.
    pub fn apply_to_rebuild(&self, args: &mut crate::rebuild::RebuildArgs, given: &ArgMatches) {
        self.apply_to_read_side(&mut args.read_side, given);
        fill!(self => args, given; rebuild_batch_size);
    }

    /// Fills the settings of `command-service` that neither a flag nor the
    /// environment set.
    pub fn apply_to_command_service(&self, args: &mut CommandServiceArgs, given: &ArgMatches) {
        fill!(self => args, given; listen, database_url, data_dir, body_limit, snapshot_every,
            request_timeout, max_in_flight, shutdown_timeout);
        self.apply_to_oidc(&mut args.oidc, given);
        self.apply_to_telemetry(&mut args.telemetry, given);
    }
}
