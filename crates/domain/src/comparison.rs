//! The paired comparison of two runs' scores: the statistics, from sums the store computes
//! over the matched samples, so that no run is ever held in memory here.
//!
//! A difference is always `a − b`. The formulas are those of the independent
//! implementations the CI checks them against (scipy's `ttest_rel`, Inspect's clustered
//! `stderr`, statsmodels' `cohens_kappa` and `mcnemar`, the `krippendorff` package); each
//! statistic that is undefined for the data is `None`, with a note saying why, never NaN.

use serde::{Deserialize, Serialize};
use statrs::distribution::{Binomial, Continuous, ContinuousCDF, DiscreteCDF, StudentsT};
use utoipa::ToSchema;

use crate::run::Run;

/// The confidence level of every interval.
pub const CONFIDENCE: f64 = 0.95;

/// The most distinct values a side may have for its scores to be read as categories.
pub const MAX_CATEGORIES: usize = 100;

/// Why two runs the caller may read are not compared (a conflict with their state).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotComparable(pub String);

/// Two runs compare when they ran the same protocol version and both have finished: the
/// results of a run still running would change under the comparison.
pub fn check_pair(a: &Run, b: &Run) -> Result<(), NotComparable> {
    if (a.protocol_id, a.protocol_version) != (b.protocol_id, b.protocol_version) {
        return Err(NotComparable(format!(
            "the runs ran different protocol versions (a: version {} of protocol {}, b: \
             version {} of protocol {}): only runs of one version are compared",
            a.protocol_version, a.protocol_id, b.protocol_version, b.protocol_id
        )));
    }
    for (side, run) in [("a", a), ("b", b)] {
        if !run.status.is_final() {
            return Err(NotComparable(format!(
                "run {side} is {}: only finished runs (succeeded or failed) are compared",
                run.status.as_str()
            )));
        }
    }
    Ok(())
}

/// Why a run of an exercise is not in any of its pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeftOut {
    /// It has not finished (or was cancelled): its results are not final.
    Unfinished,
    /// Its verdict has not been taken (a run finished before verdicts were).
    Unchecked,
    /// It deviates from its protocol version.
    Deviates,
    /// No other comparable run of its protocol version.
    Alone,
}

impl LeftOut {
    pub fn as_str(&self) -> &'static str {
        match self {
            LeftOut::Unfinished => "unfinished",
            LeftOut::Unchecked => "unchecked",
            LeftOut::Deviates => "deviates",
            LeftOut::Alone => "alone",
        }
    }
}

/// An exercise's pairs of runs, and the runs left out of every pair, with why.
pub type ExercisePairs<'r> = (Vec<(&'r Run, &'r Run)>, Vec<(&'r Run, LeftOut)>);

/// The pairs of an exercise's runs that compare: two finished runs of one protocol
/// version and task, each comparable by its verdict, each pair once (`a` the earlier created), by
/// protocol version and then creation; and the runs left out, with why.
pub fn comparable_pairs(runs: &[Run]) -> ExercisePairs<'_> {
    let mut left_out = Vec::new();
    let mut eligible: Vec<&Run> = Vec::new();
    for run in runs {
        match (run.status.is_final(), run.comparable()) {
            (false, _) => left_out.push((run, LeftOut::Unfinished)),
            (true, None) => left_out.push((run, LeftOut::Unchecked)),
            (true, Some(false)) => left_out.push((run, LeftOut::Deviates)),
            (true, Some(true)) => eligible.push(run),
        }
    }
    let of = |r: &Run| (r.protocol_id, r.protocol_version, r.checked_task.clone());
    eligible.sort_by_key(|r| (of(r), r.created_at, r.id));
    let mut pairs = Vec::new();
    for (i, a) in eligible.iter().enumerate() {
        let before = pairs.len();
        for b in &eligible[i + 1..] {
            if of(a) == of(b) {
                pairs.push((*a, *b));
            }
        }
        let paired_before = eligible[..i].iter().any(|x| of(x) == of(a));
        if pairs.len() == before && !paired_before {
            left_out.push((a, LeftOut::Alone));
        }
    }
    (pairs, left_out)
}

