//! The behaviour every [`ReadStore`] adapter must show, written once and run
//! against each (`read_store_conformance_tests!`): projection equal to a replay,
//! idempotent apply, filters, search, keyset pages, exact stats, reset.
//!
//! The logs are built with the domain itself ([`Log`]): commands decided against
//! the current state, wrapped into `RecordedEvent`s with increasing global
//! positions. Compiled only with the `testsuite` feature, so none of it reaches a
//! release binary.

#![allow(clippy::missing_panics_doc)]

use crate::{Checkpoint, OrderFilter, OrderView, PageRequest, ReadError, ReadStore, SortOrder};
use chrono::{DateTime, TimeZone, Utc};
use order_domain::{
    Command, CommandContext, Event, LineInput, Order, OrderStatus, decide, evolve, replay,
    validate_line,
};
use order_event_store::{ConsistencyToken, LogCursor, RecordedEvent};
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

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
        self.try_exec(id, &command, now).expect("command accepted")
    }

    /// Like [`Log::exec`], but a command the domain refuses records nothing and is `None`.
    pub fn try_exec(
        &mut self,
        id: Uuid,
        command: &Command,
        now: DateTime<Utc>,
    ) -> Option<Vec<RecordedEvent>> {
        let history = self.history.entry(id).or_default();
        let state = replay(history.iter());
        let ctx = CommandContext {
            actor: "tester".into(),
            now,
        };
        let events = decide(command, state.as_ref(), &ctx).ok()?;
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
        Some(recorded)
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

pub fn search(text: &str) -> OrderFilter {
    OrderFilter {
        text: Some(text.into()),
        ..OrderFilter::default()
    }
}

pub fn page(limit: u32, sort: SortOrder, cursor: Option<String>) -> PageRequest {
    PageRequest {
        limit,
        sort,
        cursor,
    }
}

pub async fn found(store: &dyn ReadStore, filter: &OrderFilter) -> HashSet<Uuid> {
    store
        .list(filter, &page(200, SortOrder::Desc, None))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|o| o.order_id)
        .collect()
}

pub async fn a_projected_order_equals_its_replay(store: &dyn ReadStore) {
    let mut log = Log::default();
    let (id, _) = log.create(
        "cust-1",
        "USD",
        &[
            item("SKU-1", "Blue mug", 2, "12.3"),
            item("SKU-2", "Tea", 1, "4"),
        ],
        at(0),
    );
    log.add(id, item("SKU-3", "Spoon", 3, "0.05"), at(1));
    log.add(id, item("SKU-1", "Blue mug", 1, "12.30"), at(2));
    log.exec(
        id,
        Command::RemoveItem {
            sku: "SKU-2".into(),
        },
        at(3),
    );
    log.exec(id, Command::ApproveOrder { reason: None }, at(4));
    store.apply(&log.events, log.checkpoint()).await.unwrap();

    let view = store.get(id).await.unwrap().expect("projected");
    let replayed = log.order(id).unwrap();
    assert_eq!(view, OrderView::from(&replayed));
    assert_eq!(view.version, 5);
    assert_eq!(view.status, OrderStatus::Approved);
    assert_eq!(view.total_amount, "37.05");
    assert_eq!(view.created_at, at(0));
    assert_eq!(view.updated_at, at(4));

    let json = serde_json::to_value(&view).unwrap();
    assert_eq!(json["orderId"], id.to_string());
    assert_eq!(json["status"], "APPROVED");
    assert_eq!(json["items"][0]["unitPrice"], "12.30");
    assert_eq!(json["items"][0]["lineTotal"], "36.90");
    assert_eq!(json["items"][0]["productName"], "Blue mug");
    assert_eq!(json["items"][1]["sku"], "SKU-3");
    assert_eq!(json["totalAmount"], "37.05");

    assert_eq!(store.get(Uuid::new_v4()).await.unwrap(), None);
}

