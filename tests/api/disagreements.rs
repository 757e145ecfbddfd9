//! The disagreement list of two runs: which pairs differ, in what order, page by page,
//! and whose answers and explanations the caller may read beside them.

use jointeval_domain::Role;
use serde_json::{Value, json};

use crate::support::story::{active_exercise, finished_run, new_run};
use crate::support::{TestApp, expect, problem};

/// Scores of scorer `s`, each with an answer and an explanation naming `side`.
fn scores(side: &str, values: &[(&str, i32, Value)]) -> Vec<Value> {
    values
        .iter()
        .map(|(id, epoch, value)| {
            json!({"sample_id": id, "epoch": epoch, "scorer": "s", "value": value,
                   "answer": format!("{side}-{id}-{epoch}"),
                   "explanation": format!("why {side} {id} {epoch}")})
        })
        .collect()
}

/// Run a's scores and run b's: differences of exact binary fractions, ties, labels with
/// and without numbers, equal pairs, a second epoch and an unmatched sample.
fn a_and_b() -> (Vec<Value>, Vec<Value>) {
    let a = [
        ("p0", 1, json!("x")),
        ("p1", 1, json!(0.875)),
        ("p1", 2, json!(0.5)),
        ("p2", 1, json!(0.25)),
        ("p3", 1, json!(1.0)),
        ("p4", 1, json!(0.3)),
        ("p5", 1, json!("C")),
        ("p6", 1, json!("refused")),
        ("p7", 1, json!("C")),
        ("p8", 1, json!("C")),
        ("p9", 2, json!(0.0)),
        ("only-a", 1, json!(1.0)),
    ];
    let b = [
        ("p0", 1, json!(2.0)),
        ("p1", 1, json!(0.125)),
        ("p1", 2, json!(0.25)),
        ("p2", 1, json!(0.75)),
        ("p3", 1, json!(0.5)),
        ("p4", 1, json!(0.3)),
        ("p5", 1, json!("I")),
        ("p6", 1, json!("C")),
        ("p7", 1, json!("yes")),
        ("p8", 1, json!("C")),
        ("p9", 2, json!(0.25)),
        ("only-b", 1, json!(0.0)),
    ];
    (scores("a", &a), scores("b", &b))
}

fn list(a: &str, b: &str, rest: &str) -> String {
    format!("/v1/comparisons/disagreements?a={a}&b={b}&scorer=s{rest}")
}

/// (sample id, epoch, difference) of each item of a page.
fn keys(page: &Value) -> Vec<(String, Value, Value)> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            (
                i["sample_id"].as_str().expect("id").to_owned(),
                i["epoch"].clone(),
                i["difference"].clone(),
            )
        })
        .collect()
}

fn key(id: &str, epoch: Value, difference: Value) -> (String, Value, Value) {
    (id.to_owned(), epoch, difference)
}

/// Every item of the list, page by page of `limit`, checking that each cursor is new.
async fn every_page(app: &TestApp, token: &str, path: &str, limit: u32) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let url = match &cursor {
            Some(c) => format!("{path}&limit={limit}&cursor={c}"),
            None => format!("{path}&limit={limit}"),
        };
        let page = expect(app.get_as(token, &url).await, 200).await;
        let got = page["items"].as_array().expect("items");
        assert!(got.len() <= limit as usize);
        items.extend(got.iter().cloned());
        pages += 1;
        assert!(pages < 100, "the pages end");
        match page["next_cursor"].as_str() {
            Some(next) => {
                assert!(!got.is_empty(), "a page before the end holds items");
                cursor = Some(next.to_owned());
            }
            None => return items,
        }
    }
}

