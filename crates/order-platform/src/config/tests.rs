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
    let Some(Command::Serve(mut args)) = Cli::from_arg_matches(&matches).unwrap().command else {
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
         snapshot_every = 7\n\
         request_timeout = \"750ms\"\n\
         max_in_flight = 3\n\
         shutdown_timeout = \"2m\"\n\
         oidc_issuer = \"https://sso.example.com/realms/orders\"\n\
         oidc_audience = \"api\"\n\
         oidc_jwks_cache = \"1m\"\n",
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
    assert_eq!(args.request_timeout, Duration::from_millis(750));
    assert_eq!(args.max_in_flight, 3);
    assert_eq!(args.shutdown_timeout, Duration::from_secs(120));
    assert_eq!(
        args.oidc.oidc_issuer.as_deref(),
        Some("https://sso.example.com/realms/orders")
    );
    assert_eq!(args.oidc.oidc_audience.as_deref(), Some("api"));
    assert_eq!(args.oidc.oidc_jwks_cache, Duration::from_secs(60));
    assert_eq!(
        args.oidc.oidc_leeway,
        Duration::from_secs(30),
        "the default"
    );

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
            "--request-timeout",
            "5s",
            "--max-in-flight",
            "64",
        ],
        &file,
    );
    assert_eq!(args.listen, "127.0.0.1:1234".parse().unwrap());
    assert_eq!(args.store.data_dir, PathBuf::from("mine"));
    assert_eq!(args.snapshot_every, 0);
    assert_eq!(args.request_timeout, Duration::from_secs(5));
    assert_eq!(args.max_in_flight, 64);
    assert_eq!(
        args.body_limit, 4096,
        "unset flags still come from the file"
    );
    assert_eq!(
        args.shutdown_timeout,
        Duration::from_secs(120),
        "unset flags still come from the file"
    );
}

#[test]
fn the_gateway_reads_its_keys_and_flags_win() {
    let file = parse(
        "command_url = \"http://command:8080\"\n\
         query_url = \"http://query:8080\"\n\
         redis_url = \"redis://redis:6379/0\"\n\
         retries = 1\n\
         hsts = true\n\
         cors_allow_origins = [\"https://app.example.com\"]\n\
         query_timeout = \"40s\"\n\
         [rate_limits]\n\
         customer = \"100/1m+10\"\n",
    )
    .unwrap();
    let matches = Cli::command()
        .mut_args(|a| a.env(None))
        .mut_subcommand("gateway", |s| s.mut_args(|a| a.env(None)))
        .try_get_matches_from(["order-platform", "gateway", "--retries", "3"])
        .expect("valid arguments");
    let Some(Command::Gateway(mut args)) = Cli::from_arg_matches(&matches).unwrap().command else {
        panic!("not gateway")
    };
    file.apply_to_gateway(&mut args, matches.subcommand_matches("gateway").unwrap())
        .unwrap();
    assert_eq!(args.command_url.as_deref(), Some("http://command:8080"));
    assert_eq!(args.query_url.as_deref(), Some("http://query:8080"));
    assert_eq!(args.redis_url.as_deref(), Some("redis://redis:6379/0"));
    assert_eq!(args.retries, 3, "the flag wins");
    assert!(args.hsts);
    assert_eq!(args.cors_allow_origins, ["https://app.example.com"]);
    assert_eq!(args.query_timeout, Duration::from_secs(40));
    let customer = args.budgets().0[&order_gateway::Class::Role(order_auth::Role::Customer)];
    assert_eq!((customer.requests, customer.burst), (100, 10));

    let bad = parse("[rate_limits]\nvip = \"1/1s\"\n").unwrap();
    let error = bad
        .apply_to_gateway(&mut args, matches.subcommand_matches("gateway").unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("rate_limits") && error.contains("vip"),
        "{error}"
    );
}

