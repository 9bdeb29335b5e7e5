//! The role table of DESIGN.md §4.5, enforced by the running server.

use crate::support::{Backend, Resp, Server, item, order_body};
use reqwest::{Method, StatusCode};
use serde_json::json;

fn ids(r: &Resp) -> Vec<String> {
    r.json["items"]
        .as_array()
        .unwrap_or_else(|| panic!("items in {r}"))
        .iter()
        .map(|o| o["orderId"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Runs every command on a fresh order of `customer` as `token`; returns the statuses.
async fn command_statuses(
    server: &Server,
    staff: &str,
    token: &str,
    customer: &str,
) -> Vec<(String, StatusCode)> {
    let mut out = Vec::new();
    let mk = || async { server.new_order(staff, customer).await };
    let id = mk().await;
    let p = format!("/api/v1/orders/{id}");
    out.push((
        "addItem".into(),
        server
            .post(&format!("{p}/items"), token, &item("X", "Extra", 1, "1.00"))
            .await
            .status,
    ));
    out.push((
        "removeItem".into(),
        server.delete(&format!("{p}/items/X"), token).await.status,
    ));
    out.push((
        "approve".into(),
        server
            .post(&format!("{p}/approve"), token, &json!({}))
            .await
            .status,
    ));
    let id2 = mk().await;
    out.push((
        "reject".into(),
        server
            .post(
                &format!("/api/v1/orders/{id2}/reject"),
                token,
                &json!({"reason": "r"}),
            )
            .await
            .status,
    ));
    let id3 = mk().await;
    server
        .post(&format!("/api/v1/orders/{id3}/approve"), staff, &json!({}))
        .await
        .expect(StatusCode::OK);
    out.push((
        "ship".into(),
        server
            .post(
                &format!("/api/v1/orders/{id3}/ship"),
                token,
                &json!({"trackingNumber": "T", "carrier": "C"}),
            )
            .await
            .status,
    ));
    let id4 = mk().await;
    out.push((
        "cancel".into(),
        server
            .post(&format!("/api/v1/orders/{id4}/cancel"), token, &json!({}))
            .await
            .status,
    ));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_act_on_and_see_only_their_own_orders() {
    let server = Server::start(Backend::Sqlite).await;
    let ops = server.token("ops-1", &["ops"]);
    let alice = server.token("alice", &["customer"]);
    let bob = server.token("bob", &["customer"]);

    // create: only for oneself
    let r = server
        .post(
            "/api/v1/orders",
            &alice,
            &order_body("bob", "USD", &[("A", "B", 1, "1.00")]),
        )
        .await;
    r.expect_problem(StatusCode::FORBIDDEN, "forbidden");
    let own = server.new_order(&alice, "alice").await;
    let bobs = server.new_order(&bob, "bob").await;

    // own orders: add, remove, cancel allowed; approve, reject, ship refused
    let own_statuses = command_statuses(&server, &ops, &alice, "alice").await;
    let expected = [
        ("addItem", StatusCode::OK),
        ("removeItem", StatusCode::OK),
        ("approve", StatusCode::FORBIDDEN),
        ("reject", StatusCode::FORBIDDEN),
        ("ship", StatusCode::FORBIDDEN),
        ("cancel", StatusCode::OK),
    ];
    let expected: Vec<(String, StatusCode)> =
        expected.iter().map(|(c, s)| (c.to_string(), *s)).collect();
    assert_eq!(own_statuses, expected, "alice on her own orders");
    // someone else's orders: every command refused; those her role allows answer
    // 404 as for an unknown order (§4.5), the staff-only ones stay 403 (role-based)
    let others = command_statuses(&server, &ops, &alice, "bob").await;
    let expected = [
        ("addItem", StatusCode::NOT_FOUND),
        ("removeItem", StatusCode::NOT_FOUND),
        ("approve", StatusCode::FORBIDDEN),
        ("reject", StatusCode::FORBIDDEN),
        ("ship", StatusCode::FORBIDDEN),
        ("cancel", StatusCode::NOT_FOUND),
    ];
    let expected: Vec<(String, StatusCode)> =
        expected.iter().map(|(c, s)| (c.to_string(), *s)).collect();
    assert_eq!(others, expected, "alice on bob's orders");

    // reads: own yes, others no
    let last = server.new_order(&ops, "bob").await;
    let ct = server
        .get(&format!("/api/v1/orders/{last}/events"), &ops)
        .await;
    ct.expect(StatusCode::OK);
    server
        .get(&format!("/api/v1/orders/{own}"), &alice)
        .await
        .expect(StatusCode::OK);
    for suffix in ["", "/events", "/at?version=1"] {
        server
            .get(&format!("/api/v1/orders/{bobs}{suffix}"), &alice)
            .await
            .expect_problem(StatusCode::NOT_FOUND, "order_not_found");
        server
            .get(&format!("/api/v1/orders/{own}{suffix}"), &alice)
            .await
            .expect(StatusCode::OK);
    }
    server
        .get("/api/v1/orders?customerId=bob", &alice)
        .await
        .expect_problem(StatusCode::FORBIDDEN, "forbidden");
    server
        .get("/api/v1/orders/search?q=mug&customerId=bob", &alice)
        .await
        .expect_problem(StatusCode::FORBIDDEN, "forbidden");
    server
        .get("/api/v1/orders/stats", &alice)
        .await
        .expect_problem(StatusCode::FORBIDDEN, "forbidden");
    // without the filter, only her own orders appear (wait until everything is projected)
    let everything = server
        .eventually(
            "all orders projected",
            "/api/v1/orders?limit=200",
            &ops,
            std::time::Duration::from_secs(20),
            |r| {
                r.json["items"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|o| o["orderId"] == json!(last)))
            },
        )
        .await;
    let total = ids(&everything).len();
    let mine = server.get("/api/v1/orders?limit=200", &alice).await;
    mine.expect(StatusCode::OK);
    let mine_ids = ids(&mine);
    assert!(mine_ids.contains(&own.to_string()));
    assert!(
        mine.json["items"]
            .as_array()
            .is_some_and(|a| a.iter().all(|o| o["customerId"] == "alice")),
        "{mine}"
    );
    assert!(mine_ids.len() < total, "alice sees fewer orders than ops");
    let alice_filtered = server
        .get("/api/v1/orders?customerId=alice&limit=200", &alice)
        .await;
    assert_eq!(ids(&alice_filtered), mine_ids);
    let search = server
        .get("/api/v1/orders/search?q=mug&limit=200", &alice)
        .await;
    search.expect(StatusCode::OK);
    assert!(
        search.json["items"]
            .as_array()
            .is_some_and(|a| !a.is_empty() && a.iter().all(|o| o["customerId"] == "alice")),
        "search shows only alice's orders: {search}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_analyst_and_admin_have_their_rights() {
    let server = Server::start(Backend::Sqlite).await;
    let ops = server.token("ops-1", &["ops"]);
    let analyst = server.token("analyst-1", &["analyst"]);
    let admin = server.token("admin-1", &["admin"]);
    let nobody = server.token("nobody", &["analyst", "customer"]);

    for (who, token) in [("ops", &ops), ("admin", &admin)] {
        let statuses = command_statuses(&server, &ops, token, "carol").await;
        assert!(
            statuses.iter().all(|(_, s)| *s == StatusCode::OK),
            "{who} may run every command on any order: {statuses:?}"
        );
        // and create for anyone
        server.new_order(token, "someone-else").await;
    }
    // analysts: no commands
    let statuses = command_statuses(&server, &ops, &analyst, "carol").await;
    assert!(
        statuses.iter().all(|(_, s)| *s == StatusCode::FORBIDDEN),
        "analyst commands: {statuses:?}"
    );
    server
        .post(
            "/api/v1/orders",
            &analyst,
            &order_body("carol", "USD", &[("A", "B", 1, "1.00")]),
        )
        .await
        .expect_problem(StatusCode::FORBIDDEN, "forbidden");

    // reads: everyone of ops, analyst, admin reads all and the stats
    let id = server.new_order(&ops, "dave").await;
    let last = server
        .get(&format!("/api/v1/orders/{id}/events"), &ops)
        .await;
    last.expect(StatusCode::OK);
    for (who, token) in [("ops", &ops), ("analyst", &analyst), ("admin", &admin)] {
        server
            .eventually(
                &format!("{who} reads dave's order"),
                &format!("/api/v1/orders/{id}"),
                token,
                std::time::Duration::from_secs(20),
                |r| r.status == StatusCode::OK,
            )
            .await;
        server
            .get(&format!("/api/v1/orders/{id}/events"), token)
            .await
            .expect(StatusCode::OK);
        let list = server.get("/api/v1/orders?customerId=dave", token).await;
        assert_eq!(
            ids(&list),
            vec![id.to_string()],
            "{who} lists dave's orders"
        );
        let stats = server.get("/api/v1/orders/stats", token).await;
        stats.expect(StatusCode::OK);
        assert!(
            stats.json["byStatus"]["CREATED"].as_u64() >= Some(1),
            "{who} stats: {stats}"
        );
    }
    // analyst + customer is still allowed to read everything (the stronger role wins)
    server
        .get(&format!("/api/v1/orders/{id}"), &nobody)
        .await
        .expect(StatusCode::OK);

    // operational endpoints are for admins only
    let rebuild = Resp::from(
        server
            .request(
                Method::POST,
                "/api/v1/admin/projections/rebuild",
                Some(&ops),
            )
            .send()
            .await,
    )
    .await;
    if rebuild.status != StatusCode::NOT_FOUND {
        rebuild.expect_problem(StatusCode::FORBIDDEN, "forbidden");
    }
}
