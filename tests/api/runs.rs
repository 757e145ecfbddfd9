//! Runs over HTTP: each institute's results are its own until one of its reviewers
//! releases them; a third institute never sees them.

use jointeval_domain::Role;
use serde_json::{Value, json};

use crate::support::story::{active_exercise, new_run};
use crate::support::{TestApp, problem};

async fn post_run(
    app: &TestApp,
    token: &str,
    exercise: &str,
    body: &Value,
    key: Option<&str>,
) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url(&format!("/v1/exercises/{exercise}/runs")))
        .bearer_auth(token)
        .json(body);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    request.send().await.expect("send")
}

fn ids(page: &Value) -> Vec<String> {
    let mut ids: Vec<String> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_run_is_its_institutes_own_until_a_reviewer_releases_it() {
    let app = TestApp::spawn().await;
    let (exercise, protocol) = active_exercise(&app).await;
    let uk_evaluator = app
        .login(
            &app.person("eval@aisi.gov.uk", "UK", &[Role::Evaluator])
                .await,
        )
        .await;
    let uk_reviewer = app
        .login(&app.person("rev@aisi.gov.uk", "UK", &[Role::Reviewer]).await)
        .await;
    let us_evaluator = app
        .login(&app.person("eval@nist.gov", "US", &[Role::Evaluator]).await)
        .await;
    let us_viewer = app
        .login(&app.person("viewer@nist.gov", "US", &[Role::Viewer]).await)
        .await;
    let jp_admin = app
        .login(&app.person("admin@aisi.go.jp", "JP", &[Role::Admin]).await)
        .await;

    // Creating is idempotent under a key; a key reused for another request is refused.
    let first = post_run(
        &app,
        &uk_evaluator,
        &exercise,
        &new_run(&protocol),
        Some("uk-run-1"),
    )
    .await;
    assert_eq!(first.status(), 201);
    let uk_run: Value = first.json().await.expect("json");
    assert_eq!(
        (uk_run["institute"].as_str(), uk_run["status"].as_str()),
        (Some("UK"), Some("queued"))
    );
    let retry = post_run(
        &app,
        &uk_evaluator,
        &exercise,
        &new_run(&protocol),
        Some("uk-run-1"),
    )
    .await;
    assert_eq!(retry.status(), 201);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(
        retry.json::<Value>().await.expect("json")["id"],
        uk_run["id"]
    );
    let mut other = new_run(&protocol);
    other["model_version"] = json!("something else");
    problem(
        post_run(&app, &uk_evaluator, &exercise, &other, Some("uk-run-1")).await,
        422,
    )
    .await;
    let count: i64 = sqlx::query_scalar("select count(*) from runs")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(count, 1);
    let uk_path = format!("/v1/runs/{}", uk_run["id"].as_str().expect("id"));

    let us_run: Value = post_run(&app, &us_evaluator, &exercise, &new_run(&protocol), None)
        .await
        .json()
        .await
        .expect("json");

    // Before release, the UK run does not exist for the US.
    problem(app.get_as(&us_viewer, &uk_path).await, 404).await;
    problem(
        app.get_as(&us_viewer, &format!("{uk_path}/metrics")).await,
        404,
    )
    .await;
    let us_list: Value = app
        .get_as(&us_viewer, &format!("/v1/exercises/{exercise}/runs"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        ids(&us_list),
        [us_run["id"].as_str().expect("id").to_owned()]
    );
    problem(
        app.get_as(&jp_admin, &format!("/v1/exercises/{exercise}/runs"))
            .await,
        404,
    )
    .await;

    // Results go in while it runs, all or nothing.
    problem(
        app.post_as(
            &uk_evaluator,
            &format!("{uk_path}/metrics"),
            &json!({"metrics": [{"scorer": "match", "metric": "accuracy", "value": 0.5}]}),
        )
        .await,
        409,
    )
    .await;
    assert_eq!(
        app.post_as(&uk_evaluator, &format!("{uk_path}/start"), &json!({}))
            .await
            .status(),
        200
    );
    let nan = r#"{"metrics": [{"scorer": "match", "metric": "accuracy", "value": 0.5}, {"scorer": "match", "metric": "stderr", "value": NaN}]}"#;
    let response = app
        .client
        .post(app.url(&format!("{uk_path}/metrics")))
        .bearer_auth(&uk_evaluator)
        .header("content-type", "application/json")
        .body(nan)
        .send()
        .await
        .expect("send");
    problem(response, 400).await;
    let duplicate = json!({"metrics": [{"scorer": "match", "metric": "accuracy", "value": 0.5}, {"scorer": "match", "metric": "accuracy", "value": 0.6}]});
    let p = problem(
        app.post_as(&uk_evaluator, &format!("{uk_path}/metrics"), &duplicate)
            .await,
        422,
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "metrics[1]");
    let stored: i64 = sqlx::query_scalar("select count(*) from run_metrics")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(stored, 0, "a refused batch writes nothing");
    let batch = json!({"metrics": [
        {"scorer": "match", "metric": "accuracy", "value": 0.85, "stderr": 0.08, "sample_count": 20},
        {"scorer": "includes", "metric": "accuracy", "value": 0.9, "stderr": 0.07, "sample_count": 20}]});
    for _ in 0..2 {
        let written: Value = app
            .post_as(&uk_evaluator, &format!("{uk_path}/metrics"), &batch)
            .await
            .json()
            .await
            .expect("json");
        assert_eq!(written["written"], 2);
    }
    let stored: i64 = sqlx::query_scalar("select count(*) from run_metrics")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(stored, 2, "re-sent results are not duplicated");

    // Releasing needs a finished run and a reviewer of the executing institute.
    problem(app.release(&uk_reviewer, &uk_path, &json!({})).await, 409).await;
    let finished = app
        .post_as(
            &uk_evaluator,
            &format!("{uk_path}/finish"),
            &json!({"outcome": "succeeded"}),
        )
        .await;
    assert_eq!(finished.status(), 200);
    let finished: Value = finished.json().await.expect("json");
    assert_eq!(finished["status"], "succeeded");
    let digest = finished["digest"].as_str().expect("digest").to_owned();
    assert_eq!(digest.len(), 64);
    problem(
        app.post_as(&uk_evaluator, &format!("{uk_path}/metrics"), &batch)
            .await,
        409,
    )
    .await;
    problem(app.release(&uk_evaluator, &uk_path, &json!({})).await, 403).await;
    problem(app.release(&us_viewer, &uk_path, &json!({})).await, 404).await;
    let p = problem(
        app.release(&uk_reviewer, &uk_path, &json!({"institutes": ["JP"]}))
            .await,
        422,
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "institutes[0]");
    // A release is bound to the results read: their digest as If-Match, nothing else.
    let other = format!("\"{}\"", "0".repeat(64));
    problem(
        app.post_if_match(
            &uk_reviewer,
            &format!("{uk_path}/release"),
            Some(&other),
            &json!({}),
        )
        .await,
        412,
    )
    .await;
    for bound in [None, Some("*")] {
        let released = app
            .post_if_match(
                &uk_reviewer,
                &format!("{uk_path}/release"),
                bound,
                &json!({}),
            )
            .await;
        problem(released, 428).await;
    }
    let unreleased: Value = app
        .get_as(&uk_reviewer, &uk_path)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(unreleased["released_to"], json!([]));
    let released = app.release(&uk_reviewer, &uk_path, &json!({})).await;
    assert_eq!(released.status(), 200);
    assert_eq!(
        released.json::<Value>().await.expect("json")["released_to"],
        json!(["US"])
    );
    let (by, at_digest): (uuid::Uuid, String) =
        sqlx::query_as("select released_by, digest from run_releases")
            .fetch_one(&app.pool)
            .await
            .expect("release");
    assert_eq!(at_digest, digest);
    assert_ne!(by, uuid::Uuid::nil());
    assert!(
        sqlx::query("delete from run_releases")
            .execute(&app.pool)
            .await
            .is_err(),
        "a release is never undone"
    );

    // Now the US reads it; the third institute still cannot.
    let seen: Value = app
        .get_as(&us_viewer, &uk_path)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(seen["digest"], json!(digest));
    let metrics: Value = app
        .get_as(&us_viewer, &format!("{uk_path}/metrics"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(metrics.as_array().expect("metrics").len(), 2);
    let both: Value = app
        .get_as(&us_viewer, &format!("/v1/exercises/{exercise}/runs"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(ids(&both).len(), 2);
    problem(app.get_as(&jp_admin, &uk_path).await, 404).await;
    // Seeing is not running it.
    problem(
        app.post_as(&us_evaluator, &format!("{uk_path}/cancel"), &json!({}))
            .await,
        403,
    )
    .await;
}

#[tokio::test]
async fn runs_need_an_active_exercise_an_evaluator_and_one_of_its_versions() {
    let app = TestApp::spawn().await;
    let (exercise, protocol) = active_exercise(&app).await;
    let evaluator = app
        .login(&app.person("eval@nist.gov", "US", &[Role::Evaluator]).await)
        .await;
    let reviewer = app
        .login(&app.person("rev@nist.gov", "US", &[Role::Reviewer]).await)
        .await;
    problem(
        post_run(&app, &reviewer, &exercise, &new_run(&protocol), None).await,
        403,
    )
    .await;
    let mut wrong_version = new_run(&protocol);
    wrong_version["protocol_version"] = json!(2);
    let p = problem(
        post_run(&app, &evaluator, &exercise, &wrong_version, None).await,
        422,
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "protocol_version");
    let mut big = new_run(&protocol);
    big["config"] = json!({"blob": "x".repeat(70_000)});
    let p = problem(post_run(&app, &evaluator, &exercise, &big, None).await, 422).await;
    assert_eq!(p["errors"][0]["field"], "config");
    let mut extra = new_run(&protocol);
    extra["status"] = json!("succeeded");
    problem(
        post_run(&app, &evaluator, &exercise, &extra, None).await,
        422,
    )
    .await;
    problem(
        post_run(
            &app,
            &evaluator,
            &uuid::Uuid::now_v7().to_string(),
            &new_run(&protocol),
            None,
        )
        .await,
        404,
    )
    .await;

    // Moves out of order are refused.
    let run: Value = post_run(&app, &evaluator, &exercise, &new_run(&protocol), None)
        .await
        .json()
        .await
        .expect("json");
    let path = format!("/v1/runs/{}", run["id"].as_str().expect("id"));
    problem(
        app.post_as(
            &evaluator,
            &format!("{path}/finish"),
            &json!({"outcome": "succeeded"}),
        )
        .await,
        409,
    )
    .await;
    assert_eq!(
        app.post_as(&evaluator, &format!("{path}/start"), &json!({}))
            .await
            .status(),
        200
    );
    problem(
        app.post_as(&evaluator, &format!("{path}/start"), &json!({}))
            .await,
        409,
    )
    .await;
    problem(
        app.post_as(
            &evaluator,
            &format!("{path}/finish"),
            &json!({"outcome": "cancelled"}),
        )
        .await,
        422,
    )
    .await;
    let status: String = sqlx::query_scalar("select status from runs")
        .fetch_one(&app.pool)
        .await
        .expect("status");
    assert_eq!(status, "running");

    // Once the exercise is over, no run starts in it.
    let lead = crate::support::TestUser {
        id: uuid::Uuid::nil(),
        email: "lead@nist.gov".into(),
    };
    let lead = app.login(&lead).await;
    assert_eq!(
        app.post_as(
            &lead,
            &format!("/v1/exercises/{exercise}/complete"),
            &json!({})
        )
        .await
        .status(),
        200
    );
    problem(
        post_run(&app, &evaluator, &exercise, &new_run(&protocol), None).await,
        409,
    )
    .await;
    let count: i64 = sqlx::query_scalar("select count(*) from runs")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(count, 1);
}

/// A harness whose token lacks a scope is told which: its own institute's run answers
/// 403 `insufficient_scope` naming the scope, while the other institute's unreleased run
/// still does not exist for it.
#[tokio::test]
async fn a_service_account_without_the_scope_is_told_which_it_lacks() {
    use jointeval_domain::Scope;
    let app = TestApp::spawn().await;
    let (exercise, protocol) = active_exercise(&app).await;
    let mut runs = Vec::new();
    for home in ["US", "UK"] {
        let evaluator = app
            .login(
                &app.person(&format!("eval@{home}.example"), home, &[Role::Evaluator])
                    .await,
            )
            .await;
        let run: Value = post_run(&app, &evaluator, &exercise, &new_run(&protocol), None)
            .await
            .json()
            .await
            .expect("run");
        runs.push(run["id"].as_str().expect("id").to_owned());
    }
    let harness = app
        .service(
            "US",
            "jes_claim-only",
            &[Scope::RunsExecute],
            &[Role::Evaluator],
        )
        .await;
    let token = app.service_login(harness, "jes_claim-only").await;

    let own = app.get_as(&token, &format!("/v1/runs/{}", runs[0])).await;
    assert_eq!(
        own.headers()["www-authenticate"],
        r#"Bearer realm="jointeval", error="insufficient_scope", scope="runs:read""#
    );
    let body = problem(own, 403).await;
    assert_eq!(body["type"], "urn:jointeval:problem:insufficient-scope");
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("runs:read")
    );
    // Writing names the scope a write needs.
    let start = app
        .post_as(&token, &format!("/v1/runs/{}/start", runs[0]), &json!({}))
        .await;
    assert!(
        start.headers()["www-authenticate"]
            .to_str()
            .expect("ascii")
            .contains(r#"scope="runs:write""#)
    );
    problem(start, 403).await;
    // The UK's run is not the US harness's to know of, whatever its scopes.
    problem(
        app.get_as(&token, &format!("/v1/runs/{}", runs[1])).await,
        404,
    )
    .await;
}

/// An `Idempotency-Key` is its account's: another account sending the same key (and the
/// same body) gets a run of its own, never the first account's answer.
#[tokio::test]
async fn an_idempotency_key_reused_by_another_account_replays_nothing() {
    let app = TestApp::spawn().await;
    let (exercise, protocol) = active_exercise(&app).await;
    let mut answers = Vec::new();
    for email in ["first@nist.gov", "second@nist.gov"] {
        let token = app
            .login(&app.person(email, "US", &[Role::Evaluator]).await)
            .await;
        let response = post_run(&app, &token, &exercise, &new_run(&protocol), Some("key-1")).await;
        assert_eq!(response.status(), 201, "{email}");
        assert!(
            !response.headers().contains_key("idempotent-replayed"),
            "{email} got another's answer"
        );
        let run: Value = response.json().await.expect("run");
        answers.push((run["id"].clone(), run["created_by"].clone()));
        // The same account again: the first answer.
        let again = post_run(&app, &token, &exercise, &new_run(&protocol), Some("key-1")).await;
        assert_eq!(again.headers()["idempotent-replayed"], "true");
        let replayed: Value = again.json().await.expect("run");
        assert_eq!(replayed["id"], answers.last().expect("an answer").0);
    }
    assert_ne!(answers[0].0, answers[1].0, "two accounts, two runs");
    assert_ne!(answers[0].1, answers[1].1);
    let runs: i64 = sqlx::query_scalar("select count(*) from runs")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(runs, 2);
}

/// The exercise summary is a confidentiality surface: each institute's results are in it
/// for its own staff, for the partners only once released, and for nobody else.
#[tokio::test]
async fn the_exercise_summary_shows_each_caller_what_it_may_see() {
    use jointeval_domain::Scope;
    let app = TestApp::spawn().await;
    let (exercise, protocol) = active_exercise(&app).await;
    let us_eval = app
        .login(&app.person("eval@nist.gov", "US", &[Role::Evaluator]).await)
        .await;
    let run: Value = post_run(&app, &us_eval, &exercise, &new_run(&protocol), None)
        .await
        .json()
        .await
        .expect("run");
    let run = run["id"].as_str().expect("id").to_owned();
    for (step, body) in [
        ("start", json!({})),
        (
            "metrics",
            json!({"metrics": [{"scorer": "match", "metric": "accuracy", "value": 0.625}]}),
        ),
        ("finish", json!({"outcome": "succeeded"})),
    ] {
        let answer = app
            .post_as(&us_eval, &format!("/v1/runs/{run}/{step}"), &body)
            .await;
        assert_eq!(answer.status(), 200, "{step}");
    }
    let login = |email: &'static str, home: &'static str, roles: &'static [Role]| {
        let app = &app;
        async move { app.login(&app.person(email, home, roles).await).await }
    };
    let us_viewer = login("viewer@nist.gov", "US", &[Role::Viewer]).await;
    let uk_viewer = login("viewer@aisi.gov.uk", "UK", &[Role::Viewer]).await;
    let jp_admin = login("admin@aist.go.jp", "JP", &[Role::Admin]).await;
    let disabled = app.person("gone@nist.gov", "US", &[Role::Viewer]).await;
    let disabled_token = app.login(&disabled).await;
    sqlx::query("update accounts set status = 'disabled' where id = $1")
        .bind(disabled.id)
        .execute(&app.pool)
        .await
        .expect("disable");
    let tool = app
        .service(
            "US",
            "jes_summary-full",
            &[Scope::ExercisesRead, Scope::RunsRead],
            &[Role::Viewer],
        )
        .await;
    let tool = app.service_login(tool, "jes_summary-full").await;
    let blind = app
        .service(
            "US",
            "jes_summary-blind",
            &[Scope::ExercisesRead],
            &[Role::Viewer],
        )
        .await;
    let blind = app.service_login(blind, "jes_summary-blind").await;
    let summary = format!("/v1/exercises/{exercise}/summary");
    // Whether the US's 0.625 is in what `token` reads, or the status it gets instead.
    let reads = |token: String| {
        let (app, summary) = (&app, summary.clone());
        async move {
            let response = app.get_as(&token, &summary).await;
            let status = response.status().as_u16();
            let text = response.text().await.expect("body");
            (status, text.contains("0.625"))
        }
    };
    let before = [
        ("US evaluator", us_eval.clone(), (200, true)),
        ("US viewer", us_viewer.clone(), (200, true)),
        ("US tool with runs:read", tool.clone(), (200, true)),
        ("US tool without a runs scope", blind.clone(), (403, false)),
        ("UK viewer", uk_viewer.clone(), (200, false)),
        ("JP admin", jp_admin.clone(), (404, false)),
        ("disabled US viewer", disabled_token.clone(), (401, false)),
    ];
    for (who, token, want) in before {
        assert_eq!(reads(token).await, want, "{who}, before the release");
    }
    let anonymous = app.get(&summary).await;
    assert_eq!(anonymous.status(), 401);

    let reviewer = login("reviewer@nist.gov", "US", &[Role::Reviewer]).await;
    let released = app
        .release(&reviewer, &format!("/v1/runs/{run}"), &json!({}))
        .await;
    assert_eq!(released.status(), 200);
    assert_eq!(
        reads(uk_viewer).await,
        (200, true),
        "UK viewer, after the release"
    );
    assert_eq!(
        reads(jp_admin).await,
        (404, false),
        "JP admin, after the release"
    );
}
