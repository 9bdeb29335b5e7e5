//! The SQL migrations of the stores, embedded in the binary at compile time.
//!
//! `sqlx::migrate!` would do the same, but it is a procedural macro: enabling
//! it (sqlx's `macros` feature) builds `sqlx-macros-core` and a compiler plugin
//! that links sqlx with the SQLite C library and the PostgreSQL driver, which
//! every store crate must wait for in a cold build (see "Build times" in
//! `docs/BENCHMARKS.md`). Here each file is an `include_str!` and
//! the migrations are made by sqlx's own public constructor
//! (`Migration::new`, `Migrator::new`): version, description and checksum
//! (SHA-384 of the text) are exactly what the macro recorded in the databases
//! it migrated, so existing data dirs and databases migrate on as before. A
//! test per list compares it with the folder on disk: a file added to
//! `migrations/` but not to its list fails the tests.

use sqlx::error::BoxDynError;
use sqlx::migrate::{MigrateError, Migration, MigrationSource, MigrationType, Migrator};
use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

/// Migration files as `(file name, SQL)`, file names as sqlx reads them:
/// `<version>_<description>.sql`.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedMigrations(pub &'static [(&'static str, &'static str)]);

impl EmbeddedMigrations {
    /// The migrator that runs these migrations.
    pub async fn migrator(self) -> Result<Migrator, MigrateError> {
        Migrator::new(self).await
    }

    /// The migrations, as `sqlx::migrate!` makes them from a folder.
    pub fn migrations(self) -> Result<Vec<Migration>, String> {
        let mut migrations = Vec::with_capacity(self.0.len());
        for (file, sql) in self.0 {
            let (version, rest) = file
                .split_once('_')
                .filter(|(_, rest)| rest.ends_with(".sql"))
                .ok_or_else(|| {
                    format!("migration file name {file:?} is not <version>_<name>.sql")
                })?;
            let version: i64 = version
                .parse()
                .map_err(|_| format!("migration file name {file:?} has no integer version"))?;
            let kind = MigrationType::from_filename(rest);
            let description = rest.trim_end_matches(kind.suffix()).replace('_', " ");
            let no_tx = sql.starts_with("-- no-transaction");
            migrations.push(Migration::new(
                version,
                Cow::Owned(description),
                kind,
                Cow::Borrowed(*sql),
                no_tx,
            ));
        }
        migrations.sort_by_key(|m| m.version);
        Ok(migrations)
    }
}

impl<'s> MigrationSource<'s> for EmbeddedMigrations {
    fn resolve(
        self,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 's>> {
        Box::pin(async move { self.migrations().map_err(BoxDynError::from) })
    }
}

/// The SQLite event store's migrations (`migrations/sqlite`).
pub const SQLITE: EmbeddedMigrations = EmbeddedMigrations(&[
    (
        "0001_events.sql",
        include_str!("../migrations/sqlite/0001_events.sql"),
    ),
    (
        "0002_store_identity.sql",
        include_str!("../migrations/sqlite/0002_store_identity.sql"),
    ),
]);

/// The PostgreSQL event store's migrations (`migrations/postgres`).
pub const POSTGRES: EmbeddedMigrations = EmbeddedMigrations(&[
    (
        "0001_events.sql",
        include_str!("../migrations/postgres/0001_events.sql"),
    ),
    (
        "0002_append_lock_and_identity.sql",
        include_str!("../migrations/postgres/0002_append_lock_and_identity.sql"),
    ),
]);

/// Asserts that `embedded` is exactly what sqlx reads from the folder `dir`
/// (every file, same version, description, type and checksum): for the tests
/// of each crate with embedded migrations.
#[doc(hidden)]
pub async fn assert_same_as_folder(embedded: EmbeddedMigrations, dir: &std::path::Path) {
    let from_folder = Migrator::new(dir)
        .await
        .expect("read the migrations folder");
    let embedded = embedded.migrator().await.expect("the embedded migrations");
    let describe = |m: &Migrator| -> Vec<(i64, String, bool, Vec<u8>, bool)> {
        m.iter()
            .map(|m| {
                (
                    m.version,
                    m.description.to_string(),
                    m.migration_type.is_up_migration(),
                    m.checksum.to_vec(),
                    m.no_tx,
                )
            })
            .collect()
    };
    assert_eq!(
        describe(&embedded),
        describe(&from_folder),
        "the embedded migrations differ from {}: list every file of the folder",
        dir.display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_embedded_migrations_are_the_folders() {
        let root = std::path::PathBuf::from(
            std::env::var_os("CARGO_MANIFEST_DIR")
                .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
        )
        .join("migrations");
        assert_same_as_folder(SQLITE, &root.join("sqlite")).await;
        assert_same_as_folder(POSTGRES, &root.join("postgres")).await;
    }
}
