//! Per-sample scores: streamed in bulk, idempotent, all or nothing, read back by pages.

use jointeval_domain::Role;
use serde_json::{Value, json};

use crate::support::story::{active_exercise, new_run};
use crate::support::{TestApp, problem};

/// A running UK run in an active US–UK exercise: (run path, UK evaluator token).
async fn running_run(app: &TestApp) -> (String, String) {
    let (exercise, protocol) = active_exercise(app).await;
    let evaluator = app
        .login(
            &app.person("eval@aisi.gov.uk", "UK", &[Role::Evaluator])
                .await,
        )
        .await;
    let run: Value = app
        .post_as(
            &evaluator,
            &format!("/v1/exercises/{exercise}/runs"),
            &new_run(&protocol),
        )
        .await
        .json()
        .await
        .expect("json");
    let path = format!("/v1/runs/{}", run["id"].as_str().expect("id"));
    assert_eq!(
        app.post_as(&evaluator, &format!("{path}/start"), &json!({}))
            .await
            .status(),
        200
    );
    (path, evaluator)
}

fn ndjson(lines: impl Iterator<Item = Value>) -> String {
    lines.map(|l| l.to_string() + "\n").collect()
}

async fn send(
    app: &TestApp,
    token: &str,
    path: &str,
    content_type: &str,
    body: String,
) -> reqwest::Response {
    app.client
        .post(app.url(&format!("{path}/samples")))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("send")
}

async fn stored(app: &TestApp) -> i64 {
    sqlx::query_scalar("select count(*) from run_samples")
        .fetch_one(&app.pool)
        .await
        .expect("count")
}

fn score(i: usize, epoch: i32, scorer: &str) -> Value {
    if i.is_multiple_of(2) {
        json!({"sample_id": i, "epoch": epoch, "scorer": scorer, "value": "C", "answer": format!("{i}")})
    } else {
        json!({"sample_id": format!("s{i}"), "epoch": epoch, "scorer": scorer, "value": 0.5,
               "explanation": "partial", "metadata": {"i": i}})
    }
}

