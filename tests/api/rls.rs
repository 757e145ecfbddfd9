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

/// The tables that belong to nobody's institute, and why they are open to every context.
const OPEN: [(&str, &str); 5] = [
    (
        "_sqlx_migrations",
        "the migrations applied; the service may only read it",
    ),
    (
        "audit_head",
        "the chain's head: one row, moved only by the trigger that runs as the owner",
    ),
    (
        "institutes",
        "the parties to the partnership, which everyone lists",
    ),
    (
        "login_failures",
        "throttling of logins, written and read only in the system's context",
    ),
    (
        "signing_keys",
        "the service's keys, used only in the system's context",
    ),
];

/// Every table of the schema under forced row-level security, read from the catalogue so
/// that a new table is in the test the day it is made; and no other table but [`OPEN`].
async fn scoped_tables(pool: &sqlx::PgPool) -> Vec<String> {
    let tables: Vec<(String, bool)> = sqlx::query_as(
        "select c.relname::text, c.relrowsecurity and c.relforcerowsecurity
         from pg_class c join pg_namespace n on n.oid = c.relnamespace
         where n.nspname = 'public' and c.relkind in ('r', 'p') order by 1",
    )
    .fetch_all(pool)
    .await
    .expect("the tables");
    let open: Vec<&str> = tables
        .iter()
        .filter(|(_, forced)| !forced)
        .map(|(name, _)| name.as_str())
        .collect();
    let mut allowed: Vec<&str> = OPEN.iter().map(|(name, _)| *name).collect();
    allowed.sort();
    assert_eq!(open, allowed, "tables outside row-level security");
    tables
        .into_iter()
        .filter(|(_, forced)| *forced)
        .map(|(name, _)| name)
        .collect()
}

/// The SQLSTATE of a refusal by a row-level security policy (42501).
fn refused_by_policy(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|code| code == "42501")
}

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

