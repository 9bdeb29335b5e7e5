//! The optional TOML configuration file (`--config FILE`, or `ORDER_PLATFORM_CONFIG`).
//!
//! Every setting can come from four places; the first one that has it wins:
//! the command-line flag, its `ORDER_PLATFORM_*` environment variable, the
//! configuration file, the built-in default. The file's keys are the flag names
//! in snake case:
//!
//! ```toml
//! listen = "0.0.0.0:8080"
//! data_dir = "/var/lib/order-platform"      # relative paths: from the file's folder
//! database_url = "postgres://orders:secret@db/orders"
//! body_limit = 1048576
//! snapshot_every = 50
//! ```
//!
//! The file is checked whole before anything starts: an unknown key, a value of
//! the wrong type or an unparsable address is an error that names the key and
//! its line, even for a key the running subcommand does not use.

use crate::{ServeArgs, StoreArgs};
use anyhow::{Context, anyhow};
use clap::ArgMatches;
use clap::parser::ValueSource;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    body_limit: Option<usize>,
    snapshot_every: Option<u64>,
}

impl FileConfig {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> anyhow::Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the configuration file {}", path.display()))?;
        let mut config: FileConfig = toml::from_str(&text)
            .map_err(|e| anyhow!("configuration file {}: {e}", path.display()))?;
        if let Some(dir) = &config.data_dir
            && dir.is_relative()
        {
            let base = path.parent().unwrap_or(Path::new(""));
            config.data_dir = Some(base.join(dir));
        }
        Ok(config)
    }

    /// Fills the settings of `serve` that neither a flag nor the environment set.
    pub fn apply_to_serve(&self, args: &mut ServeArgs, given: &ArgMatches) {
        fill(&mut args.listen, self.listen, given, "listen");
        fill(&mut args.body_limit, self.body_limit, given, "body_limit");
        fill(
            &mut args.snapshot_every,
            self.snapshot_every,
            given,
            "snapshot_every",
        );
        self.apply_to_store(&mut args.store, given);
    }

    /// Fills the storage settings (used by `serve` and `migrate`).
    pub fn apply_to_store(&self, args: &mut StoreArgs, given: &ArgMatches) {
        self.apply_to_data_dir(&mut args.data_dir, given);
        let url = self.database_url.clone().map(Some);
        fill(&mut args.database_url, url, given, "database_url");
    }

    /// Fills the data dir (the one setting `token` shares with the server).
    pub fn apply_to_data_dir(&self, data_dir: &mut PathBuf, given: &ArgMatches) {
        fill(data_dir, self.data_dir.clone(), given, "data_dir");
    }
}

/// Puts the file's value (if any) into `setting` when the user left the argument
/// `id` alone: no flag and no environment variable.
fn fill<T>(setting: &mut T, from_file: Option<T>, given: &ArgMatches, id: &str) {
    let defaulted = matches!(
        given.value_source(id),
        None | Some(ValueSource::DefaultValue)
    );
    if let Some(value) = from_file
        && defaulted
    {
        *setting = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::{CommandFactory, FromArgMatches};

    fn parse(file: &str) -> anyhow::Result<FileConfig> {
        let dir = std::env::temp_dir().join(format!(
            "order-platform-config-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("order-platform.toml");
        std::fs::write(&path, file).unwrap();
        let result = FileConfig::load(&path);
        std::fs::remove_dir_all(&dir).unwrap();
        result
    }

    /// `serve` parsed from `argv` with `file` applied, as `main` does it. The
    /// `ORDER_PLATFORM_*` variables are switched off, so the developer's own
    /// environment cannot change what these tests see.
    fn serve(argv: &[&str], file: &FileConfig) -> ServeArgs {
        let matches = Cli::command()
            .mut_args(|a| a.env(None))
            .mut_subcommand("serve", |s| s.mut_args(|a| a.env(None)))
            .try_get_matches_from(argv)
            .expect("valid arguments");
        let Some(Command::Serve(mut args)) = Cli::from_arg_matches(&matches).unwrap().command
        else {
            panic!("not serve")
        };
        file.apply_to_serve(&mut args, matches.subcommand_matches("serve").unwrap());
        args
    }

    #[test]
    fn the_file_fills_what_flags_leave_unset_and_flags_win() {
        let file = parse(
            "listen = \"127.0.0.1:9999\"\n\
             data_dir = \"/srv/orders\"\n\
             database_url = \"postgres://u:p@db/orders\"\n\
             body_limit = 4096\n\
             snapshot_every = 7\n",
        )
        .unwrap();

        let args = serve(&["order-platform", "serve"], &file);
        assert_eq!(args.listen, "127.0.0.1:9999".parse().unwrap());
        assert_eq!(args.store.data_dir, PathBuf::from("/srv/orders"));
        assert_eq!(
            args.store.database_url.as_deref(),
            Some("postgres://u:p@db/orders")
        );
        assert_eq!(args.body_limit, 4096);
        assert_eq!(args.snapshot_every, 7);

        let args = serve(
            &[
                "order-platform",
                "serve",
                "--listen",
                "127.0.0.1:1234",
                "--data-dir",
                "mine",
                "--snapshot-every",
                "0",
            ],
            &file,
        );
        assert_eq!(args.listen, "127.0.0.1:1234".parse().unwrap());
        assert_eq!(args.store.data_dir, PathBuf::from("mine"));
        assert_eq!(args.snapshot_every, 0);
        assert_eq!(
            args.body_limit, 4096,
            "unset flags still come from the file"
        );
    }

    #[test]
    fn an_empty_file_changes_nothing() {
        let args = serve(&["order-platform", "serve"], &parse("").unwrap());
        assert_eq!(args.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(args.store.data_dir, PathBuf::from("data"));
        assert_eq!(args.store.database_url, None);
    }

    #[test]
    fn a_relative_data_dir_is_relative_to_the_file() {
        let file = parse("data_dir = \"state\"").unwrap();
        let dir = file.data_dir.unwrap();
        assert!(dir.is_absolute(), "{dir:?}");
        assert!(dir.ends_with("state"), "{dir:?}");
        assert!(dir.starts_with(std::env::temp_dir()), "{dir:?}");
    }

    #[test]
    fn mistakes_name_the_key() {
        for (file, key) in [
            ("lisen = \"127.0.0.1:1\"", "lisen"),
            ("listen = \"localhost\"", "listen"),
            ("body_limit = \"1MiB\"", "body_limit"),
            ("snapshot_every = -1", "snapshot_every"),
            ("data_dir = 3", "data_dir"),
        ] {
            let error = parse(file).unwrap_err().to_string();
            assert!(error.contains(key), "{file:?}: {error}");
            assert!(error.contains("order-platform.toml"), "{file:?}: {error}");
        }
        let error = parse("listen = ").unwrap_err().to_string();
        assert!(error.contains("line 1"), "{error}");
    }

    #[test]
    fn a_missing_file_is_named() {
        let error = FileConfig::load(Path::new("/nonexistent/order-platform.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("/nonexistent/order-platform.toml"),
            "{error}"
        );
    }
}
