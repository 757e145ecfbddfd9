//! Reads the logs Inspect (inspect-ai) writes, in both its formats: the JSON log, and the
//! `.eval` archive (a zip of `header.json`, `samples/*.json`, `reductions.json`,
//! `summaries.json` and `_journal/`, its entries compressed with zstd by current Inspect
//! and with deflate by older versions). What it answers is what the service keeps: the
//! eval header, the aggregate metrics Inspect computed, and every sample's scores.
//!
//! It reads the log format's versions 1 and 2 (the current one), and the non-finite
//! numbers Inspect writes as bare `NaN` and `Infinity` (not strict JSON): `NaN` is
//! Inspect's sentinel for an unscored value, and neither is a number a statistic can use,
//! so both read as absent.
//!
//! Pure and synchronous: it reads from any `Read + Seek`, within limits that keep a hostile
//! archive (a zip bomb) from expanding without bound.

mod archive;
mod constants;

use std::collections::BTreeMap;
use std::io::{BufReader, Read, Seek, SeekFrom};

use serde::Deserialize;
use serde::de::DeserializeSeed;
use serde_json::Value;

use archive::{Directory, Entry};
use constants::Constants;

/// The versions of Inspect's log format this reader knows.
pub const LOG_VERSIONS: [i64; 2] = [1, 2];

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

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Json => "a JSON log",
            Format::Eval => "an .eval archive",
        })
    }
}

/// A log, as the service keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Log {
    pub format: Format,
    pub header: Header,
    pub metrics: Vec<Metric>,
    pub scores: Vec<Score>,
    /// Scores read: those in `scores`, or those handed on by [`read_each`].
    pub score_count: usize,
    /// Samples read (each epoch of a sample counts once), errored ones among them.
    pub samples: usize,
    /// Distinct samples of the dataset that the log holds, errored ones among them.
    pub distinct_samples: usize,
    /// Scores Inspect left unscored (`NaN`): not among `scores`, as Inspect leaves them
    /// out of its metrics.
    pub unscored: usize,
    /// Samples that ended in an error (with `fail_on_error=False`), which have no scores.
    pub errors: Vec<SampleError>,
    /// Errored samples read: those in `errors`, or those handed on by [`read_each`].
    pub error_count: usize,
    /// Each sample's value reduced over its epochs, per scorer and reducer.
    pub reductions: Vec<Reduction>,
    /// Reductions read: those in `reductions`, or those handed on by [`read_each`].
    pub reduction_count: usize,
}

/// What the log says was run.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// The log format's version: one of [`LOG_VERSIONS`].
    pub version: i64,
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
    /// The generation settings the model ran with: those given for the model
    /// (`eval.model_generate_config`) overlaid by the task's (`plan.config`), as Inspect's
    /// `Model.generate` merges them.
    pub generate_config: serde_json::Map<String, Value>,
    /// The solver: the plan's steps by name, joined by `, `.
    pub solver: Option<String>,
    pub inspect_version: Option<String>,
    /// The scorers that reported results, in the log's order: each once, whatever its
    /// reducers or the keys of its values.
    pub scorers: Vec<String>,
}

/// One aggregate metric Inspect computed: keyed by scorer (with `/reducer` when Inspect
/// reports one entry per reducer) and Inspect's own key for the metric, which tells apart
/// two metrics of the same name (`mean`, `mean2`).
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub scorer: String,
    /// Inspect's key for the metric.
    pub metric: String,
    /// The metric's name, which two of a scorer's metrics may share.
    pub name: String,
    pub value: f64,
    /// The scorer's `stderr` metric, beside each of its other metrics.
    pub stderr: Option<f64>,
    /// Samples the scorer scored.
    pub sample_count: Option<i64>,
    /// Samples it left unscored, which the metric leaves out.
    pub unscored_count: Option<i64>,
}

/// A sample that ended in an error.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleError {
    pub sample_id: String,
    pub epoch: i32,
    pub message: String,
}

