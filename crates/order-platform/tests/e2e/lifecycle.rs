//! The order lifecycle of DESIGN.md §3 through the HTTP API of §4, on SQLite
//! and on PostgreSQL: commands, their answers and headers, the refusals of
//! terminal states, the history, time travel, lists, search, stats and
//! read-your-writes.

use crate::support::{Backend, Resp, Server, item, order_body};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

/// After a command, a query carrying its consistency token sees the new version at once.
async fn assert_read_your_write(server: &Server, token: &str, command: &Resp) {
    let id = command.order_id();
    let r = Resp::from(
        server
            .request(Method::GET, &format!("/api/v1/orders/{id}"), Some(token))
            .header("x-consistency-token", command.consistency_token())
            .send()
            .await,
    )
    .await;
    r.expect(StatusCode::OK);
    assert_eq!(
        r.version(),
        command.version(),
        "a GET with the command's consistency token sees the command: {r}"
    );
    assert_eq!(
        r.json, command.json,
        "the read model shows what the command answered"
    );
    assert_eq!(
        r.etag(),
        Some(format!("\"{}\"", command.version()).as_str())
    );
}

/// Every command a terminal order must refuse with 409 `invalid_status`.
async fn assert_terminal(server: &Server, ops: &str, id: Uuid, version: u64) {
    let base = format!("/api/v1/orders/{id}");
    let attempts = [
        server
            .post(
                &format!("{base}/items"),
                ops,
                &item("NEW-1", "Thing", 1, "1.00"),
            )
            .await,
        server.delete(&format!("{base}/items/SKU-1"), ops).await,
        server
            .post(&format!("{base}/approve"), ops, &json!({}))
            .await,
        server
            .post(&format!("{base}/reject"), ops, &json!({"reason": "no"}))
            .await,
        server
            .post(
                &format!("{base}/ship"),
                ops,
                &json!({"trackingNumber": "T1", "carrier": "UPS"}),
            )
            .await,
        server
            .post(&format!("{base}/cancel"), ops, &json!({}))
            .await,
    ];
    for r in &attempts {
        r.expect_problem(StatusCode::CONFLICT, "invalid_status");
    }
    assert_eq!(
        event_versions(server, ops, id).await.len() as u64,
        version,
        "a refused command appends nothing"
    );
}

/// Versions of the order's events, as the history endpoint lists them.
async fn event_versions(server: &Server, token: &str, id: Uuid) -> Vec<u64> {
    let r = server
        .get(&format!("/api/v1/orders/{id}/events"), token)
        .await;
    r.expect(StatusCode::OK);
    r.json["events"]
        .as_array()
        .unwrap_or_else(|| panic!("events array in {r}"))
        .iter()
        .map(|e| e["version"].as_u64().expect("version"))
        .collect()
}

