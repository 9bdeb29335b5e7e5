use super::*;

#[test]
fn ttl_accepts_units_and_refuses_nonsense() {
    assert_eq!(parse_ttl("90s"), Ok(chrono::Duration::seconds(90)));
    assert_eq!(parse_ttl("1h"), Ok(chrono::Duration::hours(1)));
    assert_eq!(parse_ttl("7d"), Ok(chrono::Duration::days(7)));
    for bad in [
        "",
        "h",
        "1",
        "1w",
        "-1h",
        "0s",
        "999999999999999999d",
        "400d",
    ] {
        assert!(parse_ttl(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn serve_args_from_flags_take_the_command_line_defaults() {
    let args = ServeArgs::from_flags(["--data-dir", "d", "--body-limit", "5"]).unwrap();
    assert_eq!(args.store.data_dir, PathBuf::from("d"));
    assert_eq!(args.body_limit, 5);
    assert_eq!(args.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(args.snapshot_every, 10);
    assert_eq!(args.store.database_url, None);
    assert!(ServeArgs::from_flags(["--lisen", "127.0.0.1:0"]).is_err());
    for (flag, value, words) in [
        (
            "--body-limit",
            "big",
            "a whole number of bytes, e.g. 1048576",
        ),
        (
            "--body-limit",
            "1.5",
            "a whole number of bytes, e.g. 1048576",
        ),
        (
            "--snapshot-every",
            "often",
            "a whole number of events, e.g. 50",
        ),
    ] {
        let error = match ServeArgs::from_flags([flag, value]) {
            Ok(_) => panic!("{flag} {value} accepted"),
            Err(e) => e.to_string(),
        };
        assert!(error.contains(words), "{flag} {value}: {error}");
    }
}

fn parsed(argv: &[&str]) -> Result<(Option<PathBuf>, Command, ArgMatches), clap::Error> {
    parse_command_line(argv.iter().map(OsString::from).collect())
}

#[test]
fn serve_flags_work_without_the_subcommand() {
    for argv in [
        &["order-platform", "--listen", "9000", "--data-dir", "x"][..],
        &[
            "order-platform",
            "serve",
            "--listen",
            "9000",
            "--data-dir",
            "x",
        ],
        &[
            "order-platform",
            "--data-dir",
            "x",
            "--listen",
            "127.0.0.1:9000",
        ],
    ] {
        let (_, command, given) = parsed(argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        let Command::Serve(args) = command else {
            panic!("{argv:?} is not serve")
        };
        assert_eq!(args.listen, "127.0.0.1:9000".parse().unwrap(), "{argv:?}");
        assert_eq!(args.store.data_dir, PathBuf::from("x"), "{argv:?}");
        assert_eq!(
            given.value_source("listen"),
            Some(clap::parser::ValueSource::CommandLine)
        );
    }
    let (config, command, _) =
        parsed(&["order-platform", "--config", "f.toml", "--listen", "9000"]).unwrap();
    assert_eq!(config, Some(PathBuf::from("f.toml")));
    assert!(matches!(command, Command::Serve(_)));
    assert!(matches!(
        parsed(&["order-platform", "token", "--sub", "a", "--role", "ops"])
            .unwrap()
            .1,
        Command::Token(_)
    ));
}

fn refused(argv: &[&str]) -> String {
    match parsed(argv) {
        Ok(_) => panic!("{argv:?} accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_mistake_without_the_subcommand_says_what_to_type() {
    // a flag serve does not have either: serve's usage line
    let error = refused(&["order-platform", "--listen", "9000", "--lisen", "1"]);
    assert!(error.contains("--lisen"), "{error}");
    assert!(error.contains("order-platform serve"), "{error}");
    // a subcommand after its flags
    let error = refused(&["order-platform", "--data-dir", "x", "token", "--sub", "a"]);
    assert!(
        error.contains("did you mean `order-platform token --data-dir x --sub a`?"),
        "{error}"
    );
    // a bad address at the top level is explained, as after `serve`
    let error = refused(&["order-platform", "--listen", "localhost"]);
    assert!(error.contains("add one, e.g. localhost:8080"), "{error}");
}

#[test]
fn errors_are_printed_with_their_causes_and_no_backtrace() {
    let error = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::AddrInUse))
        .context("cannot listen on 127.0.0.1:8080");
    let text = report(&error);
    assert!(
        text.starts_with("error: cannot listen on 127.0.0.1:8080\n"),
        "{text}"
    );
    assert!(text.contains("\nCaused by:\n    "), "{text}");
    assert!(!text.to_lowercase().contains("backtrace"), "{text}");
}

#[test]
fn the_cli_definition_is_consistent() {
    Cli::command().debug_assert();
}
