//! Importing Inspect logs over HTTP: each fixture (written by Inspect itself) yields
//! exactly its metrics and per-sample scores, the original comes back byte for byte,
//! deviations from the protocol are recorded, and bad or foreign logs change nothing.

use jointeval_api::HttpSettings;
use jointeval_domain::Role;
use jointeval_inspect::{Limits, ScoreValue};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::story::{active_exercise_with, new_run};
use crate::support::{TestApp, problem};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/inspect/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

/// A protocol that arith_small follows to the letter.
fn arith_small_protocol() -> Value {
    json!({
        "objective": "Arithmetic",
        "tasks": [{"name": "Arithmetic", "dataset": {"name": "arith_small-data", "version": "1",
                   "sha256": null, "sample_count": 20},
                   "harness": {"name": "inspect", "task_ref": "arith_small"},
                   "scorers": ["match", "includes"], "metrics": ["accuracy"], "epochs": 1}],
        "metrics": [{"name": "accuracy", "higher_is_better": true, "threshold": null}]
    })
}

struct Setup {
    app: TestApp,
    exercise: String,
    protocol: String,
    evaluator: String,
}

async fn setup(settings: HttpSettings) -> Setup {
    setup_with(settings, arith_small_protocol()).await
}

async fn setup_with(settings: HttpSettings, content: Value) -> Setup {
    let app = TestApp::with_settings(settings).await;
    let (exercise, protocol) = active_exercise_with(&app, content).await;
    let evaluator = app
        .login(
            &app.person("inspect-eval@nist.gov", "US", &[Role::Evaluator])
                .await,
        )
        .await;
    Setup {
        app,
        exercise,
        protocol,
        evaluator,
    }
}

impl Setup {
    async fn running_run(&self, config: Value) -> Uuid {
        self.running_run_of(config, "mockllm/model").await
    }

    async fn running_run_of(&self, config: Value, model_version: &str) -> Uuid {
        let mut body = new_run(&self.protocol);
        body["config"] = config;
        body["model_version"] = json!(model_version);
        let created = self
            .app
            .post_as(
                &self.evaluator,
                &format!("/v1/exercises/{}/runs", self.exercise),
                &body,
            )
            .await;
        assert_eq!(created.status(), 201);
        let id: Uuid = created.json::<Value>().await.expect("json")["id"]
            .as_str()
            .expect("id")
            .parse()
            .expect("uuid");
        let started = self
            .app
            .post_as(&self.evaluator, &format!("/v1/runs/{id}/start"), &json!({}))
            .await;
        assert_eq!(started.status(), 200);
        id
    }

    async fn upload(
        &self,
        token: &str,
        run: Uuid,
        name: &str,
        bytes: Vec<u8>,
        query: &str,
    ) -> reqwest::Response {
        let content_type = if name.ends_with(".eval") {
            "application/zip"
        } else {
            "application/json"
        };
        self.upload_as(token, run, content_type, bytes, query).await
    }

    async fn upload_as(
        &self,
        token: &str,
        run: Uuid,
        content_type: &str,
        bytes: Vec<u8>,
        query: &str,
    ) -> reqwest::Response {
        self.app
            .client
            .post(self.app.url(&format!("/v1/runs/{run}/inspect-log{query}")))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(bytes)
            .send()
            .await
            .expect("send")
    }

    /// Every per-sample score of a run, read page by page through the results API.
    async fn scores(&self, run: Uuid) -> Vec<Value> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/v1/runs/{run}/samples?limit=1000&cursor={c}"),
                None => format!("/v1/runs/{run}/samples?limit=1000"),
            };
            let page: Value = self
                .app
                .get_as(&self.evaluator, &path)
                .await
                .json()
                .await
                .expect("json");
            all.extend(page["items"].as_array().expect("items").iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return all,
            }
        }
    }

    async fn get(&self, path: &str) -> Value {
        self.app
            .get_as(&self.evaluator, path)
            .await
            .json()
            .await
            .expect("json")
    }

    async fn stored(&self, run: Uuid) -> (i64, i64, i64) {
        let count = |table: &'static str| {
            let pool = self.app.pool.clone();
            async move {
                sqlx::query_scalar::<_, i64>(&format!(
                    "select count(*) from {table} where run_id = $1"
                ))
                .bind(run)
                .fetch_one(&pool)
                .await
                .expect("count")
            }
        };
        (
            count("run_metrics").await,
            count("run_samples").await,
            count("run_log_chunks").await,
        )
    }
}

