//! Row-level security, tested under the handlers: the store's queries, run as the
//! service's own role, reach one institute's unreleased rows only in that institute's
//! context, whatever the query asks for, and reach nothing without a context.

use jointeval_domain::Role;
use jointeval_domain::run::MetricValue;
use jointeval_store::audit::{EventFilter, EventReader};
use jointeval_store::{ActingAs, RequestMeta};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::story::{active_exercise, new_run};
use crate::support::{TestApp, TestUser};

/// The tables whose rows belong to an institute.
const SCOPED: [&str; 14] = [
    "accounts",
    "memberships",
    "protocols",
    "protocol_versions",
    "protocol_reviews",
    "protocol_comments",
    "protocol_version_editors",
    "exercises",
    "runs",
    "run_metrics",
    "run_samples",
    "run_releases",
    "idempotency_keys",
    "audit_events",
];

/// A run of `evaluator`'s institute with a metric and two samples, finished.
async fn finished_run(app: &TestApp, evaluator: &str, exercise: &str, protocol: &str) -> Uuid {
    let created = app
        .client
        .post(app.url(&format!("/v1/exercises/{exercise}/runs")))
        .bearer_auth(evaluator)
        .header("idempotency-key", Uuid::now_v7().to_string())
        .json(&new_run(protocol))
        .send()
        .await
        .expect("send");
    assert_eq!(created.status(), 201);
    let id: Uuid = created.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("uuid");
    let calls = [
        ("start", json!({})),
        (
            "metrics",
            json!({"metrics": [{"scorer": "match", "metric": "accuracy", "value": 0.5}]}),
        ),
        (
            "samples",
            json!([{"sample_id": "1", "epoch": 1, "scorer": "match", "value": "C"},
                   {"sample_id": "2", "epoch": 1, "scorer": "match", "value": 0.0}]),
        ),
        ("finish", json!({"outcome": "succeeded"})),
    ];
    for (path, body) in calls {
        let response = app
            .post_as(evaluator, &format!("/v1/runs/{id}/{path}"), &body)
            .await;
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
    }
    id
}

fn acting(user: &TestUser, institutes: Vec<Uuid>) -> ActingAs {
    ActingAs::Account {
        id: user.id,
        institutes,
        request: RequestMeta::default(),
    }
}

#[tokio::test]
async fn without_a_context_the_service_role_reads_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let (exercise, protocol) = active_exercise(&app).await;
    let evaluator = app
        .login(
            &app.person("rls-eval@nist.gov", "US", &[Role::Evaluator])
                .await,
        )
        .await;
    let run = finished_run(&app, &evaluator, &exercise, &protocol).await;
    let reviewer = app
        .login(
            &app.person("rls-rev@nist.gov", "US", &[Role::Reviewer])
                .await,
        )
        .await;
    assert_eq!(
        app.post_as(&reviewer, &format!("/v1/runs/{run}/release"), &json!({}))
            .await
            .status(),
        200
    );

    let service = app.db.service_pool();
    for table in SCOPED {
        let stored: i64 = sqlx::query_scalar(&format!("select count(*) from {table}"))
            .fetch_one(&app.pool)
            .await
            .expect("count as the owner");
        if table != "protocol_comments" {
            assert!(stored > 0, "{table} has rows to hide");
        }
        let seen: i64 = sqlx::query_scalar(&format!("select count(*) from {table}"))
            .fetch_one(&service)
            .await
            .expect("count as the service");
        assert_eq!(seen, 0, "{table} without a context");
        // An explicitly empty context is no context.
        let mut tx = service.begin().await.expect("begin");
        sqlx::query(
            "select set_config('jointeval.actor', '', true), \
                    set_config('jointeval.institutes', '', true)",
        )
        .execute(&mut *tx)
        .await
        .expect("set");
        let seen: i64 = sqlx::query_scalar(&format!("select count(*) from {table}"))
            .fetch_one(&mut *tx)
            .await
            .expect("count");
        assert_eq!(seen, 0, "{table} with an empty context");
    }
    let written = sqlx::query("update runs set harness_name = 'forged'")
        .execute(&service)
        .await
        .expect("an update that matches nothing");
    assert_eq!(written.rows_affected(), 0);
    let stray = sqlx::query(
        "insert into run_metrics (run_id, scorer, metric, value) values ($1, 'x', 'y', 1)",
    )
    .bind(run)
    .execute(&service)
    .await;
    assert!(stray.is_err(), "an insert without a context is refused");

    // The service's role cannot bypass the policies, nor rewrite the trail.
    assert_eq!(
        jointeval_store::roles::rls_bypass(&service)
            .await
            .expect("check"),
        Vec::<&str>::new()
    );
    assert!(
        !jointeval_store::roles::rls_bypass(&app.pool)
            .await
            .expect("check")
            .is_empty(),
        "the owner would bypass them"
    );
    for statement in [
        "truncate audit_events",
        "delete from audit_events",
        "update audit_events set summary = '{}'",
        "truncate runs",
    ] {
        let refused = sqlx::query(statement).execute(&service).await;
        let message = refused.expect_err(statement).to_string();
        assert!(
            message.contains("permission denied"),
            "{statement}: {message}"
        );
    }
}

