//! The HTTP side: the two commands the scenarios issue and the read-model
//! lookup the visibility sampler polls. Every request carries the bearer
//! token and has the client-wide timeout; a failure becomes a [`Failure`]
//! keyed by status (or transport error kind), so the report can count them.

use anyhow::{Context, bail};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

use crate::cli::Args;
/// The HTTP side: one client, the base URL and the token.
pub(crate) struct Api {
    client: reqwest::Client,
    base: String,
    /// Where reads go (the query service); `base` unless told otherwise.
    query_base: String,
    auth: String,
}

/// A successful command: the order it touched and the version it produced.
pub(crate) struct Ack {
    pub(crate) order_id: String,
    pub(crate) version: u64,
    /// The `X-Consistency-Token` of the answer, for a read-your-writes read.
    pub(crate) token: Option<String>,
}

/// A failed request: the status (or transport error kind) and some of the body.
pub(crate) struct Failure {
    pub(crate) key: String,
    pub(crate) detail: String,
}

impl Api {
    pub(crate) fn new(args: &Args) -> anyhow::Result<Self> {
        for (flag, text) in [
            ("--url", Some(&args.url)),
            ("--query-url", args.query_url.as_ref()),
        ] {
            let Some(text) = text else { continue };
            let url =
                reqwest::Url::parse(text).with_context(|| format!("{flag} is not a valid URL"))?;
            if url.scheme() != "http" {
                bail!("{flag} must be an http:// URL (this build has no TLS)");
            }
        }
        let client = reqwest::Client::builder()
            .timeout(args.request_timeout)
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(args.concurrency as usize + 4)
            .tcp_nodelay(true)
            .build()?;
        Ok(Api {
            client,
            base: args.url.trim_end_matches('/').to_string(),
            query_base: args
                .query_url
                .as_deref()
                .unwrap_or(&args.url)
                .trim_end_matches('/')
                .to_string(),
            auth: format!("Bearer {}", args.token),
        })
    }

    fn item(sku: &str) -> Value {
        json!({"sku": sku, "productName": format!("Load item {sku}"), "quantity": 1, "unitPrice": "9.99"})
    }

    pub(crate) async fn create_order(&self, customer: &str, sku: &str) -> Result<Ack, Failure> {
        let body = json!({"customerId": customer, "currency": "USD", "items": [Self::item(sku)]});
        self.command(format!("{}/api/v1/orders", self.base), body)
            .await
    }

    pub(crate) async fn add_item(&self, order_id: &str, sku: &str) -> Result<Ack, Failure> {
        self.command(
            format!("{}/api/v1/orders/{order_id}/items", self.base),
            Self::item(sku),
        )
        .await
    }

    pub(crate) async fn approve(&self, order_id: &str) -> Result<Ack, Failure> {
        self.command(
            format!("{}/api/v1/orders/{order_id}/approve", self.base),
            json!({"reason": "load test"}),
        )
        .await
    }

    pub(crate) async fn ship(&self, order_id: &str) -> Result<Ack, Failure> {
        self.command(
            format!("{}/api/v1/orders/{order_id}/ship", self.base),
            json!({"trackingNumber": format!("LG-{order_id}"), "carrier": "loadgen"}),
        )
        .await
    }

    /// `GET /api/v1/orders/{id}` from the read model, as a measured request,
    /// with the consistency token of the client's last command (read your
    /// writes: the answer waits until the read model has applied it).
    pub(crate) async fn get_order(
        &self,
        order_id: &str,
        token: Option<&str>,
    ) -> Result<Ack, Failure> {
        let mut request = self
            .client
            .get(format!("{}/api/v1/orders/{order_id}", self.query_base))
            .header("Authorization", &self.auth);
        if let Some(token) = token {
            request = request.header("X-Consistency-Token", token);
        }
        Self::ack(request).await
    }

    async fn command(&self, url: String, body: Value) -> Result<Ack, Failure> {
        let request = self
            .client
            .post(url)
            .header("Authorization", &self.auth)
            .json(&body);
        Self::ack(request).await
    }

    /// Sends the request and reads `orderId` and `version` from a 2xx body.
    async fn ack(request: reqwest::RequestBuilder) -> Result<Ack, Failure> {
        let response = request.send().await.map_err(transport_failure)?;
        let status = response.status();
        let token = response
            .headers()
            .get("x-consistency-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = response.text().await.map_err(transport_failure)?;
        if !status.is_success() {
            return Err(Failure {
                key: status.as_u16().to_string(),
                detail: truncate(&text, 300),
            });
        }
        let parsed: Value = serde_json::from_str(&text).map_err(|e| Failure {
            key: format!("{} (bad body)", status.as_u16()),
            detail: format!("{e}: {}", truncate(&text, 200)),
        })?;
        let order_id = parsed["orderId"].as_str().map(str::to_string);
        let version = parsed["version"].as_u64();
        match (order_id, version) {
            (Some(order_id), Some(version)) => Ok(Ack {
                order_id,
                version,
                token,
            }),
            _ => Err(Failure {
                key: format!("{} (no orderId/version)", status.as_u16()),
                detail: truncate(&text, 200),
            }),
        }
    }

    /// The read model's version of the order, `None` while it does not know it (404).
    pub(crate) async fn read_version(&self, order_id: &str) -> anyhow::Result<Option<u64>> {
        let response = self
            .client
            .get(format!("{}/api/v1/orders/{order_id}", self.query_base))
            .header("Authorization", &self.auth)
            .send()
            .await?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let text = response.text().await?;
        if !status.is_success() {
            bail!("GET order answered {status}: {}", truncate(&text, 200));
        }
        let parsed: Value = serde_json::from_str(&text)?;
        parsed["version"]
            .as_u64()
            .map(Some)
            .context("GET order body has no numeric `version`")
    }
}

fn transport_failure(e: reqwest::Error) -> Failure {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else {
        "transport"
    };
    Failure {
        key: kind.to_string(),
        detail: truncate(&format!("{e:#}"), 300),
    }
}

pub(crate) fn truncate(s: &str, max: usize) -> String {
    let s = s.trim();
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}
