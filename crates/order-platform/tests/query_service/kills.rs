//! `order-platform query-service` as a process, SIGKILLed at random points while commands
//! flow and restarted: once it has caught up (a query with the last command's token), every
//! order and the stats read from Elasticsearch through Kafka equal what the embedded read
//! model of `serve` answers for the same events: nothing lost, nothing applied twice.

use crate::harness::{Http, Stack};
use crate::support::{item, order_body, order_platform};
use order_auth::Role;
use reqwest::{Method, StatusCode};
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// A query-service process, killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns the query service of `stack` and returns it with its address.
async fn spawn(stack: &Stack) -> (Process, String) {
    let mut child = Process(
        order_platform()
            .args(["query-service", "--listen", "127.0.0.1:0"])
            .args(stack.query_flags())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn query-service"),
    );
    let stdout = child.0.stdout.take().unwrap();
    let banner = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await
    .unwrap()
    .unwrap();
    let address = banner
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {banner:?}"))
        .to_string();
    (child, address)
}

/// A pause of up to `max_ms`, different every time.
fn random_pause(max_ms: u64) -> Duration {
    Duration::from_millis((Uuid::new_v4().as_u128() % u128::from(max_ms)) as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_service_killed_at_random_points_ends_equal_to_the_embedded_read_model() {
    let stack = Stack::start().await;
    let ops = stack.token("ops1", Role::Ops);
    let commands = Http::new(stack.serve.addr());
    let (mut child, mut address) = spawn(&stack).await;
    let mut ids = Vec::new();
    for round in 0..4 {
        for n in 0..8 {
            let customer = format!("customer-{}", n % 3);
            let body = order_body(&customer, "EUR", &[("A-1", "Blue mug", 1, "2.50")]);
            let (status, _, created) = commands
                .call(Method::POST, "/api/v1/orders", &ops, &[], Some(&body))
                .await;
            assert_eq!(status, StatusCode::CREATED, "{created}");
            let id = created["orderId"].as_str().unwrap().to_string();
            let line = item(&format!("B-{round}-{n}"), "Red kettle", 2, "4.00");
            let path = format!("/api/v1/orders/{id}/items");
            let (status, _, _) = commands
                .call(Method::POST, &path, &ops, &[], Some(&line))
                .await;
            assert_eq!(status, StatusCode::OK);
            if n % 3 == 0 {
                let path = format!("/api/v1/orders/{id}/approve");
                let (status, _, _) = commands
                    .call(Method::POST, &path, &ops, &[], Some(&serde_json::json!({})))
                    .await;
                assert_eq!(status, StatusCode::OK);
            }
            ids.push(id);
        }
        tokio::time::sleep(random_pause(400)).await;
        if round < 3 {
            // SIGKILL: no graceful anything.
            drop(child);
            (child, address) = spawn(&stack).await;
        }
    }
    // One last write; its token covers every write before it.
    let (status, answer, _) = commands
        .call(
            Method::POST,
            &format!("/api/v1/orders/{}/cancel", ids[1]),
            &ops,
            &[],
            Some(&serde_json::json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let token = answer["x-consistency-token"].to_str().unwrap().to_string();

    let queries = Http::new(&address);
    let deadline = Instant::now() + Duration::from_secs(60);
    while queries
        .call(Method::GET, "/health/ready", "", &[], None)
        .await
        .0
        != StatusCode::OK
    {
        assert!(
            Instant::now() < deadline,
            "the restarted query service never got ready"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let covered = [
        ("X-Consistency-Token", token.as_str()),
        ("X-Consistency-Timeout-Ms", "30000"),
    ];
    for id in &ids {
        let path = format!("/api/v1/orders/{id}");
        let (status, _, from_kafka) = queries.call(Method::GET, &path, &ops, &covered, None).await;
        assert_eq!(status, StatusCode::OK, "{from_kafka}");
        let (_, _, embedded) = commands
            .call(Method::GET, &path, &ops, &covered, None)
            .await;
        assert_eq!(from_kafka, embedded, "order {id}");
    }
    let stats = "/api/v1/orders/stats";
    let (_, _, from_kafka) = queries.call(Method::GET, stats, &ops, &covered, None).await;
    let (_, _, embedded) = commands
        .call(Method::GET, stats, &ops, &covered, None)
        .await;
    assert_eq!(from_kafka, embedded);
    let (_, _, letters) = queries
        .call(
            Method::GET,
            "/api/v1/admin/dead-letters",
            &stack.token("root", Role::Admin),
            &[],
            None,
        )
        .await;
    assert_eq!(letters, serde_json::json!([]), "nothing dead-lettered");
    drop(child);
    stack.stop().await;
}
