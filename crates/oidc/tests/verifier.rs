//! The verifier against a mock issuer whose keys we hold, so that each rule is
//! checked on a token that is correctly signed and breaks only that rule.
//! (The same rules against the real Keycloak: the `oidc` cases of the
//! order-platform e2e suite.)

use order_auth::{AuthError, Role, TokenVerifier};
use order_oidc::testing::{self, MockIssuer, TestKey};
use order_oidc::{OidcConfig, OidcError, OidcVerifier};
use serde_json::json;
use std::time::Duration;

async fn verifier(issuer: &MockIssuer) -> OidcVerifier {
    verifier_with(issuer, |_| {}).await
}

async fn verifier_with(issuer: &MockIssuer, tune: impl FnOnce(&mut OidcConfig)) -> OidcVerifier {
    let mut config = OidcConfig::new(issuer.issuer(), testing::AUDIENCE);
    tune(&mut config);
    OidcVerifier::discover(config)
        .await
        .expect("discover the mock issuer")
}

#[tokio::test]
async fn a_valid_token_gives_its_subject_and_realm_roles() {
    let issuer = MockIssuer::start().await;
    let v = verifier(&issuer).await;
    let principal = v
        .verify(&issuer.token("alice", &["customer", "offline_access"]))
        .await
        .unwrap();
    assert_eq!(principal.subject, "alice");
    assert_eq!(
        principal.roles.iter().copied().collect::<Vec<_>>(),
        [Role::Customer]
    );
}

#[tokio::test]
async fn each_broken_claim_is_refused_although_the_signature_is_good() {
    let issuer = MockIssuer::start().await;
    let v = verifier(&issuer).await;
    let key = issuer.key("key-1");
    let now = testing::now();
    let with = |change: serde_json::Value| {
        let mut claims = issuer.claims("alice", &["ops"]);
        for (k, val) in change.as_object().unwrap() {
            claims[k] = val.clone();
        }
        key.sign(&claims)
    };
    let cases = [
        (
            "expired beyond the leeway",
            with(json!({"exp": now - 120})),
            "expired",
        ),
        (
            "not valid for another two minutes",
            with(json!({"nbf": now + 120})),
            "not valid yet",
        ),
        (
            "another issuer",
            with(json!({"iss": "http://127.0.0.1:1/realms/other"})),
            "issuer",
        ),
        (
            "another audience",
            with(json!({"aud": "account"})),
            "not issued for this API",
        ),
        (
            "no audience",
            {
                let mut c = issuer.claims("alice", &["ops"]);
                c.as_object_mut().unwrap().remove("aud");
                key.sign(&c)
            },
            "malformed",
        ),
    ];
    for (what, token, says) in cases {
        let error = v.verify(&token).await.expect_err(what);
        assert!(error.to_string().contains(says), "{what}: {error}");
    }
    // Within the leeway (30 s): accepted.
    assert!(v.verify(&with(json!({"exp": now - 5}))).await.is_ok());
}

#[tokio::test]
async fn forged_algorithms_and_tampering_are_refused() {
    let issuer = MockIssuer::start().await;
    let v = verifier(&issuer).await;
    let claims = issuer.claims("mallory", &["admin"]);
    let none = testing::unsigned(
        &json!({"alg": "none", "typ": "JWT", "kid": "key-1"}),
        &claims,
    );
    assert!(matches!(
        v.verify(&none).await,
        Err(AuthError::WrongAlgorithm)
    ));
    // HS256 with the published public key as the MAC secret.
    let public = issuer.key("key-1").jwk().to_string();
    let confused = testing::hs256("key-1", public.as_bytes(), &claims);
    assert!(matches!(
        v.verify(&confused).await,
        Err(AuthError::WrongAlgorithm)
    ));
    // A good token whose payload was changed.
    let good = issuer.token("mallory", &["customer"]);
    let tampered = testing::with_payload(&good, &claims);
    assert!(matches!(
        v.verify(&tampered).await,
        Err(AuthError::BadSignature)
    ));
    for garbage in ["", "a.b.c", "....", "Bearer"] {
        assert!(v.verify(garbage).await.is_err(), "{garbage:?}");
    }
}

#[tokio::test]
async fn roles_on_other_clients_grant_nothing() {
    let issuer = MockIssuer::start().await;
    let v = verifier(&issuer).await;
    let mut claims = issuer.claims("carol", &[]);
    claims["resource_access"] = json!({
        "order-platform-web": {"roles": ["admin"]},
        "order-platform-api": {"roles": ["analyst"]},
    });
    let principal = v.verify(&issuer.key("key-1").sign(&claims)).await.unwrap();
    assert_eq!(
        principal.roles.iter().copied().collect::<Vec<_>>(),
        [Role::Analyst]
    );
}

