//! Inspect logs of any size, generated to files: the fixture's header and, as many times
//! as it takes, its first sample under a new id, with that sample's reductions (one a
//! scorer); as a JSON log and as an `.eval` archive (zstd entries, as Inspect writes
//! them).

#![allow(dead_code)] // each benchmark uses its own part of this module

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

fn fixture() -> Value {
    let path = format!(
        "{}/tests/fixtures/inspect/arith_small.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("JSON")
}

/// The fixture's first sample under another id, as the reader sees a sample.
fn sample(template: &Value, i: usize) -> Value {
    let mut s = template.clone();
    s["id"] = json!(format!("g{i:07}"));
    s
}

/// The fixture's reductions, each with its first sample's value for every sample: a
/// reduction's scorer and reducer, then its samples, as Inspect writes them.
fn write_reductions(out: &mut impl Write, log: &Value, samples: usize) {
    out.write_all(b"[").expect("write");
    for (n, reduction) in log["reductions"]
        .as_array()
        .expect("reductions")
        .iter()
        .enumerate()
    {
        let mut head = serde_json::Map::new();
        head.insert("scorer".into(), reduction["scorer"].clone());
        if !reduction["reducer"].is_null() {
            head.insert("reducer".into(), reduction["reducer"].clone());
        }
        let head = serde_json::to_string(&head).expect("json");
        let comma = if n > 0 { "," } else { "" };
        write!(out, "{comma}{},\"samples\":[", &head[..head.len() - 1]).expect("write");
        let mut template = reduction["samples"][0].clone();
        for i in 0..samples {
            if i > 0 {
                out.write_all(b",").expect("write");
            }
            template["sample_id"] = json!(format!("g{i:07}"));
            serde_json::to_writer(&mut *out, &template).expect("write");
        }
        out.write_all(b"]}").expect("write");
    }
    out.write_all(b"]").expect("write");
}

/// A generated log's files, and its size in samples.
pub struct Generated {
    pub json: PathBuf,
    pub eval: PathBuf,
    pub samples: usize,
}

/// Logs of at least `scores` scores, in `dir`, each its own eval (an eval is imported
/// once in an institute).
pub fn generate(dir: &Path, scores: usize) -> Generated {
    let log = fixture();
    let template = {
        let first = &log["samples"][0];
        json!({"id": first["id"], "epoch": 1, "scores": first["scores"],
               "metadata": first["metadata"], "target": first["target"]})
    };
    let per_sample = template["scores"].as_object().map_or(1, |s| s.len().max(1));
    let samples = scores.div_ceil(per_sample);
    let mut header = log.clone();
    header["samples"] = Value::Null;
    header["reductions"] = Value::Null;
    header["eval"]["dataset"]["samples"] = json!(samples);
    header["eval"]["dataset"]["sample_ids"] = json!([]);

    let json_path = dir.join(format!("log-{scores}.json"));
    let mut out = BufWriter::new(std::fs::File::create(&json_path).expect("create"));
    let mut head = header.clone();
    head["eval"]["eval_id"] = json!(format!("generated-{scores}-json"));
    let fields = head.as_object_mut().expect("object");
    fields.remove("samples");
    fields.remove("reductions");
    let head = serde_json::to_string(&head).expect("json");
    write!(out, "{},\"samples\":[", &head[..head.len() - 1]).expect("write");
    for i in 0..samples {
        if i > 0 {
            out.write_all(b",").expect("write");
        }
        serde_json::to_writer(&mut out, &sample(&template, i)).expect("write");
    }
    out.write_all(b"],\"reductions\":").expect("write");
    write_reductions(&mut out, &log, samples);
    out.write_all(b"}").expect("write");
    out.flush().expect("flush");

    let eval_path = dir.join(format!("log-{scores}.eval"));
    header["eval"]["eval_id"] = json!(format!("generated-{scores}-eval"));
    let file = std::fs::File::create(&eval_path).expect("create");
    let mut zip = zip::ZipWriter::new(BufWriter::new(file));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Zstd);
    for i in 0..samples {
        zip.start_file(format!("samples/g{i:07}_epoch_1.json"), options)
            .expect("entry");
        serde_json::to_writer(&mut zip, &sample(&template, i)).expect("write");
    }
    zip.start_file("reductions.json", options).expect("entry");
    write_reductions(&mut zip, &log, samples);
    zip.start_file("header.json", options).expect("entry");
    serde_json::to_writer(&mut zip, &header).expect("write");
    zip.finish().expect("finish");
    Generated {
        json: json_path,
        eval: eval_path,
        samples,
    }
}
