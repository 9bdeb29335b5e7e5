//! `serve --oidc-issuer`: tokens of the real Keycloak of `dev/stack`, in a
//! throw-away realm ([`TestRealm`]), checked by the server itself (no gateway
//! in front). Valid tokens of every kind of caller get in with exactly their
//! roles; every forgery and every token not meant for us is a 401 with a
//! `Bearer error="invalid_token"` challenge; a caller without the role is a
//! 403; nothing is ever a 2xx or a 5xx that should not be.

use crate::support::keycloak::{self, AUDIENCE, TestRealm, subject};
use crate::support::{Backend, Options, Resp, Server, item, order_body};
use order_oidc::testing::{self, MockIssuer, TestKey};
use reqwest::{Method, StatusCode};
use serde_json::json;

async fn server_trusting(issuer: &str) -> Server {
    let mut options = Options::new(Backend::Sqlite);
    options.extra_args = [
        "--oidc-issuer",
        issuer,
        "--oidc-audience",
        AUDIENCE,
        "--oidc-leeway",
        "1s",
    ]
    .map(String::from)
    .to_vec();
    Server::start_with(options).await
}

#[track_caller]
pub(crate) fn expect_invalid_token(what: &str, r: &Resp) {
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {r}");
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer ") && challenge.contains("error=\"invalid_token\""),
        "{what}: {challenge:?}"
    );
    assert_eq!(
        r.header("content-type"),
        Some("application/problem+json"),
        "{what}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keycloak_users_and_the_service_client_get_exactly_their_roles() {
    let realm = TestRealm::create().await;
    let server = server_trusting(&realm.issuer).await;
    let customer = realm.token("customer1").await;
    let me = subject(&customer);

    // Customer: creates for itself, lists its own; may not approve.
    let created = server
        .create_order(&customer, &me, &[("SKU-1", "Mug", 1, "3.00")])
        .await;
    created.expect(StatusCode::CREATED);
    let id = created.order_id();
    server
        .get("/api/v1/orders", &customer)
        .await
        .expect(StatusCode::OK);
    let approve = format!("/api/v1/orders/{id}/approve");
    server
        .post(&approve, &customer, &json!({}))
        .await
        .expect_problem(StatusCode::FORBIDDEN, "forbidden");

    // Analyst: reads all and stats, no commands.
    let analyst = realm.token("analyst1").await;
    server
        .get(&format!("/api/v1/orders/{id}"), &analyst)
        .await
        .expect(StatusCode::OK);
    server
        .get("/api/v1/orders/stats", &analyst)
        .await
        .expect(StatusCode::OK);
    server
        .post(&approve, &analyst, &json!({}))
        .await
        .expect_problem(StatusCode::FORBIDDEN, "forbidden");

    // The service client (client credentials, role ops) approves; admin ships.
    let service = realm.service_token().await;
    server
        .post(&approve, &service, &json!({}))
        .await
        .expect(StatusCode::OK);
    let admin = realm.token("admin1").await;
    server
        .post(
            &format!("/api/v1/orders/{id}/ship"),
            &admin,
            &json!({"trackingNumber": "1Z", "carrier": "UPS"}),
        )
        .await
        .expect(StatusCode::OK);
    let ops = realm.token("ops1").await;
    server
        .get(&format!("/api/v1/orders/{id}/events"), &ops)
        .await
        .expect(StatusCode::OK);

    // A role held on this API's client counts…
    let api_analyst = realm.token("apianalyst").await;
    server
        .get(&format!("/api/v1/orders/{id}"), &api_analyst)
        .await
        .expect(StatusCode::OK);
    // …roles held on another client grant nothing, and no role is no access.
    let web_admin = realm.token("webadmin").await;
    assert!(
        testing::payload(&web_admin)["resource_access"]["order-platform-web"]["roles"]
            .as_array()
            .is_some_and(|r| !r.is_empty()),
        "the token does carry the other client's roles"
    );
    for (who, token) in [
        ("roles on another client", &web_admin),
        ("no role", &realm.token("noroles").await),
    ] {
        server
            .get(&format!("/api/v1/orders/{id}"), token)
            .await
            .expect_problem(StatusCode::FORBIDDEN, "forbidden");
        server
            .get("/api/v1/orders", token)
            .await
            .expect_problem(StatusCode::FORBIDDEN, "forbidden");
        let r = server
            .create_order(token, "x", &[("S", "N", 1, "1.00")])
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{who}: {r}");
    }
    realm.delete().await;
}

