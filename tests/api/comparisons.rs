//! Paired comparisons of two runs: the numbers, the edge cases, and who may compare what.
//! The expected figures are scipy's, statsmodels' and the `krippendorff` package's on the
//! same scores (the CI's scripts/check-statistics checks real Inspect logs the same way).

use jointeval_domain::Role;
use serde_json::{Value, json};

use crate::support::story::{active_exercise_with, default_content, finished_run, new_run};
use crate::support::{TestApp, expect, problem};

const A: [f64; 10] = [0.9, 0.4, 0.75, 0.1, 0.6, 0.3, 0.8, 0.55, 0.2, 0.95];
const B: [f64; 10] = [0.7, 0.5, 0.75, 0.0, 0.4, 0.35, 0.6, 0.5, 0.25, 0.8];
const TOPIC: [&str; 10] = ["x", "x", "y", "y", "y", "z", "z", "w", "w", "w"];
const VERDICT_A: &str = "CCIICICCIC";
const VERDICT_B: &str = "CIIICCCIIC";

fn close(got: &Value, want: f64) {
    let got = got
        .as_f64()
        .unwrap_or_else(|| panic!("{got} is not a number"));
    assert!((got - want).abs() < 1e-12, "{got} != {want}");
}

fn scores(values: &[f64], verdicts: &str) -> Vec<Value> {
    let mut out: Vec<Value> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            json!({"sample_id": format!("s{i}"), "epoch": 1, "scorer": "match", "value": v,
                   "sample_metadata": {"topic": TOPIC[i]}})
        })
        .collect();
    out.extend(verdicts.chars().enumerate().map(|(i, v)| {
        json!({"sample_id": format!("s{i}"), "epoch": 1, "scorer": "verdict", "value": v.to_string()})
    }));
    out
}

struct World {
    app: TestApp,
    exercise: String,
    protocol: String,
    us_evaluator: String,
    uk_evaluator: String,
    us_run: String,
    uk_run: String,
}

/// A US run and a UK run of one protocol version, each unreleased.
async fn world() -> World {
    world_with(default_content()).await
}

/// As [`world`], on a protocol version of this content.
async fn world_with(content: Value) -> World {
    let app = TestApp::spawn().await;
    let (exercise, protocol) = active_exercise_with(&app, content).await;
    let us_evaluator = app
        .login(&app.person("eval@nist.gov", "US", &[Role::Evaluator]).await)
        .await;
    let uk_evaluator = app
        .login(
            &app.person("eval@aisi.gov.uk", "UK", &[Role::Evaluator])
                .await,
        )
        .await;
    let us_run = finished_run(
        &app,
        &us_evaluator,
        &exercise,
        &protocol,
        scores(&A, VERDICT_A),
    )
    .await;
    let uk_run = finished_run(
        &app,
        &uk_evaluator,
        &exercise,
        &protocol,
        scores(&B, VERDICT_B),
    )
    .await;
    World {
        app,
        exercise,
        protocol,
        us_evaluator,
        uk_evaluator,
        us_run,
        uk_run,
    }
}

fn comparison(a: &str, b: &str, rest: &str) -> String {
    format!("/v1/comparisons?a={a}&b={b}&scorer={rest}")
}

