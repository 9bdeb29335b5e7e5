//! `order-platform gateway` in front of `order-platform serve` (both URLs
//! pointing at it), with tokens of the real Keycloak (a throw-away realm) and
//! rate limits in the real Redis of `dev/stack` (`REDIS_URL`).

use crate::support::keycloak::{AUDIENCE, TestRealm, subject};
use crate::support::{Backend, Options, Resp, Server};
use order_gateway::Gateway;
use order_platform::{GatewayArgs, start_gateway};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub(crate) fn redis_url() -> String {
    std::env::var("REDIS_URL").expect(
        "REDIS_URL is not set: start Redis with `dev/stack up redis` and eval `dev/stack env`",
    )
}

pub(crate) async fn serve_trusting(issuer: &str) -> Server {
    let mut options = Options::new(Backend::Sqlite);
    options.extra_args = ["--oidc-issuer", issuer, "--oidc-audience", AUDIENCE]
        .map(String::from)
        .to_vec();
    Server::start_with(options).await
}

/// A gateway in front of `upstream`, trusting `issuer`, with more `flags`.
pub(crate) async fn gateway(upstream: &str, issuer: &str, flags: &[&str]) -> Gateway {
    let mut all = vec![
        "--listen",
        "127.0.0.1:0",
        "--command-url",
        upstream,
        "--query-url",
        upstream,
        "--oidc-issuer",
        issuer,
        "--oidc-audience",
        AUDIENCE,
    ];
    all.extend_from_slice(flags);
    let args = GatewayArgs::from_flags(&all).unwrap_or_else(|e| panic!("{all:?}: {e}"));
    start_gateway(args).await.expect("start the gateway")
}

pub(crate) fn url(g: &Gateway, path: &str) -> String {
    format!("http://{}{path}", g.addr())
}

