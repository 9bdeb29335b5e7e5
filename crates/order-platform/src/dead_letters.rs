//! Dead letters of the Kafka projector: `order-platform dead-letters list|replay`, and the
//! admin routes of the query service that do the same over HTTP (DESIGN §4.5: admins only).
//! Both call `order_kafka_projector::{dlq::list, replay::replay}`, so they cannot differ.

use crate::cli::{DeadLettersAction, DeadLettersArgs, KafkaReadArgs, UsageError};
use axum::extract::State;
use order_auth::Role;
use order_http::openapi::{Unauthorized, Unavailable};
use order_http::{ApiError, Caller};
use order_kafka_projector::{DeadLetter, ProjectorConfig, ReplayReport};
use order_read_model_es::{EsConfig, EsReadStore};
use std::io::Write;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The projector's and Elasticsearch's settings from the flags; errors name what is
/// missing and `who` (the subcommand) needs it.
pub(crate) fn settings(
    args: &KafkaReadArgs,
    who: &str,
) -> anyhow::Result<(ProjectorConfig, EsConfig)> {
    let required = |value: &Option<String>, flag, variable, key| {
        crate::config::required(value.clone(), who, flag, variable, key)
    };
    let kafka =
        crate::config::kafka_connection(&args.kafka_bootstrap_servers, &args.kafka_options, who)?;
    let registry = required(
        &args.schema_registry_url,
        "schema-registry-url",
        "ORDER_PLATFORM_SCHEMA_REGISTRY_URL",
        "schema_registry_url",
    )?;
    let es_url = required(
        &args.elasticsearch_url,
        "elasticsearch-url",
        "ORDER_PLATFORM_ELASTICSEARCH_URL",
        "elasticsearch_url",
    )?;
    let valid_topic = !args.topic.is_empty()
        && args
            .topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !valid_topic {
        return Err(UsageError(format!(
            "topic {:?} is not a valid Kafka topic name (letters, digits, '.', '_', '-')",
            args.topic
        ))
        .into());
    }
    if args.group_id.trim().is_empty() {
        return Err(UsageError("--group-id must not be blank".into()).into());
    }
    let mut config = ProjectorConfig::new(kafka, &registry, &args.topic);
    config.group_id = args.group_id.clone();
    config.kafka_timeout = args.kafka_timeout;
    config.replication_factor = args.replication_factor;
    let mut es = EsConfig::new(es_url);
    es.prefix = args.es_index_prefix.clone();
    Ok((config, es))
}

/// `order-platform dead-letters list|replay`.
pub async fn command(args: DeadLettersArgs) -> anyhow::Result<()> {
    let (DeadLettersAction::List(kafka) | DeadLettersAction::Replay(kafka)) = &args.action;
    let (config, es) = settings(kafka, "dead-letters")?;
    let mut out = std::io::stdout().lock();
    match args.action {
        DeadLettersAction::List(_) => {
            let letters = order_kafka_projector::dlq::list(&config)
                .await
                .map_err(|e| anyhow::anyhow!("reading the dead letters: {e}"))?;
            for letter in letters {
                writeln!(out, "{}", serde_json::to_string(&letter)?)?;
            }
        }
        DeadLettersAction::Replay(_) => {
            let read = EsReadStore::open(es)
                .await
                .map_err(|e| anyhow::anyhow!("opening the Elasticsearch read model: {e}"))?;
            let report = order_kafka_projector::replay::replay(&config, &read)
                .await
                .map_err(|e| anyhow::anyhow!("replaying the dead letters: {e}"))?;
            writeln!(out, "{}", serde_json::to_string(&report)?)?;
        }
    }
    Ok(())
}

/// What the admin routes need.
#[derive(Clone)]
pub(crate) struct DeadLetterAdmin {
    pub config: ProjectorConfig,
    pub read: Arc<EsReadStore>,
}

pub(crate) fn router(admin: DeadLetterAdmin) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(list_dead_letters))
        .routes(routes!(replay_dead_letters))
        .with_state(admin)
}

fn admins_only(caller: &order_auth::Principal) -> Result<(), ApiError> {
    if caller.has(Role::Admin) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "only admins may see or replay dead letters",
        ))
    }
}

/// Every dead letter of the Kafka projector, oldest first per dead-letter partition.
#[utoipa::path(get, path = "/api/v1/admin/dead-letters", tag = "admin",
    responses(
        (status = 200, description = "The dead letters", body = Vec<DeadLetter>),
        Unauthorized,
        (status = 403, description = "Admins only", body = order_http::openapi::Problem, content_type = "application/problem+json"),
        Unavailable,
    ),
    security(("bearer" = []))
)]
async fn list_dead_letters(
    State(admin): State<DeadLetterAdmin>,
    Caller(caller): Caller,
) -> Result<axum::Json<Vec<DeadLetter>>, ApiError> {
    admins_only(&caller)?;
    let letters = order_kafka_projector::dlq::list(&admin.config)
        .await
        .map_err(ApiError::unavailable)?;
    Ok(axum::Json(letters))
}

