//! `serve --oidc-issuer`: settings checked at start-up with messages naming
//! them; an issuer that cannot be reached is retried for
//! `--oidc-startup-timeout`, then the start fails naming the issuer.

use crate::support::{TempDir, order_platform};
use std::process::Stdio;
use std::time::{Duration, Instant};

fn serve_fails(extra: &[&str]) -> (String, Duration) {
    let dir = TempDir::new("order-platform-e2e-oidc");
    let started = Instant::now();
    let out = order_platform()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run order-platform serve");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "it started: {stderr}");
    assert!(
        matches!(out.status.code(), Some(1 | 2)),
        "an error, not a crash: {stderr}"
    );
    (stderr, started.elapsed())
}

#[test]
fn an_unreachable_issuer_is_retried_then_named() {
    let (stderr, took) = serve_fails(&[
        "--oidc-issuer",
        "http://127.0.0.1:9/realms/nowhere",
        "--oidc-audience",
        "order-platform-api",
        "--oidc-startup-timeout",
        "2s",
    ]);
    assert!(
        stderr.contains("http://127.0.0.1:9/realms/nowhere"),
        "{stderr}"
    );
    assert!(stderr.contains("--oidc-startup-timeout"), "{stderr}");
    assert!(took >= Duration::from_secs(1), "it retried: {took:?}");
}

#[test]
fn issuer_settings_are_checked_and_named() {
    let (stderr, _) = serve_fails(&["--oidc-issuer", "http://127.0.0.1:9/realms/x"]);
    assert!(stderr.contains("--oidc-audience"), "{stderr}");
    let (stderr, _) = serve_fails(&["--oidc-issuer", "sso.example.com", "--oidc-audience", "a"]);
    assert!(
        stderr.contains("--oidc-issuer") && stderr.contains("invalid issuer"),
        "{stderr}"
    );
    let (stderr, _) = serve_fails(&["--oidc-audience", "a"]);
    assert!(stderr.contains("--oidc-issuer"), "{stderr}");
}
