//! Requests and answers as the tests write and read them: request bodies, [`Resp`] (an
//! answer read whole, with its checks), and [`catch`].

use futures::FutureExt as _;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

/// The JSON body of a create-order request.
pub fn order_body(customer: &str, currency: &str, items: &[(&str, &str, i64, &str)]) -> Value {
    json!({
        "customerId": customer,
        "currency": currency,
        "items": items.iter().map(|(sku, name, q, p)| item(sku, name, *q, p)).collect::<Vec<_>>(),
    })
}

pub fn item(sku: &str, name: &str, quantity: i64, price: &str) -> Value {
    json!({"sku": sku, "productName": name, "quantity": quantity, "unitPrice": price})
}

/// A response, read completely.
#[derive(Clone, Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Resp {
    pub async fn from(result: reqwest::Result<reqwest::Response>) -> Resp {
        let response = result.expect("the server answers the request");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("read the response body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            text,
            json,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    #[track_caller]
    pub fn expect(&self, status: StatusCode) -> &Resp {
        assert_eq!(self.status, status, "unexpected answer: {self}");
        self
    }

    /// Asserts a problem document with this status and code.
    #[track_caller]
    pub fn expect_problem(&self, status: StatusCode, code: &str) -> &Resp {
        assert_eq!(self.status, status, "unexpected answer: {self}");
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "problem content type: {self}"
        );
        assert_eq!(self.json["code"], code, "problem code: {self}");
        assert_eq!(
            self.json["status"],
            status.as_u16(),
            "problem status field: {self}"
        );
        assert!(
            self.json["title"].is_string() && self.json["type"].is_string(),
            "problem shape: {self}"
        );
        self
    }

    pub fn order_id(&self) -> Uuid {
        self.json["orderId"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no orderId in {self}"))
    }

    pub fn version(&self) -> u64 {
        self.json["version"]
            .as_u64()
            .unwrap_or_else(|| panic!("no version in {self}"))
    }

    pub fn etag(&self) -> Option<&str> {
        self.header("etag")
    }

    pub fn consistency_token(&self) -> String {
        self.header("x-consistency-token")
            .unwrap_or_else(|| panic!("no X-Consistency-Token in {self}"))
            .to_string()
    }
}

impl std::fmt::Display for Resp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text: String = self.text.chars().take(2000).collect();
        write!(f, "{} {:?} {}", self.status, self.headers, text)
    }
}

/// Runs `f` and turns a panic into `Err` (keeps a failing task from hiding others).
pub async fn catch<F: std::future::Future>(f: F) -> Result<F::Output, String> {
    std::panic::AssertUnwindSafe(f)
        .catch_unwind()
        .await
        .map_err(|e| {
            e.downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        })
}
