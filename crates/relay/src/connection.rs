//! How every Kafka client of a process reaches the brokers: the bootstrap servers and the
//! connection settings an operator gives (TLS, SASL, socket tuning), the same for the relay's
//! producer, its scans and admin client, and the query side's consumers.
//!
//! Only connection settings are accepted ([`ALLOWED`]). What a client does with its messages
//! (`transactional.id`, `isolation.level`, `enable.auto.commit`, `acks`, …) is set by the code
//! that creates it: exactly-once delivery depends on those, so they cannot be overridden.

use rdkafka::config::ClientConfig;
use std::fmt;

/// The librdkafka settings an operator may give, by name or by prefix (ending in `.`).
pub const ALLOWED: &[&str] = &[
    "security.protocol",
    "ssl.",
    "ssl_key.",
    "enable.ssl.certificate.verification",
    "sasl.",
    "socket.",
    "client.id",
    "client.rack",
    "broker.address.family",
    "connections.max.idle.ms",
    "reconnect.backoff.ms",
    "reconnect.backoff.max.ms",
];

/// Bootstrap servers plus connection settings: what [`KafkaConnection::client`] starts every
/// client from.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KafkaConnection {
    bootstrap_servers: String,
    options: Vec<(String, String)>,
}

impl KafkaConnection {
    /// Plaintext, no authentication: the brokers at `bootstrap_servers` (`host:port,…`).
    pub fn new(bootstrap_servers: impl Into<String>) -> KafkaConnection {
        KafkaConnection {
            bootstrap_servers: bootstrap_servers.into(),
            options: Vec::new(),
        }
    }

    /// Adds connection settings, e.g. `security.protocol=sasl_ssl`. Refuses a setting that is
    /// not a connection setting ([`ALLOWED`]) or that librdkafka does not accept (unknown
    /// name, bad value), naming it.
    pub fn with_options<K, V>(
        mut self,
        options: impl IntoIterator<Item = (K, V)>,
    ) -> Result<KafkaConnection, String>
    where
        K: Into<String>,
        V: Into<String>,
    {
        for (key, value) in options {
            let (key, value) = (key.into().trim().to_string(), value.into());
            if !is_allowed(&key) {
                return Err(format!(
                    "{key}: not a connection setting; the Kafka clients set their own \
                     delivery settings. Allowed: {}",
                    ALLOWED
                        .iter()
                        .map(|a| if a.ends_with('.') {
                            format!("{a}*")
                        } else {
                            a.to_string()
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            self.options.retain(|(k, _)| *k != key);
            self.options.push((key, value));
        }
        // librdkafka checks names and values when a configuration is built, not when it is set.
        self.client()
            .create_native_config()
            .map_err(|e| format!("{e}"))?;
        Ok(self)
    }

    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap_servers
    }

    /// A client configuration with the bootstrap servers and every connection setting; the
    /// caller adds what its client does.
    pub fn client(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap_servers);
        for (key, value) in &self.options {
            config.set(key, value);
        }
        config
    }
}

fn is_allowed(key: &str) -> bool {
    ALLOWED
        .iter()
        .any(|allowed| match allowed.strip_suffix('.') {
            Some(prefix) => {
                key.len() > allowed.len() && key.starts_with(allowed) && !prefix.is_empty()
            }
            None => key == *allowed,
        })
}

/// Whether a setting's value is a secret, shown as `***` by `Debug`.
fn is_secret(key: &str) -> bool {
    [
        "password",
        "secret",
        "ssl.key.pem",
        "ssl_key.pem",
        "sasl.oauthbearer.config",
    ]
    .iter()
    .any(|s| key.contains(s))
}

/// Passwords and keys are not printed: a configuration ends up in logs.
impl fmt::Debug for KafkaConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let options: Vec<String> = self
            .options
            .iter()
            .map(|(k, v)| format!("{k}={}", if is_secret(k) { "***" } else { v }))
            .collect();
        f.debug_struct("KafkaConnection")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("options", &options)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_settings_reach_every_client() {
        let kafka = KafkaConnection::new("k1:9093,k2:9093")
            .with_options([
                ("security.protocol", "sasl_ssl"),
                ("sasl.mechanisms", "PLAIN"),
                ("sasl.username", "relay"),
                ("sasl.password", "s3cret"),
                ("ssl.ca.location", "/etc/ca.pem"),
            ])
            .unwrap();
        let client = kafka.client();
        assert_eq!(client.get("bootstrap.servers"), Some("k1:9093,k2:9093"));
        assert_eq!(client.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(client.get("sasl.password"), Some("s3cret"));
        assert_eq!(client.get("ssl.ca.location"), Some("/etc/ca.pem"));
    }

    #[test]
    fn a_setting_given_twice_keeps_the_last() {
        let kafka = KafkaConnection::new("k:9092")
            .with_options([("client.id", "a"), ("client.id", "b")])
            .unwrap();
        assert_eq!(kafka.client().get("client.id"), Some("b"));
    }

    #[test]
    fn delivery_settings_are_refused_by_name() {
        for key in [
            "enable.idempotence",
            "isolation.level",
            "transactional.id",
            "enable.auto.commit",
            "bootstrap.servers",
            "ssl",
        ] {
            let error = KafkaConnection::new("k:9092")
                .with_options([(key, "x")])
                .unwrap_err();
            assert!(
                error.starts_with(&format!("{key}: not a connection setting")),
                "{error}"
            );
            assert!(error.contains("security.protocol, ssl.*"), "{error}");
        }
    }

    #[test]
    fn librdkafka_refuses_unknown_names_and_bad_values() {
        let unknown = KafkaConnection::new("k:9092")
            .with_options([("ssl.no.such.thing", "1")])
            .unwrap_err();
        assert!(unknown.contains("ssl.no.such.thing"), "{unknown}");
        let bad = KafkaConnection::new("k:9092")
            .with_options([("security.protocol", "carrier_pigeon")])
            .unwrap_err();
        assert!(bad.contains("security.protocol"), "{bad}");
    }

    #[test]
    fn debug_hides_secrets() {
        let kafka = KafkaConnection::new("k:9092")
            .with_options([("sasl.username", "relay"), ("sasl.password", "s3cret")])
            .unwrap();
        let shown = format!("{kafka:?}");
        assert!(shown.contains("sasl.username=relay"), "{shown}");
        assert!(shown.contains("sasl.password=***"), "{shown}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
