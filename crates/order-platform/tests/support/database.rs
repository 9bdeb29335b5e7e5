//! A PostgreSQL database of its own for one test, on the server `DATABASE_URL` names.

use uuid::Uuid;

/// A fresh PostgreSQL database for one test, dropped afterwards.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    admin_url: String,
}

fn base_database_url() -> String {
    std::env::var("DATABASE_URL").expect(
        "DATABASE_URL is not set: start PostgreSQL with `dev/stack up postgres` and run \
         `eval \"$(dev/stack env)\"` before the PostgreSQL end-to-end tests",
    )
}

/// `url` with its database name replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let scheme_end = head.find("://").map_or(0, |i| i + 3);
    let base = match head[scheme_end..].find('/') {
        Some(slash) => &head[..scheme_end + slash],
        None => head,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

async fn admin_exec(url: &str, sql: &str) -> Result<(), sqlx::Error> {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(url).await?;
    sqlx::raw_sql(sql).execute(&mut conn).await?;
    conn.close().await
}

impl TestDatabase {
    pub async fn create() -> TestDatabase {
        let base = base_database_url();
        let name = format!("e2e_{}", Uuid::new_v4().simple());
        admin_exec(&base, &format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name} through DATABASE_URL: {e}"));
        TestDatabase {
            url: with_database(&base, &name),
            admin_url: base,
            name,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let url = self.admin_url.clone();
        // Drop runs inside the test's runtime: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                let _ = rt.block_on(admin_exec(&url, &sql));
            }
        })
        .join();
    }
}
