//! `/health/ready` and `/metrics` say how far behind the projector is (§5, §7).

use crate::support::{Backend, Server};
use reqwest::StatusCode;
use std::time::Duration;

async fn reports_projector_lag(backend: Backend) {
    let server = Server::start(backend).await;
    let alice = server.token("alice", &["customer"]);
    server
        .create_order(&alice, "alice", &[("MUG-1", "Mug", 2, "3.00")])
        .await
        .expect(StatusCode::CREATED);

    // Once the lag watcher has measured the caught-up projector: 0 behind, reported.
    let ready = server
        .eventually(
            "projector caught up",
            "/health/ready",
            "",
            Duration::from_secs(20),
            |r| {
                let detail = &r.json["checks"]["projector"]["detail"];
                detail["eventsBehind"] == 0 && detail["position"].as_i64().unwrap_or(0) >= 1
            },
        )
        .await;
    ready.expect(StatusCode::OK);
    let projector = &ready.json["checks"]["projector"];
    assert_eq!(projector["status"], "up", "{ready}");
    assert_eq!(projector["detail"]["state"], "running", "{ready}");
    assert_eq!(projector["detail"]["secondsBehind"], 0.0, "{ready}");
    assert!(
        projector["detail"]["position"].as_i64().unwrap_or(0) >= 1,
        "{ready}"
    );

    let metrics = server.get("/metrics", "").await;
    for name in [
        "order_platform_projector_events_behind 0",
        "order_platform_projector_lag_seconds 0",
    ] {
        assert!(
            metrics.text.contains(name),
            "/metrics lacks {name:?}:\n{}",
            metrics.text
        );
    }
}

#[tokio::test]
async fn ready_reports_projector_lag_on_sqlite() {
    reports_projector_lag(Backend::Sqlite).await;
}

#[tokio::test]
async fn ready_reports_projector_lag_on_postgres() {
    reports_projector_lag(Backend::Postgres).await;
}