#[tokio::test]
async fn disagreements_come_largest_first_and_page_to_the_end_without_gap_or_repeat() {
    let app = TestApp::spawn().await;
    let (exercise, protocol) = active_exercise(&app).await;
    let us = app
        .login(
            &app.person("dis-eval@nist.gov", "US", &[Role::Evaluator])
                .await,
        )
        .await;
    let (sa, sb) = a_and_b();
    let a = finished_run(&app, &us, &exercise, &protocol, sa).await;
    let b = finished_run(&app, &us, &exercise, &protocol, sb).await;

    // Pairs of numbers by |a − b| (a label counts by its number; two labels of one number
    // differ by 0), ties by sample id; then the pairs that are not two numbers.
    let all = expect(app.get_as(&us, &list(&a, &b, "&limit=200")).await, 200).await;
    assert_eq!(
        keys(&all),
        [
            key("p5", json!(1), json!(1.0)),
            key("p1", json!(1), json!(0.75)),
            key("p2", json!(1), json!(-0.5)),
            key("p3", json!(1), json!(0.5)),
            key("p1", json!(2), json!(0.25)),
            key("p9", json!(2), json!(-0.25)),
            key("p7", json!(1), json!(0.0)),
            key("p0", json!(1), Value::Null),
            key("p6", json!(1), Value::Null),
        ]
    );
    assert_eq!(all["next_cursor"], Value::Null);
    // Both values as stored, with their numbers; the caller's own runs' answers.
    let items = all["items"].as_array().expect("items");
    assert_eq!(
        items[0],
        json!({"sample_id": "p5", "epoch": 1, "difference": 1.0,
               "a": {"value": "C", "number": 1.0, "answer": "a-p5-1", "explanation": "why a p5 1",
                     "transcripts_withheld": false},
               "b": {"value": "I", "number": 0.0, "answer": "b-p5-1", "explanation": "why b p5 1",
                     "transcripts_withheld": false}})
    );
    assert_eq!(
        (&items[7]["a"]["value"], &items[7]["a"]["number"]),
        (&json!("x"), &Value::Null)
    );
    assert_eq!(items[7]["b"]["value"], json!(2.0));
    assert_eq!(items[8]["a"]["value"], json!("refused"));

    // Page by page, of every size: the same items, each once, in the same order.
    for limit in [1, 2, 3, 7] {
        let paged = every_page(&app, &us, &list(&a, &b, ""), limit).await;
        assert_eq!(&paged, items, "pages of {limit}");
    }

    // One epoch; and the epochs reduced, paired by sample, numbers only.
    let second = expect(app.get_as(&us, &list(&a, &b, "&epoch=2")).await, 200).await;
    assert_eq!(
        keys(&second),
        [
            key("p1", json!(2), json!(0.25)),
            key("p9", json!(2), json!(-0.25))
        ]
    );
    let mean = expect(app.get_as(&us, &list(&a, &b, "&reducer=mean")).await, 200).await;
    assert_eq!(
        keys(&mean),
        [
            key("p5", Value::Null, json!(1.0)),
            key("p1", Value::Null, json!(0.5)),
            key("p2", Value::Null, json!(-0.5)),
            key("p3", Value::Null, json!(0.5)),
            key("p9", Value::Null, json!(-0.25)),
            key("p0", Value::Null, Value::Null),
            key("p6", Value::Null, Value::Null),
        ]
    );
    let reduced = &mean["items"][0];
    assert_eq!(
        reduced["a"],
        json!({"value": 1.0, "number": 1.0, "answer": null, "explanation": null,
               "transcripts_withheld": false})
    );
    assert_eq!(
        every_page(&app, &us, &list(&a, &b, "&reducer=mean"), 2).await,
        mean["items"].as_array().expect("items").clone()
    );
    let max = expect(app.get_as(&us, &list(&a, &b, "&reducer=max")).await, 200).await;
    assert_eq!(keys(&max)[1], key("p1", Value::Null, json!(0.625)));
    let min = expect(app.get_as(&us, &list(&a, &b, "&reducer=min")).await, 200).await;
    assert_eq!(keys(&min)[3], key("p1", Value::Null, json!(0.375)));
    // A run against itself disagrees nowhere.
    let itself = expect(app.get_as(&us, &list(&a, &a, "")).await, 200).await;
    assert_eq!(itself, json!({"items": [], "next_cursor": null}));
}

