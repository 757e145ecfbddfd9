//! What a release of a run's results alone gives a partner, and what it holds back. The
//! results (each score's sample, epoch, scorer, value and number, and the sample's own
//! metadata) go to every partner the run is released to; the transcripts (each score's
//! answer, explanation and metadata, each errored sample's message, the original log)
//! only to those its transcripts were released to. So say the samples page, both exports,
//! the errored samples, the two digests a partner recomputes, the comparisons' clusters,
//! and the database's own policies.

use jointeval_domain::Role;
use jointeval_store::{ActingAs, RequestMeta};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::story::{
    active_exercise, active_exercise_among, default_content, finished_run, new_run, running_run,
};
use crate::support::{TestApp, TestUser, expect, problem};

/// Text found only in the transcripts of the marked log, so that a body can be searched
/// for it: answers, explanations, score metadata, error messages; and the sample's
/// metadata other than the protocol's cluster field.
const MARKS: [&str; 6] = [
    "ANSWER-", "EXPLAIN-", "GRADER-", "SANDBOX-", "NESTED-", "SOLVER-",
];
const TOPICS: [&str; 3] = ["algebra", "geometry", "number"];
/// The keys of a line of the results export, and of the transcripts export.
const RESULT_KEYS: [&str; 6] = [
    "epoch",
    "number",
    "sample_id",
    "sample_metadata",
    "scorer",
    "value",
];
const TRANSCRIPT_KEYS: [&str; 9] = [
    "answer",
    "epoch",
    "explanation",
    "metadata",
    "number",
    "sample_id",
    "sample_metadata",
    "scorer",
    "value",
];
const RESULTS_CSV: &str = "sample_id,epoch,scorer,value_number,value_label,sample_metadata";
const TRANSCRIPTS_CSV: &str =
    "sample_id,epoch,scorer,value_number,value_label,sample_metadata,answer,explanation,metadata";
const NOT_RELEASED: &str = "urn:jointeval:problem:not-released";

/// Inspect's `errored.json` (15 samples, 3 of them errored) under an eval id of its own,
/// every transcript marked: each score's answer, explanation and metadata, each error's
/// message; and each sample's metadata of scalars, a nested object and a list.
fn marked_log() -> Value {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/inspect/features/errored.json"
    ))
    .expect("fixture");
    let mut log: Value = serde_json::from_slice(&bytes).expect("a JSON log");
    log["eval"]["eval_id"] = json!(Uuid::now_v7().simple().to_string());
    let samples = log["samples"].as_array_mut().expect("samples");
    for (i, sample) in samples.iter_mut().enumerate() {
        let id = sample["id"].as_str().expect("id").to_owned();
        sample["metadata"] = json!({
            "topic": TOPICS[i % 3], "difficulty": i, "hard": i % 2 == 0, "source": null,
            "weight": 0.25, "nested": {"note": format!("NESTED-{id}")}, "tags": [format!("NESTED-{id}")],
            "scratch": format!("SOLVER-{id} wrote this")
        });
        if let Some(score) = sample["scores"].get_mut("match") {
            score["answer"] = json!(format!("ANSWER-{id}"));
            score["explanation"] = json!(format!("EXPLAIN-{id}, by the letter"));
            score["metadata"] = json!({"grader": format!("GRADER-{id}"), "turns": [1, 2]});
        }
        if sample["error"].is_object() {
            sample["error"]["message"] =
                json!(format!("RuntimeError('SANDBOX-{id} did not start')"));
        }
    }
    log
}

/// A sample's metadata as a result: the protocol's cluster field (`topic`) alone.
fn results_metadata(metadata: &Value) -> Value {
    json!({"topic": metadata["topic"]})
}

/// Each score of `log`, every field as a reader of its transcripts gets it, in the
/// export's order (sample id, epoch, scorer).
fn scores_of(log: &Value) -> Vec<Value> {
    let mut scores: Vec<Value> = log["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .filter_map(|s| {
            let score = s["scores"].get("match")?;
            let number = match score["value"].as_str() {
                Some("C") => 1.0,
                Some("I") => 0.0,
                other => panic!("a label of the fixture: {other:?}"),
            };
            Some(json!({
                "sample_id": s["id"], "epoch": s["epoch"], "scorer": "match",
                "value": score["value"], "number": number,
                "sample_metadata": results_metadata(&s["metadata"]),
                "answer": score["answer"], "explanation": score["explanation"],
                "metadata": score["metadata"],
            }))
        })
        .collect();
    scores.sort_by_key(order);
    scores
}