/// What the store sums over the pairs whose two values are numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct NumericSums {
    pub pairs: i64,
    pub mean_a: Option<f64>,
    pub mean_b: Option<f64>,
    pub mean_difference: Option<f64>,
    /// Sample variances (n − 1), `None` below two pairs.
    pub variance_a: Option<f64>,
    pub variance_b: Option<f64>,
    pub variance_difference: Option<f64>,
}

/// What the store sums over the clusters of the numeric pairs, when a cluster field is
/// named: the pairs without the field, the clusters of the others, and
/// `Σ_c (Σ_{i∈c} (d_i − d̄))²`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSums {
    pub field: String,
    pub pairs_without_field: i64,
    /// Pairs whose two runs put the sample in different clusters.
    pub pairs_split: i64,
    pub clusters: i64,
    pub squared_deviation_sum: f64,
}

/// How a sample's epochs are reduced to one value before pairing, as Inspect's reducers of
/// the same names do (over numbers; a label counts by its number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reducer {
    Mean,
    Median,
    Max,
    Min,
}

impl Reducer {
    pub fn as_str(self) -> &'static str {
        match self {
            Reducer::Mean => "mean",
            Reducer::Median => "median",
            Reducer::Max => "max",
            Reducer::Min => "min",
        }
    }
}

/// One value as a category: its label (a number's shortest text when it has no label),
/// and its number when it has one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Category {
    pub label: String,
    pub number: Option<f64>,
}

/// A sample (and epoch, unless the epochs are reduced) scored in one run and not the other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Unmatched {
    pub sample_id: String,
    pub epoch: Option<i32>,
}

/// How many matched pairs have value `a` in run a and `b` in run b.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Cell {
    pub a: String,
    pub b: String,
    pub count: i64,
}

/// Numeric statistics of the matched pairs.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(example = json!({
    "pairs": 150, "mean_a": 0.62, "mean_b": 0.5533333333333333,
    "mean_difference": 0.06666666666666667, "paired_stderr": 0.03081, "unpaired_stderr": 0.05688,
    "clustered_stderr": null, "clusters": null, "stderr": "paired", "degrees_of_freedom": 149,
    "confidence_interval": {"level": 0.95, "lower": 0.00578, "upper": 0.12755},
    "t_statistic": 2.1636, "p_value": 0.03209}))]
pub struct NumericComparison {
    /// Matched pairs whose two values are numbers (labels count by their number).
    pub pairs: i64,
    pub mean_a: f64,
    pub mean_b: f64,
    /// The mean of `a − b`.
    pub mean_difference: f64,
    /// The standard deviation of the differences over √n (n − 1 in the deviation).
    pub paired_stderr: Option<f64>,
    /// √(s²_a/n + s²_b/n), as if the two runs' samples were independent: for contrast.
    pub unpaired_stderr: Option<f64>,
    /// Inspect's clustered standard error of the differences, with its finite-cluster
    /// correction: √(G/(G−1) · Σ_c (Σ_{i∈c} (d_i − d̄))²) / n.
    pub clustered_stderr: Option<f64>,
    /// The clusters of the pairs, when a cluster field is named.
    pub clusters: Option<i64>,
    /// Which standard error the interval and the test use: `clustered` when a cluster
    /// field is named, else `paired`.
    pub stderr: StderrKind,
    /// Of the t distribution used: n − 1, or G − 1 when clustered.
    pub degrees_of_freedom: Option<i64>,
    pub confidence_interval: Option<Interval>,
    pub t_statistic: Option<f64>,
    /// Two-sided, of the paired t-test (clustered when clustered).
    pub p_value: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StderrKind {
    Paired,
    Clustered,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Interval {
    pub level: f64,
    pub lower: f64,
    pub upper: f64,
}

/// Agreement of the matched pairs, their values read as categories.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AgreementComparison {
    pub pairs: i64,
    /// The share of pairs with the same value.
    pub agreement_rate: f64,
    pub cohen_kappa: Option<f64>,
    /// When the values take exactly two categories.
    pub mcnemar: Option<McNemar>,
    pub krippendorff_alpha: KrippendorffAlpha,
    /// Every value seen, ordered by number (then label); those without a number last.
    pub categories: Vec<Category>,
    /// The contingency table: each (a, b) that occurs, with its count.
    pub table: Vec<Cell>,
}

/// McNemar's exact test of the two discordant cells, as statsmodels' `mcnemar(exact=True)`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct McNemar {
    /// Pairs with the first category in run a and the second in run b.
    pub first_in_a_second_in_b: i64,
    pub second_in_a_first_in_b: i64,
    /// The smaller of the two discordant counts.
    pub statistic: i64,
    /// min(1, 2·P(X ≤ statistic)), X binomial over the discordant pairs with p = ½.
    pub p_value: f64,
}