#[test]
fn an_empty_file_changes_nothing() {
    let args = serve(&["order-platform", "serve"], &parse("").unwrap());
    assert_eq!(args.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(args.store.data_dir, PathBuf::from("data"));
    assert_eq!(args.store.database_url, None);
    assert_eq!(args.request_timeout, Duration::from_secs(30));
    assert_eq!(args.max_in_flight, order_http::DEFAULT_MAX_IN_FLIGHT);
    assert_eq!(args.shutdown_timeout, Duration::from_secs(20));
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
        ("request_timeout = 30", "request_timeout"),
        ("request_timeout = \"0s\"", "request_timeout"),
        ("shutdown_timeout = \"soon\"", "shutdown_timeout"),
        ("max_in_flight = 0", "max_in_flight"),
        ("max_in_flight = \"many\"", "max_in_flight"),
        ("oidc_issuer = \"sso.example.com\"", "oidc_issuer"),
        ("oidc_audience = 3", "oidc_audience"),
        ("oidc_jwks_cache = \"soon\"", "oidc_jwks_cache"),
        ("oidc_leeway = 30", "oidc_leeway"),
    ] {
        let error = parse(file).unwrap_err().to_string();
        assert!(error.contains(key), "{file:?}: {error}");
        assert!(error.contains("order-platform.toml"), "{file:?}: {error}");
    }
    let error = parse("listen = ").unwrap_err().to_string();
    assert!(error.contains("line 1"), "{error}");
}

#[test]
fn a_value_of_the_wrong_kind_is_explained_in_words_with_its_key_and_line() {
    for (file, line, words) in [
        (
            "listen = \"127.0.0.1:1\"\nbody_limit = \"big\"",
            2,
            "`body_limit` must be a whole number of bytes, e.g. 1048576",
        ),
        (
            "body_limit = -1",
            1,
            "`body_limit` must be a whole number of bytes, e.g. 1048576",
        ),
        (
            "\n\nrequest_timeout = 5",
            3,
            "`request_timeout` must be a duration in quotes such as \"30s\"",
        ),
        (
            "shutdown_timeout = \"soon\"",
            1,
            "`shutdown_timeout`: invalid duration \"soon\"; use a whole number with ms, s, m or h, e.g. 30s",
        ),
        (
            "snapshot_every = \"often\"",
            1,
            "`snapshot_every` must be a whole number of events, e.g. 10",
        ),
        (
            "max_in_flight = \"many\"",
            1,
            "`max_in_flight` must be a whole number of requests from 1 to 1000000",
        ),
        (
            "max_in_flight = 0",
            1,
            "`max_in_flight` must be a whole number",
        ),
        (
            "listen = \"localhost\"",
            1,
            "`listen`: \"localhost\" has no port; add one, e.g. localhost:8080",
        ),
        (
            "listen = true",
            1,
            "`listen`: the address must be text in quotes",
        ),
    ] {
        let error = parse(file).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains(&format!("order-platform.toml, line {line}: ")),
            "{file:?}: {text}"
        );
        assert!(text.contains(words), "{file:?}: {text}");
        for rust in ["usize", "u64", "i64", "expected a string"] {
            assert!(!text.contains(rust), "{file:?} leaks {rust}: {text}");
        }
        assert!(
            error.chain().any(|e| e.is::<UsageError>()),
            "a usage error (exit status 2): {file:?}"
        );
    }
}

