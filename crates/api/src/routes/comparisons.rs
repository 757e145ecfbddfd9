//! Paired comparisons of two runs of one protocol version: do two institutes get the same
//! answer, by how much do they differ, and how sure can they be.

use axum::Json;
use axum::extract::State;
use jointeval_domain::ValidationError;
use jointeval_domain::comparison::{
    self, AgreementComparison, NumericComparison, Reducer, Unmatched, check_pair,
};
use jointeval_domain::conformance::Deviation;
use jointeval_domain::run::Run;
use jointeval_store::StoreError;
use jointeval_store::comparisons::{
    DisagreementKey, DisagreementRow, Selection, Transcripts, UNMATCHED_LISTED,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::access;
use crate::auth::Caller;
use crate::extract::{ApiPath, ApiQuery};
use crate::pagination::{ListQuery, Page, PageQuery, key_text};
use crate::problem::{ApiError, Problem};
use crate::views::Codes;
use crate::work::Work;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ComparisonQuery {
    /// One run; differences are `a − b`.
    pub a: Uuid,
    /// The other run, of the same protocol version.
    pub b: Uuid,
    /// The scorer whose values are compared.
    #[param(min_length = 1, max_length = 200)]
    pub scorer: String,
    /// Only this epoch's scores. Without it (and without `reducer`), scores pair by
    /// sample and epoch.
    #[param(minimum = 0, maximum = 100_000)]
    pub epoch: Option<i32>,
    /// Reduce each sample's epochs to one value first, then pair by sample.
    pub reducer: Option<Reducer>,
    /// A field of the samples' metadata (`sample_metadata`) whose values are clusters: the
    /// interval and the test then use the clustered standard error. Without it, the
    /// protocol version's cluster field, if its tasks name one.
    #[param(min_length = 1, max_length = 200)]
    pub cluster: Option<String>,
}

impl ComparisonQuery {
    fn validate(&self) -> Result<(), ValidationError> {
        validate_texts(&[
            ("scorer", Some(&self.scorer)),
            ("cluster", self.cluster.as_deref()),
        ])?;
        validate_epoch(self.epoch)
    }
}

/// The bounds the contract states of a comparison's text parameters.
fn validate_texts(texts: &[(&str, Option<&str>)]) -> Result<(), ValidationError> {
    for (field, text) in texts {
        if text.is_some_and(|t| t.is_empty() || t.chars().count() > 200) {
            return Err(ValidationError::new(*field, "must be 1 to 200 characters"));
        }
    }
    Ok(())
}

fn validate_epoch(epoch: Option<i32>) -> Result<(), ValidationError> {
    if epoch.is_some_and(|e| !(0..=100_000).contains(&e)) {
        return Err(ValidationError::new(
            "epoch",
            "must be between 0 and 100000",
        ));
    }
    Ok(())
}

/// A compared run, as cited: its results digest names exactly the scores compared.
#[derive(Debug, Serialize, ToSchema)]
pub struct ComparedRun {
    pub run_id: Uuid,
    /// The executing institute's code.
    pub institute: String,
    pub digest: Option<String>,
    /// Scores of the selection in this run.
    pub scored: i64,
    /// The run's comparability verdict (as the run's `comparable`): a run that deviates
    /// from the protocol version is compared all the same, for whoever asks.
    pub comparable: Option<bool>,
    /// How the run deviates from the protocol version.
    pub deviations: Vec<Deviation>,
}

impl ComparedRun {
    fn new(run: &Run, codes: &Codes, scored: i64) -> Self {
        Self {
            run_id: run.id,
            institute: codes.of(run.institute_id),
            digest: run.digest.clone(),
            scored,
            comparable: run.comparable(),
            deviations: run.deviations.clone(),
        }
    }
}

/// How the scores were paired.
#[derive(Debug, Serialize, ToSchema)]
pub struct Pairing {
    /// `sample_epoch`, or `sample` when a reducer reduced the epochs.
    pub by: PairedBy,
    pub epoch: Option<i32>,
    pub reducer: Option<Reducer>,
    pub cluster: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PairedBy {
    SampleEpoch,
    Sample,
}

/// The samples scored in one run only.
#[derive(Debug, Serialize, ToSchema)]
pub struct UnmatchedSamples {
    pub a_only: i64,
    pub b_only: i64,
    /// The first of them by (sample id, epoch), at most 100 of each.
    pub a_only_samples: Vec<Unmatched>,
    pub b_only_samples: Vec<Unmatched>,
}

/// The paired comparison of two runs' scores.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "protocol_id": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d20", "protocol_version": 2, "scorer": "match",
    "a": {"run_id": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d60", "institute": "US",
          "digest": "9f2c0c1d6b0e4d8a5a7f3e21c4b6d8e0f1a2b3c4d5e6f708192a3b4c5d6e7f80", "scored": 150,
          "comparable": true, "deviations": []},
    "b": {"run_id": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d61", "institute": "UK",
          "digest": "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9", "scored": 150,
          "comparable": true, "deviations": []},
    "pairing": {"by": "sample_epoch", "epoch": null, "reducer": null, "cluster": null},
    "matched": 150,
    "unmatched": {"a_only": 0, "b_only": 0, "a_only_samples": [], "b_only_samples": []},
    "numeric": {"pairs": 150, "mean_a": 0.62, "mean_b": 0.5533333333333333,
                "mean_difference": 0.06666666666666667, "paired_stderr": 0.0308, "unpaired_stderr": 0.0569,
                "clustered_stderr": null, "clusters": null, "stderr": "paired", "degrees_of_freedom": 149,
                "confidence_interval": {"level": 0.95, "lower": 0.0058, "upper": 0.1275},
                "t_statistic": 2.1636, "p_value": 0.0321},
    "agreement": {"pairs": 150, "agreement_rate": 0.8667, "cohen_kappa": 0.7241,
                  "mcnemar": {"first_in_a_second_in_b": 5, "second_in_a_first_in_b": 15, "statistic": 5, "p_value": 0.0414},
                  "krippendorff_alpha": {"nominal": 0.7222, "ordinal": 0.7222, "interval": 0.7222},
                  "categories": [{"label": "I", "number": 0.0}, {"label": "C", "number": 1.0}],
                  "table": [{"a": "I", "b": "I", "count": 52}, {"a": "I", "b": "C", "count": 5},
                            {"a": "C", "b": "I", "count": 15}, {"a": "C", "b": "C", "count": 78}]},
    "notes": []}))]
