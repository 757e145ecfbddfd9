//! Comparable by construction: a run of another model than the exercise's is refused, and
//! every run carries a verdict naming each way it deviates from its protocol version, which
//! the exercise summary shows per protocol version and metric.

use jointeval_domain::Role;
use serde_json::{Value, json};

use crate::support::story::{active_exercise_with, new_run};
use crate::support::{TestApp, expect, problem};

fn fixture(name: &str) -> Value {
    let bytes = std::fs::read(format!(
        "{}/tests/fixtures/inspect/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture");
    serde_json::from_slice(&bytes).expect("a JSON log")
}

/// The protocol the US ran faithfully: Inspect's `arith_epochs`, 50 samples, 3 epochs,
/// the `generate` solver at temperature 0, at most 10 messages a sample.
fn content() -> Value {
    json!({
        "objective": "Arithmetic, three epochs",
        "tasks": [{"name": "Arithmetic",
                   "dataset": {"name": "arith_epochs-data", "version": "1", "sha256": null, "sample_count": 50},
                   "harness": {"name": "inspect", "task_ref": "arith_epochs"},
                   "scorers": ["match", "includes"], "metrics": ["accuracy"], "epochs": 3,
                   "generation": {"temperature": 0}, "solver": "generate",
                   "limits": {"message_limit": 10}}],
        "metrics": [{"name": "accuracy", "higher_is_better": true, "threshold": null}]
    })
}

/// The log as run with the protocol's settings.
fn faithful(mut log: Value) -> Value {
    log["eval"]["model_generate_config"] = json!({"temperature": 0.0});
    log["eval"]["config"]["message_limit"] = json!(10);
    log
}

async fn from_log(
    app: &TestApp,
    token: &str,
    exercise: &str,
    protocol: &str,
    log: &Value,
) -> reqwest::Response {
    app.client
        .post(app.url(&format!(
            "/v1/exercises/{exercise}/runs/inspect-log?protocol_id={protocol}&protocol_version=1"
        )))
        .bearer_auth(token)
        .json(log)
        .send()
        .await
        .expect("send")
}

async fn runs_of(app: &TestApp, token: &str, exercise: &str) -> usize {
    let page = expect(
        app.get_as(token, &format!("/v1/exercises/{exercise}/runs"))
            .await,
        200,
    )
    .await;
    page["items"].as_array().expect("items").len()
}

fn fields(deviations: &Value) -> Vec<&str> {
    deviations
        .as_array()
        .expect("deviations")
        .iter()
        .map(|d| d["field"].as_str().expect("field"))
        .collect()
}

#[tokio::test]
async fn a_run_or_log_of_another_model_is_refused_naming_the_field() {
    let app = TestApp::spawn().await;
    let (exercise, protocol) = active_exercise_with(&app, content()).await;
    let us = app
        .login(&app.person("eval@nist.gov", "US", &[Role::Evaluator]).await)
        .await;
    let runs = format!("/v1/exercises/{exercise}/runs");
    // The exercise's model is Inspect's mockllm, version `model`.
    for other in ["openai/gpt-4o", "mockllm", "model-2", "mockllm/model/extra"] {
        let mut body = new_run(&protocol);
        body["model_version"] = json!(other);
        let p = problem(app.post_as(&us, &runs, &body).await, 422).await;
        assert_eq!(p["errors"][0]["field"], "model_version", "{other}: {p}");
        let message = p["errors"][0]["message"].as_str().expect("message");
        assert!(message.contains("mockllm-model"), "{message}");
    }
    let mut log = fixture("arith_epochs.json");
    log["eval"]["model"] = json!("openai/gpt-4o");
    let p = problem(from_log(&app, &us, &exercise, &protocol, &log).await, 422).await;
    assert_eq!(p["errors"][0]["field"], "eval.model", "{p}");
    assert_eq!(
        runs_of(&app, &us, &exercise).await,
        0,
        "nothing was written"
    );

    // The model named as a harness names it: its version, or name and version, after a
    // provider or serving API.
    for named in [
        "mockllm/model",
        "model",
        "mockllm-model",
        "inspect/mockllm/model",
    ] {
        let mut body = new_run(&protocol);
        body["model_version"] = json!(named);
        let run = expect(app.post_as(&us, &runs, &body).await, 201).await;
        assert_eq!(run["model_version"], named);
        assert_eq!(run["comparable"], Value::Null, "not checked before it ran");
    }
}

#[tokio::test]
async fn every_deviation_is_named_and_the_summary_says_which_runs_compare() {
    let app = TestApp::spawn().await;
    let (exercise, protocol) = active_exercise_with(&app, content()).await;
    let us = app
        .login(&app.person("eval@nist.gov", "US", &[Role::Evaluator]).await)
        .await;
    let uk = app
        .login(
            &app.person("eval@aisi.gov.uk", "UK", &[Role::Evaluator])
                .await,
        )
        .await;

    // The US ran the protocol; the UK ran another task, of 1 epoch instead of 3, with the
    // provider's default temperature and no message limit.
    let us_run = expect(
        from_log(
            &app,
            &us,
            &exercise,
            &protocol,
            &faithful(fixture("arith_epochs.json")),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(us_run["run"]["comparable"], true, "{us_run}");
    assert_eq!(us_run["run"]["deviations"], json!([]));
    let uk_run = expect(
        from_log(
            &app,
            &uk,
            &exercise,
            &protocol,
            &fixture("arith_small.json"),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(uk_run["run"]["comparable"], false);
    assert_eq!(
        uk_run["import"]["deviations"], uk_run["run"]["deviations"],
        "the import answers the verdict it recorded"
    );
    let deviations = &uk_run["run"]["deviations"];
    assert_eq!(
        fields(deviations),
        [
            "task",
            "dataset.name",
            "dataset.sample_count",
            "epochs",
            "generation.temperature",
            "limits.message_limit"
        ]
    );
    assert_eq!(
        deviations[3],
        json!({"field": "epochs", "protocol": "3", "run": "1"})
    );
    assert_eq!(
        deviations[4],
        json!({"field": "generation.temperature", "protocol": "0", "run": "(not stated)"})
    );

    // Results sent through the API are held to what they show and what the run's config
    // states, once the run finishes.
    let mut body = new_run(&protocol);
    body["config"] = json!({"temperature": 0.7, "message_limit": 10});
    let api = expect(
        app.post_as(&us, &format!("/v1/exercises/{exercise}/runs"), &body)
            .await,
        201,
    )
    .await;
    let api_path = format!("/v1/runs/{}", api["id"].as_str().expect("id"));
    expect(
        app.post_as(&us, &format!("{api_path}/start"), &json!({}))
            .await,
        200,
    )
    .await;
    let scores: Vec<Value> = (0..50)
        .flat_map(|i| {
            ["match", "includes"].map(|scorer| {
                json!({"sample_id": format!("q{i:04}"), "epoch": 1, "scorer": scorer, "value": "C"})
            })
        })
        .collect();
    expect(
        app.post_as(&us, &format!("{api_path}/samples"), &json!(scores))
            .await,
        200,
    )
    .await;
    let running = expect(app.get_as(&us, &api_path).await, 200).await;
    assert_eq!(running["comparable"], Value::Null);
    let finished = expect(
        app.post_as(
            &us,
            &format!("{api_path}/finish"),
            &json!({"outcome": "succeeded"}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(finished["comparable"], false);
    assert_eq!(
        finished["deviations"],
        json!([
            {"field": "epochs", "protocol": "3", "run": "1"},
            {"field": "generation.temperature", "protocol": "0", "run": "0.7"},
            {"field": "solver", "protocol": "generate", "run": "(not stated)"}
        ])
    );
    assert_eq!(
        expect(app.get_as(&us, &api_path).await, 200).await["deviations"],
        finished["deviations"],
        "recorded on the run"
    );

    // Before the UK releases, the US summary holds the US runs only; after, the UK's run
    // beside them, marked not comparable and why.
    let summary_path = format!("/v1/exercises/{exercise}/summary");
    let line = |summary: &Value, scorer: &str| -> Value {
        summary["lines"]
            .as_array()
            .expect("lines")
            .iter()
            .find(|l| l["scorer"] == scorer && l["metric"] == "accuracy")
            .cloned()
            .unwrap_or_else(|| panic!("no {scorer} accuracy line in {summary}"))
    };
    let before = expect(app.get_as(&us, &summary_path).await, 200).await;
    let match_line = line(&before, "match");
    assert_eq!(
        match_line["results"].as_array().expect("results").len(),
        1,
        "only the US log run has metrics: {match_line}"
    );
    assert_eq!(match_line["comparable"], true);
    assert_eq!(match_line["results"][0]["comparable"], true);
    let uk_reviewer = app
        .login(&app.person("rev@aisi.gov.uk", "UK", &[Role::Reviewer]).await)
        .await;
    // The UK also runs the protocol faithfully (the same eval: a second institute may).
    let uk_faithful = expect(
        from_log(
            &app,
            &uk,
            &exercise,
            &protocol,
            &faithful(fixture("arith_epochs.json")),
        )
        .await,
        201,
    )
    .await;
    let uk_faithful_id = uk_faithful["run"]["id"].as_str().expect("id").to_owned();
    let pairs_path = format!("/v1/exercises/{exercise}/comparisons");
    let hidden = expect(app.get_as(&us, &pairs_path).await, 200).await;
    assert_eq!(hidden["comparisons"], json!([]), "{hidden}");
    let text = hidden.to_string();
    assert!(
        !text.contains(&uk_faithful_id)
            && !text.contains(uk_run["run"]["id"].as_str().expect("id")),
        "unreleased UK runs are not even left out: {hidden}"
    );
    let left: Vec<(&str, &str)> = hidden["left_out"]
        .as_array()
        .expect("left_out")
        .iter()
        .map(|r| {
            (
                r["institute"].as_str().expect("institute"),
                r["reason"].as_str().expect("reason"),
            )
        })
        .collect();
    assert_eq!(left, [("US", "deviates"), ("US", "alone")], "{hidden}");
    let uk_path = format!("/v1/runs/{}", uk_run["run"]["id"].as_str().expect("id"));
    expect(app.release(&uk_reviewer, &uk_path, &json!({})).await, 200).await;
    expect(
        app.release(
            &uk_reviewer,
            &format!("/v1/runs/{uk_faithful_id}"),
            &json!({}),
        )
        .await,
        200,
    )
    .await;
    let pairs = expect(app.get_as(&us, &pairs_path).await, 200).await;
    let comparisons = pairs["comparisons"].as_array().expect("comparisons");
    assert_eq!(
        comparisons
            .iter()
            .map(|c| (
                c["scorer"].as_str().expect("scorer"),
                c["a"]["institute"].as_str().expect("a"),
                c["b"]["run_id"].as_str().expect("b")
            ))
            .collect::<Vec<_>>(),
        [
            ("match", "US", uk_faithful_id.as_str()),
            ("includes", "US", uk_faithful_id.as_str())
        ],
        "the one comparable pair, for each of the protocol's scorers: {pairs}"
    );
    for c in comparisons {
        assert_eq!(c["matched"], 150, "50 samples of 3 epochs");
        assert_eq!(c["agreement"]["agreement_rate"], 1.0, "the same log");
        assert_eq!(c["a"]["comparable"], true);
        assert_eq!(c["b"]["comparable"], true);
    }
    let one = expect(
        app.get_as(&us, &format!("{pairs_path}?scorer=match&reducer=mean"))
            .await,
        200,
    )
    .await;
    assert_eq!(one["comparisons"].as_array().expect("comparisons").len(), 1);
    assert_eq!(
        one["comparisons"][0]["matched"], 50,
        "reduced to one value a sample"
    );
    let reasons: Vec<&str> = pairs["left_out"]
        .as_array()
        .expect("left_out")
        .iter()
        .map(|r| r["reason"].as_str().expect("reason"))
        .collect();
    assert_eq!(
        reasons,
        ["deviates", "deviates"],
        "the US API run and the UK's other: {pairs}"
    );
    let outsider = app
        .login(&app.person("viewer@inria.fr", "FR", &[Role::Viewer]).await)
        .await;
    problem(app.get_as(&outsider, &pairs_path).await, 404).await;
    let p = problem(
        app.get_as(&us, &format!("{pairs_path}?epoch=-1")).await,
        422,
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "epoch", "{p}");
    let after = expect(app.get_as(&us, &summary_path).await, 200).await;
    for scorer in ["match", "includes"] {
        let line = line(&after, scorer);
        assert_eq!(line["comparable"], false, "{line}");
        let results = line["results"].as_array().expect("results");
        let mut verdicts: Vec<(&str, &str, &Value, &Value)> = results
            .iter()
            .map(|r| {
                (
                    r["institute"].as_str().expect("institute"),
                    r["run_id"].as_str().expect("run"),
                    &r["comparable"],
                    &r["deviations"],
                )
            })
            .collect();
        verdicts.sort_by_key(|(institute, run, _, _)| (*institute, *run));
        assert_eq!(
            verdicts,
            [
                (
                    "UK",
                    uk_path.trim_start_matches("/v1/runs/"),
                    &json!(false),
                    deviations
                ),
                ("UK", uk_faithful_id.as_str(), &json!(true), &json!([])),
                (
                    "US",
                    us_run["run"]["id"].as_str().expect("id"),
                    &json!(true),
                    &json!([])
                ),
            ],
            "{line}"
        );
    }
}
