//! `order-platform rebuild`: the Elasticsearch orders index rebuilt from a real
//! PostgreSQL event store, the alias moved, the old index kept or dropped.

use crate::support::{Backend, Server, order_platform};
use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

fn elasticsearch_url() -> String {
    std::env::var("ELASTICSEARCH_URL").expect(
        "ELASTICSEARCH_URL is not set: start the dev stack and run `eval \"$(dev/stack env)\"`",
    )
}

/// Deletes the test's indices when the test ends, however it ends.
struct Indices {
    prefix: String,
}

impl Drop for Indices {
    fn drop(&mut self) {
        let url = format!("{}/{}*", elasticsearch_url(), self.prefix);
        // Drop may run inside the test's runtime: use a thread with its own.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(async {
                    let _ = reqwest::Client::new().delete(&url).send().await;
                });
            }
        })
        .join();
    }
}

/// Runs `order-platform rebuild` with `args`; returns (exit code, stdout, stderr).
fn rebuild(args: &[&str]) -> (Option<i32>, String, String) {
    admin("rebuild", args)
}

/// Runs `order-platform <command>` with `args`; returns (exit code, stdout, stderr).
fn admin(command: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let out = order_platform()
        .arg(command)
        .args(args)
        .env_remove("ORDER_PLATFORM_DATABASE_URL")
        .env_remove("ORDER_PLATFORM_ELASTICSEARCH_URL")
        .output()
        .expect("run order-platform rebuild");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn es_get(path: &str) -> (u16, Value) {
    let answer = reqwest::get(format!("{}{path}", elasticsearch_url()))
        .await
        .expect("reach Elasticsearch");
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn rebuild_fills_the_next_index_from_the_event_store_and_moves_the_alias() {
    let server = Server::start(Backend::Postgres).await;
    let token = server.token("rebuild-customer", &["customer"]);
    let mut orders = Vec::new();
    for _ in 0..3 {
        orders.push(server.new_order(&token, "rebuild-customer").await);
    }
    let approver = server.token("rebuild-ops", &["ops"]);
    let approved = server
        .post(
            &format!("/api/v1/orders/{}/approve", orders[0]),
            &approver,
            &serde_json::json!({}),
        )
        .await;
    approved.expect(StatusCode::OK);

    let database = &server.database.as_ref().expect("a PostgreSQL server").url;
    let indices = Indices {
        prefix: format!("test-{}-", Uuid::new_v4().simple()),
    };
    let es = elasticsearch_url();
    let args = [
        "--database-url",
        database.as_str(),
        "--elasticsearch-url",
        es.as_str(),
        "--es-index-prefix",
        indices.prefix.as_str(),
    ];
    let (code, stdout, stderr) = rebuild(&args);
    assert_eq!(code, Some(0), "stdout: {stdout}\nstderr: {stderr}");
    // The first run finds the empty index `open` created and replaces it.
    let new = format!("{}orders_v2", indices.prefix);
    assert!(
        stdout.contains(&format!("rebuilt {new} from 4 events")),
        "{stdout}"
    );
    assert!(
        stdout.contains("kept ") && stdout.contains("orders_v1"),
        "{stdout}"
    );

    let alias = format!("{}orders", indices.prefix);
    let (_, aliased) = es_get(&format!("/_alias/{alias}")).await;
    assert_eq!(
        aliased
            .as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>()),
        Some(vec![new.clone()]),
        "{aliased}"
    );
    let (_, count) = es_get(&format!("/{alias}/_count")).await;
    assert_eq!(count["count"], 3, "{count}");
    let (status, doc) = es_get(&format!("/{alias}/_doc/{}", orders[0])).await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(
        doc["_version"], 2,
        "the approved order at its stream version: {doc}"
    );

    // Again with --drop-old: v3 serves, v2 is gone, v1 (kept before) stays.
    let with_drop: Vec<&str> = args.iter().copied().chain(["--drop-old"]).collect();
    let (code, stdout, stderr) = rebuild(&with_drop);
    assert_eq!(code, Some(0), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains(&format!("dropped {new}")), "{stdout}");
    let (status, _) = es_get(&format!("/{new}")).await;
    assert_eq!(status, 404, "{new} should have been dropped");
    let (_, count) = es_get(&format!("/{alias}/_count")).await;
    assert_eq!(count["count"], 3, "{count}");

    // verify: the index is the replay of the store; a lost document is found.
    let (code, stdout, stderr) = admin("verify", &args);
    assert_eq!(code, Some(0), "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stdout.contains("3 orders in the event store, 3 documents")
            && stdout.contains("missing=0 stale=0 duplicated=0"),
        "{stdout}"
    );
    let deleted = reqwest::Client::new()
        .delete(format!("{es}/{alias}/_doc/{}?refresh=true", orders[1]))
        .send()
        .await
        .expect("delete a document");
    assert!(deleted.status().is_success(), "{deleted:?}");
    let (code, stdout, stderr) = admin("verify", &args);
    assert_eq!(code, Some(1), "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stdout.contains("missing=1 stale=0 duplicated=0"),
        "{stdout}"
    );
    assert!(stdout.contains(&orders[1].to_string()), "{stdout}");
    assert!(stderr.contains("differs from a replay"), "{stderr}");
}

#[test]
fn rebuild_names_the_settings_it_needs() {
    let (code, _, stderr) = rebuild(&[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("rebuild needs --database-url (or ORDER_PLATFORM_DATABASE_URL"),
        "{stderr}"
    );
    let (code, _, stderr) = rebuild(&["--database-url", "postgres://127.0.0.1:1/x"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--elasticsearch-url"), "{stderr}");
}
