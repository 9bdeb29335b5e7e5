//! The conformance suite against a real PostgreSQL server (DATABASE_URL, as
//! printed by `dev/stack env`), each test in a schema of its own; plus the
//! proof that the global log is gap-safe.

use order_event_store::conformance::{read_all, request};
use order_event_store::{EventStore, LogCursor, PostgresEventStore, conformance_tests};
use sqlx::postgres::PgConnectOptions;
use std::str::FromStr;
use std::sync::Arc;
use uuid::Uuid;

/// Options for a new, empty schema on the test server.
async fn fresh_schema() -> PgConnectOptions {
    let url = std::env::var("DATABASE_URL").expect(
        "DATABASE_URL is not set: start PostgreSQL with `dev/stack up postgres` \
         and run `eval \"$(dev/stack env)\"`",
    );
    let base = PgConnectOptions::from_str(&url).expect("DATABASE_URL is a postgres URL");
    let schema = format!("test_{}", Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect_with(&base)
        .await
        .expect("connect to DATABASE_URL");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut admin)
        .await
        .unwrap();
    base.options([("search_path", schema.as_str())])
}

async fn open() -> Arc<PostgresEventStore> {
    Arc::new(
        PostgresEventStore::connect(fresh_schema().await, 10)
            .await
            .expect("connect"),
    )
}

use sqlx::Connection;

conformance_tests!(open());

/// Inserts one event by hand in `tx`, as any client of the database could.
async fn insert_by_hand(tx: &mut sqlx::PgConnection, stream: Uuid) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO events (event_id, stream_id, version, event_type, schema_version, data, \
         occurred_at, actor, correlation_id, causation_id) \
         VALUES ($1, $2, 1, 'ByHand', 1, '{}', now(), 'a', 'c', $3) RETURNING global_position",
    )
    .bind(Uuid::now_v7())
    .bind(stream)
    .bind(Uuid::now_v7())
    .fetch_one(tx)
    .await
    .expect("insert by hand")
}

/// Holds a transaction open after it wrote an event (by hand, not through the
/// adapter: the database itself enforces the rule) and checks that a later
/// append cannot commit before it, and that the reader neither skips it nor
/// passes it.
#[tokio::test]
async fn the_global_log_never_moves_past_an_open_append() {
    let store = open().await;
    let early_stream = Uuid::new_v4();

    let mut open_tx = store.pool().begin().await.unwrap();
    let early_position = insert_by_hand(&mut open_tx, early_stream).await;

    // A later append waits for the open one instead of committing past it.
    let later = tokio::spawn({
        let store = store.clone();
        async move { store.append(request(Uuid::new_v4(), 0, 1)).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !later.is_finished(),
        "a later append committed while an earlier one was still open"
    );
    let batch = store.read_log(LogCursor::default(), 100).await.unwrap();
    assert!(
        batch.events.is_empty(),
        "the reader moved past an open append: {:?}",
        batch
            .events
            .iter()
            .map(|e| e.global_position)
            .collect::<Vec<_>>()
    );

    open_tx.commit().await.unwrap();
    let later = later
        .await
        .unwrap()
        .expect("the later append commits once the early one did");
    assert!(later.last_position > early_position);
    let all = read_all(&*store, later.consistency_token).await;
    let positions: Vec<i64> = all.iter().map(|e| e.global_position).collect();
    assert_eq!(positions, vec![early_position, later.last_position]);
    assert_eq!(all[0].stream_id, early_stream);
}

/// The cursor depends only on appends to this store: an idle session in
/// another database, a prepared transaction there, and an open transaction in
/// this very database that writes elsewhere hold nothing back. (With the old
/// transaction-id horizon every one of them stopped every reader.)
#[tokio::test]
async fn other_transactions_in_the_cluster_do_not_hold_the_log_back() {
    let store = open().await;
    let admin_url = std::env::var("DATABASE_ADMIN_URL").expect(
        "DATABASE_ADMIN_URL is not set: run `eval \"$(dev/stack env)\"` (dev/stack up postgres)",
    );
    let admin = PgConnectOptions::from_str(&admin_url).expect("DATABASE_ADMIN_URL");

    // Idle in transaction, in another database, holding a transaction id.
    let mut idle = sqlx::PgConnection::connect_with(&admin).await.unwrap();
    sqlx::query("BEGIN").execute(&mut idle).await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut idle)
        .await
        .unwrap();

    // A prepared transaction in another database.
    let gid = format!("op-test-{}", Uuid::new_v4().simple());
    let mut preparer = sqlx::PgConnection::connect_with(&admin).await.unwrap();
    sqlx::query("BEGIN").execute(&mut preparer).await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut preparer)
        .await
        .unwrap();
    let prepared = sqlx::query(&format!("PREPARE TRANSACTION '{gid}'"))
        .execute(&mut preparer)
        .await;

    // An open transaction in this database that writes, but not to the events.
    let mut writer = store.pool().begin().await.unwrap();
    sqlx::query(
        "INSERT INTO snapshots (stream_id, version, schema, state) VALUES ($1, 1, 'x', '{}')",
    )
    .bind(Uuid::new_v4())
    .execute(&mut *writer)
    .await
    .unwrap();

    let appended = store.append(request(Uuid::new_v4(), 0, 2)).await.unwrap();
    let batch = store.read_log(LogCursor::default(), 100).await.unwrap();
    let outcome = (
        batch.events.len(),
        batch.covered >= appended.consistency_token,
    );

    // Clean up before asserting, so a failure leaves no prepared transaction behind.
    writer.rollback().await.unwrap();
    sqlx::query("ROLLBACK").execute(&mut idle).await.unwrap();
    if prepared.is_ok() {
        // Outside any transaction (ROLLBACK PREPARED cannot run inside one), and
        // checked: a prepared transaction left behind outlives even a restart.
        sqlx::query(&format!("ROLLBACK PREPARED '{gid}'"))
            .execute(&mut idle)
            .await
            .expect("roll the prepared transaction back");
    }

    prepared.expect(
        "PREPARE TRANSACTION (dev/stack runs PostgreSQL with max_prepared_transactions > 0)",
    );
    assert_eq!(
        outcome,
        (2, true),
        "the new events were held back by transactions that do not append to this store"
    );
}