/// One sample's value reduced over its epochs by one reducer.
#[derive(Debug, Clone, PartialEq)]
pub struct Reduction {
    /// The scorer, or the key of a dict-valued scorer's value.
    pub scorer: String,
    pub reducer: Option<String>,
    pub sample_id: String,
    pub value: ScoreValue,
}

/// What the reader hands on as it reads a log: each score, errored sample and reduction.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Score(Score),
    Error(SampleError),
    Reduction(Reduction),
}

/// One sample's score by one scorer in one epoch. A dict-valued score is one score per
/// key, named by the key, as Inspect names the metrics it computes from them.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    pub sample_id: String,
    pub epoch: i32,
    pub scorer: String,
    pub value: ScoreValue,
    pub answer: Option<String>,
    pub explanation: Option<String>,
    /// The score's metadata (a model grader's transcript, for instance).
    pub metadata: Option<Value>,
    /// The sample's metadata (Inspect's `TaskState.metadata` as the sample ended): its
    /// top-level entries that can name a cluster, as Inspect's `stderr(cluster=…)` reads
    /// them (numbers, booleans, null, and strings of at most 200 characters); `None`
    /// when there are none.
    pub sample_metadata: Option<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ScoreValue {
    Number(f64),
    Label(String),
}

impl ScoreValue {
    /// Numbers as numbers, booleans as 1 and 0, strings as labels (`C`, `I` …: their
    /// numbers are the service's one rule to give, the same for every path in), and
    /// anything else its JSON text. `None` for a missing value (an unscored sample).
    pub fn from_json(value: &Value) -> Option<ScoreValue> {
        Some(match value {
            Value::Null => return None,
            Value::String(s) => ScoreValue::Label(s.clone()),
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
    #[error("the log's format version is {0}; this service reads versions 1 and 2")]
    Version(String),
    /// The bytes are a log of the other format than the one declared.
    #[error("the body is {found}, declared as {declared}")]
    NotAsDeclared { declared: Format, found: Format },
    #[error(
        "the archive's entry {entry} expands far beyond its compressed size: refused as a zip bomb"
    )]
    Bomb { entry: String },
    #[error("the archive expands beyond {0} bytes")]
    TooLarge(u64),
}

/// Reads a log in either format, told apart by its first bytes: a zip's signature, or
/// (after a byte-order mark and whitespace) a JSON object.
pub fn read(input: impl Read + Seek, limits: Limits) -> Result<Log, LogError> {
    read_as(input, None, limits)
}

/// Reads a log declared to be in `declared` format (by its sender's media type): bytes of
/// the other format are refused before they are read.
pub fn read_as(
    input: impl Read + Seek,
    declared: Option<Format>,
    limits: Limits,
) -> Result<Log, LogError> {
    let (mut scores, mut errors, mut reductions) = (Vec::new(), Vec::new(), Vec::new());
    let mut log = read_each(input, declared, limits, &mut |item| {
        match item {
            Item::Score(score) => scores.push(score),
            Item::Error(error) => errors.push(error),
            Item::Reduction(reduction) => reductions.push(reduction),
        }
        Ok(())
    })?;
    log.scores = scores;
    log.errors = errors;
    log.reductions = reductions;
    Ok(log)
}

/// Reads a log as [`read_as`] does, but hands each score, errored sample and reduction to
/// `each` as it is read instead of keeping it: memory holds one sample (one entry of an
/// archive) at a time, whatever the log's size, and the answer's `scores`, `errors` and
/// `reductions` are empty (their counts are not). An error of `each` ends the reading,
/// and is answered.
pub fn read_each(
    mut input: impl Read + Seek,
    declared: Option<Format>,
    limits: Limits,
    each: &mut Each<'_>,
) -> Result<Log, LogError> {
    let mut start = [0u8; 64];
    let n = read_up_to(&mut input, &mut start)?;
    let start = &start[..n];
    let text = start.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(start);
    input
        .seek(SeekFrom::Start((start.len() - text.len()) as u64))
        .map_err(|e| LogError::Corrupt(e.to_string()))?;
    let found = if start.starts_with(b"PK\x03\x04") {
        Format::Eval
    } else if text.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        Format::Json
    } else {
        return Err(LogError::NotALog);
    };
    match declared {
        Some(declared) if declared != found => Err(LogError::NotAsDeclared { declared, found }),
        _ if found == Format::Eval => read_eval(input, limits, each),
        _ => read_json(input, each),
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

fn read_json(input: impl Read, each: &mut Each<'_>) -> Result<Log, LogError> {
    let mut tally = Tally::default();
    let mut stopped = None;
    let mut deserializer =
        serde_json::Deserializer::from_reader(Constants::new(BufReader::new(input)));
    let mut track = serde_path_to_error::Track::new();
    let read = TopLevel {
        tally: &mut tally,
        each,
        stopped: &mut stopped,
    }
    .deserialize(serde_path_to_error::Deserializer::new(
        &mut deserializer,
        &mut track,
    ));
    let top = read.map_err(|e| stream_error("JSON log", &mut stopped, track, e))?;
    deserializer
        .end()
        .map_err(|e| LogError::Corrupt(format!("JSON log: {e}")))?;
    let eval = top
        .eval
        .ok_or_else(|| LogError::Corrupt("JSON log: missing field `eval`".into()))?;
    let version = version(&top.version)?;
    Ok(Log::new(
        Format::Json,
        header(version, top.status, eval, top.plan, top.results.as_ref()),
        metrics(top.results.as_ref()),
        tally,
    ))
}

/// The error that ended a streamed reading: the sink's own when it stopped the reading,
/// else the JSON's, naming where it is.
fn stream_error(
    what: &str,
    stopped: &mut Option<LogError>,
    track: serde_path_to_error::Track,
    error: serde_json::Error,
) -> LogError {
    stopped
        .take()
        .unwrap_or_else(|| corrupt(what, &track.path().to_string(), error))
}

/// A JSON log's top level, read key by key so that its samples are handed on one at a
/// time as they are read, never held together.
struct TopLevel<'r, 'e> {
    tally: &'r mut Tally,
    each: &'r mut Each<'e>,
    /// The error `each` answered, which ended the reading.
    stopped: &'r mut Option<LogError>,
}

struct Top {
    version: Value,
    status: String,
    eval: Option<RawEval>,
    plan: Option<RawPlan>,
    results: Option<RawResults>,
}

impl<'de> serde::de::DeserializeSeed<'de> for TopLevel<'_, '_> {
    type Value = Top;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Top, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for TopLevel<'_, '_> {
    type Value = Top;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an Inspect log")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Top, A::Error> {
        let mut top = Top {
            version: current_version(),
            status: String::new(),
            eval: None,
            plan: None,
            results: None,
        };
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "version" => top.version = map.next_value()?,
                "status" => top.status = map.next_value()?,
                "eval" => top.eval = Some(map.next_value()?),
                "plan" => top.plan = map.next_value()?,
                "results" => top.results = map.next_value()?,
                "reductions" => map.next_value_seed(Reductions {
                    tally: &mut *self.tally,
                    each: &mut *self.each,
                    stopped: &mut *self.stopped,
                    window: None,
                })?,
                "samples" => map.next_value_seed(Samples {
                    tally: &mut *self.tally,
                    each: &mut *self.each,
                    stopped: &mut *self.stopped,
                })?,
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(top)
    }
}

/// A JSON log's `samples`, each handed on as it is read.
struct Samples<'r, 'e> {
    tally: &'r mut Tally,
    each: &'r mut Each<'e>,
    stopped: &'r mut Option<LogError>,
}

impl<'de> serde::de::DeserializeSeed<'de> for Samples<'_, '_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Samples<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list of samples")
    }

