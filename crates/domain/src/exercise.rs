//! Joint testing exercises: a model under test, the approved protocol versions used, the
//! participating institutes, and a window. An exercise starts only by joint agreement.

use std::collections::BTreeSet;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::ValidationError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExerciseStatus {
    /// Being planned; it starts once every participating institute agrees to the plan.
    Planned,
    Active,
    Completed,
    Cancelled,
}

impl ExerciseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ExerciseStatus::Planned => "planned",
            ExerciseStatus::Active => "active",
            ExerciseStatus::Completed => "completed",
            ExerciseStatus::Cancelled => "cancelled",
        }
    }

    /// The plan changes only while it is planned; a change withdraws the agreements.
    pub fn check_change_plan(self) -> Result<(), ExerciseStateError> {
        match self {
            ExerciseStatus::Planned => Ok(()),
            _ => Err(ExerciseStateError(
                "the plan changes only while the exercise is planned",
            )),
        }
    }

    pub fn check_agree(self) -> Result<(), ExerciseStateError> {
        match self {
            ExerciseStatus::Planned => Ok(()),
            _ => Err(ExerciseStateError("only a planned exercise is agreed to")),
        }
    }

    pub fn check_complete(self) -> Result<(), ExerciseStateError> {
        match self {
            ExerciseStatus::Active => Ok(()),
            _ => Err(ExerciseStateError("only an active exercise is completed")),
        }
    }

    pub fn check_cancel(self) -> Result<(), ExerciseStateError> {
        match self {
            ExerciseStatus::Planned | ExerciseStatus::Active => Ok(()),
            _ => Err(ExerciseStateError("the exercise is over already")),
        }
    }
}

impl FromStr for ExerciseStatus {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "planned" => Ok(ExerciseStatus::Planned),
            "active" => Ok(ExerciseStatus::Active),
            "completed" => Ok(ExerciseStatus::Completed),
            "cancelled" => Ok(ExerciseStatus::Cancelled),
            _ => Err(ValidationError::new("status", "is not an exercise status")),
        }
    }
}

/// Why an exercise cannot move as asked from where it stands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ExerciseStateError(pub &'static str);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ModelAccess {
    PublicApi,
    OpenWeights,
    Other,
}

impl ModelAccess {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelAccess::PublicApi => "public_api",
            ModelAccess::OpenWeights => "open_weights",
            ModelAccess::Other => "other",
        }
    }
}

impl FromStr for ModelAccess {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "public_api" => Ok(ModelAccess::PublicApi),
            "open_weights" => Ok(ModelAccess::OpenWeights),
            "other" => Ok(ModelAccess::Other),
            _ => Err(ValidationError::new(
                "model.access",
                "is not a kind of model access",
            )),
        }
    }
}

/// The model under test. Every run of the exercise must be of it (see
/// [`ModelUnderTest::is_named_by`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"provider": "ExampleAI", "name": "example-large", "version": "2026-10-01-release", "access": "public_api"}))]
pub struct ModelUnderTest {
    pub provider: String,
    pub name: String,
    pub version: String,
    pub access: ModelAccess,
}

impl ModelUnderTest {
    pub fn validate(&self) -> Vec<ValidationError> {
        let mut errors = Vec::new();
        for (field, value) in [
            ("model.provider", &self.provider),
            ("model.name", &self.name),
            ("model.version", &self.version),
        ] {
            let n = value.trim().chars().count();
            if n == 0 || n > 200 {
                errors.push(ValidationError::new(field, "must be 1 to 200 characters"));
            }
        }
        errors
    }

    /// Whether `model`, as a harness names the model it ran, is this one: its `version`
    /// alone; its `name` and `version` joined by `-`, `/`, `@` or `:`; or its `provider`
    /// (in any case) and `version` joined by `/`, as Inspect writes
    /// `openai/gpt-4o-2024-08-06`. The last two may follow a `/`-separated prefix (a
    /// serving API: `openrouter/openai/…`, `hf/meta-llama/…`). The name alone is not
    /// enough, as it leaves the version open; nor the version after another prefix, as
    /// `someone/8b` could be anyone's model.
    pub fn is_named_by(&self, model: &str) -> bool {
        let joined = ['-', '/', '@', ':'].map(|sep| format!("{}{sep}{}", self.name, self.version));
        let by_provider = format!("{}/{}", self.provider, self.version);
        let model = model.trim();
        model == self.version
            || std::iter::once(model)
                .chain(model.match_indices('/').map(|(at, _)| &model[at + 1..]))
                .any(|suffix| {
                    joined.iter().any(|form| form == suffix)
                        // The provider in any case, the version exactly.
                        || suffix.eq_ignore_ascii_case(&by_provider)
                            && suffix.ends_with(self.version.as_str())
                })
    }

