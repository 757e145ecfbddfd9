use axum::http::HeaderValue;
use jointeval_api::{HttpSettings, MetricsAccess};

use crate::support::{TestApp, problem};

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let app = TestApp::spawn().await;
    let given = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "harness-run-42")
        .send()
        .await
        .expect("send");
    assert_eq!(given.headers()["x-request-id"], "harness-run-42");

    let generated = app.get("/v1/nothing-here").await;
    let id = generated.headers()["x-request-id"]
        .to_str()
        .expect("id")
        .to_owned();
    let id = uuid::Uuid::parse_str(&id).expect("a generated id is a UUID");
    assert_eq!(id.get_version_num(), 7);
}

#[tokio::test]
async fn metrics_are_closed_by_default() {
    let app = TestApp::spawn().await;
    problem(app.get("/metrics").await, 404).await;
}

#[tokio::test]
async fn metrics_open_to_the_holder_of_the_token() {
    let app = TestApp::with_settings(HttpSettings {
        metrics: MetricsAccess::Token("s3cret-metrics-token".into()),
        ..HttpSettings::default()
    })
    .await;
    app.get("/healthz").await;

    let anonymous = app.get("/metrics").await;
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    problem(anonymous, 401).await;
    let wrong = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth("guess")
        .send()
        .await
        .expect("send");
    problem(wrong, 401).await;

    let response = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth("s3cret-metrics-token")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("text");
    assert!(
        text.contains(r#"http_requests_total{route="/healthz",method="GET",status="200"}"#),
        "{text}"
    );
    assert!(
        text.contains("http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("db_pool_max_connections"), "{text}");
}

#[tokio::test]
async fn cors_is_closed_unless_an_origin_is_allowed() {
    let closed = TestApp::spawn().await;
    let response = closed
        .client
        .get(closed.url("/v1/institutes"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .expect("send");
    assert!(
        !response
            .headers()
            .contains_key("access-control-allow-origin")
    );

    let open = TestApp::with_settings(HttpSettings {
        cors_origins: vec![HeaderValue::from_static("https://dashboard.example")],
        ..HttpSettings::default()
    })
    .await;
    let preflight = open
        .client
        .request(reqwest::Method::OPTIONS, open.url("/v1/institutes"))
        .header("origin", "https://dashboard.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .expect("send");
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://dashboard.example"
    );
    let other = open
        .client
        .get(open.url("/v1/institutes"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .expect("send");
    assert!(!other.headers().contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn answers_are_compressed_when_the_client_accepts_it() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .get(app.url("/openapi.json"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("send");
    assert_eq!(response.headers()["content-encoding"], "gzip");
}