    /// `"samples": null` is no samples, as before.
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(sample) = seq.next_element::<RawSample>()? {
            if let Err(e) = sample.read_into(self.tally, self.each) {
                *self.stopped = Some(e);
                return Err(serde::de::Error::custom("the reading was stopped"));
            }
        }
        Ok(())
    }
}

/// How far the reading of a streamed archive entry has come, shared by its bytes
/// ([`Expanding`]) and the visitor that reads them, which marks where each element it
/// holds begins: no one element (a reduced sample, or the samples held for their scorer)
/// may pass the bound on an entry held whole, though the entry as a whole may.
#[derive(Default)]
struct Window {
    read: std::cell::Cell<u64>,
    start: std::cell::Cell<u64>,
}

impl Window {
    /// An element begins where the bytes read have come to.
    fn mark(window: Option<&Window>) {
        if let Some(window) = window {
            window.start.set(window.read.get());
        }
    }
}

/// A log's `reductions` (a list of one scorer's and reducer's values, one a sample), each
/// sample's value handed on as it is read: as Inspect writes them, a reduction names its
/// scorer and reducer before its samples. Where the samples come before the scorer (keys
/// sorted by name, as `jq -S` writes them), they are held until the scorer is known; a
/// reducer named after samples already handed on is refused.
struct Reductions<'r, 'e> {
    tally: &'r mut Tally,
    each: &'r mut Each<'e>,
    stopped: &'r mut Option<LogError>,
    window: Option<&'r Window>,
}