/// How many of a run's scores the transaction's context sees.
async fn visible_samples(tx: &mut sqlx::PgConnection, run: Uuid) -> i64 {
    sqlx::query_scalar("select count(*) from run_samples where run_id = $1")
        .bind(run)
        .fetch_one(tx)
        .await
        .expect("count")
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
        app.release(&reviewer, &format!("/v1/runs/{run}"), &json!({}))
            .await
            .status(),
        200
    );

    // Rows in the tables nothing above wrote: a comment, an imported log, an exchange.
    let author = app
        .login(
            &app.person("rls-author@nist.gov", "US", &[Role::Author])
                .await,
        )
        .await;
    let comment = app
        .post_as(
            &author,
            &format!("/v1/protocols/{protocol}/versions/1/comments"),
            &json!({"body": "a note"}),
        )
        .await;
    assert_eq!(comment.status(), 201, "a comment");
    let logged = new_run(&protocol);
    let logged: Value = app
        .post_as(
            &evaluator,
            &format!("/v1/exercises/{exercise}/runs"),
            &logged,
        )
        .await
        .json()
        .await
        .expect("run");
    let logged = logged["id"].as_str().expect("id").to_owned();
    let started = app
        .post_as(&evaluator, &format!("/v1/runs/{logged}/start"), &json!({}))
        .await;
    assert_eq!(started.status(), 200);
    let imported = app
        .client
        .post(app.url(&format!("/v1/runs/{logged}/inspect-log")))
        .bearer_auth(&evaluator)
        .header("content-type", "application/zip")
        .body(
            std::fs::read(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/inspect/features/errored.eval"
            ))
            .expect("fixture"),
        )
        .send()
        .await
        .expect("import");
    // A log with errored samples and reductions: every table of results has rows.
    assert_eq!(imported.status(), 200, "an imported log");
    let admins = [
        app.login(&app.person("rls-admin@nist.gov", "US", &[Role::Admin]).await)
            .await,
        app.login(
            &app.person("rls-admin@aisi.gov.uk", "UK", &[Role::Admin])
                .await,
        )
        .await,
    ];
    let guest = app
        .person("rls-guest@aisi.gov.uk", "UK", &[Role::Viewer])
        .await;
    app.service(
        "US",
        "jes_rls-secret",
        &[jointeval_domain::Scope::RunsRead],
        &[],
    )
    .await;
    let now = chrono::Utc::now();
    let proposed = app
        .post_as(
            &admins[1],
            "/v1/exchanges",
            &json!({"account_id": guest.id, "home_institute": "UK", "host_institute": "US",
                    "roles": ["viewer"], "starts_at": now.to_rfc3339(),
                    "ends_at": (now + chrono::Duration::days(9)).to_rfc3339()}),
        )
        .await;
    assert_eq!(proposed.status(), 201, "an exchange");

    let service = app.db.service_pool();
    for table in scoped_tables(&app.pool).await {
        let table = table.as_str();
        let stored: i64 = sqlx::query_scalar(&format!("select count(*) from {table}"))
            .fetch_one(&app.pool)
            .await
            .expect("count as the owner");
        assert!(stored > 0, "{table} has rows to hide");
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
    assert!(
        stray.as_ref().is_err_and(refused_by_policy),
        "an insert without a context is refused by the policy: {stray:?}"
    );

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
        "update audit_head set seq = seq + 1",
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
    assert_eq!(visible_samples(&mut tx, us_run).await, 0);
    assert_eq!(visible_samples(&mut tx, uk_run).await, 2);
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
        jointeval_store::accounts::get(&mut tx, us_eval_user.id, false)
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
        name: None,
        unscored_count: None,
    };
    let forged = jointeval_store::runs::upsert_metrics(&mut tx, us_run, &[metric]).await;
    assert!(
        matches!(&forged, Err(jointeval_store::StoreError::Other(e)) if refused_by_policy(e)),
        "the UK's metric in the US's run: {forged:?}"
    );
    tx.rollback().await.expect("rollback");
    let mut tx = jointeval_store::begin(&service, &acting(&uk_eval_user, vec![uk]))
        .await
        .expect("begin");
    // A key new to the run: the write takes the COPY path.
    let score = jointeval_domain::run::SampleScore {
        sample_id: jointeval_domain::run::SampleId::Text("9".into()),
        epoch: 1,
        scorer: "match".into(),
        value: jointeval_domain::run::ScoreValue::Number(1.0),
        answer: None,
        explanation: None,
        metadata: None,
        sample_metadata: None,
    };
    let copied = jointeval_store::runs::write_samples(&mut tx, us_run, vec![score]).await;
    assert!(
        matches!(&copied, Err(jointeval_store::StoreError::Other(e)) if refused_by_policy(e)),
        "COPY's staging insert is checked too: {copied:?}"
    );
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
        app.release(&reviewer, &format!("/v1/runs/{us_run}"), &json!({}))
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
    assert_eq!(visible_samples(&mut tx, us_run).await, 2);
    let changed = sqlx::query("update runs set harness_name = 'forged' where id = $1")
        .bind(us_run)
        .execute(&mut *tx)
        .await;
    assert!(
        changed.as_ref().is_ok_and(|done| done.rows_affected() == 0)
            || changed.as_ref().is_err_and(refused_by_policy),
        "a partner reads a released run, never writes it: {changed:?}"
    );
    tx.rollback().await.expect("rollback");
}

/// Runs `statement` in `who`'s context as the service's role; answers whether the
/// database refused it: an insert with the policy's error (SQLSTATE 42501), an update or
/// a delete by finding no row it may touch.
async fn refused(app: &TestApp, who: ActingAs, statement: &str, binds: &[Uuid]) -> bool {
    let service = app.db.service_pool();
    let mut tx = jointeval_store::begin(&service, &who).await.expect("begin");
    let mut query = sqlx::query(statement);
    for b in binds {
        query = query.bind(*b);
    }
    let result = query.execute(&mut *tx).await;
    tx.rollback().await.expect("rollback");
    let inserting = statement.trim_start().starts_with("insert");
    match result {
        Ok(done) => {
            assert!(!inserting, "{statement}: an insert went in");
            done.rows_affected() == 0
        }
        Err(e) => {
            // A release keeps the run's own institute by a key (see the migration).
            let by_key = e.as_database_error().and_then(|d| d.constraint())
                == Some("run_releases_executing_institute");
            assert!(
                refused_by_policy(&e) || by_key,
                "{statement}: refused for another reason than the policy: {e}"
            );
            true
        }
    }
}

