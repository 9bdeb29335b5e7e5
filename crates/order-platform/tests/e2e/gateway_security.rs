//! The security matrix through `order-platform gateway`, against the real
//! Keycloak (a throw-away realm) and Redis: every forged, expired or foreign
//! token is a 401 from the gateway itself (never forwarded, never a 2xx or
//! 5xx); roles held on another client, or none, are a 403; a customer never
//! reaches another customer's orders by any route. The same cases against
//! `serve` directly are in `oidc.rs`.

use crate::gateway::{gateway, prefix, redis_url, serve_trusting, url};
use crate::oidc::{claim_rule_breakers, expect_invalid_token, forgeries};
use crate::support::keycloak::{TestRealm, subject};
use crate::support::{Resp, item, order_body};
use order_gateway::Gateway;
use order_oidc::testing::MockIssuer;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Rate limits far above what a test sends: these tests are about identity.
const GENEROUS: [&str; 6] = [
    "--rate-limit",
    "anonymous=100000/1m",
    "--rate-limit",
    "customer=100000/1m",
    "--rate-limit",
    "ops=100000/1m",
];

async fn send(
    g: &Gateway,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Resp {
    let mut request = reqwest::Client::new().request(method, url(g, path));
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    if let Some(b) = body {
        request = request.json(&b);
    }
    Resp::from(request.send().await).await
}

/// The routes a forged token is tried on: a read, a list, a create, a command.
fn routes() -> Vec<(Method, String, Option<Value>)> {
    let id = uuid::Uuid::new_v4();
    vec![
        (Method::GET, "/api/v1/orders".into(), None),
        (Method::GET, format!("/api/v1/orders/{id}"), None),
        (
            Method::POST,
            "/api/v1/orders".into(),
            Some(order_body("x", "USD", &[("S", "N", 1, "1.00")])),
        ),
        (
            Method::POST,
            format!("/api/v1/orders/{id}/approve"),
            Some(json!({})),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_forged_expired_or_foreign_token_is_a_401_at_the_gateway() {
    let realm = TestRealm::create().await;
    let server = serve_trusting(&realm.issuer).await;
    let redis = redis_url();
    let p = prefix();
    // An unknown key id waits for the next allowed JWKS fetch (crates/oidc
    // jwks.rs): a short interval keeps the test short.
    let mut flags = vec![
        "--oidc-leeway",
        "1s",
        "--oidc-jwks-min-refresh",
        "1s",
        "--redis-url",
        &redis,
        "--redis-prefix",
        &p,
    ];
    flags.extend(GENEROUS);
    let g = gateway(&server.base, &realm.issuer, &flags).await;
    let (cases, other_realm) = forgeries(&realm).await;
    for (what, token) in &cases {
        for (method, path, body) in routes() {
            let r = send(&g, method.clone(), &path, Some(token), body).await;
            expect_invalid_token(&format!("{what}: {method} {path}"), &r);
        }
    }
    let r = send(&g, Method::GET, "/api/v1/orders", None, None).await;
    expect_invalid_token("no token", &r);
    // And a good token still gets through.
    let good = realm.token("ops1").await;
    let r = send(&g, Method::GET, "/api/v1/orders", Some(&good), None).await;
    r.expect(StatusCode::OK);
    other_realm.delete().await;
    realm.delete().await;
}

/// Correctly signed, one claim rule broken each (a mock issuer: Keycloak
/// never signs such tokens). Nothing listens behind the gateway, so an answer
/// other than 401 would show a token was let through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correctly_signed_tokens_breaking_a_claim_rule_are_stopped_at_the_gateway() {
    let issuer = MockIssuer::start().await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let mut flags = vec!["--oidc-leeway", "1s"];
    flags.extend(GENEROUS);
    let g = gateway(&closed, issuer.issuer(), &flags).await;
    for (what, token) in claim_rule_breakers(&issuer) {
        for (method, path, body) in routes() {
            let r = send(&g, method.clone(), &path, Some(&token), body).await;
            expect_invalid_token(&format!("{what}: {method} {path}"), &r);
        }
    }
    // The control: a valid token is forwarded (and finds nobody there).
    let r = send(
        &g,
        Method::GET,
        "/api/v1/orders",
        Some(&issuer.token("ops-1", &["ops"])),
        None,
    )
    .await;
    r.expect_problem(StatusCode::SERVICE_UNAVAILABLE, "upstream_unavailable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_gateway_foreign_roles_get_403_and_customers_only_their_own_orders() {
    let realm = TestRealm::create().await;
    let server = serve_trusting(&realm.issuer).await;
    let redis = redis_url();
    let p = prefix();
    let mut flags = vec!["--redis-url", redis.as_str(), "--redis-prefix", &p];
    flags.extend(GENEROUS);
    let g = gateway(&server.base, &realm.issuer, &flags).await;
    let a = realm.token("customer1").await;
    let b = realm.token("customer2").await;
    let (a_id, b_id) = (subject(&a), subject(&b));
    assert_ne!(a_id, b_id);
    let created = send(
        &g,
        Method::POST,
        "/api/v1/orders",
        Some(&a),
        Some(order_body(
            &a_id,
            "USD",
            &[("SKU-1", "Blue mug", 2, "4.50")],
        )),
    )
    .await;
    created.expect(StatusCode::CREATED);
    let id = created.order_id();
    let consistency = created.consistency_token();
    let p = format!("/api/v1/orders/{id}");
    let after = |method: Method, path: &str, token: &str, body: Option<Value>| {
        let mut request = reqwest::Client::new()
            .request(method, url(&g, path))
            .bearer_auth(token)
            .header("x-consistency-token", &consistency)
            .header("x-consistency-timeout-ms", "20000");
        if let Some(b) = body {
            request = request.json(&b);
        }
        async move { Resp::from(request.send().await).await }
    };

    // Roles held only on another client, or none: 403 on reads and commands.
    let web_admin = realm.token("webadmin").await;
    let no_roles = realm.token("noroles").await;
    for (who, token) in [
        ("another client's roles", &web_admin),
        ("no role", &no_roles),
    ] {
        for (method, path, body) in [
            (Method::GET, p.clone(), None),
            (Method::GET, "/api/v1/orders".to_string(), None),
            (Method::GET, "/api/v1/orders/stats".to_string(), None),
            (Method::POST, format!("{p}/approve"), Some(json!({}))),
            (
                Method::POST,
                "/api/v1/orders".to_string(),
                Some(order_body("x", "USD", &[("S", "N", 1, "1.00")])),
            ),
        ] {
            let r = after(method.clone(), &path, token, body).await;
            assert_eq!(
                r.status,
                StatusCode::FORBIDDEN,
                "{who}: {method} {path}: {r}"
            );
            r.expect_problem(StatusCode::FORBIDDEN, "forbidden");
        }
    }

    // Customer B: A's order is exactly an unknown order on every route.
    let unknown = after(
        Method::GET,
        &format!("/api/v1/orders/{}", uuid::Uuid::new_v4()),
        &b,
        None,
    )
    .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{unknown}");
    for (label, method, path, body) in [
        ("get", Method::GET, p.clone(), None),
        ("events", Method::GET, format!("{p}/events"), None),
        ("at", Method::GET, format!("{p}/at?version=1"), None),
        (
            "add item",
            Method::POST,
            format!("{p}/items"),
            Some(item("X", "Extra", 1, "1.00")),
        ),
        (
            "remove item",
            Method::DELETE,
            format!("{p}/items/SKU-1"),
            None,
        ),
        (
            "cancel",
            Method::POST,
            format!("{p}/cancel"),
            Some(json!({})),
        ),
    ] {
        let r = after(method, &path, &b, body).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{label}: {r}");
        assert_eq!(
            r.json["code"], unknown.json["code"],
            "{label}: the unknown-order answer"
        );
    }
    // B's list, search and counts never show A's order.
    for path in [
        "/api/v1/orders".to_string(),
        format!("/api/v1/orders?customerId={a_id}"),
        "/api/v1/orders/search?q=mug".to_string(),
        format!("/api/v1/orders/search?q={id}"),
        "/api/v1/orders/stats".to_string(),
    ] {
        let r = after(Method::GET, &path, &b, None).await;
        assert!(
            r.status == StatusCode::FORBIDDEN
                || (r.status == StatusCode::OK
                    && !r.text.contains(&id.to_string())
                    && !r.text.contains("\"USD\"")),
            "{path}: {r}"
        );
    }
    // A still sees it, unchanged by B's attempts.
    let mine = after(Method::GET, &p, &a, None).await;
    mine.expect(StatusCode::OK);
    assert_eq!(mine.json["version"], 1);
    realm.delete().await;
}