impl<'de> serde::de::DeserializeSeed<'de> for Reductions<'_, '_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Reductions<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list of reductions")
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(OneReduction {
                tally: &mut *self.tally,
                each: &mut *self.each,
                stopped: &mut *self.stopped,
                window: self.window,
            })?
            .is_some()
        {}
        Ok(())
    }
}

/// One of a log's `reductions`: its scorer and reducer, then its samples.
struct OneReduction<'r, 'e> {
    tally: &'r mut Tally,
    each: &'r mut Each<'e>,
    stopped: &'r mut Option<LogError>,
    window: Option<&'r Window>,
}

impl<'de> serde::de::DeserializeSeed<'de> for OneReduction<'_, '_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for OneReduction<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a reduction")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        use serde::de::Error;
        let mut scorer: Option<String> = None;
        let mut reducer: Option<String> = None;
        let mut held: Option<Vec<RawReducedSample>> = None;
        let mut handed_on = false;
        loop {
            // Samples held for their scorer count as one element, whatever follows them.
            if held.is_none() {
                Window::mark(self.window);
            }
            let Some(key) = map.next_key::<String>()? else {
                break;
            };
            match key.as_str() {
                "scorer" => {
                    let named: String = map.next_value()?;
                    if handed_on && scorer.as_deref() != Some(named.as_str()) {
                        return Err(A::Error::custom(
                            "`scorer` comes again after `samples`, naming another",
                        ));
                    }
                    scorer = Some(named);
                }
                "reducer" => {
                    let named: Option<String> = map.next_value()?;
                    if handed_on && named != reducer {
                        return Err(A::Error::custom(
                            "`reducer` comes after `samples`, which were read as reduced by none",
                        ));
                    }
                    reducer = named;
                }
                "samples" if handed_on || held.is_some() => {
                    return Err(A::Error::duplicate_field("samples"));
                }
                "samples" => match scorer.as_deref() {
                    Some(scorer) => {
                        handed_on = true;
                        map.next_value_seed(Reduced {
                            scorer,
                            reducer: reducer.as_deref(),
                            tally: &mut *self.tally,
                            each: &mut *self.each,
                            stopped: &mut *self.stopped,
                            window: self.window,
                        })?;
                    }
                    None => held = Some(map.next_value()?),
                },
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        let Some(scorer) = scorer.as_deref() else {
            return Err(A::Error::missing_field("scorer"));
        };
        let mut reduced = Reduced {
            scorer,
            reducer: reducer.as_deref(),
            tally: self.tally,
            each: self.each,
            stopped: self.stopped,
            window: self.window,
        };
        for sample in held.into_iter().flatten() {
            reduced.hand_on(sample)?;
        }
        Ok(())
    }
}

/// One reduction's `samples`, each handed on as it is read.
struct Reduced<'r, 'e> {
    scorer: &'r str,
    reducer: Option<&'r str>,
    tally: &'r mut Tally,
    each: &'r mut Each<'e>,
    stopped: &'r mut Option<LogError>,
    window: Option<&'r Window>,
}

