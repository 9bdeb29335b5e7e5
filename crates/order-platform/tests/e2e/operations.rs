//! Operational endpoints: health, metrics, and an OpenAPI document that lists
//! exactly the served routes. (The command line is tested in the `process`
//! binary.)

use crate::support::{Backend, Resp, Server};
use reqwest::{Method, StatusCode};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_need_no_token() {
    let server = Server::start(Backend::Sqlite).await;
    let live = Resp::from(
        server
            .request(Method::GET, "/health/live", None)
            .send()
            .await,
    )
    .await;
    live.expect(StatusCode::OK);
    let ready = Resp::from(
        server
            .request(Method::GET, "/health/ready", None)
            .send()
            .await,
    )
    .await;
    ready.expect(StatusCode::OK);
    assert_eq!(ready.json["status"], "up", "{ready}");
    let checks = ready.json["checks"]
        .as_object()
        .unwrap_or_else(|| panic!("checks in {ready}"));
    assert!(!checks.is_empty(), "ready lists its checks: {ready}");
    assert!(checks.values().all(|c| c["status"] == "up"), "{ready}");
    assert!(
        checks.contains_key("eventStore") && checks.contains_key("readModel"),
        "{ready}"
    );

    // a command and a query, so both counters exist
    let ops = server.token("ops-1", &["ops"]);
    let id = server.new_order(&ops, "alice").await;
    server
        .get(&format!("/api/v1/orders/{id}/events"), &ops)
        .await
        .expect(StatusCode::OK);
    let metrics = Resp::from(server.request(Method::GET, "/metrics", None).send().await).await;
    metrics.expect(StatusCode::OK);
    assert!(
        metrics
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/plain")),
        "{metrics}"
    );
    for name in [
        "order_platform_http_requests_total",
        "order_platform_commands_total",
    ] {
        assert!(
            metrics.text.lines().any(|l| l.starts_with(name)),
            "/metrics exposes {name}:\n{}",
            metrics.text
        );
    }
    assert!(
        metrics
            .text
            .lines()
            .any(|l| l.starts_with("order_platform_commands_total")
                && l.contains("CreateOrder")
                && l.contains("accepted")),
        "the accepted CreateOrder is counted:\n{}",
        metrics.text
    );
}

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_exactly_the_served_routes() {
    let server = Server::start(Backend::Sqlite).await;
    let admin = server.token("admin-1", &["admin"]);
    let doc = Resp::from(
        server
            .request(Method::GET, "/api/v1/openapi.json", None)
            .send()
            .await,
    )
    .await;
    doc.expect(StatusCode::OK);
    assert!(
        doc.json["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with('3')),
        "an OpenAPI 3 document"
    );
    let paths = doc.json["paths"].as_object().expect("paths");
    let order = server.new_order(&admin, "alice").await;

    let mut documented = Vec::new();
    for (path, item) in paths {
        let concrete = path
            .replace("{id}", &order.to_string())
            .replace("{sku}", "SKU-1");
        assert!(!concrete.contains('{'), "unknown path parameter in {path}");
        for method in METHODS {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let r = Resp::from(
                server
                    .request(m.clone(), &concrete, Some(&admin))
                    .header("content-type", "application/json")
                    .body("{}")
                    .send()
                    .await,
            )
            .await;
            if item.get(method).is_some() {
                documented.push(format!("{} {path}", method.to_uppercase()));
                assert!(
                    r.status != StatusCode::METHOD_NOT_ALLOWED
                        && !(r.status == StatusCode::NOT_FOUND
                            && r.json["code"] == "route_not_found"),
                    "documented {m} {path} is served: {r}"
                );
                assert!(r.status.as_u16() < 500, "{m} {path}: {r}");
            } else {
                assert_eq!(
                    r.status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{m} {path} is not documented, so it is not served: {r}"
                );
            }
        }
    }
    for known in [
        "POST /api/v1/orders",
        "GET /api/v1/orders",
        "GET /api/v1/orders/search",
        "GET /api/v1/orders/stats",
        "GET /api/v1/orders/{id}",
        "GET /api/v1/orders/{id}/events",
        "GET /api/v1/orders/{id}/at",
        "POST /api/v1/orders/{id}/items",
        "DELETE /api/v1/orders/{id}/items/{sku}",
        "POST /api/v1/orders/{id}/approve",
        "POST /api/v1/orders/{id}/reject",
        "POST /api/v1/orders/{id}/ship",
        "POST /api/v1/orders/{id}/cancel",
    ] {
        assert!(
            documented.iter().any(|d| d == known),
            "{known} is documented: {documented:?}"
        );
    }
    // the security scheme the operations refer to is defined
    let schemes: &Value = &doc.json["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer", "{schemes}");
}