/// Krippendorff's alpha of the two runs as two coders, at each level the values allow:
/// ordinal and interval need every value to have a number.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct KrippendorffAlpha {
    pub nominal: Option<f64>,
    pub ordinal: Option<f64>,
    pub interval: Option<f64>,
}

/// The numeric statistics, with notes on what is undefined; `None` without numeric pairs.
pub fn numeric(
    sums: &NumericSums,
    clusters: Option<&ClusterSums>,
    notes: &mut Vec<String>,
) -> Option<NumericComparison> {
    let (Some(mean_a), Some(mean_b), Some(mean_difference)) =
        (sums.mean_a, sums.mean_b, sums.mean_difference)
    else {
        notes.push("no matched pair has a number on both sides: no numeric statistics".into());
        return None;
    };
    let n = sums.pairs as f64;
    let paired_stderr = sums.variance_difference.map(|v| (v / n).sqrt());
    let unpaired_stderr = sums
        .variance_a
        .zip(sums.variance_b)
        .map(|(va, vb)| (va / n + vb / n).sqrt());
    if paired_stderr.is_none() {
        notes.push("one numeric pair: no standard error, interval or test".into());
    }
    let (stderr, standard_error, degrees_of_freedom) = match clusters {
        Some(c) => {
            let se = clustered_stderr(c, sums.pairs, notes);
            (StderrKind::Clustered, se, se.map(|_| c.clusters - 1))
        }
        None => (
            StderrKind::Paired,
            paired_stderr,
            paired_stderr.map(|_| sums.pairs - 1),
        ),
    };
    let (confidence_interval, t_statistic, p_value) = match (standard_error, degrees_of_freedom) {
        (Some(se), Some(df)) => t_test(mean_difference, se, df, notes),
        _ => (None, None, None),
    };
    Some(NumericComparison {
        pairs: sums.pairs,
        mean_a,
        mean_b,
        mean_difference,
        paired_stderr,
        unpaired_stderr,
        clustered_stderr: standard_error.filter(|_| stderr == StderrKind::Clustered),
        clusters: clusters.map(|c| c.clusters),
        stderr,
        degrees_of_freedom,
        confidence_interval,
        t_statistic,
        p_value,
    })
}

/// Inspect's clustered standard error, or `None` (noted) where Inspect would refuse it
/// (a pair without the field, or fewer than two clusters) or where the runs disagree on
/// a sample's cluster (either's would be a guess, and the answer would depend on which
/// run is `a`).
fn clustered_stderr(c: &ClusterSums, pairs: i64, notes: &mut Vec<String>) -> Option<f64> {
    if c.pairs_split > 0 {
        notes.push(format!(
            "{} of {pairs} numeric pairs have another `{}` in one run than in the other: no \
             clustered standard error, interval or test",
            c.pairs_split, c.field
        ));
        return None;
    }
    if c.pairs_without_field > 0 {
        notes.push(format!(
            "{} of {pairs} numeric pairs have no `{}` in their metadata: no clustered standard \
             error, interval or test (a missing cluster is not a cluster of its own)",
            c.pairs_without_field, c.field
        ));
        return None;
    }
    if c.clusters < 2 {
        notes.push(format!(
            "the numeric pairs fall in {} cluster(s) of `{}`: a clustered standard error needs two",
            c.clusters, c.field
        ));
        return None;
    }
    let g = c.clusters as f64;
    Some((c.squared_deviation_sum * g / (g - 1.0)).sqrt() / pairs as f64)
}