#[tokio::test]
async fn every_fixture_imports_to_exactly_the_numbers_inspect_wrote() {
    let first = setup(HttpSettings::default()).await;
    // The deflate archive repacks the zstd one: the same eval, which counts once in an
    // institute, so it goes to a service of its own.
    let second = setup(HttpSettings::default()).await;
    for name in [
        "arith_small.json",
        "arith_small.eval",
        "arith_small_deflate.eval",
        "arith_epochs.json",
        "arith_epochs.eval",
    ] {
        let s = if name == "arith_small_deflate.eval" {
            &second
        } else {
            &first
        };
        let bytes = fixture(name);
        let expected =
            jointeval_inspect::read(std::io::Cursor::new(bytes.clone()), Limits::default())
                .expect("the fixture reads");
        let run = s.running_run(json!({})).await;
        let response = s.upload(&s.evaluator, run, name, bytes.clone(), "").await;
        assert_eq!(response.status(), 200, "{name}");
        let imported: Value = response.json().await.expect("json");
        assert_eq!(
            imported["eval_id"],
            expected.header.eval_id.as_str(),
            "{name}"
        );
        assert_eq!(imported["replayed"], false);
        assert_eq!(imported["scores"], expected.scores.len());

        // The metrics, exactly.
        let metrics: Value = s
            .app
            .get_as(&s.evaluator, &format!("/v1/runs/{run}/metrics"))
            .await
            .json()
            .await
            .expect("json");
        let mut got: Vec<(String, String, f64, Option<f64>)> = metrics
            .as_array()
            .expect("metrics")
            .iter()
            .map(|m| {
                (
                    m["scorer"].as_str().expect("scorer").to_owned(),
                    m["metric"].as_str().expect("metric").to_owned(),
                    m["value"].as_f64().expect("value"),
                    m["stderr"].as_f64(),
                )
            })
            .collect();
        let mut want: Vec<(String, String, f64, Option<f64>)> = expected
            .metrics
            .iter()
            .map(|m| (m.scorer.clone(), m.metric.clone(), m.value, m.stderr))
            .collect();
        got.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        want.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        assert_eq!(got, want, "{name}");

        // The per-sample scores, exactly, read back through the results API.
        let mut got: Vec<(String, i64, String, f64)> = s
            .scores(run)
            .await
            .iter()
            .map(|item| {
                (
                    item["sample_id"].as_str().expect("id").to_owned(),
                    item["epoch"].as_i64().expect("epoch"),
                    item["scorer"].as_str().expect("scorer").to_owned(),
                    item["number"].as_f64().expect("a number"),
                )
            })
            .collect();
        let mut want: Vec<(String, i64, String, f64)> = expected
            .scores
            .iter()
            .map(|sc| {
                // Inspect's letters, and the numbers its metrics read them as.
                let v = match &sc.value {
                    ScoreValue::Label(l) if l == "C" => 1.0,
                    ScoreValue::Label(l) if l == "P" => 0.5,
                    ScoreValue::Label(l) if l == "I" || l == "N" => 0.0,
                    other => panic!("the fixtures hold letters, not {other:?}"),
                };
                (
                    sc.sample_id.clone(),
                    i64::from(sc.epoch),
                    sc.scorer.clone(),
                    v,
                )
            })
            .collect();
        got.sort_by(|a, b| (&a.0, a.1, &a.2).cmp(&(&b.0, b.1, &b.2)));
        want.sort_by(|a, b| (&a.0, a.1, &a.2).cmp(&(&b.0, b.1, &b.2)));
        assert_eq!(got, want, "{name}");

        // The original, byte for byte, with its sha256.
        let original = s
            .app
            .get_as(&s.evaluator, &format!("/v1/runs/{run}/inspect-log"))
            .await;
        assert_eq!(original.status(), 200);
        let etag = original.headers()["etag"]
            .to_str()
            .expect("etag")
            .to_owned();
        assert_eq!(
            etag,
            format!("\"{}\"", imported["sha256"].as_str().expect("sha"))
        );
        assert_eq!(
            original.bytes().await.expect("bytes").to_vec(),
            bytes,
            "{name}"
        );
        assert_eq!(
            imported["sha256"],
            jointeval_domain::canonical::sha256_hex([bytes.as_slice()])
        );

        // The run says what was run, and how it deviates from the protocol.
        let view: Value = s
            .app
            .get_as(&s.evaluator, &format!("/v1/runs/{run}"))
            .await
            .json()
            .await
            .expect("json");
        assert_eq!(
            view["imported_log"]["eval_id"],
            expected.header.eval_id.as_str()
        );
        assert_eq!(view["imported_log"]["model"], "mockllm/model");
        assert_eq!(view["imported_log"]["inspect_version"], "0.3.285");
        assert_eq!(
            view["imported_log"]["config"]["epochs"],
            expected.header.epochs.expect("epochs")
        );
        let fields: Vec<&str> = view["deviations"]
            .as_array()
            .expect("deviations")
            .iter()
            .map(|d| d["field"].as_str().expect("field"))
            .collect();
        if name.starts_with("arith_small") {
            assert!(fields.is_empty(), "{name} follows the protocol: {fields:?}");
            assert_eq!(view["comparable"], true, "{name}");
        } else {
            // Another task, and every other difference from the protocol's one task.
            assert_eq!(
                fields,
                ["task", "dataset.name", "dataset.sample_count", "epochs"],
                "{name} ran another task"
            );
            assert_eq!(view["comparable"], false, "{name}");
        }
    }
}

/// A metric as compared: scorer, key, name, value, scored and unscored samples.
type MetricRow = (String, String, String, f64, Option<i64>, Option<i64>);

