//! Hostile input never crashes the server nor makes it answer 5xx: random and
//! mutated JSON bodies, random path segments, query strings and header values,
//! against the command and query routes of one running server.

use crate::support::{Backend, Server, order_body};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use reqwest::Method;
use reqwest::header::HeaderValue;
use serde_json::{Value, json};
use std::time::Duration;

const CASES: u32 = 200;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "\\PC{0,30}".prop_map(Value::String),
        prop_oneof![
            Just("1.00"),
            Just("-1"),
            Just("0.001"),
            Just("1e400"),
            Just("99999999999999999999.99"),
            Just("USD"),
            Just("SKU-1")
        ]
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("customerId".to_string()),
                    Just("currency".to_string()),
                    Just("items".to_string()),
                    Just("orderId".to_string()),
                    Just("sku".to_string()),
                    Just("productName".to_string()),
                    Just("quantity".to_string()),
                    Just("unitPrice".to_string()),
                    Just("reason".to_string()),
                    Just("trackingNumber".to_string()),
                    Just("carrier".to_string()),
                    "\\PC{0,10}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A valid create body with one field replaced by a random value (or removed).
fn mutated_body() -> impl Strategy<Value = Value> {
    (
        prop_oneof![
            Just(vec!["customerId"]),
            Just(vec!["currency"]),
            Just(vec!["items"]),
            Just(vec!["orderId"]),
            Just(vec!["items", "0"]),
            Just(vec!["items", "0", "sku"]),
            Just(vec!["items", "0", "quantity"]),
            Just(vec!["items", "0", "unitPrice"]),
            Just(vec!["items", "0", "productName"]),
        ],
        prop::option::of(json_value()),
    )
        .prop_map(|(path, replacement)| {
            let mut body = order_body("alice", "USD", &[("SKU-1", "Blue mug", 1, "1.00")]);
            let (last, parents) = path.split_last().expect("non-empty path");
            let mut target = &mut body;
            for key in parents {
                target = match key.parse::<usize>() {
                    Ok(i) => &mut target[i],
                    Err(_) => &mut target[*key],
                };
            }
            match (replacement, target) {
                (Some(v), Value::Object(m)) => {
                    m.insert(last.to_string(), v);
                }
                (Some(v), Value::Array(a)) => a[0] = v,
                (None, Value::Object(m)) => {
                    m.remove(*last);
                }
                (None, Value::Array(a)) => a.clear(),
                _ => {}
            }
            body
        })
}

#[derive(Debug, Clone)]
enum Body {
    None,
    Json(Value),
    Bytes(Vec<u8>),
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        1 => Just(Body::None),
        4 => json_value().prop_map(Body::Json),
        4 => mutated_body().prop_map(Body::Json),
        1 => prop::collection::vec(any::<u8>(), 0..200).prop_map(Body::Bytes),
    ]
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An order id path segment: a real order, an unknown UUID, or anything.
fn id_segment() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("00000000-0000-0000-0000-000000000000".to_string())),
        "\\PC{0,40}".prop_map(|s| Some(percent_encode(&s))),
        "[%a-zA-Z0-9._~-]{1,40}".prop_map(Some),
    ]
}

fn query() -> impl Strategy<Value = String> {
    prop::collection::vec(
        (
            prop_oneof![
                Just("customerId".to_string()),
                Just("status".to_string()),
                Just("createdFrom".to_string()),
                Just("createdTo".to_string()),
                Just("sort".to_string()),
                Just("limit".to_string()),
                Just("cursor".to_string()),
                Just("q".to_string()),
                Just("version".to_string()),
                Just("time".to_string()),
                "[a-z]{1,8}",
            ],
            prop_oneof![
                "\\PC{0,30}".prop_map(|s| percent_encode(&s)),
                "[%&=+a-zA-Z0-9:.-]{0,30}",
                Just("200".to_string()),
                Just("CREATED".to_string()),
                Just("2026-01-01T00:00:00Z".to_string()),
                Just("createdAt:asc".to_string()),
            ],
        ),
        0..5,
    )
    .prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    })
}

/// A header value: printable ASCII garbage or something plausible.
fn header_value() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        2 => Just(None),
        2 => "[ -~]{0,300}".prop_map(Some),
        1 => any::<u64>().prop_map(|n| Some(format!("\"{n}\""))),
        1 => (0u64..4).prop_map(|n| Some(format!("\"{n}\""))),
        1 => "[a-zA-Z0-9]{1,8}".prop_map(Some),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    route: usize,
    id: Option<String>,
    sku: String,
    query: String,
    body: Body,
    json_content_type: bool,
    if_match: Option<String>,
    idempotency_key: Option<String>,
    /// 0: none, 1: garbage, 2: the setup's (reachable) token.
    consistency: (u8, String),
    caller: u8,
}

