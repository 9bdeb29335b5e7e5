//! Every row of the error table of DESIGN.md §4.4: status, problem+json content
//! type, stable `code`, and that a refused request changes nothing.

use crate::support::{Backend, Options, Resp, Server, TempDir, item, order_body};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

/// Number of events of an order, straight from the event store.
async fn version_of(server: &Server, token: &str, id: Uuid) -> usize {
    let r = server
        .get(&format!("/api/v1/orders/{id}/events"), token)
        .await;
    r.expect(StatusCode::OK);
    r.json["events"].as_array().map_or(0, Vec::len)
}

async fn raw(server: &Server, method: Method, path: &str, token: &str, body: &str) -> Resp {
    Resp::from(
        server
            .request(method, path, Some(token))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_400() {
    let server = Server::start(Backend::Sqlite).await;
    let ops = server.token("ops-1", &["ops"]);
    let id = server.new_order(&ops, "alice").await;
    let items = format!("/api/v1/orders/{id}/items");

    // not JSON
    for body in ["{not json", "", "{\"customerId\": \"alice\",", "nul"] {
        raw(&server, Method::POST, "/api/v1/orders", &ops, body)
            .await
            .expect_problem(StatusCode::BAD_REQUEST, "invalid_json");
    }
    raw(&server, Method::POST, &items, &ops, "{\"sku\": ")
        .await
        .expect_problem(StatusCode::BAD_REQUEST, "invalid_json");
    raw(
        &server,
        Method::POST,
        &format!("/api/v1/orders/{id}/approve"),
        &ops,
        "{oops",
    )
    .await
    .expect_problem(StatusCode::BAD_REQUEST, "invalid_json");

    // valid JSON of the wrong type
    for body in [
        json!([1, 2]),
        json!("order"),
        json!({"customerId": 5, "currency": "USD", "items": []}),
        json!({"customerId": "alice", "currency": "USD", "items": {"sku": "A"}}),
        json!({"customerId": "alice", "currency": "USD", "orderId": "not-a-uuid",
               "items": [item("A", "B", 1, "1.00")]}),
        json!({"customerId": "alice", "currency": "USD",
               "items": [{"sku": "A", "productName": "B", "quantity": "two", "unitPrice": "1.00"}]}),
        json!({"customerId": "alice", "currency": "USD",
               "items": [{"sku": "A", "productName": "B", "quantity": 1, "unitPrice": 1.5}]}),
    ] {
        server
            .post("/api/v1/orders", &ops, &body)
            .await
            .expect_problem(StatusCode::BAD_REQUEST, "invalid_json");
    }
    server
        .post(
            &items,
            &ops,
            &json!({"sku": "A", "productName": "B", "quantity": 1.5, "unitPrice": "1.00"}),
        )
        .await
        .expect_problem(StatusCode::BAD_REQUEST, "invalid_json");
    server
        .post(
            &format!("/api/v1/orders/{id}/reject"),
            &ops,
            &json!({"reason": 42}),
        )
        .await
        .expect_problem(StatusCode::BAD_REQUEST, "invalid_json");
    server
        .post(&format!("/api/v1/orders/{id}/ship"), &ops, &json!(["UPS"]))
        .await
        .expect_problem(StatusCode::BAD_REQUEST, "invalid_json");

    // a bad UUID in the path, on queries and commands
    for path in [
        "/api/v1/orders/not-a-uuid",
        "/api/v1/orders/123/events",
        "/api/v1/orders/xyz/at?version=1",
    ] {
        server
            .get(path, &ops)
            .await
            .expect_problem(StatusCode::BAD_REQUEST, "invalid_order_id");
    }
    server
        .post(
            "/api/v1/orders/not-a-uuid/items",
            &ops,
            &item("A", "B", 1, "1.00"),
        )
        .await
        .expect_problem(StatusCode::BAD_REQUEST, "invalid_order_id");
    server
        .post("/api/v1/orders/not-a-uuid/approve", &ops, &json!({}))
        .await
        .expect_problem(StatusCode::BAD_REQUEST, "invalid_order_id");
    server
        .delete("/api/v1/orders/nope/items/SKU-1", &ops)
        .await
        .expect_problem(StatusCode::BAD_REQUEST, "invalid_order_id");

    // bad query parameters
    for query in [
        "limit=0",
        "limit=201",
        "limit=-1",
        "limit=ten",
        "status=NOPE",
        "status=created",
        "createdFrom=garbage",
        "createdTo=2024-13-45",
        "sort=price",
        "unknown=1",
        "q=mug",
    ] {
        server
            .get(&format!("/api/v1/orders?{query}"), &ops)
            .await
            .expect_problem(StatusCode::BAD_REQUEST, "invalid_query");
    }
    for query in ["", "q=", "q=mug&limit=0", "q=mug&bogus=1"] {
        server
            .get(&format!("/api/v1/orders/search?{query}"), &ops)
            .await
            .expect_problem(StatusCode::BAD_REQUEST, "invalid_query");
    }
    for query in ["limit=5", "status=NOPE", "foo=bar", "createdFrom=yesterday"] {
        server
            .get(&format!("/api/v1/orders/stats?{query}"), &ops)
            .await
            .expect_problem(StatusCode::BAD_REQUEST, "invalid_query");
    }
    for query in [
        "",
        "version=x",
        "version=1&time=2024-01-01T00:00:00Z",
        "time=soon",
        "when=1",
    ] {
        server
            .get(&format!("/api/v1/orders/{id}/at?{query}"), &ops)
            .await
            .expect_problem(StatusCode::BAD_REQUEST, "invalid_query");
    }
    for cursor in ["garbage", "AAAA", "%00"] {
        server
            .get(&format!("/api/v1/orders?cursor={cursor}"), &ops)
            .await
            .expect_problem(StatusCode::BAD_REQUEST, "invalid_cursor");
    }

    // bad If-Match / Idempotency-Key headers
    for value in ["3", "\"abc\"", "*", "\"-1\""] {
        Resp::from(
            server
                .request(
                    Method::POST,
                    &format!("/api/v1/orders/{id}/approve"),
                    Some(&ops),
                )
                .header("if-match", value)
                .send()
                .await,
        )
        .await
        .expect_problem(StatusCode::BAD_REQUEST, "invalid_if_match");
    }
    assert_eq!(
        version_of(&server, &ops, id).await,
        1,
        "no 400 applied anything"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_failures_are_401_with_a_bearer_challenge() {
    let server = Server::start(Backend::Sqlite).await;
    let ops = server.token("ops-1", &["ops"]);
    let id = server.new_order(&ops, "alice").await;

    // signed by the key another server would create in its own data dir
    let other_dir = TempDir::new("order-platform-e2e-other");
    let foreign = order_auth::LocalSigningKey::load_or_create(other_dir.path())
        .expect("create another data dir's key")
        .issue(
            "ops-1",
            &[order_auth::Role::Ops],
            chrono::Utc::now(),
            chrono::Duration::hours(1),
        )
        .expect("issue a foreign token");
    // signed with this data dir's key, but expired well beyond the leeway
    let key = order_auth::LocalSigningKey::load(server.data_dir()).expect("load key");
    let expired = key
        .issue(
            "ops-1",
            &[order_auth::Role::Ops],
            chrono::Utc::now() - chrono::Duration::hours(2),
            chrono::Duration::hours(1),
        )
        .expect("issue an expired token");
    // a valid token with its payload swapped for another's: the signature no longer matches
    let alice = server.token("alice", &["customer"]);
    let tampered = {
        let a: Vec<&str> = alice.split('.').collect();
        let o: Vec<&str> = ops.split('.').collect();
        format!("{}.{}.{}", a[0], o[1], a[2])
    };

    let cases: Vec<(&str, Option<String>)> = vec![
        ("no Authorization header", None),
        ("garbage token", Some("Bearer garbage".into())),
        ("empty bearer", Some("Bearer ".into())),
        ("basic auth", Some("Basic YWxpY2U6cGFzc3dvcmQ=".into())),
        (
            "token of another data dir",
            Some(format!("Bearer {foreign}")),
        ),
        ("expired token", Some(format!("Bearer {expired}"))),
        ("tampered token", Some(format!("Bearer {tampered}"))),
    ];
    let targets = [
        (Method::GET, format!("/api/v1/orders/{id}")),
        (Method::GET, "/api/v1/orders".to_string()),
        (Method::GET, "/api/v1/orders/stats".to_string()),
        (Method::GET, format!("/api/v1/orders/{id}/events")),
        (Method::POST, format!("/api/v1/orders/{id}/approve")),
        (Method::POST, format!("/api/v1/orders/{id}/cancel")),
        (Method::DELETE, format!("/api/v1/orders/{id}/items/SKU-1")),
    ];
    for (what, auth) in &cases {
        for (method, path) in &targets {
            let mut builder = server
                .client
                .request(method.clone(), server.url(path))
                .header("content-type", "application/json")
                .body("{}");
            if let Some(auth) = auth {
                builder = builder.header("authorization", auth);
            }
            let r = Resp::from(builder.send().await).await;
            assert_eq!(
                r.status,
                StatusCode::UNAUTHORIZED,
                "{what}, {method} {path}: {r}"
            );
            r.expect_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
            assert!(
                r.header("www-authenticate")
                    .is_some_and(|h| h.starts_with("Bearer")),
                "{what}: WWW-Authenticate: Bearer …: {r}"
            );
        }
        let create = Resp::from(
            {
                let b = server
                    .client
                    .post(server.url("/api/v1/orders"))
                    .json(&order_body("alice", "USD", &[("A", "B", 1, "1.00")]));
                match auth {
                    Some(a) => b.header("authorization", a),
                    None => b,
                }
            }
            .send()
            .await,
        )
        .await;
        create.expect_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    }
    assert_eq!(version_of(&server, &ops, id).await, 1);
    // a later write, so that the list covers everything before it
    let later = server.new_order(&ops, "bob").await;
    let r = server
        .get(&format!("/api/v1/orders/{later}/events"), &ops)
        .await;
    r.expect(StatusCode::OK);
    let list = server
        .eventually(
            "the second order is listed",
            "/api/v1/orders",
            &ops,
            std::time::Duration::from_secs(20),
            |r| r.json["items"].as_array().map(Vec::len) >= Some(2),
        )
        .await;
    assert_eq!(
        list.json["items"].as_array().map(Vec::len),
        Some(2),
        "no unauthenticated create: {list}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_and_precondition_errors_leave_the_order_unchanged() {
    let server = Server::start(Backend::Sqlite).await;
    let ops = server.token("ops-1", &["ops"]);
    let alice = server.token("alice", &["customer"]);
    let id = server.new_order(&alice, "alice").await;
    let path = format!("/api/v1/orders/{id}");

    // 403
    server
        .post(&format!("{path}/approve"), &alice, &json!({}))
        .await
        .expect_problem(StatusCode::FORBIDDEN, "forbidden");
    // 404: unknown order (query and every command), unknown SKU, unknown route
    let unknown = Uuid::new_v4();
    let up = format!("/api/v1/orders/{unknown}");
    server
        .get(&up, &ops)
        .await
        .expect_problem(StatusCode::NOT_FOUND, "order_not_found");
    server
        .get(&format!("{up}/events"), &ops)
        .await
        .expect_problem(StatusCode::NOT_FOUND, "order_not_found");
    server
        .get(&format!("{up}/at?version=1"), &ops)
        .await
        .expect_problem(StatusCode::NOT_FOUND, "order_not_found");
    for (suffix, body) in [
        ("items", item("A", "B", 1, "1.00")),
        ("approve", json!({})),
        ("reject", json!({"reason": "r"})),
        ("ship", json!({"trackingNumber": "T", "carrier": "C"})),
        ("cancel", json!({})),
    ] {
        server
            .post(&format!("{up}/{suffix}"), &ops, &body)
            .await
            .expect_problem(StatusCode::NOT_FOUND, "order_not_found");
    }
    server
        .delete(&format!("{up}/items/SKU-1"), &ops)
        .await
        .expect_problem(StatusCode::NOT_FOUND, "order_not_found");
    server
        .delete(&format!("{path}/items/NOPE"), &ops)
        .await
        .expect_problem(StatusCode::NOT_FOUND, "sku_not_found");
    server
        .get("/api/v1/nothing-here", &ops)
        .await
        .expect_problem(StatusCode::NOT_FOUND, "route_not_found");
    Resp::from(server.request(Method::PUT, &path, Some(&ops)).send().await)
        .await
        .expect_problem(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");

    // 409: creating with an id that exists; last line; 101st line
    let mut dup = order_body("alice", "USD", &[("A", "B", 1, "1.00")]);
    dup["orderId"] = json!(id);
    server
        .post("/api/v1/orders", &ops, &dup)
        .await
        .expect_problem(StatusCode::CONFLICT, "order_already_exists");
    server
        .delete(&format!("{path}/items/SKU-1"), &ops)
        .await
        .expect_problem(StatusCode::CONFLICT, "last_line");
    let full_items: Vec<(String, String)> = (0..100)
        .map(|i| (format!("S{i}"), format!("Product {i}")))
        .collect();
    let full: Vec<(&str, &str, i64, &str)> = full_items
        .iter()
        .map(|(s, n)| (s.as_str(), n.as_str(), 1, "1.00"))
        .collect();
    let big = server.create_order(&ops, "alice", &full).await;
    big.expect(StatusCode::CREATED);
    server
        .post(
            &format!("/api/v1/orders/{}/items", big.order_id()),
            &ops,
            &item("S100", "One too many", 1, "1.00"),
        )
        .await
        .expect_problem(StatusCode::CONFLICT, "too_many_lines");
    assert_eq!(version_of(&server, &ops, big.order_id()).await, 1);

    // 412: If-Match mismatch carries the current ETag
    let r = Resp::from(
        server
            .request(Method::POST, &format!("{path}/items"), Some(&ops))
            .header("if-match", "\"7\"")
            .json(&item("A", "B", 1, "1.00"))
            .send()
            .await,
    )
    .await;
    r.expect_problem(StatusCode::PRECONDITION_FAILED, "version_mismatch");
    assert_eq!(
        r.etag(),
        Some("\"1\""),
        "412 tells the current version: {r}"
    );
    // a matching If-Match succeeds
    let ok = Resp::from(
        server
            .request(Method::POST, &format!("{path}/items"), Some(&ops))
            .header("if-match", "\"1\"")
            .json(&item("A", "B", 1, "1.00"))
            .send()
            .await,
    )
    .await;
    ok.expect(StatusCode::OK);
    assert_eq!(ok.etag(), Some("\"2\""));
    // the old ETag no longer matches
    Resp::from(
        server
            .request(Method::POST, &format!("{path}/approve"), Some(&ops))
            .header("if-match", "\"1\"")
            .send()
            .await,
    )
    .await
    .expect_problem(StatusCode::PRECONDITION_FAILED, "version_mismatch");

    assert_eq!(
        version_of(&server, &ops, id).await,
        2,
        "only the one accepted command applied"
    );
    let view = server.get(&path, &ops).await;
    assert_eq!(view.json["status"], "CREATED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_are_413() {
    let mut options = Options::new(Backend::Sqlite);
    options.body_limit = Some(4096);
    let server = Server::start_with(options).await;
    let ops = server.token("ops-1", &["ops"]);
    let id = server.new_order(&ops, "alice").await;
    let long = "x".repeat(5000);
    let body = order_body("alice", "USD", &[("A", &long, 1, "1.00")]);
    server
        .post("/api/v1/orders", &ops, &body)
        .await
        .expect_problem(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let path = format!("/api/v1/orders/{id}");
    server
        .post(&format!("{path}/items"), &ops, &item("A", &long, 1, "1.00"))
        .await
        .expect_problem(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    for action in ["approve", "cancel", "reject"] {
        server
            .post(&format!("{path}/{action}"), &ops, &json!({"reason": long}))
            .await
            .expect_problem(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    }
    // A body far over the limit still gets its 413 (the server reads and drops the
    // rest instead of closing on unread input, which would reset the connection and
    // lose the answer), and the connection pool keeps working.
    let huge = order_body("alice", "USD", &[("A", &"z".repeat(256 * 1024), 1, "1.00")]);
    for _ in 0..10 {
        server
            .post("/api/v1/orders", &ops, &huge)
            .await
            .expect_problem(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    }
    // just under the limit is fine (and then a validation matter)
    let under = server
        .post(
            &format!("{path}/items"),
            &ops,
            &item("B", &"y".repeat(150), 1, "1.00"),
        )
        .await;
    under.expect(StatusCode::OK);
    assert_eq!(version_of(&server, &ops, id).await, 2);
}

/// Asserts a 422 `validation_failed` naming `field` in its `errors`.
#[track_caller]
fn assert_invalid(r: &Resp, field: &str) {
    r.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let errors = r.json["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("an errors array: {r}"));
    assert!(
        errors
            .iter()
            .all(|e| e["field"].is_string() && e["message"].is_string()),
        "errors are {{field, message}}: {r}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e["field"].as_str().is_some_and(|f| f.contains(field))),
        "an error for {field}: {r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_values_are_422_with_field_errors() {
    let server = Server::start(Backend::Sqlite).await;
    let ops = server.token("ops-1", &["ops"]);
    let id = server.new_order(&ops, "alice").await;
    let add = format!("/api/v1/orders/{id}/items");

    let line = |sku: &str, name: &str, q: i64, p: &str| item(sku, name, q, p);
    let create =
        |items: Vec<Value>| json!({"customerId": "alice", "currency": "USD", "items": items});
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"currency": "USD", "items": [line("A", "B", 1, "1.00")]}),
            "customerId",
        ),
        (
            json!({"customerId": "alice", "items": [line("A", "B", 1, "1.00")]}),
            "currency",
        ),
        (json!({"customerId": "alice", "currency": "USD"}), "items"),
        (
            json!({"customerId": "  ", "currency": "USD", "items": [line("A", "B", 1, "1.00")]}),
            "customerId",
        ),
        (
            json!({"customerId": "alice", "currency": "XXX", "items": [line("A", "B", 1, "1.00")]}),
            "currency",
        ),
        (
            json!({"customerId": "alice", "currency": "usd", "items": [line("A", "B", 1, "1.00")]}),
            "currency",
        ),
        (create(vec![]), "items"),
        (
            create(
                (0..101)
                    .map(|i| line(&format!("S{i}"), "P", 1, "1.00"))
                    .collect(),
            ),
            "items",
        ),
        (create(vec![line("A", "B", 1, "1.234")]), "unitPrice"),
        (create(vec![line("A", "B", 1, "-1.00")]), "unitPrice"),
        (create(vec![line("A", "B", 1, "0.00")]), "unitPrice"),
        (create(vec![line("A", "B", 1, "0")]), "unitPrice"),
        (create(vec![line("A", "B", 1, "abc")]), "unitPrice"),
        (create(vec![line("A", "B", 0, "1.00")]), "quantity"),
        (create(vec![line("A", "B", 10_001, "1.00")]), "quantity"),
        (create(vec![line("", "B", 1, "1.00")]), "sku"),
        (create(vec![line(&"S".repeat(65), "B", 1, "1.00")]), "sku"),
        (create(vec![line("A", " ", 1, "1.00")]), "productName"),
        (
            create(vec![line("A", &"n".repeat(201), 1, "1.00")]),
            "productName",
        ),
        (
            create(vec![
                json!({"sku": "A", "quantity": 1, "unitPrice": "1.00"}),
            ]),
            "productName",
        ),
        (
            create(vec![json!({"sku": "A", "productName": "B", "quantity": 1})]),
            "unitPrice",
        ),
        (
            json!({"customerId": "alice", "currency": "JPY", "items": [line("A", "B", 1, "1.5")]}),
            "unitPrice",
        ),
        (
            json!({"customerId": "alice", "currency": "KWD", "items": [line("A", "B", 1, "1.2345")]}),
            "unitPrice",
        ),
    ];
    for (body, field) in &cases {
        let r = server.post("/api/v1/orders", &ops, body).await;
        assert_invalid(&r, field);
    }
    // several problems at once are all listed
    let r = server
        .post("/api/v1/orders", &ops, &create(vec![line("", "", 0, "-1")]))
        .await;
    r.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert!(
        r.json["errors"].as_array().is_some_and(|e| e.len() >= 4),
        "every field error: {r}"
    );

    // the same rules when adding an item
    for (body, field) in [
        (line("A", "B", 1, "1.234"), "unitPrice"),
        (line("A", "B", 1, "-5"), "unitPrice"),
        (line("A", "B", 1, "0.00"), "unitPrice"),
        (line("A", "", 1, "1.00"), "productName"),
        (line("A", "B", 0, "1.00"), "quantity"),
        (
            json!({"productName": "B", "quantity": 1, "unitPrice": "1.00"}),
            "sku",
        ),
        (json!({}), "sku"),
    ] {
        assert_invalid(&server.post(&add, &ops, &body).await, field);
    }
    // a KWD price with 3 fraction digits is fine
    let kwd = server
        .post(
            "/api/v1/orders",
            &ops,
            &json!({"customerId": "alice", "currency": "KWD", "items": [line("A", "B", 2, "1.234")]}),
        )
        .await;
    kwd.expect(StatusCode::CREATED);
    assert_eq!(kwd.json["totalAmount"], "2.468");

    assert_eq!(
        version_of(&server, &ops, id).await,
        1,
        "no 422 appended anything"
    );
    let list = server
        .get_after("/api/v1/orders", &ops, &kwd.consistency_token())
        .await;
    assert_eq!(
        list.json["items"].as_array().map(Vec::len),
        Some(2),
        "no invalid create stored an order: {list}"
    );
}

/// A value of the wrong JSON type is named by its field, with what it must be in
/// JSON's words, on every route that takes a body; never a Rust type (`i64`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_json_type_names_the_field_and_what_it_must_be() {
    let server = Server::start(Backend::Sqlite).await;
    let ops = server.token("ops-1", &["ops"]);
    let id = server.new_order(&ops, "alice").await;
    let order = |command: &str| format!("/api/v1/orders/{id}/{command}");
    let cases = [
        (
            "/api/v1/orders".to_string(),
            json!({"customerId": "alice", "currency": "USD",
                   "items": [{"sku": "A", "productName": "B", "quantity": "2", "unitPrice": "1.00"}]}),
            "items[0].quantity",
            "must be an integer, not the string \"2\"",
        ),
        (
            "/api/v1/orders".to_string(),
            json!({"customerId": "alice", "currency": "USD", "items": [item("A", "B", 1, "1.00"),
                   {"sku": "C", "productName": "D", "quantity": 1, "unitPrice": 1.5}]}),
            "items[1].unitPrice",
            "must be a string, not the number 1.5",
        ),
        (
            "/api/v1/orders".to_string(),
            json!({"customerId": "alice", "currency": "USD", "orderId": "not-a-uuid",
                   "items": [item("A", "B", 1, "1.00")]}),
            "orderId",
            "must be a UUID",
        ),
        (
            "/api/v1/orders".to_string(),
            json!({"customerId": "alice", "currency": "USD",
                   "items": [{"sku": "A", "productName": "B", "qty": 1, "unitPrice": "1.00"}]}),
            "items[0].qty",
            "is not a known field; expected sku, productName, quantity, unitPrice",
        ),
        (
            order("items"),
            json!({"sku": "A", "productName": "B", "quantity": 1.5, "unitPrice": "1.00"}),
            "quantity",
            "must be an integer, not 1.5",
        ),
        (
            order("reject"),
            json!({"reason": 42}),
            "reason",
            "must be a string, not the number 42",
        ),
        (
            order("ship"),
            json!({"trackingNumber": "1Z", "carrier": ["UPS"]}),
            "carrier",
            "must be a string, not an array",
        ),
        (
            order("approve"),
            json!({"reason": true}),
            "reason",
            "must be a string, not true",
        ),
        (
            order("cancel"),
            json!({"reason": {"why": "x"}}),
            "reason",
            "must be a string, not an object",
        ),
    ];
    for (path, body, field, message) in cases {
        let r = server.post(&path, &ops, &body).await;
        r.expect_problem(StatusCode::BAD_REQUEST, "invalid_json");
        assert_eq!(r.json["errors"][0]["field"], field, "{path}: {r}");
        let said = r.json["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(said.starts_with(message), "{path}: {r}");
        assert_eq!(
            r.json["detail"].as_str(),
            Some(format!("{field} {said}").as_str()),
            "{path}: {r}"
        );
        for rust in [
            "i64",
            "u64",
            "usize",
            "i32",
            "struct",
            "Uuid",
            "JSON number",
        ] {
            assert!(!r.text.contains(rust), "{path}: {rust} in {r}");
        }
    }
    // nothing of it was applied
    assert_eq!(version_of(&server, &ops, id).await, 1);
}
