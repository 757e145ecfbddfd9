//! Evaluation protocols: what the institutes agree to test, in versions that are
//! co-authored as drafts, frozen for review, and approved by every participant.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::ValidationError;

/// A protocol's URL-safe name: 3–64 lower-case letters, digits and single hyphens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProtocolSlug(String);

impl ProtocolSlug {
    pub fn parse(field: &str, value: &str) -> Result<Self, ValidationError> {
        let ok = (3..=64).contains(&value.len())
            && value.split('-').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            });
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(ValidationError::new(
                field,
                "must be 3 to 64 lower-case letters, digits and single hyphens, e.g. `cyber-uplift-ctf`",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProtocolSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RiskArea {
    ChemicalBiological,
    Cyber,
    Autonomy,
    SocietalHarms,
    Safeguards,
    Other,
}

impl RiskArea {
    pub const ALL: [RiskArea; 6] = [
        RiskArea::ChemicalBiological,
        RiskArea::Cyber,
        RiskArea::Autonomy,
        RiskArea::SocietalHarms,
        RiskArea::Safeguards,
        RiskArea::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RiskArea::ChemicalBiological => "chemical_biological",
            RiskArea::Cyber => "cyber",
            RiskArea::Autonomy => "autonomy",
            RiskArea::SocietalHarms => "societal_harms",
            RiskArea::Safeguards => "safeguards",
            RiskArea::Other => "other",
        }
    }
}

impl FromStr for RiskArea {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RiskArea::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| ValidationError::new("risk_area", "is not a risk area"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProtocolStatus {
    Active,
    /// No new versions or exercises; its history stays readable.
    Retired,
}

impl ProtocolStatus {
    /// A retired protocol takes no new versions.
    pub fn check_new_version(self) -> Result<(), VersionStateError> {
        match self {
            ProtocolStatus::Active => Ok(()),
            ProtocolStatus::Retired => Err(VersionStateError("the protocol is retired")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ProtocolStatus::Active => "active",
            ProtocolStatus::Retired => "retired",
        }
    }
}

impl FromStr for ProtocolStatus {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(ProtocolStatus::Active),
            "retired" => Ok(ProtocolStatus::Retired),
            _ => Err(ValidationError::new("status", "is not a protocol status")),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Protocol {
    pub id: Uuid,
    pub slug: String,
    pub title: String,
    pub risk_area: RiskArea,
    pub summary: String,
    pub lead_institute_id: Uuid,
    pub participants: Vec<Uuid>,
    pub status: ProtocolStatus,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProtocolVersion {
    pub id: Uuid,
    pub protocol_id: Uuid,
    pub number: i32,
    pub status: VersionStatus,
    pub content: ProtocolContent,
    pub content_sha256: Option<String>,
    pub based_on: Option<i32>,
    pub revision: i32,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub submitted_by: Option<Uuid>,
    pub submitted_at: Option<DateTime<Utc>>,
    pub decided_at: Option<DateTime<Utc>>,
    /// Everyone who edited it: its co-authors, who may not review it.
    pub editors: Vec<Uuid>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Review {
    pub id: Uuid,
    pub version_id: Uuid,
    pub reviewer_id: Uuid,
    /// The participating institute in whose capacity the reviewer reviewed.
    pub institute_id: Uuid,
    pub verdict: Verdict,
    pub comment: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Comment {
    pub id: Uuid,
    pub version_id: Uuid,
    pub parent_id: Option<Uuid>,
    pub author_id: Uuid,
    pub anchor: Option<String>,
    pub body: String,
    pub created_at: DateTime<Utc>,
}

/// Where a version stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VersionStatus {
    /// Being written; its co-authors edit it.
    Draft,
    /// Frozen, its content hash recorded, waiting for every participant's review.
    InReview,
    /// Approved by every participating institute; immutable forever.
    Approved,
    /// A reviewer asked for changes; authors start a new draft.
    ChangesRequested,
}

impl VersionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            VersionStatus::Draft => "draft",
            VersionStatus::InReview => "in_review",
            VersionStatus::Approved => "approved",
            VersionStatus::ChangesRequested => "changes_requested",
        }
    }
}

impl FromStr for VersionStatus {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "draft" => Ok(VersionStatus::Draft),
            "in_review" => Ok(VersionStatus::InReview),
            "approved" => Ok(VersionStatus::Approved),
            "changes_requested" => Ok(VersionStatus::ChangesRequested),
            _ => Err(ValidationError::new("status", "is not a version status")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Approve,
    RequestChanges,
}

impl Verdict {
    /// A review's comment: at most 10,000 characters, and a request for changes says
    /// what should change.
    pub fn check_comment(self, comment: &str) -> Result<(), ValidationError> {
        if comment.chars().count() > 10_000 {
            return Err(ValidationError::new(
                "comment",
                "must be at most 10000 characters",
            ));
        }
        if self == Verdict::RequestChanges && comment.trim().is_empty() {
            return Err(ValidationError::new("comment", "say what should change"));
        }
        Ok(())
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Approve => "approve",
            Verdict::RequestChanges => "request_changes",
        }
    }
}

impl FromStr for Verdict {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "approve" => Ok(Verdict::Approve),
            "request_changes" => Ok(Verdict::RequestChanges),
            _ => Err(ValidationError::new("verdict", "is not a verdict")),
        }
    }
}

/// Why a version cannot move as asked from where it stands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct VersionStateError(pub &'static str);

impl VersionStatus {
    pub fn check_edit(self) -> Result<(), VersionStateError> {
        match self {
            VersionStatus::Draft => Ok(()),
            VersionStatus::Approved => Err(VersionStateError("an approved version is immutable")),
            _ => Err(VersionStateError(
                "only a draft is edited; this version is frozen",
            )),
        }
    }

    pub fn check_submit(self) -> Result<(), VersionStateError> {
        match self {
            VersionStatus::Draft => Ok(()),
            _ => Err(VersionStateError("only a draft is submitted for review")),
        }
    }

    pub fn check_review(self) -> Result<(), VersionStateError> {
        match self {
            VersionStatus::InReview => Ok(()),
            _ => Err(VersionStateError("only a version in review is reviewed")),
        }
    }
}

/// Where a version stands after its reviews: any standing request for changes sends
/// it back; an approval from every participating institute approves it.
pub fn review_outcome<I: Copy + Ord>(
    participants: &[I],
    reviews: &[(I, Verdict)],
) -> VersionStatus {
    if reviews.iter().any(|(_, v)| *v == Verdict::RequestChanges) {
        return VersionStatus::ChangesRequested;
    }
    let approving: BTreeSet<I> = reviews
        .iter()
        .filter(|(_, v)| *v == Verdict::Approve)
        .map(|(institute, _)| *institute)
        .collect();
    if participants.iter().all(|p| approving.contains(p)) {
        VersionStatus::Approved
    } else {
        VersionStatus::InReview
    }
}

/// The content of a protocol version, as authors write it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "objective": "Measure uplift on capture-the-flag tasks",
    "tasks": [{
        "name": "ctf-easy", "description": "Twenty entry-level challenges",
        "dataset": {"name": "ctf-suite", "version": "2026.10", "sha256": null, "sample_count": 20},
        "harness": {"name": "inspect", "task_ref": "inspect_evals/ctf_easy"},
        "scorers": ["match"], "metrics": ["accuracy"], "epochs": 3
    }],
    "metrics": [{"name": "accuracy", "description": "Share of challenges solved", "higher_is_better": true,
                 "threshold": {"value": 0.5, "meaning": "above this, report to both institutes' leads"}}],
    "model_requirements": "Tool use enabled, 128k context",
    "notes": "Run on the public API endpoint."
}))]
pub struct ProtocolContent {
    /// What the protocol tests, and why.
    #[serde(default)]
    pub objective: String,
    #[serde(default)]
    pub tasks: Vec<Task>,
    #[serde(default)]
    pub metrics: Vec<Metric>,
    /// What the model under test must offer (access, context, tools …).
    #[serde(default)]
    pub model_requirements: String,
    /// Free text, Markdown.
    #[serde(default)]
    pub notes: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Task {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub dataset: Dataset,
    pub harness: Harness,
    /// The scorers that grade each sample.
    pub scorers: Vec<String>,
    /// Names of the version's metrics this task reports.
    pub metrics: Vec<String>,
    /// How many times each sample is run.
    pub epochs: u32,
    /// Generation settings every run must use, by the names of Inspect's
    /// `GenerateConfig` (`temperature`, `max_tokens`, `seed` …); those not named are free.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>, example = json!({"temperature": 0, "max_tokens": 4096}))]
    pub generation: Option<BTreeMap<String, serde_json::Value>>,
    /// The solver every run must use, as an Inspect log's plan names its steps: one
    /// solver (`generate`) or a chain joined by `, ` (`system_message, generate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub solver: Option<String>,
    /// Limits every run must use, by Inspect's names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    /// A field of each sample's metadata whose values are clusters of related samples (as
    /// Inspect's `stderr(cluster=…)`): comparisons then use the clustered standard error,
    /// unless the request names another field. Of an Inspect log's sample metadata, this
    /// field alone is kept, released with the results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
}

/// Limits of a sample's run, as Inspect's `eval` takes them; those not given are free.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Messages in a sample's conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub message_limit: Option<u64>,
    /// Tokens a sample may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub token_limit: Option<u64>,
    /// Seconds of clock time a sample may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub time_limit: Option<u64>,
    /// Seconds of working time (clock time less waiting) a sample may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub working_limit: Option<u64>,
}