fn case() -> impl Strategy<Value = Case> {
    (
        0usize..ROUTES.len(),
        id_segment(),
        "\\PC{0,70}".prop_map(|s| percent_encode(&s)),
        query(),
        body(),
        prop::bool::weighted(0.9),
        header_value(),
        header_value(),
        (0u8..3, "[ -~]{0,40}"),
        0u8..4,
    )
        .prop_map(
            |(
                route,
                id,
                sku,
                query,
                body,
                json_content_type,
                if_match,
                key,
                consistency,
                caller,
            )| Case {
                route,
                id,
                sku,
                query,
                body,
                json_content_type,
                if_match,
                idempotency_key: key,
                consistency,
                caller,
            },
        )
}

const ROUTES: [(&str, &str); 13] = [
    ("POST", "/api/v1/orders"),
    ("POST", "/api/v1/orders/{id}/items"),
    ("DELETE", "/api/v1/orders/{id}/items/{sku}"),
    ("POST", "/api/v1/orders/{id}/approve"),
    ("POST", "/api/v1/orders/{id}/reject"),
    ("POST", "/api/v1/orders/{id}/ship"),
    ("POST", "/api/v1/orders/{id}/cancel"),
    ("GET", "/api/v1/orders/{id}"),
    ("GET", "/api/v1/orders/{id}/events"),
    ("GET", "/api/v1/orders/{id}/at"),
    ("GET", "/api/v1/orders"),
    ("GET", "/api/v1/orders/search"),
    ("GET", "/api/v1/orders/stats"),
];

#[test]
fn hostile_requests_never_get_a_5xx() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let server = runtime.block_on(Server::start(Backend::Sqlite));
    let tokens = [
        server.token("ops-1", &["ops"]),
        server.token("alice", &["customer"]),
        server.token("analyst-1", &["analyst"]),
        "not-a-token".to_string(),
    ];
    let (order, reachable) = runtime.block_on(async {
        let r = server
            .create_order(&tokens[0], "alice", &[("SKU-1", "Blue mug", 1, "1.00")])
            .await;
        (r.order_id().to_string(), r.consistency_token())
    });

    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&case(), |case| {
        let (method, template) = ROUTES[case.route];
        let path = template
            .replace("{id}", case.id.as_deref().unwrap_or(&order))
            .replace("{sku}", &case.sku);
        let url = if case.query.is_empty() {
            path.clone()
        } else {
            format!("{path}?{}", case.query)
        };
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let mut builder = server
            .request(
                method.clone(),
                &url,
                Some(&tokens[usize::from(case.caller)]),
            )
            .timeout(Duration::from_secs(10));
        let is_json = matches!(case.body, Body::Json(_));
        match &case.body {
            Body::None => {}
            Body::Json(v) => builder = builder.body(v.to_string()),
            Body::Bytes(b) => builder = builder.body(b.clone()),
        }
        if case.json_content_type {
            builder = builder.header("content-type", "application/json");
        }
        let header = |text: &str| HeaderValue::from_str(text).ok();
        if let Some(v) = case.if_match.as_deref().and_then(header) {
            builder = builder.header("if-match", v);
        }
        if let Some(v) = case.idempotency_key.as_deref().and_then(header) {
            builder = builder.header("idempotency-key", v);
        }
        let consistency = match case.consistency.0 {
            1 => header(&case.consistency.1),
            2 => header(&reachable),
            _ => None,
        };
        if let Some(v) = consistency {
            builder = builder
                .header("x-consistency-token", v)
                .header("x-consistency-timeout-ms", "5000");
        }
        let answer = runtime.block_on(async {
            let response = builder.send().await?;
            let status = response.status();
            let text = response.text().await?;
            Ok::<_, reqwest::Error>((status, text))
        });
        let (status, text) = match answer {
            Ok(a) => a,
            Err(e) if is_json => {
                return Err(TestCaseError::fail(format!(
                    "{method} {url}: no answer within 10s to a JSON body: {e}"
                )));
            }
            Err(e) => return Err(TestCaseError::fail(format!("{method} {url}: {e}"))),
        };
        prop_assert!(
            status.as_u16() < 500,
            "{} {} answered {}: {}",
            method,
            url,
            status,
            text
        );
        Ok(())
    });
    let live = runtime.block_on(async {
        server
            .client
            .get(server.url("/health/live"))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map(|r| r.status())
    });
    if let Err(e) = result {
        panic!("{e}\nserver log:\n{}", server.log_tail());
    }
    assert_eq!(
        live.ok(),
        Some(reqwest::StatusCode::OK),
        "the server still answers /health/live"
    );
    drop(server);
}
