//! Builds realistic logs with the domain itself: commands decided against the
//! current state, wrapped into `RecordedEvent`s with increasing global positions.
#![allow(dead_code)]

use chrono::{DateTime, TimeZone, Utc};
use order_domain::{
    Command, CommandContext, Event, LineInput, Order, decide, evolve, replay, validate_line,
};
use order_event_store::{ConsistencyToken, LogCursor, RecordedEvent};
use order_read_model::{Checkpoint, SqliteReadStore};
use std::collections::HashMap;
use uuid::Uuid;

pub async fn open_store() -> (SqliteReadStore, std::path::PathBuf) {
    let path = temp_path("order-read");
    let store = SqliteReadStore::open(&path).await.expect("open read store");
    (store, path)
}

pub fn temp_path(prefix: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("{prefix}-{}.db", Uuid::new_v4()))
}

pub fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
}

pub fn item(sku: &str, name: &str, qty: i64, price: &str) -> LineInput {
    LineInput {
        sku: Some(sku.into()),
        product_name: Some(name.into()),
        quantity: Some(qty),
        unit_price: Some(price.into()),
    }
}

/// A growing log of orders decided by the domain.
#[derive(Default)]
pub struct Log {
    pub position: i64,
    pub events: Vec<RecordedEvent>,
    history: HashMap<Uuid, Vec<Event>>,
}

impl Log {
    /// Runs `command` on order `id` at time `now`; returns the events it recorded.
    pub fn exec(&mut self, id: Uuid, command: Command, now: DateTime<Utc>) -> Vec<RecordedEvent> {
        let history = self.history.entry(id).or_default();
        let state = replay(history.iter());
        let ctx = CommandContext {
            actor: "tester".into(),
            now,
        };
        let events = decide(&command, state.as_ref(), &ctx).expect("command accepted");
        let mut recorded = Vec::new();
        for event in events {
            history.push(event.clone());
            self.position += 1;
            let r = RecordedEvent {
                event_id: Uuid::now_v7(),
                stream_id: id,
                version: history.len() as u64,
                global_position: self.position,
                event_type: event.payload.event_type().into(),
                schema_version: order_domain::EventPayload::SCHEMA_VERSION,
                data: event.payload.data(),
                occurred_at: event.occurred_at,
                actor: event.actor.clone(),
                correlation_id: "corr".into(),
                causation_id: Uuid::new_v4(),
                traceparent: None,
                idempotency_key: None,
            };
            self.events.push(r.clone());
            recorded.push(r);
        }
        recorded
    }

    /// Creates an order and returns its id and the recorded events.
    pub fn create(
        &mut self,
        customer: &str,
        currency: &str,
        items: &[LineInput],
        now: DateTime<Utc>,
    ) -> (Uuid, Vec<RecordedEvent>) {
        let id = Uuid::new_v4();
        let command =
            Command::create_order(id, customer, currency, items).expect("valid create command");
        let events = self.exec(id, command, now);
        (id, events)
    }

    pub fn add(&mut self, id: Uuid, line: LineInput, now: DateTime<Utc>) -> Vec<RecordedEvent> {
        let currency = self.order(id).unwrap().currency;
        let line = validate_line(&line, currency, "").unwrap();
        self.exec(id, Command::AddItem { line }, now)
    }

    /// The order replayed from its whole history: what the projection must equal.
    pub fn order(&self, id: Uuid) -> Option<Order> {
        self.history
            .get(&id)
            .and_then(|h| h.iter().fold(None, evolve))
    }

    /// A checkpoint just past everything recorded so far.
    pub fn checkpoint(&self) -> Checkpoint {
        checkpoint_at(self.position)
    }
}

pub fn checkpoint_at(position: i64) -> Checkpoint {
    Checkpoint {
        cursor: LogCursor { position },
        covered: ConsistencyToken(position as u64),
    }
}