#[tokio::test]
async fn a_protocols_cluster_field_clusters_unless_the_request_names_another() {
    let mut content = default_content();
    content["tasks"][0]["cluster"] = json!("topic");
    let w = world_with(content).await;
    let reviewer = w
        .app
        .login(
            &w.app
                .person("rev@aisi.gov.uk", "UK", &[Role::Reviewer])
                .await,
        )
        .await;
    let released = w
        .app
        .release(&reviewer, &format!("/v1/runs/{}", w.uk_run), &json!({}))
        .await;
    expect(released, 200).await;
    let path = comparison(&w.us_run, &w.uk_run, "match");
    let got = expect(w.app.get_as(&w.us_evaluator, &path).await, 200).await;
    assert_eq!(got["pairing"]["cluster"], "topic");
    let n = &got["numeric"];
    assert_eq!(n["stderr"], "clustered");
    close(&n["clustered_stderr"], 0.013366625103842272);
    close(&n["p_value"], 0.013551303742563036);
    assert!(
        got["notes"]
            .as_array()
            .expect("notes")
            .iter()
            .any(|note| note
                .as_str()
                .is_some_and(|t| t.contains("the protocol version's cluster field"))),
        "{got}"
    );
    // A field the request names wins, even one the scores lack: then no clustered test.
    let other = expect(
        w.app
            .get_as(&w.us_evaluator, &format!("{path}&cluster=family"))
            .await,
        200,
    )
    .await;
    assert_eq!(other["pairing"]["cluster"], "family");
    assert_eq!(other["numeric"]["clustered_stderr"], Value::Null, "{other}");
    assert_eq!(other["numeric"]["p_value"], Value::Null, "{other}");
    assert!(
        other["notes"][0]
            .as_str()
            .expect("note")
            .contains("no `family`"),
        "{other}"
    );
}

#[tokio::test]
async fn a_comparison_pairs_by_sample_and_its_numbers_are_scipys() {
    let w = world().await;
    let reviewer = w
        .app
        .login(&w.app.person("rev@nist.gov", "US", &[Role::Reviewer]).await)
        .await;
    expect(
        w.app
            .release(&reviewer, &format!("/v1/runs/{}", w.us_run), &json!({}))
            .await,
        200,
    )
    .await;

    let got = expect(
        w.app
            .get_as(&w.uk_evaluator, &comparison(&w.us_run, &w.uk_run, "match"))
            .await,
        200,
    )
    .await;
    assert_eq!(got["matched"], 10);
    assert_eq!(got["a"]["institute"], "US");
    assert_eq!(got["b"]["institute"], "UK");
    assert_eq!(got["pairing"]["by"], "sample_epoch");
    let n = &got["numeric"];
    close(&n["mean_a"], 0.555);
    close(&n["mean_b"], 0.485);
    close(&n["mean_difference"], 0.07000000000000002);
    close(&n["paired_stderr"], 0.03666666666666667);
    close(&n["unpaired_stderr"], 0.12213380640374175);
    close(&n["t_statistic"], 1.9090909090909096);
    close(&n["p_value"], 0.08859039531146623);
    close(&n["confidence_interval"]["lower"], -0.012945762635934166);
    close(&n["confidence_interval"]["upper"], 0.1529457626359342);
    assert_eq!(n["degrees_of_freedom"], 9);
    assert_eq!(n["stderr"], "paired");
    // Graded values read as categories too, but are not a 2×2 table.
    assert_eq!(
        got["notes"],
        json!(["the values take 15 categories: McNemar's test needs exactly two"])
    );

    // Clustered by a metadata field, as Inspect's stderr(cluster=…), with G − 1 degrees.
    let clustered = expect(
        w.app
            .get_as(
                &w.uk_evaluator,
                &comparison(&w.us_run, &w.uk_run, "match&cluster=topic"),
            )
            .await,
        200,
    )
    .await;
    let n = &clustered["numeric"];
    assert_eq!(n["stderr"], "clustered");
    assert_eq!(
        (n["clusters"].as_i64(), n["degrees_of_freedom"].as_i64()),
        (Some(4), Some(3))
    );
    close(&n["clustered_stderr"], 0.013366625103842272);
    close(&n["p_value"], 0.013551303742563036);
    close(&n["confidence_interval"]["lower"], 0.02746143332416473);
    close(&n["confidence_interval"]["upper"], 0.11253856667583531);

    // Labels: agreement, statsmodels' kappa and exact McNemar, Krippendorff's alpha.
    let labels = expect(
        w.app
            .get_as(
                &w.uk_evaluator,
                &comparison(&w.us_run, &w.uk_run, "verdict"),
            )
            .await,
        200,
    )
    .await;
    let g = &labels["agreement"];
    close(&g["agreement_rate"], 0.7);
    close(&g["cohen_kappa"], 0.3999999999999999);
    close(&g["mcnemar"]["p_value"], 1.0);
    assert_eq!(g["mcnemar"]["statistic"], 1);
    close(&g["krippendorff_alpha"]["nominal"], 0.4242424242424242);
    close(&g["krippendorff_alpha"]["interval"], 0.4242424242424242);
    assert_eq!(
        g["table"],
        json!([{"a": "I", "b": "I", "count": 3}, {"a": "I", "b": "C", "count": 1},
               {"a": "C", "b": "I", "count": 2}, {"a": "C", "b": "C", "count": 4}])
    );
    // The labels' numbers (C 1, I 0) give the numeric comparison too.
    close(&labels["numeric"]["mean_difference"], 0.1);
}