/// The default protocol, its task naming `topic` as its cluster field.
fn clustered_content() -> Value {
    let mut content = default_content();
    content["tasks"][0]["cluster"] = json!("topic");
    content
}

/// The errored samples of `log`, as `GET …/sample-errors` gives them.
fn errors_of(log: &Value) -> Vec<Value> {
    log["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .filter(|s| s["error"].is_object())
        .map(|s| json!({"sample_id": s["id"], "epoch": s["epoch"], "message": s["error"]["message"]}))
        .collect()
}

/// A score's place in the export: sample id (bytes), epoch (number), scorer (bytes).
type Place = (Vec<u8>, i64, Vec<u8>);

fn order(score: &Value) -> Place {
    let text = |k: &str| score[k].as_str().expect("text").as_bytes().to_vec();
    (
        text("sample_id"),
        score["epoch"].as_i64().expect("epoch"),
        text("scorer"),
    )
}

/// A score of the samples page, as a reader gets it with (or without) its transcripts.
fn page_item(score: &Value, transcripts: bool) -> Value {
    let mut item = score.clone();
    if !transcripts {
        for key in ["answer", "explanation", "metadata"] {
            item[key] = Value::Null;
        }
    }
    item["transcripts_withheld"] = json!(!transcripts);
    item
}

/// A score of the export, with exactly `keys`.
fn only(score: &Value, keys: &[&str]) -> Value {
    Value::Object(
        keys.iter()
            .map(|k| ((*k).to_owned(), score[*k].clone()))
            .collect(),
    )
}

/// A finished run of `evaluator`'s institute with `log` imported: its path.
async fn run_with_log(
    app: &TestApp,
    evaluator: &str,
    exercise: &str,
    protocol: &str,
    log: &Value,
) -> String {
    let run = expect(
        app.post_as(
            evaluator,
            &format!("/v1/exercises/{exercise}/runs"),
            &new_run(protocol),
        )
        .await,
        201,
    )
    .await;
    let path = format!("/v1/runs/{}", run["id"].as_str().expect("id"));
    for (step, body) in [
        ("start", json!({})),
        ("inspect-log", log.clone()),
        ("finish", json!({"outcome": "succeeded"})),
    ] {
        expect(
            app.post_as(evaluator, &format!("{path}/{step}"), &body)
                .await,
            200,
        )
        .await;
    }
    path
}

/// A US run from the marked log in a US–UK–FR–CA exercise, released to the UK with its
/// results alone and to France with its transcripts; Canada, a partner, holds nothing.
struct Shared {
    app: TestApp,
    exercise: String,
    protocol: String,
    log: Value,
    run: String,
    us: TestUser,
    evaluator: String,
    reviewer: String,
    uk: TestUser,
    uk_token: String,
    fr: TestUser,
    fr_token: String,
}

async fn shared() -> Shared {
    let app = TestApp::spawn().await;
    let (exercise, protocol) =
        active_exercise_among(&app, &["US", "UK", "FR", "CA"], clustered_content()).await;
    let us = app
        .person("tr-eval@nist.gov", "US", &[Role::Evaluator])
        .await;
    let evaluator = app.login(&us).await;
    let reviewer = app
        .login(&app.person("tr-rev@nist.gov", "US", &[Role::Reviewer]).await)
        .await;
    let uk = app
        .person("tr-viewer@aisi.gov.uk", "UK", &[Role::Viewer])
        .await;
    let fr = app
        .person("tr-viewer@fr.example", "FR", &[Role::Viewer])
        .await;
    let (uk_token, fr_token) = (app.login(&uk).await, app.login(&fr).await);
    let log = marked_log();
    let run = run_with_log(&app, &evaluator, &exercise, &protocol, &log).await;
    expect(
        app.release(&reviewer, &run, &json!({"institutes": ["UK"]}))
            .await,
        200,
    )
    .await;
    let released = expect(
        app.release(
            &reviewer,
            &run,
            &json!({"institutes": ["FR"], "transcripts": true}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(released["transcripts_released_to"], json!(["FR"]));
    Shared {
        app,
        exercise,
        protocol,
        log,
        run,
        us,
        evaluator,
        reviewer,
        uk,
        uk_token,
        fr,
        fr_token,
    }
}

/// Every score of the run's samples page (one page of up to 1,000).
async fn samples_page(app: &TestApp, token: &str, run: &str) -> Vec<Value> {
    let page = expect(
        app.get_as(token, &format!("{run}/samples?limit=1000"))
            .await,
        200,
    )
    .await;
    assert_eq!(page["next_cursor"], Value::Null, "one page");
    page["items"].as_array().expect("items").clone()
}

/// The text of an export of the run (`query` after `export`), after checking its type.
async fn export(app: &TestApp, token: &str, run: &str, query: &str) -> String {
    let got = app.get_as(token, &format!("{run}/export{query}")).await;
    let status = got.status().as_u16();
    let content_type = got
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = got.text().await.expect("text");
    assert_eq!(status, 200, "export{query}: {text}");
    let want = if query.contains("csv") {
        "text/csv"
    } else {
        "application/x-ndjson"
    };
    assert_eq!(content_type, want, "export{query}");
    text
}

/// Asserts that `text` is these lines, each canonical JSON (keys sorted, no whitespace)
/// ending in a line feed, in this order.
fn assert_ndjson(text: &str, want: &[Value], what: &str) {
    assert!(text.ends_with('\n'), "{what}: every line ends");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), want.len(), "{what}: {text}");
    for (line, want) in lines.iter().zip(want) {
        let got: Value = serde_json::from_str(line).expect("an NDJSON line");
        assert_eq!(&got, want, "{what}");
        assert_eq!(
            *line,
            serde_json::to_string(&got).expect("json"),
            "{what}: canonical"
        );
    }
}

/// Asserts that a body holds no word of the transcripts.
fn assert_unmarked(body: &str, what: &str) {
    for mark in MARKS {
        assert!(!body.contains(mark), "{what} holds {mark}…: {body}");
    }
}

/// The fields of one CSV record (quoted fields with doubled quotes; no line breaks).
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let (mut quoted, mut chars) = (false, line.chars().peekable());
    while let Some(c) = chars.next() {
        let field = fields.last_mut().expect("a field");
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(String::new()),
            (c, _) => field.push(c),
        }
    }
    fields
}

