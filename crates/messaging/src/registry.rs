//! A small client of a Schema Registry's Confluent-compatible REST API.
//!
//! Only what producing and consuming the order events needs: register a schema under a subject
//! (`<topic>-value`), fetch a schema by id, check a schema against a subject's latest version,
//! and set a subject's compatibility level. Tested against Apicurio Registry 3
//! (`/apis/ccompat/v7`); the same calls work on Confluent's registry.
//!
//! A rejected registration ([`RegistryError::Incompatible`]) carries the registry's findings
//! and, next to them, the fields at fault. The registry locates each finding by a JSON pointer
//! into the schema, which [`field_path`] turns into a path. But for a change inside one record
//! of the `payload` union, the registry (Apicurio, like Avro Java's checker that it uses, and
//! Confluent's) stops at the union: "reader union lacking writer type: RECORD at
//! /fields/8/type/5", i.e. `payload<OrderShipped>`. So on a refusal the client also fetches the
//! subject's compatibility level and the versions it was checked against, and runs the offline
//! check ([`crate::compat`]) on them: that names the field
//! (`OrderEvent.payload<OrderShipped>.carrier`). The verdict stays the registry's.

use crate::compat::{CompatibilityMode, check_compatibility};
use apache_avro::Schema;
use serde::Deserialize;
use serde_json::{Value as Json, json};
use std::time::Duration;

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// The subject a topic's value schemas live under (Confluent's `TopicNameStrategy`).
pub fn value_subject(topic: &str) -> String {
    format!("{topic}-value")
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("schema registry at {url} is unreachable: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("schema registry answered {status} to {method} {url}: {body}")]
    Status {
        method: &'static str,
        url: String,
        status: u16,
        body: String,
    },
    /// The registry refused the schema because it is incompatible with the subject's history.
    #[error(
        "schema registry refused the schema for {subject} as incompatible: {}; at fault: {}",
        details.join("; "),
        if fields.is_empty() { "(not located)".to_string() } else { fields.join("; ") }
    )]
    Incompatible {
        subject: String,
        /// The registry's own findings, JSON pointers annotated with field paths.
        details: Vec<String>,
        /// The fields at fault, by the offline check against the versions the registry holds.
        fields: Vec<String>,
    },
    #[error("schema registry sent an unexpected body for {url}: {reason}")]
    Malformed { url: String, reason: String },
}

/// The registry's answer to "may this schema be the subject's next version?".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompatibilityReport {
    pub is_compatible: bool,
    /// Why not, when the registry says (Confluent's `verbose=true`; Apicurio 3.3's ccompat API
    /// gives only the verdict here, and its reasons on a refused registration instead).
    pub messages: Vec<String>,
    /// When incompatible: the fields at fault, by the offline check against the subject's
    /// versions (see the module documentation).
    pub fields: Vec<String>,
}

/// A client of one registry; cheap to clone.
#[derive(Clone, Debug)]
pub struct SchemaRegistryClient {
    /// The Confluent-compatible base URL, e.g. `http://127.0.0.1:58081/apis/ccompat/v7`.
    base_url: String,
    http: reqwest::Client,
}

