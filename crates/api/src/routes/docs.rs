//! The contract itself, as JSON and YAML, and a page for people to read it.

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use utoipa::openapi::OpenApi as Spec;

use crate::AppState;
use crate::problem::Problem;

const DOCS_PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>jointeval API</title>
  <meta name="viewport" content="width=device-width, initial-scale=1">
</head>
<body>
  <script id="api-reference" data-url="/openapi.json"></script>
  <script src="https://cdn.jsdelivr.net/npm/@scalar/api-reference"></script>
  <noscript>The contract is at <a href="/openapi.yaml">/openapi.yaml</a>.</noscript>
</body>
</html>
"#;

pub(crate) fn docs(spec: &Spec) -> Router<AppState> {
    let json = spec.to_pretty_json().unwrap_or_default();
    let yaml = spec.to_yaml().unwrap_or_default();
    Router::new()
        .route(
            "/openapi.json",
            get(move || async move { ([(header::CONTENT_TYPE, "application/json")], json) }),
        )
        .route(
            "/openapi.yaml",
            get(move || async move { ([(header::CONTENT_TYPE, "application/yaml")], yaml) }),
        )
        .route("/docs", get(|| async { Html(DOCS_PAGE) }))
}

pub(crate) async fn not_found() -> impl IntoResponse {
    Problem::status(StatusCode::NOT_FOUND, "no resource at this address")
}