/// Asserts that a CSV export is its header and a row per score, in order: the results
/// and, with `transcripts`, the answer, explanation and metadata.
fn assert_csv(text: &str, scores: &[Value], transcripts: bool) {
    let rows: Vec<&str> = text.lines().collect();
    let header = if transcripts {
        TRANSCRIPTS_CSV
    } else {
        RESULTS_CSV
    };
    assert_eq!(rows.first().copied(), Some(header));
    assert_eq!(rows.len(), scores.len() + 1, "{text}");
    for (row, score) in rows[1..].iter().zip(scores) {
        let fields = csv_fields(row);
        assert_eq!(fields.len(), header.split(',').count(), "{row}");
        let want = [&score["sample_id"], &score["epoch"], &score["scorer"]].map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        assert_eq!(fields[..3], want, "{row}");
        assert_eq!(Some(fields[4].as_str()), score["value"].as_str(), "{row}");
        let json = |text: &str| serde_json::from_str::<Value>(text).expect("a JSON field");
        assert_eq!(json(&fields[5]), score["sample_metadata"], "{row}");
        if transcripts {
            assert_eq!(Some(fields[6].as_str()), score["answer"].as_str(), "{row}");
            assert_eq!(
                Some(fields[7].as_str()),
                score["explanation"].as_str(),
                "{row}"
            );
            assert_eq!(json(&fields[8]), score["metadata"], "{row}");
        }
    }
}

/// Asserts a 404 of type `not-released`: the run is visible, its transcripts are not.
async fn assert_not_released(app: &TestApp, token: &str, path: &str) {
    let got = problem(app.get_as(token, path).await, 404).await;
    assert_eq!(got["type"], NOT_RELEASED, "{path}: {got}");
}

