//! A data dir's read model belongs to one event store (DESIGN.md §5): pointed
//! at another store it refuses to start unless told to rebuild, and tokens of
//! another store are refused.

use crate::support::{Backend, Server, TestDatabase};
use reqwest::StatusCode;
use serde_json::Value;
use std::process::Stdio;
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_read_model_fed_by_sqlite_refuses_postgres_until_rebuilt() {
    let mut server = Server::start_process(Backend::Sqlite).await;
    let alice = server.token("alice", &["customer"]);
    let items = [("MUG-1", "Mug", 1, "3.00")];
    let sqlite_order = server.create_order(&alice, "alice", &items).await;
    sqlite_order.expect(StatusCode::CREATED);
    let sqlite_token = sqlite_order.consistency_token();
    server.kill_9();

    // Same data dir, events now in PostgreSQL: refused, with the way out named.
    server.database = Some(TestDatabase::create().await);
    let mut refused = server
        .serve_command()
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = refused.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = refused.kill();
            panic!("serve started on a read model of another event store");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut refused.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(
        stderr.contains("another event store") || stderr.contains("built from event store"),
        "the refusal says why: {stderr}"
    );
    assert!(stderr.contains("--rebuild"), "and what to do: {stderr}");

    // With --rebuild it starts on PostgreSQL, with nothing of SQLite's left.
    server.options.extra_args = vec!["--rebuild".into()];
    server.restart().await;
    let ops = server.token("ops-1", &["ops"]);
    let old = format!("/api/v1/orders/{}", sqlite_order.order_id());
    server.get(&old, &ops).await.expect(StatusCode::NOT_FOUND);
    let listed = server.get("/api/v1/orders", &ops).await;
    let listed_items = listed.json["items"].as_array().cloned().unwrap_or_default();
    assert!(
        listed_items.is_empty(),
        "no SQLite order in the rebuilt read model: {listed}"
    );

    // A token from the SQLite store is another store's token now.
    let r = server
        .get_after("/api/v1/orders", &ops, &sqlite_token)
        .await;
    r.expect_problem(StatusCode::BAD_REQUEST, "foreign_consistency_token");

    // And a new order flows through PostgreSQL as usual, its token honoured.
    let created = server.create_order(&alice, "alice", &items).await;
    created.expect(StatusCode::CREATED);
    let path = format!("/api/v1/orders/{}", created.order_id());
    let read = server
        .get_after(&path, &alice, &created.consistency_token())
        .await;
    read.expect(StatusCode::OK);
    assert_eq!(
        read.json["orderId"],
        Value::String(created.order_id().to_string())
    );
}