/// Tokens that must never get in, each named, made against `realm`: expired,
/// another audience, another realm, alg none, HS256 keyed with the realm's RSA
/// key, another key under Keycloak's kid, an unknown kid, a tampered payload,
/// garbage. The other realm they use is for the caller to delete.
pub(crate) async fn forgeries(realm: &TestRealm) -> (Vec<(&'static str, String)>, TestRealm) {
    let good = realm.token("customer1").await;
    let claims = testing::payload(&good);
    let kid = {
        let header = good.split('.').next().unwrap();
        let header = testing::payload(&format!("x.{header}.y"));
        header["kid"].as_str().unwrap().to_string()
    };
    let mut admin_claims = claims.clone();
    admin_claims["realm_access"] = json!({"roles": ["admin"]});

    // HS256 keyed with the realm's RSA public key (its certificate, PEM).
    let jwks = realm.jwks().await;
    let rsa = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .unwrap();
    let pem = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        rsa["x5c"][0].as_str().unwrap()
    );
    let stranger = TestKey::generate(&kid); // same kid, another key
    let unknown = TestKey::generate("not-a-keycloak-kid");

    // One-second tokens, old by the time they are used (leeway 1s).
    let short_lived = realm
        .password_token_via(keycloak::SHORT_CLIENT, "ops1")
        .await;
    // Another realm of the same Keycloak (its own keys and issuer).
    let other_realm = TestRealm::create().await;
    let foreign = other_realm.token("ops1").await;
    tokio::time::sleep(std::time::Duration::from_millis(3_500)).await;

    let cases = vec![
        ("expired (1 s lifespan)", short_lived),
        (
            "another audience (client without the audience mapper)",
            realm
                .password_token_via(keycloak::NO_AUDIENCE_CLIENT, "ops1")
                .await,
        ),
        ("another realm's token", foreign),
        (
            "alg none",
            testing::unsigned(
                &json!({"alg": "none", "typ": "JWT", "kid": kid}),
                &admin_claims,
            ),
        ),
        (
            "HS256 keyed with the RSA public key",
            testing::hs256(&kid, pem.as_bytes(), &admin_claims),
        ),
        (
            "HS256 keyed with the JWK",
            testing::hs256(&kid, rsa.to_string().as_bytes(), &admin_claims),
        ),
        (
            "ES256 by another key under Keycloak's kid",
            stranger.sign(&admin_claims),
        ),
        ("unknown kid", unknown.sign(&admin_claims)),
        (
            "tampered payload (roles raised)",
            testing::with_payload(&good, &admin_claims),
        ),
        ("garbage", "not.a.token".to_string()),
    ];
    (cases, other_realm)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_expired_and_foreign_tokens_are_401_invalid_token() {
    let realm = TestRealm::create().await;
    let server = server_trusting(&realm.issuer).await;
    let good = realm.token("customer1").await;
    let (cases, other_realm) = forgeries(&realm).await;
    for (what, token) in &cases {
        for (method, path) in [
            (Method::GET, "/api/v1/orders".to_string()),
            (Method::POST, "/api/v1/orders".to_string()),
        ] {
            let mut request = server.request(method.clone(), &path, Some(token));
            if method == Method::POST {
                request = request.json(&order_body("x", "USD", &[("S", "N", 1, "1.00")]));
            }
            expect_invalid_token(what, &Resp::from(request.send().await).await);
        }
    }
    // No token at all.
    let r = Resp::from(server.client.get(server.url("/api/v1/orders")).send().await).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r}");
    // And the good one still works.
    server
        .get("/api/v1/orders", &good)
        .await
        .expect(StatusCode::OK);
    other_realm.delete().await;
    realm.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_keycloak_customer_never_reaches_anothers_orders() {
    let realm = TestRealm::create().await;
    let server = server_trusting(&realm.issuer).await;
    let a = realm.token("customer1").await;
    let b = realm.token("customer2").await;
    let (a_id, b_id) = (subject(&a), subject(&b));
    assert_ne!(a_id, b_id);
    let created = server
        .create_order(&a, &a_id, &[("SKU-1", "Blue mug", 2, "4.50")])
        .await;
    let id = created.expect(StatusCode::CREATED).order_id();
    let token = created.consistency_token();
    let p = format!("/api/v1/orders/{id}");

    let unknown = server
        .get(&format!("/api/v1/orders/{}", uuid::Uuid::new_v4()), &b)
        .await;
    unknown.expect_problem(
        StatusCode::NOT_FOUND,
        unknown.json["code"].as_str().unwrap_or("?"),
    );
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
        let mut request = server
            .request(method, &path, Some(&b))
            .header("x-consistency-token", &token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let r = Resp::from(request.send().await).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{label}: {r}");
        assert_eq!(
            r.json["code"], unknown.json["code"],
            "{label}: the unknown-order answer"
        );
    }
    // B's list, search and stats never show A's order.
    for path in [
        "/api/v1/orders".to_string(),
        format!("/api/v1/orders?customerId={a_id}"),
        "/api/v1/orders/search?q=mug".to_string(),
        format!("/api/v1/orders/search?q={id}"),
    ] {
        let r = server.get_after(&path, &b, &token).await;
        assert!(
            (r.status == StatusCode::OK && !r.text.contains(&id.to_string()))
                || r.status == StatusCode::FORBIDDEN,
            "{path}: {r}"
        );
    }
    let stats = server.get_after("/api/v1/orders/stats", &b, &token).await;
    assert!(
        stats.status == StatusCode::FORBIDDEN
            || (stats.status == StatusCode::OK && !stats.text.contains("\"USD\"")),
        "stats: {stats}"
    );
    // A still sees it, unchanged.
    let mine = server.get_after(&p, &a, &token).await;
    mine.expect(StatusCode::OK);
    assert_eq!(mine.json["version"], 1);
    realm.delete().await;
}

/// The claim rules through the server, with a correctly signed token that
/// breaks one rule each (a mock issuer whose key we hold: Keycloak never signs
/// such tokens for us).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correctly_signed_tokens_breaking_one_claim_rule_are_401() {
    let issuer = MockIssuer::start().await;
    let server = server_trusting(issuer.issuer()).await;
    server
        .get("/api/v1/orders", &issuer.token("ops-1", &["ops"]))
        .await
        .expect(StatusCode::OK);
    for (what, token) in claim_rule_breakers(&issuer) {
        expect_invalid_token(what, &server.get("/api/v1/orders", &token).await);
    }
}

/// Tokens correctly signed by `issuer`'s key that each break one claim rule:
/// expired, not yet valid, wrong issuer, wrong audience.
pub(crate) fn claim_rule_breakers(issuer: &MockIssuer) -> Vec<(&'static str, String)> {
    let key = issuer.key("key-1");
    let now = testing::now();
    let with = |field: &str, value: serde_json::Value| {
        let mut claims = issuer.claims("ops-1", &["ops"]);
        claims[field] = value;
        key.sign(&claims)
    };
    vec![
        ("expired", with("exp", json!(now - 60))),
        ("not yet valid", with("nbf", json!(now + 60))),
        (
            "wrong issuer",
            with("iss", json!("http://127.0.0.1:1/realms/other")),
        ),
        (
            "wrong audience",
            with("aud", json!(["account", "other-api"])),
        ),
    ]
}
