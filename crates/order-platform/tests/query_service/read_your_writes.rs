//! Read-your-writes through Kafka, in process: a query carrying a command's consistency
//! token sees that command's write (single order, list, stats, history), a token beyond
//! anything published is answered 503 `consistency_timeout`, another store's is a 400;
//! dead-letter admin routes are admins only; an admin's rebuild moves the alias and the
//! projector's later writes land in the new index.

use crate::harness::{Http, Stack};
use order_auth::Role;
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_with_a_token_sees_the_write_through_kafka() {
    let stack = Stack::start().await;
    let ops = stack.token("ops1", Role::Ops);
    let query = stack.start_query_service().await;
    let commands = Http::new(stack.serve.addr());
    let queries = Http::new(query.addr());

    let post = reqwest::Method::POST;
    let get = reqwest::Method::GET;
    let body = crate::support::order_body("alice", "USD", &[("SKU-1", "Blue mug", 2, "3.50")]);
    let (status, headers, created) = commands
        .call(post.clone(), "/api/v1/orders", &ops, &[], Some(&body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["orderId"].as_str().unwrap().to_string();
    let consistency = headers["x-consistency-token"].to_str().unwrap().to_string();
    let with_token = [
        ("X-Consistency-Token", consistency.as_str()),
        ("X-Consistency-Timeout-Ms", "30000"),
    ];
    let (status, _, order) = queries
        .call(
            get.clone(),
            &format!("/api/v1/orders/{id}"),
            &ops,
            &with_token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{order}");
    assert_eq!(order["version"], 1);

    // A second write, read back at once through every kind of query.
    let item =
        json!({"sku": "SKU-2", "productName": "Red kettle", "quantity": 1, "unitPrice": "10.00"});
    let (status, headers, _) = commands
        .call(
            post.clone(),
            &format!("/api/v1/orders/{id}/items"),
            &ops,
            &[],
            Some(&item),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let consistency = headers["x-consistency-token"].to_str().unwrap().to_string();
    let with_token = [
        ("X-Consistency-Token", consistency.as_str()),
        ("X-Consistency-Timeout-Ms", "30000"),
    ];
    let (status, _, order) = queries
        .call(
            get.clone(),
            &format!("/api/v1/orders/{id}"),
            &ops,
            &with_token,
            None,
        )
        .await;
    assert_eq!(
        (status, order["version"].clone()),
        (StatusCode::OK, json!(2))
    );
    let (status, _, page) = queries
        .call(
            get.clone(),
            "/api/v1/orders?customerId=alice",
            &ops,
            &with_token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["items"][0]["version"], 2, "{page}");
    let (status, _, stats) = queries
        .call(get.clone(), "/api/v1/orders/stats", &ops, &with_token, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        stats["byCurrency"]["USD"]["totalAmount"], "17.00",
        "{stats}"
    );
    // History comes from PostgreSQL.
    let (status, _, history) = queries
        .call(
            get.clone(),
            &format!("/api/v1/orders/{id}/events"),
            &ops,
            &with_token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        history["events"].as_array().map(Vec::len),
        Some(2),
        "{history}"
    );

    // A token beyond anything published: 503 after the wait.
    let (store_id, position) = consistency.split_once(':').unwrap();
    let beyond = format!("{store_id}:{}", position.parse::<u64>().unwrap() + 1000);
    let (status, headers, problem) = queries
        .call(
            get.clone(),
            &format!("/api/v1/orders/{id}"),
            &ops,
            &[
                ("X-Consistency-Token", &beyond),
                ("X-Consistency-Timeout-Ms", "300"),
            ],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");
    assert_eq!(problem["code"], "consistency_timeout");
    assert!(headers.contains_key("retry-after"));
    let foreign = format!("{}:1", Uuid::new_v4().simple());
    let (status, _, problem) = queries
        .call(
            get.clone(),
            "/api/v1/orders",
            &ops,
            &[("X-Consistency-Token", &foreign)],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem["code"], "foreign_consistency_token");

    // Dead letters: admins only.
    let (status, _, letters) = queries
        .call(
            get.clone(),
            "/api/v1/admin/dead-letters",
            &stack.token("root", Role::Admin),
            &[],
            None,
        )
        .await;
    assert_eq!((status, letters), (StatusCode::OK, json!([])));
    let (status, _, _) = queries
        .call(get.clone(), "/api/v1/admin/dead-letters", &ops, &[], None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let replay = "/api/v1/admin/dead-letters/replay";
    let (status, _, report) = queries
        .call(
            reqwest::Method::POST,
            replay,
            &stack.token("root", Role::Admin),
            &[],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(
        (report["examined"].clone(), report["applied"].clone()),
        (json!(0), json!(0))
    );
    let (status, _, _) = queries
        .call(reqwest::Method::POST, replay, &ops, &[], None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // A rebuild of the read model by an admin: the next index, the alias moved, the
    // projector's later writes land in it.
    let admin = stack.token("root", Role::Admin);
    let rebuild = "/api/v1/admin/projections/rebuild";
    let (status, _, _) = queries.call(post.clone(), rebuild, &ops, &[], None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, started) = queries.call(post.clone(), rebuild, &admin, &[], None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    assert_eq!(started["state"], "rebuilding");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let done = loop {
        let (status, _, progress) = queries.call(get.clone(), rebuild, &admin, &[], None).await;
        assert_eq!(status, StatusCode::OK, "{progress}");
        if progress["state"] != "rebuilding" {
            break progress;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "rebuild still running: {progress}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["done"], 2, "{done}");
    assert_eq!(
        done["newIndex"],
        format!("{}orders_v2", stack.prefix),
        "{done}"
    );
    let (status, _, order) = queries
        .call(
            get.clone(),
            &format!("/api/v1/orders/{id}"),
            &ops,
            &[],
            None,
        )
        .await;
    assert_eq!(
        (status, order["version"].clone()),
        (StatusCode::OK, json!(2))
    );
    let (status, headers, _) = commands
        .call(
            post.clone(),
            &format!("/api/v1/orders/{id}/approve"),
            &ops,
            &[],
            Some(&json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let consistency = headers["x-consistency-token"].to_str().unwrap().to_string();
    let (status, _, order) = queries
        .call(
            get.clone(),
            &format!("/api/v1/orders/{id}"),
            &ops,
            &[
                ("X-Consistency-Token", &consistency),
                ("X-Consistency-Timeout-Ms", "30000"),
            ],
            None,
        )
        .await;
    assert_eq!(
        (status, order["status"].clone()),
        (StatusCode::OK, json!("APPROVED"))
    );

    // Ready, with the projector's lag, and its counters in the metrics.
    let (status, _, ready) = queries
        .call(get.clone(), "/health/ready", "", &[], None)
        .await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    let metrics = reqwest::get(format!("{}/metrics", queries.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("order_platform_projector_messages_applied_total"),
        "{metrics}"
    );

    query.shutdown().await.unwrap();
    stack.stop().await;
}