/// Logs that use Inspect's features (`tests/fixtures/inspect/features`), imported over
/// HTTP and read back through the API, equal what Inspect's own `read_eval_log` reads
/// from them (`<log>.expected.json`): metrics under Inspect's keys, a dict score's keys
/// as scorers, the score's metadata, unscored and errored samples counted, not scored.
#[tokio::test]
async fn every_feature_log_imports_as_inspect_reads_it() {
    // (task, dataset, samples, scorer, epochs) of each case, as make_feature_logs.py ran it.
    let cases = [
        ("unscored", "unscored-data", 16, "sometimes_unscored", 1),
        ("duplicate_metrics", "dup-data", 12, "twice_mean", 1),
        ("dict_scores", "dict-data", 12, "dict_scorer", 1),
        ("model_graded", "graded-data", 10, "model_graded_qa", 1),
        ("errored", "errored-data", 15, "match", 1),
        ("reducers", "reducers-data", 10, "match", 3),
    ];
    let tasks: Vec<Value> = cases
        .iter()
        .map(|(task, dataset, samples, scorer, epochs)| {
            json!({"name": task, "dataset": {"name": dataset, "version": "1", "sha256": null,
                                             "sample_count": samples},
                   "harness": {"name": "inspect", "task_ref": task},
                   "scorers": [scorer], "metrics": ["accuracy"], "epochs": epochs})
        })
        .collect();
    let protocol = json!({
        "objective": "Inspect's features", "tasks": tasks,
        "metrics": [{"name": "accuracy", "higher_is_better": true, "threshold": null}]
    });
    let s = setup_with(HttpSettings::default(), protocol).await;
    for (case, ..) in cases {
        for name in [format!("{case}.json"), format!("{case}.eval")] {
            let want: Value =
                serde_json::from_slice(&fixture(&format!("features/{name}.expected.json")))
                    .expect("expected");
            let run = s.running_run(json!({})).await;
            // A media type is read whatever its case and parameters; octet-stream leaves
            // the format to the bytes.
            let content_type = if name.ends_with(".eval") {
                "application/octet-stream"
            } else {
                "Application/JSON; charset=utf-8"
            };
            let bytes = fixture(&format!("features/{name}"));
            let response = s
                .upload_as(&s.evaluator, run, content_type, bytes, "")
                .await;
            assert_eq!(response.status(), 200, "{name}");
            let imported: Value = response.json().await.expect("json");
            let want_scores = want["scores"].as_array().expect("scores");
            let unscored = want_scores.iter().filter(|w| w["value"].is_null()).count();
            let errored = want["errors"].as_array().expect("errors").len();
            assert_eq!(imported["unscored_scores"], unscored, "{name}");
            assert_eq!(imported["errored_samples"], errored, "{name}");
            assert_eq!(imported["scores"], want_scores.len() - unscored, "{name}");
            let want_reductions: Vec<&Value> = want["reductions"]
                .as_array()
                .expect("reductions")
                .iter()
                .filter(|r| !r["value"].is_null())
                .collect();
            assert_eq!(imported["reductions"], want_reductions.len(), "{name}");
            // Every reduction, read back by pages of 7, as Inspect computed it.
            let mut reductions = Vec::new();
            let mut cursor = String::new();
            loop {
                let page = s
                    .get(&format!(
                        "/v1/runs/{run}/reductions?limit=7&cursor={cursor}"
                    ))
                    .await;
                reductions.extend(page["items"].as_array().expect("items").iter().cloned());
                match page["next_cursor"].as_str() {
                    Some(next) => cursor = next.to_owned(),
                    None => break,
                }
            }
            assert_eq!(reductions.len(), want_reductions.len(), "{name}");
            for w in &want_reductions {
                let got = reductions
                    .iter()
                    .find(|r| {
                        r["scorer"] == w["scorer"]
                            && r["reducer"] == w["reducer"]
                            && r["sample_id"] == w["sample_id"]
                    })
                    .unwrap_or_else(|| panic!("{name}: no reduction {w}"));
                assert_eq!(got["value"].as_f64(), w["value"].as_f64(), "{name}: {w}");
                assert_eq!(got["value"].as_str(), w["value"].as_str(), "{name}: {w}");
                assert_eq!(got["number"].as_f64(), w["number"].as_f64(), "{name}: {w}");
            }
            // And the errored samples, with Inspect's message.
            let page = s.get(&format!("/v1/runs/{run}/sample-errors")).await;
            let got: Vec<Value> = page["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|e| json!([e["sample_id"], e["epoch"], e["message"]]))
                .collect();
            let mut expected: Vec<Value> = want["errors"]
                .as_array()
                .expect("errors")
                .iter()
                .map(|e| json!([e["sample_id"], e["epoch"], e["message"]]))
                .collect();
            expected.sort_by_key(|e| e.to_string());
            assert_eq!(got, expected, "{name}");

            let mut got: Vec<MetricRow> = s
                .get(&format!("/v1/runs/{run}/metrics"))
                .await
                .as_array()
                .expect("metrics")
                .iter()
                .map(|m| {
                    (
                        m["scorer"].as_str().expect("scorer").to_owned(),
                        m["metric"].as_str().expect("metric").to_owned(),
                        m["name"].as_str().expect("name").to_owned(),
                        m["value"].as_f64().expect("value"),
                        m["sample_count"].as_i64(),
                        m["unscored_count"].as_i64(),
                    )
                })
                .collect();
            let mut expected: Vec<MetricRow> = want["metrics"]
                .as_array()
                .expect("metrics")
                .iter()
                .filter(|m| m["value"].is_number())
                .map(|m| {
                    let scorer = m["scorer"].as_str().expect("scorer");
                    (
                        match m["reducer"].as_str() {
                            Some(r) => format!("{scorer}/{r}"),
                            None => scorer.to_owned(),
                        },
                        m["key"].as_str().expect("key").to_owned(),
                        m["name"].as_str().expect("name").to_owned(),
                        m["value"].as_f64().expect("value"),
                        m["scored_samples"].as_i64(),
                        m["unscored_samples"].as_i64(),
                    )
                })
                .collect();
            got.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
            expected.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
            assert_eq!(got, expected, "{name}");

            let stored = s.scores(run).await;
            assert_eq!(stored.len(), want_scores.len() - unscored, "{name}");
            for item in &stored {
                let w = want_scores
                    .iter()
                    .find(|w| {
                        w["sample_id"] == item["sample_id"]
                            && w["epoch"] == item["epoch"]
                            && w["scorer"] == item["scorer"]
                    })
                    .unwrap_or_else(|| panic!("{name}: Inspect has no {item}"));
                // The value as Inspect wrote it, and the number Inspect's metrics read it as.
                assert_eq!(item["value"].as_f64(), w["value"].as_f64(), "{name}: {w}");
                assert_eq!(item["value"].as_str(), w["value"].as_str(), "{name}: {w}");
                assert_eq!(item["number"].as_f64(), w["number"].as_f64(), "{name}: {w}");
                for field in ["answer", "explanation", "metadata"] {
                    assert_eq!(item[field], w[field], "{name}: {field} of {item}");
                }
            }

            // Each log follows its task to the letter, dict scorers and reducers too: the
            // dataset's samples are all there, and errored ones are what deviates.
            let view = s.get(&format!("/v1/runs/{run}")).await;
            assert_eq!(view["imported_log"]["errored_samples"], errored, "{name}");
            assert_eq!(view["imported_log"]["unscored_scores"], unscored, "{name}");
            let want_deviations = if errored > 0 {
                json!([{"field": "errored_samples", "protocol": "0", "run": errored.to_string()}])
            } else {
                json!([])
            };
            assert_eq!(view["deviations"], want_deviations, "{name}");
        }
    }
}

/// A log header of a format version Inspect never wrote, or with a field of the wrong
/// type, is refused with a 422 that names it, and nothing of it is written.
#[tokio::test]
async fn a_log_of_an_unknown_version_or_shape_is_refused_and_writes_nothing() {
    let s = setup(HttpSettings::default()).await;
    let original: Value = serde_json::from_slice(&fixture("arith_small.json")).expect("JSON");
    let run = s.running_run(json!({})).await;
    for (pointer, value, named) in [
        ("/version", json!(99), "version is 99"),
        ("/version", json!(0), "version is 0"),
        ("/version", json!("2"), "version is \"2\""),
        ("/version", json!(null), "version is null"),
        ("/eval/eval_id", json!(17), "eval_id"),
        ("/samples/0/epoch", json!("one"), "epoch"),
    ] {
        let mut log = original.clone();
        *log.pointer_mut(pointer).expect("the field") = value.clone();
        let bytes = serde_json::to_vec(&log).expect("bytes");
        let body = problem(
            s.upload(&s.evaluator, run, "log.json", bytes, "").await,
            422,
        )
        .await;
        assert_eq!(body["type"], "urn:jointeval:problem:invalid-inspect-log");
        let detail = body["detail"].as_str().expect("detail");
        assert!(detail.contains(named), "{pointer} = {value}: {detail}");
        assert_eq!(s.stored(run).await, (0, 0, 0), "{pointer} = {value}");
    }
    // Version 1 is read as Inspect reads it.
    let mut log = original;
    log["version"] = json!(1);
    let bytes = serde_json::to_vec(&log).expect("bytes");
    assert_eq!(
        s.upload(&s.evaluator, run, "log.json", bytes, "")
            .await
            .status(),
        200
    );
}

/// A log of more scores, reductions and errored samples than one batch of the writer
/// (5,000) imports whole: each kind is written a batch at a time as it is read, and every
/// row arrives, the last partial batch of each kind too.
#[tokio::test]
async fn a_log_larger_than_a_batch_of_each_kind_imports_whole() {
    let s = setup(HttpSettings::default()).await;
    let log: Value = serde_json::from_slice(&fixture("arith_small.json")).expect("JSON");
    let first = &log["samples"][0];
    let samples = 12_002;
    let mut generated = log.clone();
    generated["eval"]["eval_id"] = json!("batched-12002");
    generated["eval"]["dataset"]["samples"] = json!(samples);
    generated["eval"]["dataset"]["sample_ids"] = json!([]);
    // Every other sample scored by both scorers, the others ended in an error.
    generated["samples"] = (0..samples)
        .map(|i| {
            let id = format!("g{i:05}");
            if i % 2 == 0 {
                json!({"id": id, "epoch": 1, "scores": first["scores"], "target": first["target"]})
            } else {
                json!({"id": id, "epoch": 1, "error": {"message": format!("sample {i} failed")}})
            }
        })
        .collect();
    generated["reductions"] = ["match", "includes"]
        .iter()
        .map(|scorer| {
            let reduced: Vec<Value> = (0..samples)
                .step_by(2)
                .map(|i| json!({"value": (i % 3) as f64 / 2.0, "sample_id": format!("g{i:05}")}))
                .collect();
            json!({"scorer": scorer, "samples": reduced})
        })
        .collect();
    let run = s.running_run(json!({})).await;
    let imported = s
        .upload(
            &s.evaluator,
            run,
            "batched.json",
            serde_json::to_vec(&generated).expect("json"),
            "",
        )
        .await;
    assert_eq!(imported.status(), 200);
    let answer: Value = imported.json().await.expect("json");
    let (scored, errored) = (samples / 2, samples / 2);
    assert_eq!(answer["scores"], 2 * scored);
    assert_eq!(answer["reductions"], 2 * scored);
    assert_eq!(answer["errored_samples"], errored);
    let count = |sql: &'static str| {
        let pool = s.app.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .bind(run)
                .fetch_one(&pool)
                .await
                .expect("count")
        }
    };
    assert_eq!(
        count("select count(*) from run_samples where run_id = $1").await,
        2 * scored as i64
    );
    assert_eq!(
        count("select count(*) from run_reductions where run_id = $1").await,
        2 * scored as i64
    );
    assert_eq!(
        count("select count(*) from run_sample_errors where run_id = $1").await,
        errored as i64
    );
    // What is stored is what the log says: each reduction's value, each error's message.
    assert_eq!(
        count(
            "select count(*) from run_reductions where run_id = $1
             and value_number = (substr(sample_id, 2)::int % 3) / 2.0"
        )
        .await,
        2 * scored as i64
    );
    assert_eq!(
        count(
            "select count(*) from run_sample_errors where run_id = $1
             and message = 'sample ' || substr(sample_id, 2)::int || ' failed'"
        )
        .await,
        errored as i64
    );
}

