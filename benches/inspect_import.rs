//! Inspect log import rate: the largest fixture, then a generated `.eval` archive of
//! SAMPLES samples (default 100,000), each a real sample of the fixture with a new id,
//! through `POST /v1/runs/{id}/inspect-log`, in samples per second.
//!
//!     cargo bench --bench inspect_import              # 100,000 samples
//!     cargo bench --bench inspect_import -- 20000     # another count
//!
//! Like the ingest benchmark, it uses DATABASE_URL or a private cluster, and serves the
//! real router in this process.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{Cursor, Read, Write};
use std::time::Instant;

use jointeval_domain::Role;
use serde_json::{Value, json};
use support::TestApp;
use support::story::{active_exercise_with, new_run};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/inspect/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

/// An archive like Inspect's: the fixture's header and, `samples` times, its first sample
/// under a new id, each entry compressed with zstd.
fn generated_eval(samples: usize) -> Vec<u8> {
    let mut source = zip::ZipArchive::new(Cursor::new(fixture("arith_small.eval"))).expect("zip");
    let mut read = |name: &str| -> Value {
        let mut text = String::new();
        source
            .by_name(name)
            .expect("entry")
            .read_to_string(&mut text)
            .expect("read");
        serde_json::from_str(&text).expect("json")
    };
    let mut header = read("header.json");
    let sample = read("samples/q0000_epoch_1.json");
    header["eval"]["dataset"]["samples"] = json!(samples);
    header["eval"]["dataset"]["sample_ids"] = json!([]);
    let mut out = Vec::new();
    let mut writer = zip::ZipWriter::new(Cursor::new(&mut out));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Zstd);
    for i in 0..samples {
        let mut s = sample.clone();
        let id = format!("g{i:07}");
        s["id"] = json!(id);
        writer
            .start_file(format!("samples/{id}_epoch_1.json"), options)
            .expect("entry");
        writer
            .write_all(&serde_json::to_vec(&s).expect("json"))
            .expect("write");
    }
    writer.start_file("header.json", options).expect("entry");
    writer
        .write_all(&serde_json::to_vec(&header).expect("json"))
        .expect("write");
    writer.finish().expect("finish");
    out
}

async fn import(
    app: &TestApp,
    token: &str,
    exercise: &str,
    protocol: &str,
    name: &str,
    bytes: Vec<u8>,
) {
    let run: Value = app
        .post_as(token, &format!("/v1/exercises/{exercise}/runs"), &{
            let mut body = new_run(protocol);
            body["model_version"] = json!("mockllm/model");
            body
        })
        .await
        .json()
        .await
        .expect("json");
    let run = run["id"].as_str().expect("id").to_owned();
    app.post_as(token, &format!("/v1/runs/{run}/start"), &json!({}))
        .await;
    let content_type = if name.ends_with(".json") {
        "application/json"
    } else {
        "application/zip"
    };
    let size = bytes.len();
    let started = Instant::now();
    let response = app
        .client
        .post(app.url(&format!("/v1/runs/{run}/inspect-log")))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(bytes)
        .send()
        .await
        .expect("send");
    let status = response.status();
    let body: Value = response.json().await.expect("json");
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(status, 200, "{body}");
    let samples = body["samples"].as_f64().expect("samples");
    println!(
        "{name}: {:.1} MiB, {samples} samples, {} scores: {secs:.2} s, {:.0} samples/s",
        size as f64 / (1024.0 * 1024.0),
        body["scores"],
        samples / secs
    );
}

#[tokio::main]
async fn main() {
    let samples: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100_000);
    let app = TestApp::spawn().await;
    let (exercise, protocol) = active_exercise_with(&app, support::story::default_content()).await;
    let evaluator = app
        .login(&app.person("bench@nist.gov", "US", &[Role::Evaluator]).await)
        .await;
    for name in ["arith_epochs.json", "arith_epochs.eval"] {
        import(&app, &evaluator, &exercise, &protocol, name, fixture(name)).await;
    }
    let started = Instant::now();
    let generated = generated_eval(samples);
    println!(
        "generated an .eval of {samples} samples in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    import(
        &app,
        &evaluator,
        &exercise,
        &protocol,
        "generated.eval",
        generated,
    )
    .await;
}
