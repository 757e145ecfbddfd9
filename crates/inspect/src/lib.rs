//! Reads the logs Inspect (inspect-ai) writes, in both its formats: the JSON log, and the
//! `.eval` archive (a zip of `header.json`, `samples/*.json`, `reductions.json`,
//! `summaries.json` and `_journal/`, its entries compressed with zstd by current Inspect
//! and with deflate by older versions). What it answers is what the service keeps: the
//! eval header, the aggregate metrics Inspect computed, and every sample's scores.
//!
//! Pure and synchronous: it reads from any `Read + Seek`, within limits that keep a hostile
//! archive (a zip bomb) from expanding without bound.

use std::collections::BTreeMap;
use std::io::{BufReader, Read, Seek, SeekFrom};

use serde::Deserialize;
use serde_json::Value;

/// Which of Inspect's formats a log was in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Eval,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Eval => "eval",
        }
    }
}

/// A log, as the service keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Log {
    pub format: Format,
    pub header: Header,
    pub metrics: Vec<Metric>,
    pub scores: Vec<Score>,
    /// Samples read (each epoch of a sample counts once).
    pub samples: usize,
}

/// What the log says was run.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// `success`, `error`, `cancelled` or `started`.
    pub status: String,
    pub eval_id: String,
    pub run_id: Option<String>,
    pub task: String,
    pub task_version: String,
    pub model: String,
    pub created: Option<String>,
    pub dataset_name: Option<String>,
    pub dataset_samples: Option<i64>,
    pub sample_ids: Vec<String>,
    pub epochs: Option<i64>,
    /// The eval's configuration (`eval.config`: epochs, limits, error handling …).
    pub config: Value,
    pub inspect_version: Option<String>,
    /// The scorers that reported results, in the log's order.
    pub scorers: Vec<String>,
}

/// One aggregate metric Inspect computed: keyed by scorer (with `/reducer` when Inspect
/// reports one entry per reducer) and metric name.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub scorer: String,
    pub metric: String,
    pub value: f64,
    /// The scorer's `stderr` metric, beside each of its other metrics.
    pub stderr: Option<f64>,
    pub sample_count: Option<i64>,
}

/// One sample's score by one scorer in one epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    pub sample_id: String,
    pub epoch: i32,
    pub scorer: String,
    pub value: ScoreValue,
    pub answer: Option<String>,
    pub explanation: Option<String>,
    pub metadata: Option<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ScoreValue {
    Number(f64),
    Label(String),
}

impl ScoreValue {
    /// Inspect's letters as numbers (`C` 1, `I` 0, `P` 0.5, `N` 0), numbers as numbers,
    /// booleans as 1 and 0; other strings stay labels, and anything else its JSON text.
    /// `None` for a missing value (an unscored sample).
    pub fn from_json(value: &Value) -> Option<ScoreValue> {
        Some(match value {
            Value::Null => return None,
            Value::String(s) => match s.as_str() {
                "C" => ScoreValue::Number(1.0),
                "I" | "N" => ScoreValue::Number(0.0),
                "P" => ScoreValue::Number(0.5),
                _ => ScoreValue::Label(s.clone()),
            },
            Value::Bool(b) => ScoreValue::Number(if *b { 1.0 } else { 0.0 }),
            Value::Number(n) => match n.as_f64() {
                Some(f) => ScoreValue::Number(f),
                None => ScoreValue::Label(n.to_string()),
            },
            other => ScoreValue::Label(other.to_string()),
        })
    }
}

/// Bounds on what an archive may expand to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes all entries together may expand to.
    pub max_expanded: u64,
    /// How many times its compressed size an entry may expand to (beyond 1 MiB).
    pub max_ratio: u64,
    /// Bytes one entry (the header, one sample) may expand to.
    pub max_entry: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_expanded: 4 << 30,
            max_ratio: 200,
            max_entry: 64 << 20,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LogError {
    #[error("neither an Inspect JSON log nor an .eval archive")]
    NotALog,
    #[error("the log is not readable: {0}")]
    Corrupt(String),
    #[error(
        "the archive's entry {entry} expands far beyond its compressed size: refused as a zip bomb"
    )]
    Bomb { entry: String },
    #[error("the archive expands beyond {0} bytes")]
    TooLarge(u64),
}