/// A run's reductions and errored samples are the run's: another institute, a third
/// one, a disabled account and an outsider read none of them before its release.
#[tokio::test]
async fn reductions_and_errors_are_read_only_by_who_may_read_the_run() {
    let s = setup(HttpSettings::default()).await;
    let run = s.running_run(json!({})).await;
    let imported = s
        .upload(
            &s.evaluator,
            run,
            "errored.eval",
            fixture("features/errored.eval"),
            "",
        )
        .await;
    assert_eq!(imported.status(), 200);
    let us_viewer = s
        .app
        .login(&s.app.person("viewer@nist.gov", "US", &[Role::Viewer]).await)
        .await;
    let uk_admin = s
        .app
        .login(
            &s.app
                .person("admin@aisi.gov.uk", "UK", &[Role::Admin])
                .await,
        )
        .await;
    let jp_admin = s
        .app
        .login(&s.app.person("admin@aist.go.jp", "JP", &[Role::Admin]).await)
        .await;
    // UK staff exchanged to the US as viewers: one whose exchange runs, one whose ended.
    let (us, uk) = (s.app.institute("US").await, s.app.institute("UK").await);
    let uk_approver = s
        .app
        .person("approver@aisi.gov.uk", "UK", &[Role::Admin])
        .await;
    let us_approver = s
        .app
        .person("approver@nist.gov", "US", &[Role::Admin])
        .await;
    let now = chrono::Utc::now();
    let mut exchanged = Vec::new();
    for (email, starts, ends) in [
        (
            "during@aisi.gov.uk",
            now - chrono::Duration::hours(1),
            now + chrono::Duration::days(30),
        ),
        (
            "after@aisi.gov.uk",
            now - chrono::Duration::days(30),
            now - chrono::Duration::days(1),
        ),
    ] {
        let person = s.app.person(email, "UK", &[Role::Viewer]).await;
        s.app
            .exchange(
                &jointeval_store::exchanges::NewExchange {
                    account_id: person.id,
                    home_institute_id: uk,
                    host_institute_id: us,
                    roles: &[Role::Viewer],
                    starts_at: starts,
                    ends_at: ends,
                    proposed_by: uk_approver.id,
                    proposed_by_institute_id: uk,
                },
                Some(us_approver.id),
            )
            .await;
        exchanged.push(s.app.login(&person).await);
    }
    let [during, after] = <[String; 2]>::try_from(exchanged).expect("two");
    let gone = s.app.person("gone@nist.gov", "US", &[Role::Viewer]).await;
    let gone_token = s.app.login(&gone).await;
    sqlx::query("update accounts set status = 'disabled' where id = $1")
        .bind(gone.id)
        .execute(&s.app.pool)
        .await
        .expect("disable");
    for path in ["reductions", "sample-errors"] {
        let path = format!("/v1/runs/{run}/{path}");
        let page: Value = s
            .app
            .get_as(&us_viewer, &path)
            .await
            .json()
            .await
            .expect("json");
        let want = if path.ends_with("reductions") { 12 } else { 3 };
        assert_eq!(
            page["items"].as_array().expect("items").len(),
            want,
            "{path}"
        );
        let through_exchange: Value = s
            .app
            .get_as(&during, &path)
            .await
            .json()
            .await
            .expect("json");
        assert_eq!(
            through_exchange, page,
            "{path}: read as a US viewer while exchanged"
        );
        for token in [&uk_admin, &jp_admin, &after] {
            problem(s.app.get_as(token, &path).await, 404).await;
        }
        problem(s.app.get_as(&gone_token, &path).await, 401).await;
        problem(s.app.get(&path).await, 401).await;
        problem(
            s.app.get_as(&us_viewer, &format!("{path}?limit=0")).await,
            422,
        )
        .await;
        problem(
            s.app
                .get_as(&us_viewer, &format!("{path}?cursor=nope"))
                .await,
            422,
        )
        .await;
    }
    problem(
        s.app
            .get_as(
                &us_viewer,
                &format!("/v1/runs/{}/reductions", Uuid::now_v7()),
            )
            .await,
        404,
    )
    .await;
}

