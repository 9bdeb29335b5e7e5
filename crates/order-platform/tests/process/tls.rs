//! The servers a production deployment reaches over TLS, against the dev stack, which
//! serves PostgreSQL and Redis with a certificate of its own (`STACK_CA_FILE`):
//! PostgreSQL with `sslmode=verify-full&sslrootcert=…` (`DATABASE_TLS_URL`), Redis as
//! `rediss://` (`REDIS_TLS_URL`) trusting the CA that `SSL_CERT_FILE` names. Each is
//! also refused when the certificate cannot be verified: the check is real.

use crate::spawned::Spawned;
use crate::support::TestDatabase;
use std::time::Duration;
use uuid::Uuid;

fn stack_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: `eval \"$(dev/stack env)\"` (a stack started before it \
             served TLS: `dev/stack down postgres redis && dev/stack up postgres redis`)"
        )
    })
}

/// The number of sessions named `application` that use TLS, seen by the server.
async fn tls_sessions(db: &TestDatabase, application: &str) -> i64 {
    let pool = sqlx::PgPool::connect(&db.url).await.expect("connect");
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.application_name = $1 AND s.ssl",
    )
    .bind(application)
    .fetch_one(&pool)
    .await
    .expect("pg_stat_ssl")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_store_reaches_postgresql_over_verified_tls() {
    let ca = stack_var("STACK_CA_FILE");
    stack_var("DATABASE_TLS_URL");
    let db = TestDatabase::create().await;
    let application = format!("tls-{}", Uuid::new_v4().simple());
    let verified = format!(
        "{}?sslmode=verify-full&sslrootcert={ca}&application_name={application}",
        db.url
    );
    let service = Spawned::start(
        "command-service",
        &[
            "command-service",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &verified,
            "--oidc-issuer",
            &stack_var("OIDC_ISSUER_URL"),
            "--oidc-audience",
            &stack_var("OIDC_AUDIENCE"),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    service.ready(&http).await;
    assert!(
        tls_sessions(&db, &application).await >= 1,
        "the service's sessions use TLS:\n{}",
        service.log()
    );

    // The same server, but the certificate checked against the public web roots: refused,
    // and the message says why.
    let unverifiable = format!("{}?sslmode=verify-full", db.url);
    let other = crate::support::TempDir::new("order-platform-tls");
    let (ok, _, stderr) = crate::run(&[
        "migrate",
        "--database-url",
        &unverifiable,
        "--data-dir",
        other.path().to_str().expect("utf-8"),
    ]);
    assert!(!ok, "an unverifiable certificate must be refused");
    assert!(stderr.contains("certificate"), "{stderr}");
}

/// The gateway's `order_platform_gateway_ratelimit_fallback`, and the third answer to
/// anonymous requests under a budget of two.
async fn gateway_over_rediss(ca: Option<&str>, prefix: &str) -> (String, reqwest::StatusCode) {
    let redis = stack_var("REDIS_TLS_URL");
    let issuer = stack_var("OIDC_ISSUER_URL");
    let audience = stack_var("OIDC_AUDIENCE");
    let env: Vec<(&str, &str)> = ca.map(|ca| ("SSL_CERT_FILE", ca)).into_iter().collect();
    let gateway = Spawned::start_with_env(
        "gateway",
        &[
            "gateway",
            "--listen",
            "127.0.0.1:0",
            // Nothing is forwarded: every request below is anonymous.
            "--command-url",
            "http://127.0.0.1:9",
            "--query-url",
            "http://127.0.0.1:9",
            "--oidc-issuer",
            &issuer,
            "--oidc-audience",
            &audience,
            "--redis-url",
            &redis,
            "--redis-prefix",
            prefix,
            "--rate-limit",
            "anonymous=2/1m",
        ],
        &env,
    )
    .await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut third = reqwest::StatusCode::OK;
    for _ in 0..3 {
        third = http
            .get(gateway.url("/api/v1/orders"))
            .send()
            .await
            .expect("gateway answers")
            .status();
    }
    let metrics = http
        .get(gateway.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let fallback = metrics
        .lines()
        .find(|l| l.starts_with("order_platform_gateway_ratelimit_fallback"))
        .unwrap_or_else(|| panic!("no fallback gauge:\n{metrics}\n{}", gateway.log()))
        .to_string();
    (fallback, third)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_shares_rate_limits_through_redis_over_verified_tls() {
    let ca = stack_var("STACK_CA_FILE");
    let prefix = format!("tls-test-{}", Uuid::new_v4().simple());
    let (fallback, third) = gateway_over_rediss(Some(&ca), &prefix).await;
    assert_eq!(third, reqwest::StatusCode::TOO_MANY_REQUESTS);
    assert!(
        fallback.ends_with(" 0"),
        "decided in Redis, not in memory: {fallback}"
    );
    // The budget lives in Redis (read over the plain port).
    let client = redis::Client::open(stack_var("REDIS_URL")).expect("REDIS_URL");
    let mut redis = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to Redis");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut redis)
        .await
        .expect("KEYS");
    assert!(!keys.is_empty(), "no rate-limit key under {prefix}");

    // Without the CA the certificate cannot be verified: the gateway keeps working on its
    // in-memory limit and says so.
    let prefix = format!("tls-test-{}", Uuid::new_v4().simple());
    let (fallback, third) = gateway_over_rediss(None, &prefix).await;
    assert_eq!(third, reqwest::StatusCode::TOO_MANY_REQUESTS);
    assert!(fallback.ends_with(" 1"), "in fallback: {fallback}");
}