/// The t interval and two-sided test of `mean` with standard error `se`.
fn t_test(
    mean: f64,
    se: f64,
    df: i64,
    notes: &mut Vec<String>,
) -> (Option<Interval>, Option<f64>, Option<f64>) {
    let Ok(t) = StudentsT::new(0.0, 1.0, df as f64) else {
        return (None, None, None);
    };
    let half = t_quantile(&t, 0.5 + CONFIDENCE / 2.0) * se;
    let interval = Interval {
        level: CONFIDENCE,
        lower: mean - half,
        upper: mean + half,
    };
    if se == 0.0 {
        notes.push(if mean == 0.0 {
            "every difference is zero: no t statistic or p-value".into()
        } else {
            "every difference is the same: no t statistic or p-value".into()
        });
        return (Some(interval), None, None);
    }
    let statistic = mean / se;
    let p = (2.0 * t.sf(statistic.abs())).min(1.0);
    (Some(interval), Some(statistic), Some(p))
}

/// The quantile of `t` at `p`: statrs's estimate, refined by Newton's method on its CDF,
/// which is far closer than its inverse (3.5e-5 off scipy at 10⁶ degrees, 1.3e-10 after).
fn t_quantile(t: &StudentsT, p: f64) -> f64 {
    let mut x = t.inverse_cdf(p);
    for _ in 0..4 {
        let step = (t.cdf(x) - p) / t.pdf(x);
        x -= step;
        if step.abs() < 1e-15 * x.abs().max(1.0) {
            break;
        }
    }
    x
}

/// The agreement statistics of the contingency table, or `None` (noted) when there is
/// none to compute or the values are too many to be categories.
pub fn agreement(
    categories: Vec<Category>,
    table: Vec<Cell>,
    notes: &mut Vec<String>,
) -> Option<AgreementComparison> {
    // Past 100 categories the table is not counted: that is said first.
    if categories.len() > MAX_CATEGORIES {
        notes.push(format!(
            "the values take more than {MAX_CATEGORIES} distinct values: not read as \
             categories (see the numeric statistics)"
        ));
        return None;
    }
    let pairs: i64 = table.iter().map(|c| c.count).sum();
    if pairs == 0 {
        notes.push("no matched pairs: no agreement statistics".into());
        return None;
    }
    let categories = ordered(categories);
    let index = |label: &str| categories.iter().position(|c| c.label == label);
    let k = categories.len();
    let mut counts = vec![vec![0i64; k]; k];
    for cell in &table {
        if let (Some(i), Some(j)) = (index(&cell.a), index(&cell.b)) {
            counts[i][j] += cell.count;
        }
    }
    let n = pairs as f64;
    let agreed: i64 = (0..k).map(|i| counts[i][i]).sum();
    let agreement_rate = agreed as f64 / n;
    let cohen_kappa = cohen_kappa(&counts, n, notes);
    let mcnemar = if k == 2 {
        Some(mcnemar(counts[0][1], counts[1][0]))
    } else {
        notes.push(format!(
            "the values take {k} categories: McNemar's test needs exactly two"
        ));
        None
    };
    let krippendorff_alpha = krippendorff(&counts, &categories, notes);
    let mut table = table;
    table.sort_by_key(|c| (index(&c.a), index(&c.b)));
    Some(AgreementComparison {
        pairs,
        agreement_rate,
        cohen_kappa,
        mcnemar,
        krippendorff_alpha,
        categories,
        table,
    })
}