pub struct Comparison {
    pub protocol_id: Uuid,
    pub protocol_version: i32,
    pub scorer: String,
    pub a: ComparedRun,
    pub b: ComparedRun,
    pub pairing: Pairing,
    /// Pairs scored in both runs.
    pub matched: i64,
    pub unmatched: UnmatchedSamples,
    /// Over the matched pairs whose two values are numbers; absent without any.
    pub numeric: Option<NumericComparison>,
    /// Over the matched pairs, their values read as categories; absent without any, or
    /// when the values are too many to be categories.
    pub agreement: Option<AgreementComparison>,
    /// Why a statistic is absent, or what to know in reading one.
    pub notes: Vec<String>,
}

/// Compares two runs of one protocol version, sample by sample: both means, the paired
/// difference with its standard errors (paired, unpaired for contrast, clustered when a
/// cluster field is named), a 95 % t interval and the paired test; and the agreement of
/// their values as categories (Cohen's kappa, McNemar's test, Krippendorff's alpha).
/// Computed over the scores of exactly the two runs, both of which the caller may read.
#[utoipa::path(
    get, path = "/v1/comparisons", tag = "comparisons",
    security(("bearer" = [])),
    params(ComparisonQuery),
    responses(
        (status = 200, description = "The comparison", body = Comparison),
        (status = 404, description = "One or both runs are not runs the caller may read (the answer does not say which)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The runs ran different protocol versions, one has not finished, or their scores are too large to compute on in double precision", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A parameter is invalid", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn compare_runs(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ComparisonQuery>,
) -> Result<Json<Comparison>, ApiError> {
    query.validate()?;
    let mut work = Work::begin(&state, &caller).await?;
    let (a, b) = access::run_pair(&mut work, query.a, query.b).await?;
    check_pair(&a, &b)?;
    let codes = work.codes().await?;
    let selected = Selected {
        scorer: &query.scorer,
        epoch: query.epoch,
        reducer: query.reducer,
        cluster: query.cluster.as_deref(),
    };
    let compared = compare(&mut work, &a, &b, &selected, &codes).await?;
    work.commit().await?;
    Ok(Json(compared))
}

/// What of two runs' scores is compared, and how they pair.
struct Selected<'a> {
    scorer: &'a str,
    epoch: Option<i32>,
    reducer: Option<Reducer>,
    cluster: Option<&'a str>,
}