impl<'de> serde::de::DeserializeSeed<'de> for Reduced<'_, '_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Reduced<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list of reduced samples")
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        while let Some(sample) = {
            Window::mark(self.window);
            seq.next_element::<RawReducedSample>()?
        } {
            self.hand_on(sample)?;
        }
        Ok(())
    }
}

impl Reduced<'_, '_> {
    /// Hands on a sample's reduced value (one for each key of a dict's).
    fn hand_on<E: serde::de::Error>(&mut self, sample: RawReducedSample) -> Result<(), E> {
        let sample_id = id_text(&sample.sample_id);
        for (key, value) in split(&sample.value) {
            let Some(value) = ScoreValue::from_json(value) else {
                continue;
            };
            self.tally.reductions += 1;
            let reduction = Reduction {
                scorer: key.unwrap_or(self.scorer).to_owned(),
                reducer: self.reducer.map(str::to_owned),
                sample_id: sample_id.clone(),
                value,
            };
            if let Err(e) = (self.each)(Item::Reduction(reduction)) {
                *self.stopped = Some(e);
                return Err(E::custom("the reading was stopped"));
            }
        }
        Ok(())
    }
}

/// The format version a log names, one this reader knows.
fn version(raw: &Value) -> Result<i64, LogError> {
    raw.as_i64()
        .filter(|v| raw.is_i64() && LOG_VERSIONS.contains(v))
        .ok_or_else(|| LogError::Version(raw.to_string()))
}

/// A log that names no version is of the current one, as Inspect reads it.
fn current_version() -> Value {
    Value::from(2)
}

/// What the reader counts of a log's samples as it passes them.
#[derive(Default)]
struct Tally {
    scores: usize,
    samples: usize,
    /// The samples' ids, as 64-bit hashes: 8 bytes a sample, not the ids themselves.
    seen: std::collections::HashSet<u64>,
    unscored: usize,
    errors: usize,
    reductions: usize,
}

fn id_hash(id: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut hasher);
    hasher.finish()
}

/// Where the reader hands each item it reads.
type Each<'a> = dyn FnMut(Item) -> Result<(), LogError> + 'a;

impl Log {
    fn new(format: Format, header: Header, metrics: Vec<Metric>, tally: Tally) -> Self {
        Log {
            format,
            header,
            metrics,
            scores: Vec::new(),
            score_count: tally.scores,
            samples: tally.samples,
            distinct_samples: tally.seen.len(),
            unscored: tally.unscored,
            errors: Vec::new(),
            error_count: tally.errors,
            reductions: Vec::new(),
            reduction_count: tally.reductions,
        }
    }
}

fn read_eval(
    mut input: impl Read + Seek,
    limits: Limits,
    each: &mut Each<'_>,
) -> Result<Log, LogError> {
    let directory = Directory::find(&mut input)?;
    let known = directory.known(&mut input)?;
    let mut expanded = 0u64;
    let head = known
        .header
        .ok_or_else(|| LogError::Corrupt("the archive has no header.json".into()))?;
    let raw: RawHeader = parse(
        "header.json",
        &entry(&mut input, &directory, &head, limits, &mut expanded)?,
    )?;
    let version = version(&raw.version)?;
    // Freeing the names' table and growing another for the ids would leave the allocator
    // holding both (glibc raises its mmap threshold past a large block freed).
    let mut tally = Tally {
        seen: known.spare,
        ..Tally::default()
    };
    // In the archive's order, not sorted by name: no name comes twice (`known` refused
    // that), and where the scores go, a key's last score wins whatever the order.
    let mut records = directory.records();
    while let Some(record) = records.next(&mut input)? {
        if record.is_sample() {
            let bytes = entry(&mut input, &directory, &record, limits, &mut expanded)?;
            let sample: RawSample = parse(&record.name(), &bytes)?;
            sample.read_into(&mut tally, each)?;
        }
    }
    if let Some(reductions) = &known.reductions {
        // Streamed, not held: one reduction a sample and scorer makes it as large as the
        // samples' scores together.
        let window = Window::default();
        let mut expanding = Expanding::open(
            &mut input,
            &directory,
            reductions,
            limits,
            u64::MAX,
            expanded,
        )?
        .within(&window, limits.max_entry);
        let mut stopped = None;
        let read = {
            let mut deserializer = serde_json::Deserializer::from_reader(Constants::new(
                BufReader::new(&mut expanding),
            ));
            let mut track = serde_path_to_error::Track::new();
            Reductions {
                tally: &mut tally,
                each,
                stopped: &mut stopped,
                window: Some(&window),
            }
            .deserialize(serde_path_to_error::Deserializer::new(
                &mut deserializer,
                &mut track,
            ))
            .and_then(|()| deserializer.end())
            .map_err(|e| stream_error("reductions.json", &mut stopped, track, e))
        };
        if let Err(e) = read {
            return Err(expanding.failed.take().unwrap_or(e));
        }
        expanding.finish()?;
    }
    Ok(Log::new(
        Format::Eval,
        header(
            version,
            raw.status,
            raw.eval,
            raw.plan,
            raw.results.as_ref(),
        ),
        metrics(raw.results.as_ref()),
        tally,
    ))
}