#[tokio::test]
async fn a_key_rotated_in_is_accepted_at_first_use_and_unknown_kids_cost_one_fetch_per_interval() {
    let issuer = MockIssuer::start().await;
    let v = verifier_with(&issuer, |c| c.jwks_min_refresh = Duration::from_millis(300)).await;
    assert_eq!(issuer.jwks_requests(), 1);
    // Let the start-up fetch age past the refresh interval, then rotate.
    tokio::time::sleep(Duration::from_millis(350)).await;
    let new = issuer.add_key("key-2");
    let token = new.sign(&issuer.claims("alice", &["ops"]));
    v.verify(&token)
        .await
        .expect("the new key is fetched on first sight");
    assert_eq!(issuer.jwks_requests(), 2);

    // A key rotated in right after that fetch (within the interval): its
    // token waits for the next allowed fetch rather than being refused.
    let newer = issuer.add_key("key-3");
    let token = newer.sign(&issuer.claims("alice", &["ops"]));
    v.verify(&token)
        .await
        .expect("accepted after waiting for the interval");
    assert_eq!(issuer.jwks_requests(), 3);

    // A flood of made-up key ids at once: one fetch for all of them.
    let stranger = TestKey::generate("made-up");
    let forged = stranger.sign(&issuer.claims("mallory", &["admin"]));
    let flood = (0..50).map(|_| v.verify(&forged));
    for result in futures::future::join_all(flood).await {
        assert!(matches!(result, Err(AuthError::UnknownKey)));
    }
    assert_eq!(issuer.jwks_requests(), 4, "one fetch for the whole flood");
}

#[tokio::test]
async fn a_flood_of_unknown_key_ids_waits_in_a_bounded_number() {
    let issuer = MockIssuer::start().await;
    // Just fetched at start-up: the next fetch is allowed in 2 s, so lookups of
    // unknown key ids wait for it — at most MAX_WAITING of them.
    let v = verifier_with(&issuer, |c| c.jwks_min_refresh = Duration::from_secs(2)).await;
    let stranger = TestKey::generate("made-up");
    let forged = stranger.sign(&issuer.claims("mallory", &["admin"]));
    let started = std::time::Instant::now();
    let flood = (0..200).map(|_| async {
        let result = v.verify(&forged).await;
        assert!(matches!(result, Err(AuthError::UnknownKey)), "{result:?}");
        started.elapsed()
    });
    let took = futures::future::join_all(flood).await;
    let at_once = took.iter().filter(|t| **t < Duration::from_secs(1)).count();
    assert_eq!(
        at_once,
        200 - order_oidc::MAX_WAITING,
        "all but MAX_WAITING refused at once: {took:?}"
    );
    assert_eq!(
        issuer.jwks_requests(),
        2,
        "and one fetch for the waiting ones"
    );
}

#[tokio::test]
async fn a_removed_key_stops_working_within_the_cache_time() {
    let issuer = MockIssuer::start().await;
    let v = verifier_with(&issuer, |c| {
        c.jwks_cache = Duration::from_millis(500);
        c.jwks_min_refresh = Duration::from_millis(100);
    })
    .await;
    let old = issuer.token("alice", &["ops"]);
    // Accepted, and so remembered (its signature is not checked again).
    assert!(v.verify(&old).await.is_ok());
    issuer.add_key("key-2");
    issuer.remove_key("key-1");
    assert!(v.verify(&old).await.is_ok(), "still cached");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(matches!(v.verify(&old).await, Err(AuthError::UnknownKey)));
}

#[tokio::test]
async fn discovery_names_a_wrong_issuer_and_an_unreachable_one() {
    let issuer = MockIssuer::start().await;
    let mut config = OidcConfig::new(format!("{}/", issuer.issuer()), testing::AUDIENCE);
    let Err(error) = OidcVerifier::discover(config.clone()).await else {
        panic!("a trailing slash is another issuer")
    };
    assert!(matches!(error, OidcError::IssuerMismatch { .. }), "{error}");
    config.issuer = "http://127.0.0.1:9/realms/nowhere".into();
    let Err(error) = OidcVerifier::discover_patiently(config, Duration::from_millis(10)).await
    else {
        panic!("nothing listens there")
    };
    let message = error.to_string();
    assert!(
        message.contains("http://127.0.0.1:9/realms/nowhere/.well-known/openid-configuration"),
        "{message}"
    );
}
