//! The behaviour every [`EventStore`] adapter must have.
//!
//! Adapters' test files call [`conformance_tests!`](crate::conformance_tests)
//! with an async expression that opens a fresh, empty store; each check below
//! becomes one `#[tokio::test]`.

use crate::*;
use chrono::{TimeZone, Utc};
use std::sync::Arc;

fn event(n: u32) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: format!("Happened{n}"),
        schema_version: 1,
        data: serde_json::json!({ "n": n, "text": "grüße 🎉" }),
        occurred_at: Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap()
            + chrono::Duration::milliseconds(i64::from(n)),
        actor: "actor-1".into(),
    }
}

/// A request appending `count` events to `stream` at `expected`.
pub fn request(stream: Uuid, expected: u64, count: u32) -> AppendRequest {
    AppendRequest {
        stream_id: stream,
        expected_version: expected,
        events: (0..count).map(event).collect(),
        metadata: CommandMetadata {
            command_id: Uuid::now_v7(),
            correlation_id: "corr-1".into(),
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
            idempotency_key: None,
        },
        idempotency: None,
    }
}

fn keyed(mut req: AppendRequest, key: &str) -> AppendRequest {
    req.metadata.idempotency_key = Some(key.into());
    req.idempotency = Some((
        key.into(),
        StoredResponse {
            request_hash: "hash-1".into(),
            status: 201,
            response: serde_json::json!({ "body": { "ok": true } }),
        },
    ));
    req
}

/// Reads the whole log from the start, until the reader covers `until`.
///
/// On a shared server other sessions' open transactions may briefly hold a
/// reader back (that is gap safety at work), so this waits, up to 10 seconds.
pub async fn read_all(store: &dyn EventStore, until: ConsistencyToken) -> Vec<RecordedEvent> {
    let mut cursor = LogCursor::default();
    let mut all = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let batch = store.read_log(cursor, 3).await.expect("read_log");
        cursor = batch.next;
        let drained = batch.events.is_empty();
        all.extend(batch.events);
        if drained && batch.covered >= until {
            return all;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the log reader did not reach {until:?} within 10 s"
        );
        if drained {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

pub async fn appends_and_reads_a_stream(store: &dyn EventStore) {
    let stream = Uuid::new_v4();
    let req = request(stream, 0, 2);
    let appended = store.append(req.clone()).await.unwrap();
    assert_eq!(appended.last_version, 2);
    store.append(request(stream, 2, 1)).await.unwrap();

    let events = store.read_stream(stream, 0, None).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.version).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    let first = &events[0];
    assert_eq!(first.event_id, req.events[0].event_id);
    assert_eq!(first.stream_id, stream);
    assert_eq!(first.event_type, "Happened0");
    assert_eq!(first.data, req.events[0].data);
    assert_eq!(first.occurred_at, req.events[0].occurred_at);
    assert_eq!(first.actor, "actor-1");
    assert_eq!(first.correlation_id, "corr-1");
    assert_eq!(first.causation_id, req.metadata.command_id);
    assert_eq!(first.traceparent, req.metadata.traceparent);
    assert_eq!(events[1].global_position, appended.last_position);
    assert!(events[0].global_position < events[2].global_position);

    let window = store.read_stream(stream, 1, Some(2)).await.unwrap();
    assert_eq!(window.iter().map(|e| e.version).collect::<Vec<_>>(), [2]);
    assert!(
        store
            .read_stream(Uuid::new_v4(), 0, None)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn refuses_a_stale_expected_version(store: &dyn EventStore) {
    let stream = Uuid::new_v4();
    store.append(request(stream, 0, 1)).await.unwrap();
    for stale in [0, 2] {
        match store.append(request(stream, stale, 2)).await {
            Err(StoreError::Conflict {
                expected, actual, ..
            }) => assert_eq!((expected, actual), (stale, 1)),
            other => panic!("expected a conflict, got {other:?}"),
        }
    }
    assert_eq!(store.read_stream(stream, 0, None).await.unwrap().len(), 1);
}

pub async fn concurrent_appends_never_lose_or_duplicate_a_version(store: Arc<dyn EventStore>) {
    let stream = Uuid::new_v4();
    store.append(request(stream, 0, 1)).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.append(request(stream, 1, 1)).await })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(a) => {
                won += 1;
                assert_eq!(a.last_version, 2);
            }
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(won, 1, "exactly one writer wins version 2");
    let versions: Vec<u64> = store
        .read_stream(stream, 0, None)
        .await
        .unwrap()
        .iter()
        .map(|e| e.version)
        .collect();
    assert_eq!(versions, [1, 2]);
}

/// Appends that wait together are committed together (group commit), but each
/// keeps its own checks and its own answer: one reused key loses alone, the
/// others land, each with its own positions.
pub async fn concurrent_appends_are_answered_one_by_one(store: Arc<dyn EventStore>) {
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let req = request(Uuid::new_v4(), 0, 2);
                // Four of them race for one key; the others have their own.
                let key = if i < 4 {
                    "shared".to_string()
                } else {
                    format!("own-{i}")
                };
                (req.stream_id, store.append(keyed(req, &key)).await)
            })
        })
        .collect();
    let mut landed = Vec::new();
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            (stream, Ok(a)) => landed.push((stream, a)),
            (_, Err(StoreError::IdempotencyKeyTaken)) => refused += 1,
            (_, Err(e)) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(
        (landed.len(), refused),
        (13, 3),
        "one of the four sharing a key wins"
    );
    let mut positions: Vec<i64> = landed.iter().map(|(_, a)| a.last_position).collect();
    positions.sort();
    positions.dedup();
    assert_eq!(positions.len(), 13, "every append has its own positions");
    for (stream, appended) in &landed {
        let events = store.read_stream(*stream, 0, None).await.unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(appended.last_version, 2);
        assert_eq!(events[1].global_position, appended.last_position);
    }
}

