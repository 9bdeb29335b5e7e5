//! The Confluent wire format, and the encoder and decoder of order events built on it.
//!
//! A message value is `0x00` (the magic byte), the writer schema's registry id as 4 bytes big
//! endian, then the Avro binary encoding of one datum (no container header, no sync markers).
//! A consumer reads the id, fetches that writer schema from the registry once, and resolves
//! the datum from it to its own reader schema: so old messages stay readable after the schema
//! evolves, and a consumer needs no vendor serializer.

use crate::event::OrderEventMessage;
use crate::schema::OrderEventSchema;
use crate::{MessagingError, Result};
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use order_event_store::RecordedEvent;
use std::collections::HashMap;

/// First byte of every framed message.
pub const MAGIC_BYTE: u8 = 0;
/// Magic byte + schema id.
pub const HEADER_LEN: usize = 5;

/// Frames an Avro body: magic byte, big-endian schema id, body.
pub fn frame(schema_id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.push(MAGIC_BYTE);
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Splits a framed message into its schema id and Avro body.
pub fn unframe(bytes: &[u8]) -> Result<(u32, &[u8])> {
    if bytes.len() < HEADER_LEN {
        return Err(MessagingError::Frame(format!(
            "{} bytes, shorter than the 5-byte header",
            bytes.len()
        )));
    }
    if bytes[0] != MAGIC_BYTE {
        return Err(MessagingError::Frame(format!(
            "magic byte is {:#04x}, expected 0x00",
            bytes[0]
        )));
    }
    let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    Ok((id, &bytes[HEADER_LEN..]))
}

/// Encodes events with one schema, registered under one id.
#[derive(Clone, Debug)]
pub struct OrderEventEncoder {
    /// The writer schema; its text is what was registered under `schema_id`.
    schema: OrderEventSchema,
    /// The registry's id of `schema`, written into every message's header.
    schema_id: u32,
}

impl OrderEventEncoder {
    pub fn new(schema: OrderEventSchema, schema_id: u32) -> OrderEventEncoder {
        OrderEventEncoder { schema, schema_id }
    }

    pub fn schema_id(&self) -> u32 {
        self.schema_id
    }

    /// The message value for a stored event.
    pub fn encode(&self, event: &RecordedEvent) -> Result<Vec<u8>> {
        self.encode_message(&OrderEventMessage::from_recorded(event)?)
    }

    pub fn encode_message(&self, message: &OrderEventMessage) -> Result<Vec<u8>> {
        let value = message.to_avro(&self.schema)?;
        // Validation on: a value that does not match the schema is an error, never bytes that
        // no consumer could read.
        let body = GenericDatumWriter::builder(self.schema.schema())
            .build()?
            .write_value_to_vec(value)?;
        Ok(frame(self.schema_id, &body))
    }
}

/// Decodes framed events written with any known writer schema into the reader schema.
#[derive(Clone, Debug)]
pub struct OrderEventDecoder {
    /// The schema the decoded values are resolved to (this build's, normally).
    reader: OrderEventSchema,
    /// Writer schemas by registry id: filled from the registry as new ids show up.
    writers: HashMap<u32, OrderEventSchema>,
}

impl OrderEventDecoder {
    pub fn new(reader: OrderEventSchema) -> OrderEventDecoder {
        OrderEventDecoder {
            reader,
            writers: HashMap::new(),
        }
    }

    /// Makes the writer schema of `id` known (e.g. after
    /// [`SchemaRegistryClient::schema_by_id`](crate::SchemaRegistryClient::schema_by_id)).
    pub fn add_writer_schema(&mut self, id: u32, schema_text: &str) -> Result<()> {
        self.writers
            .insert(id, OrderEventSchema::parse(schema_text)?);
        Ok(())
    }

    pub fn knows(&self, id: u32) -> bool {
        self.writers.contains_key(&id)
    }

    /// Decodes one message value: the datum is read with its writer schema, checked against
    /// it, then resolved to the reader schema ([`OrderEventSchema::resolve_from`]).
    ///
    /// Fails with [`MessagingError::UnknownSchemaId`] if the writer schema was not added, and
    /// on a corrupt body: bytes left over, or a truncated one (apache-avro reads a string cut
    /// short as `null` instead of failing, which the check against the writer schema catches).
    pub fn decode(&self, bytes: &[u8]) -> Result<OrderEventMessage> {
        let (id, mut body) = unframe(bytes)?;
        let writer = self
            .writers
            .get(&id)
            .ok_or(MessagingError::UnknownSchemaId(id))?;
        let value = GenericDatumReader::builder(writer.schema())
            .build()?
            .read_value(&mut body)?;
        if !body.is_empty() {
            return Err(MessagingError::Frame(format!(
                "{} bytes left after the Avro datum",
                body.len()
            )));
        }
        if !value.validate(writer.schema()) {
            return Err(MessagingError::Frame(
                "the body does not match its writer schema (truncated or corrupt)".into(),
            ));
        }
        let value = self.reader.resolve_from(writer, value)?;
        OrderEventMessage::from_avro(value, &self.reader)
    }
}
