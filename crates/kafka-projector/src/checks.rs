//! The `/health/ready` checks of a Kafka-fed query side: Kafka, the registry,
//! Elasticsearch, each probed directly (so the one that is down is named), and the
//! projector's own verdict with its lag as detail.

use crate::KafkaProjector;
use async_trait::async_trait;
use order_http::ReadinessCheck;
use order_read_model::ReadStore;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::sync::Arc;
use std::time::Duration;

/// How long one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The checks of `projector`'s dependencies and of the projector itself.
pub fn readiness_checks(projector: &Arc<KafkaProjector>) -> Vec<Arc<dyn ReadinessCheck>> {
    vec![
        Arc::new(KafkaCheck(projector.clone())),
        Arc::new(RegistryCheck(projector.clone())),
        Arc::new(ElasticsearchCheck(projector.clone())),
        Arc::new(ProjectorCheck(projector.clone())),
    ]
}

struct KafkaCheck(Arc<KafkaProjector>);

#[async_trait]
impl ReadinessCheck for KafkaCheck {
    fn name(&self) -> &'static str {
        "kafka"
    }
    async fn check(&self) -> Result<(), String> {
        let config = self.0.config().clone();
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer =
                config.kafka.client().create().map_err(|e| e.to_string())?;
            let found = consumer
                .fetch_metadata(Some(&config.topic), PROBE_TIMEOUT)
                .map_err(|e| format!("unreachable: {e}"))
                .and_then(|m| {
                    let exists = m
                        .topics()
                        .iter()
                        .any(|t| t.name() == config.topic && !t.partitions().is_empty());
                    if exists {
                        Ok(())
                    } else {
                        Err(format!(
                            "topic {} does not exist (is the relay running?)",
                            config.topic
                        ))
                    }
                });
            std::thread::spawn(move || drop(consumer));
            found
        })
        .await
        .map_err(|e| e.to_string())?
    }
    async fn detail(&self) -> Option<serde_json::Value> {
        let config = self.0.config();
        Some(serde_json::json!({"topic": config.topic, "groupId": config.group_id}))
    }
}

struct RegistryCheck(Arc<KafkaProjector>);

#[async_trait]
impl ReadinessCheck for RegistryCheck {
    fn name(&self) -> &'static str {
        "schemaRegistry"
    }
    async fn check(&self) -> Result<(), String> {
        let url = format!(
            "{}/subjects",
            self.0.config().schema_registry_url.trim_end_matches('/')
        );
        let client = reqwest::Client::builder()
            .timeout(PROBE_TIMEOUT)
            .build()
            .map_err(|e| e.to_string())?;
        match client.get(&url).send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("GET {url} answered {}", r.status())),
            Err(e) => Err(format!("unreachable: {e}")),
        }
    }
}

struct ElasticsearchCheck(Arc<KafkaProjector>);

#[async_trait]
impl ReadinessCheck for ElasticsearchCheck {
    fn name(&self) -> &'static str {
        "elasticsearch"
    }
    async fn check(&self) -> Result<(), String> {
        self.0.read_store().ping().await.map_err(|e| e.to_string())
    }
}

struct ProjectorCheck(Arc<KafkaProjector>);

#[async_trait]
impl ReadinessCheck for ProjectorCheck {
    fn name(&self) -> &'static str {
        "projector"
    }
    async fn check(&self) -> Result<(), String> {
        let status = self.0.health().status();
        match status.state {
            "running" => Ok(()),
            "stopped" => Err("the projector is not running".into()),
            _ => Err(format!(
                "the projector keeps failing on {:?}: {}",
                status.failing_on,
                status.last_error.unwrap_or_default()
            )),
        }
    }
    async fn detail(&self) -> Option<serde_json::Value> {
        serde_json::to_value(self.0.health().status()).ok()
    }
}
