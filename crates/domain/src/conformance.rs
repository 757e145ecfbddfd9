//! Whether a run did what its approved protocol version says: what an evaluation log
//! says was run, compared with the protocol's task. A difference is information for the
//! reviewers who release the run, not a reason to refuse the results.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::exercise::ModelUnderTest;
use crate::protocol::{ProtocolContent, Task};

/// What a run says was run. `None` is what it does not say, and is not checked: results
/// sent through the API say less than a log (no dataset name, say).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ran {
    /// The task, by the harness's name or the protocol's; when not said, the protocol's
    /// one task if it has one.
    pub task: Option<String>,
    pub task_version: Option<String>,
    pub dataset_name: Option<String>,
    /// The distinct samples run, errored ones among them.
    pub dataset_samples: Option<i64>,
    pub epochs: Option<i64>,
    pub scorers: Option<Vec<String>>,
    /// Samples that ended in an error instead of a score: a protocol expects none.
    pub errored_samples: i64,
    /// The model, as the harness names it.
    pub model: Option<String>,
    /// Generation settings, by Inspect's names: those the run set.
    pub generation: Option<serde_json::Map<String, Value>>,
    /// The solver, as the protocol names it (see [`crate::protocol::Task::solver`]);
    /// unlike the rest, a protocol that names one finds a run that does not say deviating.
    pub solver: Option<String>,
    /// Limits, by Inspect's names: those the run set.
    pub limits: Option<serde_json::Map<String, Value>>,
}

/// One difference between the protocol and the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"field": "epochs", "protocol": "3", "run": "1"}))]
pub struct Deviation {
    /// What differs: `task`, `task_version`, `dataset.name`, `dataset.sample_count`,
    /// `epochs`, `scorers`, `errored_samples`, `model`, `generation.<setting>`, `solver`
    /// or `limits.<limit>`.
    pub field: String,
    /// What the protocol version (or, for `model`, the exercise) says.
    pub protocol: String,
    /// What the run says was run; `(not stated)` when it does not say.
    pub run: String,
}

const NOT_STATED: &str = "(not stated)";

fn deviation(field: &str, protocol: impl ToString, run: impl ToString) -> Deviation {
    let run = run.to_string();
    Deviation {
        field: field.to_owned(),
        protocol: protocol.to_string(),
        run: if run.is_empty() {
            NOT_STATED.to_owned()
        } else {
            run
        },
    }
}

/// The protocol's task a run ran: the one whose `harness.task_ref` (without an
/// `@version`) or whose name is the run's task.
fn task_of<'a>(content: &'a ProtocolContent, task: &str) -> Option<&'a Task> {
    content
        .tasks
        .iter()
        .find(|t| t.harness.task_ref.split('@').next() == Some(task) || t.name == task)
}

/// The protocol's task a run is checked against: the one it names, or, when it names
/// none, the protocol's only task.
pub fn task_ran<'a>(content: &'a ProtocolContent, ran: &Ran) -> Option<&'a Task> {
    match &ran.task {
        Some(name) => task_of(content, name),
        None => (content.tasks.len() == 1).then(|| &content.tasks[0]),
    }
}

