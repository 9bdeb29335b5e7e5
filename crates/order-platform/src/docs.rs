//! The human-readable side of the API: `/` (a page that points to the docs and
//! the OpenAPI document) and `/api/docs` (Swagger UI on `/api/v1/openapi.json`,
//! where a user can paste a bearer token and try every request).
//!
//! Swagger UI is vendored in `assets/swagger-ui/` (from the npm package
//! `swagger-ui-dist`; licence and update steps in its README) and built into the
//! binary with `include_bytes!`: the page works with no internet access, and
//! nothing in it loads from another origin. Its validator badge, which would
//! send the document to validator.swagger.io, is switched off in `init.js`.

use axum::Router;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;

/// Where the API docs page lives.
pub const DOCS_PATH: &str = "/api/docs";

const SWAGGER_UI_JS: &[u8] = include_bytes!("../assets/swagger-ui/swagger-ui-bundle.js");
const SWAGGER_UI_CSS: &[u8] = include_bytes!("../assets/swagger-ui/swagger-ui.css");

/// Starts Swagger UI on our document. A file rather than an inline script, so
/// that a `script-src 'self'` content security policy can hold.
const INIT_JS: &str = r##"window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/api/v1/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    displayRequestDuration: true
  });
});
"##;

const DOCS_HTML: &str = r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Order Platform API</title>
  <link rel="stylesheet" href="/api/docs/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/api/docs/swagger-ui-bundle.js"></script>
  <script src="/api/docs/init.js"></script>
</body>
</html>
"#;

const INDEX_HTML: &str = r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Order Platform</title>
</head>
<body>
  <h1>Order Platform</h1>
  <ul>
    <li><a href="/api/docs">API documentation</a> (try requests with a bearer token: from <code>order-platform token</code>, or from your identity provider)</li>
    <li><a href="/api/v1/openapi.json">OpenAPI document</a> (<code>/api/v1/openapi.json</code>)</li>
    <li><a href="/health/ready">Readiness</a> and <a href="/metrics">metrics</a></li>
  </ul>
</body>
</html>
"#;

/// Assets do not change while a binary runs; an hour spares reloads.
const CACHE: (header::HeaderName, &str) = (header::CACHE_CONTROL, "public, max-age=3600");

fn asset(content_type: &'static str, body: &'static [u8]) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            CACHE,
        ],
        body,
    )
}

/// `/` and `/api/docs` with its assets; no token needed.
pub fn router() -> Router {
    Router::new()
        .route("/", get(|| async { Html(INDEX_HTML) }))
        .route(DOCS_PATH, get(|| async { Html(DOCS_HTML) }))
        .route(
            "/api/docs/swagger-ui-bundle.js",
            get(|| async { asset("text/javascript; charset=utf-8", SWAGGER_UI_JS) }),
        )
        .route(
            "/api/docs/swagger-ui.css",
            get(|| async { asset("text/css; charset=utf-8", SWAGGER_UI_CSS) }),
        )
        .route(
            "/api/docs/init.js",
            get(|| async { asset("text/javascript; charset=utf-8", INIT_JS.as_bytes()) }),
        )
}
