//! What the gateway does when a service behind it misbehaves, against fake
//! upstreams that count the connections they receive: a request is retried
//! only when it is idempotent and got no answer at all, a bounded number of
//! times and within a shared budget; a slow service is a 503 at the route's
//! deadline, never a hang and never a retry.

use async_trait::async_trait;
use order_auth::{AuthError, Principal, Role, TokenVerifier};
use order_gateway::{Budgets, Gateway, GatewayConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// Accepts the one token `"ops"`.
struct OneToken;

#[async_trait]
impl TokenVerifier for OneToken {
    async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        match token {
            "ops" => Ok(Principal {
                subject: "ops-1".into(),
                roles: [Role::Ops].into_iter().collect(),
            }),
            _ => Err(AuthError::Malformed),
        }
    }
}

/// How a fake upstream treats each connection.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Reads the request, then closes the connection without a word.
    HangUp,
    /// Reads the request and never answers.
    Silent,
}

/// A fake upstream counting the connections it accepted.
struct Upstream {
    base: String,
    connections: Arc<AtomicUsize>,
}

impl Upstream {
    async fn start(behaviour: Behaviour) -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buffer = [0u8; 4096];
                    let _ = socket.read(&mut buffer).await;
                    if let Behaviour::Silent = behaviour {
                        tokio::time::sleep(Duration::from_secs(120)).await;
                    }
                });
            }
        });
        Upstream { base, connections }
    }

    fn attempts(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

async fn gateway(upstream: &Upstream, timeout: Duration, retries: u32) -> Gateway {
    gateway_with(upstream, timeout, retries, 512).await
}

async fn gateway_with(
    upstream: &Upstream,
    timeout: Duration,
    retries: u32,
    max_in_flight: usize,
) -> Gateway {
    Gateway::start(GatewayConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        command_url: upstream.base.clone(),
        query_url: upstream.base.clone(),
        verifier: Arc::new(OneToken),
        budgets: Budgets::default(),
        redis_url: None,
        redis_prefix: "test".into(),
        body_limit: 1024 * 1024,
        command_timeout: timeout,
        query_timeout: timeout,
        retries,
        max_in_flight,
        cors_origins: Vec::new(),
        hsts: false,
        pages: axum::Router::new(),
    })
    .await
    .expect("start the gateway")
}