    /// `model` must be this one (see [`Self::is_named_by`]); the error names `field`.
    pub fn check_named_by(&self, field: &str, model: &str) -> Result<(), ValidationError> {
        if self.is_named_by(model) {
            return Ok(());
        }
        Err(ValidationError::new(
            field,
            format!(
                "{model:?} is not the exercise's model under test, {} {} version {}: name its version ({:?}), or its name and version ({:?}) or provider and version, after a serving API's prefix if you like",
                self.provider,
                self.name,
                self.version,
                self.version,
                format!("{}-{}", self.name, self.version),
            ),
        ))
    }
}

/// An approved protocol version as an exercise needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedProtocol {
    pub protocol_id: Uuid,
    pub number: i32,
    pub approved: bool,
    pub participants: Vec<Uuid>,
}

/// The plan's own rules: a title, a forward window, at least two participants with the
/// lead among them, at least one protocol version, each approved and taken part in by
/// every participant of the exercise.
pub fn validate_plan(
    title: &str,
    lead: Uuid,
    participants: &[Uuid],
    protocols: &[PlannedProtocol],
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
) -> Vec<ValidationError> {
    let mut errors = Vec::new();
    let n = title.trim().chars().count();
    if n == 0 || n > 200 {
        errors.push(ValidationError::new("title", "must be 1 to 200 characters"));
    }
    if ends_at <= starts_at {
        errors.push(ValidationError::new("ends_at", "must be after starts_at"));
    }
    let distinct: BTreeSet<&Uuid> = participants.iter().collect();
    if distinct.len() < 2 || distinct.len() != participants.len() {
        errors.push(ValidationError::new(
            "participants",
            "must name two or more institutes, each once",
        ));
    } else if !participants.contains(&lead) {
        errors.push(ValidationError::new(
            "participants",
            "must include the lead institute",
        ));
    }
    if protocols.is_empty() {
        errors.push(ValidationError::new(
            "protocol_versions",
            "must name at least one approved protocol version",
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, p) in protocols.iter().enumerate() {
        let field = format!("protocol_versions[{i}]");
        if !seen.insert(p.protocol_id) {
            errors.push(ValidationError::new(&field, "names a protocol twice"));
        } else if !p.approved {
            errors.push(ValidationError::new(&field, "is not an approved version"));
        } else if !participants.iter().all(|i| p.participants.contains(i)) {
            errors.push(ValidationError::new(
                &field,
                "every participant of the exercise must participate in the protocol",
            ));
        }
    }
    errors
}

/// Whether every participating institute has agreed to the current plan.
pub fn all_agreed(participants: &[Uuid], agreed: &[Uuid]) -> bool {
    participants.iter().all(|p| agreed.contains(p))
}

#[derive(Debug, Clone, PartialEq)]
pub struct Exercise {
    pub id: Uuid,
    pub title: String,
    pub model: ModelUnderTest,
    pub lead_institute_id: Uuid,
    pub participants: Vec<Uuid>,
    /// (protocol id, version number) pairs.
    pub protocol_versions: Vec<(Uuid, i32)>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub status: ExerciseStatus,
    /// Bumped by every change of the plan; agreements are to one revision.
    pub plan_revision: i32,
    /// Institutes that agreed to the current plan.
    pub agreed: Vec<Uuid>,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    const US: Uuid = Uuid::from_u128(1);
    const UK: Uuid = Uuid::from_u128(2);
    const JP: Uuid = Uuid::from_u128(3);

    fn approved(participants: &[Uuid]) -> PlannedProtocol {
        PlannedProtocol {
            protocol_id: Uuid::from_u128(10),
            number: 1,
            approved: true,
            participants: participants.to_vec(),
        }
    }

    #[test]
    fn a_model_is_named_by_its_version_or_its_name_and_version() {
        let model = |name: &str, version: &str| ModelUnderTest {
            provider: "OpenAI".into(),
            name: name.into(),
            version: version.into(),
            access: ModelAccess::PublicApi,
        };
        let gpt = model("gpt-4o", "2024-08-06");
        for named in [
            "2024-08-06",
            "gpt-4o-2024-08-06",
            "openai/gpt-4o-2024-08-06",
            "azureai/openai/gpt-4o@2024-08-06",
            "gpt-4o:2024-08-06",
            " gpt-4o/2024-08-06 ",
            "openai/2024-08-06",
            "openrouter/OpenAI/2024-08-06",
        ] {
            assert!(gpt.is_named_by(named), "{named}");
        }
        for other in [
            "gpt-4o",
            "openai/gpt-4o",
            "gpt-4o-2024-05-13",
            "openai/gpt-4o-2024-08-06-mini",
            "someone/2024-08-06",
            "mockllm/model",
            "",
            "2024-08-06x",
        ] {
            assert!(!gpt.is_named_by(other), "{other}");
        }
        let mock = model("mockllm", "model");
        assert!(mock.is_named_by("mockllm/model") && mock.is_named_by("model"));
        assert!(
            !mock.is_named_by("other/model"),
            "the version after another's prefix"
        );
        let error = gpt
            .check_named_by("eval.model", "mockllm/model")
            .expect_err("another model");
        assert_eq!(error.field, "eval.model");
        assert!(
            error.message.contains("gpt-4o-2024-08-06"),
            "{}",
            error.message
        );
    }

    #[test]
    fn a_plan_needs_approved_protocols_that_every_participant_takes_part_in() {
        let now = Utc::now();
        let later = now + Duration::days(7);
        let fields = |e: Vec<ValidationError>| e.into_iter().map(|e| e.field).collect::<Vec<_>>();
        assert!(
            validate_plan("T", US, &[US, UK], &[approved(&[US, UK, JP])], now, later).is_empty()
        );
        assert_eq!(
            fields(validate_plan(
                "T",
                US,
                &[US, UK, JP],
                &[approved(&[US, UK])],
                now,
                later
            )),
            ["protocol_versions[0]"]
        );
        let mut draft = approved(&[US, UK]);
        draft.approved = false;
        assert_eq!(
            fields(validate_plan("T", US, &[US, UK], &[draft], now, later)),
            ["protocol_versions[0]"]
        );
        assert_eq!(
            fields(validate_plan(
                "T",
                US,
                &[US, UK],
                &[approved(&[US, UK]), approved(&[US, UK])],
                now,
                later
            )),
            ["protocol_versions[1]"]
        );
        assert_eq!(
            fields(validate_plan("T", US, &[US, UK], &[], now, later)),
            ["protocol_versions"]
        );
        assert_eq!(
            fields(validate_plan(
                "T",
                JP,
                &[US, UK],
                &[approved(&[US, UK])],
                now,
                later
            )),
            ["participants"]
        );
        assert_eq!(
            fields(validate_plan(
                "T",
                US,
                &[US],
                &[approved(&[US, UK])],
                now,
                later
            )),
            ["participants"]
        );
        assert_eq!(
            fields(validate_plan(
                " ",
                US,
                &[US, UK],
                &[approved(&[US, UK])],
                later,
                now
            )),
            ["title", "ends_at"]
        );
    }

    #[test]
    fn an_exercise_moves_planned_active_completed_or_cancelled() {
        use ExerciseStatus::*;
        assert!(Planned.check_change_plan().is_ok() && Planned.check_agree().is_ok());
        assert!(Active.check_change_plan().is_err() && Active.check_agree().is_err());
        assert!(Active.check_complete().is_ok() && Planned.check_complete().is_err());
        assert!(Planned.check_cancel().is_ok() && Active.check_cancel().is_ok());
        for over in [Completed, Cancelled] {
            assert!(
                over.check_cancel().is_err()
                    && over.check_complete().is_err()
                    && over.check_agree().is_err()
            );
        }
        assert!(all_agreed(&[US, UK], &[UK, US]));
        assert!(!all_agreed(&[US, UK], &[US]));
    }
}