/// Nothing runs after the commit that could turn a committed command into an
/// error: here every other session is starved of connections right after the
/// append commits, and the append still answers with its token.
#[tokio::test]
async fn an_append_answers_from_its_own_commit() {
    let options = fresh_schema().await;
    let store = Arc::new(
        PostgresEventStore::connect(options, 1)
            .await
            .expect("connect"),
    );
    // Take the only connection, then queue an append behind it, then a hog behind that.
    let held = store.pool().acquire().await.unwrap();
    let append = tokio::spawn({
        let store = store.clone();
        async move { store.append(request(Uuid::new_v4(), 0, 1)).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let hog = tokio::spawn({
        let store = store.clone();
        async move {
            // Queued behind the append: gets the connection the moment the append
            // returns it, and keeps it past the pool's 5 s acquire timeout.
            let mut conn = store.pool().acquire().await.unwrap();
            sqlx::query("SELECT pg_sleep(6)")
                .execute(&mut *conn)
                .await
                .unwrap();
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    drop(held);
    let appended = append
        .await
        .unwrap()
        .expect("a committed append is never answered with an error");
    assert_eq!(appended.last_version, 1);
    assert_eq!(appended.consistency_token.0, appended.last_position as u64);
    hog.await.unwrap();
}

/// A `pg_dump` of the store restored into a fresh database is the same store:
/// same identity, same positions, and a reader positioned in the original
/// carries on in the copy, seeing exactly the events appended after the restore.
#[tokio::test]
async fn a_dump_restored_into_a_fresh_database_keeps_identity_and_positions() {
    let admin_url =
        std::env::var("DATABASE_ADMIN_URL").expect("DATABASE_ADMIN_URL (dev/stack env)");
    let admin = PgConnectOptions::from_str(&admin_url).expect("DATABASE_ADMIN_URL");
    // DATABASE_ADMIN_URL ends in the database name (`…/postgres`): swap it.
    let server = admin_url
        .rsplit_once('/')
        .expect("admin URL has a path")
        .0
        .to_string();
    let url = |db: &str| format!("{server}/{db}");
    let mut admin_conn = sqlx::PgConnection::connect_with(&admin).await.unwrap();
    let (source, copy) = (
        format!("dump_src_{}", Uuid::new_v4().simple()),
        format!("dump_copy_{}", Uuid::new_v4().simple()),
    );
    for db in [&source, &copy] {
        sqlx::query(&format!("CREATE DATABASE {db}"))
            .execute(&mut admin_conn)
            .await
            .unwrap();
    }

    let original =
        PostgresEventStore::connect(PgConnectOptions::from_str(&url(&source)).unwrap(), 2)
            .await
            .unwrap();
    let mut last = None;
    for _ in 0..5 {
        last = Some(
            original
                .append(request(Uuid::new_v4(), 0, 2))
                .await
                .unwrap(),
        );
    }
    let before = read_all(&original, last.unwrap().consistency_token).await;
    let checkpoint = LogCursor {
        position: before.last().unwrap().global_position,
    };
    let identity = original.store_id();
    drop(original);

    let dump = std::env::temp_dir().join(format!("{source}.dump"));
    let run = |program: &str, args: &[&str]| {
        let status = std::process::Command::new(program)
            .args(args)
            .status()
            .unwrap_or_else(|e| panic!("running {program}: {e} (install postgresql-client)"));
        assert!(status.success(), "{program} {args:?} failed");
    };
    run(
        "pg_dump",
        &["-Fc", "-f", dump.to_str().unwrap(), &url(&source)],
    );
    run(
        "pg_restore",
        &["--no-owner", "-d", &url(&copy), dump.to_str().unwrap()],
    );
    std::fs::remove_file(&dump).ok();

    let restored = PostgresEventStore::connect(PgConnectOptions::from_str(&url(&copy)).unwrap(), 2)
        .await
        .unwrap();
    assert_eq!(
        restored.store_id(),
        identity,
        "a restored store keeps its identity"
    );
    let after = restored
        .append(request(Uuid::new_v4(), 0, 3))
        .await
        .unwrap();
    let batch = restored.read_log(checkpoint, 100).await.unwrap();
    assert_eq!(
        batch.events.len(),
        3,
        "a reader positioned before the dump sees exactly the events appended after the restore"
    );
    assert!(batch.covered >= after.consistency_token);
    let again = read_all(&restored, after.consistency_token).await;
    assert_eq!(
        &again[..before.len()],
        &before[..],
        "the restored log is the original one"
    );
    drop(restored);

    for db in [&source, &copy] {
        sqlx::query(&format!("DROP DATABASE {db} WITH (FORCE)"))
            .execute(&mut admin_conn)
            .await
            .ok();
    }
}

/// A transaction that rolls back leaves a permanent hole in the positions;
/// the reader must step over it rather than wait forever.
#[tokio::test]
async fn a_rolled_back_append_leaves_a_hole_the_reader_steps_over() {
    let store = open().await;
    store.append(request(Uuid::new_v4(), 0, 1)).await.unwrap();
    let mut tx = store.pool().begin().await.unwrap();
    sqlx::query(
        "INSERT INTO events (event_id, stream_id, version, event_type, schema_version, data, \
         occurred_at, actor, correlation_id, causation_id) \
         VALUES ($1, $2, 1, 'Doomed', 1, '{}', now(), 'a', 'c', $3)",
    )
    .bind(Uuid::now_v7())
    .bind(Uuid::new_v4())
    .bind(Uuid::now_v7())
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.rollback().await.unwrap();
    let last = store.append(request(Uuid::new_v4(), 0, 1)).await.unwrap();

    let all = read_all(&*store, last.consistency_token).await;
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|e| e.event_type != "Doomed"));
}

/// Group commit: concurrent appends share transactions, and each keeps its own
/// check and answer: a stale version or a reused idempotency key fails only
/// the command that has it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_share_transactions_and_keep_their_own_answers() {
    use order_event_store::{StoreError, StoredResponse};
    let store = open().await;
    let contested = Uuid::new_v4();
    let keyed = |key: &str| {
        let mut req = request(Uuid::new_v4(), 0, 1);
        req.metadata.idempotency_key = Some(key.into());
        req.idempotency = Some((
            key.into(),
            StoredResponse {
                request_hash: "h".into(),
                status: 201,
                response: serde_json::json!({}),
            },
        ));
        req
    };
    let mut tasks = Vec::new();
    for i in 0..60 {
        let store = store.clone();
        let req = match i % 3 {
            0 => request(contested, 0, 2), // all but one must conflict
            1 => keyed("same-key"),        // all but one must find the key taken
            _ => request(Uuid::new_v4(), 0, 1),
        };
        tasks.push(tokio::spawn(
            async move { (i % 3, store.append(req).await) },
        ));
    }
    let mut outcomes = [(0, 0); 3];
    for task in tasks {
        let (kind, result) = task.await.unwrap();
        match result {
            Ok(_) => outcomes[kind].0 += 1,
            Err(StoreError::Conflict { .. }) if kind == 0 => outcomes[kind].1 += 1,
            Err(StoreError::IdempotencyKeyTaken) if kind == 1 => outcomes[kind].1 += 1,
            Err(e) => panic!("append of kind {kind} failed: {e}"),
        }
    }
    assert_eq!(outcomes, [(1, 19), (1, 19), (20, 0)]);

    // 22 commands committed, in fewer transactions than commands.
    let (events, transactions): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT xmin::text) FROM events")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!(events, 2 + 1 + 20);
    assert!(
        transactions < 22,
        "concurrent appends were not grouped: {transactions} transactions for 22 commands"
    );
    // And the log is gap-free and in order for a reader.
    let all = read_all(&*store, store.current_token().await.unwrap()).await;
    assert_eq!(all.len(), 23);
    assert!(
        all.windows(2)
            .all(|w| w[0].global_position < w[1].global_position)
    );
}