/// Numbers ascending, then the labels without one; labels break ties.
fn ordered(mut categories: Vec<Category>) -> Vec<Category> {
    categories.sort_by(|x, y| match (x.number, y.number) {
        (Some(a), Some(b)) => a.total_cmp(&b).then_with(|| x.label.cmp(&y.label)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => x.label.cmp(&y.label),
    });
    categories.dedup_by(|x, y| x.label == y.label);
    categories
}

fn cohen_kappa(counts: &[Vec<i64>], n: f64, notes: &mut Vec<String>) -> Option<f64> {
    let k = counts.len();
    let observed = (0..k).map(|i| counts[i][i] as f64).sum::<f64>() / n;
    let expected: f64 = (0..k)
        .map(|i| {
            let row: i64 = counts[i].iter().sum();
            let column: i64 = counts.iter().map(|r| r[i]).sum();
            (row as f64 / n) * (column as f64 / n)
        })
        .sum();
    if expected >= 1.0 {
        notes.push("both runs give one and the same value throughout: no kappa".into());
        return None;
    }
    Some((observed - expected) / (1.0 - expected))
}

fn mcnemar(first_second: i64, second_first: i64) -> McNemar {
    let statistic = first_second.min(second_first);
    let discordant = (first_second + second_first) as u64;
    let p_value = if discordant == 0 {
        1.0
    } else {
        let binomial = Binomial::new(0.5, discordant).expect("p = 0.5 is a probability");
        (2.0 * binomial.cdf(statistic as u64)).min(1.0)
    };
    McNemar {
        first_in_a_second_in_b: first_second,
        second_in_a_first_in_b: second_first,
        statistic,
        p_value,
    }
}

/// α = 1 − (n − 1) Σ o_ck δ²_ck / Σ n_c n_k δ²_ck over the coincidence matrix of the two
/// runs as coders (each pair adds its (a, b) and its (b, a)), n the values counted.
fn krippendorff(
    counts: &[Vec<i64>],
    categories: &[Category],
    notes: &mut Vec<String>,
) -> KrippendorffAlpha {
    let k = counts.len();
    let coincidences: Vec<Vec<f64>> = (0..k)
        .map(|c| {
            (0..k)
                .map(|j| (counts[c][j] + counts[j][c]) as f64)
                .collect()
        })
        .collect();
    let marginals: Vec<f64> = coincidences.iter().map(|row| row.iter().sum()).collect();
    let n: f64 = marginals.iter().sum();
    let alpha = |distance: &dyn Fn(usize, usize) -> f64| {
        let mut observed = 0.0;
        let mut expected = 0.0;
        for c in 0..k {
            for j in 0..k {
                let d = distance(c, j);
                observed += coincidences[c][j] * d;
                expected += marginals[c] * marginals[j] * d;
            }
        }
        (expected > 0.0).then(|| 1.0 - (n - 1.0) * observed / expected)
    };
    let nominal = alpha(&|c, j| if c == j { 0.0 } else { 1.0 });
    if nominal.is_none() {
        notes.push("the runs give one value throughout: no Krippendorff's alpha".into());
    }
    let numbers: Option<Vec<f64>> = categories.iter().map(|c| c.number).collect();
    let (ordinal, interval) = match numbers {
        Some(numbers) if nominal.is_some() => (
            alpha(&|c, j| {
                let (lo, hi) = (c.min(j), c.max(j));
                let between: f64 = marginals[lo..=hi].iter().sum();
                (between - (marginals[lo] + marginals[hi]) / 2.0).powi(2)
            }),
            alpha(&|c, j| (numbers[c] - numbers[j]).powi(2)),
        ),
        Some(_) => (None, None),
        None => {
            notes.push(
                "a value has no number: Krippendorff's alpha is nominal only (no ordinal or \
                 interval)"
                    .into(),
            );
            (None, None)
        }
    };
    KrippendorffAlpha {
        nominal,
        ordinal,
        interval,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    fn sums(values: &[(f64, f64)]) -> NumericSums {
        let n = values.len() as f64;
        let mean = |f: &dyn Fn(&(f64, f64)) -> f64| values.iter().map(f).sum::<f64>() / n;
        let var = |f: &dyn Fn(&(f64, f64)) -> f64| {
            let m = mean(f);
            (values.len() > 1)
                .then(|| values.iter().map(|v| (f(v) - m).powi(2)).sum::<f64>() / (n - 1.0))
        };
        NumericSums {
            pairs: values.len() as i64,
            mean_a: Some(mean(&|v| v.0)),
            mean_b: Some(mean(&|v| v.1)),
            mean_difference: Some(mean(&|v| v.0 - v.1)),
            variance_a: var(&|v| v.0),
            variance_b: var(&|v| v.1),
            variance_difference: var(&|v| v.0 - v.1),
        }
    }

    // scipy.stats.ttest_rel([1,0,1,1,0,1,1,1], [0,0,1,0,0,1,1,0]) and its
    // confidence_interval().
    fn finished(id: u128, version: i32, comparable: Option<bool>) -> Run {
        let mut run = Run::example(crate::run::RunStatus::Succeeded);
        run.id = Uuid::from_u128(id);
        run.protocol_version = version;
        run.created_at += chrono::Duration::seconds(id as i64);
        run.checked_at = comparable.map(|_| run.created_at);
        run.checked_task = Some("t".into());
        if comparable == Some(false) {
            run.deviations = vec![crate::conformance::Deviation {
                field: "epochs".into(),
                protocol: "3".into(),
                run: "1".into(),
            }];
        }
        run
    }

    #[test]
    fn only_finished_runs_of_one_version_pair() {
        let a = finished(1, 1, Some(true));
        let mut running = finished(2, 1, Some(true));
        running.status = crate::run::RunStatus::Running;
        let other_version = finished(3, 2, Some(true));
        assert!(
            check_pair(&a, &finished(4, 1, Some(false))).is_ok(),
            "a verdict is no bar"
        );
        let error = check_pair(&a, &other_version).expect_err("two versions");
        assert!(error.0.contains("different protocol versions"), "{error}");
        let error = check_pair(&running, &a).expect_err("running");
        assert!(error.0.contains("run a is running"), "{error}");
    }

    #[test]
    fn an_exercise_pairs_each_two_comparable_runs_of_a_version_once() {
        let mut cancelled = finished(6, 1, Some(true));
        cancelled.status = crate::run::RunStatus::Cancelled;
        let runs = [
            finished(3, 1, Some(true)),
            finished(1, 1, Some(true)),
            finished(2, 1, Some(true)),
            finished(4, 1, Some(false)),
            finished(5, 1, None),
            cancelled,
            finished(7, 2, Some(true)),
            Run {
                checked_task: Some("another task".into()),
                ..finished(8, 1, Some(true))
            },
        ];
        let (pairs, left_out) = comparable_pairs(&runs);
        let ids = |r: &Run| r.id.as_u128();
        assert_eq!(
            pairs
                .iter()
                .map(|(a, b)| (ids(a), ids(b)))
                .collect::<Vec<_>>(),
            [(1, 2), (1, 3), (2, 3)]
        );
        assert_eq!(
            left_out
                .iter()
                .map(|(r, why)| (ids(r), why.as_str()))
                .collect::<Vec<_>>(),
            [
                (4, "deviates"),
                (5, "unchecked"),
                (6, "unfinished"),
                (8, "alone"),
                (7, "alone")
            ]
        );
    }

    #[test]
    fn the_paired_test_is_scipys() {
        let a = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0];
        let b = [0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0];
        let pairs: Vec<_> = a.into_iter().zip(b).collect();
        let mut notes = vec![];
        let got = numeric(&sums(&pairs), None, &mut notes).expect("numeric");
        close(got.t_statistic.expect("present"), 2.0493901531919194);
        close(got.p_value.expect("present"), 0.07960201245519759);
        let ci = got.confidence_interval.expect("present");
        close(ci.lower, -0.057681933679737896);
        close(ci.upper, 0.8076819336797378);
        assert_eq!(got.degrees_of_freedom, Some(7));
        assert!(notes.is_empty(), "{notes:?}");
    }

    #[test]
    fn a_quantile_is_exact_at_a_million_degrees() {
        // scipy.stats.t.ppf(0.975, 999999); statrs's own inverse is 3.5e-5 off.
        let t = StudentsT::new(0.0, 1.0, 999_999.0).expect("present");
        assert!((t_quantile(&t, 0.975) - 1.9599663568164791).abs() < 1e-9);
    }

    #[test]
    fn zero_differences_have_an_interval_and_no_test() {
        let mut notes = vec![];
        let got = numeric(&sums(&[(1.0, 1.0), (0.0, 0.0)]), None, &mut notes).expect("present");
        assert_eq!(got.paired_stderr, Some(0.0));
        assert_eq!((got.t_statistic, got.p_value), (None, None));
        let ci = got.confidence_interval.expect("present");
        assert_eq!((ci.lower, ci.upper), (0.0, 0.0));
        assert_eq!(
            notes,
            ["every difference is zero: no t statistic or p-value"]
        );
    }

    #[test]
    fn one_pair_has_means_and_nothing_else() {
        let mut notes = vec![];
        let got = numeric(&sums(&[(1.0, 0.0)]), None, &mut notes).expect("present");
        assert_eq!(got.mean_difference, 1.0);
        assert_eq!(
            (got.paired_stderr, got.confidence_interval, got.p_value),
            (None, None, None)
        );
        assert_eq!(notes.len(), 1);
    }

    /// A pair without the field, or in two clusters: said, and no cluster guessed.
    #[test]
    fn a_missing_or_split_cluster_is_said_and_not_guessed() {
        for (without, split, said) in [(1, 0, "no `topic`"), (0, 2, "another `topic`")] {
            let mut notes = vec![];
            let c = ClusterSums {
                field: "topic".into(),
                pairs_without_field: without,
                pairs_split: split,
                clusters: 3,
                squared_deviation_sum: 1.0,
            };
            let got = numeric(
                &sums(&[(1.0, 0.0), (0.0, 0.0), (1.0, 1.0)]),
                Some(&c),
                &mut notes,
            )
            .expect("present");
            assert_eq!(got.stderr, StderrKind::Clustered);
            assert_eq!((got.clustered_stderr, got.p_value), (None, None));
            assert!(got.paired_stderr.is_some());
            assert!(notes[0].contains(said), "{notes:?}");
        }
    }

    fn label(l: &str, n: Option<f64>) -> Category {
        Category {
            label: l.into(),
            number: n,
        }
    }

    fn cell(a: &str, b: &str, count: i64) -> Cell {
        Cell {
            a: a.into(),
            b: b.into(),
            count,
        }
    }

    // statsmodels: cohens_kappa([[20, 5], [10, 15]]).kappa = 0.4,
    // mcnemar([[20, 5], [10, 15]], exact=True).pvalue = 0.30175781249999994;
    // krippendorff.alpha([[1]*25+[0]*25, [1]*20+[0]*5+[1]*10+[0]*15]) = 0.4 at every level.
    #[test]
    fn the_agreement_of_a_two_by_two_table_is_statsmodels_and_krippendorffs() {
        let mut notes = vec![];
        let got = agreement(
            vec![label("C", Some(1.0)), label("I", Some(0.0))],
            vec![
                cell("C", "C", 20),
                cell("C", "I", 5),
                cell("I", "C", 10),
                cell("I", "I", 15),
            ],
            &mut notes,
        )
        .expect("present");
        close(got.agreement_rate, 0.7);
        close(got.cohen_kappa.expect("present"), 0.4);
        let m = got.mcnemar.expect("present");
        assert_eq!(
            (
                m.first_in_a_second_in_b,
                m.second_in_a_first_in_b,
                m.statistic
            ),
            (10, 5, 5)
        );
        close(m.p_value, 0.30175781249999994);
        close(got.krippendorff_alpha.nominal.expect("present"), 0.4);
        close(got.krippendorff_alpha.interval.expect("present"), 0.4);
        close(got.krippendorff_alpha.ordinal.expect("present"), 0.4);
        assert_eq!(got.categories[0].label, "I");
    }

    #[test]
    fn one_value_throughout_agrees_and_has_no_kappa_or_alpha() {
        let mut notes = vec![];
        let got = agreement(
            vec![label("C", Some(1.0))],
            vec![cell("C", "C", 4)],
            &mut notes,
        )
        .expect("present");
        assert_eq!(got.agreement_rate, 1.0);
        assert_eq!(got.cohen_kappa, None);
        assert_eq!(got.krippendorff_alpha.nominal, None);
        assert!(got.mcnemar.is_none());
        assert_eq!(notes.len(), 3, "{notes:?}");
    }

    #[test]
    fn labels_without_numbers_are_nominal_only() {
        let mut notes = vec![];
        let got = agreement(
            vec![label("A", None), label("B", None), label("C", None)],
            vec![cell("A", "A", 3), cell("B", "C", 1), cell("C", "C", 2)],
            &mut notes,
        )
        .expect("present");
        assert!(got.krippendorff_alpha.nominal.is_some());
        assert_eq!(got.krippendorff_alpha.interval, None);
        assert!(got.mcnemar.is_none());
    }
}
