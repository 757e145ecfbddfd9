//! What a release releases: a run's results always, its transcripts (the original log)
//! only when the reviewer says so; for whom, and what the database keeps of it.

use jointeval_domain::Role;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::story::{active_exercise, new_run};
use crate::support::{TestApp, expect, problem};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/inspect/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

/// A run of `evaluator`'s institute with `arith_small.eval` imported, finished: its path.
async fn run_with_log(app: &TestApp, evaluator: &str, exercise: &str, protocol: &str) -> String {
    let mut body = new_run(protocol);
    body["model_version"] = json!("mockllm/model");
    let run = expect(
        app.post_as(evaluator, &format!("/v1/exercises/{exercise}/runs"), &body)
            .await,
        201,
    )
    .await;
    let path = format!("/v1/runs/{}", run["id"].as_str().expect("id"));
    expect(
        app.post_as(evaluator, &format!("{path}/start"), &json!({}))
            .await,
        200,
    )
    .await;
    let imported = app
        .client
        .post(app.url(&format!("{path}/inspect-log")))
        .bearer_auth(evaluator)
        .header("content-type", "application/zip")
        .body(fixture("arith_small.eval"))
        .send()
        .await
        .expect("send");
    expect(imported, 200).await;
    expect(
        app.post_as(
            evaluator,
            &format!("{path}/finish"),
            &json!({"outcome": "succeeded"}),
        )
        .await,
        200,
    )
    .await;
    path
}

/// The run's releases as the database keeps them: (institute code, transcripts).
async fn releases(app: &TestApp, path: &str) -> Vec<(String, bool)> {
    let id: Uuid = path
        .trim_start_matches("/v1/runs/")
        .parse()
        .expect("a run id");
    sqlx::query_as(
        "select i.code, rr.transcripts from run_releases rr join institutes i on i.id = rr.institute_id
         where rr.run_id = $1 order by i.code, rr.transcripts",
    )
    .bind(id)
    .fetch_all(&app.pool)
    .await
    .expect("releases")
}

