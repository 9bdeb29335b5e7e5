//! The Kafka contract of the order events (DESIGN.md §6).
//!
//! Every event of the store is published to the `order-events` topic as an Avro record
//! `orderplatform.events.v1.OrderEvent` in the Confluent wire format. This crate owns that
//! contract and the pieces every producer and consumer of the topic needs:
//!
//! * [`schema`]: the schema itself, kept in the repository as
//!   `schemas/avro/order-event.avsc` (the file is the source of truth; it is embedded here at
//!   compile time, and the Java consumer in `examples/java-consumer` loads the same file);
//! * [`event`]: [`OrderEventMessage`], the contract as a Rust type, built from a stored
//!   [`RecordedEvent`](order_event_store::RecordedEvent) and mapped to and from Avro values;
//! * [`wire`]: the framing (magic byte 0, 4-byte big-endian schema id, Avro binary body) and
//!   the [`OrderEventEncoder`] / [`OrderEventDecoder`] built on it;
//! * [`compat`]: the offline schema compatibility check that keeps the schema evolving only in
//!   compatible ways, with messages that name the offending field;
//! * [`registry`]: a small client of the Schema Registry's Confluent-compatible API (register
//!   under `<topic>-value`, fetch by id, check compatibility).
//!
//! Money is exact end to end: amounts are `long` minor units (`unitPriceMinor`) next to the
//! order's ISO 4217 `currency`, never floating point and never rounded.

pub mod compat;
pub mod event;
pub mod registry;
pub mod schema;
pub mod wire;

pub use compat::{CompatibilityMode, Incompatibility, check_compatibility};
pub use event::OrderEventMessage;
pub use registry::{RegistryError, SchemaRegistryClient};
pub use schema::OrderEventSchema;
pub use wire::{OrderEventDecoder, OrderEventEncoder};

/// What can go wrong turning events into messages and back.
#[derive(Debug, thiserror::Error)]
pub enum MessagingError {
    /// The stored event's data is not a valid domain event of its type.
    #[error("event {event_id} ({event_type}) cannot be read as a domain event: {reason}")]
    Stored {
        event_id: uuid::Uuid,
        event_type: String,
        reason: String,
    },
    /// A value does not fit the contract's type (e.g. a version beyond `i64`).
    #[error("{field} = {value} does not fit the Avro contract: {reason}")]
    OutOfRange {
        field: &'static str,
        value: String,
        reason: &'static str,
    },
    /// A decoded record does not have the shape of the contract.
    #[error("malformed OrderEvent: {field}: {reason}")]
    Malformed { field: String, reason: String },
    /// The bytes are not in the Confluent wire format.
    #[error("not a Confluent-framed Avro message: {0}")]
    Frame(String),
    /// The message names a writer schema the decoder does not know; fetch it from the registry
    /// ([`SchemaRegistryClient::schema_by_id`]) and add it with
    /// [`OrderEventDecoder::add_writer_schema`].
    #[error("unknown writer schema id {0}: fetch it from the schema registry first")]
    UnknownSchemaId(u32),
    /// A schema text is not a usable OrderEvent schema.
    #[error("invalid OrderEvent schema: {0}")]
    Schema(String),
    /// Avro encoding, decoding or schema resolution failed.
    #[error("avro: {0}")]
    Avro(#[from] apache_avro::Error),
}

pub type Result<T, E = MessagingError> = std::result::Result<T, E>;
