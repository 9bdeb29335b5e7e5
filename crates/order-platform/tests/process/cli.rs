//! `order-platform token`: refusals, no key of its own, tokens bound to the
//! data dir of the server that must accept them.

use crate::run;
use crate::support::{Backend, Server, TempDir, issue_token};
use reqwest::StatusCode;

#[test]
fn token_refuses_unknown_roles_and_blank_subjects() {
    let dir = TempDir::new("order-platform-e2e-cli");
    let data = dir.path().to_str().expect("utf-8 path");
    let (ok, stdout, stderr) = run(&[
        "token",
        "--sub",
        "alice",
        "--role",
        "wizard",
        "--data-dir",
        data,
    ]);
    assert!(!ok, "an unknown role is refused");
    assert!(stdout.trim().is_empty(), "no token printed: {stdout}");
    assert!(
        stderr.contains("wizard") && stderr.contains("role"),
        "the message names the role: {stderr}"
    );
    for blank in ["", "   "] {
        let (ok, stdout, stderr) = run(&[
            "token",
            "--sub",
            blank,
            "--role",
            "customer",
            "--data-dir",
            data,
        ]);
        assert!(!ok, "a blank subject {blank:?} is refused");
        assert!(stdout.trim().is_empty(), "no token printed: {stdout}");
        assert!(
            stderr.contains("--sub"),
            "the message names --sub: {stderr}"
        );
    }
    let (ok, _, stderr) = run(&["token", "--sub", "alice", "--data-dir", data]);
    assert!(
        !ok && stderr.contains("--role"),
        "a role is required: {stderr}"
    );
    let (ok, _, stderr) = run(&[
        "token",
        "--sub",
        "alice",
        "--role",
        "ops",
        "--ttl",
        "forever",
        "--data-dir",
        data,
    ]);
    assert!(
        !ok && stderr.contains("forever"),
        "a bad ttl is named: {stderr}"
    );
}

#[test]
fn token_never_creates_a_key_and_says_which_data_dir_to_use() {
    let dir = TempDir::new("order-platform-e2e-nokey");
    let missing = dir.path().join("never-served");
    for data_dir in [missing.as_path(), dir.path()] {
        let shown = data_dir.display().to_string();
        let (ok, stdout, stderr) = run(&[
            "token",
            "--sub",
            "alice",
            "--role",
            "customer",
            "--data-dir",
            &shown,
        ]);
        assert!(!ok, "no token from {shown}, where no server ever ran");
        assert!(stdout.trim().is_empty(), "no token printed: {stdout}");
        assert!(
            stderr.contains(&format!("no signing key in {shown}"))
                && stderr.contains(&format!("order-platform serve --data-dir {shown}"))
                && stderr.contains("data dir of the running server"),
            "the message says which data dir to point at: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(
            !data_dir.join("signing-key.p8").exists(),
            "token created a key in {shown}"
        );
    }
    assert!(!missing.exists(), "token created the data dir");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_works_only_for_the_server_of_its_data_dir() {
    let (a, b) = tokio::join!(
        Server::start(Backend::Sqlite),
        Server::start(Backend::Sqlite)
    );
    let token = issue_token(a.data_dir(), "ops-1", &["ops"], "1h");
    a.get("/api/v1/orders", &token).await.expect(StatusCode::OK);
    let r = b.get("/api/v1/orders", &token).await;
    r.expect_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    assert!(
        r.header("www-authenticate")
            .is_some_and(|h| h.starts_with("Bearer")),
        "{r}"
    );
    // several roles in one token
    let both = issue_token(a.data_dir(), "carol", &["customer", "analyst"], "1h");
    a.get("/api/v1/orders/stats", &both)
        .await
        .expect(StatusCode::OK);
}