#[tokio::test]
async fn a_partner_holding_the_results_alone_reads_every_result_and_no_transcript() {
    let s = shared().await;
    let (app, uk, run) = (&s.app, s.uk_token.as_str(), s.run.as_str());
    let scores = scores_of(&s.log);
    assert_eq!(scores.len(), 12);

    // The samples page: every result, the sample's metadata as a result (its scalars),
    // and no answer, explanation or score metadata, each marked as withheld.
    let items = samples_page(app, uk, run).await;
    let want: Vec<Value> = scores.iter().map(|sc| page_item(sc, false)).collect();
    assert_eq!(items, want);
    assert_unmarked(&json!(items).to_string(), "the samples page");

    // The export, NDJSON by default: exactly the results' keys, in the export's order.
    let results: Vec<Value> = scores.iter().map(|sc| only(sc, &RESULT_KEYS)).collect();
    let ndjson = export(app, uk, run, "").await;
    assert_unmarked(&ndjson, "the NDJSON export");
    assert_ndjson(&ndjson, &results, "the NDJSON export");
    assert_eq!(export(app, uk, run, "?format=ndjson").await, ndjson);
    let csv = export(app, uk, run, "?format=csv").await;
    assert_unmarked(&csv, "the CSV export");
    assert_csv(&csv, &scores, false);
    // The run, its metrics and its reductions hold none of it either.
    for path in [
        run.to_owned(),
        format!("{run}/metrics"),
        format!("{run}/reductions"),
    ] {
        let body = expect(app.get_as(uk, &path).await, 200).await;
        assert_unmarked(&body.to_string(), &path);
    }

    // The transcripts themselves: the answer a transcript gets when it is not released.
    for path in [
        format!("{run}/export?transcripts=true"),
        format!("{run}/export?format=ndjson&transcripts=true"),
        format!("{run}/export?format=csv&transcripts=true"),
        format!("{run}/sample-errors"),
        format!("{run}/inspect-log"),
    ] {
        assert_not_released(app, uk, &path).await;
    }
}

#[tokio::test]
async fn the_owner_and_a_transcripts_partner_read_every_transcript_as_sent() {
    let s = shared().await;
    let (app, run) = (&s.app, s.run.as_str());
    let scores = scores_of(&s.log);
    let transcripts: Vec<Value> = scores.iter().map(|sc| only(sc, &TRANSCRIPT_KEYS)).collect();
    let results: Vec<Value> = scores.iter().map(|sc| only(sc, &RESULT_KEYS)).collect();
    let mut seen = Vec::new();
    for (who, token) in [("the US", &s.evaluator), ("France", &s.fr_token)] {
        let items = samples_page(app, token, run).await;
        let want: Vec<Value> = scores.iter().map(|sc| page_item(sc, true)).collect();
        assert_eq!(items, want, "{who}");
        // The results export stays the results, whoever reads it.
        let ndjson = export(app, token, run, "?format=ndjson").await;
        assert_unmarked(&ndjson, "the results export");
        assert_ndjson(&ndjson, &results, "the results export");
        let full = export(app, token, run, "?format=ndjson&transcripts=true").await;
        assert_ndjson(&full, &transcripts, "the transcripts export");
        assert_eq!(export(app, token, run, "?transcripts=true").await, full);
        let csv = export(app, token, run, "?format=csv&transcripts=true").await;
        assert_csv(&csv, &scores, true);
        let errors = expect(
            app.get_as(token, &format!("{run}/sample-errors")).await,
            200,
        )
        .await;
        assert_eq!(errors["items"], json!(errors_of(&s.log)), "{who}");
        expect(app.get_as(token, &format!("{run}/inspect-log")).await, 200).await;
        seen.push((items, ndjson, full, csv));
    }
    assert_eq!(seen[0], seen[1], "France reads what the US reads");
    // Of the sample's metadata, only the cluster field is a result: the rest is in no
    // read but the log's.
    let (items, _, full, csv) = &seen[0];
    for body in [&json!(items).to_string(), full, csv] {
        for mark in ["NESTED-", "SOLVER-"] {
            assert!(!body.contains(mark), "{body}");
        }
    }
}

/// sha256 of `text`, in lowercase hex.
fn sha256_hex(text: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The lines of an NDJSON export in the export's order, each with its line feed.
fn ordered_lines(export: &str) -> String {
    let mut lines: Vec<(Place, &str)> = export
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("an NDJSON line");
            (order(&v), line)
        })
        .collect();
    lines.sort();
    lines.iter().map(|(_, line)| format!("{line}\n")).collect()
}

/// The digest by the README's formula v3, from the metrics answer, the results export and
/// the transcripts digest alone.
fn results_digest(metrics: &Value, results_export: &str, transcripts_digest: &str) -> String {
    let mut lines: Vec<(Vec<u8>, Vec<u8>, String)> = metrics
        .as_array()
        .expect("metrics")
        .iter()
        .map(|m| {
            let line = json!({"metric": m["metric"], "sample_count": m["sample_count"],
                              "scorer": m["scorer"], "stderr": m["stderr"], "value": m["value"]});
            let text = |k: &str| m[k].as_str().expect("text").as_bytes().to_vec();
            (text("scorer"), text("metric"), line.to_string())
        })
        .collect();
    lines.sort();
    let mut text = String::from("jointeval-results-v3\n");
    for (_, _, line) in &lines {
        text.push_str(line);
        text.push('\n');
    }
    text.push('\n');
    text.push_str(&ordered_lines(results_export));
    text.push('\n');
    text.push_str(transcripts_digest);
    text.push('\n');
    sha256_hex(&text)
}

