//! `order-platform relay` as processes: SIGKILLed at random points, a standby taking over
//! from a killed leader, a leader losing its lease connection.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_at_random_points_still_publishes_every_event_exactly_once() {
    let kills: u32 = std::env::var("ORDER_RELAY_TEST_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(4);
    let fixture = Fixture::new().await;
    let (stop_writers, writers_stop) = watch::channel(false);
    let writers: Vec<_> = (0..3)
        .map(|_| {
            tokio::spawn(keep_appending(
                fixture.store.clone(),
                writers_stop.clone(),
                10,
            ))
        })
        .collect();
    let mut relay = fixture.spawn_relay("127.0.0.1:0", "relay-kill.log");
    for _ in 0..kills {
        // Let it set up and publish for a while (the first start creates topic and schema).
        tokio::time::sleep(Duration::from_millis(1500 + random_below(2000))).await;
        relay.kill().unwrap(); // SIGKILL
        relay.wait().unwrap();
        relay = fixture.spawn_relay("127.0.0.1:0", "relay-kill.log");
    }
    let _ = stop_writers.send(true);
    for w in writers {
        w.await.unwrap();
    }
    let events = fixture.all_events().await;
    let messages = fixture
        .wait_for_messages(events.len(), Duration::from_secs(60))
        .await;
    relay.kill().unwrap();
    relay.wait().unwrap();
    assert!(
        events.len() > 100,
        "only {} events were appended",
        events.len()
    );
    assert_published_exactly_once(&fixture, &events, &messages).await;
    eprintln!(
        "{} events, {kills} kills: every event exactly once",
        events.len()
    );
    fixture.clean_up().await;
}

async fn role(client: &reqwest::Client, port: u16) -> Option<String> {
    let body: serde_json::Value = client
        .get(format!("http://127.0.0.1:{port}/health/ready"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    body["checks"]["relay"]["detail"]["role"]
        .as_str()
        .or_else(|| body["relay"]["detail"]["role"].as_str())
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_relay_takes_over_within_seconds_when_the_leader_is_killed() {
    let fixture = Fixture::new().await;
    let client = reqwest::Client::new();
    let ports = [free_port(), free_port()];
    let mut relays: Vec<Child> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            fixture.spawn_relay(
                &format!("127.0.0.1:{port}"),
                &format!("relay-standby-{i}.log"),
            )
        })
        .collect();
    append_every_type(&fixture.store).await;
    let published = fixture.all_events().await.len();
    assert_eq!(
        fixture
            .wait_for_messages(published, Duration::from_secs(30))
            .await
            .len(),
        published
    );

    // Exactly one leader; the other waits.
    let deadline = Instant::now() + Duration::from_secs(10);
    let leader = loop {
        let roles = [role(&client, ports[0]).await, role(&client, ports[1]).await];
        match (roles[0].as_deref(), roles[1].as_deref()) {
            (Some("leader"), Some("standby")) => break 0,
            (Some("standby"), Some("leader")) => break 1,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
            other => panic!("expected one leader and one standby, got {other:?}"),
        }
    };
    relays[leader].kill().unwrap();
    relays[leader].wait().unwrap();
    let killed = Instant::now();
    append_every_type(&fixture.store).await;
    let events = fixture.all_events().await;
    let messages = fixture
        .wait_for_messages(events.len(), Duration::from_secs(30))
        .await;
    let took = killed.elapsed();
    assert_published_exactly_once(&fixture, &events, &messages).await;
    assert_eq!(
        role(&client, ports[1 - leader]).await.as_deref(),
        Some("leader")
    );
    let metrics = client
        .get(format!("http://127.0.0.1:{}/metrics", ports[1 - leader]))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "order_platform_relay_events_published_total",
        "order_platform_relay_events_behind",
        "order_platform_relay_lag_seconds",
    ] {
        assert!(
            metrics.contains(name),
            "{name} missing from /metrics:\n{metrics}"
        );
    }
    eprintln!("the standby took over and published within {took:?} of the leader's death");
    assert!(took < Duration::from_secs(15), "takeover took {took:?}");
    relays[1 - leader].kill().unwrap();
    relays[1 - leader].wait().unwrap();
    fixture.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lease_connection_is_terminated_steps_down_and_nothing_is_published_twice() {
    let fixture = Fixture::new().await;
    let options = PgConnectOptions::from_str(&fixture.db.url).unwrap();
    let a = Running::start(Relay::new(
        fixture.store.clone(),
        options.clone(),
        fixture.config(),
    ));
    append_every_type(&fixture.store).await;
    let count = fixture.all_events().await.len();
    fixture
        .wait_for_messages(count, Duration::from_secs(30))
        .await;
    let b = Running::start(Relay::new(fixture.store.clone(), options, fixture.config()));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(a.relay.health().role, Role::Leader);
    assert_eq!(b.relay.health().role, Role::Standby);

    // An operator (or a failover of the database) ends the leader's lease session.
    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_locks \
         WHERE locktype = 'advisory' AND classid = x'4f52'::int::oid AND database = \
         (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_all(fixture.store.pool())
    .await
    .unwrap();
    assert_eq!(terminated, [true], "one lease connection");
    append_every_type(&fixture.store).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let roles = loop {
        let roles = (a.relay.health().role, b.relay.health().role);
        let one_leader = matches!(
            roles,
            (Role::Leader, Role::Standby) | (Role::Standby, Role::Leader)
        );
        if (one_leader && a.relay.health().failing_on.is_some()) || Instant::now() > deadline {
            break roles;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        a.relay
            .health()
            .last_error
            .unwrap_or_default()
            .contains("lease"),
        "the old leader noticed: {roles:?}"
    );
    let events = fixture.all_events().await;
    let messages = fixture
        .wait_for_messages(events.len(), Duration::from_secs(30))
        .await;
    assert_published_exactly_once(&fixture, &events, &messages).await;
    a.stop().await;
    b.stop().await;
    fixture.clean_up().await;
}
