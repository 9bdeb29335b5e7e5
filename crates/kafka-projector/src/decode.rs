//! From a Kafka message to a [`RecordedEvent`]: the Confluent wire format, the writer
//! schema looked up in the registry by id (once per id, then cached), the Avro record
//! resolved to this build's schema and mapped back to the stored-event shape.
//!
//! The one distinction that matters downstream: a message that can never be decoded
//! (bad magic byte, a schema id the registry does not know, a body that is not Avro of
//! its schema, an event type this code does not know) is *poison*, dead-lettered so the
//! partition keeps flowing; a registry that does not answer is *unavailable*, retried,
//! and the message is not skipped.

use order_event_store::RecordedEvent;
use order_messaging::registry::RegistryError;
use order_messaging::{MessagingError, OrderEventDecoder, OrderEventSchema, SchemaRegistryClient};

/// Why a message did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeFailure {
    /// It never will: dead-letter it.
    Poison(String),
    /// The registry could not be asked: try again later.
    Unavailable(String),
}

/// Decodes message values, fetching writer schemas from the registry as new ids appear.
pub struct MessageDecoder {
    registry: SchemaRegistryClient,
    /// Knows the writer schemas fetched so far (the cache).
    decoder: OrderEventDecoder,
}

impl MessageDecoder {
    pub fn new(registry_url: &str) -> Result<MessageDecoder, DecodeFailure> {
        let registry = SchemaRegistryClient::new(registry_url)
            .map_err(|e| DecodeFailure::Unavailable(e.to_string()))?;
        Ok(MessageDecoder {
            registry,
            decoder: OrderEventDecoder::new(OrderEventSchema::current().clone()),
        })
    }

    /// The event a message carries. `traceparent` is the message's header, kept on the event.
    pub async fn decode(
        &mut self,
        value: Option<&[u8]>,
        traceparent: Option<String>,
    ) -> Result<RecordedEvent, DecodeFailure> {
        let Some(value) = value else {
            return Err(DecodeFailure::Poison("the message has no value".into()));
        };
        let poison = |e: MessagingError| DecodeFailure::Poison(e.to_string());
        let (id, _) = order_messaging::wire::unframe(value).map_err(poison)?;
        if !self.decoder.knows(id) {
            let text = match self.registry.schema_by_id(id).await {
                Ok(text) => text,
                Err(RegistryError::Status { status: 404, .. }) => {
                    return Err(DecodeFailure::Poison(format!(
                        "unknown writer schema id {id}: the schema registry has no such schema"
                    )));
                }
                Err(e) => return Err(DecodeFailure::Unavailable(e.to_string())),
            };
            self.decoder
                .add_writer_schema(id, &text)
                .map_err(|e| DecodeFailure::Poison(format!("writer schema {id}: {e}")))?;
        }
        let message = self.decoder.decode(value).map_err(poison)?;
        message.to_recorded(traceparent).map_err(poison)
    }
}
