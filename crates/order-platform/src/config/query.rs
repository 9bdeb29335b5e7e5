//! The configuration file's keys for `query-service` and `dead-letters`.

use super::{FileConfig, fill};
use crate::cli::{KafkaReadArgs, QueryServiceArgs};
use clap::ArgMatches;

impl FileConfig {
    /// Fills the settings of `query-service` that neither a flag nor the environment set.
    pub fn apply_to_query_service(&self, args: &mut QueryServiceArgs, given: &ArgMatches) {
        let some = |v: &Option<String>| v.clone().map(Some);
        fill(&mut args.listen, self.listen, given, "listen");
        fill(
            &mut args.database_url,
            some(&self.database_url),
            given,
            "database_url",
        );
        fill(&mut args.batch_size, self.batch_size, given, "batch_size");
        fill(
            &mut args.data_dir,
            self.data_dir.clone().map(Some),
            given,
            "data_dir",
        );
        fill(&mut args.body_limit, self.body_limit, given, "body_limit");
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
        self.apply_to_kafka_read(&mut args.kafka, given);
        self.apply_to_oidc(&mut args.oidc, given);
        self.apply_to_telemetry(&mut args.telemetry, given);
    }

    /// Fills the Kafka, registry and Elasticsearch settings of the Kafka-fed read side.
    pub fn apply_to_kafka_read(&self, args: &mut KafkaReadArgs, given: &ArgMatches) {
        let some = |v: &Option<String>| v.clone().map(Some);
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
        fill(
            &mut args.elasticsearch_url,
            some(&self.elasticsearch_url),
            given,
            "elasticsearch_url",
        );
        fill(
            &mut args.es_index_prefix,
            self.es_index_prefix.clone(),
            given,
            "es_index_prefix",
        );
        fill(&mut args.topic, self.topic.clone(), given, "topic");
        fill(&mut args.group_id, self.group_id.clone(), given, "group_id");
        fill(
            &mut args.replication_factor,
            self.replication_factor,
            given,
            "replication_factor",
        );
        fill(
            &mut args.kafka_timeout,
            self.kafka_timeout,
            given,
            "kafka_timeout",
        );
    }
}