/// Apply every dead letter again (idempotent by version): those applied or now obsolete
/// are committed for the replay's consumer group, those still failing are reported.
#[utoipa::path(post, path = "/api/v1/admin/dead-letters/replay", tag = "admin",
    responses(
        (status = 200, description = "What the replay did", body = ReplayReport),
        Unauthorized,
        (status = 403, description = "Admins only", body = order_http::openapi::Problem, content_type = "application/problem+json"),
        Unavailable,
    ),
    security(("bearer" = []))
)]
async fn replay_dead_letters(
    State(admin): State<DeadLetterAdmin>,
    Caller(caller): Caller,
) -> Result<axum::Json<ReplayReport>, ApiError> {
    admins_only(&caller)?;
    let report = order_kafka_projector::replay::replay(&admin.config, &admin.read)
        .await
        .map_err(ApiError::unavailable)?;
    tracing::warn!(actor = %caller.subject, applied = report.applied,
        still_failing = report.still_failing.len(), "dead letters replayed");
    Ok(axum::Json(report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use crate::config::FileConfig;
    use clap::{CommandFactory, FromArgMatches};

    /// `query-service` parsed from `argv` with `file` applied, as `main` does it, without
    /// the developer's ORDER_PLATFORM_* variables.
    fn query_args(argv: &[&str], file: &str) -> crate::QueryServiceArgs {
        let matches = Cli::command()
            .mut_args(|a| a.env(None))
            .mut_subcommand("query-service", |s| s.mut_args(|a| a.env(None)))
            .try_get_matches_from(argv)
            .expect("valid arguments");
        let Some(Command::QueryService(mut args)) =
            Cli::from_arg_matches(&matches).unwrap().command
        else {
            panic!("not query-service")
        };
        let file: FileConfig = toml::from_str(file).unwrap();
        file.apply_to_query_service(
            &mut args,
            matches.subcommand_matches("query-service").unwrap(),
        );
        args
    }

    #[test]
    fn settings_come_from_flags_then_the_file_then_defaults() {
        let file = "kafka_bootstrap_servers = \"k1:9092\"\n\
                    schema_registry_url = \"http://r/apis/ccompat/v7\"\n\
                    elasticsearch_url = \"http://es:9200\"\n\
                    es_index_prefix = \"staging-\"\n\
                    group_id = \"from-file\"\n";
        let args = query_args(
            &["order-platform", "query-service", "--group-id", "mine"],
            file,
        );
        let (config, es) = settings(&args.kafka, "dead-letters").unwrap();
        assert_eq!(config.kafka.bootstrap_servers(), "k1:9092");
        assert_eq!(config.group_id, "mine", "the flag wins");
        assert_eq!(config.topic, "order-events", "default");
        assert_eq!(es.url, "http://es:9200");
        assert_eq!(es.prefix, "staging-");
        assert_eq!(args.listen, "127.0.0.1:8081".parse().unwrap());
        let args = query_args(&["order-platform", "query-service"], "");
        let (config, _) = settings(
            &KafkaReadArgs {
                kafka_bootstrap_servers: Some("k".into()),
                schema_registry_url: Some("r".into()),
                elasticsearch_url: Some("e".into()),
                ..args.kafka
            },
            "the query service",
        )
        .unwrap();
        assert_eq!(config.group_id, order_kafka_projector::DEFAULT_GROUP_ID);
    }

    #[test]
    fn a_missing_or_bad_setting_is_a_usage_error_naming_it() {
        let args = query_args(&["order-platform", "query-service"], "");
        let error = settings(&args.kafka, "dead-letters").unwrap_err();
        assert!(error.is::<UsageError>());
        let text = error.to_string();
        for part in [
            "--kafka-bootstrap-servers",
            "ORDER_PLATFORM_KAFKA_BOOTSTRAP_SERVERS",
            "`kafka_bootstrap_servers`",
        ] {
            assert!(text.contains(part), "{part}: {text}");
        }
        let args = query_args(
            &["order-platform", "query-service", "--topic", "a b"],
            "kafka_bootstrap_servers = \"k\"\nschema_registry_url = \"r\"\nelasticsearch_url = \"e\"",
        );
        let text = settings(&args.kafka, "dead-letters")
            .unwrap_err()
            .to_string();
        assert!(text.contains("\"a b\""), "{text}");
    }
}