/// Reads a log in either format, told apart by its first bytes: a zip's signature, or
/// (after a byte-order mark and whitespace) a JSON object.
pub fn read(mut input: impl Read + Seek, limits: Limits) -> Result<Log, LogError> {
    let mut start = [0u8; 64];
    let n = read_up_to(&mut input, &mut start)?;
    let start = &start[..n];
    let text = start.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(start);
    input
        .seek(SeekFrom::Start((start.len() - text.len()) as u64))
        .map_err(|e| LogError::Corrupt(e.to_string()))?;
    if start.starts_with(b"PK\x03\x04") {
        read_eval(input, limits)
    } else if text.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        read_json(input)
    } else {
        Err(LogError::NotALog)
    }
}

fn read_up_to(input: &mut impl Read, buf: &mut [u8]) -> Result<usize, LogError> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => return Err(LogError::Corrupt(e.to_string())),
        }
    }
    Ok(n)
}

fn read_json(input: impl Read) -> Result<Log, LogError> {
    let raw: RawLog = serde_json::from_reader(BufReader::new(input))
        .map_err(|e| LogError::Corrupt(format!("JSON log: {e}")))?;
    let mut scores = Vec::new();
    let samples = raw.samples.len();
    for sample in raw.samples {
        sample.scores_into(&mut scores)?;
    }
    Ok(Log {
        format: Format::Json,
        header: header(raw.status, raw.eval, raw.results.as_ref()),
        metrics: metrics(raw.results.as_ref()),
        scores,
        samples,
    })
}

fn read_eval(input: impl Read + Seek, limits: Limits) -> Result<Log, LogError> {
    let mut archive = zip::ZipArchive::new(input)
        .map_err(|e| LogError::Corrupt(format!(".eval archive: {e}")))?;
    let mut expanded = 0u64;
    let raw: RawHeader =
        serde_json::from_slice(&entry(&mut archive, "header.json", limits, &mut expanded)?)
            .map_err(|e| LogError::Corrupt(format!("header.json: {e}")))?;
    let mut names: Vec<String> = archive
        .file_names()
        .filter(|n| n.starts_with("samples/") && n.ends_with(".json"))
        .map(str::to_owned)
        .collect();
    names.sort();
    let mut scores = Vec::new();
    for name in &names {
        let sample: RawSample =
            serde_json::from_slice(&entry(&mut archive, name, limits, &mut expanded)?)
                .map_err(|e| LogError::Corrupt(format!("{name}: {e}")))?;
        sample.scores_into(&mut scores)?;
    }
    Ok(Log {
        format: Format::Eval,
        metrics: metrics(raw.results.as_ref()),
        header: header(raw.status, raw.eval, raw.results.as_ref()),
        scores,
        samples: names.len(),
    })
}

/// One entry's bytes, refused when it would expand beyond the limits (whatever its header
/// claims: the reader stops at the limit).
fn entry<R: Read + Seek>(
    archive: &mut zip::ZipArchive<R>,
    name: &str,
    limits: Limits,
    expanded: &mut u64,
) -> Result<Vec<u8>, LogError> {
    let file = archive.by_name(name).map_err(|e| match e {
        zip::result::ZipError::FileNotFound => {
            LogError::Corrupt(format!("the archive has no {name}"))
        }
        other => LogError::Corrupt(format!("{name}: {other}")),
    })?;
    let allowed = (file.compressed_size().max(1) * limits.max_ratio)
        .max(1 << 20)
        .min(limits.max_entry);
    if file.size() > allowed {
        return Err(LogError::Bomb {
            entry: name.to_owned(),
        });
    }
    let budget = limits.max_expanded.saturating_sub(*expanded);
    let cap = allowed.min(budget);
    // What the archive declares is not trusted for the allocation either.
    let mut bytes = Vec::with_capacity(file.size().min(cap).min(1 << 20) as usize);
    file.take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| LogError::Corrupt(format!("{name}: {e}")))?;
    if bytes.len() as u64 > cap {
        return Err(if cap == allowed {
            LogError::Bomb {
                entry: name.to_owned(),
            }
        } else {
            LogError::TooLarge(limits.max_expanded)
        });
    }
    *expanded += bytes.len() as u64;
    Ok(bytes)
}

