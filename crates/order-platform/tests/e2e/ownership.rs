//! Order ids cannot be probed (DESIGN.md §4.5, as amended): a customer reaching
//! another customer's order gets the very answer it gets for an order that does
//! not exist, on every route; creating with a taken id says 409 and nothing more.

use crate::support::{Resp, Server, item, order_body};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

/// One request of the API that names an order, as `(label, method, path, body)`.
type Probe = (&'static str, Method, String, Option<Value>);

/// Every route that takes an order id, reading or commanding that order.
fn routes_of(id: Uuid) -> Vec<Probe> {
    let p = format!("/api/v1/orders/{id}");
    vec![
        ("get", Method::GET, p.clone(), None),
        ("events", Method::GET, format!("{p}/events"), None),
        ("at version", Method::GET, format!("{p}/at?version=1"), None),
        (
            "at time",
            Method::GET,
            format!("{p}/at?time=2999-01-01T00:00:00Z"),
            None,
        ),
        (
            "add item",
            Method::POST,
            format!("{p}/items"),
            Some(item("X-1", "Extra", 1, "1.00")),
        ),
        (
            "remove item (present SKU)",
            Method::DELETE,
            format!("{p}/items/SKU-1"),
            None,
        ),
        (
            "remove item (absent SKU)",
            Method::DELETE,
            format!("{p}/items/NOPE"),
            None,
        ),
        (
            "cancel",
            Method::POST,
            format!("{p}/cancel"),
            Some(json!({})),
        ),
    ]
}

/// Sends `probe` as `token`, optionally with `If-Match`.
async fn send(server: &Server, token: &str, probe: &Probe, if_match: Option<&str>) -> Resp {
    let (_, method, path, body) = probe;
    let mut request = server.request(method.clone(), path, Some(token));
    if let Some(body) = body {
        request = request.json(body);
    }
    if let Some(tag) = if_match {
        request = request.header("if-match", tag);
    }
    Resp::from(request.send().await).await
}

/// The parts of an answer a client can compare: status, content type, the
/// headers that could carry order data, and the body without `instance`
/// (none today) and with each order id replaced by a placeholder.
fn comparable(r: &Resp, ids: &[Uuid]) -> Value {
    let mut text = r.text.clone();
    for id in ids {
        text = text.replace(&id.to_string(), "<id>");
    }
    let mut body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if let Some(map) = body.as_object_mut() {
        map.remove("instance");
    }
    json!({
        "status": r.status.as_u16(),
        "contentType": r.header("content-type"),
        "etag": r.header("etag"),
        "location": r.header("location"),
        "consistencyToken": r.header("x-consistency-token"),
        "body": body,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_customers_order_answers_exactly_as_an_unknown_one_on_every_route() {
    let server = Server::start(crate::support::Backend::Sqlite).await;
    let alice = server.token("alice", &["customer"]);
    let bob = server.token("bob", &["customer"]);
    let ops = server.token("ops-1", &["ops"]);
    let alices = server.new_order(&alice, "alice").await;
    let unknown = Uuid::new_v4();
    // The read model has alice's order before anyone asks (so a 404 is not a lag).
    server
        .eventually(
            "alice's order projected",
            &format!("/api/v1/orders/{alices}"),
            &ops,
            std::time::Duration::from_secs(20),
            |r| r.status == StatusCode::OK,
        )
        .await;

    let theirs = routes_of(alices);
    let nobodys = routes_of(unknown);
    for (foreign, missing) in theirs.iter().zip(&nobodys) {
        let label = foreign.0;
        for if_match in [None, Some("\"1\""), Some("\"9\"")] {
            let a = send(&server, &bob, foreign, if_match).await;
            let b = send(&server, &bob, missing, if_match).await;
            a.expect_problem(StatusCode::NOT_FOUND, "order_not_found");
            assert_eq!(
                comparable(&a, &[alices]),
                comparable(&b, &[unknown]),
                "{label} (If-Match {if_match:?}): bob on alice's order vs an unknown id\n{a}\n{b}"
            );
        }
    }

    // Staff-only commands are refused by role alone: 403 for a foreign and an
    // unknown order alike, so they reveal nothing either.
    for (command, body) in [
        ("approve", json!({})),
        ("reject", json!({"reason": "r"})),
        ("ship", json!({"trackingNumber": "T", "carrier": "C"})),
    ] {
        let a = server
            .post(&format!("/api/v1/orders/{alices}/{command}"), &bob, &body)
            .await;
        let b = server
            .post(&format!("/api/v1/orders/{unknown}/{command}"), &bob, &body)
            .await;
        a.expect_problem(StatusCode::FORBIDDEN, "forbidden");
        assert_eq!(
            comparable(&a, &[alices]),
            comparable(&b, &[unknown]),
            "{command}"
        );
    }

    // None of it changed alice's order, and she still reaches it.
    let events = server
        .get(&format!("/api/v1/orders/{alices}/events"), &alice)
        .await;
    events.expect(StatusCode::OK);
    assert_eq!(
        events.json["events"].as_array().map(Vec::len),
        Some(1),
        "{events}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_with_a_taken_id_says_409_and_nothing_about_the_order() {
    let server = Server::start(crate::support::Backend::Sqlite).await;
    let alice = server.token("alice", &["customer"]);
    let bob = server.token("bob", &["customer"]);
    let ops = server.token("ops-1", &["ops"]);
    let taken = server.new_order(&alice, "alice").await;
    // Move alice's order past version 1, so a leaked version would show.
    server
        .post(
            &format!("/api/v1/orders/{taken}/items"),
            &alice,
            &item("X-1", "Extra", 1, "1.00"),
        )
        .await
        .expect(StatusCode::OK);

    let mut answers = Vec::new();
    for (who, token, customer) in [
        ("bob", &bob, "bob"),
        ("alice herself", &alice, "alice"),
        ("ops", &ops, "carol"),
    ] {
        let mut body = order_body(customer, "USD", &[("A", "Mug", 1, "1.00")]);
        body["orderId"] = json!(taken);
        for if_match in [None, Some("\"1\""), Some("\"2\""), Some("\"3\"")] {
            let mut request = server.request(Method::POST, "/api/v1/orders", Some(token));
            if let Some(tag) = if_match {
                request = request.header("if-match", tag);
            }
            let r = Resp::from(request.json(&body).send().await).await;
            r.expect_problem(StatusCode::CONFLICT, "order_already_exists");
            let what = format!("{who} creating {taken} with If-Match {if_match:?}: {r}");
            assert_eq!(r.etag(), None, "no ETag: {what}");
            assert_eq!(r.header("location"), None, "no Location: {what}");
            assert_eq!(r.header("x-consistency-token"), None, "{what}");
            for secret in ["alice", "version", "\"2\"", "USD", "Extra"] {
                assert!(!r.text.contains(secret), "{secret:?} leaked: {what}");
            }
            answers.push(comparable(&r, &[taken]));
        }
    }
    // The same answer whoever asks and whatever If-Match says.
    assert!(
        answers.windows(2).all(|w| w[0] == w[1]),
        "answers differ: {answers:#?}"
    );

    // Alice's order is untouched: still version 2, still hers.
    let events = server
        .get(&format!("/api/v1/orders/{taken}/events"), &alice)
        .await;
    events.expect(StatusCode::OK);
    assert_eq!(
        events.json["events"].as_array().map(Vec::len),
        Some(2),
        "{events}"
    );
}
