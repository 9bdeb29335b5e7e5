//! A production service (`command-service`, `gateway`) as a child process the
//! test owns: its banner gives the address, its log goes to a file shown on
//! failure, and it can be stopped with SIGTERM like an orchestrator does.

use crate::support::{TempDir, order_platform};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a service may take to print its banner on a loaded machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Spawned {
    pub name: &'static str,
    child: Child,
    /// Holds `<name>.log`.
    logs: TempDir,
    /// `http://IP:PORT`.
    pub base: String,
}

impl Spawned {
    /// `order-platform <args>`, once it has printed `listening on http://…`.
    pub async fn start(name: &'static str, args: &[&str]) -> Spawned {
        Spawned::start_with_env(name, args, &[]).await
    }

    /// [`Spawned::start`] with more environment variables.
    pub async fn start_with_env(
        name: &'static str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Spawned {
        let logs = TempDir::new("order-platform-spawned");
        let log = std::fs::File::create(logs.path().join(format!("{name}.log"))).expect("log");
        let mut child = order_platform()
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn order-platform");
        let rx = crate::support::banner_address(&mut child, None);
        let mut spawned = Spawned {
            name,
            child,
            logs,
            base: String::new(),
        };
        match tokio::time::timeout(START_TIMEOUT, rx).await {
            Ok(Ok(addr)) => spawned.base = format!("http://{addr}"),
            _ => panic!("{name} did not start:\n{}", spawned.log()),
        }
        spawned
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.logs.path().join(format!("{}.log", self.name)))
            .unwrap_or_default()
    }

    /// Waits until `/health/ready` answers 200.
    pub async fn ready(&self, http: &reqwest::Client) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(r) = http.get(self.url("/health/ready")).send().await
                && r.status() == reqwest::StatusCode::OK
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} never became ready:\n{}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, then the exit status if it ends within `within`.
    pub async fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        let sent = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- {} log ---\n{}", self.name, self.log());
        }
    }
}
