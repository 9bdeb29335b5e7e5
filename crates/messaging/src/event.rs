//! [`OrderEventMessage`]: the Kafka contract as a Rust type, and its mapping to and from Avro.
//!
//! The mapping is written out field by field rather than derived: the contract's field names,
//! its `Minor` suffix for amounts and its types are a promise to other teams, and a rename in
//! the domain must not silently change them. Every field of every event type is covered by the
//! round-trip tests at the bottom and by `tests/contract.rs`.

use crate::schema::OrderEventSchema;
use crate::{MessagingError, Result};
use apache_avro::types::Value;
use chrono::{DateTime, Utc};
use order_domain::{Currency, EventPayload, Line};
use order_event_store::RecordedEvent;
use uuid::Uuid;

/// One published event: the envelope of DESIGN.md §6 and the domain event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderEventMessage {
    /// The event's id (UUIDv7); consumers deduplicate on it.
    pub event_id: Uuid,
    /// The order, i.e. the event stream; also the Kafka key.
    pub order_id: Uuid,
    /// The order's stream version after this event (1 for `OrderCreated`).
    pub version: u64,
    /// Position in the store's global log.
    pub global_position: i64,
    /// When it happened, at the contract's resolution of one microsecond.
    pub occurred_at: DateTime<Utc>,
    /// The authenticated subject who caused it.
    pub actor: String,
    /// Ties together everything one request caused (events, log lines, traces).
    pub correlation_id: String,
    /// The id of the command that caused it.
    pub causation_id: String,
    /// What happened; amounts in minor units of the currency the payload carries.
    pub payload: EventPayload,
}

impl OrderEventMessage {
    /// The message for a stored event. Its data is read back into the domain event (so a
    /// stored event that the domain cannot read is refused here, not published), and
    /// `occurred_at` is truncated to whole microseconds, the resolution of `timestamp-micros`.
    pub fn from_recorded(event: &RecordedEvent) -> Result<OrderEventMessage> {
        // The one conversion of a stored event (it upcasts older layouts).
        let payload = event
            .decode()
            .map_err(|e| MessagingError::Stored {
                event_id: event.event_id,
                event_type: event.event_type.clone(),
                reason: e.to_string(),
            })?
            .payload;
        Ok(OrderEventMessage {
            event_id: event.event_id,
            order_id: event.stream_id,
            version: event.version,
            global_position: event.global_position,
            occurred_at: truncate_to_micros(event.occurred_at)?,
            actor: event.actor.clone(),
            correlation_id: event.correlation_id.clone(),
            causation_id: event.causation_id.to_string(),
            payload,
        })
    }

    /// The event as the read side applies it: a [`RecordedEvent`] in the current stored layout
    /// (the inverse of [`OrderEventMessage::from_recorded`], up to the microsecond truncation
    /// of `occurred_at` and the idempotency key, which is not published). `traceparent` comes
    /// from the message's header.
    pub fn to_recorded(&self, traceparent: Option<String>) -> Result<RecordedEvent> {
        let causation_id =
            Uuid::parse_str(&self.causation_id).map_err(|e| MessagingError::Malformed {
                field: "causationId".into(),
                reason: format!("{:?} is not a UUID: {e}", self.causation_id),
            })?;
        Ok(RecordedEvent {
            event_id: self.event_id,
            stream_id: self.order_id,
            version: self.version,
            global_position: self.global_position,
            event_type: self.payload.event_type().to_string(),
            schema_version: EventPayload::SCHEMA_VERSION,
            data: self.payload.data(),
            occurred_at: self.occurred_at,
            actor: self.actor.clone(),
            correlation_id: self.correlation_id.clone(),
            causation_id,
            traceparent,
            idempotency_key: None,
        })
    }

    /// The Avro value of this message under `schema` (whose `payload` union must have a record
    /// for this event type).
    pub fn to_avro(&self, schema: &OrderEventSchema) -> Result<Value> {
        let event_type = self.payload.event_type();
        let index = schema
            .payload_index(event_type)
            .ok_or_else(|| MessagingError::Malformed {
                field: "payload".into(),
                reason: format!("the schema has no record for {event_type}"),
            })?;
        let version = i64::try_from(self.version).map_err(|_| MessagingError::OutOfRange {
            field: "version",
            value: self.version.to_string(),
            reason: "larger than a long",
        })?;
        Ok(Value::Record(vec![
            ("eventId".into(), Value::Uuid(self.event_id)),
            ("orderId".into(), Value::Uuid(self.order_id)),
            ("version".into(), Value::Long(version)),
            ("globalPosition".into(), Value::Long(self.global_position)),
            (
                "occurredAt".into(),
                Value::TimestampMicros(self.occurred_at.timestamp_micros()),
            ),
            ("actor".into(), Value::String(self.actor.clone())),
            (
                "correlationId".into(),
                Value::String(self.correlation_id.clone()),
            ),
            (
                "causationId".into(),
                Value::String(self.causation_id.clone()),
            ),
            (
                "payload".into(),
                Value::Union(index, Box::new(payload_to_avro(&self.payload)?)),
            ),
        ]))
    }