/// The transcripts digest, from the transcripts export alone.
fn transcripts_digest(transcripts_export: &str) -> String {
    sha256_hex(&format!(
        "jointeval-transcripts-v1\n{}",
        ordered_lines(transcripts_export)
    ))
}

/// The run's (digest, transcripts digest) as `token` reads it, checked for their form.
async fn digests(app: &TestApp, token: &str, run: &str) -> (String, String) {
    let view = expect(app.get_as(token, run).await, 200).await;
    assert_eq!(view["digest_formula"], "jointeval-results-v3", "{view}");
    let hex = |k: &str| {
        let d = view[k].as_str().unwrap_or_default().to_owned();
        assert!(
            d.len() == 64 && d.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')),
            "{k} is lowercase hex sha256: {view}"
        );
        d
    };
    (hex("digest"), hex("transcripts_digest"))
}

#[tokio::test]
async fn partners_recompute_both_digests_from_what_they_may_read() {
    let s = shared().await;
    let (app, run) = (&s.app, s.run.as_str());
    let owned = digests(app, &s.evaluator, run).await;

    // The results partner: the digest from the metrics, the results export and the
    // transcripts digest, which it may read but not recompute.
    let (uk, fr) = (s.uk_token.as_str(), s.fr_token.as_str());
    assert_eq!(digests(app, uk, run).await, owned);
    let metrics = expect(app.get_as(uk, &format!("{run}/metrics")).await, 200).await;
    let results = export(app, uk, run, "?format=ndjson").await;
    assert_eq!(results_digest(&metrics, &results, &owned.1), owned.0);

    // The transcripts partner: both, the transcripts digest from the transcripts export.
    assert_eq!(digests(app, fr, run).await, owned);
    let full = export(app, fr, run, "?format=ndjson&transcripts=true").await;
    assert_eq!(transcripts_digest(&full), owned.1);
    let metrics = expect(app.get_as(fr, &format!("{run}/metrics")).await, 200).await;
    let results = export(app, fr, run, "?format=ndjson").await;
    assert_eq!(results_digest(&metrics, &results, &owned.1), owned.0);

    // The same results with one answer changed: the same results export, and another
    // transcripts digest, so another digest.
    let mut log = marked_log();
    log["samples"][0]["scores"]["match"]["answer"] = json!("ANSWER-q000, on second thoughts");
    let other = run_with_log(app, &s.evaluator, &s.exercise, &s.protocol, &log).await;
    let changed = digests(app, &s.evaluator, &other).await;
    assert_eq!(
        export(app, &s.evaluator, &other, "?format=ndjson").await,
        export(app, &s.evaluator, run, "?format=ndjson").await
    );
    assert_ne!(
        changed.1, owned.1,
        "the transcripts digest covers the answers"
    );
    assert_ne!(changed.0, owned.0, "the digest covers the transcripts");
}

#[tokio::test]
async fn who_may_not_read_the_run_gets_what_a_missing_run_gets() {
    let s = shared().await;
    let app = &s.app;
    let ca = app
        .login(
            &app.person("tr-viewer@ca.example", "CA", &[Role::Viewer])
                .await,
        )
        .await;
    let jp = app
        .login(
            &app.person("tr-admin@aist.go.jp", "JP", &[Role::Admin])
                .await,
        )
        .await;
    let gone = app.person("tr-gone@nist.gov", "US", &[Role::Viewer]).await;
    let gone_token = app.login(&gone).await;
    sqlx::query("update accounts set status = 'disabled' where id = $1")
        .bind(gone.id)
        .execute(&app.pool)
        .await
        .expect("disable");
    let reads = |run: &str| {
        [
            "/samples",
            "/export",
            "/export?format=csv",
            "/export?transcripts=true",
            "/export?format=csv&transcripts=true",
            "/sample-errors",
            "/inspect-log",
        ]
        .map(|read| format!("{run}{read}"))
    };
    let missing = format!("/v1/runs/{}", Uuid::now_v7());
    // A partner the run was not released to, and an institute outside the exercise.
    for (who, token) in [("Canada", &ca), ("Japan", &jp)] {
        for (read, absent) in reads(&s.run).iter().zip(reads(&missing)) {
            let got = app.get_as(token, read).await;
            assert_eq!(got.status(), 404, "{who}: {read}");
            let hidden = problem(got, 404).await;
            let none = problem(app.get_as(token, &absent).await, 404).await;
            assert_eq!(hidden, none, "{who}: {read}");
        }
    }
    // A disabled account, and nobody at all.
    for read in reads(&s.run) {
        for got in [app.get_as(&gone_token, &read).await, app.get(&read).await] {
            assert_eq!(got.status(), 401, "{read}");
            problem(got, 401).await;
        }
    }
}