pub async fn reapplying_events_changes_nothing(store: &dyn ReadStore) {
    let mut log = Log::default();
    let (a, _) = log.create("c", "EUR", &[item("A", "Apple", 1, "1.00")], at(0));
    let (b, _) = log.create("c", "EUR", &[item("B", "Pear", 1, "2.00")], at(1));
    log.add(a, item("C", "Cherry", 2, "0.50"), at(2));
    log.exec(b, Command::CancelOrder { reason: None }, at(3));
    store.apply(&log.events, log.checkpoint()).await.unwrap();
    let before = (
        store.get(a).await.unwrap(),
        store.get(b).await.unwrap(),
        store.stats(&OrderFilter::default()).await.unwrap(),
    );

    // The whole batch again, then an overlapping tail, then events out of order.
    store.apply(&log.events, log.checkpoint()).await.unwrap();
    store
        .apply(&log.events[2..], log.checkpoint())
        .await
        .unwrap();
    let mut reversed = log.events.clone();
    reversed.reverse();
    store.apply(&reversed, log.checkpoint()).await.unwrap();

    let after = (
        store.get(a).await.unwrap(),
        store.get(b).await.unwrap(),
        store.stats(&OrderFilter::default()).await.unwrap(),
    );
    assert_eq!(before, after);
    assert_eq!(after.0.unwrap().items.len(), 2);
    assert_eq!(after.1.unwrap().status, OrderStatus::Canceled);
}

pub async fn events_applied_one_batch_at_a_time_equal_one_big_batch(store: &dyn ReadStore) {
    let mut log = Log::default();
    let (id, _) = log.create("c", "JPY", &[item("A", "Apple", 1, "100")], at(0));
    for i in 0..5 {
        log.add(id, item(&format!("S{i}"), "Thing", 1, "10"), at(i + 1));
    }
    for event in &log.events {
        store
            .apply(
                std::slice::from_ref(event),
                checkpoint_at(event.global_position),
            )
            .await
            .unwrap();
    }
    let view = store.get(id).await.unwrap().unwrap();
    assert_eq!(view, OrderView::from(&log.order(id).unwrap()));
    assert_eq!(view.total_amount, "150");
}

pub async fn a_failed_batch_keeps_neither_its_views_nor_its_checkpoint(store: &dyn ReadStore) {
    assert_eq!(store.checkpoint().await.unwrap(), Default::default());
    let mut log = Log::default();
    let (id, _) = log.create("c", "USD", &[item("A", "Apple", 1, "1")], at(0));
    store.apply(&log.events, log.checkpoint()).await.unwrap();
    let applied = log.checkpoint();

    // A batch with an event of a known type that does not decode fails as a
    // whole: neither its good event nor its checkpoint is kept.
    let good = log.add(id, item("B", "Banana", 1, "2"), at(1));
    let mut bad = log.add(id, item("C", "Cherry", 1, "3"), at(2));
    bad[0].data = serde_json::json!({"line": "not a line"});
    let batch: Vec<_> = good.iter().chain(&bad).cloned().collect();
    let err = store.apply(&batch, log.checkpoint()).await.unwrap_err();
    assert!(matches!(err, ReadError::Corrupt(_)), "{err:?}");
    assert_eq!(store.checkpoint().await.unwrap(), applied);
    assert_eq!(store.get(id).await.unwrap().unwrap().version, 1);
}

pub async fn unknown_event_types_are_skipped_without_wedging_the_order(store: &dyn ReadStore) {
    let mut log = Log::default();
    let (id, _) = log.create("c", "USD", &[item("A", "Apple", 1, "1")], at(0));
    // An event type from newer code, at version 2 of the order.
    let mut future = log.events[0].clone();
    future.version = 2;
    future.global_position = 2;
    future.event_type = "OrderGiftWrapped".into();
    future.data = serde_json::json!({"paper": "red"});
    store
        .apply(&[log.events[0].clone(), future], checkpoint_at(2))
        .await
        .unwrap();
    let view = store.get(id).await.unwrap().unwrap();
    assert_eq!(view.version, 2);
    assert_eq!(view.items.len(), 1);
    assert_eq!(store.checkpoint().await.unwrap(), checkpoint_at(2));
}

