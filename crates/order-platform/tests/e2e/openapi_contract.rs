//! The OpenAPI document's promises about errors and links, checked on the
//! served document (dev/api_fuzz then holds the server to them, request by request).

use crate::support::{Backend, Resp, Server};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::collections::BTreeSet;

async fn document(server: &Server) -> Value {
    let doc = Resp::from(
        server
            .request(Method::GET, "/api/v1/openapi.json", None)
            .send()
            .await,
    )
    .await;
    doc.expect(StatusCode::OK);
    doc.json
}

/// `(label, operation)` for every operation of the document.
fn operations(doc: &Value) -> Vec<(String, &Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            out.push((format!("{} {path}", method.to_uppercase()), operation));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_is_a_problem_document_and_every_secured_route_says_401() {
    let server = Server::start(Backend::Sqlite).await;
    let doc = document(&server).await;

    let problem = &doc["components"]["schemas"]["Problem"];
    let required: BTreeSet<&str> = problem["required"]
        .as_array()
        .expect("Problem.required")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for field in ["type", "title", "status", "detail", "code"] {
        assert!(
            required.contains(field),
            "Problem requires {field}: {problem}"
        );
    }

    for (label, operation) in operations(&doc) {
        let responses = operation["responses"].as_object().expect("responses");
        for (status, response) in responses {
            let code: u16 = status.parse().expect("numeric status");
            if code >= 400 {
                assert_eq!(
                    response["content"]["application/problem+json"]["schema"]["$ref"],
                    "#/components/schemas/Problem",
                    "{label} {status}: {response}"
                );
            }
        }
        if operation.get("security").is_some() {
            assert!(responses.contains_key("401"), "{label} documents 401");
            assert!(
                responses["401"]["headers"]
                    .get("WWW-Authenticate")
                    .is_some(),
                "{label} 401 carries WWW-Authenticate"
            );
        }
        for status in ["401", "500", "503"] {
            assert!(
                responses.contains_key(status),
                "{label} answers {status} (no token, a bug, store down)"
            );
        }
        if operation.get("parameters").is_some() || operation.get("requestBody").is_some() {
            assert!(
                responses.contains_key("400"),
                "{label}: malformed input is 400"
            );
        }
        if operation.get("requestBody").is_some() {
            for status in ["413", "415"] {
                assert!(responses.contains_key(status), "{label} documents {status}");
            }
            for (media, content) in operation["requestBody"]["content"]
                .as_object()
                .expect("content")
            {
                assert_eq!(media, "application/json", "{label}");
                let schema = &content["schema"];
                assert!(schema["$ref"].is_string(), "{label}: a named schema");
            }
        }
        if label.contains("{id}") && label.starts_with("POST") {
            assert!(responses.contains_key("412"), "{label} documents 412");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_refuse_unknown_fields_and_the_create_answer_links_to_every_order_route() {
    let server = Server::start(Backend::Sqlite).await;
    let doc = document(&server).await;
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");

    // Every object a client sends is closed: the server refuses unknown fields (400).
    fn closed(label: &str, schema: &Value) {
        if schema["type"] == "object" {
            assert_eq!(
                schema["additionalProperties"],
                Value::Bool(false),
                "{label}: {schema}"
            );
        }
        for key in ["oneOf", "anyOf"] {
            for branch in schema[key].as_array().into_iter().flatten() {
                closed(label, branch);
            }
        }
        for property in schema["properties"].as_object().into_iter().flatten() {
            closed(label, property.1);
        }
        closed_items(label, schema);
    }
    fn closed_items(label: &str, schema: &Value) {
        if let Some(items) = schema.get("items") {
            closed(label, items);
        }
    }
    for name in [
        "CreateOrderBody",
        "ItemBody",
        "ReasonBody",
        "RejectBody",
        "ShipBody",
    ] {
        closed(name, &schemas[name]);
    }

    let ids: BTreeSet<String> = operations(&doc)
        .iter()
        .filter_map(|(_, op)| op["operationId"].as_str().map(str::to_string))
        .collect();
    let create = &doc["paths"]["/api/v1/orders"]["post"]["responses"]["201"];
    let links = create["links"].as_object().expect("links on 201");
    let mut targets = BTreeSet::new();
    for (name, link) in links {
        let target = link["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("link {name} names its operation: {link}"));
        assert!(ids.contains(target), "link {name} → {target} exists");
        assert_eq!(
            link["parameters"]["id"], "$response.body#/orderId",
            "link {name}"
        );
        targets.insert(target.to_string());
    }
    // Every operation with an `{id}` is reachable from the create answer.
    for (label, op) in operations(&doc) {
        if label.contains("/orders/{id}") {
            let id = op["operationId"].as_str().expect("operationId");
            assert!(targets.contains(id), "{label} ({id}) is linked from create");
        }
    }
}