#[tokio::test]
async fn a_release_opens_the_transcripts_only_when_it_says_so() {
    let app = TestApp::spawn().await;
    let (exercise, protocol) = active_exercise(&app).await;
    let us_evaluator = app
        .login(
            &app.person("log-eval@nist.gov", "US", &[Role::Evaluator])
                .await,
        )
        .await;
    let us_viewer = app
        .login(
            &app.person("log-viewer@nist.gov", "US", &[Role::Viewer])
                .await,
        )
        .await;
    let reviewer = app
        .login(
            &app.person("log-rev@nist.gov", "US", &[Role::Reviewer])
                .await,
        )
        .await;
    let uk = app
        .login(
            &app.person("log-viewer@aisi.gov.uk", "UK", &[Role::Viewer])
                .await,
        )
        .await;
    let fr = app
        .login(
            &app.person("log-viewer@inria.fr", "FR", &[Role::Viewer])
                .await,
        )
        .await;
    let run = run_with_log(&app, &us_evaluator, &exercise, &protocol).await;
    let log = format!("{run}/inspect-log");
    let original = fixture("arith_small.eval");
    let missing = format!("/v1/runs/{}", Uuid::now_v7());
    let reads = |path: &str| {
        [
            path.to_owned(),
            format!("{path}/metrics"),
            format!("{path}/samples"),
            format!("{path}/inspect-log"),
        ]
    };
    // What a caller who may not see the run gets: what a missing run gets.
    let unseen = |token: String, path: String| {
        let app = &app;
        let missing = &missing;
        async move {
            for (read, absent) in reads(&path).iter().zip(reads(missing)) {
                let hidden = problem(app.get_as(&token, read).await, 404).await;
                let none = problem(app.get_as(&token, &absent).await, 404).await;
                assert_eq!(hidden, none, "{read}");
            }
        }
    };

    // Unreleased: the US's own, log and all; nobody else's.
    for us in [&us_evaluator, &us_viewer] {
        let got = app.get_as(us, &log).await;
        assert_eq!(got.status(), 200);
        assert_eq!(got.bytes().await.expect("bytes").to_vec(), original);
    }
    unseen(uk.clone(), run.clone()).await;
    unseen(fr.clone(), run.clone()).await;

    // The results alone: the UK reads the run, its metrics and its scores, not its log.
    let released = expect(app.release(&reviewer, &run, &json!({})).await, 200).await;
    assert_eq!(released["released_to"], json!(["UK"]));
    assert_eq!(released["transcripts_released_to"], json!([]));
    let seen = expect(app.get_as(&uk, &run).await, 200).await;
    assert_eq!(seen["transcripts_released_to"], json!([]));
    let metrics = expect(app.get_as(&uk, &format!("{run}/metrics")).await, 200).await;
    assert!(!metrics.as_array().expect("metrics").is_empty());
    let samples = expect(
        app.get_as(&uk, &format!("{run}/samples?limit=5")).await,
        200,
    )
    .await;
    assert_eq!(samples["items"].as_array().map(Vec::len), Some(5));
    let withheld = problem(app.get_as(&uk, &log).await, 404).await;
    assert_eq!(withheld["type"], "urn:jointeval:problem:not-released");
    assert!(
        withheld["detail"]
            .as_str()
            .is_some_and(|d| d.contains("not released to your institute")),
        "{withheld}"
    );
    unseen(fr.clone(), run.clone()).await;
    // The same release again changes nothing.
    let again = expect(app.release(&reviewer, &run, &json!({})).await, 200).await;
    assert_eq!(again["transcripts_released_to"], json!([]));
    assert_eq!(releases(&app, &run).await, [("UK".to_owned(), false)]);

    // The transcripts, by a second release: a row beside the first, which stays.
    let opened = expect(
        app.release(&reviewer, &run, &json!({"transcripts": true}))
            .await,
        200,
    )
    .await;
    assert_eq!(opened["released_to"], json!(["UK"]));
    assert_eq!(opened["transcripts_released_to"], json!(["UK"]));
    assert_eq!(
        releases(&app, &run).await,
        [("UK".to_owned(), false), ("UK".to_owned(), true)]
    );
    let got = app.get_as(&uk, &log).await;
    assert_eq!(got.status(), 200);
    let etag = got.headers()["etag"].to_str().expect("etag").to_owned();
    assert_eq!(etag.len(), 66);
    assert_eq!(got.bytes().await.expect("bytes").to_vec(), original);
    unseen(fr.clone(), run.clone()).await;
    // Released is released: a release of the results alone takes nothing back.
    let after = expect(app.release(&reviewer, &run, &json!({})).await, 200).await;
    assert_eq!(after["transcripts_released_to"], json!(["UK"]));
    assert_eq!(releases(&app, &run).await.len(), 2);
    assert_eq!(app.get_as(&uk, &log).await.status(), 200);

    // The trail says what each release released, and what it added.
    let summaries: Vec<String> = sqlx::query_scalar(
        "select summary from audit_events where action = 'run.released' order by seq",
    )
    .fetch_all(&app.pool)
    .await
    .expect("events");
    let summaries: Vec<Value> = summaries
        .iter()
        .map(|s| serde_json::from_str(s).expect("a JSON summary"))
        .collect();
    let uk_id = app.institute("UK").await;
    let scope: Vec<(Value, Value)> = summaries
        .iter()
        .map(|s| (s["transcripts"].clone(), s["newly_released_to"].clone()))
        .collect();
    assert_eq!(
        scope,
        [
            (json!(false), json!([uk_id])),
            (json!(false), json!([])),
            (json!(true), json!([uk_id])),
            (json!(false), json!([])),
        ]
    );
    assert!(summaries.iter().all(|s| s["released_to"] == json!([uk_id])));
}

#[tokio::test]
async fn the_transcripts_may_go_with_the_first_release_and_to_some_partners_only() {
    let app = TestApp::spawn().await;
    let (exercise, protocol) = active_exercise(&app).await;
    let us_evaluator = app
        .login(
            &app.person("log-eval@nist.gov", "US", &[Role::Evaluator])
                .await,
        )
        .await;
    let reviewer = app
        .login(
            &app.person("log-rev@nist.gov", "US", &[Role::Reviewer])
                .await,
        )
        .await;
    let uk = app
        .login(
            &app.person("log-viewer@aisi.gov.uk", "UK", &[Role::Viewer])
                .await,
        )
        .await;
    let run = run_with_log(&app, &us_evaluator, &exercise, &protocol).await;
    // A flag that is not a boolean is refused, naming it; nothing is released.
    let refused = problem(
        app.release(&reviewer, &run, &json!({"transcripts": "yes"}))
            .await,
        422,
    )
    .await;
    assert!(refused.to_string().contains("transcripts"), "{refused}");
    assert!(releases(&app, &run).await.is_empty());
    let released = expect(
        app.release(
            &reviewer,
            &run,
            &json!({"institutes": ["UK"], "transcripts": true}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(
        (
            &released["released_to"],
            &released["transcripts_released_to"]
        ),
        (&json!(["UK"]), &json!(["UK"]))
    );
    // One release of both: one row, which the results again do not repeat.
    assert_eq!(releases(&app, &run).await, [("UK".to_owned(), true)]);
    expect(app.release(&reviewer, &run, &json!({})).await, 200).await;
    assert_eq!(releases(&app, &run).await, [("UK".to_owned(), true)]);
    let got = app.get_as(&uk, &format!("{run}/inspect-log")).await;
    assert_eq!(got.status(), 200);
    assert_eq!(
        got.bytes().await.expect("bytes").to_vec(),
        fixture("arith_small.eval")
    );
}
