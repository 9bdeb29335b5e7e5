//! Concurrent writers (no lost update, exactly one winner with If-Match),
//! idempotency keys, and keyset pagination while orders are being added.

use crate::support::{Backend, Resp, Server, item, order_body};
use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::collections::HashSet;

const WRITERS: usize = 16;

async fn concurrent_adds(backend: Backend) {
    let server = Server::start(backend).await;
    let ops = server.token("ops-1", &["ops"]);
    let id = server.new_order(&ops, "alice").await;
    let path = format!("/api/v1/orders/{id}/items");

    // without If-Match: every add is re-decided on conflict; none is lost
    let answers = join_all((0..WRITERS).map(|i| {
        let server = &server;
        let (path, ops) = (&path, &ops);
        async move {
            let r = server
                .post(
                    path,
                    ops,
                    &item(&format!("C-{i}"), &format!("Part {i}"), 1, "1.00"),
                )
                .await;
            (i, r)
        }
    }))
    .await;
    let mut accepted = Vec::new();
    for (i, r) in &answers {
        match r.status {
            StatusCode::OK => accepted.push(format!("C-{i}")),
            StatusCode::CONFLICT => {
                r.expect_problem(StatusCode::CONFLICT, "write_conflict");
            }
            _ => panic!("add {i}: unexpected answer {r}"),
        }
    }
    assert!(!accepted.is_empty(), "at least one concurrent add succeeds");
    let history = server
        .get(&format!("/api/v1/orders/{id}/events"), &ops)
        .await;
    let versions: Vec<u64> = history.json["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["version"].as_u64().unwrap_or_default())
        .collect();
    assert_eq!(
        versions,
        (1..=1 + accepted.len() as u64).collect::<Vec<_>>(),
        "one event per accepted add, versions contiguous"
    );
    let now = server
        .get(
            &format!("/api/v1/orders/{id}/at?version={}", versions.len()),
            &ops,
        )
        .await;
    now.expect(StatusCode::OK);
    let skus: HashSet<String> = now.json["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|l| l["sku"].as_str().unwrap_or_default().to_string())
        .collect();
    for sku in &accepted {
        assert!(
            skus.contains(sku),
            "accepted {sku} is in the order (lost update): {now}"
        );
    }
    assert_eq!(
        skus.len(),
        1 + accepted.len(),
        "only accepted lines are present: {now}"
    );
    let total = format!("{}.00", 25 + accepted.len());
    assert_eq!(now.json["totalAmount"], total.as_str());
    // the read model converges to the same order
    let version = versions.len() as u64;
    let read = server
        .eventually(
            "the read model shows every add",
            &format!("/api/v1/orders/{id}"),
            &ops,
            std::time::Duration::from_secs(20),
            |r| r.json["version"] == json!(version),
        )
        .await;
    assert_eq!(read.json, now.json);

    // with If-Match on the same version: exactly one winner, the rest 412
    let expected_tag = format!("\"{version}\"");
    let answers = join_all((0..WRITERS).map(|i| {
        let server = &server;
        let (path, ops, tag) = (&path, &ops, &expected_tag);
        async move {
            Resp::from(
                server
                    .request(Method::POST, path, Some(ops))
                    .header("if-match", tag.as_str())
                    .json(&item(&format!("M-{i}"), "Match", 1, "1.00"))
                    .send()
                    .await,
            )
            .await
        }
    }))
    .await;
    let winners = answers
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .count();
    assert_eq!(
        winners,
        1,
        "exactly one conditional write wins: {:?}",
        answers.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    for r in answers.iter().filter(|r| r.status != StatusCode::OK) {
        r.expect_problem(StatusCode::PRECONDITION_FAILED, "version_mismatch");
        assert!(r.etag().is_some(), "412 carries the current ETag: {r}");
    }
    let after = server
        .get(&format!("/api/v1/orders/{id}/events"), &ops)
        .await;
    assert_eq!(
        after.json["events"].as_array().map(Vec::len),
        Some(version as usize + 1)
    );

    // concurrent creates of one client-chosen order id: one 201, the others 409
    let chosen = uuid::Uuid::new_v4();
    let answers = join_all((0..8).map(|i| {
        let mut body = order_body("bob", "USD", &[(&format!("R-{i}"), "Race", 1, "1.00")]);
        body["orderId"] = json!(chosen);
        let (server, ops) = (&server, &ops);
        async move { server.post("/api/v1/orders", ops, &body).await }
    }))
    .await;
    assert_eq!(
        answers
            .iter()
            .filter(|r| r.status == StatusCode::CREATED)
            .count(),
        1,
        "one creation wins: {:?}",
        answers.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    for r in answers.iter().filter(|r| r.status != StatusCode::CREATED) {
        r.expect_problem(StatusCode::CONFLICT, "order_already_exists");
    }
    let events = server
        .get(&format!("/api/v1/orders/{chosen}/events"), &ops)
        .await;
    assert_eq!(
        events.json["events"].as_array().map(Vec::len),
        Some(1),
        "{events}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_on_sqlite() {
    concurrent_adds(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_on_postgres() {
    concurrent_adds(Backend::Postgres).await;
}

async fn with_key(
    server: &Server,
    method: Method,
    path: &str,
    token: &str,
    key: &str,
    body: Option<&serde_json::Value>,
) -> Resp {
    let mut builder = server
        .request(method, path, Some(token))
        .header("idempotency-key", key);
    if let Some(body) = body {
        builder = builder.json(body);
    }
    Resp::from(builder.send().await).await
}

async fn idempotency(backend: Backend) {
    let server = Server::start(backend).await;
    let alice = server.token("alice", &["customer"]);
    let ops = server.token("ops-1", &["ops"]);
    let body = order_body("alice", "USD", &[("A", "Apple", 1, "1.00")]);

    let first = with_key(
        &server,
        Method::POST,
        "/api/v1/orders",
        &alice,
        "create-1",
        Some(&body),
    )
    .await;
    first.expect(StatusCode::CREATED);
    assert!(first.header("idempotency-replayed").is_none());
    let again = with_key(
        &server,
        Method::POST,
        "/api/v1/orders",
        &alice,
        "create-1",
        Some(&body),
    )
    .await;
    again.expect(StatusCode::CREATED);
    assert_eq!(again.header("idempotency-replayed"), Some("true"));
    assert_eq!(again.json, first.json, "the replay is the first answer");
    assert_eq!(again.header("location"), first.header("location"));
    assert_eq!(again.etag(), first.etag());
    // a different request with the same key
    let other = order_body("alice", "USD", &[("A", "Apple", 2, "1.00")]);
    with_key(
        &server,
        Method::POST,
        "/api/v1/orders",
        &alice,
        "create-1",
        Some(&other),
    )
    .await
    .expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused");
    let id = first.order_id();
    with_key(
        &server,
        Method::POST,
        &format!("/api/v1/orders/{id}/cancel"),
        &alice,
        "create-1",
        None,
    )
    .await
    .expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused");

    // on a change command: the replay does not append again, even after the order moved on
    let add_path = format!("/api/v1/orders/{id}/items");
    let add = item("B", "Banana", 1, "2.00");
    let added = with_key(
        &server,
        Method::POST,
        &add_path,
        &alice,
        "add-1",
        Some(&add),
    )
    .await;
    added.expect(StatusCode::OK);
    assert_eq!(added.version(), 2);
    server
        .post(&add_path, &alice, &item("C", "Cherry", 1, "3.00"))
        .await
        .expect(StatusCode::OK);
    let replay = with_key(
        &server,
        Method::POST,
        &add_path,
        &alice,
        "add-1",
        Some(&add),
    )
    .await;
    replay.expect(StatusCode::OK);
    assert_eq!(replay.header("idempotency-replayed"), Some("true"));
    assert_eq!(
        replay.json, added.json,
        "the stored answer, not the current order"
    );
    let events = server
        .get(&format!("/api/v1/orders/{id}/events"), &ops)
        .await;
    assert_eq!(
        events.json["events"].as_array().map(Vec::len),
        Some(3),
        "{events}"
    );
    // keys are per caller: bob's "create-1" is a new request of his own
    let bob = server.token("bob", &["customer"]);
    let bob_body = order_body("bob", "USD", &[("A", "Apple", 1, "1.00")]);
    let bobs = with_key(
        &server,
        Method::POST,
        "/api/v1/orders",
        &bob,
        "create-1",
        Some(&bob_body),
    )
    .await;
    bobs.expect(StatusCode::CREATED);
    assert!(bobs.header("idempotency-replayed").is_none());
    assert_ne!(bobs.order_id(), id);
    // ops sending alice's exact request with alice's key gets a new order, not her answer
    let ops_same = with_key(
        &server,
        Method::POST,
        "/api/v1/orders",
        &ops,
        "create-1",
        Some(&body),
    )
    .await;
    ops_same.expect(StatusCode::CREATED);
    assert!(ops_same.header("idempotency-replayed").is_none());
    assert_ne!(ops_same.order_id(), id);

    // malformed keys
    for key in [
        "a".repeat(256),
        "has space".to_string(),
        "tab\there".to_string(),
        "é".to_string(),
    ] {
        let r = Resp::from(
            server
                .request(Method::POST, "/api/v1/orders", Some(&alice))
                .header(
                    "idempotency-key",
                    reqwest::header::HeaderValue::from_bytes(key.as_bytes()).expect("header value"),
                )
                .json(&body)
                .send()
                .await,
        )
        .await;
        r.expect_problem(StatusCode::BAD_REQUEST, "invalid_idempotency_key");
    }
    // 255 visible characters is fine
    let long = "k".repeat(255);
    with_key(
        &server,
        Method::POST,
        "/api/v1/orders",
        &alice,
        &long,
        Some(&body),
    )
    .await
    .expect(StatusCode::CREATED);

    // concurrent duplicates: one order
    let dup_body = order_body("alice", "EUR", &[("D", "Date", 1, "4.00")]);
    let answers = join_all((0..8).map(|_| {
        with_key(
            &server,
            Method::POST,
            "/api/v1/orders",
            &alice,
            "race-1",
            Some(&dup_body),
        )
    }))
    .await;
    let mut ids = HashSet::new();
    for r in &answers {
        r.expect(StatusCode::CREATED);
        ids.insert(r.order_id());
    }
    assert_eq!(
        ids.len(),
        1,
        "concurrent duplicates created one order: {ids:?}"
    );
    assert_eq!(
        answers
            .iter()
            .filter(|r| r.header("idempotency-replayed").is_none())
            .count(),
        1,
        "exactly one answer is the original"
    );
    let last = server.new_order(&ops, "zed").await;
    let eur = server
        .eventually(
            "everything projected",
            &format!("/api/v1/orders/{last}"),
            &ops,
            std::time::Duration::from_secs(20),
            |r| r.status == StatusCode::OK,
        )
        .await;
    assert_eq!(eur.status, StatusCode::OK);
    let stats = server
        .get("/api/v1/orders/stats?customerId=alice", &ops)
        .await;
    assert_eq!(stats.json["byCurrency"]["EUR"]["orderCount"], 1, "{stats}");
    // alice's orders: create-1 (1.00 + 2.00 + 3.00), the one ops created with
    // the same key (1.00), the 255-character key one (1.00), and the EUR race order
    assert_eq!(stats.json["byStatus"]["CREATED"], 4, "{stats}");
    assert_eq!(
        stats.json["byCurrency"]["USD"],
        json!({"orderCount": 3, "totalAmount": "8.00"}),
        "{stats}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_on_sqlite() {
    idempotency(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_on_postgres() {
    idempotency(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_never_repeat_or_skip_while_orders_are_added() {
    let server = Server::start(Backend::Sqlite).await;
    let ops = server.token("ops-1", &["ops"]);
    let mut existing = Vec::new();
    let mut last_token = String::new();
    for i in 0..12 {
        let r = server
            .create_order(&ops, &format!("c{}", i % 3), &[("P", "Pen", 1, "1.00")])
            .await;
        r.expect(StatusCode::CREATED);
        existing.push(r.order_id().to_string());
        last_token = r.consistency_token();
    }
    let mut added = 0;
    for sort in ["createdAt:desc", "createdAt:asc"] {
        let mut seen: Vec<String> = Vec::new();
        let mut cursor: Option<String> = None;
        let mut created_at: Vec<String> = Vec::new();
        for page_no in 0.. {
            assert!(page_no < 20, "pagination ends ({sort})");
            let mut path = format!("/api/v1/orders?limit=5&sort={sort}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={}", urlencode(c)));
            }
            let page = server.get_after(&path, &ops, &last_token).await;
            page.expect(StatusCode::OK);
            let items = page.json["items"].as_array().expect("items");
            assert!(items.len() <= 5, "limit respected: {page}");
            for o in items {
                seen.push(o["orderId"].as_str().unwrap_or_default().to_string());
                created_at.push(o["createdAt"].as_str().unwrap_or_default().to_string());
            }
            // more orders arrive between pages
            for _ in 0..2 {
                let r = server
                    .create_order(&ops, "late", &[("P", "Pen", 1, "1.00")])
                    .await;
                r.expect(StatusCode::CREATED);
                last_token = r.consistency_token();
                added += 1;
            }
            match page.json["nextCursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => break,
            }
            if sort == "createdAt:asc" && seen.len() > 40 {
                // ascending pages would chase the new orders forever; enough
                break;
            }
        }
        let unique: HashSet<&String> = seen.iter().collect();
        assert_eq!(
            unique.len(),
            seen.len(),
            "no order repeats ({sort}): {seen:?}"
        );
        for id in &existing {
            assert!(
                unique.contains(id),
                "pre-existing order {id} not skipped ({sort})"
            );
        }
        let mut sorted = created_at.clone();
        sorted.sort_by_key(|t| chrono::DateTime::parse_from_rfc3339(t).expect("createdAt"));
        if sort == "createdAt:desc" {
            sorted.reverse();
        }
        let parsed = |v: &Vec<String>| {
            v.iter()
                .map(|t| chrono::DateTime::parse_from_rfc3339(t).expect("rfc3339"))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            parsed(&created_at),
            parsed(&sorted),
            "pages follow the sort ({sort})"
        );
    }
    assert!(added > 0);
    // a cursor of one sort is not valid for the other, and garbage is refused
    let first = server
        .get("/api/v1/orders?limit=5&sort=createdAt:desc", &ops)
        .await;
    let cursor = first.json["nextCursor"]
        .as_str()
        .expect("a next page")
        .to_string();
    let mut tampered = cursor.clone();
    tampered.push('x');
    for (sort, c) in [
        ("createdAt:asc", cursor.as_str()),
        ("createdAt:desc", "bogus"),
        ("createdAt:desc", tampered.as_str()),
    ] {
        server
            .get(
                &format!("/api/v1/orders?limit=5&sort={sort}&cursor={}", urlencode(c)),
                &ops,
            )
            .await
            .expect_problem(StatusCode::BAD_REQUEST, "invalid_cursor");
    }
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