/// Sends one request through `g` and returns (status, code, Retry-After).
async fn send(
    g: &Gateway,
    method: reqwest::Method,
    key: Option<&str>,
) -> (u16, String, Option<String>) {
    let http = reqwest::Client::new();
    let mut request = http
        .request(method.clone(), format!("http://{}/api/v1/orders", g.addr()))
        .bearer_auth("ops")
        .timeout(Duration::from_secs(30));
    if let Some(k) = key {
        request = request.header("idempotency-key", k);
    }
    if method == reqwest::Method::POST {
        request = request.json(&serde_json::json!({}));
    }
    let response = request.send().await.expect("the gateway answers");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    (
        status,
        body["code"].as_str().unwrap_or_default().to_string(),
        retry_after,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_idempotent_requests_are_retried_and_at_most_retries_times() {
    let upstream = Upstream::start(Behaviour::HangUp).await;
    let g = gateway(&upstream, Duration::from_secs(10), 2).await;
    let cases = [
        ("GET", reqwest::Method::GET, None, 3),
        (
            "POST with Idempotency-Key",
            reqwest::Method::POST,
            Some("k-1"),
            3,
        ),
        ("POST without a key", reqwest::Method::POST, None, 1),
    ];
    for (what, method, key, expected) in cases {
        let before = upstream.attempts();
        let (status, code, retry_after) = send(&g, method, key).await;
        assert_eq!(
            (status, code.as_str()),
            (503, "upstream_unavailable"),
            "{what}"
        );
        assert_eq!(retry_after.as_deref(), Some("1"), "{what}");
        assert_eq!(upstream.attempts() - before, expected, "{what}: attempts");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_stay_within_the_shared_budget_while_a_service_is_down() {
    let upstream = Upstream::start(Behaviour::HangUp).await;
    let g = gateway(&upstream, Duration::from_secs(10), 2).await;
    let requests = 100;
    for _ in 0..requests {
        let (status, _, _) = send(&g, reqwest::Method::GET, None).await;
        assert_eq!(status, 503);
    }
    let attempts = upstream.attempts();
    // Without a budget: 3 per request (300). With it: the initial 10 retries,
    // plus a fifth of a retry per request.
    assert!(
        attempts <= requests + 10 + requests / 5 + 1,
        "{attempts} upstream attempts for {requests} requests"
    );
    assert!(attempts > requests, "some retries were made: {attempts}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_service_is_a_503_at_the_deadline_and_is_not_retried() {
    let upstream = Upstream::start(Behaviour::Silent).await;
    let g = gateway(&upstream, Duration::from_millis(500), 2).await;
    for (what, method, key) in [
        ("query", reqwest::Method::GET, None),
        ("command", reqwest::Method::POST, None),
        ("idempotent command", reqwest::Method::POST, Some("k-2")),
    ] {
        let before = upstream.attempts();
        let started = Instant::now();
        let (status, code, retry_after) = send(&g, method, key).await;
        assert_eq!((status, code.as_str()), (503, "upstream_timeout"), "{what}");
        assert_eq!(retry_after.as_deref(), Some("1"), "{what}");
        assert_eq!(upstream.attempts() - before, 1, "{what}: not retried");
        // Bounded by the deadline, not by the upstream (which never answers).
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{what}: a hang"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_its_in_flight_cap_the_gateway_refuses_at_once() {
    let upstream = Upstream::start(Behaviour::Silent).await;
    let g = Arc::new(gateway_with(&upstream, Duration::from_secs(20), 0, 2).await);
    // Two requests held by the silent service fill the slots.
    let held: Vec<_> = (0..2)
        .map(|_| {
            let g = g.clone();
            tokio::spawn(async move { send(&g, reqwest::Method::GET, None).await })
        })
        .collect();
    while upstream.attempts() < 2 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    let (status, code, retry_after) = send(&g, reqwest::Method::GET, None).await;
    assert_eq!((status, code.as_str()), (503, "overloaded"));
    assert!(retry_after.is_some(), "Retry-After");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "refused, not queued"
    );
    assert_eq!(
        upstream.attempts(),
        2,
        "the refused request never went upstream"
    );
    // The operational endpoints stay outside the cap.
    let live = reqwest::get(format!("http://{}/health/live", g.addr()))
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    for h in held {
        h.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_go_to_the_command_service_queries_and_admin_routes_to_the_query_service() {
    let command = Upstream::start(Behaviour::HangUp).await;
    let query = Upstream::start(Behaviour::HangUp).await;
    let g = Gateway::start(GatewayConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        command_url: command.base.clone(),
        query_url: query.base.clone(),
        verifier: Arc::new(OneToken),
        budgets: Budgets::default(),
        redis_url: None,
        redis_prefix: "test".into(),
        body_limit: 1024 * 1024,
        command_timeout: Duration::from_secs(5),
        query_timeout: Duration::from_secs(5),
        retries: 0,
        max_in_flight: 64,
        cors_origins: Vec::new(),
        hsts: false,
        pages: axum::Router::new(),
    })
    .await
    .expect("start the gateway");
    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str| {
        http.request(method, format!("http://{}{path}", g.addr()))
            .bearer_auth("ops")
            .json(&serde_json::json!({}))
            .send()
    };
    call(reqwest::Method::POST, "/api/v1/orders").await.unwrap();
    assert_eq!((command.attempts(), query.attempts()), (1, 0));
    call(reqwest::Method::GET, "/api/v1/orders").await.unwrap();
    assert_eq!((command.attempts(), query.attempts()), (1, 1));
    call(reqwest::Method::POST, "/api/v1/admin/dead-letters/replay")
        .await
        .unwrap();
    call(reqwest::Method::POST, "/api/v1/admin/projections/rebuild")
        .await
        .unwrap();
    assert_eq!((command.attempts(), query.attempts()), (1, 3));
}
