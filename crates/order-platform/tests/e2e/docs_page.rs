//! The pages a person opens first: `/` points to the API docs and the OpenAPI
//! document, `/api/docs` is Swagger UI served entirely by the server itself
//! (no request leaves for another origin: it works offline), and the document
//! says whose API it is and how amounts are written.

use crate::support::{Backend, Resp, Server};
use reqwest::{Method, StatusCode};
use serde_json::Value;

async fn get(server: &Server, path: &str) -> Resp {
    let resp = Resp::from(server.request(Method::GET, path, None).send().await).await;
    resp.expect(StatusCode::OK);
    resp
}

/// Every value of `attr="…"` in `html`.
fn attribute_values<'a>(html: &'a str, attr: &str) -> Vec<&'a str> {
    let needle = format!("{attr}=\"");
    html.match_indices(&needle)
        .filter_map(|(at, _)| {
            let rest = &html[at + needle.len()..];
            rest.find('"').map(|end| &rest[..end])
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_page_loads_swagger_ui_from_the_server_itself() {
    let server = Server::start(Backend::Sqlite).await;
    let page = get(&server, "/api/docs").await;
    assert!(
        page.header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "{page}"
    );
    assert!(
        !page.text.contains("://") && !page.text.contains("\"//"),
        "the page names another origin: {}",
        page.text
    );
    let scripts = attribute_values(&page.text, "src");
    let styles = attribute_values(&page.text, "href");
    assert!(scripts.len() >= 2, "{}", page.text);
    assert!(!styles.is_empty(), "{}", page.text);
    for url in scripts.iter().chain(&styles) {
        assert!(url.starts_with('/'), "{url} is not a path of this server");
        let asset = get(&server, url).await;
        let content_type = asset.header("content-type").unwrap_or_default();
        let expected = if url.ends_with(".css") {
            "text/css"
        } else {
            "text/javascript"
        };
        assert!(content_type.starts_with(expected), "{url}: {content_type}");
        assert!(!asset.text.is_empty(), "{url} is empty");
    }
    let bundle = get(&server, "/api/docs/swagger-ui-bundle.js").await;
    assert!(bundle.text.contains("SwaggerUIBundle"), "not Swagger UI");
    let init = get(&server, "/api/docs/init.js").await;
    assert!(
        init.text.contains("\"/api/v1/openapi.json\""),
        "{}",
        init.text
    );
    // Swagger UI would otherwise send our document to validator.swagger.io.
    assert!(init.text.contains("validatorUrl: null"), "{}", init.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_root_links_to_the_docs_and_the_openapi_document() {
    let server = Server::start(Backend::Sqlite).await;
    let root = get(&server, "/").await;
    assert!(
        root.header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "{root}"
    );
    let links = attribute_values(&root.text, "href");
    for wanted in ["/api/docs", "/api/v1/openapi.json"] {
        assert!(links.contains(&wanted), "{wanted} not in {links:?}");
        get(&server, wanted).await;
    }
}

async fn document(server: &Server) -> Value {
    get(server, "/api/v1/openapi.json").await.json
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_info_is_ours_not_the_generators() {
    let server = Server::start(Backend::Sqlite).await;
    let info = &document(&server).await["info"];
    assert_eq!(info["title"], "Order Platform API", "{info}");
    assert_eq!(info["license"]["identifier"], "Apache-2.0", "{info}");
    assert_eq!(info["license"]["name"], "Apache-2.0", "{info}");
    assert_eq!(
        info["contact"]["name"], "Order Platform maintainers",
        "{info}"
    );
    assert!(
        !info.to_string().to_lowercase().contains("utoipa") && !info.to_string().contains("MIT"),
        "the generator's own metadata leaked into info: {info}"
    );
}

/// Every `properties.unitPrice` schema under `value`, with the currencies of
/// the object that holds it (empty when it has no `currency` enum).
fn unit_prices<'a>(value: &'a Value, out: &mut Vec<(Vec<String>, &'a Value)>) {
    match value {
        Value::Object(map) => {
            if let Some(price) = map.get("properties").and_then(|p| p.get("unitPrice")) {
                out.push((Vec::new(), price));
            }
            let currencies: Vec<String> = map
                .get("properties")
                .and_then(|p| p["currency"]["enum"].as_array())
                .map(|codes| {
                    codes
                        .iter()
                        .filter_map(|c| c.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            let start = out.len();
            for child in map.values() {
                unit_prices(child, out);
            }
            if !currencies.is_empty() {
                for (codes, _) in &mut out[start..] {
                    codes.clone_from(&currencies);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| unit_prices(v, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_says_prices_are_in_the_major_unit_and_history_in_minor_units() {
    let server = Server::start(Backend::Sqlite).await;
    let doc = document(&server).await;
    let schemas = &doc["components"]["schemas"];
    for name in ["CreateOrderBody", "ItemBody"] {
        let mut prices = Vec::new();
        unit_prices(&schemas[name], &mut prices);
        assert!(
            !prices.is_empty(),
            "{name} has no unitPrice: {}",
            schemas[name]
        );
        for (currencies, price) in prices {
            let description = price["description"].as_str().unwrap_or_default();
            assert!(
                description.contains("major unit") && description.contains("\"12.50\""),
                "{name}.unitPrice does not say the unit: {description}"
            );
            assert!(
                !description.contains("in the currency's minor unit"),
                "{name}.unitPrice: {description}"
            );
            let example = price["example"].as_str().unwrap_or_default();
            let expected = if currencies.iter().any(|c| c == "JPY") {
                "1250"
            } else if currencies.iter().any(|c| c == "KWD") {
                "1.250"
            } else {
                "12.50"
            };
            assert_eq!(example, expected, "{name} for {currencies:?}: {price}");
        }
    }
    let view_price = &schemas["ItemView"]["properties"]["unitPrice"];
    assert!(
        view_price["description"]
            .as_str()
            .is_some_and(|d| d.contains("major unit")),
        "{view_price}"
    );
    let history_data = &schemas["HistoryEntry"]["properties"]["data"];
    assert!(
        history_data["description"]
            .as_str()
            .is_some_and(|d| d.contains("minor unit")),
        "the history must say its amounts are minor units: {history_data}"
    );
}