#[tokio::test]
async fn a_comparison_with_a_run_the_caller_may_not_read_is_one_404_whichever_it_is() {
    let w = world().await;
    let app = &w.app;
    let hidden = comparison(&w.us_run, &w.uk_run, "match");
    let swapped = comparison(&w.uk_run, &w.us_run, "match");
    let absent = comparison(&w.uk_run, &uuid::Uuid::now_v7().to_string(), "match");
    let mut bodies = Vec::new();
    for path in [&hidden, &swapped, &absent] {
        bodies.push(problem(app.get_as(&w.uk_evaluator, path).await, 404).await);
    }
    assert!(bodies.windows(2).all(|p| p[0] == p[1]), "{bodies:?}");
    assert!(
        !bodies[0].to_string().contains(&w.us_run),
        "the answer names no run: {}",
        bodies[0]
    );
    // The US may compare its own run with the UK's only once the UK releases it.
    problem(app.get_as(&w.us_evaluator, &hidden).await, 404).await;
    // A third institute and an outsider see neither.
    let fr = app
        .login(&app.person("viewer@inria.fr", "FR", &[Role::Viewer]).await)
        .await;
    problem(app.get_as(&fr, &hidden).await, 404).await;
    problem(app.get(&hidden).await, 401).await;

    // Released to the UK: the UK compares, any role of it; the US still may not.
    let reviewer = app
        .login(&app.person("rev@nist.gov", "US", &[Role::Reviewer]).await)
        .await;
    expect(
        app.release(&reviewer, &format!("/v1/runs/{}", w.us_run), &json!({}))
            .await,
        200,
    )
    .await;
    let uk_viewer = app
        .login(
            &app.person("viewer@aisi.gov.uk", "UK", &[Role::Viewer])
                .await,
        )
        .await;
    expect(app.get_as(&uk_viewer, &hidden).await, 200).await;
    problem(app.get_as(&w.us_evaluator, &hidden).await, 404).await;
    problem(app.get_as(&fr, &hidden).await, 404).await;
    // A US run against itself: its own.
    let own = comparison(&w.us_run, &w.us_run, "match");
    let itself = expect(app.get_as(&w.us_evaluator, &own).await, 200).await;
    assert_eq!(itself["numeric"]["mean_difference"], 0.0);
}

