use jointeval_api::HttpSettings;

use crate::support::{TestApp, TestDatabase, problem};

/// A service whose database is nowhere (a closed port): alive, not ready.
#[tokio::test]
async fn healthz_answers_without_the_database() {
    let nowhere = jointeval_store::connect(
        "postgres://jointeval@127.0.0.1:1/jointeval"
            .parse::<sqlx::postgres::PgConnectOptions>()
            .expect("options"),
        &jointeval_store::PoolSettings {
            acquire_timeout: std::time::Duration::from_millis(500),
            ..TestDatabase::settings()
        },
    );
    let router = jointeval_api::router(jointeval_api::AppState::new(
        nowhere.clone(),
        HttpSettings::default(),
        jointeval_api::AuthSettings::default(),
    ));
    let app = TestApp::serve(router, nowhere, TestDatabase::empty().await).await;
    let response = app.get("/healthz").await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body, serde_json::json!({"status": "ok"}));
    // The control: the database is indeed out of reach.
    let body = problem(app.get("/readyz").await, 503).await;
    assert_eq!(body["status"], 503);
}

#[tokio::test]
async fn readyz_is_ready_on_a_migrated_database() {
    let app = TestApp::spawn().await;
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["status"], "ready");
}

#[tokio::test]
async fn readyz_is_unavailable_while_migrations_are_pending() {
    let app = TestApp::on(TestDatabase::empty().await, HttpSettings::default()).await;
    let body = problem(app.get("/readyz").await, 503).await;
    assert_eq!(body["type"], "urn:jointeval:problem:migrations-pending");

    jointeval_store::migrate(&app.pool).await.expect("migrate");
    assert_eq!(app.get("/readyz").await.status(), 200);
}

#[tokio::test]
async fn readyz_notices_a_changed_migration() {
    let app = TestApp::spawn().await;
    sqlx::query("update _sqlx_migrations set checksum = '\\x00'")
        .execute(&app.pool)
        .await
        .expect("tamper");
    let response = app.get("/readyz").await;
    assert!(response.headers().contains_key("retry-after"));
    problem(response, 503).await;
}
