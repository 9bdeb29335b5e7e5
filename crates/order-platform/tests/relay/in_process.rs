//! The relay in process: every event type once, in order, with its headers; a restart
//! resumes from the topic.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_is_published_once_in_order_with_headers_and_a_restart_resumes_from_the_topic()
{
    let fixture = Fixture::new().await;
    let options = PgConnectOptions::from_str(&fixture.db.url).unwrap();
    // Some events before the relay starts, some while it runs.
    append_every_type(&fixture.store).await;
    let first = Running::start(Relay::new(
        fixture.store.clone(),
        options.clone(),
        fixture.config(),
    ));
    append_every_type(&fixture.store).await;
    let events = fixture.all_events().await;
    let messages = fixture
        .wait_for_messages(events.len(), Duration::from_secs(30))
        .await;
    assert_published_exactly_once(&fixture, &events, &messages).await;
    let health = first.relay.health();
    assert_eq!(health.role, Role::Leader);
    assert_eq!(
        health.position,
        Some(events.last().unwrap().global_position)
    );
    first.relay.measure_lag().await;
    assert_eq!(first.relay.health().events_behind, Some(0));
    first.stop().await;

    // A new relay finds its checkpoint in the topic: the next events follow, nothing repeats.
    append_every_type(&fixture.store).await;
    let second = Running::start(Relay::new(fixture.store.clone(), options, fixture.config()));
    let events = fixture.all_events().await;
    let messages = fixture
        .wait_for_messages(events.len(), Duration::from_secs(30))
        .await;
    assert_published_exactly_once(&fixture, &events, &messages).await;
    second.stop().await;

    // A relay of another store refuses this topic and publishes nothing.
    let other = Fixture::new().await;
    append_every_type(&other.store).await;
    let foreign = Running::start(Relay::new(
        other.store.clone(),
        PgConnectOptions::from_str(&other.db.url).unwrap(),
        fixture.config(),
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    while foreign.relay.health().failing_on.is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let health = foreign.relay.health();
    assert_eq!(
        health.failing_on,
        Some(order_relay::Dependency::Data),
        "{health:?}"
    );
    assert!(health.last_error.unwrap().contains("another store"));
    foreign.stop().await;
    assert_eq!(
        fixture.topic().await.len(),
        events.len(),
        "the foreign relay published nothing"
    );
    other.clean_up().await;
    fixture.clean_up().await;
}