async fn lifecycle(backend: Backend) {
    let server = Server::start(backend).await;
    let alice = server.token("alice", &["customer"]);
    let ops = server.token("ops-1", &["ops"]);
    let analyst = server.token("analyst-1", &["analyst"]);

    // --- create ---
    let created = server
        .create_order(
            &alice,
            "alice",
            &[
                ("SKU-1", "Blue mug", 2, "12.50"),
                ("SKU-2", "Red teapot", 1, "30.00"),
            ],
        )
        .await;
    created.expect(StatusCode::CREATED);
    let id = created.order_id();
    assert_eq!(
        created.header("location"),
        Some(format!("/api/v1/orders/{id}").as_str())
    );
    assert_eq!(created.etag(), Some("\"1\""));
    assert!(!created.consistency_token().is_empty());
    let body = &created.json;
    assert_eq!(body["status"], "CREATED");
    assert_eq!(body["customerId"], "alice");
    assert_eq!(body["currency"], "USD");
    assert_eq!(body["version"], 1);
    assert_eq!(
        body["totalAmount"], "55.00",
        "decimal-string total: {created}"
    );
    assert_eq!(body["items"][0]["unitPrice"], "12.50");
    assert_eq!(body["items"][0]["lineTotal"], "25.00");
    assert_eq!(body["items"][0]["quantity"], 2);
    assert_eq!(body["items"][1]["sku"], "SKU-2");
    assert_read_your_write(&server, &alice, &created).await;
    let path = format!("/api/v1/orders/{id}");

    // --- add item: same SKU, name and price merge ---
    let added = server
        .post(
            &format!("{path}/items"),
            &alice,
            &item("SKU-1", "Blue mug", 3, "12.50"),
        )
        .await;
    added.expect(StatusCode::OK);
    assert_eq!(added.etag(), Some("\"2\""));
    assert_eq!(
        added.json["items"].as_array().map(Vec::len),
        Some(2),
        "merged, not a new line: {added}"
    );
    assert_eq!(added.json["items"][0]["quantity"], 5);
    assert_eq!(added.json["items"][0]["lineTotal"], "62.50");
    assert_eq!(added.json["totalAmount"], "92.50");
    assert_read_your_write(&server, &alice, &added).await;

    // same SKU with another price or name: 409 sku_conflict, nothing appended
    for clash in [
        item("SKU-1", "Blue mug", 1, "13.00"),
        item("SKU-1", "Green mug", 1, "12.50"),
    ] {
        server
            .post(&format!("{path}/items"), &alice, &clash)
            .await
            .expect_problem(StatusCode::CONFLICT, "sku_conflict");
    }
    assert_eq!(event_versions(&server, &ops, id).await, vec![1, 2]);

    // --- remove item ---
    server
        .delete(&format!("{path}/items/NOPE"), &alice)
        .await
        .expect_problem(StatusCode::NOT_FOUND, "sku_not_found");
    let removed = server.delete(&format!("{path}/items/SKU-2"), &alice).await;
    removed.expect(StatusCode::OK);
    assert_eq!(removed.version(), 3);
    assert_eq!(removed.json["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(removed.json["totalAmount"], "62.50");
    assert_read_your_write(&server, &alice, &removed).await;
    server
        .delete(&format!("{path}/items/SKU-1"), &alice)
        .await
        .expect_problem(StatusCode::CONFLICT, "last_line");

    // ship needs APPROVED
    server
        .post(
            &format!("{path}/ship"),
            &ops,
            &json!({"trackingNumber": "1Z999", "carrier": "UPS"}),
        )
        .await
        .expect_problem(StatusCode::CONFLICT, "invalid_status");
    assert_eq!(event_versions(&server, &ops, id).await, vec![1, 2, 3]);

    // --- approve, ship ---
    let approved = server
        .post(
            &format!("{path}/approve"),
            &ops,
            &json!({"reason": "looks good"}),
        )
        .await;
    approved.expect(StatusCode::OK);
    assert_eq!(approved.json["status"], "APPROVED");
    assert_eq!(approved.etag(), Some("\"4\""));
    assert_read_your_write(&server, &ops, &approved).await;
    // items can no longer change once approved
    server
        .post(
            &format!("{path}/items"),
            &ops,
            &item("SKU-3", "Spoon", 1, "1.00"),
        )
        .await
        .expect_problem(StatusCode::CONFLICT, "invalid_status");
    for incomplete in [
        json!({}),
        json!({"trackingNumber": "1Z999"}),
        json!({"carrier": "UPS"}),
        json!({"trackingNumber": "  ", "carrier": "UPS"}),
    ] {
        let r = server
            .post(&format!("{path}/ship"), &ops, &incomplete)
            .await;
        r.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert!(
            r.json["errors"].as_array().is_some_and(|e| !e.is_empty()),
            "field errors listed: {r}"
        );
    }
    let shipped = server
        .post(
            &format!("{path}/ship"),
            &ops,
            &json!({"trackingNumber": "1Z999", "carrier": "UPS"}),
        )
        .await;
    shipped.expect(StatusCode::OK);
    assert_eq!(shipped.json["status"], "SHIPPED");
    assert_eq!(shipped.version(), 5);
    assert_read_your_write(&server, &ops, &shipped).await;
    assert_terminal(&server, &ops, id, 5).await;

    // --- history ---
    let history = server.get(&format!("{path}/events"), &alice).await;
    history.expect(StatusCode::OK);
    let events = history.json["events"].as_array().expect("events");
    let summary: Vec<(String, u64, String)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or_default().to_string(),
                e["version"].as_u64().unwrap_or_default(),
                e["actor"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, u64, String)> = [
        ("OrderCreated", 1, "alice"),
        ("ItemAdded", 2, "alice"),
        ("ItemRemoved", 3, "alice"),
        ("OrderApproved", 4, "ops-1"),
        ("OrderShipped", 5, "ops-1"),
    ]
    .into_iter()
    .map(|(t, v, a)| (t.to_string(), v, a.to_string()))
    .collect();
    assert_eq!(summary, expected, "history: {history}");
    assert!(
        events
            .iter()
            .all(|e| e["occurredAt"].is_string() && e["data"].is_object())
    );

    // --- state at a version and at a time ---
    let at1 = server.get(&format!("{path}/at?version=1"), &alice).await;
    at1.expect(StatusCode::OK);
    assert_eq!(at1.json, created.json, "version 1 is the order as created");
    let at3 = server.get(&format!("{path}/at?version=3"), &alice).await;
    at3.expect(StatusCode::OK);
    assert_eq!(
        at3.json, removed.json,
        "version 3 is the order after the removal"
    );
    server
        .get(&format!("{path}/at?version=6"), &alice)
        .await
        .expect_problem(StatusCode::NOT_FOUND, "version_not_found");
    server
        .get(&format!("{path}/at?version=0"), &alice)
        .await
        .expect_problem(StatusCode::BAD_REQUEST, "invalid_query");
    let t2 = events[1]["occurredAt"].as_str().expect("occurredAt");
    let t3 = events[2]["occurredAt"].as_str().expect("occurredAt");
    let at_time = server
        .get(&format!("{path}/at?time={}", urlencode(t2)), &alice)
        .await;
    at_time.expect(StatusCode::OK);
    if t2 != t3 {
        assert_eq!(
            at_time.json, added.json,
            "the state at the ItemAdded instant"
        );
    }
    server
        .get(&format!("{path}/at?time=2000-01-01T00:00:00Z"), &alice)
        .await
        .expect_problem(StatusCode::NOT_FOUND, "version_not_found");

    // --- a rejected and a canceled order ---
    let second = server
        .create_order(&ops, "alice", &[("KET-9", "Green kettle", 1, "40.00")])
        .await;
    second.expect(StatusCode::CREATED);
    let second_path = format!("/api/v1/orders/{}", second.order_id());
    for missing in [json!({}), json!({"reason": ""}), json!({"reason": "   "})] {
        server
            .post(&format!("{second_path}/reject"), &ops, &missing)
            .await
            .expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    }
    let rejected = server
        .post(
            &format!("{second_path}/reject"),
            &ops,
            &json!({"reason": "fraud check"}),
        )
        .await;
    rejected.expect(StatusCode::OK);
    assert_eq!(rejected.json["status"], "REJECTED");
    assert_eq!(rejected.version(), 2);
    assert_terminal(&server, &ops, second.order_id(), 2).await;

    let third = server
        .create_order(&alice, "alice", &[("SKU-7", "Yellow plate", 4, "2.25")])
        .await;
    third.expect(StatusCode::CREATED);
    let third_path = format!("/api/v1/orders/{}", third.order_id());
    // cancel with an empty body is allowed (the reason is optional)
    let canceled = Resp::from(
        server
            .request(Method::POST, &format!("{third_path}/cancel"), Some(&alice))
            .send()
            .await,
    )
    .await;
    canceled.expect(StatusCode::OK);
    assert_eq!(canceled.json["status"], "CANCELED");
    assert_terminal(&server, &ops, third.order_id(), 2).await;

    // an approved order can still be canceled
    let fourth = server
        .post(
            "/api/v1/orders",
            &ops,
            &order_body("bob", "JPY", &[("JP-1", "Tea bowl", 3, "500")]),
        )
        .await;
    fourth.expect(StatusCode::CREATED);
    assert_eq!(fourth.json["totalAmount"], "1500");
    let fourth_path = format!("/api/v1/orders/{}", fourth.order_id());
    server
        .post(&format!("{fourth_path}/approve"), &ops, &json!({}))
        .await
        .expect(StatusCode::OK);
    let last = server
        .post(
            &format!("{fourth_path}/items"),
            &ops,
            &item("JP-2", "Tea bowl", 1, "500"),
        )
        .await;
    last.expect_problem(StatusCode::CONFLICT, "invalid_status");
    let live = server
        .post(
            "/api/v1/orders",
            &ops,
            &order_body("bob", "JPY", &[("JP-3", "Sake cup", 2, "250")]),
        )
        .await;
    live.expect(StatusCode::CREATED);
    let token = live.consistency_token();

    // --- queries over the read model (waiting for the last write) ---
    let get_with_token = |path: String, who: String| {
        let token = token.clone();
        let server = &server;
        async move {
            Resp::from(
                server
                    .request(Method::GET, &path, Some(&who))
                    .header("x-consistency-token", token)
                    .send()
                    .await,
            )
            .await
        }
    };
    let ids = |r: &Resp| -> Vec<String> {
        r.json["items"]
            .as_array()
            .unwrap_or_else(|| panic!("items in {r}"))
            .iter()
            .map(|o| o["orderId"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let id_s = |r: &Resp| r.order_id().to_string();

    let all = get_with_token("/api/v1/orders".into(), ops.clone()).await;
    all.expect(StatusCode::OK);
    assert_eq!(ids(&all).len(), 5, "all orders listed: {all}");
    assert!(all.json["nextCursor"].is_null());
    // default sort is createdAt:desc
    assert_eq!(ids(&all)[0], id_s(&live));
    assert_eq!(ids(&all)[4], id_s(&created));

    let alices = get_with_token("/api/v1/orders?customerId=alice".into(), ops.clone()).await;
    let mut got = ids(&alices);
    got.sort();
    let mut want = vec![id_s(&created), id_s(&second), id_s(&third)];
    want.sort();
    assert_eq!(got, want, "customerId filter: {alices}");
    let shipped_list = get_with_token("/api/v1/orders?status=SHIPPED".into(), ops.clone()).await;
    assert_eq!(ids(&shipped_list), vec![id_s(&created)]);
    let approved_bob = get_with_token(
        "/api/v1/orders?customerId=bob&status=APPROVED&sort=createdAt:asc".into(),
        ops.clone(),
    )
    .await;
    assert_eq!(ids(&approved_bob), vec![id_s(&fourth)]);
    let future = get_with_token(
        "/api/v1/orders?createdFrom=2999-01-01T00:00:00Z".into(),
        ops.clone(),
    )
    .await;
    assert_eq!(ids(&future).len(), 0, "createdFrom in the future: {future}");
    let past = get_with_token(
        "/api/v1/orders?createdTo=2000-01-01T00:00:00Z".into(),
        ops.clone(),
    )
    .await;
    assert_eq!(ids(&past).len(), 0, "createdTo in the past: {past}");
    let from_fourth = get_with_token(
        format!(
            "/api/v1/orders?sort=createdAt:asc&createdFrom={}",
            urlencode(fourth.json["createdAt"].as_str().expect("createdAt"))
        ),
        ops.clone(),
    )
    .await;
    assert_eq!(
        ids(&from_fourth),
        vec![id_s(&fourth), id_s(&live)],
        "createdFrom is inclusive: {from_fourth}"
    );

    // --- search ---
    let kettle = get_with_token("/api/v1/orders/search?q=kettle".into(), ops.clone()).await;
    kettle.expect(StatusCode::OK);
    assert_eq!(ids(&kettle), vec![id_s(&second)], "product word: {kettle}");
    let by_sku = get_with_token("/api/v1/orders/search?q=KET-9".into(), ops.clone()).await;
    assert_eq!(ids(&by_sku), vec![id_s(&second)], "SKU: {by_sku}");
    let by_id = get_with_token(
        format!("/api/v1/orders/search?q={}", id_s(&third)),
        ops.clone(),
    )
    .await;
    assert_eq!(ids(&by_id), vec![id_s(&third)], "order id: {by_id}");
    let nothing = get_with_token("/api/v1/orders/search?q=zebra".into(), ops.clone()).await;
    assert_eq!(ids(&nothing).len(), 0);
    let mug_for_alice = get_with_token("/api/v1/orders/search?q=mug".into(), alice.clone()).await;
    assert_eq!(ids(&mug_for_alice), vec![id_s(&created)]);

    // --- stats ---
    let stats = get_with_token("/api/v1/orders/stats".into(), analyst.clone()).await;
    stats.expect(StatusCode::OK);
    assert_eq!(
        stats.json["byStatus"],
        json!({"CREATED": 1, "APPROVED": 1, "SHIPPED": 1, "REJECTED": 1, "CANCELED": 1}),
        "{stats}"
    );
    assert_eq!(
        stats.json["byCurrency"],
        json!({
            // shipped 62.50 counts; the rejected 40.00 and canceled 9.00 do not
            "USD": {"orderCount": 3, "totalAmount": "62.50"},
            "JPY": {"orderCount": 2, "totalAmount": "2000"},
        }),
        "{stats}"
    );
    let alice_stats = get_with_token(
        "/api/v1/orders/stats?customerId=alice".into(),
        analyst.clone(),
    )
    .await;
    assert_eq!(alice_stats.json["byStatus"]["SHIPPED"], 1);
    assert_eq!(alice_stats.json["byStatus"]["APPROVED"], 0);
    assert!(
        alice_stats.json["byCurrency"].get("JPY").is_none(),
        "{alice_stats}"
    );
}

fn urlencode(text: &str) -> String {
    text.replace('+', "%2B").replace(':', "%3A")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_on_sqlite() {
    lifecycle(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_on_postgres() {
    lifecycle(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistency_tokens_are_checked_and_bounded() {
    let server = Server::start(Backend::Sqlite).await;
    let ops = server.token("ops-1", &["ops"]);
    let created = server
        .create_order(&ops, "carol", &[("SKU-1", "Blue mug", 1, "1.00")])
        .await;
    created.expect(StatusCode::CREATED);
    let path = format!("/api/v1/orders/{}", created.order_id());
    let with = |headers: &[(&str, &str)], path: &str| {
        let mut builder = server.request(Method::GET, path, Some(&ops));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.send()
    };
    // (an empty header is no condition, like an empty If-Match)
    for bad in ["abc", "-1", "1.5", "42"] {
        Resp::from(with(&[("x-consistency-token", bad)], &path).await)
            .await
            .expect_problem(StatusCode::BAD_REQUEST, "invalid_consistency_token");
    }
    // a token of another event store is refused, not waited for
    let foreign = format!("{}:1", uuid::Uuid::new_v4().simple());
    Resp::from(with(&[("x-consistency-token", foreign.as_str())], &path).await)
        .await
        .expect_problem(StatusCode::BAD_REQUEST, "foreign_consistency_token");
    // a position far beyond the log: the wait is bounded by the client's timeout
    let token = created.consistency_token();
    let (store, position) = token.split_once(':').expect("a token names its store");
    let unreachable = format!(
        "{store}:{}",
        position.parse::<u64>().unwrap_or(0) + 1_000_000_000
    );
    for target in [
        path.clone(),
        "/api/v1/orders".to_string(),
        "/api/v1/orders/stats".to_string(),
    ] {
        let r = Resp::from(
            with(
                &[
                    ("x-consistency-token", unreachable.as_str()),
                    ("x-consistency-timeout-ms", "100"),
                ],
                &target,
            )
            .await,
        )
        .await;
        r.expect_problem(StatusCode::SERVICE_UNAVAILABLE, "consistency_timeout");
        assert!(r.header("retry-after").is_some(), "Retry-After on 503: {r}");
    }
    // the timeout has bounds too
    Resp::from(
        with(
            &[
                ("x-consistency-token", created.consistency_token().as_str()),
                ("x-consistency-timeout-ms", "30001"),
            ],
            &path,
        )
        .await,
    )
    .await
    .expect_problem(StatusCode::BAD_REQUEST, "invalid_consistency_timeout");
    // a token that is reached answers normally
    let ok = Resp::from(
        with(
            &[
                ("x-consistency-token", created.consistency_token().as_str()),
                ("x-consistency-timeout-ms", "10000"),
            ],
            &path,
        )
        .await,
    )
    .await;
    ok.expect(StatusCode::OK);
    assert_eq!(ok.json, created.json);
    let _: Value = ok.json;
}