#[tokio::test]
async fn forged_rows_cannot_open_another_institutes_work() {
    let app = TestApp::spawn().await;
    let (exercise, protocol) = active_exercise(&app).await;
    let us = app.institute("US").await;
    let uk = app.institute("UK").await;
    let us_eval_user = app
        .person("forge-eval@nist.gov", "US", &[Role::Evaluator])
        .await;
    let us_evaluator = app.login(&us_eval_user).await;
    let uk_user = app
        .person("forger@aisi.gov.uk", "UK", &[Role::Admin, Role::Reviewer])
        .await;
    let uk_ctx = || acting(&uk_user, vec![uk]);
    let us_run = finished_run(&app, &us_evaluator, &exercise, &protocol).await;
    let us_jp: Uuid = crate::support::story::approved_protocol(&app, "us-jp-forge", &["US", "JP"])
        .await
        .parse()
        .expect("uuid");
    let exercise: Uuid = exercise.parse().expect("uuid");

    // A release to itself of the US's unreleased run, however its columns are forged.
    for executing in [uk, us] {
        assert!(
            refused(
                &app,
                uk_ctx(),
                "insert into run_releases (run_id, institute_id, released_by, digest, executing_institute_id)
                 values ($1, $2, $3, 'forged', $4)",
                &[us_run, uk, uk_user.id, executing],
            )
            .await,
            "a forged release (executing {executing})"
        );
    }
    // A place among the participants of a protocol it is not part of.
    assert!(
        refused(
            &app,
            uk_ctx(),
            "insert into protocol_participants (protocol_id, institute_id) values ($1, $2)",
            &[us_jp, uk],
        )
        .await
    );
    assert!(
        refused(
            &app,
            uk_ctx(),
            "delete from protocol_participants where protocol_id = $1",
            &[us_jp],
        )
        .await
    );
    // The lead's say over the exercise's plan, and the US's agreement.
    assert!(
        refused(
            &app,
            uk_ctx(),
            "delete from exercise_participants where exercise_id = $1 and institute_id = $2",
            &[exercise, us],
        )
        .await
    );
    assert!(
        refused(
            &app,
            uk_ctx(),
            "insert into exercise_agreements (exercise_id, institute_id, plan_revision, agreed_by)
             values ($1, $2, 99, $3)",
            &[exercise, us, uk_user.id],
        )
        .await
    );
    // A review in the name of someone else.
    let version: Uuid = sqlx::query_scalar(
        "select id from protocol_versions where protocol_id = $1 and number = 1",
    )
    .bind(protocol.parse::<Uuid>().expect("uuid"))
    .fetch_one(&app.pool)
    .await
    .expect("version");
    assert!(
        refused(
            &app,
            uk_ctx(),
            "insert into protocol_reviews (id, version_id, reviewer_id, institute_id, verdict)
             values ($1, $2, $3, $4, 'approve')",
            &[Uuid::now_v7(), version, us_eval_user.id, uk],
        )
        .await
    );
    // Nothing of it reached the UK: the run and the protocol are still out of sight.
    let service = app.db.service_pool();
    let mut tx = jointeval_store::begin(&service, &uk_ctx())
        .await
        .expect("begin");
    assert!(
        jointeval_store::runs::get(&mut tx, us_run, false)
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        jointeval_store::protocols::get(&mut tx, us_jp)
            .await
            .expect("get")
            .is_none()
    );
    let participants: i64 =
        sqlx::query_scalar("select count(*) from protocol_participants where protocol_id = $1")
            .bind(us_jp)
            .fetch_one(&mut *tx)
            .await
            .expect("count");
    assert_eq!(
        participants, 0,
        "a protocol's participant list is its participants'"
    );
    tx.rollback().await.expect("rollback");
}

