//! Whether a run did what its approved protocol version says: what an evaluation log
//! says was run, compared with the protocol's task. A difference is information for the
//! reviewers who release the run, not a reason to refuse the results.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::protocol::{ProtocolContent, Task};

/// What a log says was run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ran {
    pub task: String,
    pub task_version: String,
    pub dataset_name: Option<String>,
    pub dataset_samples: Option<i64>,
    pub epochs: Option<i64>,
    pub scorers: Vec<String>,
    /// Samples that ended in an error instead of a score: a protocol expects none.
    pub errored_samples: i64,
}

/// One difference between the protocol and the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"field": "epochs", "protocol": "3", "run": "1"}))]
pub struct Deviation {
    /// What differs: `task`, `task_version`, `dataset.name`, `dataset.sample_count`,
    /// `epochs`, `scorers` or `errored_samples`.
    pub field: String,
    /// What the protocol version says.
    pub protocol: String,
    /// What the log says was run.
    pub run: String,
}

fn deviation(field: &str, protocol: impl ToString, run: impl ToString) -> Deviation {
    Deviation {
        field: field.to_owned(),
        protocol: protocol.to_string(),
        run: run.to_string(),
    }
}

/// The protocol's task a log ran: the one whose `harness.task_ref` (without an
/// `@version`) or whose name is the log's task.
fn task_of<'a>(content: &'a ProtocolContent, task: &str) -> Option<&'a Task> {
    content
        .tasks
        .iter()
        .find(|t| t.harness.task_ref.split('@').next() == Some(task) || t.name == task)
}

/// Every difference between `ran` and the protocol, in a fixed order.
pub fn deviations(content: &ProtocolContent, ran: &Ran) -> Vec<Deviation> {
    let Some(task) = task_of(content, &ran.task) else {
        let known: Vec<&str> = content
            .tasks
            .iter()
            .map(|t| t.harness.task_ref.as_str())
            .collect();
        return vec![deviation("task", known.join(", "), &ran.task)];
    };
    let mut out = Vec::new();
    if let Some((_, version)) = task.harness.task_ref.split_once('@')
        && version != ran.task_version
    {
        out.push(deviation("task_version", version, &ran.task_version));
    }
    let dataset = &task.dataset;
    match &ran.dataset_name {
        Some(name) if !dataset.name.is_empty() && *name != dataset.name => {
            out.push(deviation("dataset.name", &dataset.name, name));
        }
        None if !dataset.name.is_empty() => {
            out.push(deviation("dataset.name", &dataset.name, "(not in the log)"));
        }
        _ => {}
    }
    if let Some(expected) = dataset.sample_count
        && ran.dataset_samples != i64::try_from(expected).ok()
    {
        out.push(deviation(
            "dataset.sample_count",
            expected,
            ran.dataset_samples
                .map_or_else(|| "(not in the log)".to_owned(), |n| n.to_string()),
        ));
    }
    if ran.epochs != Some(i64::from(task.epochs)) {
        out.push(deviation(
            "epochs",
            task.epochs,
            ran.epochs
                .map_or_else(|| "(not in the log)".to_owned(), |n| n.to_string()),
        ));
    }
    let mut expected: Vec<&str> = task.scorers.iter().map(String::as_str).collect();
    let mut got: Vec<&str> = ran.scorers.iter().map(String::as_str).collect();
    expected.sort_unstable();
    got.sort_unstable();
    if expected != got {
        out.push(deviation("scorers", expected.join(", "), got.join(", ")));
    }
    if ran.errored_samples > 0 {
        out.push(deviation("errored_samples", 0, ran.errored_samples));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content() -> ProtocolContent {
        serde_json::from_value(serde_json::json!({
            "objective": "o",
            "tasks": [{"name": "Arithmetic", "dataset": {"name": "arith-data", "version": "1",
                        "sha256": null, "sample_count": 20},
                       "harness": {"name": "inspect", "task_ref": "arith_small@0"},
                       "scorers": ["match", "includes"], "metrics": ["accuracy"], "epochs": 1}],
            "metrics": [{"name": "accuracy", "higher_is_better": true, "threshold": null}]
        }))
        .expect("content")
    }

    fn faithful() -> Ran {
        Ran {
            task: "arith_small".into(),
            task_version: "0".into(),
            dataset_name: Some("arith-data".into()),
            dataset_samples: Some(20),
            epochs: Some(1),
            scorers: vec!["includes".into(), "match".into()],
            errored_samples: 0,
        }
    }

    #[test]
    fn a_faithful_run_has_no_deviation() {
        assert_eq!(deviations(&content(), &faithful()), vec![]);
        let by_name = Ran {
            task: "Arithmetic".into(),
            ..faithful()
        };
        assert_eq!(deviations(&content(), &by_name), vec![]);
    }

    #[test]
    fn every_difference_is_named() {
        let ran = Ran {
            task_version: "2".into(),
            dataset_name: Some("other-data".into()),
            dataset_samples: Some(19),
            epochs: Some(3),
            scorers: vec!["match".into()],
            errored_samples: 3,
            ..faithful()
        };
        let fields: Vec<String> = deviations(&content(), &ran)
            .into_iter()
            .map(|d| d.field)
            .collect();
        assert_eq!(
            fields,
            [
                "task_version",
                "dataset.name",
                "dataset.sample_count",
                "epochs",
                "scorers",
                "errored_samples"
            ]
        );
        let unknown = Ran {
            task: "gpqa".into(),
            ..faithful()
        };
        assert_eq!(
            deviations(&content(), &unknown),
            vec![deviation("task", "arith_small@0", "gpqa")]
        );
    }
}
