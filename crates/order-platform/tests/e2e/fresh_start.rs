//! A fresh data dir starts every time: creating and migrating the SQLite files
//! used to race with the pool's own connections (`database is locked`, about
//! 1 start in 10).

use crate::support::{Backend, Server};
use reqwest::StatusCode;

#[tokio::test]
async fn twenty_fresh_data_dirs_start_in_a_row() {
    for _ in 0..20 {
        // Server::start panics, with the server's log, if it exits before listening.
        let server = Server::start(Backend::Sqlite).await;
        server.get("/health/ready", "").await.expect(StatusCode::OK);
    }
}
