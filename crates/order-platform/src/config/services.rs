//! The configuration file's keys for the production services and the read-side admin
//! commands: `gateway`, `relay`, `command-service`, `rebuild`, `verify`.

use super::{FileConfig, fill};
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
        let some = |v: &Option<String>| v.clone().map(Some);
        fill(&mut args.listen, self.listen, given, "listen");
        fill(
            &mut args.command_url,
            some(&self.command_url),
            given,
            "command_url",
        );
        fill(
            &mut args.query_url,
            some(&self.query_url),
            given,
            "query_url",
        );
        fill(
            &mut args.data_dir,
            self.data_dir.clone().map(Some),
            given,
            "data_dir",
        );
        fill(
            &mut args.redis_url,
            some(&self.redis_url),
            given,
            "redis_url",
        );
        fill(
            &mut args.redis_prefix,
            self.redis_prefix.clone(),
            given,
            "redis_prefix",
        );
        if let Some(limits) = &self.rate_limits {
            let parsed = limits
                .iter()
                .map(|(class, budget)| {
                    crate::cli::parse_rate_limit(&format!("{class}={budget}"))
                        .map_err(|e| anyhow!("configuration file: rate_limits: {e}"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            fill(&mut args.rate_limits, Some(parsed), given, "rate_limits");
        }
        fill(&mut args.body_limit, self.body_limit, given, "body_limit");
        fill(
            &mut args.command_timeout,
            self.command_timeout,
            given,
            "command_timeout",
        );
        fill(
            &mut args.query_timeout,
            self.query_timeout,
            given,
            "query_timeout",
        );
        fill(&mut args.retries, self.retries, given, "retries");
        fill(
            &mut args.max_in_flight,
            self.max_in_flight,
            given,
            "max_in_flight",
        );
        fill(
            &mut args.cors_allow_origins,
            self.cors_allow_origins.clone(),
            given,
            "cors_allow_origins",
        );
        fill(&mut args.hsts, self.hsts, given, "hsts");
        fill(
            &mut args.shutdown_timeout,
            self.shutdown_timeout,
            given,
            "shutdown_timeout",
        );
        self.apply_to_oidc(&mut args.oidc, given);
        self.apply_to_telemetry(&mut args.telemetry, given);
        Ok(())
    }

    /// Fills the settings of `relay` that neither a flag nor the environment set.
    pub fn apply_to_relay(&self, args: &mut RelayArgs, given: &ArgMatches) {
        self.apply_to_telemetry(&mut args.telemetry, given);
        fill(&mut args.listen, self.listen, given, "listen");
        let some = |v: &Option<String>| v.clone().map(Some);
        fill(
            &mut args.database_url,
            some(&self.database_url),
            given,
            "database_url",
        );
        fill(
            &mut args.kafka_bootstrap_servers,
            some(&self.kafka_bootstrap_servers),
            given,
            "kafka_bootstrap_servers",
        );
        fill(
            &mut args.schema_registry_url,
            some(&self.schema_registry_url),
            given,
            "schema_registry_url",
        );
        fill(&mut args.topic, self.topic.clone(), given, "topic");
        fill(&mut args.partitions, self.partitions, given, "partitions");
        fill(
            &mut args.replication_factor,
            self.replication_factor,
            given,
            "replication_factor",
        );
        fill(&mut args.batch_size, self.batch_size, given, "batch_size");
        fill(
            &mut args.kafka_timeout,
            self.kafka_timeout,
            given,
            "kafka_timeout",
        );
    }

    /// Fills the settings of `rebuild` and `verify` that neither a flag nor the
    /// environment set.
    pub fn apply_to_read_side(&self, args: &mut crate::rebuild::ReadSideArgs, given: &ArgMatches) {
        let some = |v: &Option<String>| v.clone().map(Some);
        fill(
            &mut args.database_url,
            some(&self.database_url),
            given,
            "database_url",
        );
        fill(
            &mut args.elasticsearch_url,
            some(&self.elasticsearch_url),
            given,
            "elasticsearch_url",
        );
        let prefix = self.es_index_prefix.clone();
        fill(&mut args.es_index_prefix, prefix, given, "es_index_prefix");
        let timeout = self.elasticsearch_timeout;
        fill(
            &mut args.elasticsearch_timeout,
            timeout,
            given,
            "elasticsearch_timeout",
        );
    }

    /// Fills the settings of `rebuild` that neither a flag nor the environment set.
    pub fn apply_to_rebuild(&self, args: &mut crate::rebuild::RebuildArgs, given: &ArgMatches) {
        self.apply_to_read_side(&mut args.read_side, given);
        let batch = self.rebuild_batch_size;
        fill(
            &mut args.rebuild_batch_size,
            batch,
            given,
            "rebuild_batch_size",
        );
    }

    /// Fills the settings of `command-service` that neither a flag nor the
    /// environment set.
    pub fn apply_to_command_service(&self, args: &mut CommandServiceArgs, given: &ArgMatches) {
        fill(&mut args.listen, self.listen, given, "listen");
        let some = |v: &Option<String>| v.clone().map(Some);
        fill(
            &mut args.database_url,
            some(&self.database_url),
            given,
            "database_url",
        );
        fill(
            &mut args.data_dir,
            self.data_dir.clone().map(Some),
            given,
            "data_dir",
        );
        fill(&mut args.body_limit, self.body_limit, given, "body_limit");
        fill(
            &mut args.snapshot_every,
            self.snapshot_every,
            given,
            "snapshot_every",
        );
        fill(
            &mut args.request_timeout,
            self.request_timeout,
            given,
            "request_timeout",
        );
        fill(
            &mut args.max_in_flight,
            self.max_in_flight,
            given,
            "max_in_flight",
        );
        fill(
            &mut args.shutdown_timeout,
            self.shutdown_timeout,
            given,
            "shutdown_timeout",
        );
        self.apply_to_oidc(&mut args.oidc, given);
        self.apply_to_telemetry(&mut args.telemetry, given);
    }
}
