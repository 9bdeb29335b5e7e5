//! `order-platform gateway` as a process in front of the production split:
//! an `order-platform command-service` process for commands and an
//! `order-platform serve` process (on the same PostgreSQL event store) standing
//! in for the query service. Tokens: the built-in key of serve's data dir,
//! which all three trust (Keycloak and Redis are the e2e tests' business).

use crate::spawned::Spawned;
use crate::support::{Backend, Options, Resp, Server, TestDatabase, order_body, order_platform};
use reqwest::StatusCode;
use std::time::Duration;

/// Whether `/metrics` text counts an answer of `method` with `status`.
fn answered(metrics: &str, method: &str, status: &str) -> bool {
    metrics.lines().any(|l| {
        l.starts_with("order_platform_http_requests_total")
            && l.contains(&format!("method=\"{method}\""))
            && l.contains(&format!("status=\"{status}\""))
    })
}

/// The trace ids of the `POST` access lines in a process's JSON log, in order.
fn answered_trace_ids(log: &str) -> Vec<Option<String>> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["message"] == "answered" && line["method"] == "POST")
        .map(|line| line["trace_id"].as_str().map(str::to_string))
        .collect()
}

fn answered_trace_id(log: &str) -> Option<String> {
    answered_trace_ids(log).into_iter().next().flatten()
}

async fn metrics(http: &reqwest::Client, base: &str) -> String {
    http.get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_routes_commands_and_queries_to_their_services_and_serves_its_pages() {
    let db = TestDatabase::create().await;
    let mut options = Options::new(Backend::Sqlite);
    options.extra_args = vec!["--database-url".into(), db.url.clone()];
    let queries = Server::start_process_with(options).await;
    let data_dir = queries.data_dir().to_str().expect("utf-8").to_string();
    let commands = Spawned::start(
        "command-service",
        &[
            "command-service",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &db.url,
            "--data-dir",
            &data_dir,
        ],
    )
    .await;
    let mut gateway = Spawned::start(
        "gateway",
        &[
            "gateway",
            "--listen",
            "127.0.0.1:0",
            "--command-url",
            &commands.base,
            "--query-url",
            &queries.base,
            "--data-dir",
            &data_dir,
        ],
    )
    .await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    gateway.ready(&http).await;

    let customer = queries.token("alice", &["customer"]);
    let created = Resp::from(
        http.post(gateway.url("/api/v1/orders"))
            .bearer_auth(&customer)
            .json(&order_body("alice", "USD", &[("SKU-1", "Mug", 2, "3.00")]))
            .send()
            .await,
    )
    .await;
    created.expect(StatusCode::CREATED);
    let id = created.order_id();
    // No traceparent was sent and no exporter runs: the gateway starts a trace id, and
    // its access line and the command service's carry the same one.
    let gateway_trace = answered_trace_id(&gateway.log());
    assert!(
        gateway_trace.as_ref().is_some_and(|t| t.len() == 32),
        "the gateway's access line has a trace id: {}",
        gateway.log()
    );
    assert_eq!(answered_trace_id(&commands.log()), gateway_trace);
    // Called directly, with no traceparent either, the service starts a trace id of its own.
    let direct = Resp::from(
        http.post(commands.url("/api/v1/orders"))
            .bearer_auth(&customer)
            .json(&order_body("alice", "USD", &[("SKU-2", "Cup", 1, "2.00")]))
            .send()
            .await,
    )
    .await;
    direct.expect(StatusCode::CREATED);
    let traces = answered_trace_ids(&commands.log());
    assert_eq!(traces.len(), 2, "{}", commands.log());
    assert!(
        traces[1].as_ref().is_some_and(|t| t.len() == 32) && traces[1] != traces[0],
        "{traces:?}"
    );
    let read = Resp::from(
        http.get(gateway.url(&format!("/api/v1/orders/{id}")))
            .bearer_auth(&customer)
            .header("x-consistency-token", created.consistency_token())
            .header("x-consistency-timeout-ms", "20000")
            .send()
            .await,
    )
    .await;
    read.expect(StatusCode::OK);
    assert_eq!(read.json["totalAmount"], "6.00", "{read}");

    // The command went to the command service, the query to the query side.
    assert!(answered(
        &metrics(&http, &commands.base).await,
        "POST",
        "201"
    ));
    let query_side = metrics(&http, &queries.base).await;
    assert!(answered(&query_side, "GET", "200"), "{query_side}");
    assert!(!answered(&query_side, "POST", "201"), "{query_side}");

    // The pages and the merged document, with no token.
    for (path, kind) in [
        ("/", "text/html"),
        ("/api/docs", "text/html"),
        ("/api/docs/swagger-ui-bundle.js", "text/javascript"),
        ("/api/v1/openapi.json", "application/json"),
    ] {
        let r = Resp::from(http.get(gateway.url(path)).send().await).await;
        r.expect(StatusCode::OK);
        assert!(
            r.header("content-type")
                .is_some_and(|t| t.starts_with(kind)),
            "{path}: {r}"
        );
    }
    let doc = Resp::from(http.get(gateway.url("/api/v1/openapi.json")).send().await).await;
    for path in [
        "/api/v1/orders",
        "/api/v1/orders/search",
        "/api/v1/orders/{id}/cancel",
    ] {
        assert!(
            doc.json["paths"][path].is_object(),
            "{path} in the document"
        );
    }
    assert!(doc.json["components"]["schemas"]["Problem"].is_object());
    let description = doc.json["info"]["description"].as_str().unwrap_or_default();
    assert!(
        description.contains("rate_limited") && description.contains("upstream_timeout"),
        "the gateway's own answers are described: {description}"
    );

    let status = gateway.terminate(Duration::from_secs(25)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        gateway.log()
    );
}

#[test]
fn the_gateway_documents_its_options_and_names_a_missing_setting() {
    let (ok, help, _) = crate::run(&["gateway", "--help"]);
    assert!(ok);
    for option in [
        "--command-url",
        "--query-url",
        "--oidc-issuer",
        "--data-dir",
        "--redis-url",
        "--rate-limit",
        "--command-timeout",
        "--query-timeout",
        "--retries",
        "--cors-allow-origin",
    ] {
        assert!(help.contains(option), "{option} in --help:\n{help}");
    }
    let out = order_platform()
        .args(["gateway", "--query-url", "http://127.0.0.1:1"])
        .output()
        .expect("run gateway");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "a usage error: {stderr}");
    assert!(
        stderr.contains("--command-url") && stderr.contains("ORDER_PLATFORM_COMMAND_URL"),
        "{stderr}"
    );
}
