//! Every fixture log (written by Inspect itself) reads back to exactly the metrics and
//! per-sample scores in the file, found here by walking its JSON independently of the
//! reader's own types.

use std::io::{Cursor, Read, Write};
use std::path::PathBuf;

use jointeval_inspect::{Format, Item, Limits, Log, LogError, Metric, Score, ScoreValue, read};
use serde_json::{Value, json};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/inspect")
        .join(name)
}

fn open(name: &str) -> std::fs::File {
    std::fs::File::open(fixture(name)).expect("fixture")
}

/// The header and samples of a log file as plain JSON, whatever its format.
fn as_json(name: &str) -> (Value, Vec<Value>) {
    if name.ends_with(".json") {
        let mut log: Value = serde_json::from_reader(open(name)).expect("the fixture is JSON");
        let samples = log["samples"].as_array().cloned().unwrap_or_default();
        log["samples"] = Value::Null;
        return (log, samples);
    }
    let mut archive = zip::ZipArchive::new(open(name)).expect("a zip");
    let read_entry = |archive: &mut zip::ZipArchive<std::fs::File>, entry: &str| -> Value {
        let mut text = String::new();
        archive
            .by_name(entry)
            .expect("entry")
            .read_to_string(&mut text)
            .expect("read");
        serde_json::from_str(&text).expect("JSON")
    };
    let header = read_entry(&mut archive, "header.json");
    let names: Vec<String> = archive
        .file_names()
        .filter(|n| n.starts_with("samples/"))
        .map(str::to_owned)
        .collect();
    let samples = names.iter().map(|n| read_entry(&mut archive, n)).collect();
    (header, samples)
}

fn expected_metrics(header: &Value) -> Vec<(String, String, f64, Option<f64>)> {
    let mut out = Vec::new();
    for score in header["results"]["scores"].as_array().expect("scores") {
        let scorer = match score["reducer"].as_str() {
            Some(r) => format!("{}/{r}", score["name"].as_str().expect("name")),
            None => score["name"].as_str().expect("name").to_owned(),
        };
        let stderr = score["metrics"]["stderr"]["value"].as_f64();
        for (key, metric) in score["metrics"].as_object().expect("metrics") {
            out.push((
                scorer.clone(),
                metric["name"].as_str().expect("name").to_owned(),
                metric["value"].as_f64().expect("value"),
                if key == "stderr" { None } else { stderr },
            ));
        }
    }
    out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    out
}

