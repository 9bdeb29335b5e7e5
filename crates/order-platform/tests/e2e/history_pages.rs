//! `GET /orders/{id}/events` in pages (`limit`, `after` → `nextAfter`), on both
//! event stores: the pages of any size concatenate to the whole history with
//! no event repeated or skipped, and bad paging parameters are 400 problems.

use crate::support::{Backend, Server, item};
use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

/// Follows `nextAfter` from the start with pages of `limit`; returns the pages.
async fn all_pages(server: &Server, token: &str, id: Uuid, limit: u64) -> Vec<Vec<Value>> {
    let mut pages = Vec::new();
    let mut after = 0u64;
    loop {
        let r = server
            .get(
                &format!("/api/v1/orders/{id}/events?limit={limit}&after={after}"),
                token,
            )
            .await;
        r.expect(StatusCode::OK);
        let events = r.json["events"].as_array().expect("events").clone();
        assert!(events.len() as u64 <= limit, "page over the limit: {r}");
        assert_eq!(r.json["orderId"], id.to_string(), "{r}");
        pages.push(events.clone());
        match &r.json["nextAfter"] {
            Value::Null => return pages,
            next => {
                let next = next.as_u64().expect("nextAfter is a version");
                assert_eq!(
                    events.last().map(|e| e["version"].as_u64()),
                    Some(Some(next)),
                    "nextAfter is the last version of the page: {r}"
                );
                after = next;
            }
        }
        assert!(pages.len() <= 100, "nextAfter never ends");
    }
}

async fn pages(backend: Backend) {
    let server = Server::start(backend).await;
    let alice = server.token("alice", &["customer"]);
    let ops = server.token("ops-1", &["ops"]);
    let id = server.new_order(&alice, "alice").await;
    let path = format!("/api/v1/orders/{id}/items");
    for i in 0..29 {
        server
            .post(&path, &alice, &item(&format!("P-{i}"), "Part", 1, "1.00"))
            .await
            .expect(StatusCode::OK);
    }
    const TOTAL: u64 = 30;

    // No parameters: the first page of the default size, which holds all 30.
    let whole = server
        .get(&format!("/api/v1/orders/{id}/events"), &alice)
        .await;
    whole.expect(StatusCode::OK);
    assert_eq!(whole.json["nextAfter"], Value::Null, "{whole}");
    let whole = whole.json["events"].as_array().expect("events").clone();
    let versions: Vec<u64> = whole.iter().filter_map(|e| e["version"].as_u64()).collect();
    assert_eq!(versions, (1..=TOTAL).collect::<Vec<_>>());

    // Pages of every shape: uneven, exact multiple, one short, all in one, one each.
    for (limit, expected_pages) in [(7, 5), (5, 6), (29, 2), (30, 1), (1000, 1), (1, 30)] {
        let pages = all_pages(&server, &alice, id, limit).await;
        assert_eq!(pages.len(), expected_pages, "limit {limit}");
        let joined: Vec<Value> = pages.into_iter().flatten().collect();
        assert_eq!(
            joined, whole,
            "limit {limit}: pages concatenate to the history"
        );
    }

    // Past the end: an empty last page.
    let r = server
        .get(&format!("/api/v1/orders/{id}/events?after={TOTAL}"), &alice)
        .await;
    r.expect(StatusCode::OK);
    assert_eq!(r.json["events"].as_array().map(Vec::len), Some(0), "{r}");
    assert_eq!(r.json["nextAfter"], Value::Null, "{r}");

    // Every page checks the reader, not just the one holding the creation.
    let bob = server.token("bob", &["customer"]);
    let first = server
        .get(&format!("/api/v1/orders/{id}/events?limit=5"), &bob)
        .await;
    let later = server
        .get(
            &format!("/api/v1/orders/{id}/events?limit=5&after=10"),
            &bob,
        )
        .await;
    assert!(first.status.is_client_error(), "{first}");
    assert_eq!(later.status, first.status, "{later}");
    assert_eq!(later.json["code"], first.json["code"], "{later}");
    assert!(later.json.get("events").is_none(), "{later}");
    let unknown = server
        .get(
            &format!("/api/v1/orders/{}/events?after=3", Uuid::new_v4()),
            &ops,
        )
        .await;
    unknown.expect_problem(StatusCode::NOT_FOUND, "order_not_found");

    for query in [
        "limit=0",
        "limit=abc",
        "limit=1001",
        "limit=-1",
        "limit=",
        "after=-1",
        "after=abc",
        "after=1.5",
        "after=99999999999999999999",
        "after=9223372036854775808",
        "page=2",
    ] {
        server
            .get(&format!("/api/v1/orders/{id}/events?{query}"), &ops)
            .await
            .expect_problem(StatusCode::BAD_REQUEST, "invalid_query");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_concatenate_to_the_whole_history_sqlite() {
    pages(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_concatenate_to_the_whole_history_postgres() {
    pages(Backend::Postgres).await;
}
