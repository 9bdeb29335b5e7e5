//! Events: immutable facts, each carrying what is needed to rebuild state.

use crate::schema::{DecodeError, EventSchema};
use crate::{Currency, Line};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One fact about an order, with who caused it and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub payload: EventPayload,
    pub occurred_at: DateTime<Utc>,
    pub actor: String,
}

/// What happened. Serialized as `{"type": "...", "data": {...}}`-free JSON:
/// the store keeps the type name in its own column and this as the data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum EventPayload {
    #[serde(rename_all = "camelCase")]
    OrderCreated {
        order_id: Uuid,
        customer_id: String,
        currency: Currency,
        lines: Vec<Line>,
    },
    /// `line.quantity` is the quantity added; an existing line of the same SKU grows by it.
    #[serde(rename_all = "camelCase")]
    ItemAdded { line: Line, currency: Currency },
    #[serde(rename_all = "camelCase")]
    ItemRemoved { sku: String },
    #[serde(rename_all = "camelCase")]
    OrderApproved { reason: Option<String> },
    #[serde(rename_all = "camelCase")]
    OrderRejected { reason: String },
    #[serde(rename_all = "camelCase")]
    OrderShipped {
        tracking_number: String,
        carrier: String,
    },
    #[serde(rename_all = "camelCase")]
    OrderCanceled { reason: Option<String> },
}

impl EventPayload {
    /// Version of the data layout of every event type, stored with each event.
    /// Bump on any layout change and add an upcaster from the old one: see
    /// [`crate::schema`]. The golden test (`tests/golden.rs`) pins each version.
    pub const SCHEMA_VERSION: u32 = 1;

    /// Every event type name, as stored next to the data.
    pub const TYPES: [&'static str; 7] = [
        "OrderCreated",
        "ItemAdded",
        "ItemRemoved",
        "OrderApproved",
        "OrderRejected",
        "OrderShipped",
        "OrderCanceled",
    ];

    pub fn event_type(&self) -> &'static str {
        match self {
            EventPayload::OrderCreated { .. } => "OrderCreated",
            EventPayload::ItemAdded { .. } => "ItemAdded",
            EventPayload::ItemRemoved { .. } => "ItemRemoved",
            EventPayload::OrderApproved { .. } => "OrderApproved",
            EventPayload::OrderRejected { .. } => "OrderRejected",
            EventPayload::OrderShipped { .. } => "OrderShipped",
            EventPayload::OrderCanceled { .. } => "OrderCanceled",
        }
    }

    /// The event's data alone, as stored next to its type.
    pub fn data(&self) -> serde_json::Value {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(mut map)) => {
                map.remove("data").unwrap_or(serde_json::Value::Null)
            }
            _ => serde_json::Value::Null,
        }
    }

    /// Reads a stored event back from its type name, the schema version it was
    /// stored with, and its data; older layouts go through the upcasters first.
    pub fn from_stored(
        event_type: &str,
        schema_version: u32,
        data: &serde_json::Value,
    ) -> Result<EventPayload, DecodeError> {
        EventSchema::CURRENT.decode(event_type, schema_version, data)
    }
}