/// An archive entry's JSON, non-finite numbers read as absent.
fn parse<T: serde::de::DeserializeOwned>(name: &str, bytes: &[u8]) -> Result<T, LogError> {
    // Made strict JSON first, then parsed from memory: a slice parses several times faster
    // than a reader does.
    let mut strict = Vec::with_capacity(bytes.len());
    Constants::new(bytes)
        .read_to_end(&mut strict)
        .map_err(|e| LogError::Corrupt(format!("{name}: {e}")))?;
    from_json(name, &strict)
}

/// A JSON error, naming the field where it is.
fn corrupt(what: &str, path: &str, error: impl std::fmt::Display) -> LogError {
    LogError::Corrupt(if path == "." || path.is_empty() {
        format!("{what}: {error}")
    } else {
        format!("{what}: {path}: {error}")
    })
}

/// JSON as `T`; an error names the field where it is (`eval.eval_id`, `samples[3].epoch`).
fn from_json<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, LogError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        corrupt(what, &path, e.into_inner())
    })?;
    deserializer
        .end()
        .map_err(|e| LogError::Corrupt(format!("{what}: {e}")))?;
    Ok(value)
}

/// One entry's bytes, held in memory: at most `max_entry` (see [`Expanding`]).
fn entry<R: Read + Seek>(
    input: &mut R,
    directory: &Directory,
    entry: &Entry,
    limits: Limits,
    expanded: &mut u64,
) -> Result<Vec<u8>, LogError> {
    // What the archive declares is not trusted for the allocation either.
    let mut bytes = Vec::with_capacity(entry.size.min(limits.max_entry).min(1 << 20) as usize);
    let mut expanding =
        Expanding::open(input, directory, entry, limits, limits.max_entry, *expanded)?;
    if let Err(e) = expanding.read_to_end(&mut bytes) {
        return Err(expanding.failure(e));
    }
    *expanded += expanding.finish()?;
    Ok(bytes)
}

/// An entry's bytes as they expand, checked as they pass: refused beyond what the limits
/// allow it (whatever its record claims: the reading stops there), and at their end when
/// they are not what its record says (their size, their CRC-32).
struct Expanding<'a> {
    bytes: Box<dyn Read + 'a>,
    entry: &'a Entry,
    /// Bytes it may expand to: what its compressed size allows, or what is left of the
    /// archive's budget.
    cap: u64,
    /// Whether the cap is the entry's own (a bomb) rather than the archive's budget.
    own_cap: bool,
    max_expanded: u64,
    read: u64,
    crc: crc32fast::Hasher,
    /// Whether the end was reached and checked.
    ended: bool,
    /// Where the element being read began, and how large one may be.
    window: Option<(&'a Window, u64)>,
    /// Why the bytes were refused: an io error cannot carry it through a JSON reader.
    failed: Option<LogError>,
}