pub(crate) fn prefix() -> String {
    format!("op-test:{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_forwards_to_serve_with_keycloak_tokens_and_its_edge_headers() {
    let realm = TestRealm::create().await;
    let server = serve_trusting(&realm.issuer).await;
    let redis = redis_url();
    let p = prefix();
    let g = gateway(
        &server.base,
        &realm.issuer,
        &[
            "--redis-url",
            &redis,
            "--redis-prefix",
            &p,
            "--cors-allow-origin",
            "https://app.example.test",
            "--body-limit",
            "2048",
            "--hsts",
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let customer = realm.token("customer1").await;
    let me = subject(&customer);

    let created = Resp::from(
        http.post(url(&g, "/api/v1/orders"))
            .bearer_auth(&customer)
            .header("x-request-id", "req-abc-123")
            .json(&crate::support::order_body(
                &me,
                "USD",
                &[("SKU-1", "Mug", 1, "3.00")],
            ))
            .send()
            .await,
    )
    .await;
    created.expect(StatusCode::CREATED);
    assert!(
        created
            .header("location")
            .is_some_and(|l| l.starts_with("/api/v1/orders/"))
    );
    assert_eq!(created.header("etag"), Some("\"1\""));
    assert_eq!(
        created.header("x-request-id"),
        Some("req-abc-123"),
        "propagated"
    );
    for name in ["ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"] {
        assert!(created.header(name).is_some(), "{name}: {created}");
    }
    assert_eq!(created.header("x-content-type-options"), Some("nosniff"));
    assert!(created.header("strict-transport-security").is_some());
    assert!(created.header("server").is_none(), "no banner");
    let id = created.order_id();
    let consistency = created.consistency_token();

    let read = Resp::from(
        http.get(url(&g, &format!("/api/v1/orders/{id}")))
            .bearer_auth(&customer)
            .header("x-consistency-token", &consistency)
            .send()
            .await,
    )
    .await;
    read.expect(StatusCode::OK);
    assert_eq!(read.json["orderId"], id.to_string());
    assert!(
        read.header("x-request-id").is_some_and(|v| !v.is_empty()),
        "generated"
    );

    // Bad or missing token: 401 from the gateway itself, still with rate-limit headers.
    for token in [Some("not.a.token"), None] {
        let mut request = http.get(url(&g, "/api/v1/orders"));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        let r = Resp::from(request.send().await).await;
        r.expect_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
        assert!(
            r.header("www-authenticate")
                .is_some_and(|c| c.contains("invalid_token")),
            "{r}"
        );
        assert!(r.header("ratelimit-remaining").is_some(), "{r}");
    }
    // A valid token without a role: the service's 403 comes through.
    let r = Resp::from(
        http.get(url(&g, "/api/v1/orders"))
            .bearer_auth(realm.token("noroles").await)
            .send()
            .await,
    )
    .await;
    r.expect_problem(StatusCode::FORBIDDEN, "forbidden");

    // Too large a body: 413 at the gateway.
    let big = json!({"customerId": me, "currency": "USD", "items": [], "pad": "x".repeat(4096)});
    let r = Resp::from(
        http.post(url(&g, "/api/v1/orders"))
            .bearer_auth(&customer)
            .json(&big)
            .send()
            .await,
    )
    .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{r}");

    // The OpenAPI document of the services.
    let doc = Resp::from(http.get(url(&g, "/api/v1/openapi.json")).send().await).await;
    doc.expect(StatusCode::OK);
    assert!(doc.json["paths"]["/api/v1/orders"].is_object(), "{doc}");

    // CORS: the allowed origin gets its preflight, another gets nothing.
    let preflight = |origin: &str| {
        http.request(Method::OPTIONS, url(&g, "/api/v1/orders"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .send()
    };
    let allowed = Resp::from(preflight("https://app.example.test").await).await;
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://app.example.test"),
        "{allowed}"
    );
    let other = Resp::from(preflight("https://evil.example").await).await;
    assert!(
        other.header("access-control-allow-origin").is_none(),
        "{other}"
    );
    realm.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_budget_through_redis() {
    let realm = TestRealm::create().await;
    let server = serve_trusting(&realm.issuer).await;
    let redis = redis_url();
    let p = prefix();
    let budget = 30;
    let flags = [
        "--redis-url",
        &redis,
        "--redis-prefix",
        &p,
        "--rate-limit",
        "customer=30/1h",
    ];
    let replicas = [
        gateway(&server.base, &realm.issuer, &flags).await,
        gateway(&server.base, &realm.issuer, &flags).await,
    ];
    let customer = realm.token("customer1").await;
    let http = reqwest::Client::new();
    let urls: Vec<String> = replicas
        .iter()
        .map(|g| url(g, "/api/v1/orders?limit=1"))
        .collect();

    // 3× the budget, 10 at a time, alternating replicas.
    let mut admitted = 0;
    let mut limited = 0;
    let total = 3 * budget;
    for wave in 0..(total / 10) {
        let mut requests = Vec::new();
        for i in 0..10 {
            let target = urls[(wave * 10 + i) % 2].clone();
            requests.push(http.get(target).bearer_auth(&customer).send());
        }
        for r in futures::future::join_all(requests).await {
            let r = Resp::from(r).await;
            match r.status {
                StatusCode::OK => admitted += 1,
                StatusCode::TOO_MANY_REQUESTS => {
                    limited += 1;
                    r.expect_problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
                    let retry: u64 = r
                        .header("retry-after")
                        .and_then(|v| v.parse().ok())
                        .expect("Retry-After");
                    assert!(retry >= 1, "{r}");
                    assert_eq!(r.header("ratelimit-remaining"), Some("0"), "{r}");
                    assert_eq!(r.header("ratelimit-limit"), Some("30"), "{r}");
                }
                _ => panic!("unexpected answer: {r}"),
            }
        }
    }
    assert_eq!(admitted + limited, total);
    let low = budget * 9 / 10;
    let high = budget * 11 / 10;
    assert!(
        (low..=high).contains(&admitted),
        "admitted {admitted} of {total}, budget {budget} shared by two replicas"
    );
    assert!(replicas.iter().all(|g| !g.rate_limit_fallback()));
    realm.delete().await;
}

/// A TCP forwarder in front of Redis that the test can cut and restore.
struct Cuttable {
    port: u16,
    up: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Cuttable {
    async fn start(target: String) -> Cuttable {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let (flag, list) = (up.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !flag.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let target = target.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                list.lock().unwrap().push(task);
            }
        });
        Cuttable {
            port,
            up,
            connections,
        }
    }
    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for task in self.connections.lock().unwrap().drain(..) {
            task.abort();
        }
    }
    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_falls_back_to_memory_and_redis_back_is_used_again() {
    let realm = TestRealm::create().await;
    let server = serve_trusting(&realm.issuer).await;
    let real = redis_url();
    let target = real
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let proxy = Cuttable::start(target).await;
    let via_proxy = format!("redis://127.0.0.1:{}/0", proxy.port);
    let p = prefix();
    let g = gateway(
        &server.base,
        &realm.issuer,
        &[
            "--redis-url",
            &via_proxy,
            "--redis-prefix",
            &p,
            "--rate-limit",
            "customer=20/1h",
        ],
    )
    .await;
    let customer = realm.token("customer1").await;
    let http = reqwest::Client::new();
    let get = || async {
        Resp::from(
            http.get(url(&g, "/api/v1/orders?limit=1"))
                .bearer_auth(&customer)
                .send()
                .await,
        )
        .await
    };

    for expected in (15..20).rev() {
        let r = get().await;
        r.expect(StatusCode::OK);
        assert_eq!(
            r.header("ratelimit-remaining"),
            Some(expected.to_string().as_str()),
            "from Redis: {r}"
        );
    }
    assert!(!g.rate_limit_fallback());

    proxy.cut();
    // Still served, now from this replica's memory (its own full budget of 20).
    let mut admitted = 0;
    for _ in 0..25 {
        let r = get().await;
        assert!(
            matches!(r.status, StatusCode::OK | StatusCode::TOO_MANY_REQUESTS),
            "never a 5xx: {r}"
        );
        assert!(r.header("ratelimit-limit").is_some(), "{r}");
        if r.status == StatusCode::OK {
            admitted += 1;
        }
    }
    assert!(g.rate_limit_fallback(), "in fallback while Redis is cut");
    assert!(
        (19..=21).contains(&admitted),
        "the in-memory budget applies: {admitted}"
    );
    let metrics = http
        .get(url(&g, "/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("order_platform_gateway_ratelimit_fallback"),
        "the gauge is exported"
    );

    proxy.restore();
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let mut back = None;
    for _ in 0..20 {
        let r = get().await;
        if !g.rate_limit_fallback() {
            back = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let r = back.expect("back on Redis within a few seconds");
    r.expect(StatusCode::OK);
    assert_eq!(
        r.header("ratelimit-remaining"),
        Some("14"),
        "Redis's budget continues where it was: {r}"
    );
    realm.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_is_down_is_a_quick_503_with_retry_after() {
    let issuer = order_oidc::testing::MockIssuer::start().await;
    // Nothing listens on a port we just released.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let g = gateway(&closed, issuer.issuer(), &[]).await;
    let http = reqwest::Client::new();
    let token = issuer.token("ops-1", &["ops"]);
    let started = std::time::Instant::now();
    for (method, key) in [
        (Method::GET, None),
        (Method::POST, None),
        (Method::POST, Some("k-1")),
    ] {
        let mut request = http
            .request(method.clone(), url(&g, "/api/v1/orders"))
            .bearer_auth(&token);
        if let Some(k) = key {
            request = request.header("idempotency-key", k);
        }
        if method == Method::POST {
            request = request.json(&json!({}));
        }
        let r = Resp::from(request.send().await).await;
        r.expect_problem(StatusCode::SERVICE_UNAVAILABLE, "upstream_unavailable");
        assert_eq!(r.header("retry-after"), Some("1"), "{r}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "never a hang: {:?}",
        started.elapsed()
    );
}