/// A transaction acting as `who` for `home`, on the service's role under row-level
/// security, and `run`'s id; the caller rolls it back.
async fn acting_as(
    app: &TestApp,
    who: &TestUser,
    home: &str,
    run: &str,
) -> (sqlx::PgPool, jointeval_store::Tx, Uuid) {
    let run: Uuid = run
        .trim_start_matches("/v1/runs/")
        .parse()
        .expect("a run id");
    let acting = ActingAs::Account {
        id: who.id,
        institutes: vec![app.institute(home).await],
        request: RequestMeta::default(),
    };
    let service = app.db.service_pool();
    let tx = jointeval_store::begin(&service, &acting)
        .await
        .expect("begin");
    (service, tx, run)
}

/// How many rows of `table` for `run` the context of `who` acting for `home` sees.
async fn visible(app: &TestApp, who: &TestUser, home: &str, table: &str, run: &str) -> i64 {
    let (service, mut tx, run) = acting_as(app, who, home, run).await;
    let count = sqlx::query_scalar(&format!("select count(*) from {table} where run_id = $1"))
        .bind(run)
        .fetch_one(&mut *tx)
        .await
        .unwrap_or_else(|e| panic!("count {table}: {e}"));
    tx.rollback().await.expect("rollback");
    service.close().await;
    count
}

/// How many rows of `run` `statement` (an update or a delete, `$1` the run) changes in the
/// context of `who` acting for `home`; rolled back.
async fn changed(app: &TestApp, who: &TestUser, home: &str, statement: &str, run: &str) -> u64 {
    let (service, mut tx, run) = acting_as(app, who, home, run).await;
    let done = sqlx::query(statement)
        .bind(run)
        .execute(&mut *tx)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
    tx.rollback().await.expect("rollback");
    service.close().await;
    done.rows_affected()
}

/// A partner, even one holding the transcripts, changes and removes none of the run's
/// scores, transcripts or metrics; the run's institute can, so each statement below can
/// change rows.
#[tokio::test]
async fn only_the_runs_institute_writes_its_scores_and_transcripts() {
    let s = shared().await;
    // Each statement, and the table whose rows of the run it changes.
    let statements = [
        (
            "delete from run_sample_transcripts where run_id = $1",
            "run_sample_transcripts",
        ),
        (
            "update run_sample_transcripts set answer = 'forged' where run_id = $1",
            "run_sample_transcripts",
        ),
        ("delete from run_samples where run_id = $1", "run_samples"),
        (
            "update run_samples set value_number = 0 where run_id = $1",
            "run_samples",
        ),
        ("delete from run_metrics where run_id = $1", "run_metrics"),
        (
            "update run_metrics set value = 0 where run_id = $1",
            "run_metrics",
        ),
    ];
    for (statement, table) in statements {
        for (home, who) in [("UK", &s.uk), ("FR", &s.fr)] {
            assert_eq!(
                changed(&s.app, who, home, statement, &s.run).await,
                0,
                "{home}: {statement}"
            );
        }
        let held = visible(&s.app, &s.us, "US", table, &s.run).await;
        assert!(held > 0, "the run has {table}");
        assert_eq!(
            changed(&s.app, &s.us, "US", statement, &s.run).await,
            held as u64,
            "US: {statement}"
        );
    }
    assert_eq!(
        visible(&s.app, &s.us, "US", "run_sample_transcripts", &s.run).await,
        12,
        "nothing was changed"
    );
}