#[tokio::test]
async fn answers_show_only_where_the_transcripts_are_released() {
    let app = TestApp::spawn().await;
    let (exercise, protocol) = active_exercise(&app).await;
    let us = app
        .login(
            &app.person("dis-eval@nist.gov", "US", &[Role::Evaluator])
                .await,
        )
        .await;
    let uk = app
        .login(
            &app.person("dis-eval@aisi.gov.uk", "UK", &[Role::Evaluator])
                .await,
        )
        .await;
    let uk_reviewer = app
        .login(
            &app.person("dis-rev@aisi.gov.uk", "UK", &[Role::Reviewer])
                .await,
        )
        .await;
    let fr = app
        .login(
            &app.person("dis-viewer@inria.fr", "FR", &[Role::Viewer])
                .await,
        )
        .await;
    let (sa, sb) = a_and_b();
    let us_run = finished_run(&app, &us, &exercise, &protocol, sa).await;
    let uk_run = finished_run(&app, &uk, &exercise, &protocol, sb).await;
    let pair = list(&us_run, &uk_run, "");

    // Unreleased, the UK run hides the pair from the US: one 404, whichever is hidden.
    let absent = list(&us_run, &uuid::Uuid::now_v7().to_string(), "");
    let swapped = list(&uk_run, &us_run, "");
    let mut bodies = Vec::new();
    for path in [&pair, &swapped, &absent] {
        bodies.push(problem(app.get_as(&us, path).await, 404).await);
    }
    bodies.push(problem(app.get_as(&uk, &pair).await, 404).await);
    assert!(bodies.windows(2).all(|p| p[0] == p[1]), "{bodies:?}");
    problem(app.get_as(&fr, &pair).await, 404).await;
    problem(app.get(&pair).await, 401).await;

    // The UK's results alone: the US reads the pairs, with its own answers only.
    let path = format!("/v1/runs/{uk_run}");
    expect(app.release(&uk_reviewer, &path, &json!({})).await, 200).await;
    let results = expect(app.get_as(&us, &pair).await, 200).await;
    let items = results["items"].as_array().expect("items");
    assert_eq!(items.len(), 9);
    for item in items {
        let (id, epoch) = (&item["sample_id"], &item["epoch"]);
        assert_eq!(item["a"]["transcripts_withheld"], false);
        assert_eq!(
            item["a"]["answer"],
            json!(format!("a-{}-{epoch}", id.as_str().expect("id")))
        );
        assert_eq!(
            item["b"],
            json!({"value": item["b"]["value"], "number": item["b"]["number"],
                   "answer": null, "explanation": null, "transcripts_withheld": true})
        );
    }
    assert!(
        !results.to_string().contains("b-p") && !results.to_string().contains("why b"),
        "no word of the UK's answers: {results}"
    );
    // The UK still may not read the US run, nor a third institute either.
    problem(app.get_as(&uk, &pair).await, 404).await;
    problem(app.get_as(&fr, &pair).await, 404).await;

    // The UK's transcripts too: its answers and explanations beside the scores.
    expect(
        app.release(&uk_reviewer, &path, &json!({"transcripts": true}))
            .await,
        200,
    )
    .await;
    let transcripts = expect(app.get_as(&us, &pair).await, 200).await;
    assert_eq!(
        transcripts["items"][0]["b"],
        json!({"value": "I", "number": 0.0, "answer": "b-p5-1", "explanation": "why b p5 1",
               "transcripts_withheld": false})
    );
    assert!(
        transcripts["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|i| i["b"]["transcripts_withheld"] == false && i["b"]["answer"].is_string())
    );
    problem(app.get_as(&fr, &pair).await, 404).await;
}

#[tokio::test]
async fn disagreements_refuse_what_a_comparison_refuses() {
    let app = TestApp::spawn().await;
    let (exercise, protocol) = active_exercise(&app).await;
    let us = app
        .login(
            &app.person("dis-eval@nist.gov", "US", &[Role::Evaluator])
                .await,
        )
        .await;
    let (sa, _) = a_and_b();
    let done = finished_run(&app, &us, &exercise, &protocol, sa).await;
    let running = expect(
        app.post_as(
            &us,
            &format!("/v1/exercises/{exercise}/runs"),
            &new_run(&protocol),
        )
        .await,
        201,
    )
    .await;
    let running = running["id"].as_str().expect("id");
    let refused = problem(app.get_as(&us, &list(&done, running, "")).await, 409).await;
    assert_eq!(refused["type"], "urn:jointeval:problem:not-comparable");

    let samples_cursor = expect(
        app.get_as(&us, &format!("/v1/runs/{done}/samples?limit=1"))
            .await,
        200,
    )
    .await;
    let foreign = samples_cursor["next_cursor"]
        .as_str()
        .expect("a cursor")
        .to_owned();
    for bad in [
        "&epoch=-1".to_owned(),
        "&epoch=100001".to_owned(),
        "&reducer=sum".to_owned(),
        "&cluster=topic".to_owned(),
        "&limit=0".to_owned(),
        "&limit=201".to_owned(),
        "&cursor=!!".to_owned(),
        format!("&cursor={foreign}"),
    ] {
        let p = problem(app.get_as(&us, &list(&done, &done, &bad)).await, 422).await;
        assert!(
            p["errors"].as_array().is_some_and(|e| !e.is_empty()),
            "{bad}: {p}"
        );
    }
    for bad in [
        format!("/v1/comparisons/disagreements?a={done}&scorer=s"),
        format!("/v1/comparisons/disagreements?a={done}&b={done}&scorer="),
        format!("/v1/comparisons/disagreements?a=nope&b={done}&scorer=s"),
    ] {
        problem(app.get_as(&us, &bad).await, 422).await;
    }
}