/// The comparison of two runs that [`check_pair`] passed.
async fn compare(
    work: &mut Work<'_>,
    a: &Run,
    b: &Run,
    selected: &Selected<'_>,
    codes: &Codes,
) -> Result<Comparison, ApiError> {
    let mut notes = Vec::new();
    // Without a cluster field asked for, the protocol version's, if it names one.
    let cluster = match selected.cluster {
        Some(asked) => Some(asked.to_owned()),
        None => {
            let version = jointeval_store::protocols::get_version(
                work,
                a.protocol_id,
                a.protocol_version,
                false,
            )
            .await?
            .ok_or_else(|| crate::auth::not_found("protocol version"))?;
            let named = version.content.cluster().map(str::to_owned);
            if let Some(field) = &named {
                notes.push(format!(
                    "clustered by `{field}`, the protocol version's cluster field"
                ));
            }
            named
        }
    };
    let sums = jointeval_store::comparisons::sums(
        work,
        &Selection {
            a: a.id,
            b: b.id,
            scorer: selected.scorer,
            epoch: selected.epoch,
            reducer: selected.reducer,
            cluster: cluster.as_deref(),
        },
    )
    .await?;
    if sums.a_only + sums.b_only > 0 {
        notes.push(format!(
            "{} of run a's and {} of run b's scores have no partner in the other run: left out",
            sums.a_only, sums.b_only
        ));
        if sums.a_only.max(sums.b_only) > UNMATCHED_LISTED {
            notes.push(format!(
                "the unmatched samples listed are the first {UNMATCHED_LISTED} of each run"
            ));
        }
    }
    let numeric = comparison::numeric(&sums.numeric, sums.clusters.as_ref(), &mut notes);
    let agreement = comparison::agreement(sums.categories, sums.table, &mut notes);
    Ok(Comparison {
        protocol_id: a.protocol_id,
        protocol_version: a.protocol_version,
        scorer: selected.scorer.to_owned(),
        a: ComparedRun::new(a, codes, sums.matched + sums.a_only),
        b: ComparedRun::new(b, codes, sums.matched + sums.b_only),
        pairing: Pairing {
            by: if selected.reducer.is_some() {
                PairedBy::Sample
            } else {
                PairedBy::SampleEpoch
            },
            epoch: selected.epoch,
            reducer: selected.reducer,
            cluster,
        },
        matched: sums.matched,
        unmatched: UnmatchedSamples {
            a_only: sums.a_only,
            b_only: sums.b_only,
            a_only_samples: sums.a_only_listed,
            b_only_samples: sums.b_only_listed,
        },
        numeric,
        agreement,
        notes,
    })
}

/// What to compare in each pair of an exercise's runs.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExerciseComparisonQuery {
    /// The scorer whose values are compared; without it, each scorer the protocol
    /// version's tasks name.
    #[param(min_length = 1, max_length = 200)]
    pub scorer: Option<String>,
    /// As in `GET /v1/comparisons`.
    #[param(minimum = 0, maximum = 100_000)]
    pub epoch: Option<i32>,
    /// As in `GET /v1/comparisons`.
    pub reducer: Option<Reducer>,
    /// As in `GET /v1/comparisons`.
    #[param(min_length = 1, max_length = 200)]
    pub cluster: Option<String>,
}

