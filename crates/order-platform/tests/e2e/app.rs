//! The library entry point the rest of this suite stands on: an
//! [`order_platform::App`] holds its data dir while it runs, lets it go when it
//! shuts down, and the next one on that dir serves what the first stored.

use crate::support::{Resp, TempDir, order_body};
use order_auth::{LocalSigningKey, Role};
use order_platform::{App, ServeArgs};
use reqwest::StatusCode;

fn args(dir: &TempDir) -> ServeArgs {
    ServeArgs::from_flags([
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--data-dir".as_ref(),
        dir.path().as_os_str(),
    ])
    .expect("serve flags")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shut_down_app_unlocks_its_data_dir_and_the_next_one_serves_its_orders() {
    let dir = TempDir::new("order-platform-e2e-app");
    let first = App::start(args(&dir)).await.expect("start the first app");
    let refused = App::start(args(&dir))
        .await
        .err()
        .expect("a second app on a locked data dir is refused");
    assert!(
        format!("{refused:#}").contains(&dir.path().display().to_string()),
        "{refused:#}"
    );

    let ops = LocalSigningKey::load(dir.path())
        .expect("the key the app created")
        .issue(
            "ops-1",
            &[Role::Ops],
            chrono::Utc::now(),
            chrono::Duration::hours(1),
        )
        .expect("sign a token");
    let client = reqwest::Client::new();
    let created = Resp::from(
        client
            .post(format!("http://{}/api/v1/orders", first.addr()))
            .bearer_auth(&ops)
            .json(&order_body(
                "alice",
                "USD",
                &[("SKU-1", "Blue mug", 1, "1.00")],
            ))
            .send()
            .await,
    )
    .await;
    created.expect(StatusCode::CREATED);
    let stopped = first.addr();
    first.shutdown().await.expect("a clean shutdown");
    assert!(
        tokio::net::TcpStream::connect(stopped).await.is_err(),
        "nothing listens on {stopped} after shutdown"
    );

    let second = App::start(args(&dir))
        .await
        .expect("start on the unlocked data dir");
    let seen = Resp::from(
        client
            .get(format!(
                "http://{}/api/v1/orders/{}",
                second.addr(),
                created.order_id()
            ))
            .bearer_auth(&ops)
            .header("x-consistency-token", created.consistency_token())
            .header("x-consistency-timeout-ms", "20000")
            .send()
            .await,
    )
    .await;
    seen.expect(StatusCode::OK);
    assert_eq!(seen.version(), 1, "{seen}");
    second.shutdown().await.expect("a clean shutdown");
}
