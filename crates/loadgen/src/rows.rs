//! The per-sample scores the load generator writes: the row shape of `benches/ingest.rs`,
//! as NDJSON and JSON for the API and in COPY's text format for the database, so that
//! both sides write exactly the same rows.

use std::fmt::Write as _;

use uuid::Uuid;

/// Score `i` of a run as one JSON object, without a newline. Written by hand rather than
/// through `serde_json::Value`: generating a million rows must not cost more than
/// sending them, or the client would be what is measured.
pub fn score_json(out: &mut String, i: u64) {
    let value = if i.is_multiple_of(2) { "\"C\"" } else { "0.5" };
    let _ = write!(
        out,
        "{{\"sample_id\":\"sample-{i:07}\",\"epoch\":{},\"scorer\":\"match\",\"value\":{value},\
         \"answer\":\"{}\",\"explanation\":\"benchmark row\",\"metadata\":{{\"difficulty\":{}}}}}",
        1 + i % 3,
        i % 97,
        i % 5
    );
}

/// Scores `start..start + n` as NDJSON, one per line.
pub fn ndjson(start: u64, n: u64) -> Vec<u8> {
    let mut out = String::with_capacity(n as usize * 170);
    for i in start..start + n {
        score_json(&mut out, i);
        out.push('\n');
    }
    out.into_bytes()
}

/// Scores `start..start + n` as one JSON array.
pub fn json_array(start: u64, n: u64) -> Vec<u8> {
    let mut out = String::with_capacity(n as usize * 170 + 2);
    out.push('[');
    for i in start..start + n {
        if i > start {
            out.push(',');
        }
        score_json(&mut out, i);
    }
    out.push(']');
    out.into_bytes()
}

/// The columns of `run_samples` that [`copy_text`] fills, in its order.
pub const COPY_COLUMNS: &str = "run_id, sample_id, epoch, scorer, value_number, value_label";

/// The columns of `run_sample_transcripts` that [`copy_text`] fills, in its order.
pub const COPY_TRANSCRIPT_COLUMNS: &str =
    "run_id, sample_id, epoch, scorer, answer, explanation, metadata";

/// Scores `start..start + n` of `run` in COPY's text format, the same rows as [`ndjson`]:
/// their results for `run_samples`, and their transcripts for `run_sample_transcripts`.
pub fn copy_text(run: Uuid, start: u64, n: u64) -> (Vec<u8>, Vec<u8>) {
    let mut results = String::with_capacity(n as usize * 80);
    let mut transcripts = String::with_capacity(n as usize * 90);
    for i in start..start + n {
        let (number, label) = if i.is_multiple_of(2) {
            ("\\N", "C")
        } else {
            ("0.5", "\\N")
        };
        let key = format!("{run}\tsample-{i:07}\t{}\tmatch", 1 + i % 3);
        let _ = writeln!(results, "{key}\t{number}\t{label}");
        let _ = writeln!(
            transcripts,
            "{key}\t{}\tbenchmark row\t{{\"difficulty\": {}}}",
            i % 97,
            i % 5
        );
    }
    (results.into_bytes(), transcripts.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// The row of `benches/ingest.rs`, built the slow, obviously right way.
    fn expected(i: u64) -> Value {
        json!({"sample_id": format!("sample-{i:07}"), "epoch": 1 + (i % 3), "scorer": "match",
               "value": if i.is_multiple_of(2) { json!("C") } else { json!(0.5) },
               "answer": format!("{}", i % 97), "explanation": "benchmark row",
               "metadata": {"difficulty": i % 5}})
    }

    #[test]
    fn ndjson_lines_are_the_bench_rows() {
        let body = String::from_utf8(ndjson(9_999_998, 4)).expect("utf-8");
        let lines: Vec<&str> = body.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(body.ends_with('\n'));
        for (k, line) in lines.iter().enumerate() {
            let parsed: Value = serde_json::from_str(line).expect("a JSON object per line");
            assert_eq!(parsed, expected(9_999_998 + k as u64));
        }
    }

    #[test]
    fn json_array_holds_the_same_rows() {
        let parsed: Vec<Value> = serde_json::from_slice(&json_array(5, 3)).expect("an array");
        assert_eq!(parsed, vec![expected(5), expected(6), expected(7)]);
        let empty: Vec<Value> = serde_json::from_slice(&json_array(5, 0)).expect("an array");
        assert!(empty.is_empty());
    }

    #[test]
    fn copy_rows_match_the_json_rows() {
        let run = Uuid::now_v7();
        let (results, transcripts) = copy_text(run, 10, 2);
        let results = String::from_utf8(results).expect("utf-8");
        let transcripts = String::from_utf8(transcripts).expect("utf-8");
        let lines: Vec<(&str, &str)> = results.lines().zip(transcripts.lines()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(transcripts.lines().count(), 2);
        for (k, (result, transcript)) in lines.iter().enumerate() {
            let i = 10 + k as u64;
            let fields: Vec<&str> = result.split('\t').collect();
            assert_eq!(fields.len(), COPY_COLUMNS.split(", ").count());
            let want = expected(i);
            assert_eq!(fields[0], run.to_string());
            assert_eq!(fields[1], want["sample_id"]);
            assert_eq!(fields[2], want["epoch"].to_string());
            assert_eq!(fields[3], want["scorer"]);
            match &want["value"] {
                Value::String(label) => assert_eq!((fields[4], fields[5]), ("\\N", label.as_str())),
                number => assert_eq!((fields[4], fields[5]), (number.to_string().as_str(), "\\N")),
            }
            let fields: Vec<&str> = transcript.split('\t').collect();
            assert_eq!(fields.len(), COPY_TRANSCRIPT_COLUMNS.split(", ").count());
            assert_eq!(fields[..4], result.split('\t').collect::<Vec<_>>()[..4]);
            assert_eq!(fields[4], want["answer"]);
            assert_eq!(fields[5], want["explanation"]);
            let metadata: Value = serde_json::from_str(fields[6]).expect("metadata is JSON");
            assert_eq!(metadata, want["metadata"]);
        }
    }

    #[test]
    fn consecutive_batches_never_repeat_a_key() {
        // A key sent again is an upsert, a slower path than new rows: batches must not
        // overlap, or the benchmark would measure the wrong thing.
        let mut keys = std::collections::HashSet::new();
        for batch in 0..3 {
            let body = String::from_utf8(ndjson(batch * 1000, 1000)).expect("utf-8");
            for line in body.lines() {
                let v: Value = serde_json::from_str(line).expect("json");
                let key = (v["sample_id"].to_string(), v["epoch"].to_string());
                assert!(keys.insert(key), "{line} repeats a key");
            }
        }
        assert_eq!(keys.len(), 3000);
    }
}
