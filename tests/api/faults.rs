//! The database failing under the service: connections killed by the server, and the
//! service carrying on without a restart.

use jointeval_domain::Role;
use sqlx::{ConnectOptions, Connection};

use crate::support::TestApp;

#[tokio::test]
async fn killed_connections_cost_at_most_one_retryable_failure() {
    let app = TestApp::spawn().await;
    let admin = app
        .login(&app.person("faults@nist.gov", "US", &[Role::Admin]).await)
        .await;
    // Fill the pool: several requests at once.
    let warm: Vec<_> = (0..5).map(|_| app.get_as(&admin, "/v1/accounts")).collect();
    for response in futures_util::future::join_all(warm).await {
        assert_eq!(response.status(), 200);
    }
    // Every connection the service holds, ended by the server.
    let mut dba = app
        .db
        .options
        .clone()
        .application_name("jointeval-tests")
        .connect()
        .await
        .expect("connect");
    let killed: Vec<bool> = sqlx::query_scalar(
        "select pg_terminate_backend(pid) from pg_stat_activity
         where datname = current_database() and application_name = 'jointeval'
           and usename = $1",
    )
    .bind(jointeval_store::roles::SERVICE_LOGIN)
    .fetch_all(&mut dba)
    .await
    .expect("terminate");
    assert!(!killed.is_empty(), "the service held connections to kill");
    dba.close().await.expect("close");

    let mut failures = 0;
    for _ in 0..10 {
        let response = app.get_as(&admin, "/v1/accounts").await;
        match response.status().as_u16() {
            200 => {}
            503 => {
                failures += 1;
                assert!(response.headers().contains_key("retry-after"));
            }
            other => panic!("after the kill: {other}"),
        }
    }
    assert!(
        failures <= 1,
        "{failures} failures after the connections were killed"
    );
    assert_eq!(app.get("/readyz").await.status(), 200);
}

#[tokio::test]
async fn a_statement_stuck_on_a_lock_answers_503_and_leaves_the_pool_free() {
    use std::time::Duration;

    use jointeval_api::{AppState, AuthSettings, HttpSettings};
    use serde_json::json;

    // The service with a short lock timeout, on its own database.
    let db = crate::support::TestDatabase::migrated().await;
    let owner = db.pool();
    jointeval_api::auth::tokens::ensure_signing_key(&owner)
        .await
        .expect("key");
    let service = db.service_pool_with(&jointeval_store::PoolSettings {
        lock_timeout: Some(Duration::from_millis(500)),
        statement_timeout: Some(Duration::from_secs(5)),
        ..crate::support::TestDatabase::settings()
    });
    let router = jointeval_api::router(AppState::new(
        service,
        HttpSettings::default(),
        AuthSettings::default(),
    ));
    let app = TestApp::serve(router, owner.clone(), db).await;
    let admin = app
        .login(&app.person("locks@nist.gov", "US", &[Role::Admin]).await)
        .await;
    let target = app.person("locked@nist.gov", "US", &[Role::Viewer]).await;

    // Someone holds the account's row.
    let mut holder = owner.begin().await.expect("begin");
    sqlx::query("select id from accounts where id = $1 for update")
        .bind(target.id)
        .execute(&mut *holder)
        .await
        .expect("lock");

    let disable = format!("/v1/accounts/{}/disable", target.id);
    let empty = json!({});
    let waiting: Vec<_> = (0..8)
        .map(|_| app.post_as(&admin, &disable, &empty))
        .collect();
    // A hung request fails the test here instead of hanging it.
    let answers = tokio::time::timeout(
        Duration::from_secs(20),
        futures_util::future::join_all(waiting),
    )
    .await
    .expect("no request hung past the lock timeout");
    for response in answers {
        assert!(response.headers().contains_key("retry-after"));
        let body: serde_json::Value = response.json().await.expect("problem");
        assert_eq!(body["status"], 503, "{body}");
    }
    // More waiters than connections came and went: the pool serves others at once.
    assert_eq!(app.get_as(&admin, "/v1/accounts").await.status(), 200);

    holder.rollback().await.expect("release");
    let done = app
        .post_as(
            &admin,
            &format!("/v1/accounts/{}/disable", target.id),
            &json!({}),
        )
        .await;
    assert_eq!(done.status(), 200);
}

#[tokio::test]
async fn hostile_bodies_and_bursts_get_bounded_answers() {
    use serde_json::json;

    let app = TestApp::spawn().await;
    let author_user = app.person("bursts@nist.gov", "US", &[Role::Author]).await;
    let author = app.login(&author_user).await;
    app.institute("UK").await;

    // JSON nested far deeper than any protocol: refused, not a stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let response = app
        .client
        .post(app.url("/v1/protocols"))
        .bearer_auth(&author)
        .header("content-type", "application/json")
        .body(deep)
        .send()
        .await
        .expect("send");
    assert!(
        [400, 422].contains(&response.status().as_u16()),
        "{}",
        response.status()
    );
    // A very long string: named.
    let long = app
        .post_as(
            &author,
            "/v1/protocols",
            &json!({"slug": "long-title", "title": "x".repeat(1_000_000),
            "risk_area": "cyber", "participants": ["US", "UK"]}),
        )
        .await;
    let body = crate::support::problem(long, 422).await;
    assert_eq!(body["errors"][0]["field"], "title");
    // A page far beyond the largest.
    crate::support::problem(
        app.get_as(&author, "/v1/protocols?limit=1000000").await,
        422,
    )
    .await;

    // A burst of logins (each an argon2 computation of 19 MiB) is served in turns.
    let logins: Vec<_> = (0..24).map(|_| app.login(&author_user)).collect();
    let tokens = futures_util::future::join_all(logins).await;
    assert_eq!(tokens.len(), 24);
    assert!(tokens.iter().all(|t| !t.is_empty()));
}

/// A transaction left open and idle is ended by the server after
/// `--db-idle-in-transaction-timeout`: its connection is dropped, the failure is one to
/// retry, and the pool goes on serving.
#[tokio::test]
async fn a_transaction_left_idle_is_ended_by_the_server() {
    use std::time::Duration;

    let db = crate::support::TestDatabase::migrated().await;
    let service = db.service_pool_with(&jointeval_store::PoolSettings {
        idle_in_transaction_timeout: Some(Duration::from_millis(300)),
        ..crate::support::TestDatabase::settings()
    });
    let context = jointeval_store::ActingAs::system("test");
    let mut tx = jointeval_store::begin(&service, &context)
        .await
        .expect("begin");
    sqlx::query("select 1")
        .execute(&mut *tx)
        .await
        .expect("a first statement");
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let late = sqlx::query("select 1").execute(&mut *tx).await;
    let error = late.expect_err("the server ended the idle transaction");
    assert!(
        matches!(
            jointeval_store::StoreError::from(error),
            jointeval_store::StoreError::Unavailable(_)
        ),
        "a dropped connection is worth a retry (503), not a 500"
    );
    drop(tx);
    // The next transaction gets a connection that works.
    let mut tx = jointeval_store::begin(&service, &context)
        .await
        .expect("begin again");
    sqlx::query("select 1")
        .execute(&mut *tx)
        .await
        .expect("the pool serves on");
    tx.rollback().await.expect("rollback");
}