/// Seven orders over three customers, statuses and currencies, with equal timestamps.
pub fn sample() -> (Log, Vec<Uuid>) {
    let mut log = Log::default();
    let mut ids = Vec::new();
    let spec = [
        ("alice", "USD", 0, "SKU-100", "Red kettle", "10.00"),
        ("alice", "USD", 10, "SKU-200", "Green teapot", "20.50"),
        ("bob", "EUR", 10, "SKU-300", "Blue mug", "5.25"),
        ("bob", "USD", 10, "ABC_777", "Blue kettle", "7.77"),
        ("carol", "JPY", 20, "SKU-400", "Espresso cups", "1200"),
        ("carol", "USD", 30, "SKU-500", "Milk jug", "3.00"),
        ("alice", "EUR", 30, "SKU-600", "Tea towel", "2.00"),
    ];
    for (customer, currency, t, sku, name, price) in spec {
        let (id, _) = log.create(customer, currency, &[item(sku, name, 2, price)], at(t));
        ids.push(id);
    }
    log.exec(ids[1], Command::ApproveOrder { reason: None }, at(40));
    log.exec(ids[2], Command::reject(Some("no stock")).unwrap(), at(41));
    log.exec(ids[3], Command::CancelOrder { reason: None }, at(42));
    log.exec(ids[4], Command::ApproveOrder { reason: None }, at(43));
    log.exec(
        ids[4],
        Command::ship(Some("1Z"), Some("UPS")).unwrap(),
        at(44),
    );
    (log, ids)
}

pub async fn sample_store(store: &dyn ReadStore) -> (Log, Vec<Uuid>) {
    let (log, ids) = sample();
    store.apply(&log.events, log.checkpoint()).await.unwrap();
    (log, ids)
}

pub fn set(ids: &[Uuid], which: &[usize]) -> HashSet<Uuid> {
    which.iter().map(|&i| ids[i]).collect()
}

pub async fn filters_narrow_lists(store: &dyn ReadStore) {
    let (_, ids) = sample_store(store).await;
    assert_eq!(found(store, &OrderFilter::default()).await.len(), 7);
    let alice = OrderFilter {
        customer_id: Some("alice".into()),
        ..Default::default()
    };
    assert_eq!(found(store, &alice).await, set(&ids, &[0, 1, 6]));
    let approved = OrderFilter {
        status: Some(OrderStatus::Approved),
        ..Default::default()
    };
    assert_eq!(found(store, &approved).await, set(&ids, &[1]));
    let range = OrderFilter {
        created_from: Some(at(10)),
        created_to: Some(at(30)),
        ..Default::default()
    };
    assert_eq!(found(store, &range).await, set(&ids, &[1, 2, 3, 4]));
    let combined = OrderFilter {
        customer_id: Some("alice".into()),
        created_from: Some(at(10)),
        ..Default::default()
    };
    assert_eq!(found(store, &combined).await, set(&ids, &[1, 6]));
    let nobody = OrderFilter {
        customer_id: Some("dave".into()),
        ..Default::default()
    };
    assert!(found(store, &nobody).await.is_empty());
}

