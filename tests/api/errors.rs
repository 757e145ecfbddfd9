//! Every error the service answers is RFC 9457 `application/problem+json`.

use std::str::FromStr;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use jointeval_api::extract::ApiJson;
use jointeval_api::{AppState, AuthSettings, HttpSettings};
use jointeval_store::PoolSettings;
use serde::Deserialize;
use sqlx::postgres::PgConnectOptions;

use crate::support::{TestApp, TestDatabase, problem};

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Sample {
    name: String,
    epochs: u32,
    scorers: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Grant {
    role: jointeval_domain::Role,
}

/// Routes that exercise the extractors and the failure paths, wrapped in the
/// service's own middleware.
async fn app_with_test_routes(settings: HttpSettings) -> TestApp {
    let db = TestDatabase::migrated().await;
    let pool = db.pool();
    let routes = Router::new()
        .route(
            "/echo",
            post(|ApiJson(s): ApiJson<Sample>| async move { s.name }),
        )
        .route(
            "/grant",
            post(|ApiJson(g): ApiJson<Grant>| async move { format!("{:?}", g.role) }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .route("/panic", get(panics));
    let router = jointeval_api::with_middleware(
        routes.merge(jointeval_api::router(AppState::new(
            pool.clone(),
            settings.clone(),
            AuthSettings::default(),
        ))),
        &settings,
    );
    TestApp::serve(router, pool, db).await
}

async fn panics() -> &'static str {
    panic!("secret internal detail")
}

#[tokio::test]
async fn unknown_routes_are_404_problems() {
    let app = TestApp::spawn().await;
    let body = problem(app.get("/v1/no-such-thing").await, 404).await;
    assert_eq!(body["type"], "about:blank");
}

#[tokio::test]
async fn a_wrong_method_is_405_with_allow() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .delete(app.url("/v1/institutes"))
        .send()
        .await
        .expect("send");
    let allow = response.headers()["allow"]
        .to_str()
        .expect("allow")
        .to_owned();
    assert!(allow.contains("GET"), "{allow}");
    problem(response, 405).await;
}

#[tokio::test]
async fn a_body_that_is_not_json_is_415() {
    let app = app_with_test_routes(HttpSettings::default()).await;
    let response = app
        .client
        .post(app.url("/echo"))
        .header("content-type", "text/plain")
        .body(r#"{"name":"x"}"#)
        .send()
        .await
        .expect("send");
    problem(response, 415).await;
    let missing = app
        .client
        .post(app.url("/echo"))
        .body("{}")
        .send()
        .await
        .expect("send");
    problem(missing, 415).await;
}

#[tokio::test]
async fn malformed_json_is_400() {
    let app = app_with_test_routes(HttpSettings::default()).await;
    for body in [
        r#"{"name": "x", "#,
        "not json",
        r#"{"name":"x","epochs":1,"scorers":[]} trailing"#,
    ] {
        let response = app
            .client
            .post(app.url("/echo"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("send");
        let problem = problem(response, 400).await;
        assert_eq!(
            problem["type"], "urn:jointeval:problem:malformed-json",
            "{body}"
        );
    }
}

#[tokio::test]
async fn json_of_the_wrong_shape_is_422_naming_the_field() {
    let app = app_with_test_routes(HttpSettings::default()).await;
    for (body, field) in [
        (
            serde_json::json!({"name": "x", "epochs": "three", "scorers": []}),
            "epochs",
        ),
        (
            serde_json::json!({"name": "x", "epochs": -1, "scorers": []}),
            "epochs",
        ),
        (
            serde_json::json!({"name": "x", "epochs": 1, "scorers": ["a", 2]}),
            "scorers[1]",
        ),
        (serde_json::json!({"name": "x", "epochs": 1}), "."),
    ] {
        let response = app
            .client
            .post(app.url("/echo"))
            .json(&body)
            .send()
            .await
            .expect("send");
        let problem = problem(response, 422).await;
        assert_eq!(problem["errors"][0]["field"], field, "{body}: {problem}");
        if field == "." {
            assert!(
                problem["errors"][0]["message"]
                    .as_str()
                    .expect("message")
                    .contains("scorers")
            );
        }
    }
    let fine = serde_json::json!({"name": "ok", "epochs": 1, "scorers": []});
    let response = app
        .client
        .post(app.url("/echo"))
        .json(&fine)
        .send()
        .await
        .expect("send");
    assert_eq!(response.text().await.expect("text"), "ok");
}

/// serde_json calls some mistakes of shape syntax errors: an object where an enum's name
/// belongs, an array longer than the struct it fills. The body is JSON all the same: 422
/// naming the field, not 400 "not valid JSON".
#[tokio::test]
async fn json_whose_shape_serde_calls_syntax_is_still_422() {
    let app = app_with_test_routes(HttpSettings::default()).await;
    for (path, body, field) in [
        ("/grant", serde_json::json!({"role": {}}), "role"),
        (
            "/grant",
            serde_json::json!({"role": {"author": 1}}),
            "role.author",
        ),
        ("/grant", serde_json::json!({"role": ["author", 1]}), "role"),
    ] {
        let response = app
            .client
            .post(app.url(path))
            .json(&body)
            .send()
            .await
            .expect("send");
        let problem = problem(response, 422).await;
        assert_eq!(
            problem["type"], "urn:jointeval:problem:validation",
            "{body}: {problem}"
        );
        assert_eq!(problem["errors"][0]["field"], field, "{body}: {problem}");
    }
}

/// serde fills a struct from an array of its fields in order; the contract says object.
#[tokio::test]
async fn an_array_where_an_object_belongs_is_422() {
    let app = app_with_test_routes(HttpSettings::default()).await;
    for body in [
        serde_json::json!(["x", 1, []]),
        serde_json::json!(["author"]),
    ] {
        let path = if body[0] == "author" {
            "/grant"
        } else {
            "/echo"
        };
        let response = app
            .client
            .post(app.url(path))
            .json(&body)
            .send()
            .await
            .expect("send");
        let problem = problem(response, 422).await;
        assert_eq!(problem["errors"][0]["field"], ".", "{body}: {problem}");
        assert_eq!(
            problem["errors"][0]["message"], "must be a JSON object, not an array",
            "{body}: {problem}"
        );
    }
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_whether_announced_or_streamed() {
    let settings = HttpSettings {
        body_limit: 1024,
        ..HttpSettings::default()
    };
    let app = app_with_test_routes(settings).await;
    let big = format!(
        r#"{{"name":"{}","epochs":1,"scorers":[]}}"#,
        "x".repeat(2000)
    );
    let announced = app
        .client
        .post(app.url("/echo"))
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .expect("send");
    problem(announced, 413).await;

    let chunks: Vec<Result<String, std::io::Error>> = big
        .as_bytes()
        .chunks(100)
        .map(|c| Ok(String::from_utf8_lossy(c).into_owned()))
        .collect();
    let streamed = app
        .client
        .post(app.url("/echo"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .expect("send");
    problem(streamed, 413).await;
}

#[tokio::test]
async fn a_request_past_the_timeout_is_503_with_retry_after() {
    let settings = HttpSettings {
        request_timeout: Duration::from_millis(200),
        ..HttpSettings::default()
    };
    let app = app_with_test_routes(settings).await;
    let response = app.get("/slow").await;
    assert!(response.headers().contains_key("retry-after"));
    problem(response, 503).await;
}

#[tokio::test]
async fn a_failure_of_ours_is_an_opaque_500() {
    let app = app_with_test_routes(HttpSettings::default()).await;
    let response = app.get("/panic").await;
    let body = problem(response, 500).await;
    assert!(!body.to_string().contains("secret"), "{body}");
}

#[tokio::test]
async fn a_database_that_cannot_be_reached_is_503_not_a_hang() {
    let db = TestDatabase::migrated().await;
    // Nothing listens on port 1: every connection attempt is refused.
    let dead = PgConnectOptions::from_str("postgres://postgres@127.0.0.1:1/none").expect("url");
    let pool = jointeval_store::connect(
        dead,
        &PoolSettings {
            max_connections: 2,
            acquire_timeout: Duration::from_millis(500),
            ..PoolSettings::default()
        },
    );
    let settings = HttpSettings::default();
    let router = jointeval_api::router(AppState::new(
        pool.clone(),
        settings,
        AuthSettings::default(),
    ));
    let app = TestApp::serve(router, pool, db).await;
    for path in ["/readyz", "/.well-known/jwks.json"] {
        let response = app.get(path).await;
        assert_eq!(response.headers()["retry-after"], "5", "{path}");
        let body = problem(response, 503).await;
        assert_eq!(
            body["type"], "urn:jointeval:problem:database-unavailable",
            "{path}"
        );
        assert!(!body.to_string().contains("127.0.0.1"), "{body}");
    }
}
