//! Starting `order-platform serve`: one server per data dir, the configuration
//! file, a closed stdout, and a signing key that is empty or readable by others.

use crate::support::{Backend, Resp, Server, TempDir, order_platform};
use crate::{KillOnDrop, run};
use reqwest::{Method, StatusCode};
use std::process::Stdio;
use std::time::Duration;

#[test]
fn the_server_refuses_a_key_others_may_read_or_an_empty_one_and_says_what_to_do() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("order-platform-e2e-badkey");
    let key = dir.path().join("signing-key.p8");
    // the server's exit, or a failure if it is still serving after 30 s
    let serve = || {
        let mut child = order_platform()
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn order-platform serve");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while child.try_wait().expect("poll the server").is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the server started with the key {}", key.display());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.wait_with_output().expect("collect the output")
    };
    // an empty file: what a crash during the first start used to leave
    std::fs::write(&key, b"").expect("write an empty key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let out = serve();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "an error, not a panic: {stderr}"
    );
    assert!(
        stderr.contains(&key.display().to_string()) && stderr.contains("empty"),
        "the message names the file and what is wrong with it: {stderr}"
    );
    // a good key, but group and others may read it
    std::fs::remove_file(&key).expect("remove the empty key");
    order_auth::LocalSigningKey::load_or_create(dir.path()).expect("create a key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = serve();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "an error, not a panic: {stderr}"
    );
    assert!(
        stderr.contains(&format!("chmod 600 {}", key.display())),
        "the message says what to run: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_data_dir_refuses_to_start() {
    let server = Server::start(Backend::Sqlite).await;
    let mut second = server
        .serve_command()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn a second server");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = second.try_wait().expect("poll the second server") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = second.kill();
            let _ = second.wait();
            panic!("a second server on the same data dir was still running after 30s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let output = second.wait_with_output().expect("collect the output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!status.success(), "the second server exits non-zero");
    assert!(
        stderr.contains("data dir") && stderr.contains(&server.data_dir().display().to_string()),
        "the message names the data dir in use: {stderr}"
    );
    assert!(
        stderr.contains("another order-platform process"),
        "and why: {stderr}"
    );
    // the first one is unharmed
    let live = Resp::from(
        server
            .request(Method::GET, "/health/live", None)
            .send()
            .await,
    )
    .await;
    live.expect(StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_sets_what_flags_do_not() {
    let dir = TempDir::new("order-platform-e2e-config");
    let config = dir.path().join("order-platform.toml");
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:0\"\ndata_dir = \"state\"\nbody_limit = 300\n",
    )
    .expect("write the config file");
    let config = config.to_str().expect("utf-8 path");

    // `order-platform --config FILE` alone serves, with the file's settings.
    let mut child = order_platform()
        .args(["--config", config])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn order-platform --config");
    let stdout = child.stdout.take().expect("stdout");
    let server = KillOnDrop(child);
    let banner = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
                .map(|_| line)
        }),
    )
    .await
    .expect("a banner within 60 s")
    .expect("the reader thread")
    .expect("read the banner");
    let state = dir.path().join("state");
    assert!(
        banner.contains(&format!("data dir {}", state.display())),
        "the data dir comes from the file, relative to it: {banner}"
    );
    let base = banner
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("an address in the banner: {banner}"))
        .to_string();
    assert!(
        !base.ends_with(":8080"),
        "listen comes from the file: {banner}"
    );

    // `token --config FILE` signs with the key of the same data dir.
    let (ok, token, stderr) = run(&[
        "token", "--config", config, "--sub", "ops-1", "--role", "ops",
    ]);
    assert!(ok, "token with --config: {stderr}");
    assert!(
        state.join("signing-key.p8").exists(),
        "the key lives in the file's data dir"
    );
    // ORDER_PLATFORM_DATA_DIR beats the file: `token` looks for the key there (and,
    // no server having started on it, finds none), not in the file's data dir.
    let elsewhere = dir.path().join("from-env");
    let out = order_platform()
        .args([
            "token", "--config", config, "--sub", "ops-1", "--role", "ops",
        ])
        .env("ORDER_PLATFORM_DATA_DIR", &elsewhere)
        .output()
        .expect("run order-platform token");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains(&format!("no signing key in {}", elsewhere.display())),
        "the environment variable wins over the file: {out:?}"
    );
    let client = reqwest::Client::new();
    let list = Resp::from(
        client
            .get(format!("{base}/api/v1/orders"))
            .bearer_auth(token.trim())
            .send()
            .await,
    )
    .await;
    list.expect(StatusCode::OK);

    // body_limit = 300 from the file
    let body = serde_json::json!({
        "customerId": "alice", "currency": "USD",
        "items": [{"sku": "A", "productName": "x".repeat(400), "quantity": 1, "unitPrice": "1.00"}]
    });
    let big = Resp::from(
        client
            .post(format!("{base}/api/v1/orders"))
            .bearer_auth(token.trim())
            .json(&body)
            .send()
            .await,
    )
    .await;
    big.expect_problem(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    drop(server);

    // A mistake in the file stops the start and names the key and the file.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "lisen = \"127.0.0.1:0\"\n").expect("write the bad file");
    let (ok, _, stderr) = run(&["serve", "--config", bad.to_str().expect("utf-8 path")]);
    assert!(!ok, "a bad config file is refused");
    assert!(
        stderr.contains("lisen") && stderr.contains("bad.toml"),
        "the message names the key and the file: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_does_not_stop_the_server() {
    // `order-platform serve | head -1`, or a supervisor that closes the pipe: the banner
    // cannot be written, the server must serve anyway.
    let dir = TempDir::new("order-platform-e2e-stdout");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = order_platform()
        .args(["serve", "--listen", &listen, "--data-dir"])
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn order-platform serve");
    drop(child.stdout.take()); // closed before the server gets to print
    let mut server = KillOnDrop(child);

    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = server.0.try_wait().expect("poll the server") {
            let mut stderr = String::new();
            if let Some(mut pipe) = server.0.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
            }
            panic!("the server exited ({status}) with stdout closed:\n{stderr}");
        }
        let live = client
            .get(format!("http://{listen}/health/live"))
            .send()
            .await;
        if live.is_ok_and(|r| r.status() == StatusCode::OK) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not come up within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn the_server_refuses_a_data_dir_others_may_write_to() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("order-platform-e2e-opendir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let (ok, _, stderr) = run(&[
        "migrate",
        "--data-dir",
        dir.path().to_str().expect("a UTF-8 temp path"),
    ]);
    assert!(!ok, "started on a world-writable data dir");
    assert!(
        stderr.contains(&format!("chmod go-w {}", dir.path().display())),
        "the message says what to run: {stderr}"
    );
    assert!(
        !dir.path().join("events.db").exists(),
        "nothing was created in it"
    );
}