fn expected_scores(samples: &[Value]) -> Vec<(String, i64, String, f64)> {
    let mut out = Vec::new();
    for sample in samples {
        let id = match &sample["id"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        for (scorer, score) in sample["scores"].as_object().expect("scores") {
            let value = match &score["value"] {
                Value::String(s) if s == "C" => 1.0,
                Value::String(s) if s == "P" => 0.5,
                Value::String(s) if s == "I" || s == "N" => 0.0,
                other => panic!("the fixtures hold letters, not {other}"),
            };
            out.push((
                id.clone(),
                sample["epoch"].as_i64().expect("epoch"),
                scorer.clone(),
                value,
            ));
        }
    }
    out.sort_by(|a, b| (&a.0, a.1, &a.2).cmp(&(&b.0, b.1, &b.2)));
    out
}

fn got_metrics(metrics: &[Metric]) -> Vec<(String, String, f64, Option<f64>)> {
    let mut out: Vec<_> = metrics
        .iter()
        .map(|m| (m.scorer.clone(), m.metric.clone(), m.value, m.stderr))
        .collect();
    out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    out
}

fn got_scores(scores: &[Score]) -> Vec<(String, i64, String, f64)> {
    let mut out: Vec<_> = scores
        .iter()
        .map(|s| {
            // The letters' numbers are the service's domain's to give; here, Inspect's.
            let v = match &s.value {
                ScoreValue::Label(l) if l == "C" => 1.0,
                ScoreValue::Label(l) if l == "P" => 0.5,
                ScoreValue::Label(l) if l == "I" || l == "N" => 0.0,
                other => panic!("the fixtures hold letters, not {other:?}"),
            };
            (s.sample_id.clone(), i64::from(s.epoch), s.scorer.clone(), v)
        })
        .collect();
    out.sort_by(|a, b| (&a.0, a.1, &a.2).cmp(&(&b.0, b.1, &b.2)));
    out
}

#[test]
fn every_fixture_reads_to_exactly_what_inspect_wrote() {
    for (name, format, samples, epochs) in [
        ("arith_small.json", Format::Json, 20, 1),
        ("arith_small.eval", Format::Eval, 20, 1),
        ("arith_small_deflate.eval", Format::Eval, 20, 1),
        ("arith_epochs.json", Format::Json, 150, 3),
        ("arith_epochs.eval", Format::Eval, 150, 3),
    ] {
        let log = read(open(name), Limits::default()).expect(name);
        let (header, sample_json) = as_json(name);
        assert_eq!(log.format, format, "{name}");
        assert_eq!(log.samples, samples, "{name}");
        assert_eq!(log.header.status, "success", "{name}");
        assert_eq!(
            log.header.eval_id,
            header["eval"]["eval_id"].as_str().expect("id")
        );
        assert_eq!(
            log.header.task,
            header["eval"]["task"].as_str().expect("task")
        );
        assert_eq!(log.header.model, "mockllm/model");
        assert_eq!(log.header.epochs, Some(epochs), "{name}");
        assert_eq!(
            log.header.dataset_samples,
            Some(samples as i64 / epochs),
            "{name}"
        );
        assert_eq!(log.header.inspect_version.as_deref(), Some("0.3.285"));
        assert_eq!(log.header.scorers, ["match", "includes"]);
        // The plan's one step, and the task's generation settings (none for the model).
        assert_eq!(log.header.solver.as_deref(), Some("generate"), "{name}");
        assert_eq!(
            Value::Object(log.header.generate_config.clone()),
            serde_json::json!({"max_connections": 1}),
            "{name}"
        );
        let metrics = expected_metrics(&header);
        assert!(!metrics.is_empty());
        assert_eq!(got_metrics(&log.metrics), metrics, "{name}");
        let scores = expected_scores(&sample_json);
        assert_eq!(scores.len(), samples * 2, "{name}");
        assert_eq!(got_scores(&log.scores), scores, "{name}");
        // Answers come along; metadata is the score's own (these scorers write none), not
        // the sample's.
        let first = &log.scores[0];
        assert!(first.answer.is_some(), "{name}");
        assert!(sample_json[0]["metadata"]["difficulty"].is_string());
        assert_eq!(first.metadata, None, "{name}");
        assert_eq!(log.header.version, 2);
        assert_eq!(log.distinct_samples, samples / epochs as usize, "{name}");
        assert_eq!((log.unscored, log.errors.len()), (0, 0), "{name}");
    }
}

/// A metric as compared: scorer (with `/reducer`), key, name, value, scored and unscored
/// samples.
type MetricRow = (String, String, String, f64, Option<i64>, Option<i64>);

/// What Inspect's own `read_eval_log` read from a feature log (`make_feature_logs.py`).
fn expected_of(name: &str) -> Value {
    let path = fixture(&format!("features/{name}.expected.json"));
    serde_json::from_slice(&std::fs::read(path).expect("expected")).expect("JSON")
}

/// A value as Inspect wrote it, next to what the reader made of it: a number equal to
/// Inspect's own number for it, or the label it was.
fn same_value(got: &ScoreValue, value: &Value, number: &Value) -> bool {
    match got {
        ScoreValue::Number(n) => number.as_f64() == Some(*n),
        ScoreValue::Label(l) => value.as_str() == Some(l.as_str()),
    }
}

#[test]
fn every_feature_log_reads_as_inspect_reads_it() {
    for case in [
        "unscored",
        "duplicate_metrics",
        "dict_scores",
        "model_graded",
        "errored",
        "reducers",
    ] {
        for name in [format!("{case}.json"), format!("{case}.eval")] {
            let log = read(open(&format!("features/{name}")), Limits::default()).expect(&name);
            let want = expected_of(&name);
            assert_eq!(
                log.header.version,
                want["version"].as_i64().expect("version")
            );
            assert_eq!(log.header.status, want["status"].as_str().expect("status"));
            // Every sample of the dataset is in the log, errored ones among them.
            assert_eq!(
                Some(log.distinct_samples as i64),
                want["dataset_samples"].as_i64(),
                "{name}"
            );

            // Metrics: each under Inspect's key, a NaN one (nothing scored) left out.
            let mut want_metrics: Vec<MetricRow> = want["metrics"]
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
            let mut got_metrics: Vec<_> = log
                .metrics
                .iter()
                .map(|m| {
                    (
                        m.scorer.clone(),
                        m.metric.clone(),
                        m.name.clone(),
                        m.value,
                        m.sample_count,
                        m.unscored_count,
                    )
                })
                .collect();
            want_metrics.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
            got_metrics.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
            assert_eq!(got_metrics, want_metrics, "{name}");

            // Scores: one per key of a dict value; unscored ones counted, not kept.
            let want_scores = want["scores"].as_array().expect("scores");
            let unscored = want_scores.iter().filter(|s| s["value"].is_null()).count();
            assert_eq!(log.unscored, unscored, "{name}");
            assert_eq!(log.scores.len(), want_scores.len() - unscored, "{name}");
            for score in &log.scores {
                let w = want_scores
                    .iter()
                    .find(|w| {
                        w["sample_id"] == score.sample_id.as_str()
                            && w["epoch"] == i64::from(score.epoch)
                            && w["scorer"] == score.scorer.as_str()
                    })
                    .unwrap_or_else(|| panic!("{name}: Inspect has no {score:?}"));
                assert!(
                    same_value(&score.value, &w["value"], &w["number"]),
                    "{name}: {score:?} {w}"
                );
                assert_eq!(score.answer.as_deref(), w["answer"].as_str(), "{name}");
                assert_eq!(
                    score.explanation.as_deref(),
                    w["explanation"].as_str(),
                    "{name}"
                );
                let metadata = w["metadata"].clone();
                assert_eq!(
                    score.metadata,
                    (!metadata.is_null()).then_some(metadata),
                    "{name}"
                );
            }

            // Reductions, per scorer (or key) and reducer; an unscored one is no value.
            let want_reductions: Vec<&Value> = want["reductions"]
                .as_array()
                .expect("reductions")
                .iter()
                .filter(|r| !r["value"].is_null())
                .collect();
            assert_eq!(log.reductions.len(), want_reductions.len(), "{name}");
            for (got, w) in log.reductions.iter().zip(want_reductions) {
                assert_eq!(got.scorer, w["scorer"].as_str().expect("scorer"), "{name}");
                assert_eq!(got.reducer.as_deref(), w["reducer"].as_str(), "{name}");
                assert_eq!(
                    got.sample_id,
                    w["sample_id"].as_str().expect("id"),
                    "{name}"
                );
                assert!(
                    same_value(&got.value, &w["value"], &w["number"]),
                    "{name}: {got:?} {w}"
                );
            }

            // Errored samples, with Inspect's message.
            let errors: Vec<(String, i64, String)> = log
                .errors
                .iter()
                .map(|e| (e.sample_id.clone(), i64::from(e.epoch), e.message.clone()))
                .collect();
            let want_errors: Vec<(String, i64, String)> = want["errors"]
                .as_array()
                .expect("errors")
                .iter()
                .map(|e| {
                    (
                        e["sample_id"].as_str().expect("id").to_owned(),
                        e["epoch"].as_i64().expect("epoch"),
                        e["message"].as_str().expect("message").to_owned(),
                    )
                })
                .collect();
            assert_eq!(errors, want_errors, "{name}");
        }
    }
}

/// Reading a log an item at a time hands on exactly the scores, errored samples and
/// reductions a whole reading keeps, in the same order, and counts them alike; an error of
/// the receiver ends the reading, wherever in the log it comes, and is what the reader
/// answers.
#[test]
fn a_log_read_an_item_at_a_time_gives_what_a_whole_reading_keeps() {
    for name in [
        "arith_epochs.json",
        "arith_epochs.eval",
        "features/dict_scores.json",
        "features/errored.eval",
        "features/reducers.eval",
        "features/unscored.json",
    ] {
        let whole = read(open(name), Limits::default()).expect(name);
        let (mut scores, mut errors, mut reductions) = (Vec::new(), Vec::new(), Vec::new());
        let streamed =
            jointeval_inspect::read_each(open(name), None, Limits::default(), &mut |item| {
                match item {
                    Item::Score(s) => scores.push(s),
                    Item::Error(e) => errors.push(e),
                    Item::Reduction(r) => reductions.push(r),
                }
                Ok(())
            })
            .expect(name);
        assert_eq!(scores, whole.scores, "{name}");
        assert_eq!(errors, whole.errors, "{name}");
        assert_eq!(reductions, whole.reductions, "{name}");
        assert!(
            streamed.scores.is_empty() && streamed.errors.is_empty(),
            "{name}"
        );
        assert!(streamed.reductions.is_empty(), "{name}");
        assert_eq!(
            (
                streamed.score_count,
                streamed.error_count,
                streamed.reduction_count
            ),
            (scores.len(), errors.len(), reductions.len()),
            "{name}"
        );
        assert_eq!(
            Log {
                scores,
                errors,
                reductions,
                ..streamed
            },
            whole,
            "{name}"
        );
        for kind in ["score", "error", "reduction"] {
            let stops_here = |item: &Item| {
                matches!(
                    (kind, item),
                    ("score", Item::Score(_))
                        | ("error", Item::Error(_))
                        | ("reduction", Item::Reduction(_))
                )
            };
            let mut taken = 0;
            let mut stopped_at = None;
            let stopped =
                jointeval_inspect::read_each(open(name), None, Limits::default(), &mut |item| {
                    taken += 1;
                    if stopped_at.is_none() && stops_here(&item) {
                        stopped_at = Some(taken);
                        Err(LogError::Corrupt("the receiver is full".into()))
                    } else {
                        Ok(())
                    }
                });
            match stopped_at {
                Some(at) => {
                    assert_eq!(
                        stopped,
                        Err(LogError::Corrupt("the receiver is full".into())),
                        "{name}: stopped at a {kind}"
                    );
                    assert_eq!(taken, at, "{name}: nothing was read past the error");
                }
                None => assert!(stopped.is_ok(), "{name} has no {kind}: {stopped:?}"),
            }
        }
    }
}

/// A reduction's keys in any order but one read alike: Inspect's (scorer, reducer,
/// samples), and sorted by name (reducer, samples, scorer), whose samples wait for their
/// scorer. A reducer named after samples handed on as having none is refused, saying why.
#[test]
fn a_reduction_reads_alike_whatever_the_order_of_its_keys() {
    let json = std::fs::read(fixture("arith_epochs.json")).expect("fixture");
    let log: Value = serde_json::from_slice(&json).expect("JSON");
    let samples = serde_json::to_string(&log["reductions"][0]["samples"]).expect("json");
    let count = log["reductions"][0]["samples"]
        .as_array()
        .map_or(0, Vec::len);
    assert!(count > 0);
    let with = |reduction: &str| {
        let mut changed = log.clone();
        changed["reductions"] = Value::Null;
        let text = serde_json::to_string(&changed).expect("json").replace(
            r#""reductions":null"#,
            &format!(r#""reductions":[{reduction}]"#),
        );
        read(Cursor::new(text.into_bytes()), Limits::default())
    };
    for reduction in [
        format!(r#"{{"scorer": "match", "reducer": "max", "samples": {samples}}}"#),
        format!(r#"{{"reducer": "max", "samples": {samples}, "scorer": "match"}}"#),
        format!(r#"{{"samples": {samples}, "scorer": "match", "reducer": "max"}}"#),
        // Named again after the samples, but as they were read.
        format!(
            r#"{{"scorer": "match", "reducer": "max", "samples": {samples}, "scorer": "match", "reducer": "max"}}"#
        ),
    ] {
        let read = with(&reduction).expect(&reduction);
        assert_eq!(read.reduction_count, count, "{reduction}");
        assert_eq!(read.reductions.len(), count, "{reduction}");
        assert!(
            read.reductions
                .iter()
                .all(|r| r.scorer == "match" && r.reducer.as_deref() == Some("max")),
            "{reduction}"
        );
    }
    for (reduction, refusal) in [
        (
            format!(r#"{{"scorer": "match", "samples": {samples}, "reducer": "mean"}}"#),
            "reductions[0]: `reducer` comes after `samples`",
        ),
        (
            format!(r#"{{"reducer": "mean", "samples": {samples}}}"#),
            "reductions[0]: missing field `scorer`",
        ),
        (
            format!(r#"{{"scorer": "match", "samples": {samples}, "scorer": "includes"}}"#),
            "reductions[0]: `scorer` comes again after `samples`, naming another",
        ),
        (
            format!(r#"{{"scorer": "match", "samples": {samples}, "samples": []}}"#),
            "reductions[0]: duplicate field `samples`",
        ),
    ] {
        match with(&reduction) {
            Err(LogError::Corrupt(message)) => {
                assert!(message.contains(refusal), "{refusal}: {message}")
            }
            other => panic!("{refusal}: {other:?}"),
        }
    }
}

#[test]
fn a_dict_scorer_and_reducers_name_their_scorer_once() {
    let dict = read(open("features/dict_scores.json"), Limits::default()).expect("dict");
    assert_eq!(dict.header.scorers, ["dict_scorer"]);
    let reduced = read(open("features/reducers.eval"), Limits::default()).expect("reducers");
    assert_eq!(reduced.header.scorers, ["match"]);
}

#[test]
fn only_the_log_versions_inspect_writes_are_read() {
    let json = std::fs::read(fixture("arith_small.json")).expect("fixture");
    let mut log: Value = serde_json::from_slice(&json).expect("JSON");
    for (version, readable) in [
        (json!(1), true),
        (json!(2), true),
        (json!(99), false),
        (json!(0), false),
        (json!("2"), false),
        (json!(2.5), false),
        (json!(null), false),
    ] {
        log["version"] = version.clone();
        let bytes = serde_json::to_vec(&log).expect("bytes");
        match read(Cursor::new(bytes), Limits::default()) {
            Ok(_) => assert!(readable, "version {version} was read"),
            Err(LogError::Version(named)) => {
                assert!(!readable, "version {version}: {named}");
                assert_eq!(named, version.to_string());
            }
            Err(other) => panic!("version {version}: {other}"),
        }
    }
}

#[test]
fn zstd_and_deflate_archives_of_one_log_read_the_same() {
    let zstd = read(open("arith_small.eval"), Limits::default()).expect("zstd");
    let deflate = read(open("arith_small_deflate.eval"), Limits::default()).expect("deflate");
    assert_eq!(zstd, deflate);
}

#[test]
fn score_values_map_as_inspect_means_them() {
    for (value, want) in [
        (json!("C"), Some(ScoreValue::Label("C".into()))),
        (json!("I"), Some(ScoreValue::Label("I".into()))),
        (json!(0.25), Some(ScoreValue::Number(0.25))),
        (json!(3), Some(ScoreValue::Number(3.0))),
        (json!(true), Some(ScoreValue::Number(1.0))),
        (json!(false), Some(ScoreValue::Number(0.0))),
        (json!("refused"), Some(ScoreValue::Label("refused".into()))),
        (
            json!({"a": 1}),
            Some(ScoreValue::Label(r#"{"a":1}"#.into())),
        ),
        (json!(null), None),
    ] {
        assert_eq!(ScoreValue::from_json(&value), want, "{value}");
    }
}

#[test]
fn broken_and_hostile_logs_are_refused_with_a_reason() {
    let json = std::fs::read(fixture("arith_small.json")).expect("fixture");
    let truncated = read(Cursor::new(&json[..json.len() / 2]), Limits::default());
    assert!(
        matches!(truncated, Err(LogError::Corrupt(_))),
        "{truncated:?}"
    );

    let eval = std::fs::read(fixture("arith_small.eval")).expect("fixture");
    let cut = read(Cursor::new(&eval[..eval.len() - 200]), Limits::default());
    assert!(matches!(cut, Err(LogError::Corrupt(_))), "{cut:?}");

    assert_eq!(
        read(Cursor::new(b"hello, world".to_vec()), Limits::default()),
        Err(LogError::NotALog)
    );
    assert_eq!(
        read(Cursor::new(Vec::new()), Limits::default()),
        Err(LogError::NotALog)
    );
    // A byte-order mark and leading whitespace do not hide a JSON log.
    let mut padded = b"\xEF\xBB\xBF      \n\n".to_vec();
    padded.extend_from_slice(&json);
    let read_padded = read(Cursor::new(padded), Limits::default()).expect("a padded JSON log");
    assert_eq!(read_padded.samples, 20);
    // One entry over the per-entry bound is refused, whatever the ratio allows.
    let one_entry = Limits {
        max_entry: 4096,
        ..Limits::default()
    };
    assert!(matches!(
        read(open("arith_small.eval"), one_entry),
        Err(LogError::Bomb { .. })
    ));

    // 64 MiB of zeros in a few KiB: a bomb, refused before it is expanded.
    let mut bomb = Vec::new();
    {
        let mut writer = zip::ZipWriter::new(Cursor::new(&mut bomb));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        writer.start_file("header.json", options).expect("start");
        let zeros = vec![b' '; 1 << 20];
        for _ in 0..64 {
            writer.write_all(&zeros).expect("write");
        }
        writer.finish().expect("finish");
    }
    assert!(bomb.len() < 1 << 20);
    assert_eq!(
        read(Cursor::new(bomb.clone()), Limits::default()),
        Err(LogError::Bomb {
            entry: "header.json".into()
        })
    );
    // And an archive within the ratio but beyond the total is refused too.
    let small = Limits {
        max_expanded: 10_000,
        ..Limits::default()
    };
    assert_eq!(
        read(open("arith_small.eval"), small),
        Err(LogError::TooLarge(10_000))
    );
}