/// A run of the exercise in no pair, and why.
#[derive(Debug, Serialize, ToSchema)]
pub struct LeftOutRun {
    pub run_id: Uuid,
    pub institute: String,
    pub protocol_id: Uuid,
    pub protocol_version: i32,
    /// `unfinished` (not succeeded or failed), `unchecked` (no comparability verdict),
    /// `deviates` (see `deviations`), or `alone` (no other comparable run of its version).
    pub reason: &'static str,
    pub deviations: Vec<Deviation>,
}

/// Every pair of an exercise's comparable runs, compared.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "exercise_id": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d50",
    "comparisons": [],
    "left_out": [{"run_id": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d62", "institute": "UK",
                  "protocol_id": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d20", "protocol_version": 2,
                  "reason": "deviates", "deviations": [{"field": "epochs", "protocol": "3", "run": "1"}]}],
    "notes": []}))]
pub struct ExerciseComparisons {
    pub exercise_id: Uuid,
    /// Per pair (by protocol version, then the runs' creation; `a` the earlier), per
    /// scorer: each as `GET /v1/comparisons` answers it. At most 100.
    pub comparisons: Vec<Comparison>,
    /// The runs the caller may read that are in no pair.
    pub left_out: Vec<LeftOutRun>,
    pub notes: Vec<String>,
}

/// Comparisons of an exercise answered at most at once.
const MAX_COMPARISONS: usize = 100;
/// Runs of an exercise paired at most.
const MAX_RUNS: usize = 1_000;

/// Compares every pair of the exercise's comparable runs that the caller may read (its
/// own institutes' runs and those released to them): two finished runs of one protocol
/// version whose verdicts found no deviation, for the scorer asked or each scorer the
/// version's tasks name. Runs in no pair are listed, with why.
#[utoipa::path(
    get, path = "/v1/exercises/{id}/comparisons", tag = "comparisons",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The exercise"), ExerciseComparisonQuery),
    responses(
        (status = 200, description = "The comparisons", body = ExerciseComparisons),
        (status = 404, description = "No such exercise", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A parameter is invalid", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn compare_exercise(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(exercise_id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<ExerciseComparisonQuery>,
) -> Result<Json<ExerciseComparisons>, ApiError> {
    validate_texts(&[
        ("scorer", query.scorer.as_deref()),
        ("cluster", query.cluster.as_deref()),
    ])?;
    validate_epoch(query.epoch)?;
    let mut work = Work::begin(&state, &caller).await?;
    let institutes = access::exercise_runs(&mut work, exercise_id).await?;
    let runs = jointeval_store::runs::list_visible(
        &mut work,
        exercise_id,
        &institutes,
        None,
        MAX_RUNS as i64,
    )
    .await?;
    let codes = work.codes().await?;
    let (pairs, left_out) = comparison::comparable_pairs(&runs);
    let mut comparisons = Vec::new();
    let mut notes = Vec::new();
    if runs.len() == MAX_RUNS {
        notes.push(format!(
            "the exercise has more runs than {MAX_RUNS}: the first {MAX_RUNS} by id are paired"
        ));
    }
    let started = std::time::Instant::now();
    let budget = state.settings.work_budget;
    // Comparisons not made once the budget was spent. The budget counts only once one is
    // made, so that every answer holds one if any pair can be compared.
    let mut unmade = 0;
    let mut scorers_of: Vec<((Uuid, i32), Vec<String>)> = Vec::new();
    'pairs: for (a, b) in pairs {
        let version = (a.protocol_id, a.protocol_version);
        let scorers = match (
            &query.scorer,
            scorers_of.iter().find(|(v, _)| *v == version),
        ) {
            (Some(scorer), _) => vec![scorer.clone()],
            (None, Some((_, known))) => known.clone(),
            (None, None) => {
                let known = version_scorers(&mut work, version).await?;
                scorers_of.push((version, known.clone()));
                known
            }
        };
        for scorer in &scorers {
            if comparisons.len() + unmade == MAX_COMPARISONS {
                notes.push(format!(
                    "more than {MAX_COMPARISONS} comparisons: the first are answered; ask for one scorer, or compare a pair with GET /v1/comparisons"
                ));
                break 'pairs;
            }
            if !comparisons.is_empty() && started.elapsed() >= budget {
                unmade += 1;
                continue;
            }
            let selected = Selected {
                scorer,
                epoch: query.epoch,
                reducer: query.reducer,
                cluster: query.cluster.as_deref(),
            };
            match compare(&mut work, a, b, &selected, &codes).await {
                Ok(compared) => comparisons.push(compared),
                Err(ApiError::Store(StoreError::OutOfRange)) => notes.push(format!(
                    "runs {} and {} are not compared on `{scorer}`: their scores are too large to compute on in double precision",
                    a.id, b.id
                )),
                Err(e) => return Err(e),
            }
        }
    }
    work.commit().await?;
    if unmade > 0 {
        notes.push(format!(
            "{unmade} more comparisons were not made: this request's time budget ({} s) was spent; ask for one scorer, or compare the other pairs with GET /v1/comparisons",
            budget.as_secs_f64()
        ));
    }
    let left_out = left_out
        .into_iter()
        .map(|(run, why)| LeftOutRun {
            run_id: run.id,
            institute: codes.of(run.institute_id),
            protocol_id: run.protocol_id,
            protocol_version: run.protocol_version,
            reason: why.as_str(),
            deviations: run.deviations.clone(),
        })
        .collect();
    Ok(Json(ExerciseComparisons {
        exercise_id,
        comparisons,
        left_out,
        notes,
    }))
}

