//! Peak memory of reading an Inspect log as the import reads it to write its scores
//! (`jointeval_inspect::read_each`: each score handed on and let go), against reading it
//! whole (`read`, every score kept), for logs of SCORES scores: a JSON log and an `.eval`
//! archive each, generated to files from the fixture's header and first sample, each read
//! in a process of its own that reports its peak resident set.
//!
//!     cargo bench --bench inspect_memory              # 20,000, 100,000 and 1,000,000
//!     cargo bench --bench inspect_memory -- 50000     # one count

use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use jointeval_inspect::Limits;
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

fn generate(dir: &Path, scores: usize) -> (PathBuf, PathBuf) {
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
    header["eval"]["dataset"]["samples"] = json!(samples);
    header["eval"]["dataset"]["sample_ids"] = json!([]);

    let json_path = dir.join(format!("log-{scores}.json"));
    let mut out = BufWriter::new(std::fs::File::create(&json_path).expect("create"));
    let mut head = header.clone();
    head.as_object_mut().expect("object").remove("samples");
    let head = serde_json::to_string(&head).expect("json");
    write!(out, "{},\"samples\":[", &head[..head.len() - 1]).expect("write");
    for i in 0..samples {
        if i > 0 {
            out.write_all(b",").expect("write");
        }
        serde_json::to_writer(&mut out, &sample(&template, i)).expect("write");
    }
    out.write_all(b"]}").expect("write");
    out.flush().expect("flush");

    let eval_path = dir.join(format!("log-{scores}.eval"));
    let file = std::fs::File::create(&eval_path).expect("create");
    let mut zip = zip::ZipWriter::new(BufWriter::new(file));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Zstd);
    for i in 0..samples {
        zip.start_file(format!("samples/g{i:07}_epoch_1.json"), options)
            .expect("entry");
        serde_json::to_writer(&mut zip, &sample(&template, i)).expect("write");
    }
    zip.start_file("header.json", options).expect("entry");
    serde_json::to_writer(&mut zip, &header).expect("write");
    zip.finish().expect("finish");
    (json_path, eval_path)
}

/// In a process of its own: reads one log, and prints what it read and its peak memory.
fn read_one(how: &str, path: &Path) {
    let started = Instant::now();
    let file = std::fs::File::open(path).expect("open");
    let limits = Limits {
        max_expanded: u64::MAX,
        ..Limits::default()
    };
    let scores = match how {
        "each" => {
            let mut scores = 0usize;
            jointeval_inspect::read_each(file, None, limits, &mut |_| {
                scores += 1;
                Ok(())
            })
            .expect("read");
            scores
        }
        _ => jointeval_inspect::read(file, limits)
            .expect("read")
            .scores
            .len(),
    };
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{scores} scores in {secs:.2} s, peak resident {:.1} MiB",
        peak_resident_kib() as f64 / 1024.0
    );
}

/// This process's peak resident set (`VmHWM`): its own address space's, unlike
/// `getrusage`'s `ru_maxrss`, which keeps the peak of the process that forked it.
fn peak_resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .expect("/proc/self/status")
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [mode, how, path] = args.as_slice()
        && mode == "read"
    {
        read_one(how, Path::new(path));
        return;
    }
    let counts: Vec<usize> = match args.iter().find_map(|a| a.parse().ok()) {
        Some(n) => vec![n],
        None => vec![20_000, 100_000, 1_000_000],
    };
    let dir = std::env::temp_dir().join(format!("jointeval-inspect-memory-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let me = std::env::current_exe().expect("this program");
    for n in counts {
        let (json_log, eval_log) = generate(&dir, n);
        for path in [&json_log, &eval_log] {
            let size = std::fs::metadata(path).expect("size").len() as f64 / (1024.0 * 1024.0);
            for how in ["each", "whole"] {
                let output = Command::new(&me)
                    .args(["read", how, path.to_str().expect("utf-8")])
                    .output()
                    .expect("a reader");
                let mut said = String::new();
                output
                    .stdout
                    .as_slice()
                    .read_to_string(&mut said)
                    .expect("utf-8");
                println!(
                    "{} ({size:.0} MiB), read {}: {}",
                    path.file_name().and_then(|n| n.to_str()).unwrap_or("?"),
                    if how == "each" {
                        "as the import writes (read_each)"
                    } else {
                        "whole (read)"
                    },
                    said.trim()
                );
            }
        }
        std::fs::remove_file(&json_log).ok();
        std::fs::remove_file(&eval_log).ok();
    }
    std::fs::remove_dir_all(&dir).ok();
}
