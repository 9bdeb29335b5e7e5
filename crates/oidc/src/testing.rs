//! A mock OIDC issuer for tests: a discovery document and a JWKS served on
//! `127.0.0.1:0`, and ES256 tokens signed with its own keys. With it a test
//! can make a token that is correctly signed yet expired, not yet valid, for
//! another audience or from another issuer, and so check each rule on its
//! own; and it can rotate keys and count the JWKS fetches.
//!
//! Compiled only for tests (`feature = "testing"`): never in the release binary.

use axum::Router;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The audience mock tokens carry by default (the platform's).
pub const AUDIENCE: &str = "order-platform-api";

/// An ES256 key pair with its JWK.
pub struct TestKey {
    pub kid: String,
    encoding: EncodingKey,
    jwk: Value,
}

impl TestKey {
    /// A fresh P-256 key called `kid`.
    pub fn generate(kid: &str) -> TestKey {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("generate a P-256 key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("read the key back");
        let public = pair.public_key().as_ref(); // 0x04 || x || y
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&public[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&public[33..65]),
        });
        TestKey {
            kid: kid.to_string(),
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk,
        }
    }

    /// `claims` signed with this key (ES256, header `kid`).
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("sign")
    }

    pub fn jwk(&self) -> &Value {
        &self.jwk
    }
}

struct Published {
    issuer: String,
    keys: Mutex<Vec<Arc<TestKey>>>,
    jwks_requests: AtomicU64,
}

/// A running mock issuer. Stops when dropped.
pub struct MockIssuer {
    published: Arc<Published>,
    task: tokio::task::JoinHandle<()>,
}

impl MockIssuer {
    /// Starts serving, with one key (`key-1`) published.
    pub async fn start() -> MockIssuer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the mock issuer");
        let addr = listener.local_addr().expect("its address");
        let issuer = format!("http://{addr}/realms/mock");
        MockIssuer::serve(listener, issuer, vec![Arc::new(TestKey::generate("key-1"))])
    }

    /// Serves on `listener` as `issuer` with `keys` (to restart on a known port).
    pub fn serve(
        listener: tokio::net::TcpListener,
        issuer: String,
        keys: Vec<Arc<TestKey>>,
    ) -> MockIssuer {
        let published = Arc::new(Published {
            issuer,
            keys: Mutex::new(keys),
            jwks_requests: AtomicU64::new(0),
        });
        let discovery = {
            let published = published.clone();
            move || {
                let issuer = published.issuer.clone();
                async move {
                    axum::Json(json!({
                        "issuer": issuer,
                        "jwks_uri": format!("{issuer}/protocol/openid-connect/certs"),
                    }))
                }
            }
        };
        let jwks = {
            let published = published.clone();
            move || {
                published.jwks_requests.fetch_add(1, Ordering::SeqCst);
                let keys: Vec<Value> = published
                    .keys
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|k| k.jwk.clone())
                    .collect();
                async move { axum::Json(json!({ "keys": keys })) }
            }
        };
        let router = Router::new()
            .route(
                "/realms/mock/.well-known/openid-configuration",
                get(discovery),
            )
            .route("/realms/mock/protocol/openid-connect/certs", get(jwks));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        MockIssuer { published, task }
    }

    /// The issuer URL (the tokens' `iss`).
    pub fn issuer(&self) -> &str {
        &self.published.issuer
    }

    /// The published key `kid`.
    pub fn key(&self, kid: &str) -> Arc<TestKey> {
        self.published
            .keys
            .lock()
            .unwrap()
            .iter()
            .find(|k| k.kid == kid)
            .cloned()
            .unwrap_or_else(|| panic!("no published key {kid}"))
    }

    /// Every key published now.
    pub fn keys(&self) -> Vec<Arc<TestKey>> {
        self.published.keys.lock().unwrap().clone()
    }

    /// Publishes a new key `kid` and returns it.
    pub fn add_key(&self, kid: &str) -> Arc<TestKey> {
        let key = Arc::new(TestKey::generate(kid));
        self.published.keys.lock().unwrap().push(key.clone());
        key
    }

    /// Stops publishing the key `kid`.
    pub fn remove_key(&self, kid: &str) {
        self.published.keys.lock().unwrap().retain(|k| k.kid != kid);
    }

    /// How many times the JWKS was fetched.
    pub fn jwks_requests(&self) -> u64 {
        self.published.jwks_requests.load(Ordering::SeqCst)
    }

    /// Valid claims for `sub` with realm `roles`: this issuer, the platform's
    /// audience, valid from a second ago for five minutes.
    pub fn claims(&self, sub: &str, roles: &[&str]) -> Value {
        let now = now();
        json!({
            "iss": self.issuer(), "sub": sub, "aud": AUDIENCE,
            "iat": now - 1, "nbf": now - 1, "exp": now + 300,
            "realm_access": {"roles": roles},
        })
    }

    /// A valid token for `sub` with realm `roles`, signed with `key-1`.
    pub fn token(&self, sub: &str, roles: &[&str]) -> String {
        self.key("key-1").sign(&self.claims(sub, roles))
    }
}

impl Drop for MockIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// `header.payload.` with any header JSON and no signature (for `alg: none`).
pub fn unsigned(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// An HS256 token whose MAC key is `secret` (e.g. an issuer's public key: the
/// classic algorithm-confusion forgery), with header `kid`.
pub fn hs256(kid: &str, secret: &[u8], claims: &Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).expect("sign HS256")
}

/// `token` with its payload replaced by `claims`, signature kept.
pub fn with_payload(token: &str, claims: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        parts.get(2).copied().unwrap_or_default()
    )
}

/// The payload of `token` as JSON (no verification).
pub fn payload(token: &str) -> Value {
    let segment = token.split('.').nth(1).unwrap_or_default();
    let bytes = URL_SAFE_NO_PAD.decode(segment).unwrap_or_default();
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}