/// The scorers a protocol version's tasks name, each once, in order.
async fn version_scorers(
    work: &mut Work<'_>,
    (protocol_id, number): (Uuid, i32),
) -> Result<Vec<String>, ApiError> {
    let version = jointeval_store::protocols::get_version(work, protocol_id, number, false)
        .await?
        .ok_or_else(|| crate::auth::not_found("protocol version"))?;
    let mut scorers: Vec<String> = Vec::new();
    for scorer in version.content.tasks.iter().flat_map(|t| &t.scorers) {
        if !scorers.contains(scorer) {
            scorers.push(scorer.clone());
        }
    }
    Ok(scorers)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DisagreementQuery {
    /// One run; differences are `a − b`.
    pub a: Uuid,
    /// The other run, of the same protocol version.
    pub b: Uuid,
    /// The scorer whose values are compared.
    #[param(min_length = 1, max_length = 200)]
    pub scorer: String,
    /// Only this epoch's scores. Without it (and without `reducer`), scores pair by
    /// sample and epoch.
    #[param(minimum = 0, maximum = 100_000)]
    pub epoch: Option<i32>,
    /// Reduce each sample's epochs to one value first, then pair by sample.
    pub reducer: Option<Reducer>,
}

/// One side of a pair that disagrees.
#[derive(Debug, Serialize, ToSchema)]
pub struct DisagreeingValue {
    /// The value as reported (a number, or a label such as `C`); the reduced number when
    /// a reducer reduced the epochs.
    pub value: serde_json::Value,
    /// Its number (see the README's "Scores and their numbers"); `null` for a label
    /// without one.
    pub number: Option<f64>,
    /// The score's answer, where the caller may read this run's transcripts; `null`
    /// otherwise, and when the epochs are reduced.
    pub answer: Option<String>,
    /// The score's explanation, on the same terms as `answer`.
    pub explanation: Option<String>,
    /// `true` when the run's transcripts are not released to the caller's institute, so
    /// that `answer` and `explanation` are left out whatever they hold.
    pub transcripts_withheld: bool,
}

/// A matched pair whose values differ.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "sample_id": "q0017", "epoch": 1,
    "a": {"value": 1.0, "number": 1.0, "answer": "42", "explanation": "matches the target",
          "transcripts_withheld": false},
    "b": {"value": 0.0, "number": 0.0, "answer": null, "explanation": null,
          "transcripts_withheld": true},
    "difference": 1.0}))]