pub async fn date_bounds_far_from_every_order_keep_all_or_nothing(store: &dyn ReadStore) {
    sample_store(store).await;
    let year = |y: i32| Utc.with_ymd_and_hms(y, 1, 1, 0, 0, 0).unwrap();
    for (from, to, expected) in [
        (Some(year(1900)), None, 7),
        (Some(year(1960)), Some(year(2400)), 7),
        (None, Some(year(3000)), 7),
        (None, Some(year(1960)), 0),
        (None, Some(year(1970)), 0),
        (Some(year(2300)), None, 0),
        (Some(year(2500)), Some(year(2600)), 0),
    ] {
        let filter = OrderFilter {
            created_from: from,
            created_to: to,
            ..Default::default()
        };
        assert_eq!(
            found(store, &filter).await.len(),
            expected,
            "{from:?}..{to:?}"
        );
        let stats = store.stats(&filter).await.unwrap();
        assert_eq!(
            stats.by_status.values().sum::<u64>(),
            expected as u64,
            "{from:?}..{to:?}"
        );
    }
}

pub async fn search_finds_products_skus_and_ids(store: &dyn ReadStore) {
    let (_, ids) = sample_store(store).await;
    assert_eq!(found(store, &search("kettle")).await, set(&ids, &[0, 3]));
    assert_eq!(found(store, &search("KETT")).await, set(&ids, &[0, 3]));
    assert_eq!(found(store, &search("blue kettle")).await, set(&ids, &[3]));
    assert_eq!(found(store, &search("SKU-300")).await, set(&ids, &[2]));
    assert_eq!(found(store, &search("sku-3")).await, set(&ids, &[2]));
    assert_eq!(found(store, &search("300")).await, set(&ids, &[2]));
    assert_eq!(found(store, &search("ABC_777")).await, set(&ids, &[3]));
    assert_eq!(found(store, &search("777")).await, set(&ids, &[3]));
    assert_eq!(found(store, &search("sku")).await.len(), 6);
    assert_eq!(
        found(store, &search(&ids[5].to_string())).await,
        set(&ids, &[5])
    );
    assert_eq!(
        found(store, &search(&ids[5].to_string().to_uppercase())).await,
        set(&ids, &[5])
    );
    assert_eq!(found(store, &search("carol")).await, set(&ids, &[4, 5]));
    assert!(found(store, &search("submarine")).await.is_empty());

    // Search combines with the other filters.
    let filtered = OrderFilter {
        customer_id: Some("bob".into()),
        ..search("blue")
    };
    assert_eq!(found(store, &filtered).await, set(&ids, &[2, 3]));
    let filtered = OrderFilter {
        status: Some(OrderStatus::Created),
        ..search("kettle")
    };
    assert_eq!(found(store, &filtered).await, set(&ids, &[0]));
}

pub async fn hostile_search_text_never_errors(store: &dyn ReadStore) {
    let (_, ids) = sample_store(store).await;
    for text in [
        "\"",
        "AND(",
        "*",
        "NEAR",
        "NEAR(kettle mug)",
        "kettle OR mug",
        "\"kettle",
        "kettle\"",
        "(",
        ")",
        "-",
        "^kettle",
        "terms:kettle",
        "{order_id}: x",
        "a\"b",
        "''",
        "NOT",
        "\\",
        "%",
        "_",
        "é",
        "日本",
        "\u{0903}",
        "\u{0301}",
        "🦀",
        "\0",
    ] {
        let result = store
            .list(&search(text), &page(10, SortOrder::Desc, None))
            .await;
        assert!(result.is_ok(), "{text:?}: {result:?}");
        let stats = store.stats(&search(text)).await;
        assert!(stats.is_ok(), "{text:?}: {stats:?}");
    }
    // Syntax characters are separators: this finds the kettles that are red...
    assert_eq!(
        found(store, &search("(red\" kettle*")).await,
        set(&ids, &[0])
    );
    // ...and operator names are plain words, which no order here contains.
    assert!(found(store, &search("red AND kettle")).await.is_empty());
    for blank in ["", " ", "\t\n"] {
        assert!(matches!(
            store
                .list(&search(blank), &page(10, SortOrder::Desc, None))
                .await,
            Err(ReadError::InvalidQuery(_))
        ));
        assert!(matches!(
            store.stats(&search(blank)).await,
            Err(ReadError::InvalidQuery(_))
        ));
    }
}

