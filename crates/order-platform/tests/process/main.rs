//! The tests that need an `order-platform` process: `kill -9` under load and a
//! restart (`restart`), the command line (`cli`), start-up and configuration
//! (`startup`), and the errors of a first session (`first_minutes`). Everything
//! else runs in-process, in the `e2e` binary.

#[path = "../support/mod.rs"]
mod support;

mod cli;
mod command_service;
mod first_minutes;
mod gateway;
mod limits;
mod oidc_startup;
mod query_service;
mod rebuild;
mod restart;
mod spawned;
mod startup;
mod store_identity;
mod tls;
mod traces;

use support::order_platform;

/// Runs the binary with `args` and returns (success, stdout, stderr).
pub(crate) fn run(args: &[&str]) -> (bool, String, String) {
    let out = order_platform()
        .args(args)
        .output()
        .expect("run order-platform");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A child process killed when the test ends, however it ends.
pub(crate) struct KillOnDrop(pub(crate) std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