/// What a command loads: the snapshot and only the events after it, or the
/// whole stream when there is no snapshot.
pub async fn loads_a_stream_from_its_snapshot(store: &dyn EventStore) {
    let stream = Uuid::new_v4();
    assert_eq!(store.load_stream(stream).await.unwrap(), (None, vec![]));
    store.append(request(stream, 0, 3)).await.unwrap();
    let (snapshot, events) = store.load_stream(stream).await.unwrap();
    assert_eq!(snapshot, None);
    assert_eq!(
        events.iter().map(|e| e.version).collect::<Vec<_>>(),
        [1, 2, 3]
    );

    let snap = Snapshot {
        stream_id: stream,
        version: 3,
        schema: "s1".into(),
        state: serde_json::json!({ "at": 3 }),
    };
    store.save_snapshot(&snap).await.unwrap();
    let (snapshot, events) = store.load_stream(stream).await.unwrap();
    assert_eq!(snapshot.as_ref(), Some(&snap));
    assert!(events.is_empty(), "nothing after the snapshot yet");

    store.append(request(stream, 3, 2)).await.unwrap();
    let (snapshot, events) = store.load_stream(stream).await.unwrap();
    assert_eq!(snapshot, Some(snap));
    assert_eq!(events.iter().map(|e| e.version).collect::<Vec<_>>(), [4, 5]);
    assert_eq!(events, store.read_stream(stream, 3, None).await.unwrap());
}