/// Walks every page and returns the ids in the order they came.
pub async fn walk(store: &dyn ReadStore, sort: SortOrder, limit: u32) -> Vec<Uuid> {
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let p = store
            .list(&OrderFilter::default(), &page(limit, sort, cursor))
            .await
            .unwrap();
        assert!(p.items.len() <= limit as usize);
        seen.extend(p.items.iter().map(|o| o.order_id));
        match p.next_cursor {
            Some(c) => cursor = Some(c),
            None => return seen,
        }
    }
}

pub fn expected_order(log: &Log, ids: &[Uuid], sort: SortOrder) -> Vec<Uuid> {
    let mut keyed: Vec<_> = ids
        .iter()
        .map(|&id| (log.order(id).unwrap().created_at, id))
        .collect();
    keyed.sort();
    if sort == SortOrder::Desc {
        keyed.reverse();
    }
    keyed.into_iter().map(|(_, id)| id).collect()
}

pub async fn pages_cover_every_order_once_in_both_directions(store: &dyn ReadStore) {
    let (log, ids) = sample_store(store).await;
    for sort in [SortOrder::Asc, SortOrder::Desc] {
        for limit in [1, 2, 3, 7, 8] {
            let walked = walk(store, sort, limit).await;
            assert_eq!(
                walked,
                expected_order(&log, &ids, sort),
                "{sort:?} limit {limit}"
            );
        }
    }
    // The last page of an exact multiple has no cursor only when nothing follows.
    let full = store
        .list(&OrderFilter::default(), &page(7, SortOrder::Asc, None))
        .await
        .unwrap();
    assert_eq!(full.items.len(), 7);
    assert_eq!(full.next_cursor, None);
}