/// A setting's value as written, numbers compared as numbers (`0` is `0.0`).
fn same_setting(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn shown(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => NOT_STATED.to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Each setting the protocol fixes that the run did not set alike.
fn settings<'a>(
    out: &mut Vec<Deviation>,
    prefix: &str,
    wanted: impl IntoIterator<Item = (&'a str, Value)>,
    ran: &serde_json::Map<String, Value>,
) {
    for (key, want) in wanted {
        let got = ran.get(key);
        if !got.is_some_and(|got| same_setting(&want, got)) {
            out.push(deviation(
                &format!("{prefix}.{key}"),
                shown(Some(&want)),
                shown(got),
            ));
        }
    }
}

/// Every difference between `ran` and the protocol version (and the exercise's model), in
/// a fixed order; none is a verdict that the run is comparable with others that have none.
pub fn deviations(content: &ProtocolContent, model: &ModelUnderTest, ran: &Ran) -> Vec<Deviation> {
    let mut out = Vec::new();
    if let Some(named) = &ran.model
        && !model.is_named_by(named)
    {
        out.push(deviation(
            "model",
            format!(
                "{} {} version {}",
                model.provider, model.name, model.version
            ),
            named,
        ));
    }
    let known = || {
        content
            .tasks
            .iter()
            .map(|t| t.harness.task_ref.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let only = (content.tasks.len() == 1).then(|| &content.tasks[0]);
    // A task the protocol does not have is checked against its one task, if it has only
    // one, so that every other difference shows too.
    let task = task_ran(content, ran).or_else(|| {
        out.push(deviation(
            "task",
            known(),
            ran.task.as_deref().unwrap_or(NOT_STATED),
        ));
        ran.task.as_ref().and(only)
    });
    let Some(task) = task else {
        return out;
    };
    if let Some((_, version)) = task.harness.task_ref.split_once('@')
        && let Some(ran_version) = &ran.task_version
        && version != ran_version
    {
        out.push(deviation("task_version", version, ran_version));
    }
    let dataset = &task.dataset;
    if let Some(name) = &ran.dataset_name
        && !dataset.name.is_empty()
        && *name != dataset.name
    {
        out.push(deviation("dataset.name", &dataset.name, name));
    }
    if let Some(expected) = dataset.sample_count
        && let Some(samples) = ran.dataset_samples
        && Some(samples) != i64::try_from(expected).ok()
    {
        out.push(deviation("dataset.sample_count", expected, samples));
    }
    if let Some(epochs) = ran.epochs
        && epochs != i64::from(task.epochs)
    {
        out.push(deviation("epochs", task.epochs, epochs));
    }
    if let Some(scorers) = &ran.scorers {
        let mut expected: Vec<&str> = task.scorers.iter().map(String::as_str).collect();
        let mut got: Vec<&str> = scorers.iter().map(String::as_str).collect();
        expected.sort_unstable();
        got.sort_unstable();
        if expected != got {
            out.push(deviation("scorers", expected.join(", "), got.join(", ")));
        }
    }
    if ran.errored_samples > 0 {
        out.push(deviation("errored_samples", 0, ran.errored_samples));
    }
    if let (Some(wanted), Some(ran_generation)) = (&task.generation, &ran.generation) {
        let wanted = wanted.iter().map(|(k, v)| (k.as_str(), v.clone()));
        settings(&mut out, "generation", wanted, ran_generation);
    }
    if let Some(solver) = &task.solver
        && ran.solver.as_ref() != Some(solver)
    {
        out.push(deviation(
            "solver",
            solver,
            ran.solver.as_deref().unwrap_or_default(),
        ));
    }
    if let (Some(limits), Some(ran_limits)) = (&task.limits, &ran.limits) {
        let wanted = limits.named().into_iter().map(|(k, v)| (k, Value::from(v)));
        settings(&mut out, "limits", wanted, ran_limits);
    }
    out
}

/// What the stored results of a run show, for a run whose results came through the API.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResultFacts {
    pub samples: i64,
    pub epochs: i64,
    pub scorers: Vec<String>,
    pub errored_samples: i64,
}

impl Ran {
    /// What a run whose results came through the API says: its stored results, its model,
    /// and what its `config` states by Inspect's names (`task`, `task_version`, `dataset`,
    /// `solver`, generation settings and limits at its top level).
    pub fn from_results(facts: ResultFacts, model: &str, config: &Value) -> Self {
        let text = |key: &str| config.get(key).and_then(Value::as_str).map(str::to_owned);
        let settings = config.as_object().cloned().unwrap_or_default();
        Ran {
            task: text("task"),
            task_version: text("task_version"),
            dataset_name: text("dataset"),
            dataset_samples: Some(facts.samples),
            epochs: Some(facts.epochs),
            scorers: Some(facts.scorers),
            errored_samples: facts.errored_samples,
            model: Some(model.to_owned()),
            generation: Some(settings.clone()),
            solver: text("solver"),
            limits: Some(settings),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exercise::ModelAccess;

    fn content() -> ProtocolContent {
        serde_json::from_value(serde_json::json!({
            "objective": "o",
            "tasks": [{"name": "Arithmetic", "dataset": {"name": "arith-data", "version": "1",
                        "sha256": null, "sample_count": 20},
                       "harness": {"name": "inspect", "task_ref": "arith_small@0"},
                       "scorers": ["match", "includes"], "metrics": ["accuracy"], "epochs": 1,
                       "generation": {"temperature": 0, "max_tokens": 512},
                       "solver": "generate", "limits": {"message_limit": 10}}],
            "metrics": [{"name": "accuracy", "higher_is_better": true, "threshold": null}]
        }))
        .expect("content")
    }

    fn model() -> ModelUnderTest {
        ModelUnderTest {
            provider: "Inspect".into(),
            name: "mockllm".into(),
            version: "model".into(),
            access: ModelAccess::Other,
        }
    }

    fn settings(value: Value) -> Option<serde_json::Map<String, Value>> {
        value.as_object().cloned()
    }

    fn faithful() -> Ran {
        Ran {
            task: Some("arith_small".into()),
            task_version: Some("0".into()),
            dataset_name: Some("arith-data".into()),
            dataset_samples: Some(20),
            epochs: Some(1),
            scorers: Some(vec!["includes".into(), "match".into()]),
            errored_samples: 0,
            model: Some("mockllm/model".into()),
            generation: settings(
                serde_json::json!({"temperature": 0.0, "max_tokens": 512, "seed": 4}),
            ),
            solver: Some("generate".into()),
            limits: settings(serde_json::json!({"message_limit": 10, "epochs": 1})),
        }
    }

    fn fields(found: Vec<Deviation>) -> Vec<String> {
        found.into_iter().map(|d| d.field).collect()
    }

    #[test]
    fn a_faithful_run_has_no_deviation() {
        assert_eq!(deviations(&content(), &model(), &faithful()), vec![]);
        let by_name = Ran {
            task: Some("Arithmetic".into()),
            ..faithful()
        };
        assert_eq!(deviations(&content(), &model(), &by_name), vec![]);
    }

    #[test]
    fn every_difference_is_named() {
        let ran = Ran {
            task_version: Some("2".into()),
            dataset_name: Some("other-data".into()),
            dataset_samples: Some(19),
            epochs: Some(3),
            scorers: Some(vec!["match".into()]),
            errored_samples: 3,
            model: Some("openai/gpt-4o".into()),
            generation: settings(serde_json::json!({"temperature": 0.7})),
            solver: Some("chain_of_thought, generate".into()),
            limits: settings(serde_json::json!({"message_limit": 50})),
            ..faithful()
        };
        let found = deviations(&content(), &model(), &ran);
        assert_eq!(
            fields(found.clone()),
            [
                "model",
                "task_version",
                "dataset.name",
                "dataset.sample_count",
                "epochs",
                "scorers",
                "errored_samples",
                "generation.max_tokens",
                "generation.temperature",
                "solver",
                "limits.message_limit"
            ]
        );
        assert_eq!(
            found[0],
            deviation("model", "Inspect mockllm version model", "openai/gpt-4o")
        );
        assert_eq!(
            found[7],
            deviation("generation.max_tokens", "512", NOT_STATED)
        );
        assert_eq!(found[8], deviation("generation.temperature", "0", "0.7"));
    }

    #[test]
    fn another_task_is_named_and_the_rest_still_checked() {
        let unknown = Ran {
            task: Some("gpqa".into()),
            epochs: Some(3),
            ..faithful()
        };
        assert_eq!(
            deviations(&content(), &model(), &unknown),
            vec![
                deviation("task", "arith_small@0", "gpqa"),
                deviation("epochs", 1, 3)
            ]
        );
        let mut two = content();
        let mut second = two.tasks[0].clone();
        second.name = "Other".into();
        second.harness.task_ref = "other".into();
        two.tasks.push(second);
        assert_eq!(
            deviations(&two, &model(), &unknown),
            vec![deviation("task", "arith_small@0, other", "gpqa")]
        );
        let unsaid = Ran {
            task: None,
            ..faithful()
        };
        assert_eq!(deviations(&content(), &model(), &unsaid), vec![]);
        assert_eq!(fields(deviations(&two, &model(), &unsaid)), ["task"]);
    }

    #[test]
    fn what_a_run_does_not_say_is_not_checked_but_a_protocols_solver_is() {
        let api = Ran::from_results(
            ResultFacts {
                samples: 20,
                epochs: 1,
                scorers: vec!["match".into(), "includes".into()],
                errored_samples: 0,
            },
            "mockllm/model",
            &serde_json::json!({"temperature": 0, "max_tokens": 512, "message_limit": 10}),
        );
        assert_eq!(api.dataset_name, None);
        assert_eq!(
            deviations(&content(), &model(), &api),
            vec![deviation("solver", "generate", NOT_STATED)]
        );
        let mut free = content();
        free.tasks[0].generation = None;
        free.tasks[0].solver = None;
        free.tasks[0].limits = None;
        let bare = Ran::from_results(
            ResultFacts {
                samples: 20,
                epochs: 1,
                scorers: vec!["match".into(), "includes".into()],
                errored_samples: 0,
            },
            "model",
            &serde_json::json!({}),
        );
        assert_eq!(deviations(&free, &model(), &bare), vec![]);
    }
}
