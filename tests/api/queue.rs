//! The run queue over HTTP: harnesses claim queued runs of their institute under a lease,
//! renew it, and finish; an expired lease returns the run to the queue; two claims never
//! get the same run, across service instances too.

use std::collections::BTreeSet;

use jointeval_domain::{Role, Scope};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::story::{active_exercise, new_run};
use crate::support::{TestApp, problem};

const HARNESS_SCOPES: [Scope; 3] = [Scope::RunsExecute, Scope::RunsWrite, Scope::ResultsWrite];

async fn queued_run(
    app: &TestApp,
    token: &str,
    exercise: &str,
    protocol: &str,
    harness: &str,
) -> Uuid {
    let mut body = new_run(protocol);
    body["harness"]["name"] = json!(harness);
    let created = app
        .post_as(token, &format!("/v1/exercises/{exercise}/runs"), &body)
        .await;
    assert_eq!(created.status(), 201);
    created.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("uuid")
}

async fn harness(app: &TestApp, home: &str, name: &str) -> (Uuid, String) {
    let id = app
        .service(home, name, &HARNESS_SCOPES, &[Role::Evaluator])
        .await;
    (id, app.service_login(id, name).await)
}

/// A claim through `base` (one of the service instances): the run's id, or `None` (204).
async fn claim(client: &reqwest::Client, base: &str, token: &str, body: &Value) -> Option<Value> {
    let response = client
        .post(format!("{base}/v1/runs/claim"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("send");
    match response.status().as_u16() {
        200 => Some(response.json().await.expect("json")),
        204 => None,
        other => panic!(
            "claim answered {other}: {}",
            response.text().await.unwrap_or_default()
        ),
    }
}

#[tokio::test]
async fn a_harness_claims_renews_and_finishes_and_an_expired_lease_returns_the_run() {
    let app = TestApp::spawn().await;
    let (exercise, protocol) = active_exercise(&app).await;
    let evaluator = app
        .login(
            &app.person("queue-eval@nist.gov", "US", &[Role::Evaluator])
                .await,
        )
        .await;
    let first = queued_run(&app, &evaluator, &exercise, &protocol, "inspect").await;
    let second = queued_run(&app, &evaluator, &exercise, &protocol, "inspect").await;
    let other = queued_run(&app, &evaluator, &exercise, &protocol, "other-harness").await;
    let (one_id, one) = harness(&app, "US", "harness one secret").await;
    let (two_id, two) = harness(&app, "US", "harness two secret").await;
    let base = app.url("");

    // By harness, then oldest first; then nothing.
    let got = claim(
        &app.client,
        &base,
        &one,
        &json!({"harness": "other-harness"}),
    )
    .await
    .expect("a run");
    assert_eq!(got["id"], other.to_string());
    let got = claim(&app.client, &base, &one, &json!({"lease_seconds": 60}))
        .await
        .expect("a run");
    assert_eq!(got["id"], first.to_string());
    assert_eq!(got["status"], "running");
    assert_eq!(got["lease"]["holder"], one_id.to_string());
    let first_expiry: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(got["lease"]["expires_at"].clone()).expect("time");
    let got = claim(&app.client, &base, &one, &json!({}))
        .await
        .expect("a run");
    assert_eq!(got["id"], second.to_string());
    assert!(
        claim(&app.client, &base, &two, &json!({})).await.is_none(),
        "the queue is empty"
    );

    // The holder renews; nobody else may, nor move the run or write its results.
    let renewed = app
        .post_as(
            &one,
            &format!("/v1/runs/{first}/heartbeat"),
            &json!({"lease_seconds": 600}),
        )
        .await;
    assert_eq!(renewed.status(), 200);
    let renewed: Value = renewed.json().await.expect("json");
    let renewed_expiry: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(renewed["lease"]["expires_at"].clone()).expect("time");
    assert!(renewed_expiry > first_expiry + chrono::Duration::seconds(500));
    let p = problem(
        app.post_as(&two, &format!("/v1/runs/{first}/heartbeat"), &json!({}))
            .await,
        409,
    )
    .await;
    assert!(
        p["detail"]
            .as_str()
            .expect("detail")
            .contains("another worker"),
        "{p}"
    );
    for (path, body, tokens) in [
        (
            "finish",
            json!({"outcome": "succeeded"}),
            vec![&two, &evaluator],
        ),
        (
            "metrics",
            json!({"metrics": [{"scorer": "s", "metric": "m", "value": 1.0}]}),
            vec![&two, &evaluator],
        ),
        ("cancel", json!({}), vec![&two]),
    ] {
        for token in tokens {
            let p = problem(
                app.post_as(token, &format!("/v1/runs/{first}/{path}"), &body)
                    .await,
                409,
            )
            .await;
            assert_eq!(p["type"], "urn:jointeval:problem:run-leased", "{path}");
        }
    }
    let metrics = app
        .post_as(
            &one,
            &format!("/v1/runs/{first}/metrics"),
            &json!({"metrics": [{"scorer": "match", "metric": "accuracy", "value": 0.5}]}),
        )
        .await;
    assert_eq!(metrics.status(), 200);
    let finished = app
        .post_as(
            &one,
            &format!("/v1/runs/{first}/finish"),
            &json!({"outcome": "succeeded"}),
        )
        .await;
    assert_eq!(finished.status(), 200);
    let finished: Value = finished.json().await.expect("json");
    assert_eq!(finished["status"], "succeeded");
    assert_eq!(
        finished["lease"],
        Value::Null,
        "a finished run is held by nobody"
    );
    problem(
        app.post_as(&one, &format!("/v1/runs/{first}/heartbeat"), &json!({}))
            .await,
        409,
    )
    .await;

    // Harness one goes silent on the second run: once its lease expires, the run is back
    // in the queue, harness two gets it, and harness one has lost it.
    sqlx::query("update runs set lease_expires_at = now() - interval '1 second' where id = $1")
        .bind(second)
        .execute(&app.pool)
        .await
        .expect("expire the lease");
    let got = claim(&app.client, &base, &two, &json!({}))
        .await
        .expect("the expired run");
    assert_eq!(got["id"], second.to_string());
    assert_eq!(got["lease"]["holder"], two_id.to_string());
    for (path, body) in [
        ("heartbeat", json!({})),
        ("finish", json!({"outcome": "succeeded"})),
    ] {
        problem(
            app.post_as(&one, &format!("/v1/runs/{second}/{path}"), &body)
                .await,
            409,
        )
        .await;
    }
    let finished = app
        .post_as(
            &two,
            &format!("/v1/runs/{second}/finish"),
            &json!({"outcome": "failed"}),
        )
        .await;
    assert_eq!(finished.status(), 200);

    // A person may still cancel a run a harness holds (a stuck one, say).
    let third = queued_run(&app, &evaluator, &exercise, &protocol, "inspect").await;
    let got = claim(&app.client, &base, &one, &json!({}))
        .await
        .expect("a run");
    assert_eq!(got["id"], third.to_string());
    let cancelled = app
        .post_as(&evaluator, &format!("/v1/runs/{third}/cancel"), &json!({}))
        .await;
    assert_eq!(cancelled.status(), 200);
    let cancelled: Value = cancelled.json().await.expect("json");
    assert_eq!(cancelled["lease"], Value::Null);
    problem(
        app.post_as(&one, &format!("/v1/runs/{third}/heartbeat"), &json!({}))
            .await,
        409,
    )
    .await;
}

#[tokio::test]
async fn only_harnesses_of_the_runs_institute_claim() {
    let app = TestApp::spawn().await;
    let (exercise, protocol) = active_exercise(&app).await;
    let evaluator_user = app
        .person("queue-eval@nist.gov", "US", &[Role::Evaluator])
        .await;
    let evaluator = app.login(&evaluator_user).await;
    let run = queued_run(&app, &evaluator, &exercise, &protocol, "inspect").await;
    let (_, uk_harness) = harness(&app, "UK", "uk harness secret").await;
    let unscoped = app
        .service(
            "US",
            "unscoped secret",
            &[Scope::RunsWrite, Scope::ResultsWrite],
            &[Role::Evaluator],
        )
        .await;
    let unscoped = app.service_login(unscoped, "unscoped secret").await;
    let no_role = app
        .service(
            "US",
            "viewer harness secret",
            &HARNESS_SCOPES,
            &[Role::Viewer],
        )
        .await;
    let no_role = app.service_login(no_role, "viewer harness secret").await;
    // Claiming alone, it could not finish what it claims.
    let claim_only = app
        .service(
            "US",
            "claim only secret",
            &[Scope::RunsExecute],
            &[Role::Evaluator],
        )
        .await;
    let claim_only = app.service_login(claim_only, "claim only secret").await;

    for token in [&evaluator, &unscoped, &no_role, &claim_only] {
        let p = problem(app.post_as(token, "/v1/runs/claim", &json!({})).await, 403).await;
        assert_eq!(p["type"], "urn:jointeval:problem:forbidden");
    }
    let anonymous = app
        .client
        .post(app.url("/v1/runs/claim"))
        .json(&json!({}))
        .send()
        .await
        .expect("send");
    assert_eq!(anonymous.status(), 401);
    // The UK's harness finds no run: the US's queue is not its own.
    assert!(
        claim(&app.client, &app.url(""), &uk_harness, &json!({}))
            .await
            .is_none()
    );
    let (_, us_harness) = harness(&app, "US", "us harness secret").await;
    for body in [
        json!({"lease_seconds": 5}),
        json!({"lease_seconds": 3601}),
        json!({"harness": ""}),
        json!({"harness": "x".repeat(101)}),
        json!({"colour": "blue"}),
    ] {
        problem(app.post_as(&us_harness, "/v1/runs/claim", &body).await, 422).await;
    }
    let status: String = sqlx::query_scalar("select status from runs where id = $1")
        .bind(run)
        .fetch_one(&app.pool)
        .await
        .expect("status");
    assert_eq!(status, "queued", "refused claims took nothing");

    // Claimed by the US's harness, the run stays out of the UK harness's reach.
    let got = claim(&app.client, &app.url(""), &us_harness, &json!({}))
        .await
        .expect("the US run");
    assert_eq!(got["id"], run.to_string());
    for (path, body) in [
        ("heartbeat", json!({})),
        ("finish", json!({"outcome": "succeeded"})),
    ] {
        problem(
            app.post_as(&uk_harness, &format!("/v1/runs/{run}/{path}"), &body)
                .await,
            404,
        )
        .await;
    }
    let holder: Option<Uuid> = sqlx::query_scalar("select lease_holder from runs where id = $1")
        .bind(run)
        .fetch_one(&app.pool)
        .await
        .expect("holder");
    assert_eq!(
        holder.map(|h| h.to_string()),
        got["lease"]["holder"].as_str().map(str::to_owned)
    );
}

#[tokio::test]
async fn concurrent_claimers_on_two_instances_never_share_a_run() {
    const RUNS: usize = 30;
    let app = TestApp::spawn().await;
    let (exercise, protocol) = active_exercise(&app).await;
    let evaluator = app
        .login(
            &app.person("queue-eval@nist.gov", "US", &[Role::Evaluator])
                .await,
        )
        .await;
    let mut queued = BTreeSet::new();
    for _ in 0..RUNS {
        queued.insert(
            queued_run(&app, &evaluator, &exercise, &protocol, "inspect")
                .await
                .to_string(),
        );
    }
    // A second instance of the service on the same database.
    let second = app.second_instance().await;

    // All six start claiming at the same moment, so that their claims overlap.
    const WORKERS: usize = 6;
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(WORKERS));
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let (_, token) = harness(&app, "US", &format!("worker {w} secret")).await;
        let base = if w % 2 == 0 {
            app.url("")
        } else {
            second.clone()
        };
        let client = app.client.clone();
        let start = start.clone();
        workers.push(tokio::spawn(async move {
            start.wait().await;
            let mut mine = Vec::new();
            while let Some(run) = claim(&client, &base, &token, &json!({})).await {
                mine.push(run["id"].as_str().expect("id").to_owned());
            }
            mine
        }));
    }
    let mut claimed = Vec::new();
    for w in workers {
        claimed.extend(w.await.expect("worker"));
    }
    let unique: BTreeSet<String> = claimed.iter().cloned().collect();
    assert_eq!(
        claimed.len(),
        RUNS,
        "every run claimed exactly once: {claimed:?}"
    );
    assert_eq!(unique, queued);
    let holders: i64 = sqlx::query_scalar(
        "select count(distinct lease_holder) from runs where status = 'running'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("holders");
    assert!(holders > 1, "the work was shared between workers");
}

/// The scores of samples `from..to`, one NDJSON line each.
fn score_lines(from: usize, to: usize) -> String {
    (from..to)
        .map(|i| {
            format!(
                "{}\n",
                json!({"sample_id": format!("s{i}"), "epoch": 1, "scorer": "match", "value": 1.0})
            )
        })
        .collect()
}

type Chunks = tokio::sync::mpsc::Sender<Result<String, std::io::Error>>;

/// An upload of scores to `run` whose first 12,000 scores are in and written (two
/// batches), the rest to come through the sender.
async fn upload_in_flight(
    app: &TestApp,
    run: Uuid,
    token: &str,
) -> (Chunks, tokio::task::JoinHandle<reqwest::Response>) {
    let (more, body) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(4);
    more.send(Ok(score_lines(0, 12_000))).await.expect("send");
    let request = app
        .client
        .post(app.url(&format!("/v1/runs/{run}/samples")))
        .bearer_auth(token)
        .header("content-type", "application/x-ndjson")
        .body(reqwest::Body::wrap_stream(futures_util::stream::unfold(
            body,
            |mut body| async move { body.recv().await.map(|chunk| (chunk, body)) },
        )));
    let upload = tokio::spawn(async move { request.send().await.expect("send") });
    let written = async {
        loop {
            let rows: i64 = sqlx::query_scalar(
                "select count(*) from pg_locks l join pg_class c on c.oid = l.relation
                 where c.relname = 'run_samples' and l.mode = 'RowExclusiveLock'",
            )
            .fetch_one(&app.pool)
            .await
            .expect("locks");
            if rows > 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), written)
        .await
        .expect("the upload writes its first batches");
    (more, upload)
}

#[tokio::test]
async fn a_long_upload_keeps_neither_the_heartbeat_nor_a_reader_of_its_run_waiting() {
    let app = TestApp::spawn().await;
    let (exercise, protocol) = active_exercise(&app).await;
    let evaluator = app
        .login(
            &app.person("upload-eval@nist.gov", "US", &[Role::Evaluator])
                .await,
        )
        .await;
    let run = queued_run(&app, &evaluator, &exercise, &protocol, "inspect").await;
    let (_, holder) = harness(&app, "US", "uploading harness secret").await;
    // A claim with nothing to ask needs no body.
    let claimed = app.post_empty(&holder, "/v1/runs/claim").await;
    assert_eq!(claimed.status(), 200);
    let claimed: Value = claimed.json().await.expect("json");
    assert_eq!(claimed["id"], run.to_string());

    let (more, upload) = upload_in_flight(&app, run, &holder).await;

    // Meanwhile the harness renews its lease (with no body: the default lease), and a
    // reader reads the run, at once.
    let prompt = std::time::Duration::from_secs(5);
    let renewed = app
        .client
        .post(app.url(&format!("/v1/runs/{run}/heartbeat")))
        .bearer_auth(&holder)
        .timeout(prompt)
        .send()
        .await
        .expect("the heartbeat answers while the upload is in flight");
    assert_eq!(renewed.status(), 200);
    let read = app
        .client
        .get(app.url(&format!("/v1/runs/{run}")))
        .bearer_auth(&evaluator)
        .timeout(prompt)
        .send()
        .await
        .expect("the run is read while the upload is in flight");
    assert_eq!(read.status(), 200);
    assert!(!upload.is_finished(), "the upload is still in flight");

    // The upload then ends, and every score of it is stored.
    more.send(Ok(score_lines(12_000, 12_500)))
        .await
        .expect("send");
    drop(more);
    let done = upload.await.expect("upload");
    assert_eq!(done.status(), 200);
    let done: Value = done.json().await.expect("json");
    assert_eq!(done["lines"], 12_500);
    assert_eq!(done["stored"], 12_500);
}

#[tokio::test]
async fn an_upload_to_a_run_finished_meanwhile_is_refused_and_leaves_the_digest_true() {
    let app = TestApp::spawn().await;
    let (exercise, protocol) = active_exercise(&app).await;
    let evaluator = app
        .login(
            &app.person("late-eval@nist.gov", "US", &[Role::Evaluator])
                .await,
        )
        .await;
    let run = queued_run(&app, &evaluator, &exercise, &protocol, "inspect").await;
    let (_, holder) = harness(&app, "US", "late harness secret").await;
    claim(&app.client, &app.url(""), &holder, &json!({}))
        .await
        .expect("a run");
    let (more, upload) = upload_in_flight(&app, run, &holder).await;

    // The holder finishes the run while its own upload is still coming in.
    let finished = app
        .client
        .post(app.url(&format!("/v1/runs/{run}/finish")))
        .bearer_auth(&holder)
        .timeout(std::time::Duration::from_secs(5))
        .json(&json!({"outcome": "succeeded"}))
        .send()
        .await
        .expect("finishing answers while the upload is in flight");
    assert_eq!(finished.status(), 200);
    let finished: Value = finished.json().await.expect("json");

    // The upload ends after: refused, and the run holds none of it.
    more.send(Ok(score_lines(12_000, 12_100)))
        .await
        .expect("send");
    drop(more);
    let late = problem(upload.await.expect("upload"), 409).await;
    assert_eq!(late["type"], "urn:jointeval:problem:run-state");
    let stored: i64 = sqlx::query_scalar("select count(*) from run_samples where run_id = $1")
        .bind(run)
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(stored, 0);
    let now: Value = app
        .get_as(&evaluator, &format!("/v1/runs/{run}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(now["digest"], finished["digest"]);
    assert_eq!(now["status"], "succeeded");
}