pub async fn pages_neither_repeat_nor_skip_while_orders_are_added(store: &dyn ReadStore) {
    for sort in [SortOrder::Asc, SortOrder::Desc] {
        store.reset().await.unwrap();
        let (mut log, ids) = sample_store(store).await;
        let mut seen = Vec::new();
        let mut cursor = None;
        let mut added = Vec::new();
        let mut round = 0;
        loop {
            let p = store
                .list(&OrderFilter::default(), &page(2, sort, cursor))
                .await
                .unwrap();
            seen.extend(p.items.iter().map(|o| o.order_id));
            // New orders between fetches: one at a timestamp equal to existing
            // ones, one in the past, one in the future.
            round += 1;
            for t in [10, -5, 100 + round] {
                let before = log.events.len();
                let (id, _) = log.create("eve", "USD", &[item("N", "New", 1, "1")], at(t));
                store
                    .apply(&log.events[before..], log.checkpoint())
                    .await
                    .unwrap();
                added.push(id);
            }
            match p.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        let unique: HashSet<_> = seen.iter().copied().collect();
        assert_eq!(unique.len(), seen.len(), "{sort:?}: an order was repeated");
        for id in &ids {
            assert!(unique.contains(id), "{sort:?}: order {id} was skipped");
        }
        // What was seen is still in sort order.
        let all: Vec<Uuid> = ids.iter().chain(&added).copied().collect();
        let order = expected_order(&log, &all, sort);
        let positions: Vec<usize> = seen
            .iter()
            .map(|id| order.iter().position(|o| o == id).unwrap())
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{sort:?}");
    }
}

pub async fn foreign_or_tampered_cursors_are_refused(store: &dyn ReadStore) {
    sample_store(store).await;
    let first = store
        .list(&OrderFilter::default(), &page(2, SortOrder::Desc, None))
        .await
        .unwrap();
    let cursor = first.next_cursor.unwrap();
    let mut tampered = cursor.clone();
    tampered.replace_range(0..1, if cursor.starts_with('A') { "B" } else { "A" });
    for (bad, sort) in [
        (cursor.clone(), SortOrder::Asc),
        ("not a cursor".to_string(), SortOrder::Desc),
        ("".to_string(), SortOrder::Desc),
        (tampered, SortOrder::Desc),
        (format!("{cursor}="), SortOrder::Desc),
    ] {
        let result = store
            .list(&OrderFilter::default(), &page(2, sort, Some(bad.clone())))
            .await;
        assert!(
            matches!(result, Err(ReadError::InvalidCursor)),
            "{bad:?}: {result:?}"
        );
    }
    assert!(
        store
            .list(
                &OrderFilter::default(),
                &page(2, SortOrder::Desc, Some(cursor))
            )
            .await
            .is_ok()
    );
}

pub async fn stats_count_every_status_and_sum_exactly_per_currency(store: &dyn ReadStore) {
    sample_store(store).await;
    let stats = store.stats(&OrderFilter::default()).await.unwrap();
    let by_status: Vec<(&str, u64)> = stats
        .by_status
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(
        by_status,
        [
            ("APPROVED", 1),
            ("CANCELED", 1),
            ("CREATED", 3),
            ("REJECTED", 1),
            ("SHIPPED", 1)
        ]
    );
    // USD: 20.00 + 41.00 + 6.00 (the canceled 15.54 is left out); EUR: 4.00
    // (the rejected 10.50 is left out); JPY: 2400.
    let usd = &stats.by_currency["USD"];
    assert_eq!((usd.order_count, usd.total_amount.as_str()), (4, "67.00"));
    let eur = &stats.by_currency["EUR"];
    assert_eq!((eur.order_count, eur.total_amount.as_str()), (2, "4.00"));
    let jpy = &stats.by_currency["JPY"];
    assert_eq!((jpy.order_count, jpy.total_amount.as_str()), (1, "2400"));
    assert_eq!(stats.by_currency.len(), 3);

    let json = serde_json::to_value(&stats).unwrap();
    assert_eq!(json["byCurrency"]["USD"]["orderCount"], 4);
    assert_eq!(json["byCurrency"]["USD"]["totalAmount"], "67.00");
    assert_eq!(json["byStatus"]["CREATED"], 3);

    let alice = store
        .stats(&OrderFilter {
            customer_id: Some("alice".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(alice.by_status["CREATED"], 2);
    assert_eq!(alice.by_status["REJECTED"], 0);
    assert_eq!(alice.by_currency["USD"].total_amount, "61.00");
    assert_eq!(alice.by_currency["EUR"].total_amount, "4.00");

    let kettles = store.stats(&search("kettle")).await.unwrap();
    assert_eq!(kettles.by_currency["USD"].order_count, 2);
    assert_eq!(kettles.by_currency["USD"].total_amount, "20.00");

    let none = store
        .stats(&OrderFilter {
            customer_id: Some("nobody".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(none.by_status.len(), 5);
    assert!(none.by_status.values().all(|&n| n == 0));
    assert!(none.by_currency.is_empty());
}

pub async fn stats_sums_do_not_overflow_i64(store: &dyn ReadStore) {
    let mut log = Log::default();
    // Three orders each close to i64::MAX minor units: the sum needs i128.
    for t in 0..3 {
        log.create(
            "whale",
            "USD",
            &[item("GOLD", "Gold bar", 1, "90000000000000000.00")],
            at(t),
        );
    }
    store.apply(&log.events, log.checkpoint()).await.unwrap();
    let stats = store.stats(&OrderFilter::default()).await.unwrap();
    assert_eq!(
        stats.by_currency["USD"].total_amount,
        "270000000000000000.00"
    );
}

pub async fn reset_drops_views_and_checkpoint(store: &dyn ReadStore) {
    let (_, ids) = sample_store(store).await;
    store.reset().await.unwrap();
    assert_eq!(store.get(ids[0]).await.unwrap(), None);
    assert!(ids_of_search(store, "kettle").await.is_empty());
    assert_eq!(store.checkpoint().await.unwrap(), Default::default());
    // And it projects again from scratch.
    let (log, ids) = sample();
    store.apply(&log.events, log.checkpoint()).await.unwrap();
    assert_eq!(ids_of_search(store, "kettle").await.len(), 2);
    assert!(store.get(ids[0]).await.unwrap().is_some());
    store.ping().await.unwrap();
}

pub async fn ids_of_search(store: &dyn ReadStore, text: &str) -> HashSet<Uuid> {
    found(store, &search(text)).await
}

/// Instantiates every conformance test for one adapter. `$open` is an expression
/// evaluating to a future of a value that dereferences to a fresh, empty store
/// (a guard may clean up in its `Drop`).
#[macro_export]
macro_rules! read_store_conformance_tests {
    ($open:expr) => {
        mod read_store_conformance {
            use super::*;
            use $crate::conformance as c;

            #[tokio::test]
            async fn a_projected_order_equals_its_replay() {
                let store = $open.await;
                c::a_projected_order_equals_its_replay(&*store).await
            }
            #[tokio::test]
            async fn reapplying_events_changes_nothing() {
                let store = $open.await;
                c::reapplying_events_changes_nothing(&*store).await
            }
            #[tokio::test]
            async fn events_applied_one_batch_at_a_time_equal_one_big_batch() {
                let store = $open.await;
                c::events_applied_one_batch_at_a_time_equal_one_big_batch(&*store).await
            }
            #[tokio::test]
            async fn a_failed_batch_keeps_neither_its_views_nor_its_checkpoint() {
                let store = $open.await;
                c::a_failed_batch_keeps_neither_its_views_nor_its_checkpoint(&*store).await
            }
            #[tokio::test]
            async fn unknown_event_types_are_skipped_without_wedging_the_order() {
                let store = $open.await;
                c::unknown_event_types_are_skipped_without_wedging_the_order(&*store).await
            }
            #[tokio::test]
            async fn filters_narrow_lists() {
                let store = $open.await;
                c::filters_narrow_lists(&*store).await
            }
            #[tokio::test]
            async fn date_bounds_far_from_every_order_keep_all_or_nothing() {
                let store = $open.await;
                c::date_bounds_far_from_every_order_keep_all_or_nothing(&*store).await
            }
            #[tokio::test]
            async fn search_finds_products_skus_and_ids() {
                let store = $open.await;
                c::search_finds_products_skus_and_ids(&*store).await
            }
            #[tokio::test]
            async fn hostile_search_text_never_errors() {
                let store = $open.await;
                c::hostile_search_text_never_errors(&*store).await
            }
            #[tokio::test]
            async fn pages_cover_every_order_once_in_both_directions() {
                let store = $open.await;
                c::pages_cover_every_order_once_in_both_directions(&*store).await
            }
            #[tokio::test]
            async fn pages_neither_repeat_nor_skip_while_orders_are_added() {
                let store = $open.await;
                c::pages_neither_repeat_nor_skip_while_orders_are_added(&*store).await
            }
            #[tokio::test]
            async fn foreign_or_tampered_cursors_are_refused() {
                let store = $open.await;
                c::foreign_or_tampered_cursors_are_refused(&*store).await
            }
            #[tokio::test]
            async fn stats_count_every_status_and_sum_exactly_per_currency() {
                let store = $open.await;
                c::stats_count_every_status_and_sum_exactly_per_currency(&*store).await
            }
            #[tokio::test]
            async fn stats_sums_do_not_overflow_i64() {
                let store = $open.await;
                c::stats_sums_do_not_overflow_i64(&*store).await
            }
            #[tokio::test]
            async fn reset_drops_views_and_checkpoint() {
                let store = $open.await;
                c::reset_drops_views_and_checkpoint(&*store).await
            }
        }
    };
}
