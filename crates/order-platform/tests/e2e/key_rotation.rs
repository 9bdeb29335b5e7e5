//! Rotating the real Keycloak's realm signing key while traffic flows
//! (DESIGN.md §8), in a throw-away realm so no other test's tokens change:
//! a new RSA key with a higher priority is added, then the old one is made
//! passive, then deleted. Every request with a valid token succeeds
//! throughout (a new `kid` makes the server fetch the keys at once); a token
//! signed by the deleted key stops working within the JWKS cache time.

use crate::support::keycloak::{AUDIENCE, TestRealm};
use crate::support::{Backend, Options, Server};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const JWKS_CACHE: Duration = Duration::from_secs(3);

fn kid(token: &str) -> String {
    let header = token.split('.').next().unwrap_or_default();
    order_oidc::testing::payload(&format!("x.{header}.y"))["kid"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn admin_json(realm: &TestRealm, method: Method, path: &str, body: Option<Value>) -> Value {
    let mut request = realm.admin(method.clone(), path).await;
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the admin API answers");
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    assert!(status.is_success(), "{method} {path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_keycloaks_signing_key_under_traffic_fails_no_valid_request() {
    let realm = Arc::new(TestRealm::create().await);
    let mut options = Options::new(Backend::Sqlite);
    options.extra_args = [
        "--oidc-issuer",
        &realm.issuer,
        "--oidc-audience",
        AUDIENCE,
        "--oidc-jwks-cache",
        "3s",
        "--oidc-jwks-min-refresh",
        "1s",
    ]
    .map(String::from)
    .to_vec();
    let server = Arc::new(Server::start_with(options).await);
    let old_token = realm.token("ops1").await;
    let old_kid = kid(&old_token);
    server
        .get("/api/v1/orders", &old_token)
        .await
        .expect(StatusCode::OK);

    // Traffic: a fresh token and a request, over and over.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = tokio::spawn({
        let (realm, server, stop) = (realm.clone(), server.clone(), stop.clone());
        async move {
            let (mut ok, mut failures, mut kids) =
                (0u32, Vec::new(), std::collections::BTreeSet::new());
            while !stop.load(Ordering::SeqCst) {
                let token = realm.token("customer1").await;
                kids.insert(kid(&token));
                let r = server.get("/api/v1/orders?limit=1", &token).await;
                if r.status == StatusCode::OK {
                    ok += 1;
                } else {
                    failures.push(format!("{} with kid {}: {}", r.status, kid(&token), r.text));
                }
            }
            (ok, failures, kids)
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 1. A new key with a higher priority: Keycloak signs with it from now on.
    let realm_id = admin_json(&realm, Method::GET, "", None).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let providers = admin_json(
        &realm,
        Method::GET,
        "/components?type=org.keycloak.keys.KeyProvider",
        None,
    )
    .await;
    let old = providers
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["providerId"] == "rsa-generated")
        .cloned()
        .expect("the realm's generated RSA key");
    let old_id = old["id"].as_str().unwrap().to_string();
    admin_json(&realm, Method::POST, "/components", Some(json!({
        "name": "rsa-rotated", "providerId": "rsa-generated",
        "providerType": "org.keycloak.keys.KeyProvider", "parentId": realm_id,
        "config": {"priority": ["500"], "keySize": ["2048"], "active": ["true"], "enabled": ["true"], "algorithm": ["RS256"]}
    }))).await;
    let new_token = realm.token("ops1").await;
    assert_ne!(kid(&new_token), old_kid, "Keycloak signs with the new key");
    server
        .get("/api/v1/orders", &new_token)
        .await
        .expect(StatusCode::OK);
    server
        .get("/api/v1/orders", &old_token)
        .await
        .expect(StatusCode::OK);
    tokio::time::sleep(Duration::from_secs(1)).await;

    // 2. The old key passive: still published, so its tokens still verify.
    let mut passive = old.clone();
    passive["config"]["active"] = json!(["false"]);
    admin_json(
        &realm,
        Method::PUT,
        &format!("/components/{old_id}"),
        Some(passive),
    )
    .await;
    tokio::time::sleep(JWKS_CACHE + Duration::from_secs(1)).await;
    server
        .get("/api/v1/orders", &old_token)
        .await
        .expect(StatusCode::OK);

    // 3. The old key deleted: its tokens stop working within the cache time.
    admin_json(
        &realm,
        Method::DELETE,
        &format!("/components/{old_id}"),
        None,
    )
    .await;
    let deleted_at = Instant::now();
    let refused_after = loop {
        let r = server.get("/api/v1/orders", &old_token).await;
        if r.status == StatusCode::UNAUTHORIZED {
            break deleted_at.elapsed();
        }
        r.expect(StatusCode::OK);
        assert!(
            deleted_at.elapsed() < JWKS_CACHE + Duration::from_secs(3),
            "the deleted key is still trusted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let (ok, failures, kids) = traffic.await.expect("the traffic task");
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {failures:#?}",
        failures.len(),
        ok as usize + failures.len()
    );
    assert!(ok >= 10, "traffic flowed: {ok} requests");
    assert!(kids.len() >= 2, "the traffic used both keys: {kids:?}");
    eprintln!(
        "key rotation: {ok} requests, none failed; the deleted key refused after {refused_after:?}"
    );
    Arc::try_unwrap(realm)
        .ok()
        .expect("the only owner")
        .delete()
        .await;
}