    /// Reads a decoded (and, if a reader schema was given, resolved) value back. `schema` is the
    /// schema the value conforms to: the reader schema if there was one, else the writer's.
    pub fn from_avro(value: Value, schema: &OrderEventSchema) -> Result<OrderEventMessage> {
        let mut f = Fields::of(value, "OrderEvent")?;
        let event_id = f.uuid("eventId")?;
        let order_id = f.uuid("orderId")?;
        let version = f.long("version")?;
        let version = u64::try_from(version).map_err(|_| f.malformed("version", "negative"))?;
        let global_position = f.long("globalPosition")?;
        let micros = f.timestamp_micros("occurredAt")?;
        let occurred_at = DateTime::from_timestamp_micros(micros)
            .ok_or_else(|| f.malformed("occurredAt", "out of chrono's range"))?;
        let actor = f.string("actor")?;
        let correlation_id = f.string("correlationId")?;
        let causation_id = f.string("causationId")?;
        let (index, payload) = match f.take("payload")? {
            Value::Union(index, payload) => (index, *payload),
            other => return Err(f.malformed("payload", &format!("not a union: {other:?}"))),
        };
        let event_type = schema
            .payload_type(index)
            .ok_or_else(|| f.malformed("payload", &format!("no union branch {index}")))?;
        let payload = payload_from_avro(event_type, payload)?;
        Ok(OrderEventMessage {
            event_id,
            order_id,
            version,
            global_position,
            occurred_at,
            actor,
            correlation_id,
            causation_id,
            payload,
        })
    }
}

fn truncate_to_micros(t: DateTime<Utc>) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).ok_or(MessagingError::OutOfRange {
        field: "occurredAt",
        value: t.to_rfc3339(),
        reason: "beyond timestamp-micros",
    })
}

fn payload_to_avro(payload: &EventPayload) -> Result<Value> {
    let s = |v: &str| Value::String(v.to_string());
    let optional = |v: &Option<String>| match v {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(v) => Value::Union(1, Box::new(Value::String(v.clone()))),
    };
    Ok(Value::Record(match payload {
        EventPayload::OrderCreated {
            order_id,
            customer_id,
            currency,
            lines,
        } => vec![
            ("orderId".into(), Value::Uuid(*order_id)),
            ("customerId".into(), s(customer_id)),
            ("currency".into(), s(currency.code())),
            (
                "lines".into(),
                Value::Array(lines.iter().map(line_to_avro).collect::<Result<_>>()?),
            ),
        ],
        EventPayload::ItemAdded { line, currency } => vec![
            ("line".into(), line_to_avro(line)?),
            ("currency".into(), s(currency.code())),
        ],
        EventPayload::ItemRemoved { sku } => vec![("sku".into(), s(sku))],
        EventPayload::OrderApproved { reason } => vec![("reason".into(), optional(reason))],
        EventPayload::OrderRejected { reason } => vec![("reason".into(), s(reason))],
        EventPayload::OrderShipped {
            tracking_number,
            carrier,
        } => vec![
            ("trackingNumber".into(), s(tracking_number)),
            ("carrier".into(), s(carrier)),
        ],
        EventPayload::OrderCanceled { reason } => vec![("reason".into(), optional(reason))],
    }))
}

fn line_to_avro(line: &Line) -> Result<Value> {
    let quantity = i32::try_from(line.quantity).map_err(|_| MessagingError::OutOfRange {
        field: "quantity",
        value: line.quantity.to_string(),
        reason: "larger than an int",
    })?;
    Ok(Value::Record(vec![
        ("sku".into(), Value::String(line.sku.clone())),
        (
            "productName".into(),
            Value::String(line.product_name.clone()),
        ),
        ("quantity".into(), Value::Int(quantity)),
        ("unitPriceMinor".into(), Value::Long(line.unit_price)),
    ]))
}

