//! The few Elasticsearch REST calls this crate makes, as JSON over reqwest.
//!
//! A thin layer on purpose: the adapter needs a dozen endpoints (`_bulk`, `_mget`,
//! `_search`, `_doc`, index and alias admin), all plain JSON, and reqwest is in the
//! workspace already. The official `elasticsearch` crate has only alpha releases
//! (8.19.0-alpha.1 for Elasticsearch 8), is some 72K lines of generated API,
//! turns on native-tls by default and brings serde_with, lazy_static and others,
//! while its request bodies would still be `serde_json::Value`s: no gain here. Every failure becomes [`ReadError::Unavailable`] naming the
//! request, so a log line says which call failed and what Elasticsearch answered.

use order_read_model::ReadError;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::time::Duration;

/// An Elasticsearch node's base URL and a pooled HTTP client.
#[derive(Clone, Debug)]
pub(crate) struct Es {
    /// Without a trailing slash, e.g. `http://127.0.0.1:9200`.
    base: String,
    /// Shared by every call: keeps connections alive between batches.
    http: reqwest::Client,
}

/// A response whose status the caller decides about (404 and 409 are answers here).
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) body: Value,
}

impl Es {
    pub(crate) fn new(base: &str, timeout: Duration) -> Result<Es, ReadError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| ReadError::Unavailable(format!("building the HTTP client: {e}")))?;
        Ok(Es {
            base: base.trim_end_matches('/').to_string(),
            http,
        })
    }

    /// Sends a request and returns status and JSON body, whatever the status.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, ReadError> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(body);
        }
        self.send(method, path, request).await
    }

    /// Sends newline-delimited JSON (the `_bulk` body).
    pub(crate) async fn call_ndjson(&self, path: &str, body: String) -> Result<Answer, ReadError> {
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
            .body(body);
        self.send(Method::POST, path, request).await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Answer, ReadError> {
        let response = request
            .send()
            .await
            .map_err(|e| ReadError::Unavailable(format!("Elasticsearch {method} {path}: {e}")))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ReadError::Unavailable(format!("Elasticsearch {method} {path}: {e}")))?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|e| {
                ReadError::Unavailable(format!(
                    "Elasticsearch {method} {path} answered {status} with a body that is not JSON: {e}"
                ))
            })?
        };
        Ok(Answer { status, body })
    }

    /// Like [`Es::call`], but any status other than 2xx is an error.
    pub(crate) async fn ok(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ReadError> {
        let answer = self.call(method.clone(), path, body).await?;
        if answer.status.is_success() {
            Ok(answer.body)
        } else {
            Err(failed(&method, path, &answer))
        }
    }
}

/// The error for a request Elasticsearch refused.
pub(crate) fn failed(method: &Method, path: &str, answer: &Answer) -> ReadError {
    let reason = answer
        .body
        .pointer("/error/reason")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| answer.body.to_string());
    ReadError::Unavailable(format!(
        "Elasticsearch {method} {path} answered {}: {reason}",
        answer.status
    ))
}
