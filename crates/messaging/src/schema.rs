//! The `OrderEvent` schema: loaded from the repository's `.avsc` file and checked for the shape
//! the rest of the crate relies on.
//!
//! The schema is one self-contained file: the payload records and `OrderLine` are defined inline
//! (a named type is defined once and referenced by name afterwards). That is what a Schema
//! Registry subject holds (one schema text per version, no references to resolve) and what both
//! `apache_avro::Schema::parse_str` and Java's `new Schema.Parser().parse(file)` load as is.

use crate::{MessagingError, Result};
use apache_avro::Schema;
use apache_avro::schema::ResolvedSchema;
use apache_avro::types::Value;
use std::sync::OnceLock;

/// The current schema's text, exactly as in `schemas/avro/order-event.avsc`. This is what
/// producers register under `<topic>-value`.
pub const ORDER_EVENT_AVSC: &str = include_str!("../../../schemas/avro/order-event.avsc");

/// Full name of the top-level record.
pub const ORDER_EVENT_NAME: &str = "orderplatform.events.v1.OrderEvent";

/// The event types, in the order of [`order_domain::EventPayload`]'s variants. Each is the name
/// of one record of the `payload` union.
pub const PAYLOAD_TYPES: [&str; 7] = order_domain::EventPayload::TYPES;

/// A parsed `OrderEvent` schema with what encoding and decoding look up in it.
#[derive(Clone, Debug)]
pub struct OrderEventSchema {
    /// The text it was parsed from, registered as is.
    text: String,
    /// The parsed schema.
    schema: Schema,
    /// The names of the `payload` union's records, by branch index. Encoding needs the index of
    /// an event type (the union's order is the schema's business, not ours: Avro resolves union
    /// branches by name, so reordering them is a compatible change); decoding needs the name.
    payload_branches: Vec<String>,
    /// The top-level record without `payload`, and the `payload` records by branch index:
    /// [`OrderEventSchema::resolve_from`] resolves these separately (see there why).
    envelope: Schema,
    payload_records: Vec<Schema>,
}

impl OrderEventSchema {
    /// The schema of this build (`schemas/avro/order-event.avsc`), parsed once.
    pub fn current() -> &'static OrderEventSchema {
        static CURRENT: OnceLock<OrderEventSchema> = OnceLock::new();
        CURRENT.get_or_init(|| {
            // The text is compiled in and `the_repository_schema_is_a_valid_order_event_schema`
            // parses it, so this cannot fail in a tested build.
            OrderEventSchema::parse(ORDER_EVENT_AVSC)
                .expect("schemas/avro/order-event.avsc is a valid OrderEvent schema")
        })
    }

    /// Parses `text` and checks that it is an `OrderEvent` record whose `payload` field is a
    /// union of named records.
    pub fn parse(text: &str) -> Result<OrderEventSchema> {
        let schema = Schema::parse_str(text).map_err(|e| MessagingError::Schema(e.to_string()))?;
        let Schema::Record(record) = &schema else {
            return Err(MessagingError::Schema(
                "the top level is not a record".into(),
            ));
        };
        if record.name.fullname(None) != ORDER_EVENT_NAME {
            return Err(MessagingError::Schema(format!(
                "the top-level record is {}, expected {ORDER_EVENT_NAME}",
                record.name.fullname(None)
            )));
        }
        let payload = record
            .fields
            .iter()
            .find(|f| f.name == "payload")
            .ok_or_else(|| MessagingError::Schema("no field `payload`".into()))?;
        let Schema::Union(union) = &payload.schema else {
            return Err(MessagingError::Schema("`payload` is not a union".into()));
        };
        let payload_records = union.variants().to_vec();
        let mut envelope = record.clone();
        envelope.fields.retain(|f| f.name != "payload");
        envelope.lookup = envelope
            .fields
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name.clone(), i))
            .collect();
        let envelope = Schema::Record(envelope);
        let payload_branches = union
            .variants()
            .iter()
            .map(|variant| match variant.name() {
                Some(name) => Ok(name.name().to_string()),
                None => Err(MessagingError::Schema(
                    "every branch of `payload` must be a named record".into(),
                )),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(OrderEventSchema {
            text: text.to_string(),
            schema,
            payload_branches,
            envelope,
            payload_records,
        })
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The schema text, as parsed (what to register).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Resolves `value`, decoded with the `writer` schema, to this schema (Avro schema
    /// resolution: fields matched by name, defaults for fields the writer lacks, promotions).
    ///
    /// apache-avro 0.22 resolves a union by the *shape* of the value: it picks the first reader
    /// branch the value fits, so an `OrderShipped` record would resolve to `OrderApproved`
    /// (whose only field has a default). The Avro specification matches named branches by
    /// name, so the `payload` union is resolved here by hand: the writer's branch name picks
    /// the reader's record, and apache-avro resolves the envelope and that record's fields.
    pub fn resolve_from(&self, writer: &OrderEventSchema, value: Value) -> Result<Value> {
        let malformed = |reason: String| MessagingError::Malformed {
            field: "payload".into(),
            reason,
        };
        let Value::Record(mut fields) = value else {
            return Err(malformed("the value is not a record".into()));
        };
        let at = fields
            .iter()
            .position(|(name, _)| name == "payload")
            .ok_or_else(|| malformed("missing".into()))?;
        let (w_index, payload) = match fields.remove(at).1 {
            Value::Union(index, payload) => (index, *payload),
            other => return Err(malformed(format!("not a union: {other:?}"))),
        };
        let event_type = writer
            .payload_type(w_index)
            .ok_or_else(|| malformed(format!("the writer schema has no branch {w_index}")))?;
        let r_index = self.payload_index(event_type).ok_or_else(|| {
            malformed(format!(
                "{event_type} is not an event type of the reader schema: it was written with \
                 a newer schema; upgrade the reader"
            ))
        })?;
        let resolved = ResolvedSchema::try_from(&self.schema)?;
        let names = resolved.get_names();
        let envelope = Value::Record(fields).resolve_with_names(&self.envelope, names)?;
        let payload = payload.resolve_with_names(&self.payload_records[r_index as usize], names)?;
        let Value::Record(mut fields) = envelope else {
            return Err(malformed("the envelope did not resolve to a record".into()));
        };
        fields.push(("payload".into(), Value::Union(r_index, Box::new(payload))));
        Ok(Value::Record(fields))
    }

    /// Index of the `payload` branch for `event_type`, if the schema has one.
    pub fn payload_index(&self, event_type: &str) -> Option<u32> {
        self.payload_branches
            .iter()
            .position(|name| name == event_type)
            .and_then(|i| u32::try_from(i).ok())
    }

    /// Event type of `payload` branch `index`.
    pub fn payload_type(&self, index: u32) -> Option<&str> {
        self.payload_branches
            .get(usize::try_from(index).ok()?)
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_schema_is_a_valid_order_event_schema() {
        let schema = OrderEventSchema::parse(ORDER_EVENT_AVSC).unwrap();
        for event_type in PAYLOAD_TYPES {
            assert!(
                schema.payload_index(event_type).is_some(),
                "payload has no {event_type}"
            );
        }
        assert_eq!(schema.payload_branches.len(), PAYLOAD_TYPES.len());
    }

    #[test]
    fn refuses_a_schema_of_another_record() {
        let err =
            OrderEventSchema::parse(r#"{"type":"record","name":"Other","fields":[]}"#).unwrap_err();
        assert!(err.to_string().contains("Other"), "{err}");
    }
}