#[tokio::test]
async fn a_host_sees_an_exchanged_person_only_while_the_exchange_runs() {
    let app = TestApp::spawn().await;
    let us = app.institute("US").await;
    let us_admin_user = app
        .person("host-admin@nist.gov", "US", &[Role::Admin])
        .await;
    let us_admin = app.login(&us_admin_user).await;
    let uk_admin = app
        .login(
            &app.person("home-admin@aisi.gov.uk", "UK", &[Role::Admin])
                .await,
        )
        .await;
    let person = app
        .person("exchanged@aisi.gov.uk", "UK", &[Role::Author])
        .await;
    let start = chrono::Utc::now() + chrono::Duration::hours(1);
    let proposed = app
        .post_as(
            &us_admin,
            "/v1/exchanges",
            &json!({
                "account_id": person.id, "home_institute": "UK", "host_institute": "US",
                "roles": ["author"], "starts_at": start.to_rfc3339(),
                "ends_at": (start + chrono::Duration::days(30)).to_rfc3339(),
            }),
        )
        .await;
    assert_eq!(proposed.status(), 201);
    let exchange = proposed.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let service = app.db.service_pool();
    let host_sees = || async {
        let mut tx = jointeval_store::begin(&service, &acting(&us_admin_user, vec![us]))
            .await
            .expect("begin");
        let seen = jointeval_store::accounts::get(&mut tx, person.id, false)
            .await
            .expect("get")
            .is_some();
        tx.rollback().await.expect("rollback");
        seen
    };
    assert!(
        !host_sees().await,
        "proposed by the host alone, it opens nothing"
    );
    assert_eq!(
        app.post_as(
            &uk_admin,
            &format!("/v1/exchanges/{exchange}/approve"),
            &json!({})
        )
        .await
        .status(),
        200
    );
    assert!(!host_sees().await, "approved but not begun");
    // Its window begins (as time would have it).
    sqlx::query("update exchanges set starts_at = now() - interval '1 minute' where id = $1")
        .bind(exchange.parse::<Uuid>().expect("uuid"))
        .execute(&app.pool)
        .await
        .expect("move the window");
    assert!(host_sees().await, "in progress, the host sees its guest");
}