#[tokio::test]
async fn the_database_holds_the_transcripts_back_from_a_results_partner() {
    let s = shared().await;
    let app = &s.app;
    let jp = app
        .person("tr-admin@aist.go.jp", "JP", &[Role::Admin])
        .await;
    let ca = app
        .person("tr-viewer@ca.example", "CA", &[Role::Viewer])
        .await;
    let contexts = [
        ("US", &s.us),
        ("UK", &s.uk),
        ("FR", &s.fr),
        ("CA", &ca),
        ("JP", &jp),
    ];
    // (scores, errored samples, transcripts) each context sees: the owner and France
    // everything, the UK the scores alone, Canada and Japan nothing.
    let wants = [(12, 3, 12), (12, 0, 0), (12, 3, 12), (0, 0, 0), (0, 0, 0)];
    for ((home, who), want) in contexts.iter().zip(wants) {
        assert_eq!(
            visible(app, who, home, "run_samples", &s.run).await,
            want.0,
            "{home}: scores"
        );
        assert_eq!(
            visible(app, who, home, "run_sample_errors", &s.run).await,
            want.1,
            "{home}: errored samples"
        );
    }
    for ((home, who), want) in contexts.iter().zip(wants) {
        assert_eq!(
            visible(app, who, home, "run_sample_transcripts", &s.run).await,
            want.2,
            "{home}: transcripts"
        );
    }

    // The scores' table keeps no transcript; the transcripts' is under forced policies.
    let columns = |table: &'static str| {
        let pool = app.pool.clone();
        async move {
            let got: Vec<(String, String)> = sqlx::query_as(
                "select column_name::text, data_type::text from information_schema.columns
                 where table_schema = 'public' and table_name = $1 order by 1",
            )
            .bind(table)
            .fetch_all(&pool)
            .await
            .expect("columns");
            got
        }
    };
    let samples = columns("run_samples").await;
    assert!(
        samples
            .iter()
            .all(|(c, _)| !["answer", "explanation", "metadata"].contains(&c.as_str())),
        "{samples:?}"
    );
    assert!(
        samples.contains(&("sample_metadata".to_owned(), "jsonb".to_owned())),
        "{samples:?}"
    );
    let held: Vec<String> = columns("run_sample_transcripts")
        .await
        .into_iter()
        .map(|(c, _)| c)
        .collect();
    for column in [
        "answer",
        "epoch",
        "explanation",
        "metadata",
        "run_id",
        "sample_id",
        "scorer",
    ] {
        assert!(held.iter().any(|c| c == column), "{column}: {held:?}");
    }
    let forced: bool = sqlx::query_scalar(
        "select relrowsecurity and relforcerowsecurity from pg_class
         where relname = 'run_sample_transcripts' and relkind in ('r', 'p')",
    )
    .fetch_one(&app.pool)
    .await
    .expect("the table");
    assert!(forced, "row-level security is forced on the transcripts");

    // The transcripts released to the UK too: now its context sees them.
    expect(
        app.release(
            &s.reviewer,
            &s.run,
            &json!({"institutes": ["UK"], "transcripts": true}),
        )
        .await,
        200,
    )
    .await;
    for (table, want) in [("run_sample_errors", 3), ("run_sample_transcripts", 12)] {
        assert_eq!(
            visible(app, &s.uk, "UK", table, &s.run).await,
            want,
            "{table}"
        );
    }
    assert_eq!(
        visible(app, &ca, "CA", "run_sample_transcripts", &s.run).await,
        0
    );
}

/// comparisons.rs's scores and topics, whose clustered figures are statsmodels'.
const A: [f64; 10] = [0.9, 0.4, 0.75, 0.1, 0.6, 0.3, 0.8, 0.55, 0.2, 0.95];
const B: [f64; 10] = [0.7, 0.5, 0.75, 0.0, 0.4, 0.35, 0.6, 0.5, 0.25, 0.8];
const TOPIC: [&str; 10] = ["x", "x", "y", "y", "y", "z", "z", "w", "w", "w"];

/// Scores with each sample's topic in its sample metadata, and a decoy topic of each
/// sample's own in the score's metadata, which a results partner may not read.
fn harness_scores(values: &[f64], side: &str) -> Vec<Value> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            json!({"sample_id": format!("s{i}"), "epoch": 1, "scorer": "match", "value": v,
                   "sample_metadata": {"topic": TOPIC[i], "rank": i},
                   "answer": format!("ANSWER-{side}-{i}"),
                   "metadata": {"topic": format!("GRADER-decoy-{i}")}})
        })
        .collect()
}

/// Two finished US runs of [`harness_scores`] in a US–UK exercise, both released to the
/// UK with their results alone.
struct Clustered {
    app: TestApp,
    exercise: String,
    protocol: String,
    a: String,
    b: String,
    us: String,
    uk: String,
}