impl Limits {
    /// Each limit given, by its name.
    pub fn named(&self) -> Vec<(&'static str, u64)> {
        [
            ("message_limit", self.message_limit),
            ("token_limit", self.token_limit),
            ("time_limit", self.time_limit),
            ("working_limit", self.working_limit),
        ]
        .into_iter()
        .filter_map(|(name, limit)| limit.map(|l| (name, l)))
        .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Dataset {
    pub name: String,
    pub version: String,
    /// sha256 of the dataset, lower-case hex.
    pub sha256: Option<String>,
    pub sample_count: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Harness {
    /// e.g. `inspect`.
    pub name: String,
    /// The harness's own name of the task, e.g. `inspect_evals/gpqa_diamond`.
    pub task_ref: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Metric {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub higher_is_better: bool,
    pub threshold: Option<Threshold>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    pub value: f64,
    /// What crossing it means.
    pub meaning: String,
}

/// Size limits of a version's content.
pub const MAX_TEXT: usize = 10_000;
pub const MAX_NOTES: usize = 50_000;
pub const MAX_NAME: usize = 100;
pub const MAX_TASKS: usize = 100;
pub const MAX_METRICS: usize = 100;
pub const MAX_SCORERS: usize = 20;
pub const MAX_EPOCHS: u32 = 1_000;
pub const MAX_SAMPLES: u64 = 100_000_000;
pub const MAX_SETTINGS: usize = 50;

impl ProtocolContent {
    /// The cluster field its tasks name, when they name one and only one.
    pub fn cluster(&self) -> Option<&str> {
        let mut named = self.tasks.iter().filter_map(|t| t.cluster.as_deref());
        let first = named.next()?;
        named.all(|c| c == first).then_some(first)
    }

    /// The rules every version obeys, draft or not: bounded sizes, names unique within
    /// the version, every metric a task names defined. Field paths are JSON pointers.
    pub fn validate(&self) -> Vec<ValidationError> {
        let mut errors = Vec::new();
        text(&mut errors, "/objective", &self.objective, MAX_TEXT);
        text(
            &mut errors,
            "/model_requirements",
            &self.model_requirements,
            MAX_TEXT,
        );
        text(&mut errors, "/notes", &self.notes, MAX_NOTES);
        if self.tasks.len() > MAX_TASKS {
            errors.push(ValidationError::new(
                "/tasks",
                format!("must hold at most {MAX_TASKS} tasks"),
            ));
        }
        if self.metrics.len() > MAX_METRICS {
            errors.push(ValidationError::new(
                "/metrics",
                format!("must hold at most {MAX_METRICS} metrics"),
            ));
        }
        let mut metric_names = BTreeSet::new();
        for (i, m) in self.metrics.iter().enumerate() {
            let at = format!("/metrics/{i}");
            name(&mut errors, &format!("{at}/name"), &m.name);
            if !metric_names.insert(m.name.as_str()) {
                errors.push(ValidationError::new(
                    format!("{at}/name"),
                    "names a metric twice",
                ));
            }
            text(
                &mut errors,
                &format!("{at}/description"),
                &m.description,
                MAX_TEXT,
            );
            if let Some(t) = &m.threshold {
                if !t.value.is_finite() {
                    errors.push(ValidationError::new(
                        format!("{at}/threshold/value"),
                        "must be a finite number",
                    ));
                }
                text(
                    &mut errors,
                    &format!("{at}/threshold/meaning"),
                    &t.meaning,
                    MAX_TEXT,
                );
            }
        }
        let mut task_names = BTreeSet::new();
        for (i, t) in self.tasks.iter().enumerate() {
            let at = format!("/tasks/{i}");
            name(&mut errors, &format!("{at}/name"), &t.name);
            if !task_names.insert(t.name.as_str()) {
                errors.push(ValidationError::new(
                    format!("{at}/name"),
                    "names a task twice",
                ));
            }
            text(
                &mut errors,
                &format!("{at}/description"),
                &t.description,
                MAX_TEXT,
            );
            name(&mut errors, &format!("{at}/dataset/name"), &t.dataset.name);
            name(
                &mut errors,
                &format!("{at}/dataset/version"),
                &t.dataset.version,
            );
            if let Some(sha) = &t.dataset.sha256
                && !(sha.len() == 64
                    && sha
                        .chars()
                        .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)))
            {
                errors.push(ValidationError::new(
                    format!("{at}/dataset/sha256"),
                    "must be 64 lower-case hex digits",
                ));
            }
            if t.dataset
                .sample_count
                .is_some_and(|n| n == 0 || n > MAX_SAMPLES)
            {
                errors.push(ValidationError::new(
                    format!("{at}/dataset/sample_count"),
                    format!("must be between 1 and {MAX_SAMPLES}"),
                ));
            }
            name(&mut errors, &format!("{at}/harness/name"), &t.harness.name);
            text_required(
                &mut errors,
                &format!("{at}/harness/task_ref"),
                &t.harness.task_ref,
                500,
            );
            if t.scorers.is_empty() || t.scorers.len() > MAX_SCORERS {
                errors.push(ValidationError::new(
                    format!("{at}/scorers"),
                    format!("must name 1 to {MAX_SCORERS} scorers"),
                ));
            }
            let mut scorers = BTreeSet::new();
            for (j, s) in t.scorers.iter().enumerate() {
                name(&mut errors, &format!("{at}/scorers/{j}"), s);
                if !scorers.insert(s.as_str()) {
                    errors.push(ValidationError::new(
                        format!("{at}/scorers/{j}"),
                        "names a scorer twice",
                    ));
                }
            }
            if t.metrics.len() > MAX_METRICS {
                errors.push(ValidationError::new(
                    format!("{at}/metrics"),
                    format!("must name at most {MAX_METRICS} metrics"),
                ));
            }
            for (j, m) in t.metrics.iter().enumerate() {
                if !self.metrics.iter().any(|metric| &metric.name == m) {
                    errors.push(ValidationError::new(
                        format!("{at}/metrics/{j}"),
                        format!("names the metric {m:?}, which this version does not define"),
                    ));
                }
            }
            if t.epochs == 0 || t.epochs > MAX_EPOCHS {
                errors.push(ValidationError::new(
                    format!("{at}/epochs"),
                    format!("must be between 1 and {MAX_EPOCHS}"),
                ));
            }
            if let Some(generation) = &t.generation {
                if generation.len() > MAX_SETTINGS {
                    errors.push(ValidationError::new(
                        format!("{at}/generation"),
                        format!("must name at most {MAX_SETTINGS} settings"),
                    ));
                }
                for (key, value) in generation {
                    let key_at = format!("{at}/generation/{}", pointer_token(key));
                    name(&mut errors, &key_at, key);
                    if value.is_null() || value.to_string().len() > MAX_TEXT {
                        errors.push(ValidationError::new(
                            key_at,
                            format!(
                                "must be a JSON value other than null, of at most {MAX_TEXT} bytes"
                            ),
                        ));
                    }
                }
            }
            if let Some(cluster) = &t.cluster {
                name(&mut errors, &format!("{at}/cluster"), cluster);
            }
            if let Some(solver) = &t.solver {
                text_required(&mut errors, &format!("{at}/solver"), solver, 500);
            }
            if let Some(limits) = &t.limits {
                for (limit, value) in limits.named() {
                    if value == 0 {
                        errors.push(ValidationError::new(
                            format!("{at}/limits/{limit}"),
                            "must be at least 1",
                        ));
                    }
                }
            }
        }
        errors
    }

    /// What a version needs before review: an objective, a task and a metric.
    pub fn validate_for_review(&self) -> Vec<ValidationError> {
        let mut errors = self.validate();
        if self.objective.trim().is_empty() {
            errors.push(ValidationError::new(
                "/objective",
                "is required before review",
            ));
        }
        if self.tasks.is_empty() {
            errors.push(ValidationError::new(
                "/tasks",
                "must hold at least one task before review",
            ));
        }
        if self.metrics.is_empty() {
            errors.push(ValidationError::new(
                "/metrics",
                "must hold at least one metric before review",
            ));
        }
        errors
    }

    /// sha256 of the canonical JSON of the content: object keys sorted, no whitespace.
    pub fn sha256(&self) -> String {
        let value = serde_json::to_value(self).unwrap_or_default();
        crate::canonical::sha256_hex([crate::canonical::to_bytes(&value).as_slice()])
    }
}

fn text(errors: &mut Vec<ValidationError>, field: &str, value: &str, max: usize) {
    if value.chars().count() > max {
        errors.push(ValidationError::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
}

fn text_required(errors: &mut Vec<ValidationError>, field: &str, value: &str, max: usize) {
    let n = value.trim().chars().count();
    if n == 0 || n > max {
        errors.push(ValidationError::new(
            field,
            format!("must be 1 to {max} characters"),
        ));
    }
}

fn name(errors: &mut Vec<ValidationError>, field: &str, value: &str) {
    let n = value.chars().count();
    if n == 0 || n > MAX_NAME || value.trim() != value || value.chars().any(char::is_control) {
        errors.push(ValidationError::new(
            field,
            format!("must be 1 to {MAX_NAME} characters, without surrounding spaces"),
        ));
    }
}

/// A key as one token of a JSON pointer (RFC 6901).
fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// One difference between two versions' content, at a JSON pointer.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Change {
    /// JSON pointer into the content.
    pub path: String,
    /// `added`, `removed` or `changed`.
    pub op: &'static str,
    pub from: Option<serde_json::Value>,
    pub to: Option<serde_json::Value>,
}

/// The field-by-field difference between two contents, as JSON pointers.
pub fn diff(from: &ProtocolContent, to: &ProtocolContent) -> Vec<Change> {
    let mut changes = Vec::new();
    diff_values(
        "",
        &serde_json::to_value(from).unwrap_or_default(),
        &serde_json::to_value(to).unwrap_or_default(),
        &mut changes,
    );
    changes
}

fn diff_values(path: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<Change>) {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = format!("{path}/{}", pointer_token(k));
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => diff_values(&p, u, v, out),
                    (Some(u), None) => out.push(Change {
                        path: p,
                        op: "removed",
                        from: Some(u.clone()),
                        to: None,
                    }),
                    (None, Some(v)) => out.push(Change {
                        path: p,
                        op: "added",
                        from: None,
                        to: Some(v.clone()),
                    }),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            for i in 0..x.len().max(y.len()) {
                let p = format!("{path}/{i}");
                match (x.get(i), y.get(i)) {
                    (Some(u), Some(v)) => diff_values(&p, u, v, out),
                    (Some(u), None) => out.push(Change {
                        path: p,
                        op: "removed",
                        from: Some(u.clone()),
                        to: None,
                    }),
                    (None, Some(v)) => out.push(Change {
                        path: p,
                        op: "added",
                        from: None,
                        to: Some(v.clone()),
                    }),
                    (None, None) => {}
                }
            }
        }
        (u, v) if u != v => out.push(Change {
            path: if path.is_empty() {
                "/".into()
            } else {
                path.to_owned()
            },
            op: "changed",
            from: Some(u.clone()),
            to: Some(v.clone()),
        }),
        _ => {}
    }
}

/// Whether `pointer` (RFC 6901) names something inside `content`.
pub fn pointer_exists(content: &ProtocolContent, pointer: &str) -> bool {
    pointer.is_empty()
        || serde_json::to_value(content)
            .ok()
            .is_some_and(|v| v.pointer(pointer).is_some())
}

#[cfg(test)]
mod tests;