impl<'a> Expanding<'a> {
    fn open<R: Read + Seek>(
        input: &'a mut R,
        directory: &Directory,
        entry: &'a Entry,
        limits: Limits,
        max_entry: u64,
        expanded: u64,
    ) -> Result<Self, LogError> {
        let allowed = entry
            .compressed
            .max(1)
            .saturating_mul(limits.max_ratio)
            .max(1 << 20)
            .min(max_entry);
        if entry.size > allowed {
            return Err(LogError::Bomb {
                entry: entry.name().into_owned(),
            });
        }
        let cap = allowed.min(limits.max_expanded.saturating_sub(expanded));
        Ok(Expanding {
            bytes: directory.open(input, entry)?,
            entry,
            cap,
            own_cap: cap == allowed,
            max_expanded: limits.max_expanded,
            read: 0,
            crc: crc32fast::Hasher::new(),
            ended: false,
            window: None,
            failed: None,
        })
    }

    /// Bounds each element of the entry, as `window` marks them, to `max_element` bytes.
    fn within(self, window: &'a Window, max_element: u64) -> Self {
        Expanding {
            window: Some((window, max_element)),
            ..self
        }
    }

    /// What a reading that failed with `error` answers.
    fn failure(&mut self, error: std::io::Error) -> LogError {
        self.failed
            .take()
            .unwrap_or_else(|| LogError::Corrupt(format!("{}: {error}", self.entry.name())))
    }

    /// Reads what is left, and answers the bytes the entry expanded to.
    fn finish(mut self) -> Result<u64, LogError> {
        if let Err(e) = std::io::copy(&mut self, &mut std::io::sink()) {
            return Err(self.failure(e));
        }
        Ok(self.read)
    }

    fn refuse(&mut self, why: LogError) -> std::io::Error {
        let error = std::io::Error::other(why.to_string());
        self.failed = Some(why);
        error
    }
}

impl Read for Expanding<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() || self.ended {
            return Ok(0);
        }
        let n = self.bytes.read(buf)?;
        self.read += n as u64;
        if let Some((window, max_element)) = self.window {
            window.read.set(self.read);
            if self.read - window.start.get() > max_element {
                let why = LogError::Corrupt(format!(
                    "{}: one of its elements is larger than {max_element} bytes, more than \
                     this service holds at once",
                    self.entry.name()
                ));
                return Err(self.refuse(why));
            }
        }
        if self.read > self.cap {
            let why = if self.own_cap {
                LogError::Bomb {
                    entry: self.entry.name().into_owned(),
                }
            } else {
                LogError::TooLarge(self.max_expanded)
            };
            return Err(self.refuse(why));
        }
        if n == 0 {
            self.ended = true;
            if let Err(why) = self.entry.check(self.read, self.crc.clone().finalize()) {
                return Err(self.refuse(why));
            }
        } else {
            self.crc.update(&buf[..n]);
        }
        Ok(n)
    }
}

fn header(
    version: i64,
    status: String,
    eval: RawEval,
    plan: Option<RawPlan>,
    results: Option<&RawResults>,
) -> Header {
    let plan = plan.unwrap_or_default();
    let set = |config: Option<&Value>| {
        config
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Vec<_>>()
    };
    // As Inspect's `Model.generate` merges them: the task's over the model's.
    let mut generate_config = serde_json::Map::new();
    generate_config.extend(set(Some(&eval.model_generate_config)));
    generate_config.extend(set(plan.get("config")));
    let steps: Vec<&str> = plan
        .get("steps")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|step| step.get("solver").and_then(Value::as_str))
        .collect();
    Header {
        generate_config,
        solver: (!steps.is_empty()).then(|| steps.join(", ")),
        version,
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
        // One entry per reducer, or per key of a dict-valued scorer, names a scorer more
        // than once.
        scorers: results
            .map(|r| {
                let mut names: Vec<String> = Vec::new();
                for s in &r.scores {
                    let scorer = s.scorer.as_ref().unwrap_or(&s.name);
                    if !names.contains(scorer) {
                        names.push(scorer.clone());
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
                metric: key.clone(),
                name: metric.name.clone().unwrap_or_else(|| key.clone()),
                value,
                stderr: if key == "stderr" { None } else { stderr },
                sample_count: summary.scored_samples,
                unscored_count: summary.unscored_samples,
            });
        }
    }
    out
}