#[tokio::test]
async fn deviations_are_recorded_for_the_reviewers_before_release() {
    let app = TestApp::spawn().await;
    let mut content = arith_small_protocol();
    content["tasks"][0]["epochs"] = json!(3);
    content["tasks"][0]["scorers"] = json!(["match"]);
    content["tasks"][0]["dataset"]["sample_count"] = json!(25);
    let (exercise, protocol) = active_exercise_with(&app, content).await;
    let evaluator = app
        .login(
            &app.person("dev-eval@nist.gov", "US", &[Role::Evaluator])
                .await,
        )
        .await;
    let reviewer = app
        .login(
            &app.person("dev-rev@nist.gov", "US", &[Role::Reviewer])
                .await,
        )
        .await;
    let mut body = new_run(&protocol);
    body["model_version"] = json!("model");
    let run: Value = app
        .post_as(&evaluator, &format!("/v1/exercises/{exercise}/runs"), &body)
        .await
        .json()
        .await
        .expect("json");
    let run = run["id"].as_str().expect("id").to_owned();
    app.post_as(&evaluator, &format!("/v1/runs/{run}/start"), &json!({}))
        .await;
    let imported = app
        .client
        .post(app.url(&format!("/v1/runs/{run}/inspect-log")))
        .bearer_auth(&evaluator)
        .header("content-type", "application/zip")
        .body(fixture("arith_small.eval"))
        .send()
        .await
        .expect("send");
    assert_eq!(
        imported.status(),
        200,
        "a deviation is information, not a refusal"
    );
    let view: Value = app
        .get_as(&reviewer, &format!("/v1/runs/{run}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        view["deviations"],
        json!([
            {"field": "dataset.sample_count", "protocol": "25", "run": "20"},
            {"field": "epochs", "protocol": "3", "run": "1"},
            {"field": "scorers", "protocol": "match", "run": "includes, match"},
        ])
    );
}

#[tokio::test]
async fn the_same_log_again_changes_nothing_and_another_is_refused() {
    let s = setup(HttpSettings::default()).await;
    let run = s.running_run(json!({})).await;
    let first = s
        .upload(
            &s.evaluator,
            run,
            "arith_small.eval",
            fixture("arith_small.eval"),
            "",
        )
        .await;
    assert_eq!(first.status(), 200);
    let stored = s.stored(run).await;
    let events: i64 = sqlx::query_scalar(
        "select count(*) from audit_events where action = 'run.inspect_log_imported'",
    )
    .fetch_one(&s.app.pool)
    .await
    .expect("count");
    // The same log, in the other format of the same eval: no, another eval; the same file.
    let again = s
        .upload(
            &s.evaluator,
            run,
            "arith_small.eval",
            fixture("arith_small.eval"),
            "",
        )
        .await;
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.expect("json");
    assert_eq!(again["replayed"], true);
    assert_eq!(s.stored(run).await, stored);
    let events_after: i64 = sqlx::query_scalar(
        "select count(*) from audit_events where action = 'run.inspect_log_imported'",
    )
    .fetch_one(&s.app.pool)
    .await
    .expect("count");
    assert_eq!(events_after, events);
    let other = s
        .upload(
            &s.evaluator,
            run,
            "arith_epochs.json",
            fixture("arith_epochs.json"),
            "",
        )
        .await;
    let p = problem(other, 409).await;
    assert_eq!(p["type"], "urn:jointeval:problem:log-imported");
    assert_eq!(s.stored(run).await, stored);
    // One eval's results count once in an institute: not again in another run.
    let second = s.running_run(json!({})).await;
    let p = problem(
        s.upload(
            &s.evaluator,
            second,
            "arith_small.eval",
            fixture("arith_small.eval"),
            "",
        )
        .await,
        409,
    )
    .await;
    assert_eq!(p["type"], "urn:jointeval:problem:log-imported");
    assert_eq!(s.stored(second).await, (0, 0, 0));
}

#[tokio::test]
async fn bad_foreign_and_unauthorised_logs_change_nothing() {
    let s = setup(HttpSettings {
        ingest_limit: 400_000,
        ..HttpSettings::default()
    })
    .await;
    let run = s
        .running_run(json!({"task": "arith_small", "model": "mockllm/model"}))
        .await;
    let json = fixture("arith_small.json");
    let eval = fixture("arith_small.eval");
    let cases: Vec<(&str, Vec<u8>, &str, u16)> = vec![
        ("arith_small.json", json[..json.len() / 2].to_vec(), "", 422),
        (
            "arith_small.eval",
            eval[..eval.len() - 300].to_vec(),
            "",
            422,
        ),
        ("x.json", b"not a log at all".to_vec(), "", 415),
        ("arith_epochs.json", fixture("arith_epochs.json"), "", 413),
        (
            "arith_small.json",
            json.clone(),
            "?accept_incomplete=maybe",
            422,
        ),
    ];
    for (name, bytes, query, status) in cases {
        let response = s.upload(&s.evaluator, run, name, bytes, query).await;
        let body = problem(response, status).await;
        assert!(body["detail"].is_string(), "{name}: {body}");
        assert_eq!(s.stored(run).await, (0, 0, 0), "{name} wrote nothing");
    }
    let wrong_type = s
        .app
        .client
        .post(s.app.url(&format!("/v1/runs/{run}/inspect-log")))
        .bearer_auth(&s.evaluator)
        .header("content-type", "text/plain")
        .body(json.clone())
        .send()
        .await
        .expect("send");
    problem(wrong_type, 415).await;
    // The declared type is honoured: an archive sent as a JSON log, or a JSON log as an
    // archive, is refused before it is read, saying what the body is.
    for (content_type, bytes, found) in [
        ("application/json", eval.clone(), "an .eval archive"),
        ("application/zip", json.clone(), "a JSON log"),
    ] {
        let response = s
            .upload_as(&s.evaluator, run, content_type, bytes, "")
            .await;
        let body = problem(response, 415).await;
        let detail = body["detail"].as_str().expect("detail");
        assert!(detail.contains(found), "{content_type}: {detail}");
        assert_eq!(
            s.stored(run).await,
            (0, 0, 0),
            "{content_type} wrote nothing"
        );
    }

    // A log that did not finish is taken only when the caller says so.
    let mut errored: Value = serde_json::from_slice(&json).expect("json");
    errored["status"] = json!("error");
    let errored = serde_json::to_vec(&errored).expect("bytes");
    let p = problem(
        s.upload(&s.evaluator, run, "e.json", errored.clone(), "")
            .await,
        422,
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "status");
    assert_eq!(s.stored(run).await, (0, 0, 0));

    // A log of another model than the exercise's (and so the run's), or of another task
    // or model than its config names: refused, naming the field. A run may name the model
    // otherwise than its log does.
    let mut foreign: Value = serde_json::from_slice(&json).expect("json");
    foreign["eval"]["model"] = json!("openai/gpt-4o");
    let foreign = serde_json::to_vec(&foreign).expect("bytes");
    for (config, model_version, log, field) in [
        (json!({}), "mockllm/model", &foreign, "eval.model"),
        (json!({}), "mockllm-model", &foreign, "eval.model"),
        (json!({"task": "gpqa"}), "mockllm/model", &json, "eval.task"),
        (
            json!({"model": "openai/gpt-4o"}),
            "model",
            &json,
            "eval.model",
        ),
    ] {
        let other = s.running_run_of(config, model_version).await;
        let p = problem(
            s.upload(&s.evaluator, other, "arith_small.json", log.clone(), "")
                .await,
            409,
        )
        .await;
        let detail = p["detail"].as_str().expect("detail");
        assert!(detail.starts_with(field), "{p}");
        assert_eq!(s.stored(other).await, (0, 0, 0));
    }
    // An eval id that is not one: refused before it could reach a header.
    let mut odd: Value = serde_json::from_slice(&json).expect("json");
    odd["eval"]["eval_id"] = json!("a\nb\"c");
    let odd = serde_json::to_vec(&odd).expect("bytes");
    let p = problem(s.upload(&s.evaluator, run, "odd.json", odd, "").await, 422).await;
    assert_eq!(p["errors"][0]["field"], "eval.eval_id");
    // A score the results API would refuse is refused here too, naming the sample.
    let mut long: Value = serde_json::from_slice(&json).expect("json");
    long["samples"][3]["scores"]["match"]["value"] = json!("x".repeat(201));
    let long = serde_json::to_vec(&long).expect("bytes");
    let p = problem(
        s.upload(&s.evaluator, run, "long.json", long, "").await,
        422,
    )
    .await;
    assert_eq!(
        p["errors"][0]["field"],
        "samples[q0003, epoch 1, match].value"
    );
    assert_eq!(s.stored(run).await, (0, 0, 0));
    // Who may not: the other institute does not see the run; a viewer may not run it.
    let uk = s
        .app
        .login(
            &s.app
                .person("inspect-eval@aisi.gov.uk", "UK", &[Role::Evaluator])
                .await,
        )
        .await;
    problem(
        s.upload(&uk, run, "arith_small.json", json.clone(), "")
            .await,
        404,
    )
    .await;
    let viewer = s
        .app
        .login(
            &s.app
                .person("inspect-viewer@nist.gov", "US", &[Role::Viewer])
                .await,
        )
        .await;
    problem(
        s.upload(&viewer, run, "arith_small.json", json.clone(), "")
            .await,
        403,
    )
    .await;
    problem(
        s.app
            .get_as(&uk, &format!("/v1/runs/{run}/inspect-log"))
            .await,
        404,
    )
    .await;
    assert_eq!(s.stored(run).await, (0, 0, 0));

    // Then the accepted import, of the errored log.
    let ok = s
        .upload(
            &s.evaluator,
            run,
            "e.json",
            errored,
            "?accept_incomplete=true",
        )
        .await;
    assert_eq!(ok.status(), 200);
    let view: Value = s
        .app
        .get_as(&s.evaluator, &format!("/v1/runs/{run}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(view["imported_log"]["status"], "error");
    // A run that is not running takes no log.
    let queued: Value = s
        .app
        .post_as(
            &s.evaluator,
            &format!("/v1/exercises/{}/runs", s.exercise),
            &new_run(&s.protocol),
        )
        .await
        .json()
        .await
        .expect("json");
    let queued: Uuid = queued["id"].as_str().expect("id").parse().expect("uuid");
    problem(
        s.upload(&s.evaluator, queued, "arith_small.json", json, "")
            .await,
        409,
    )
    .await;
}

#[tokio::test]
async fn a_run_is_registered_from_a_log_obtained_before_it() {
    let s = setup(HttpSettings::default()).await;
    let runs_before: i64 = sqlx::query_scalar("select count(*) from runs")
        .fetch_one(&s.app.pool)
        .await
        .expect("count");
    let post = |token: &str, query: String, bytes: Vec<u8>| {
        s.app
            .client
            .post(s.app.url(&format!(
                "/v1/exercises/{}/runs/inspect-log{query}",
                s.exercise
            )))
            .bearer_auth(token)
            .header("content-type", "application/zip")
            .body(bytes)
            .send()
    };
    let query = format!("?protocol_id={}&protocol_version=1", s.protocol);
    let created = post(&s.evaluator, query.clone(), fixture("arith_small.eval"))
        .await
        .expect("send");
    assert_eq!(created.status(), 201);
    let location = created.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let body: Value = created.json().await.expect("json");
    let run = &body["run"];
    assert_eq!(
        location,
        format!("/v1/runs/{}", run["id"].as_str().expect("id"))
    );
    assert_eq!(run["status"], "succeeded");
    assert_eq!(
        run["harness"],
        json!({"name": "inspect", "version": "0.3.285"})
    );
    assert_eq!(run["model_version"], "mockllm/model");
    assert_eq!(
        run["config"],
        json!({"task": "arith_small", "model": "mockllm/model"})
    );
    assert!(
        run["digest"].is_string(),
        "finished, its results are frozen and digested"
    );
    assert_eq!(run["deviations"], json!([]));
    assert_eq!(body["import"]["scores"], 40);
    let metrics: Value = s
        .app
        .get_as(&s.evaluator, &format!("{location}/metrics"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(metrics.as_array().expect("metrics").len(), 4);

    // Refused: a protocol version not the exercise's, a viewer, the other institute's
    // staff of another exercise; none of them leaves a run behind.
    let bad = format!("?protocol_id={}&protocol_version=2", s.protocol);
    problem(
        post(&s.evaluator, bad, fixture("arith_small.eval"))
            .await
            .expect("send"),
        422,
    )
    .await;
    problem(
        post(
            &s.evaluator,
            "?protocol_version=1".into(),
            fixture("arith_small.eval"),
        )
        .await
        .expect("send"),
        422,
    )
    .await;
    let viewer = s
        .app
        .login(
            &s.app
                .person("from-log-viewer@nist.gov", "US", &[Role::Viewer])
                .await,
        )
        .await;
    problem(
        post(&viewer, query.clone(), fixture("arith_small.eval"))
            .await
            .expect("send"),
        403,
    )
    .await;
    let jp = s
        .app
        .login(
            &s.app
                .person("from-log@aisi.go.jp", "JP", &[Role::Evaluator])
                .await,
        )
        .await;
    problem(
        post(&jp, query.clone(), fixture("arith_small.eval"))
            .await
            .expect("send"),
        404,
    )
    .await;
    problem(
        post(&s.evaluator, query, b"garbage".to_vec())
            .await
            .expect("send"),
        415,
    )
    .await;
    // Sent again (a retry whose answer was lost), the same log answers the run it made.
    let again = format!("?protocol_id={}&protocol_version=1", s.protocol);
    let replayed = post(&s.evaluator, again.clone(), fixture("arith_small.eval"))
        .await
        .expect("send");
    assert_eq!(replayed.status(), 200);
    assert_eq!(replayed.headers()["location"], location.as_str());
    let replayed: Value = replayed.json().await.expect("json");
    assert_eq!(replayed["run"]["id"], run["id"]);
    assert_eq!(replayed["run"]["digest"], run["digest"]);
    assert_eq!(replayed["import"]["replayed"], true);
    assert_eq!(replayed["import"]["scores"], 40);
    assert_eq!(body["import"]["replayed"], false);
    // The same eval in other bytes (repacked with deflate) is another log: refused.
    problem(
        post(&s.evaluator, again, fixture("arith_small_deflate.eval"))
            .await
            .expect("send"),
        409,
    )
    .await;
    let runs_after: i64 = sqlx::query_scalar("select count(*) from runs")
        .fetch_one(&s.app.pool)
        .await
        .expect("count");
    assert_eq!(
        runs_after,
        runs_before + 1,
        "only the accepted log made a run"
    );
}