#[test]
fn listen_takes_a_port_an_address_or_a_host_name() {
    let local = |port| SocketAddr::from(([127, 0, 0, 1], port));
    assert_eq!(parse_listen("9092"), Ok(local(9092)));
    assert_eq!(parse_listen("0"), Ok(local(0)));
    assert_eq!(parse_listen("127.0.0.1:9092"), Ok(local(9092)));
    assert_eq!(
        parse_listen("0.0.0.0:80"),
        Ok(SocketAddr::from(([0, 0, 0, 0], 80)))
    );
    assert_eq!(
        parse_listen("[::1]:9092"),
        Ok("[::1]:9092".parse().unwrap())
    );
    // localhost is 127.0.0.1 (and often ::1): the first IPv4 address wins
    assert_eq!(parse_listen("localhost:9092"), Ok(local(9092)));
    // the file takes a bare port as a number too
    let file = parse("listen = 9093").unwrap();
    assert_eq!(file.listen, Some(local(9093)));
    let file = parse("listen = \"localhost:9094\"").unwrap();
    assert_eq!(file.listen, Some(local(9094)));

    for (bad, says) in [
        ("", "e.g. 127.0.0.1:8080"),
        ("70000", "port 70000 is out of range"),
        ("localhost", "has no port; add one, e.g. localhost:8080"),
        ("127.0.0.1", "has no port; add one, e.g. 127.0.0.1:8080"),
        ("::1", "has no port; add one, e.g. [::1]:8080"),
        ("127.0.0.1:http", "the port \"http\" is not a number"),
        (
            "http://127.0.0.1:8080/",
            "is a URL; give the address alone, e.g. 127.0.0.1:8080",
        ),
        ("no such host!:80", "e.g. 127.0.0.1:8080"),
        (":8080", "e.g. 127.0.0.1:8080"),
        (
            "nonexistent.invalid:8080",
            "use an IP address, e.g. 127.0.0.1:8080",
        ),
    ] {
        let error = parse_listen(bad).expect_err(bad);
        assert!(error.contains(says), "{bad:?}: {error}");
        assert!(!error.contains("syntax"), "{bad:?}: {error}");
    }
}

#[test]
fn durations_take_a_unit_and_stay_in_range() {
    assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    for bad in [
        "",
        "30",
        "s",
        "0s",
        "-1s",
        "1.5s",
        "25h",
        "1d",
        "99999999999999999999s",
    ] {
        assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
    }
    assert_eq!(parse_max_in_flight("1"), Ok(1));
    for bad in ["0", "-1", "lots", "1000001"] {
        assert!(parse_max_in_flight(bad).is_err(), "{bad:?} accepted");
    }
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

#[test]
fn trace_export_is_off_by_default_and_comes_from_flags_then_the_file() {
    let none = parse("").unwrap();
    let args = serve(&["order-platform", "serve"], &none);
    assert_eq!(args.telemetry.otlp_endpoint, None, "off by default");
    assert_eq!(args.telemetry.trace_sample_ratio, 1.0);

    let file = parse(
        "otlp_endpoint = \"http://jaeger:4318\"\n\
         trace_sample_ratio = 0.25\n",
    )
    .unwrap();
    let args = serve(&["order-platform", "serve"], &file);
    assert_eq!(
        args.telemetry.otlp_endpoint.as_deref(),
        Some("http://jaeger:4318")
    );
    assert_eq!(args.telemetry.trace_sample_ratio, 0.25);
    let args = serve(
        &["order-platform", "serve", "--trace-sample-ratio", "1"],
        &file,
    );
    assert_eq!(args.telemetry.trace_sample_ratio, 1.0, "the flag wins");
    let whole = parse("trace_sample_ratio = 0\n").unwrap();
    assert_eq!(
        serve(&["order-platform", "serve"], &whole)
            .telemetry
            .trace_sample_ratio,
        0.0
    );
}

#[test]
fn a_bad_trace_setting_names_its_key_and_what_it_takes() {
    for (text, key, hint) in [
        (
            "otlp_endpoint = \"jaeger:4318\"\n",
            "otlp_endpoint",
            "http://",
        ),
        ("otlp_endpoint = 4318\n", "otlp_endpoint", "URL"),
        (
            "trace_sample_ratio = 1.5\n",
            "trace_sample_ratio",
            "0.0 to 1.0",
        ),
        (
            "trace_sample_ratio = \"all\"\n",
            "trace_sample_ratio",
            "0.0 to 1.0",
        ),
    ] {
        let error = format!("{:#}", parse(text).unwrap_err());
        assert!(
            error.contains(key) && error.contains(hint),
            "{text}: {error}"
        );
    }
}