fn header(status: String, eval: RawEval, results: Option<&RawResults>) -> Header {
    Header {
        status,
        eval_id: eval.eval_id,
        run_id: eval.run_id,
        task: eval.task,
        task_version: match eval.task_version {
            Value::String(s) => s,
            Value::Null => "0".to_owned(),
            other => other.to_string(),
        },
        model: eval.model,
        created: eval.created,
        dataset_name: eval.dataset.name,
        dataset_samples: eval.dataset.samples,
        sample_ids: eval.dataset.sample_ids.iter().map(id_text).collect(),
        epochs: eval.config.get("epochs").and_then(Value::as_i64),
        config: eval.config,
        inspect_version: eval.packages.get("inspect_ai").cloned(),
        // One entry per reducer names a scorer more than once.
        scorers: results
            .map(|r| {
                let mut names: Vec<String> = Vec::new();
                for s in &r.scores {
                    if !names.contains(&s.name) {
                        names.push(s.name.clone());
                    }
                }
                names
            })
            .unwrap_or_default(),
    }
}

fn metrics(results: Option<&RawResults>) -> Vec<Metric> {
    let Some(results) = results else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for summary in &results.scores {
        let scorer = match &summary.reducer {
            Some(reducer) => format!("{}/{reducer}", summary.name),
            None => summary.name.clone(),
        };
        let stderr = summary.metrics.get("stderr").and_then(|m| m.value);
        for (key, metric) in &summary.metrics {
            let Some(value) = metric.value else { continue };
            out.push(Metric {
                scorer: scorer.clone(),
                metric: metric.name.clone().unwrap_or_else(|| key.clone()),
                value,
                stderr: if key == "stderr" { None } else { stderr },
                sample_count: summary.scored_samples,
            });
        }
    }
    out
}

fn id_text(id: &Value) -> String {
    match id {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[derive(Deserialize)]
struct RawLog {
    #[serde(default)]
    status: String,
    eval: RawEval,
    #[serde(default)]
    results: Option<RawResults>,
    #[serde(default)]
    samples: Vec<RawSample>,
}

/// `header.json` of an archive: the log without its samples.
#[derive(Deserialize)]
struct RawHeader {
    #[serde(default)]
    status: String,
    eval: RawEval,
    #[serde(default)]
    results: Option<RawResults>,
}

#[derive(Deserialize)]
struct RawEval {
    eval_id: String,
    #[serde(default)]
    run_id: Option<String>,
    task: String,
    #[serde(default)]
    task_version: Value,
    model: String,
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    dataset: RawDataset,
    #[serde(default)]
    config: Value,
    #[serde(default)]
    packages: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
struct RawDataset {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    samples: Option<i64>,
    #[serde(default)]
    sample_ids: Vec<Value>,
}

#[derive(Deserialize)]
struct RawResults {
    #[serde(default)]
    scores: Vec<RawScoreSummary>,
}

#[derive(Deserialize)]
struct RawScoreSummary {
    name: String,
    #[serde(default)]
    reducer: Option<String>,
    #[serde(default)]
    scored_samples: Option<i64>,
    #[serde(default)]
    metrics: BTreeMap<String, RawMetric>,
}

#[derive(Deserialize)]
struct RawMetric {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    value: Option<f64>,
}

#[derive(Deserialize)]
struct RawSample {
    id: Value,
    epoch: i64,
    #[serde(default)]
    scores: BTreeMap<String, RawScore>,
    #[serde(default)]
    metadata: Option<Value>,
}

#[derive(Deserialize)]
struct RawScore {
    #[serde(default)]
    value: Value,
    #[serde(default)]
    answer: Option<String>,
    #[serde(default)]
    explanation: Option<String>,
}

impl RawSample {
    fn scores_into(self, out: &mut Vec<Score>) -> Result<(), LogError> {
        let sample_id = id_text(&self.id);
        let epoch = i32::try_from(self.epoch)
            .ok()
            .filter(|e| *e >= 0)
            .ok_or_else(|| {
                LogError::Corrupt(format!(
                    "sample {sample_id}: epoch {} is out of range",
                    self.epoch
                ))
            })?;
        let metadata = self
            .metadata
            .filter(|m| !matches!(m, Value::Object(o) if o.is_empty()));
        for (scorer, score) in self.scores {
            let Some(value) = ScoreValue::from_json(&score.value) else {
                continue;
            };
            out.push(Score {
                sample_id: sample_id.clone(),
                epoch,
                scorer,
                value,
                answer: score.answer,
                explanation: score.explanation,
                metadata: metadata.clone(),
            });
        }
        Ok(())
    }
}