fn payload_from_avro(event_type: &str, value: Value) -> Result<EventPayload> {
    let mut f = Fields::of(value, event_type)?;
    Ok(match event_type {
        "OrderCreated" => {
            let order_id = f.uuid("orderId")?;
            let customer_id = f.string("customerId")?;
            let currency = f.currency("currency")?;
            let lines = match f.take("lines")? {
                Value::Array(items) => items
                    .into_iter()
                    .map(|item| line_from_avro(item, "OrderCreated.lines[]"))
                    .collect::<Result<_>>()?,
                other => return Err(f.malformed("lines", &format!("not an array: {other:?}"))),
            };
            EventPayload::OrderCreated {
                order_id,
                customer_id,
                currency,
                lines,
            }
        }
        "ItemAdded" => EventPayload::ItemAdded {
            line: line_from_avro(f.take("line")?, "ItemAdded.line")?,
            currency: f.currency("currency")?,
        },
        "ItemRemoved" => EventPayload::ItemRemoved {
            sku: f.string("sku")?,
        },
        "OrderApproved" => EventPayload::OrderApproved {
            reason: f.optional_string("reason")?,
        },
        "OrderRejected" => EventPayload::OrderRejected {
            reason: f.string("reason")?,
        },
        "OrderShipped" => EventPayload::OrderShipped {
            tracking_number: f.string("trackingNumber")?,
            carrier: f.string("carrier")?,
        },
        "OrderCanceled" => EventPayload::OrderCanceled {
            reason: f.optional_string("reason")?,
        },
        other => {
            return Err(MessagingError::Malformed {
                field: "payload".into(),
                reason: format!("unknown event type {other}"),
            });
        }
    })
}

fn line_from_avro(value: Value, path: &str) -> Result<Line> {
    let mut f = Fields::of(value, path)?;
    let quantity = f.int("quantity")?;
    Ok(Line {
        sku: f.string("sku")?,
        product_name: f.string("productName")?,
        quantity: u32::try_from(quantity).map_err(|_| f.malformed("quantity", "negative"))?,
        unit_price: f.long("unitPriceMinor")?,
    })
}

/// The fields of a decoded record, taken out by name; errors name the field's path.
struct Fields {
    path: String,
    fields: Vec<(String, Value)>,
}

impl Fields {
    fn of(value: Value, path: &str) -> Result<Fields> {
        match value {
            Value::Record(fields) => Ok(Fields {
                path: path.to_string(),
                fields,
            }),
            other => Err(MessagingError::Malformed {
                field: path.to_string(),
                reason: format!("not a record: {other:?}"),
            }),
        }
    }

    fn malformed(&self, name: &str, reason: &str) -> MessagingError {
        MessagingError::Malformed {
            field: format!("{}.{name}", self.path),
            reason: reason.to_string(),
        }
    }

    fn take(&mut self, name: &str) -> Result<Value> {
        let at = self.fields.iter().position(|(n, _)| n == name);
        match at {
            Some(at) => Ok(self.fields.swap_remove(at).1),
            None => Err(self.malformed(name, "missing")),
        }
    }

    fn string(&mut self, name: &str) -> Result<String> {
        match self.take(name)? {
            Value::String(s) => Ok(s),
            Value::Uuid(u) => Ok(u.to_string()),
            other => Err(self.malformed(name, &format!("not a string: {other:?}"))),
        }
    }

    fn optional_string(&mut self, name: &str) -> Result<Option<String>> {
        match self.take(name)? {
            Value::Union(_, inner) => match *inner {
                Value::Null => Ok(None),
                Value::String(s) => Ok(Some(s)),
                other => Err(self.malformed(name, &format!("not null or a string: {other:?}"))),
            },
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s)),
            other => Err(self.malformed(name, &format!("not null or a string: {other:?}"))),
        }
    }

    fn uuid(&mut self, name: &str) -> Result<Uuid> {
        match self.take(name)? {
            Value::Uuid(u) => Ok(u),
            Value::String(s) => {
                Uuid::parse_str(&s).map_err(|e| self.malformed(name, &format!("not a UUID: {e}")))
            }
            other => Err(self.malformed(name, &format!("not a UUID: {other:?}"))),
        }
    }

    fn currency(&mut self, name: &str) -> Result<Currency> {
        let code = self.string(name)?;
        Currency::parse(&code).map_err(|e| self.malformed(name, &e))
    }

    fn long(&mut self, name: &str) -> Result<i64> {
        match self.take(name)? {
            Value::Long(v) => Ok(v),
            Value::Int(v) => Ok(i64::from(v)),
            other => Err(self.malformed(name, &format!("not a long: {other:?}"))),
        }
    }

    fn int(&mut self, name: &str) -> Result<i32> {
        match self.take(name)? {
            Value::Int(v) => Ok(v),
            other => Err(self.malformed(name, &format!("not an int: {other:?}"))),
        }
    }

    fn timestamp_micros(&mut self, name: &str) -> Result<i64> {
        match self.take(name)? {
            Value::TimestampMicros(v) | Value::Long(v) => Ok(v),
            other => Err(self.malformed(name, &format!("not a timestamp-micros: {other:?}"))),
        }
    }
}
