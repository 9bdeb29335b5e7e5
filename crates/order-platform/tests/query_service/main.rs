//! The production query side against the dev stack's real PostgreSQL, Kafka, registry
//! and Elasticsearch: commands appended through `serve`, published by the relay (with its
//! watermarks), projected by the query service's consumer group into Elasticsearch.

#[path = "../support/mod.rs"]
mod support;

mod harness;
mod kills;
mod read_your_writes;
mod secure_kafka;