#[tokio::test]
async fn a_partner_reaches_a_log_only_once_its_transcripts_are_released() {
    let app = TestApp::spawn().await;
    let (exercise, protocol) = active_exercise(&app).await;
    let (us, uk, jp) = (
        app.institute("US").await,
        app.institute("UK").await,
        app.institute("JP").await,
    );
    let us_user = app
        .person("rls-log@nist.gov", "US", &[Role::Evaluator])
        .await;
    let evaluator = app.login(&us_user).await;
    let uk_user = app
        .person("rls-log@aisi.gov.uk", "UK", &[Role::Admin, Role::Reviewer])
        .await;
    let jp_user = app
        .person("rls-log@aist.go.jp", "JP", &[Role::Viewer])
        .await;
    let mut body = new_run(&protocol);
    body["model_version"] = json!("mockllm/model");
    let created: Value = app
        .post_as(&evaluator, &format!("/v1/exercises/{exercise}/runs"), &body)
        .await
        .json()
        .await
        .expect("run");
    let run: Uuid = created["id"].as_str().expect("id").parse().expect("uuid");
    let path = format!("/v1/runs/{run}");
    let started = app
        .post_as(&evaluator, &format!("{path}/start"), &json!({}))
        .await;
    assert_eq!(started.status(), 200);
    let imported = app
        .client
        .post(app.url(&format!("{path}/inspect-log")))
        .bearer_auth(&evaluator)
        .header("content-type", "application/zip")
        .body(
            std::fs::read(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/inspect/arith_small.eval"
            ))
            .expect("fixture"),
        )
        .send()
        .await
        .expect("import");
    assert_eq!(imported.status(), 200);
    let finished = app
        .post_as(
            &evaluator,
            &format!("{path}/finish"),
            &json!({"outcome": "succeeded"}),
        )
        .await;
    assert_eq!(finished.status(), 200);
    let stored: i64 = sqlx::query_scalar("select count(*) from run_log_chunks where run_id = $1")
        .bind(run)
        .fetch_one(&app.pool)
        .await
        .expect("count as the owner");
    assert!(stored > 0);

    // What each context reaches of the run and of its log, as the service's role.
    let service = app.db.service_pool();
    let reach = |who: ActingAs| {
        let service = service.clone();
        async move {
            let mut tx = jointeval_store::begin(&service, &who).await.expect("begin");
            let seen = jointeval_store::runs::get(&mut tx, run, false)
                .await
                .expect("get")
                .is_some();
            let chunks: i64 =
                sqlx::query_scalar("select count(*) from run_log_chunks where run_id = $1")
                    .bind(run)
                    .fetch_one(&mut *tx)
                    .await
                    .expect("count");
            let first = jointeval_store::runs::log_chunk(&mut tx, run, 0)
                .await
                .expect("chunk")
                .is_some();
            tx.rollback().await.expect("rollback");
            assert_eq!(first, chunks > 0);
            (seen, chunks)
        }
    };
    let us_ctx = || acting(&us_user, vec![us]);
    let uk_ctx = || acting(&uk_user, vec![uk]);
    let jp_ctx = || acting(&jp_user, vec![jp]);
    assert_eq!(reach(us_ctx()).await, (true, stored));
    assert_eq!(reach(uk_ctx()).await, (false, 0));

    // The UK cannot open the log itself: no forged release of the transcripts, whoever
    // the row says executed the run, and no release of its own to read it by.
    for executing in [uk, us] {
        assert!(
            refused(
                &app,
                uk_ctx(),
                "insert into run_releases (run_id, institute_id, released_by, digest,
                                           executing_institute_id, transcripts)
                 values ($1, $2, $3, 'forged', $4, true)",
                &[run, uk, uk_user.id, executing],
            )
            .await,
            "a forged transcripts release (executing {executing})"
        );
    }

    let reviewer = app
        .login(
            &app.person("rls-log-rev@nist.gov", "US", &[Role::Reviewer])
                .await,
        )
        .await;
    let released = app.release(&reviewer, &path, &json!({})).await;
    assert_eq!(released.status(), 200);
    // The results alone: the run, and not one chunk of its log.
    assert_eq!(reach(uk_ctx()).await, (true, 0));
    // A release of the results may not be turned into one of the transcripts: releases
    // are never changed, and the UK may not write one.
    let widened = sqlx::query("update run_releases set transcripts = true where run_id = $1")
        .bind(run)
        .execute(&app.pool)
        .await;
    assert!(widened.is_err(), "a release is never changed");
    assert!(
        refused(
            &app,
            uk_ctx(),
            "insert into run_releases (run_id, institute_id, released_by, digest,
                                       executing_institute_id, transcripts)
             values ($1, $2, $3, 'forged', $4, true)",
            &[run, uk, uk_user.id, us],
        )
        .await
    );
    assert_eq!(reach(uk_ctx()).await, (true, 0));

    let released = app
        .release(&reviewer, &path, &json!({"transcripts": true}))
        .await;
    assert_eq!(released.status(), 200);
    assert_eq!(reach(uk_ctx()).await, (true, stored));
    assert_eq!(reach(us_ctx()).await, (true, stored));
    assert_eq!(reach(jp_ctx()).await, (false, 0));
    // Reading is not writing: the UK adds nothing to the US's log.
    assert!(
        refused(
            &app,
            uk_ctx(),
            "insert into run_log_chunks (run_id, n, data) values ($1, 9999, '\\x00')",
            &[run],
        )
        .await
    );
}
