//! The errors of a first session with the binary say what to do: a port in
//! use, serve's flags without `serve`, an address written as a port or a host
//! name, a configuration value of the wrong kind; and a user's mistake is a
//! message with an exit status (2: usage or configuration, 1: a failure while
//! running), never a backtrace, even with `RUST_BACKTRACE=1`.

use crate::KillOnDrop;
use crate::support::{TempDir, order_platform};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

/// Runs the binary with `args` and `RUST_BACKTRACE=1` until it exits (a failure
/// if it still runs after 60 s: it was expected to refuse to start).
fn refused(args: &[&str]) -> (Option<i32>, String) {
    let mut child = order_platform()
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn order-platform");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("poll order-platform").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("order-platform {args:?} is still running after 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let Output { status, stderr, .. } = child.wait_with_output().expect("collect the output");
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    // Never a crash report, whatever RUST_BACKTRACE says.
    let lower = stderr.to_lowercase();
    assert!(
        !lower.contains("backtrace") && !lower.contains("panicked"),
        "{args:?}: a crash report: {stderr}"
    );
    assert!(
        !stderr.contains("Error: "),
        "{args:?}: the Debug form of the error: {stderr}"
    );
    (status.code(), stderr)
}

/// The error line(s) of stderr: the server's JSON log lines left out.
fn error_text(stderr: &str) -> String {
    stderr
        .lines()
        .filter(|l| !l.starts_with('{'))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_port_in_use_is_named_with_how_to_choose_another() {
    let dir = TempDir::new("order-platform-e2e-port");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("take a port");
    let address = taken.local_addr().expect("its address");
    let port = address.port();
    let data = dir.path().to_str().expect("utf-8 path");
    let (code, stderr) = refused(&[
        "serve",
        "--listen",
        &address.to_string(),
        "--data-dir",
        data,
    ]);
    let text = error_text(&stderr);
    assert_eq!(code, Some(1), "a failure while running: {stderr}");
    assert!(
        text.starts_with(&format!(
            "error: cannot listen on {address}: another process is already using that address"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "--listen 127.0.0.1:{}",
            port.checked_add(1).unwrap_or(8080)
        )) && text.contains("ORDER_PLATFORM_LISTEN")
            && text.contains("`listen` in the configuration file"),
        "it says how to choose another address: {text}"
    );
    assert!(
        text.contains("Caused by:") && text.contains("in use"),
        "the system's own words stay as the cause: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_flags_work_without_the_subcommand_and_a_bare_port_is_local() {
    let dir = TempDir::new("order-platform-e2e-toplevel");
    let data = dir.path().to_str().expect("utf-8 path");
    // `order-platform --listen 0 --data-dir D`: serve, on 127.0.0.1, any free port
    let mut child = order_platform()
        .args(["--listen", "0", "--data-dir", data])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn order-platform");
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
    assert!(
        banner.starts_with("Order Platform listening on http://127.0.0.1:")
            && banner.contains(&format!("data dir {data}")),
        "{banner}"
    );
    drop(server);

    // Flags of another subcommand before it: the command line to type instead.
    let (code, stderr) = refused(&["--data-dir", data, "token", "--sub", "a", "--role", "ops"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "did you mean `order-platform token --data-dir {data} --sub a --role ops`?"
        )),
        "{stderr}"
    );
}

#[test]
fn a_bad_address_is_explained_with_examples() {
    for (listen, says) in [
        (
            "localhost",
            "\"localhost\" has no port; add one, e.g. localhost:8080",
        ),
        (
            "127.0.0.1:http",
            "e.g. 127.0.0.1:8080, 0.0.0.0:8080 (every interface)",
        ),
        ("99999", "port 99999 is out of range"),
    ] {
        let (code, stderr) = refused(&["--listen", listen]);
        assert_eq!(code, Some(2), "a usage error: {stderr}");
        assert!(stderr.contains("--listen"), "it names the flag: {stderr}");
        assert!(stderr.contains(says), "{listen:?}: {stderr}");
        assert!(!stderr.contains("syntax"), "{stderr}");
    }
}

#[test]
fn a_config_mistake_is_a_message_with_the_key_line_and_what_it_takes() {
    let dir = TempDir::new("order-platform-e2e-badconfig");
    let config = dir.path().join("order-platform.toml");
    for (file, says) in [
        (
            "listen = \"127.0.0.1:0\"\nbody_limit = \"big\"\n",
            "line 2: `body_limit` must be a whole number of bytes, e.g. 1048576",
        ),
        (
            "request_timeout = 5\n",
            "line 1: `request_timeout` must be a duration in quotes such as \"30s\"",
        ),
        (
            "listen = \"localhost\"\n",
            "line 1: `listen`: \"localhost\" has no port",
        ),
    ] {
        std::fs::write(&config, file).expect("write the config file");
        let path = config.to_str().expect("utf-8 path");
        let (code, stderr) = refused(&["--config", path]);
        assert_eq!(code, Some(2), "a configuration error: {stderr}");
        assert!(
            stderr.starts_with(&format!("error: configuration file {path}, {says}")),
            "{file:?}: {stderr}"
        );
        assert!(!stderr.contains("usize"), "{stderr}");
    }
    let missing = dir.path().join("missing.toml");
    let (code, stderr) = refused(&["serve", "--config", missing.to_str().expect("utf-8")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.starts_with("error: cannot read the configuration file"),
        "{stderr}"
    );
}

#[test]
fn a_database_url_that_is_not_one_is_a_usage_error_with_an_example() {
    let dir = TempDir::new("order-platform-e2e-dburl");
    let data = dir.path().to_str().expect("utf-8 path");
    let (code, stderr) = refused(&["--database-url", "localhost/orders", "--data-dir", data]);
    let text = error_text(&stderr);
    assert_eq!(code, Some(2), "a usage error: {stderr}");
    assert!(
        text.starts_with("error: --database-url (ORDER_PLATFORM_DATABASE_URL, config `database_url`) is not a PostgreSQL URL")
            && text.contains("use postgres://USER:PASSWORD@HOST:5432/DATABASE"),
        "{text}"
    );
}
