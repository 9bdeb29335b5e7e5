//! `kill -9` in the middle of a write load, then a restart on the same data
//! dir (and database): nothing acknowledged is lost, versions continue, the
//! read model catches up by itself and applies no event twice.

use crate::support::{Backend, Server, item, order_body};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

const TASKS: usize = 4;
const CATCH_UP: Duration = Duration::from_secs(60);

/// Highest acknowledged version per order.
type Acks = Arc<Mutex<BTreeMap<Uuid, u64>>>;

/// Creates orders and adds items until a request fails (the server died).
async fn writer(task: usize, client: reqwest::Client, base: String, token: String, acks: Acks) {
    let mut n = 0;
    loop {
        let body = order_body(
            &format!("cust-{task}"),
            "USD",
            &[("S-0", "Seed", 1, "1.00")],
        );
        let Ok(r) = client
            .post(format!("{base}/api/v1/orders"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
        else {
            return;
        };
        if r.status() != StatusCode::CREATED {
            return;
        }
        let Ok(created) = r.json::<Value>().await else {
            return;
        };
        let Some(id) = created["orderId"]
            .as_str()
            .and_then(|s| s.parse::<Uuid>().ok())
        else {
            return;
        };
        acks.lock().unwrap().insert(id, 1);
        for i in 1..=3 {
            n += 1;
            let line = item(&format!("S-{i}"), "Part", 1, &format!("{}.00", 1 + n % 7));
            let Ok(r) = client
                .post(format!("{base}/api/v1/orders/{id}/items"))
                .bearer_auth(&token)
                .json(&line)
                .send()
                .await
            else {
                return;
            };
            if r.status() != StatusCode::OK {
                // a write conflict cannot happen (one writer per order); anything else ends the task
                return;
            }
            let Ok(v) = r.json::<Value>().await else {
                return;
            };
            if let Some(version) = v["version"].as_u64() {
                let mut acks = acks.lock().unwrap();
                let entry = acks.entry(id).or_insert(0);
                *entry = (*entry).max(version);
            }
        }
    }
}

async fn event_versions(server: &Server, token: &str, id: Uuid) -> Vec<u64> {
    let r = server
        .get(&format!("/api/v1/orders/{id}/events"), token)
        .await;
    r.expect(StatusCode::OK);
    r.json["events"]
        .as_array()
        .unwrap_or_else(|| panic!("events of {id}: {r}"))
        .iter()
        .map(|e| e["version"].as_u64().unwrap_or_default())
        .collect()
}

/// Every order of the read model, once it covers `consistency`.
async fn all_orders(server: &Server, token: &str, consistency: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/api/v1/orders?limit=200&sort=createdAt:asc".to_string();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = server.get_after(&path, token, consistency).await;
        page.expect(StatusCode::OK);
        out.extend(page.json["items"].as_array().cloned().unwrap_or_default());
        match page.json["nextCursor"].as_str() {
            Some(c) => {
                cursor = Some(
                    c.replace('+', "%2B")
                        .replace('/', "%2F")
                        .replace('=', "%3D"),
                )
            }
            None => return out,
        }
    }
}

fn cents(amount: &str) -> i64 {
    let (units, fraction) = amount.split_once('.').unwrap_or((amount, "00"));
    units.parse::<i64>().expect("units") * 100 + fraction.parse::<i64>().expect("cents")
}

async fn crash_and_recover(backend: Backend) {
    let mut server = Server::start_process(backend).await;
    let ops = server.token("ops-1", &["ops"]);
    // a consistency token from before the crash must stay valid after it
    let before = server
        .create_order(&ops, "early", &[("E-0", "Early", 1, "1.00")])
        .await;
    before.expect(StatusCode::CREATED);
    let acks: Acks = Arc::default();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            tokio::spawn(writer(
                t,
                server.client.clone(),
                server.base.clone(),
                ops.clone(),
                acks.clone(),
            ))
        })
        .collect();
    // let the load run, then kill the server under it
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    while acks.lock().unwrap().len() < 8 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the load made no progress in 30s:\n{}",
            server.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.kill_9();
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(40), t)
            .await
            .expect("writers stop once the server is gone")
            .expect("writer task");
    }
    let acks = acks.lock().unwrap().clone();

    server.restart().await;
    let ops = server.token("ops-1", &["ops"]);

    let early = server
        .get_after(
            &format!("/api/v1/orders/{}", before.order_id()),
            &ops,
            &before.consistency_token(),
        )
        .await;
    early.expect(StatusCode::OK);
    assert_eq!(
        early.json, before.json,
        "a token from before the crash is honoured after it"
    );

    // every acknowledged write survived; versions are contiguous from 1
    let mut event_counts = BTreeMap::new();
    for (id, acked) in &acks {
        let versions = event_versions(&server, &ops, *id).await;
        assert_eq!(
            versions,
            (1..=versions.len() as u64).collect::<Vec<_>>(),
            "contiguous versions of {id}"
        );
        assert!(
            versions.len() as u64 >= *acked,
            "order {id}: acknowledged version {acked} lost (has {})",
            versions.len()
        );
        event_counts.insert(*id, versions.len() as u64);
    }

    // the read model catches up by itself: every order at its event count
    for (id, count) in &event_counts {
        let r = server
            .eventually(
                &format!("read model of {id} at version {count}"),
                &format!("/api/v1/orders/{id}"),
                &ops,
                CATCH_UP,
                |r| r.status == StatusCode::OK && r.json["version"] == json!(count),
            )
            .await;
        let rebuilt = server
            .get(&format!("/api/v1/orders/{id}/at?version={count}"), &ops)
            .await;
        rebuilt.expect(StatusCode::OK);
        assert_eq!(
            r.json, rebuilt.json,
            "read model of {id} equals the replay of its events"
        );
    }

    // orders whose 201 was lost in the crash are there too, and exact; nothing
    // doubled. A write after the restart makes the listing cover the whole log.
    let marker = server
        .create_order(&ops, "marker", &[("M-0", "Marker", 1, "1.00")])
        .await;
    marker.expect(StatusCode::CREATED);
    let listed = all_orders(&server, &ops, &marker.consistency_token()).await;
    eprintln!(
        "{} orders acknowledged before the kill, {} in the read model after the restart",
        acks.len(),
        listed.len()
    );
    assert!(
        listed.len() > acks.len(),
        "every acknowledged order is listed"
    );
    let mut sum = 0;
    for order in &listed {
        let id: Uuid = order["orderId"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("orderId");
        let versions = event_versions(&server, &ops, id).await;
        // the listing may be older than the history only while catching up: wait for it
        let view = server
            .eventually(
                &format!("read model of {id}"),
                &format!("/api/v1/orders/{id}"),
                &ops,
                CATCH_UP,
                |r| r.json["version"] == json!(versions.len()),
            )
            .await;
        let total: i64 = view.json["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|l| cents(l["lineTotal"].as_str().expect("lineTotal")))
            .sum();
        assert_eq!(
            cents(view.json["totalAmount"].as_str().expect("total")),
            total,
            "consistent total: {view}"
        );
        assert_eq!(
            view.json["items"].as_array().map(Vec::len),
            Some(versions.len()),
            "one line per event (creation + one add each), none applied twice: {view}"
        );
        sum += total;
    }
    let stats = server
        .get_after("/api/v1/orders/stats", &ops, &marker.consistency_token())
        .await;
    stats.expect(StatusCode::OK);
    assert_eq!(
        stats.json["byStatus"]["CREATED"],
        json!(listed.len()),
        "{stats}"
    );
    assert_eq!(
        stats.json["byCurrency"]["USD"]["orderCount"],
        json!(listed.len()),
        "{stats}"
    );
    assert_eq!(
        cents(
            stats.json["byCurrency"]["USD"]["totalAmount"]
                .as_str()
                .expect("sum")
        ),
        sum,
        "{stats}"
    );

    // and the platform keeps working: versions continue where they were
    let (id, count) = event_counts
        .iter()
        .next()
        .map(|(i, c)| (*i, *c))
        .expect("an order");
    let r = server
        .post(&format!("/api/v1/orders/{id}/approve"), &ops, &json!({}))
        .await;
    r.expect(StatusCode::OK);
    assert_eq!(r.version(), count + 1);
    let seen = server
        .get_after(
            &format!("/api/v1/orders/{id}"),
            &ops,
            &r.consistency_token(),
        )
        .await;
    assert_eq!(seen.json["status"], "APPROVED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_nothing_on_sqlite() {
    crash_and_recover(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_nothing_on_postgres() {
    crash_and_recover(Backend::Postgres).await;
}
