//! The one conversion between domain events and stored events.
//!
//! Everything that reads events back (the command side's load, the query
//! side's history and past states, the projector) goes through
//! [`RecordedEvent::decode`], and everything that appends builds its rows with
//! [`NewEvent::from_domain`]. So the layout an event is written in and the
//! way it is read back are decided in one place: the data is stamped with
//! [`EventPayload::SCHEMA_VERSION`] on the way in, and on the way out its
//! stored `schema_version` picks the decoder, older layouts passing through
//! the domain's upcasters (`order_domain::schema`).

use crate::{NewEvent, RecordedEvent, StoreError};
use order_domain::{DecodeError, Event, EventPayload};
use uuid::Uuid;

/// A stored event that this code cannot turn into a domain event: which one,
/// and why. Never a guess: the caller decides whether to stop or skip.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "event {event_id} (version {version} of stream {stream_id}, type {event_type}, \
     schema version {schema_version}): {reason}"
)]
pub struct UndecodableEvent {
    pub event_id: Uuid,
    pub stream_id: Uuid,
    /// The event's version in its stream.
    pub version: u64,
    pub event_type: String,
    /// The layout version the data was stored with.
    pub schema_version: u32,
    #[source]
    pub reason: DecodeError,
}

impl From<Box<UndecodableEvent>> for StoreError {
    fn from(e: Box<UndecodableEvent>) -> StoreError {
        StoreError::Corrupt(e.to_string())
    }
}

impl RecordedEvent {
    /// The domain event this row stores, read according to its `schema_version`.
    /// (The error is boxed: it is large, and rare.)
    pub fn decode(&self) -> Result<Event, Box<UndecodableEvent>> {
        let payload = EventPayload::from_stored(&self.event_type, self.schema_version, &self.data)
            .map_err(|reason| {
                Box::new(UndecodableEvent {
                    event_id: self.event_id,
                    stream_id: self.stream_id,
                    version: self.version,
                    event_type: self.event_type.clone(),
                    schema_version: self.schema_version,
                    reason,
                })
            })?;
        Ok(Event {
            payload,
            occurred_at: self.occurred_at,
            actor: self.actor.clone(),
        })
    }
}

impl NewEvent {
    /// The row to append for `event`, in the current layout.
    pub fn from_domain(event: &Event, event_id: Uuid) -> NewEvent {
        NewEvent {
            event_id,
            event_type: event.payload.event_type().to_string(),
            schema_version: EventPayload::SCHEMA_VERSION,
            data: event.payload.data(),
            occurred_at: event.occurred_at,
            actor: event.actor.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn recorded(new: &NewEvent) -> RecordedEvent {
        RecordedEvent {
            event_id: new.event_id,
            stream_id: Uuid::new_v4(),
            version: 3,
            global_position: 17,
            event_type: new.event_type.clone(),
            schema_version: new.schema_version,
            data: new.data.clone(),
            occurred_at: new.occurred_at,
            actor: new.actor.clone(),
            correlation_id: "corr".into(),
            causation_id: Uuid::new_v4(),
            traceparent: None,
            idempotency_key: None,
        }
    }

    fn shipped() -> Event {
        Event {
            payload: EventPayload::OrderShipped {
                tracking_number: "TRK-1".into(),
                carrier: "DHL".into(),
            },
            occurred_at: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
            actor: "ops".into(),
        }
    }

    #[test]
    fn what_is_appended_decodes_back_to_the_same_event() {
        let new = NewEvent::from_domain(&shipped(), Uuid::now_v7());
        assert_eq!(new.schema_version, EventPayload::SCHEMA_VERSION);
        assert_eq!(new.event_type, "OrderShipped");
        assert_eq!(recorded(&new).decode(), Ok(shipped()));
    }

    #[test]
    fn an_undecodable_event_is_named_by_id_stream_type_and_schema_version() {
        let mut row = recorded(&NewEvent::from_domain(&shipped(), Uuid::now_v7()));
        row.schema_version = EventPayload::SCHEMA_VERSION + 1;
        let err = row.decode().unwrap_err();
        assert!(matches!(err.reason, DecodeError::FutureVersion { .. }));
        let text = StoreError::from(err).to_string();
        for part in [
            row.event_id.to_string(),
            row.stream_id.to_string(),
            "OrderShipped".to_string(),
            format!("schema version {}", row.schema_version),
        ] {
            assert!(text.contains(&part), "{part:?} missing from {text}");
        }
    }
}