pub async fn keeps_the_idempotency_record_atomically_with_the_events(store: &dyn EventStore) {
    let stream = Uuid::new_v4();
    let first = keyed(request(stream, 0, 2), "key-1");
    store.append(first.clone()).await.unwrap();
    let stored = store.find_response("key-1").await.unwrap().expect("stored");
    assert_eq!(Some(&stored), first.idempotency.as_ref().map(|(_, r)| r));
    assert_eq!(store.find_response("key-2").await.unwrap(), None);
    let events = store.read_stream(stream, 0, None).await.unwrap();
    assert_eq!(events[0].idempotency_key.as_deref(), Some("key-1"));

    // The same key again: refused as a whole, no event of it lands.
    let other_stream = Uuid::new_v4();
    assert!(matches!(
        store
            .append(keyed(request(other_stream, 0, 1), "key-1"))
            .await,
        Err(StoreError::IdempotencyKeyTaken)
    ));
    assert!(
        store
            .read_stream(other_stream, 0, None)
            .await
            .unwrap()
            .is_empty()
    );

    // A failed append leaves its key unused.
    assert!(matches!(
        store.append(keyed(request(stream, 0, 1), "key-3")).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(store.find_response("key-3").await.unwrap(), None);
}

pub async fn reads_the_global_log_in_order_from_any_cursor(store: &dyn EventStore) {
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    store.append(request(a, 0, 2)).await.unwrap();
    store.append(request(b, 0, 3)).await.unwrap();
    let last = store.append(request(a, 2, 1)).await.unwrap();

    let all = read_all(store, last.consistency_token).await;
    let order: Vec<(Uuid, u64)> = all.iter().map(|e| (e.stream_id, e.version)).collect();
    assert_eq!(order, [(a, 1), (a, 2), (b, 1), (b, 2), (b, 3), (a, 3)]);
    assert!(
        all.windows(2)
            .all(|w| w[0].global_position < w[1].global_position)
    );

    // Resuming from a batch's cursor gives exactly the rest.
    let first = store.read_log(LogCursor::default(), 2).await.unwrap();
    assert_eq!(first.events.len(), 2);
    let rest = store.read_log(first.next, 100).await.unwrap();
    assert_eq!(rest.events.len(), 4);
    assert_eq!(rest.events[0].event_id, all[2].event_id);
    let empty = store.read_log(rest.next, 100).await.unwrap();
    assert!(empty.events.is_empty());
    assert_eq!(empty.next, rest.next);
}

pub async fn consistency_tokens_grow_with_each_append(store: &dyn EventStore) {
    let one = store.append(request(Uuid::new_v4(), 0, 1)).await.unwrap();
    let two = store.append(request(Uuid::new_v4(), 0, 1)).await.unwrap();
    assert!(two.consistency_token > one.consistency_token);
    assert!(store.current_token().await.unwrap() >= two.consistency_token);
    let first = store.read_log(LogCursor::default(), 1).await.unwrap();
    assert!(
        first.covered < two.consistency_token,
        "a reader that has not seen the second append must not cover it"
    );
}

pub async fn backlog_counts_what_a_reader_has_not_read(store: &dyn EventStore) {
    assert_eq!(
        store.backlog(LogCursor::default()).await.unwrap(),
        Backlog::default()
    );
    store.append(request(Uuid::new_v4(), 0, 2)).await.unwrap();
    let last = store.append(request(Uuid::new_v4(), 0, 3)).await.unwrap();
    let all = read_all(store, last.consistency_token).await;

    let from_start = store.backlog(LogCursor::default()).await.unwrap();
    assert_eq!(from_start.events, 5);
    assert_eq!(from_start.oldest, Some(all[0].occurred_at));
    let after_two = LogCursor {
        position: all[1].global_position,
    };
    let rest = store.backlog(after_two).await.unwrap();
    assert_eq!(rest.events, 3);
    assert_eq!(rest.oldest, Some(all[2].occurred_at));
    let at_end = LogCursor {
        position: all[4].global_position,
    };
    assert_eq!(store.backlog(at_end).await.unwrap(), Backlog::default());
}

/// Tokens name their store on the wire; another store's token is refused.
pub async fn tokens_name_their_store(store: &dyn EventStore) {
    let appended = store.append(request(Uuid::new_v4(), 0, 1)).await.unwrap();
    let header = appended.consistency_token.to_header(store.store_id());
    assert_eq!(
        ConsistencyToken::from_header(&header, store.store_id()),
        Ok(appended.consistency_token)
    );
    let other = StoreId(Uuid::new_v4());
    assert_eq!(
        ConsistencyToken::from_header(&header, other),
        Err(TokenError::OtherStore)
    );
    for junk in ["", "42", "x:1", ":", "abc:def"] {
        assert_eq!(
            ConsistencyToken::from_header(junk, store.store_id()),
            Err(TokenError::Malformed),
            "{junk:?}"
        );
    }
}

pub async fn snapshots_keep_the_newest(store: &dyn EventStore) {
    let stream = Uuid::new_v4();
    assert_eq!(store.load_snapshot(stream).await.unwrap(), None);
    let snap = |version, schema: &str| Snapshot {
        stream_id: stream,
        version,
        schema: schema.into(),
        state: serde_json::json!({ "v": version }),
    };
    store.save_snapshot(&snap(5, "s1")).await.unwrap();
    store.save_snapshot(&snap(3, "s1")).await.unwrap();
    assert_eq!(
        store.load_snapshot(stream).await.unwrap(),
        Some(snap(5, "s1"))
    );
    store.save_snapshot(&snap(7, "s1")).await.unwrap();
    assert_eq!(
        store.load_snapshot(stream).await.unwrap(),
        Some(snap(7, "s1"))
    );
    // New code replaces a snapshot of another layout even at a lower version.
    store.save_snapshot(&snap(6, "s2")).await.unwrap();
    assert_eq!(
        store.load_snapshot(stream).await.unwrap(),
        Some(snap(6, "s2"))
    );
}

/// Expands to one `#[tokio::test]` per conformance check. `$open` is an async
/// expression returning a fresh, empty `Arc<impl EventStore>`.
#[macro_export]
macro_rules! conformance_tests {
    ($open:expr) => {
        mod conformance {
            use super::*;
            use $crate::conformance as c;

            #[tokio::test]
            async fn appends_and_reads_a_stream() {
                c::appends_and_reads_a_stream(&*$open.await).await
            }
            #[tokio::test]
            async fn refuses_a_stale_expected_version() {
                c::refuses_a_stale_expected_version(&*$open.await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_appends_never_lose_or_duplicate_a_version() {
                c::concurrent_appends_never_lose_or_duplicate_a_version($open.await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_appends_are_answered_one_by_one() {
                c::concurrent_appends_are_answered_one_by_one($open.await).await
            }
            #[tokio::test]
            async fn loads_a_stream_from_its_snapshot() {
                c::loads_a_stream_from_its_snapshot(&*$open.await).await
            }
            #[tokio::test]
            async fn keeps_the_idempotency_record_atomically_with_the_events() {
                c::keeps_the_idempotency_record_atomically_with_the_events(&*$open.await).await
            }
            #[tokio::test]
            async fn reads_the_global_log_in_order_from_any_cursor() {
                c::reads_the_global_log_in_order_from_any_cursor(&*$open.await).await
            }
            #[tokio::test]
            async fn consistency_tokens_grow_with_each_append() {
                c::consistency_tokens_grow_with_each_append(&*$open.await).await
            }
            #[tokio::test]
            async fn backlog_counts_what_a_reader_has_not_read() {
                c::backlog_counts_what_a_reader_has_not_read(&*$open.await).await
            }
            #[tokio::test]
            async fn tokens_name_their_store() {
                c::tokens_name_their_store(&*$open.await).await
            }
            #[tokio::test]
            async fn snapshots_keep_the_newest() {
                c::snapshots_keep_the_newest(&*$open.await).await
            }
        }
    };
}