#[tokio::test]
async fn a_large_ndjson_stream_is_ingested_once_and_read_back_by_pages() {
    let app = TestApp::spawn().await;
    let (path, token) = running_run(&app).await;
    // 12,000 scores: more than one staging batch; the last two lines repeat a key.
    let mut lines: Vec<Value> = (0..6_000)
        .flat_map(|i| [score(i, 1, "match"), score(i, 1, "includes")])
        .collect();
    lines.push(json!({"sample_id": 0, "epoch": 1, "scorer": "match", "value": "I"}));
    let body = ndjson(lines.into_iter());
    let response = send(&app, &token, &path, "application/x-ndjson", body.clone()).await;
    assert_eq!(response.status(), 200);
    let ingested: Value = response.json().await.expect("json");
    assert_eq!(ingested, json!({"lines": 12_001, "stored": 12_000}));
    assert_eq!(stored(&app).await, 12_000);
    let last_wins: String = sqlx::query_scalar(
        "select value_label from run_samples where sample_id = '0' and scorer = 'match'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("label");
    assert_eq!(
        last_wins, "I",
        "within a request the last line of a key wins"
    );

    // Sent again: nothing is duplicated, and the count the answer gives agrees.
    let again: Value = send(&app, &token, &path, "application/x-ndjson", body)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(again["stored"], 12_000);
    assert_eq!(stored(&app).await, 12_000);
    // Old keys and new ones in one batch: only the new ones count.
    let mixed = ndjson((5_990..6_005).map(|i| score(i, 1, "match")));
    let mixed: Value = send(&app, &token, &path, "application/x-ndjson", mixed)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(mixed["stored"], 12_005);
    assert_eq!(stored(&app).await, 12_005);

    // Read back by pages of 1,000, filtered by scorer.
    let mut seen = 0;
    let mut url = format!("{path}/samples?scorer=includes&limit=1000");
    loop {
        let page: Value = app.get_as(&token, &url).await.json().await.expect("json");
        let items = page["items"].as_array().expect("items");
        assert!(items.iter().all(|s| s["scorer"] == "includes"));
        seen += items.len();
        match page["next_cursor"].as_str() {
            Some(cursor) => {
                url = format!("{path}/samples?scorer=includes&limit=1000&cursor={cursor}")
            }
            None => break,
        }
    }
    assert_eq!(seen, 6_000);
    let one: Value = app
        .get_as(&token, &format!("{path}/samples?limit=1"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(one["items"][0]["sample_id"], "0");
    assert_eq!(one["items"][0]["value"], "C");
    problem(
        app.get_as(&token, &format!("{path}/samples?limit=1001"))
            .await,
        422,
    )
    .await;
    // A value range keeps the scores whose number is within it: `C` is 1, out of this one.
    let ranged: Value = app
        .get_as(
            &token,
            &format!("{path}/samples?value_min=0.4&value_max=0.6&limit=1000&scorer=match&epoch=1"),
        )
        .await
        .json()
        .await
        .expect("json");
    let items = ranged["items"].as_array().expect("items");
    assert_eq!(items.len(), 1000);
    assert!(items.iter().all(|s| s["value"] == 0.5));
    // and a label's number is in a range as a number is.
    let labels: Value = app
        .get_as(&token, &format!("{path}/samples?value_min=0.6&limit=1000"))
        .await
        .json()
        .await
        .expect("json");
    let items = labels["items"].as_array().expect("items");
    assert_eq!(items.len(), 1000);
    assert!(
        items
            .iter()
            .all(|s| s["value"] == "C" && s["number"] == 1.0),
        "{items:?}"
    );
    let none: Value = app
        .get_as(&token, &format!("{path}/samples?value_min=1.5"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(none["items"], json!([]));
}

/// A label sent through the results API gets its number by the same rule as one in an
/// Inspect log (Inspect's `value_to_float`); a label with none is left out of a range.
#[tokio::test]
async fn a_labels_number_is_given_by_inspects_rule_and_filtered_on() {
    let app = TestApp::spawn().await;
    let (path, token) = running_run(&app).await;
    let sent: Vec<(Value, Value)> = vec![
        (json!("C"), json!(1.0)),
        (json!("P"), json!(0.5)),
        (json!("I"), json!(0.0)),
        (json!("Yes"), json!(1.0)),
        (json!("false"), json!(0.0)),
        (json!(" 3.5 "), json!(3.5)),
        (json!("refused"), Value::Null),
        (json!(0.25), json!(0.25)),
    ];
    let scores: Vec<Value> = sent
        .iter()
        .enumerate()
        .map(|(i, (value, _))| json!({"sample_id": format!("q{i}"), "epoch": 1, "scorer": "m", "value": value}))
        .collect();
    let response = send(
        &app,
        &token,
        &path,
        "application/json",
        Value::Array(scores).to_string(),
    )
    .await;
    assert_eq!(response.status(), 200);
    let page: Value = app
        .get_as(&token, &format!("{path}/samples?limit=100"))
        .await
        .json()
        .await
        .expect("json");
    let items = page["items"].as_array().expect("items");
    assert_eq!(items.len(), sent.len());
    for (i, (value, number)) in sent.iter().enumerate() {
        let item = items
            .iter()
            .find(|s| s["sample_id"] == format!("q{i}"))
            .expect("the score");
        assert_eq!(&item["value"], value, "{item}");
        assert_eq!(&item["number"], number, "{item}");
    }
    let ranged: Value = app
        .get_as(&token, &format!("{path}/samples?value_min=-100&limit=100"))
        .await
        .json()
        .await
        .expect("json");
    let ids: Vec<&str> = ranged["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|s| s["sample_id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids.len(), sent.len() - 1);
    assert!(
        !ids.contains(&"q6"),
        "a label without a number is in no range: {ids:?}"
    );
    let stored: (Option<f64>, Option<String>) =
        sqlx::query_as("select value_number, value_label from run_samples where sample_id = 'q0'")
            .fetch_one(&app.pool)
            .await
            .expect("the row");
    assert_eq!(stored, (Some(1.0), Some("C".to_owned())));
}

#[tokio::test]
async fn one_bad_line_refuses_the_whole_request_and_names_the_line() {
    let app = TestApp::spawn().await;
    let (path, token) = running_run(&app).await;
    let mut lines: Vec<String> = (0..10).map(|i| score(i, 1, "match").to_string()).collect();
    lines[6] = r#"{"sample_id": "x", "epoch": 1, "scorer": "match", "value": true}"#.into();
    let p = problem(
        send(
            &app,
            &token,
            &path,
            "application/x-ndjson",
            lines.join("\n"),
        )
        .await,
        422,
    )
    .await;
    assert!(
        p["errors"][0]["field"]
            .as_str()
            .expect("field")
            .starts_with("line 7"),
        "{p}"
    );
    lines[6] = "{not json".into();
    let p = problem(
        send(
            &app,
            &token,
            &path,
            "application/x-ndjson",
            lines.join("\n"),
        )
        .await,
        422,
    )
    .await;
    assert!(
        p["errors"][0]["field"]
            .as_str()
            .expect("field")
            .starts_with("line 7"),
        "{p}"
    );
    lines[6] = r#"{"sample_id": "x", "epoch": -3, "scorer": "match", "value": 1}"#.into();
    let p = problem(
        send(
            &app,
            &token,
            &path,
            "application/x-ndjson",
            lines.join("\n"),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "line 7: epoch");

    let array =
        json!([score(0, 1, "m"), score(1, 1, "m"), {"sample_id": "2", "epoch": 1, "scorer": "m"}])
            .to_string();
    let p = problem(
        send(&app, &token, &path, "application/json", array).await,
        422,
    )
    .await;
    assert!(
        p["errors"][0]["field"]
            .as_str()
            .expect("field")
            .starts_with("line 3"),
        "{p}"
    );
    problem(
        send(&app, &token, &path, "text/plain", "{}".into()).await,
        415,
    )
    .await;
    let unknown = format!("/v1/runs/{}", uuid::Uuid::now_v7());
    problem(
        send(
            &app,
            &token,
            &unknown,
            "application/x-ndjson",
            lines.join("\n"),
        )
        .await,
        404,
    )
    .await;
    let infinite = r#"{"sample_id": "x", "epoch": 1, "scorer": "m", "value": 1e999}"#.to_owned();
    let p = problem(
        send(&app, &token, &path, "application/x-ndjson", infinite).await,
        422,
    )
    .await;
    assert!(
        p["errors"][0]["field"]
            .as_str()
            .expect("field")
            .starts_with("line 1"),
        "{p}"
    );
    assert_eq!(stored(&app).await, 0, "nothing half-written");

    let good = json!([score(0, 1, "m"), score(1, 2, "m")]).to_string();
    let ok: Value = send(&app, &token, &path, "application/json", good)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(ok["stored"], 2);
}

#[tokio::test]
async fn scores_are_the_executing_institutes_until_released_and_frozen_when_finished() {
    let app = TestApp::spawn().await;
    let (path, token) = running_run(&app).await;
    let us = app
        .login(&app.person("viewer@nist.gov", "US", &[Role::Viewer]).await)
        .await;
    let body = ndjson((0..5).map(|i| score(i, 1, "match")));
    problem(
        send(&app, &us, &path, "application/x-ndjson", body.clone()).await,
        404,
    )
    .await;
    assert_eq!(
        send(&app, &token, &path, "application/x-ndjson", body.clone())
            .await
            .status(),
        200
    );
    problem(app.get_as(&us, &format!("{path}/samples")).await, 404).await;
    problem(app.get_as(&us, &format!("{path}/export")).await, 404).await;

    let finished: Value = app
        .post_as(
            &token,
            &format!("{path}/finish"),
            &json!({"outcome": "succeeded"}),
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(finished["digest"].as_str().map(str::len), Some(64));
    problem(
        send(&app, &token, &path, "application/x-ndjson", body).await,
        409,
    )
    .await;

    let reviewer = app
        .login(&app.person("rev@aisi.gov.uk", "UK", &[Role::Reviewer]).await)
        .await;
    assert_eq!(
        app.release(&reviewer, &path, &json!({})).await.status(),
        200
    );
    let page: Value = app
        .get_as(&us, &format!("{path}/samples"))
        .await
        .json()
        .await
        .expect("json");
    let items = page["items"].as_array().expect("items");
    assert_eq!(items.len(), 5);
    // The results alone were released: the partner reads the values, not the answers,
    // explanations or score metadata.
    for item in items {
        assert_eq!(item["transcripts_withheld"], true, "{item}");
        for transcript in ["answer", "explanation", "metadata"] {
            assert_eq!(item[transcript], Value::Null, "{item}");
        }
    }
    let own: Value = app
        .get_as(&token, &format!("{path}/samples"))
        .await
        .json()
        .await
        .expect("json");
    let s1 = own["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["sample_id"] == "s1")
        .expect("s1");
    assert_eq!(s1["explanation"], "partial", "{own}");
    assert_eq!(s1["metadata"], json!({"i": 1}), "{own}");
    assert_eq!(s1["transcripts_withheld"], false, "{own}");
    // The full export, streamed, as NDJSON and as CSV.
    let ndjson = app.get_as(&us, &format!("{path}/export")).await;
    assert_eq!(ndjson.headers()["content-type"], "application/x-ndjson");
    let text = ndjson.text().await.expect("text");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[0]["sample_id"], "0");
    let csv = app.get_as(&us, &format!("{path}/export?format=csv")).await;
    assert_eq!(csv.headers()["content-type"], "text/csv");
    let text = csv.text().await.expect("text");
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(
        rows[0],
        "sample_id,epoch,scorer,value_number,value_label,sample_metadata"
    );
    assert_eq!(rows.len(), 6);
    assert!(!text.contains("partial"), "the results hold no explanation");
    for query in ["transcripts=true", "format=csv&transcripts=true"] {
        let refused = problem(
            app.get_as(&us, &format!("{path}/export?{query}")).await,
            404,
        )
        .await;
        assert_eq!(refused["type"], "urn:jointeval:problem:not-released");
    }
    let csv = app
        .get_as(
            &token,
            &format!("{path}/export?format=csv&transcripts=true"),
        )
        .await;
    let text = csv.text().await.expect("text");
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(
        rows[0],
        "sample_id,epoch,scorer,value_number,value_label,sample_metadata,answer,explanation,metadata"
    );
    assert_eq!(rows.len(), 6);
    assert!(
        rows.iter().any(
            |r| r.starts_with("s1,1,match,0.5,,,,partial,") && r.ends_with("\"{\"\"i\"\":1}\"")
        ),
        "metadata is quoted: {rows:?}"
    );
    problem(
        app.get_as(&us, &format!("{path}/export?format=xml")).await,
        422,
    )
    .await;
}

#[tokio::test]
async fn streams_get_the_ingest_limit_and_arrays_the_ordinary_one() {
    let app = TestApp::with_settings(jointeval_api::HttpSettings {
        body_limit: 4 * 1024,
        ingest_limit: 256 * 1024,
        ..jointeval_api::HttpSettings::default()
    })
    .await;
    let spec = serde_json::to_value(jointeval_api::openapi()).expect("spec");
    assert!(
        spec["paths"]["/v1/runs/{id}/samples"].is_object(),
        "the ingest route the limit names exists"
    );
    let (path, token) = running_run(&app).await;
    let small: Vec<Value> = (0..100).map(|i| score(i, 1, "match")).collect();
    let body = ndjson(small.clone().into_iter());
    assert!(body.len() > 4 * 1024);
    assert_eq!(
        send(&app, &token, &path, "application/x-ndjson", body)
            .await
            .status(),
        200
    );
    problem(
        send(
            &app,
            &token,
            &path,
            "application/json",
            json!(small).to_string(),
        )
        .await,
        413,
    )
    .await;

    let big = ndjson((0..5_000).map(|i| score(i, 2, "match")));
    assert!(big.len() > 256 * 1024);
    problem(
        send(&app, &token, &path, "application/x-ndjson", big.clone()).await,
        413,
    )
    .await;
    let chunks: Vec<Result<String, std::io::Error>> = big
        .as_bytes()
        .chunks(16 * 1024)
        .map(|c| Ok(String::from_utf8_lossy(c).into_owned()))
        .collect();
    let streamed = app
        .client
        .post(app.url(&format!("{path}/samples")))
        .bearer_auth(&token)
        .header("content-type", "application/x-ndjson")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .expect("send");
    problem(streamed, 413).await;
    assert_eq!(stored(&app).await, 100, "the refused streams wrote nothing");
}

#[tokio::test]
async fn text_with_tabs_newlines_and_backslashes_comes_back_exactly() {
    let app = TestApp::spawn().await;
    let (path, token) = running_run(&app).await;
    let tricky = "line one\n\tindented \\ back\\slash \r\n\\N not null — ünïcode";
    let body = ndjson(
        [
            json!({"sample_id": "tab\there", "epoch": 0, "scorer": "s\\1", "value": "C\tI",
                "answer": tricky, "explanation": "\\", "metadata": {"k": "v\n\\t"}}),
        ]
        .into_iter(),
    );
    assert_eq!(
        send(&app, &token, &path, "application/x-ndjson", body)
            .await
            .status(),
        200
    );
    let page: Value = app
        .get_as(&token, &format!("{path}/samples"))
        .await
        .json()
        .await
        .expect("json");
    let stored = &page["items"][0];
    assert_eq!(stored["sample_id"], "tab\there");
    assert_eq!(stored["scorer"], "s\\1");
    assert_eq!(stored["value"], "C\tI");
    assert_eq!(stored["answer"], tricky);
    assert_eq!(stored["explanation"], "\\");
    assert_eq!(stored["metadata"], json!({"k": "v\n\\t"}));
}

#[tokio::test]
async fn text_postgresql_cannot_store_is_422_not_500() {
    let app = TestApp::spawn().await;
    let (path, token) = running_run(&app).await;
    for line in [
        json!({"sample_id": "a\u{0}b", "epoch": 1, "scorer": "m", "value": 1}),
        json!({"sample_id": "a", "epoch": 1, "scorer": "m", "value": 1, "answer": "x\u{0}"}),
        json!({"sample_id": "a", "epoch": 1, "scorer": "m", "value": 1, "metadata": {"k": "\u{0}"}}),
    ] {
        let body = ndjson([line].into_iter());
        let p = problem(
            send(&app, &token, &path, "application/x-ndjson", body).await,
            422,
        )
        .await;
        assert_eq!(p["type"], "urn:jointeval:problem:unstorable-text", "{p}");
    }
    assert_eq!(stored(&app).await, 0);
}

#[tokio::test]
async fn exports_a_client_stops_reading_hold_no_connection() {
    let app = TestApp::spawn().await;
    let (path, token) = running_run(&app).await;
    // About 21 MB an export: far more than the sockets and hyper buffer between the
    // server and a client that stopped reading, so every export below is cut off mid-way.
    let answer = "x".repeat(1024);
    const ROWS: usize = 20_000;
    let body = ndjson((0..ROWS).map(|i| {
        json!({"sample_id": format!("s{i}"), "epoch": 1, "scorer": "match", "value": 0.5,
               "answer": answer})
    }));
    assert_eq!(
        send(&app, &token, &path, "application/x-ndjson", body)
            .await
            .status(),
        200
    );
    // More stalled exports than the test server has connections (5), each read for one
    // chunk, so that each has begun, and then no further.
    let mut stalled = Vec::new();
    for _ in 0..8 {
        let mut response = app
            .get_as(&token, &format!("{path}/export?transcripts=true"))
            .await;
        assert_eq!(response.status(), 200);
        let first = response
            .chunk()
            .await
            .expect("a chunk")
            .expect("a first chunk");
        assert!(!first.is_empty());
        stalled.push(response);
    }
    // The stall, seen from the database: no connection of the service's is held in a
    // transaction while the exports wait for their clients.
    let held = || async {
        sqlx::query_scalar::<_, i64>(
            "select count(*) from pg_stat_activity
             where usename = $1 and datname = current_database()
               and state in ('active', 'idle in transaction')",
        )
        .bind(jointeval_store::roles::SERVICE_LOGIN)
        .fetch_one(&app.pool)
        .await
        .expect("pg_stat_activity")
    };
    let settled = std::time::Instant::now();
    while held().await > 0 {
        assert!(
            settled.elapsed() < std::time::Duration::from_secs(10),
            "the stalled exports hold {} connections",
            held().await
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The service still answers, well within its 5 s wait for a connection.
    for _ in 0..10 {
        let read = app.get_as(&token, &path.replace("/samples", "")).await;
        assert_eq!(
            read.status(),
            200,
            "the pool is not held by the stalled exports"
        );
    }
    assert_eq!(held().await, 0);
    // And an export read on to the end is whole.
    let mut first = stalled.pop().expect("an export");
    let mut bytes = Vec::new();
    while let Some(chunk) = first.chunk().await.expect("a chunk") {
        bytes.extend_from_slice(&chunk);
    }
    assert!(bytes.len() > 20_000_000, "{} bytes", bytes.len());
    drop(stalled);
}

#[tokio::test]
async fn a_bulk_upload_gets_its_own_longer_timeout() {
    let app = TestApp::with_settings(jointeval_api::HttpSettings {
        request_timeout: std::time::Duration::from_millis(300),
        ingest_timeout: std::time::Duration::from_secs(30),
        ..jointeval_api::HttpSettings::default()
    })
    .await;
    let (path, token) = running_run(&app).await;
    // A harness sending its scores slowly, over longer than the ordinary timeout.
    let chunks: Vec<String> = (0..4)
        .map(|c| ndjson((c * 10..c * 10 + 10).map(|i| score(i, 1, "match"))))
        .collect();
    let slow = futures_util::stream::unfold(chunks.into_iter(), |mut chunks| async move {
        let chunk = chunks.next()?;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        Some((Ok::<_, std::io::Error>(chunk), chunks))
    });
    let response = app
        .client
        .post(app.url(&format!("{path}/samples")))
        .bearer_auth(&token)
        .header("content-type", "application/x-ndjson")
        .body(reqwest::Body::wrap_stream(slow))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["stored"], 40);
}

#[tokio::test]
async fn a_bad_line_after_batches_were_written_leaves_nothing() {
    // Batches are written while later lines are still being parsed: a bad line after
    // two full batches must still leave the run without a single score.
    let app = TestApp::spawn().await;
    let (path, token) = running_run(&app).await;
    let mut lines: Vec<String> = (0..12_500)
        .map(|i| score(i, 1, "match").to_string())
        .collect();
    lines[12_000] = "{not json".into();
    let p = problem(
        send(
            &app,
            &token,
            &path,
            "application/x-ndjson",
            lines.join("\n"),
        )
        .await,
        422,
    )
    .await;
    assert!(
        p["errors"][0]["field"]
            .as_str()
            .expect("field")
            .starts_with("line 12001"),
        "{p}"
    );
    let stored: i64 = sqlx::query_scalar("select count(*) from run_samples")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(stored, 0);

    // The connection that was writing is fit for the next request.
    lines[12_000] = score(12_000, 1, "match").to_string();
    let response = send(
        &app,
        &token,
        &path,
        "application/x-ndjson",
        lines.join("\n"),
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["stored"], 12_500);
}

/// A client that accepts gzip (most do: browsers, Python's requests) gets the export
/// compressed, and whole. The compression layer polls a body once more after its end;
/// the paged body panicked then, and every compressed export was cut off after its
/// first chunk.
#[tokio::test]
async fn a_compressed_export_is_whole() {
    let app = TestApp::spawn().await;
    let (path, token) = running_run(&app).await;
    let export = path.replace("/samples", "/export");
    // Sizes on both sides of the gzip encoder's buffers and of an export's page.
    let mut sent = 0;
    for total in [1, 40, 2_000, 12_000] {
        let body = ndjson((sent..total).map(|i| score(i, 1, "match")));
        sent = total;
        assert_eq!(
            send(&app, &token, &path, "application/x-ndjson", body)
                .await
                .status(),
            200
        );
        for query in ["", "?format=csv"] {
            let plain = app
                .get_as(&token, &format!("{export}{query}"))
                .await
                .bytes()
                .await
                .expect("the plain export");
            let response = app
                .client
                .get(app.url(&format!("{export}{query}")))
                .bearer_auth(&token)
                .header("accept-encoding", "gzip")
                .send()
                .await
                .expect("send");
            assert_eq!(response.status(), 200);
            assert_eq!(response.headers()["content-encoding"], "gzip");
            let gzip = response
                .bytes()
                .await
                .expect("the compressed export, read to its end");
            assert_eq!(&gzip[..2], &[0x1f, 0x8b], "a gzip stream");
            // A gzip stream ends with the length of what it holds (RFC 1952, ISIZE).
            let size: [u8; 4] = gzip[gzip.len() - 4..].try_into().expect("4 bytes");
            assert_eq!(
                u32::from_le_bytes(size) as usize,
                plain.len(),
                "{total} rows {query}"
            );
        }
    }
}

#[tokio::test]
async fn a_deep_page_reads_only_its_rows_under_a_generic_plan() {
    // sqlx prepares every query, and PostgreSQL may switch a prepared statement to a
    // generic plan after five runs. Read as the service reads, under row-level security,
    // the cursor must still be an index bound there: as `$n is null or (…) > (…)`, or
    // with a `coalesce`, it was a filter after the policy's, and a 1,000-row page deep in
    // a 1,000,000-row run read every row before it; with stale statistics, it sorted every
    // row after it.
    let app = TestApp::spawn().await;
    let (path, _) = running_run(&app).await;
    let run: uuid::Uuid = path.trim_start_matches("/v1/runs/").parse().expect("id");
    // The statistics are those of a small table, as right after a large upload (before
    // autovacuum's next analyze): the planner then expects a few rows and would rather
    // sort them than walk the index in order.
    let insert = "insert into run_samples (run_id, sample_id, epoch, scorer, value_number)
                  select $1, lpad(i::text, 6, '0'), 1, 'match', 1 from generate_series($2, $3) i";
    for (first, last, analyze) in [(1, 100, true), (101, 20000, false)] {
        sqlx::query(insert)
            .bind(run)
            .bind(first)
            .bind(last)
            .execute(&app.pool)
            .await
            .expect("rows");
        if analyze {
            sqlx::query("analyze run_samples")
                .execute(&app.pool)
                .await
                .expect("analyze");
        }
    }
    let (viewer, uk) = (
        app.person("deep-page@aisi.gov.uk", "UK", &[Role::Viewer])
            .await,
        app.institute("UK").await,
    );
    let acting = jointeval_store::ActingAs::Account {
        id: viewer.id,
        institutes: vec![uk],
        request: jointeval_store::RequestMeta::default(),
    };
    let mut tx = jointeval_store::begin(&app.db.service_pool(), &acting)
        .await
        .expect("begin");
    sqlx::query("set local plan_cache_mode = force_generic_plan")
        .execute(&mut *tx)
        .await
        .expect("generic plans");
    // Rows fetched through an index, and rows read by sequential scans.
    let fetched = "select idx_tup_fetch + seq_tup_read from pg_stat_xact_user_tables
                   where relname = 'run_samples'";
    let filter = jointeval_store::runs::SampleFilter::default();
    for (cursor, next) in [(100, 101), (19_990, 19_991)] {
        let before: i64 = sqlx::query_scalar(fetched)
            .fetch_one(&mut *tx)
            .await
            .expect("stats");
        let cursor = format!("{cursor:06}");
        let page = jointeval_store::runs::samples(
            &mut tx,
            run,
            &filter,
            Some((cursor.as_str(), 1, "match")),
            5,
        )
        .await
        .expect("page");
        let after: i64 = sqlx::query_scalar(fetched)
            .fetch_one(&mut *tx)
            .await
            .expect("stats");
        let ids: Vec<String> = page.into_iter().map(|r| r.sample_id).collect();
        let expected: Vec<String> = (next..next + 5).map(|i| format!("{i:06}")).collect();
        assert_eq!(ids, expected);
        assert!(
            after - before < 100,
            "the page after {cursor} fetched {} rows to find 5",
            after - before
        );
    }
}

#[tokio::test]
async fn a_write_that_fails_ends_the_upload_at_once() {
    // The writer refuses the first batch (text PostgreSQL cannot store) while the reader
    // still has batches to hand over: the answer must come at once, not when the
    // upload's timeout cuts a reader waiting on a writer that stopped.
    let app = TestApp::spawn().await;
    let (path, token) = running_run(&app).await;
    let mut lines: Vec<String> = (0..20_000)
        .map(|i| score(i, 1, "match").to_string())
        .collect();
    lines[0] =
        r#"{"sample_id": "nul", "epoch": 1, "scorer": "match", "value": 1, "answer": "a\u0000b"}"#
            .into();
    let response = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        send(
            &app,
            &token,
            &path,
            "application/x-ndjson",
            lines.join("\n"),
        ),
    )
    .await
    .expect("an answer before the upload's timeout");
    problem(response, 422).await;
    let stored: i64 = sqlx::query_scalar("select count(*) from run_samples")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(stored, 0);
    // The run is not left locked by a request still hanging.
    lines[0] = score(0, 1, "match").to_string();
    let response = send(
        &app,
        &token,
        &path,
        "application/x-ndjson",
        lines.join("\n"),
    )
    .await;
    assert_eq!(response.status(), 200);
}

/// What a finished run's digests cover, recomputed here as a partner would: the results
/// digest from the metrics, the NDJSON export and the transcripts digest alone, and the
/// transcripts digest from the export with transcripts, by the formula in the README,
/// with no code of the service's. Changing one score, or one answer, changes it; the
/// order scores arrived in does not.
#[tokio::test]
async fn a_finished_runs_digest_covers_its_metrics_and_every_score() {
    use sha2::{Digest, Sha256};
    let app = TestApp::spawn().await;
    let (exercise, protocol) = active_exercise(&app).await;
    let evaluator = app
        .login(
            &app.person("eval@aisi.gov.uk", "UK", &[Role::Evaluator])
                .await,
        )
        .await;
    // Numbers, labels, answers and metadata; sample ids whose byte order is neither
    // their numeric nor a locale's order.
    let mut scores: Vec<Value> = (0..2_500)
        .map(|i| {
            score(
                i,
                1 + (i % 2) as i32,
                if i % 3 == 0 { "match" } else { "includes" },
            )
        })
        .collect();
    for id in ["Zebra", "apple", "éclair", "10", "9"] {
        scores.push(
            json!({"sample_id": id, "epoch": 1, "scorer": "match", "value": 1e-7,
                           "sample_metadata": {"topic": id, "n": 1e21}}),
        );
    }
    let metrics = json!({"metrics": [
        {"scorer": "match", "metric": "accuracy", "value": 0.25, "stderr": 0.01, "sample_count": 2_505},
        {"scorer": "includes", "metric": "accuracy", "value": 1e-7},
    ]});
    let finished = |scores: Vec<Value>| {
        let (app, evaluator, exercise, protocol, metrics) =
            (&app, &evaluator, &exercise, &protocol, &metrics);
        async move {
            let run: Value = app
                .post_as(
                    evaluator,
                    &format!("/v1/exercises/{exercise}/runs"),
                    &new_run(protocol),
                )
                .await
                .json()
                .await
                .expect("run");
            let path = format!("/v1/runs/{}", run["id"].as_str().expect("id"));
            for (step, body) in [("start", json!({})), ("metrics", metrics.clone())] {
                let answer = app
                    .post_as(evaluator, &format!("{path}/{step}"), &body)
                    .await;
                assert_eq!(answer.status(), 200, "{step}");
            }
            let sent = send(
                app,
                evaluator,
                &path,
                "application/x-ndjson",
                ndjson(scores.into_iter()),
            )
            .await;
            assert_eq!(sent.status(), 200);
            let done: Value = app
                .post_as(
                    evaluator,
                    &format!("{path}/finish"),
                    &json!({"outcome": "succeeded"}),
                )
                .await
                .json()
                .await
                .expect("finished");
            assert_eq!(done["digest_formula"], "jointeval-results-v3", "{done}");
            let digest = |key: &str| done[key].as_str().expect("a digest").to_owned();
            (path, digest("digest"), digest("transcripts_digest"))
        }
    };

    let (path, digest, transcripts_digest) = finished(scores.clone()).await;

    // The partner's side: the metrics as canonical lines by scorer and metric, an empty
    // line, then the export's lines by sample id, epoch and scorer, compared as bytes.
    let listed: Vec<Value> = app
        .get_as(&evaluator, &format!("{path}/metrics"))
        .await
        .json()
        .await
        .expect("metrics");
    let mut metric_lines: Vec<(String, String, String)> = listed
        .iter()
        .map(|m| {
            let line = json!({"metric": m["metric"], "sample_count": m["sample_count"],
                              "scorer": m["scorer"], "stderr": m["stderr"], "value": m["value"]});
            (
                m["scorer"].to_string(),
                m["metric"].to_string(),
                line.to_string(),
            )
        })
        .collect();
    metric_lines.sort();
    // Each export's lines by sample id, epoch and scorer, compared as bytes.
    let export = |query: &'static str| {
        let (app, evaluator, path) = (&app, &evaluator, &path);
        async move {
            let text = app
                .get_as(evaluator, &format!("{path}/export?{query}"))
                .await
                .text()
                .await
                .expect("export");
            let mut lines: Vec<(Vec<u8>, i64, Vec<u8>, String)> = text
                .lines()
                .map(|line| {
                    let v: Value = serde_json::from_str(line).expect("an NDJSON line");
                    let text = |k: &str| v[k].as_str().expect("text").as_bytes().to_vec();
                    (
                        text("sample_id"),
                        v["epoch"].as_i64().expect("epoch"),
                        text("scorer"),
                        line.to_owned(),
                    )
                })
                .collect();
            lines.sort();
            lines.into_iter().map(|(.., line)| line).collect::<Vec<_>>()
        }
    };
    let hex = |hasher: Sha256| -> String {
        hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let results = export("format=ndjson").await;
    let transcripts = export("format=ndjson&transcripts=true").await;
    assert_eq!(results.len(), scores.len());
    assert_eq!(transcripts.len(), scores.len());
    let mut hasher = Sha256::new();
    hasher.update(b"jointeval-transcripts-v1\n");
    for line in &transcripts {
        hasher.update(line.as_bytes());
        hasher.update(b"\n");
    }
    assert_eq!(
        hex(hasher),
        transcripts_digest,
        "the transcripts digest is not what the README's formula gives"
    );
    let mut hasher = Sha256::new();
    hasher.update(b"jointeval-results-v3\n");
    for (_, _, line) in &metric_lines {
        hasher.update(line.as_bytes());
        hasher.update(b"\n");
    }
    hasher.update(b"\n");
    for line in &results {
        hasher.update(line.as_bytes());
        hasher.update(b"\n");
    }
    hasher.update(b"\n");
    hasher.update(transcripts_digest.as_bytes());
    hasher.update(b"\n");
    assert_eq!(
        hex(hasher),
        digest,
        "the digest is not what the README's formula gives"
    );

    // The same results sent in another order: the same digests.
    let mut reversed = scores.clone();
    reversed.reverse();
    let again = finished(reversed).await;
    assert_eq!((&again.1, &again.2), (&digest, &transcripts_digest));
    // One score changed before finishing: another digest.
    let mut changed = scores.clone();
    changed[1]["value"] = json!(0.75);
    assert_ne!(finished(changed).await.1, digest);
    // One answer changed: other transcripts, and so another digest, the results the same.
    let mut answered = scores;
    answered[1]["answer"] = json!("another answer");
    let other = finished(answered).await;
    assert_ne!(other.2, transcripts_digest);
    assert_ne!(other.1, digest);
}