/// A value as Inspect's metrics see it: a dict's entries by key, anything else itself.
fn split(value: &Value) -> Vec<(Option<&str>, &Value)> {
    match value {
        Value::Object(entries) => entries.iter().map(|(k, v)| (Some(k.as_str()), v)).collect(),
        other => vec![(None, other)],
    }
}

fn id_text(id: &Value) -> String {
    match id {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `header.json` of an archive: the log without its samples.
#[derive(Deserialize)]
struct RawHeader {
    #[serde(default = "current_version")]
    version: Value,
    #[serde(default)]
    status: String,
    eval: RawEval,
    #[serde(default)]
    plan: Option<RawPlan>,
    #[serde(default)]
    results: Option<RawResults>,
}

/// A log's `plan` (its solver steps and the task's generation settings), read leniently:
/// what it says is recorded, not required.
type RawPlan = Value;

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
    model_generate_config: Value,
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
    /// The scorer that made the entry; `name` is a dict-valued scorer's key.
    #[serde(default)]
    scorer: Option<String>,
    #[serde(default)]
    reducer: Option<String>,
    #[serde(default)]
    scored_samples: Option<i64>,
    #[serde(default)]
    unscored_samples: Option<i64>,
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
    scores: Option<BTreeMap<String, RawScore>>,
    #[serde(default)]
    error: Option<RawError>,
    #[serde(default)]
    metadata: Option<Value>,
}

#[derive(Deserialize)]
struct RawError {
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct RawScore {
    #[serde(default)]
    value: Value,
    #[serde(default)]
    answer: Option<String>,
    #[serde(default)]
    explanation: Option<String>,
    #[serde(default)]
    metadata: Option<Value>,
}

#[derive(Deserialize)]
struct RawReducedSample {
    #[serde(default)]
    value: Value,
    #[serde(default)]
    sample_id: Value,
}

impl RawSample {
    /// Hands the sample's scores to `each`, and counts it (and its error) in `tally`.
    fn read_into(self, tally: &mut Tally, each: &mut Each<'_>) -> Result<(), LogError> {
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
        tally.samples += 1;
        tally.seen.insert(id_hash(&sample_id));
        if let Some(error) = self.error {
            tally.errors += 1;
            each(Item::Error(SampleError {
                sample_id: sample_id.clone(),
                epoch,
                message: error.message,
            }))?;
        }
        let sample_metadata = self.metadata.as_ref().and_then(scalar_entries);
        for (scorer, score) in self.scores.unwrap_or_default() {
            let metadata = score
                .metadata
                .filter(|m| !matches!(m, Value::Object(o) if o.is_empty()));
            for (key, value) in split(&score.value) {
                let Some(value) = ScoreValue::from_json(value) else {
                    tally.unscored += 1;
                    continue;
                };
                tally.scores += 1;
                each(Item::Score(Score {
                    sample_id: sample_id.clone(),
                    epoch,
                    scorer: key.unwrap_or(&scorer).to_owned(),
                    value,
                    answer: score.answer.clone(),
                    explanation: score.explanation.clone(),
                    metadata: metadata.clone(),
                    sample_metadata: sample_metadata.clone(),
                }))?;
            }
        }
        Ok(())
    }
}

/// An object's top-level entries that can name a cluster, as an object; `None` when it
/// has none. A long text is no cluster's name, and would cost its size on every score.
fn scalar_entries(metadata: &Value) -> Option<Value> {
    let kept: serde_json::Map<String, Value> = metadata
        .as_object()?
        .iter()
        .filter(|(_, v)| match v {
            Value::Array(_) | Value::Object(_) => false,
            Value::String(text) => text.chars().count() <= 200,
            _ => true,
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    (!kept.is_empty()).then_some(Value::Object(kept))
}