impl SchemaRegistryClient {
    /// `base_url` is the Confluent-compatible API root (`SCHEMA_REGISTRY_URL`).
    pub fn new(base_url: &str) -> Result<SchemaRegistryClient, RegistryError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|source| RegistryError::Unreachable {
                url: base_url.to_string(),
                source,
            })?;
        Ok(SchemaRegistryClient {
            base_url: base_url.trim_end_matches('/').to_string(),
            http,
        })
    }

    /// Registers `schema` (Avro JSON text) under `subject` and returns its id; registering the
    /// same schema again returns the same id.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let url = format!("{}/subjects/{subject}/versions", self.base_url);
        let body = json!({ "schema": schema, "schemaType": "AVRO" });
        let response = self.send("POST", &url, Some(body)).await?;
        match response {
            Answer::Ok(json) => id_of(&json, &url),
            Answer::Refused { status: 409, body } => Err(RegistryError::Incompatible {
                subject: subject.to_string(),
                details: explain_refusal(&body, schema),
                fields: self.fields_at_fault(subject, schema).await,
            }),
            Answer::Refused { status, body } => Err(status_error("POST", &url, status, body)),
        }
    }

    /// The schema text registered under `id`.
    pub async fn schema_by_id(&self, id: u32) -> Result<String, RegistryError> {
        let url = format!("{}/schemas/ids/{id}", self.base_url);
        match self.send("GET", &url, None).await? {
            Answer::Ok(json) => json
                .get("schema")
                .and_then(Json::as_str)
                .map(str::to_string)
                .ok_or_else(|| RegistryError::Malformed {
                    url,
                    reason: "no `schema` string".into(),
                }),
            Answer::Refused { status, body } => Err(status_error("GET", &url, status, body)),
        }
    }

    /// Asks whether `schema` is compatible with the latest version of `subject`, under the
    /// subject's compatibility level.
    pub async fn check_compatibility(
        &self,
        subject: &str,
        schema: &str,
    ) -> Result<CompatibilityReport, RegistryError> {
        let url = format!(
            "{}/compatibility/subjects/{subject}/versions/latest?verbose=true",
            self.base_url
        );
        let body = json!({ "schema": schema, "schemaType": "AVRO" });
        match self.send("POST", &url, Some(body)).await? {
            Answer::Ok(json) => {
                #[derive(Deserialize)]
                struct Report {
                    is_compatible: bool,
                    #[serde(default)]
                    messages: Vec<String>,
                }
                let report: Report =
                    serde_json::from_value(json).map_err(|e| RegistryError::Malformed {
                        url,
                        reason: e.to_string(),
                    })?;
                let fields = if report.is_compatible {
                    Vec::new()
                } else {
                    self.fields_at_fault(subject, schema).await
                };
                Ok(CompatibilityReport {
                    is_compatible: report.is_compatible,
                    messages: report.messages,
                    fields,
                })
            }
            Answer::Refused { status, body } => Err(status_error("POST", &url, status, body)),
        }
    }

    /// Sets the compatibility level of `subject` (`BACKWARD`, `FORWARD`, `FULL`, their
    /// `_TRANSITIVE` forms, or `NONE`). The registry enforces it on every registration.
    pub async fn set_compatibility(&self, subject: &str, level: &str) -> Result<(), RegistryError> {
        let url = format!("{}/config/{subject}", self.base_url);
        match self
            .send("PUT", &url, Some(json!({ "compatibility": level })))
            .await?
        {
            Answer::Ok(_) => Ok(()),
            Answer::Refused { status, body } => Err(status_error("PUT", &url, status, body)),
        }
    }

    /// Deletes `subject` and its versions (for tests that use throw-away subjects).
    pub async fn delete_subject(&self, subject: &str) -> Result<(), RegistryError> {
        let url = format!("{}/subjects/{subject}", self.base_url);
        match self.send("DELETE", &url, None).await? {
            Answer::Ok(_) => Ok(()),
            Answer::Refused { status, body } => Err(status_error("DELETE", &url, status, body)),
        }
    }

    /// The offline check of `schema` against the versions of `subject` that its compatibility
    /// level compares with (all for `*_TRANSITIVE`, else the latest). Best effort: anything the
    /// registry does not answer just leaves the list shorter.
    async fn fields_at_fault(&self, subject: &str, schema: &str) -> Vec<String> {
        let Ok(new) = Schema::parse_str(schema) else {
            return vec!["the schema does not parse".into()];
        };
        let level = match self
            .send("GET", &format!("{}/config/{subject}", self.base_url), None)
            .await
        {
            Ok(Answer::Ok(json)) => json
                .get("compatibilityLevel")
                .or_else(|| json.get("compatibility"))
                .and_then(Json::as_str)
                .unwrap_or("BACKWARD")
                .to_string(),
            _ => "BACKWARD".to_string(),
        };
        let mode = if level.starts_with("FULL") {
            CompatibilityMode::Full
        } else if level.starts_with("FORWARD") {
            CompatibilityMode::Forward
        } else {
            CompatibilityMode::Backward
        };
        let url = format!("{}/subjects/{subject}/versions", self.base_url);
        let Ok(Answer::Ok(versions)) = self.send("GET", &url, None).await else {
            return Vec::new();
        };
        let mut versions: Vec<u64> = versions
            .as_array()
            .map(|v| v.iter().filter_map(Json::as_u64).collect())
            .unwrap_or_default();
        if !level.ends_with("_TRANSITIVE") {
            versions = versions.last().copied().into_iter().collect();
        }
        let mut fields = Vec::new();
        for version in versions {
            let url = format!("{url}/{version}");
            let Ok(Answer::Ok(json)) = self.send("GET", &url, None).await else {
                continue;
            };
            let Some(old) = json
                .get("schema")
                .and_then(Json::as_str)
                .and_then(|text| Schema::parse_str(text).ok())
            else {
                continue;
            };
            if let Err(problems) = check_compatibility(&old, &new, mode) {
                fields.extend(
                    problems
                        .iter()
                        .map(|p| format!("{p} [against version {version}, {level}]")),
                );
            }
        }
        fields
    }

    async fn send(
        &self,
        method: &'static str,
        url: &str,
        body: Option<Json>,
    ) -> Result<Answer, RegistryError> {
        let unreachable = |source| RegistryError::Unreachable {
            url: url.to_string(),
            source,
        };
        let mut request = match method {
            "GET" => self.http.get(url),
            "PUT" => self.http.put(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url),
        }
        .header(reqwest::header::ACCEPT, CONTENT_TYPE);
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
                .body(body.to_string());
        }
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let text = response.text().await.map_err(unreachable)?;
        if status.is_success() {
            let json = serde_json::from_str(&text).map_err(|e| RegistryError::Malformed {
                url: url.to_string(),
                reason: format!("{e}: {text}"),
            })?;
            Ok(Answer::Ok(json))
        } else {
            Ok(Answer::Refused {
                status: status.as_u16(),
                body: text,
            })
        }
    }
}