pub struct Disagreement {
    pub sample_id: String,
    /// `null` when a reducer reduced the epochs.
    pub epoch: Option<i32>,
    pub a: DisagreeingValue,
    pub b: DisagreeingValue,
    /// `a − b`, when both values are numbers.
    pub difference: Option<f64>,
}

impl Disagreement {
    fn new(row: DisagreementRow, shown: Transcripts) -> Self {
        let side = |number: Option<f64>,
                    label: Option<String>,
                    answer: Option<String>,
                    explanation: Option<String>,
                    shown: bool| DisagreeingValue {
            value: match label {
                Some(label) => serde_json::Value::from(label),
                None => number.map_or(serde_json::Value::Null, serde_json::Value::from),
            },
            number,
            answer,
            explanation,
            transcripts_withheld: !shown,
        };
        Self {
            epoch: (row.epoch >= 0).then_some(row.epoch),
            difference: row.a_number.zip(row.b_number).map(|(a, b)| a - b),
            sample_id: row.sample_id,
            a: side(
                row.a_number,
                row.a_label,
                row.a_answer,
                row.a_explanation,
                shown.a,
            ),
            b: side(
                row.b_number,
                row.b_label,
                row.b_answer,
                row.b_explanation,
                shown.b,
            ),
        }
    }
}

/// Lists the matched pairs of two runs whose values differ, for reviewers to read: pairs
/// of numbers first, the largest |a − b| first, then the pairs that differ and are not
/// both numbers; ties by sample id, then epoch. Paired as `GET /v1/comparisons` pairs
/// them (by sample and epoch, one epoch, or epochs reduced). Each side's answer and
/// explanation are shown only where the caller may read that run's transcripts: its own
/// institute's run, or one whose transcripts were released to its institute.
#[utoipa::path(
    get, path = "/v1/comparisons/disagreements", tag = "comparisons",
    security(("bearer" = [])),
    params(DisagreementQuery, PageQuery),
    responses(
        (status = 200, description = "A page of the pairs that disagree", body = Page<Disagreement>),
        (status = 404, description = "One or both runs are not runs the caller may read (the answer does not say which)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The runs ran different protocol versions, one has not finished, or their scores are too large to compute on in double precision", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A parameter is invalid, or the cursor is not one this service gave out", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_disagreements(
    State(state): State<AppState>,
    caller: Caller,
    ListQuery {
        filter: query,
        page,
    }: ListQuery<DisagreementQuery>,
) -> Result<Json<Page<Disagreement>>, ApiError> {
    validate_texts(&[("scorer", Some(&query.scorer))])?;
    validate_epoch(query.epoch)?;
    let after = match page.after_key::<(i32, u64, String, i32)>()? {
        Some((class, key, sample_id, epoch)) => DisagreementKey {
            class,
            key: f64::from_bits(key),
            sample_id,
            epoch,
        },
        None => DisagreementKey::first(),
    };
    let mut work = Work::begin(&state, &caller).await?;
    let (a, b) = access::run_pair(&mut work, query.a, query.b).await?;
    check_pair(&a, &b)?;
    let shown = Transcripts {
        a: access::reads_transcripts(&work, &a),
        b: access::reads_transcripts(&work, &b),
    };
    let rows = jointeval_store::comparisons::disagreements(
        &mut work,
        &Selection {
            a: a.id,
            b: b.id,
            scorer: &query.scorer,
            epoch: query.epoch,
            reducer: query.reducer,
            cluster: None,
        },
        shown,
        &after,
        page.fetch(),
    )
    .await?;
    work.commit().await?;
    // The key's number goes by its bits: a difference past the largest double is
    // infinite, which JSON cannot hold.
    let page = Page::from_rows(rows, page.limit, |r| {
        let key = r.key();
        key_text(&(key.class, key.key.to_bits(), key.sample_id, key.epoch))
    });
    Ok(Json(page.map(|row| Disagreement::new(row, shown))))
}