async fn clustered_runs() -> Clustered {
    let app = TestApp::spawn().await;
    let (exercise, protocol) = active_exercise(&app).await;
    let us = app
        .login(
            &app.person("cl-eval@nist.gov", "US", &[Role::Evaluator])
                .await,
        )
        .await;
    let reviewer = app
        .login(&app.person("cl-rev@nist.gov", "US", &[Role::Reviewer]).await)
        .await;
    let uk = app
        .login(
            &app.person("cl-viewer@aisi.gov.uk", "UK", &[Role::Viewer])
                .await,
        )
        .await;
    let mut a_scores = harness_scores(&A, "a");
    // A score sent without the sample's metadata, and in no pair.
    a_scores.push(json!({"sample_id": "lone", "epoch": 1, "scorer": "match", "value": 1.0}));
    let a = finished_run(&app, &us, &exercise, &protocol, a_scores).await;
    let b = finished_run(&app, &us, &exercise, &protocol, harness_scores(&B, "b")).await;
    for run in [&a, &b] {
        expect(
            app.release(&reviewer, &format!("/v1/runs/{run}"), &json!({}))
                .await,
            200,
        )
        .await;
    }
    Clustered {
        app,
        exercise,
        protocol,
        a,
        b,
        us,
        uk,
    }
}

#[tokio::test]
async fn a_harness_sends_the_samples_metadata_beside_each_score() {
    let c = clustered_runs().await;
    let (app, us, uk) = (&c.app, c.us.as_str(), c.uk.as_str());
    let run = format!("/v1/runs/{}", c.a);
    // As sent, and `null` where a score came without it.
    let mut scores: Vec<Value> = harness_scores(&A, "a")
        .into_iter()
        .map(|mut sc| {
            sc["number"] = sc["value"].clone();
            sc["explanation"] = Value::Null;
            sc
        })
        .collect();
    scores.push(
        json!({"sample_id": "lone", "epoch": 1, "scorer": "match", "value": 1.0,
                       "number": 1.0, "sample_metadata": null,
                       "answer": null, "explanation": null, "metadata": null}),
    );
    scores.sort_by_key(order);
    let owner = samples_page(app, us, &run).await;
    let want: Vec<Value> = scores.iter().map(|sc| page_item(sc, true)).collect();
    assert_eq!(owner, want);
    let partner = samples_page(app, uk, &run).await;
    let want: Vec<Value> = scores.iter().map(|sc| page_item(sc, false)).collect();
    assert_eq!(partner, want);
    let results: Vec<Value> = scores.iter().map(|sc| only(sc, &RESULT_KEYS)).collect();
    let ndjson = export(app, uk, &run, "").await;
    assert_unmarked(&ndjson, "the results export");
    assert_ndjson(&ndjson, &results, "the results export");

    // Sample metadata is a JSON object, or nothing.
    let running = running_run(app, us, &c.exercise, &c.protocol).await;
    for bad in [json!("x"), json!([1]), json!(3)] {
        let refused = problem(
            app.post_as(
                us,
                &format!("/v1/runs/{running}/samples"),
                &json!([{"sample_id": "s0", "epoch": 1, "scorer": "match", "value": 1.0,
                         "sample_metadata": bad}]),
            )
            .await,
            422,
        )
        .await;
        assert!(
            refused["errors"].to_string().contains("sample_metadata"),
            "{refused}"
        );
    }
}

#[tokio::test]
async fn clusters_come_from_the_samples_metadata_alike_for_owner_and_partner() {
    let c = clustered_runs().await;
    let path = format!(
        "/v1/comparisons?a={}&b={}&scorer=match&cluster=topic",
        c.a, c.b
    );
    let owner = expect(c.app.get_as(&c.us, &path).await, 200).await;
    let partner = expect(c.app.get_as(&c.uk, &path).await, 200).await;
    for got in [&owner, &partner] {
        assert_eq!(got["pairing"]["cluster"], "topic");
        let n = &got["numeric"];
        assert_eq!(n["stderr"], "clustered", "{got}");
        assert_eq!(
            (n["clusters"].as_i64(), n["degrees_of_freedom"].as_i64()),
            (Some(4), Some(3)),
            "{got}"
        );
        let stderr = n["clustered_stderr"].as_f64().expect("a clustered stderr");
        assert!((stderr - 0.013366625103842272).abs() < 1e-12, "{stderr}");
    }
    assert_eq!(owner["numeric"], partner["numeric"]);
    assert_eq!(owner["notes"], partner["notes"]);
    assert_unmarked(&partner.to_string(), "the partner's comparison");
}
