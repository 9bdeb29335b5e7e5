//! The configuration file's keys for `query-service` and `dead-letters`.

use super::FileConfig;
use crate::cli::{KafkaReadArgs, QueryServiceArgs};
use clap::ArgMatches;

impl FileConfig {
    /// Fills the settings of `query-service` that neither a flag nor the environment set.
    pub fn apply_to_query_service(&self, args: &mut QueryServiceArgs, given: &ArgMatches) {
        fill!(self => args, given; listen, database_url, batch_size, data_dir, body_limit,
            request_timeout, max_in_flight, shutdown_timeout);
        self.apply_to_kafka_read(&mut args.kafka, given);
        self.apply_to_oidc(&mut args.oidc, given);
        self.apply_to_telemetry(&mut args.telemetry, given);
    }

    /// Fills the Kafka, registry and Elasticsearch settings of the Kafka-fed read side.
    pub fn apply_to_kafka_read(&self, args: &mut KafkaReadArgs, given: &ArgMatches) {
        fill!(self => args, given; kafka_bootstrap_servers, schema_registry_url,
            elasticsearch_url, es_index_prefix, topic, group_id, replication_factor,
            kafka_timeout);
        self.apply_to_kafka_options(&mut args.kafka_options, given);
    }
}