enum Answer {
    Ok(Json),
    Refused { status: u16, body: String },
}

fn status_error(method: &'static str, url: &str, status: u16, body: String) -> RegistryError {
    RegistryError::Status {
        method,
        url: url.to_string(),
        status,
        body,
    }
}

fn id_of(json: &Json, url: &str) -> Result<u32, RegistryError> {
    json.get("id")
        .and_then(Json::as_u64)
        .and_then(|id| u32::try_from(id).ok())
        .ok_or_else(|| RegistryError::Malformed {
            url: url.to_string(),
            reason: format!("no numeric `id` in {json}"),
        })
}

/// The registry's reasons for refusing `schema`, each JSON pointer followed by the path of the
/// field it points at in `schema`.
fn explain_refusal(body: &str, schema: &str) -> Vec<String> {
    let message = serde_json::from_str::<Json>(body)
        .ok()
        .and_then(|j| j.get("message").and_then(Json::as_str).map(str::to_string))
        .unwrap_or_else(|| body.to_string());
    let schema: Json = serde_json::from_str(schema).unwrap_or(Json::Null);
    // Apicurio: "... list of diff types: [reason at /pointer, reason at /pointer]".
    let diffs = message
        .split_once("list of diff types: [")
        .and_then(|(_, rest)| rest.rsplit_once(']'))
        .map(|(list, _)| list.to_string());
    let Some(diffs) = diffs else {
        return vec![message];
    };
    diffs
        .split(", ")
        .map(|diff| match diff.rsplit_once(" at /") {
            Some((_, pointer)) => match field_path(&schema, &format!("/{pointer}")) {
                Some(path) => format!("{diff} (field {path})"),
                None => diff.to_string(),
            },
            None => diff.to_string(),
        })
        .collect()
}

/// The path of the field a JSON pointer into an Avro schema points at, e.g.
/// `/fields/8/type/1/fields/0/type` → `OrderEvent.payload<ItemAdded>.line`. `None` if the
/// pointer leads nowhere in this schema.
pub fn field_path(schema: &Json, pointer: &str) -> Option<String> {
    let mut node = schema;
    let mut path = node
        .get("name")
        .and_then(Json::as_str)
        .unwrap_or("<root>")
        .to_string();
    let mut tokens = pointer.trim_start_matches('/').split('/');
    while let Some(token) = tokens.next() {
        match token {
            "" => {}
            "fields" => {
                let index: usize = tokens.next()?.parse().ok()?;
                node = node.get("fields")?.get(index)?;
                path.push('.');
                path.push_str(node.get("name")?.as_str()?);
            }
            "type" => node = node.get("type")?,
            "items" => {
                node = node.get("items")?;
                path.push_str("[]");
            }
            "values" => {
                node = node.get("values")?;
                path.push_str("{}");
            }
            index => {
                // A union branch.
                node = node.get(index.parse::<usize>().ok()?)?;
                if let Some(name) = node.get("name").and_then(Json::as_str) {
                    path.push_str(&format!("<{name}>"));
                }
            }
        }
    }
    Some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pointer_becomes_the_path_of_the_field() {
        let schema: Json = serde_json::from_str(crate::schema::ORDER_EVENT_AVSC).unwrap();
        assert_eq!(
            field_path(&schema, "/fields/8/type/1/fields/0/type").as_deref(),
            Some("OrderEvent.payload<ItemAdded>.line")
        );
        assert_eq!(
            field_path(
                &schema,
                "/fields/8/type/0/fields/3/type/items/fields/3/type"
            )
            .as_deref(),
            Some("OrderEvent.payload<OrderCreated>.lines[].unitPriceMinor")
        );
        assert_eq!(field_path(&schema, "/fields/99"), None);
    }

    #[test]
    fn a_refusal_names_each_field() {
        let schema = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"}]}"#;
        let body = r#"{"message":"Incompatible artifact: x-value [AVRO], num of incompatible diffs: {2}, list of diff types: [reader type: LONG not compatible with writer type: STRING at /fields/0/type, b at /fields/1]","error_code":409}"#;
        assert_eq!(
            explain_refusal(body, schema),
            vec![
                "reader type: LONG not compatible with writer type: STRING at /fields/0/type (field R.a)"
                    .to_string(),
                "b at /fields/1".to_string(),
            ]
        );
    }
}