#[tokio::test]
async fn one_institutes_context_never_reaches_the_others_unreleased_rows() {
    let app = TestApp::spawn().await;
    let (exercise, protocol) = active_exercise(&app).await;
    let us = app.institute("US").await;
    let uk = app.institute("UK").await;
    let jp = app.institute("JP").await;
    let us_eval_user = app
        .person("rls-eval@nist.gov", "US", &[Role::Evaluator])
        .await;
    let us_evaluator = app.login(&us_eval_user).await;
    let uk_eval_user = app
        .person("rls-eval@aisi.gov.uk", "UK", &[Role::Evaluator])
        .await;
    let uk_evaluator = app.login(&uk_eval_user).await;
    let us_run = finished_run(&app, &us_evaluator, &exercise, &protocol).await;
    let uk_run = finished_run(&app, &uk_evaluator, &exercise, &protocol).await;
    let us_jp_protocol =
        crate::support::story::approved_protocol(&app, "us-jp-only", &["US", "JP"]).await;
    let us_jp_protocol: Uuid = us_jp_protocol.parse().expect("uuid");
    let exercise: Uuid = exercise.parse().expect("uuid");

    let service = app.db.service_pool();
    // The UK's context, with the list queries handed every institute, as a handler
    // with its check removed would hand them.
    let everyone = [us, uk, jp];
    let mut tx = jointeval_store::begin(&service, &acting(&uk_eval_user, vec![uk]))
        .await
        .expect("begin");
    assert!(
        jointeval_store::runs::get(&mut tx, us_run, false)
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        jointeval_store::runs::get(&mut tx, uk_run, false)
            .await
            .expect("get")
            .is_some()
    );
    let listed: Vec<Uuid> =
        jointeval_store::runs::list_visible(&mut tx, exercise, &everyone, None, 100)
            .await
            .expect("list")
            .into_iter()
            .map(|r| r.id)
            .collect();
    assert_eq!(listed, vec![uk_run]);
    assert!(
        jointeval_store::runs::metrics(&mut tx, us_run)
            .await
            .expect("metrics")
            .is_empty()
    );
    assert_eq!(
        jointeval_store::runs::count_samples(&mut tx, us_run)
            .await
            .expect("count"),
        0
    );
    assert_eq!(
        jointeval_store::runs::count_samples(&mut tx, uk_run)
            .await
            .expect("count"),
        2
    );
    assert!(
        jointeval_store::protocols::get(&mut tx, us_jp_protocol)
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        jointeval_store::protocols::list_visible(
            &mut tx,
            &everyone,
            &jointeval_store::protocols::ProtocolFilter::default(),
            None,
            100
        )
        .await
        .expect("list")
        .iter()
        .all(|p| p.id != us_jp_protocol)
    );
    assert!(
        jointeval_store::accounts::get(&mut tx, us_eval_user.id)
            .await
            .expect("get")
            .is_none()
    );
    let events = jointeval_store::audit::list(
        &mut tx,
        &EventReader {
            admin_of: everyone.to_vec(),
            ..EventReader::default()
        },
        &EventFilter::default(),
        0,
        10_000,
    )
    .await
    .expect("events");
    assert!(!events.is_empty());
    assert!(
        events.iter().all(|e| e.visible_to.contains(&uk)),
        "only the UK's events"
    );
    assert!(events.iter().all(|e| e.object_id != us_run.to_string()));
    tx.rollback().await.expect("rollback");

    // Nor can the UK's context write into the US's run.
    let mut tx = jointeval_store::begin(&service, &acting(&uk_eval_user, vec![uk]))
        .await
        .expect("begin");
    let metric = MetricValue {
        scorer: "match".into(),
        metric: "forged".into(),
        value: 1.0,
        stderr: None,
        sample_count: None,
    };
    assert!(
        jointeval_store::runs::upsert_metrics(&mut tx, us_run, &[metric])
            .await
            .is_err()
    );
    tx.rollback().await.expect("rollback");
    let mut tx = jointeval_store::begin(&service, &acting(&uk_eval_user, vec![uk]))
        .await
        .expect("begin");
    let row = jointeval_store::runs::SampleRow {
        sample_id: "9".into(),
        epoch: 1,
        scorer: "match".into(),
        value_number: Some(1.0),
        value_label: None,
        answer: None,
        explanation: None,
        metadata: None,
    };
    let copied =
        jointeval_store::runs::copy_new_samples(&mut tx, us_run, std::slice::from_ref(&row)).await;
    assert!(copied.is_err(), "COPY's staging insert is checked too");
    tx.rollback().await.expect("rollback");
    let stored: i64 =
        sqlx::query_scalar("select count(*) from run_metrics where metric = 'forged'")
            .fetch_one(&app.pool)
            .await
            .expect("count");
    assert_eq!(stored, 0);

    // Released, the US run becomes readable in the UK's context, and only readable.
    let reviewer = app
        .login(
            &app.person("rls-rev@nist.gov", "US", &[Role::Reviewer])
                .await,
        )
        .await;
    assert_eq!(
        app.post_as(&reviewer, &format!("/v1/runs/{us_run}/release"), &json!({}))
            .await
            .status(),
        200
    );
    let mut tx = jointeval_store::begin(&service, &acting(&uk_eval_user, vec![uk]))
        .await
        .expect("begin");
    assert!(
        jointeval_store::runs::get(&mut tx, us_run, false)
            .await
            .expect("get")
            .is_some()
    );
    assert_eq!(
        jointeval_store::runs::count_samples(&mut tx, us_run)
            .await
            .expect("count"),
        2
    );
    let changed = sqlx::query("update runs set harness_name = 'forged' where id = $1")
        .bind(us_run)
        .execute(&mut *tx)
        .await;
    assert!(
        changed.is_err(),
        "a partner reads a released run, never writes it"
    );
    tx.rollback().await.expect("rollback");
}