#[tokio::test]
async fn edge_cases_are_clear_answers_never_errors_or_nan() {
    let w = world().await;
    let app = &w.app;
    let us = &w.us_evaluator;
    let run = |scores: Vec<Value>| finished_run(app, us, &w.exercise, &w.protocol, scores);
    let score = |id: &str, epoch: i32, value: Value| json!({"sample_id": id, "epoch": epoch, "scorer": "s", "value": value});

    // No matched samples: counted and listed, no statistics, each absence noted.
    let left = run(vec![score("a", 1, json!(1.0))]).await;
    let right = run(vec![score("b", 1, json!(1.0))]).await;
    let none = expect(app.get_as(us, &comparison(&left, &right, "s")).await, 200).await;
    assert_eq!(none["matched"], 0);
    assert_eq!(
        none["unmatched"],
        json!({"a_only": 1, "b_only": 1, "a_only_samples": [{"sample_id": "a", "epoch": 1}],
               "b_only_samples": [{"sample_id": "b", "epoch": 1}]})
    );
    assert_eq!(
        (&none["numeric"], &none["agreement"]),
        (&Value::Null, &Value::Null)
    );
    assert_eq!(none["notes"].as_array().map(Vec::len), Some(3), "{none}");

    // One matched sample: means and a difference, no standard error.
    let one = expect(app.get_as(us, &comparison(&left, &left, "s")).await, 200).await;
    assert_eq!(one["numeric"]["pairs"], 1);
    assert_eq!(one["numeric"]["paired_stderr"], Value::Null);
    assert_eq!(one["numeric"]["p_value"], Value::Null);

    // Every difference zero: a zero-width interval, no test.
    let twice = run(vec![score("a", 1, json!(1.0)), score("b", 1, json!(0.0))]).await;
    let again = run(vec![score("a", 1, json!(1.0)), score("b", 1, json!(0.0))]).await;
    let zero = expect(app.get_as(us, &comparison(&twice, &again, "s")).await, 200).await;
    assert_eq!(zero["numeric"]["paired_stderr"], 0.0);
    assert_eq!(zero["numeric"]["t_statistic"], Value::Null);
    assert_eq!(
        zero["numeric"]["confidence_interval"],
        json!({"level": 0.95, "lower": 0.0, "upper": 0.0})
    );
    close(&zero["agreement"]["cohen_kappa"], 1.0);

    // Labels that are not numbers: no numeric statistics; nominal agreement only.
    let words = run(vec![
        score("a", 1, json!("red")),
        score("b", 1, json!("blue")),
        score("c", 1, json!("red")),
    ])
    .await;
    let others = run(vec![
        score("a", 1, json!("red")),
        score("b", 1, json!("green")),
        score("c", 1, json!("red")),
    ])
    .await;
    let labels = expect(app.get_as(us, &comparison(&words, &others, "s")).await, 200).await;
    assert_eq!(labels["numeric"], Value::Null);
    close(&labels["agreement"]["agreement_rate"], 2.0 / 3.0);
    assert_eq!(
        labels["agreement"]["krippendorff_alpha"]["interval"],
        Value::Null
    );
    assert!(labels["agreement"]["krippendorff_alpha"]["nominal"].is_number());

    // Epochs of different counts: by epoch the third is unmatched; reduced, all pair.
    let three = run((1..=3).map(|e| score("a", e, json!(e as f64))).collect()).await;
    let two = run((1..=2).map(|e| score("a", e, json!(1.0))).collect()).await;
    let by_epoch = expect(app.get_as(us, &comparison(&three, &two, "s")).await, 200).await;
    assert_eq!(
        (
            by_epoch["matched"].as_i64(),
            by_epoch["unmatched"]["a_only"].as_i64()
        ),
        (Some(2), Some(1))
    );
    let reduced = expect(
        app.get_as(us, &comparison(&three, &two, "s&reducer=mean"))
            .await,
        200,
    )
    .await;
    assert_eq!(reduced["pairing"]["by"], "sample");
    assert_eq!(reduced["matched"], 1);
    close(&reduced["numeric"]["mean_difference"], 1.0);
    let median = expect(
        app.get_as(us, &comparison(&three, &two, "s&reducer=max"))
            .await,
        200,
    )
    .await;
    close(&median["numeric"]["mean_a"], 3.0);
    let epoch = expect(
        app.get_as(us, &comparison(&three, &two, "s&epoch=2")).await,
        200,
    )
    .await;
    close(&epoch["numeric"]["mean_a"], 2.0);

    // A cluster field missing on some samples: said, and no clustered test.
    let missing = expect(
        app.get_as(us, &comparison(&twice, &again, "s&cluster=topic"))
            .await,
        200,
    )
    .await;
    assert_eq!(missing["numeric"]["clustered_stderr"], Value::Null);
    assert_eq!(missing["numeric"]["p_value"], Value::Null);
    assert!(
        missing["notes"]
            .to_string()
            .contains("2 of 2 numeric pairs have no `topic`"),
        "{missing}"
    );
    // The runs put a sample in different clusters: said, and neither run's is taken (the
    // answer would depend on which run is `a`).
    let placed = |topics: [&str; 3]| {
        topics
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let mut s = score(&format!("p{i}"), 1, json!(i as f64 * 0.5));
                s["sample_metadata"] = json!({"topic": t});
                s
            })
            .collect::<Vec<_>>()
    };
    let here = run(placed(["x", "y", "y"])).await;
    let there = run(placed(["x", "y", "z"])).await;
    for (a, b) in [(&here, &there), (&there, &here)] {
        let split = expect(
            app.get_as(us, &comparison(a, b, "s&cluster=topic")).await,
            200,
        )
        .await;
        assert_eq!(split["numeric"]["clustered_stderr"], Value::Null, "{split}");
        assert!(
            split["notes"]
                .to_string()
                .contains("1 of 3 numeric pairs have another `topic` in one run than in the other"),
            "{split}"
        );
    }
    let alike = run(placed(["x", "y", "y"])).await;
    let same = expect(
        app.get_as(us, &comparison(&here, &alike, "s&cluster=topic"))
            .await,
        200,
    )
    .await;
    assert_eq!(same["numeric"]["clusters"], 2, "{same}");

    // The label "1" is the number 1, and -0 is 0: one category each, and no disagreement.
    let named = run(vec![score("a", 1, json!("1")), score("b", 1, json!(-0.0))]).await;
    let numbered = run(vec![score("a", 1, json!(1.0)), score("b", 1, json!(0.0))]).await;
    let same = expect(
        app.get_as(us, &comparison(&named, &numbered, "s")).await,
        200,
    )
    .await;
    assert_eq!(same["agreement"]["agreement_rate"], 1.0, "{same}");
    assert_eq!(
        same["agreement"]["categories"].as_array().map(Vec::len),
        Some(2),
        "{same}"
    );
    let listed = expect(
        app.get_as(
            us,
            &format!("/v1/comparisons/disagreements?a={named}&b={numbered}&scorer=s"),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(listed["items"], json!([]), "{listed}");

    // Scores whose difference or square leaves double precision: a clear 409.
    let huge = run(vec![
        score("a", 1, json!(1e300)),
        score("b", 1, json!(-1e300)),
    ])
    .await;
    let tiny = run(vec![
        score("a", 1, json!(-1e300)),
        score("b", 1, json!(1e300)),
    ])
    .await;
    let p = problem(app.get_as(us, &comparison(&huge, &tiny, "s")).await, 409).await;
    assert_eq!(p["type"], "urn:jointeval:problem:out-of-range", "{p}");

    // Nothing in the answer is NaN or infinite: the bodies parsed as JSON above.
    for bad in [
        "s&epoch=-1",
        "s&reducer=sum",
        "s&cluster=",
        "s&colour=red",
        "",
    ] {
        problem(app.get_as(us, &comparison(&twice, &again, bad)).await, 422).await;
    }
    problem(
        app.get_as(us, &format!("/v1/comparisons?a={twice}&scorer=s"))
            .await,
        422,
    )
    .await;
}

#[tokio::test]
async fn an_unfinished_run_is_not_compared() {
    let w = world().await;
    let app = &w.app;
    let running = expect(
        app.post_as(
            &w.us_evaluator,
            &format!("/v1/exercises/{}/runs", w.exercise),
            &new_run(&w.protocol),
        )
        .await,
        201,
    )
    .await;
    let running = running["id"].as_str().expect("id");
    let refused = problem(
        app.get_as(&w.us_evaluator, &comparison(&w.us_run, running, "match"))
            .await,
        409,
    )
    .await;
    assert_eq!(refused["type"], "urn:jointeval:problem:not-comparable");
    assert!(
        refused["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("run b is queued")
    );
    // The same request of a UK run: the UK's unreleased run is still a 404, not a 409.
    problem(
        app.get_as(&w.us_evaluator, &comparison(&w.uk_run, running, "match"))
            .await,
        404,
    )
    .await;
}

/// An exercise's comparisons start no new one once the request's work budget is spent
/// (the first is always made): they answer those made and say how many they left, where
/// the request would otherwise run into its timeout, a 503.
#[tokio::test]
async fn an_exercises_comparisons_stop_at_the_work_budget_and_say_what_they_left() {
    let scores: Vec<Value> = (0..20)
        .map(|i| json!({"sample_id": format!("s{i}"), "epoch": 1, "scorer": "match", "value": i % 3}))
        .collect();
    for (budget, made) in [
        (std::time::Duration::ZERO, 1),
        (std::time::Duration::from_secs(60), 3),
    ] {
        let app = TestApp::with_settings(jointeval_api::HttpSettings {
            work_budget: budget,
            ..jointeval_api::HttpSettings::default()
        })
        .await;
        let (exercise, protocol) = active_exercise_with(&app, default_content()).await;
        let us = app
            .login(&app.person("eval@nist.gov", "US", &[Role::Evaluator]).await)
            .await;
        for _ in 0..3 {
            finished_run(&app, &us, &exercise, &protocol, scores.clone()).await;
        }
        let answer = expect(
            app.get_as(&us, &format!("/v1/exercises/{exercise}/comparisons"))
                .await,
            200,
        )
        .await;
        assert_eq!(
            answer["left_out"],
            json!([]),
            "three comparable runs: {answer}"
        );
        let comparisons = answer["comparisons"].as_array().expect("comparisons");
        assert_eq!(comparisons.len(), made, "{answer}");
        assert!(comparisons.iter().all(|c| c["matched"] == 20), "{answer}");
        let notes: Vec<&str> = answer["notes"]
            .as_array()
            .expect("notes")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        if made == 3 {
            assert!(notes.is_empty(), "{answer}");
        } else {
            assert!(
                notes
                    .iter()
                    .any(|n| n.starts_with("2 more comparisons were not made")),
                "{answer}"
            );
        }
    }
}

/// An exercise's pairs whose scores leave double precision are left out, each with a
/// note, and the pairs after them are still compared (the failed statement does not end
/// the transaction).
#[tokio::test]
async fn an_exercises_comparisons_leave_out_pairs_too_large_to_compute() {
    let app = TestApp::spawn().await;
    let (exercise, protocol) = active_exercise_with(&app, default_content()).await;
    let us = app
        .login(&app.person("eval@nist.gov", "US", &[Role::Evaluator]).await)
        .await;
    let scores = |value: &dyn Fn(usize) -> f64| -> Vec<Value> {
        (0..20)
            .map(|i| json!({"sample_id": format!("s{i}"), "epoch": 1, "scorer": "match", "value": value(i)}))
            .collect()
    };
    let sign = |i: usize| if i.is_multiple_of(2) { 1.0 } else { -1.0 };
    let mut runs = Vec::new();
    for values in [
        scores(&|i| 1e300 * sign(i)),
        scores(&|i| -1e300 * sign(i)),
        scores(&|i| (i % 3) as f64),
        scores(&|i| (i % 4) as f64),
    ] {
        runs.push(finished_run(&app, &us, &exercise, &protocol, values).await);
    }
    let answer = expect(
        app.get_as(&us, &format!("/v1/exercises/{exercise}/comparisons"))
            .await,
        200,
    )
    .await;
    let compared: Vec<(&str, &str)> = answer["comparisons"]
        .as_array()
        .expect("comparisons")
        .iter()
        .map(|c| {
            (
                c["a"]["run_id"].as_str().expect("a"),
                c["b"]["run_id"].as_str().expect("b"),
            )
        })
        .collect();
    assert_eq!(compared, [(runs[2].as_str(), runs[3].as_str())], "{answer}");
    let left: Vec<&str> = answer["notes"]
        .as_array()
        .expect("notes")
        .iter()
        .filter_map(Value::as_str)
        .filter(|n| n.contains("too large to compute on in double precision"))
        .collect();
    assert_eq!(left.len(), 5, "every pair with a huge run: {answer}");
}
