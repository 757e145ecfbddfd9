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
