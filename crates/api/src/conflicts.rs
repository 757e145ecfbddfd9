//! Refusals for the state things are in, said once: each domain state error is a 409
//! problem of its own type, and a constraint the database names maps to the problem the
//! handler gives it (`on_constraint`), instead of each handler building its own.

use axum::http::StatusCode;
use jointeval_domain::comparison::NotComparable;
use jointeval_domain::exchange::TransitionRefused;
use jointeval_domain::exercise::ExerciseStateError;
use jointeval_domain::protocol::VersionStateError;
use jointeval_domain::run::{LeaseHeld, RunStateError};
use jointeval_store::StoreError;

use crate::problem::{ApiError, Problem};

fn state(kind: &str, detail: impl Into<String>) -> ApiError {
    Problem::typed(
        StatusCode::CONFLICT,
        kind,
        "Not possible in this state",
        detail,
    )
    .into()
}

impl From<RunStateError> for ApiError {
    fn from(e: RunStateError) -> Self {
        state("run-state", e.0)
    }
}

impl From<ExerciseStateError> for ApiError {
    fn from(e: ExerciseStateError) -> Self {
        state("exercise-state", e.0)
    }
}

impl From<VersionStateError> for ApiError {
    fn from(e: VersionStateError) -> Self {
        state("version-state", e.0)
    }
}

impl From<TransitionRefused> for ApiError {
    fn from(e: TransitionRefused) -> Self {
        state("exchange-state", e.0)
    }
}

impl From<NotComparable> for ApiError {
    fn from(e: NotComparable) -> Self {
        state("not-comparable", e.0)
    }
}

impl From<LeaseHeld> for ApiError {
    fn from(held: LeaseHeld) -> Self {
        Problem::typed(
            StatusCode::CONFLICT,
            "run-leased",
            "Leased to another worker",
            held.to_string(),
        )
        .into()
    }
}

/// A store result whose named constraint has an answer of its own.
pub(crate) trait OnConstraint<T> {
    /// `problem()` when the database refused the change by the constraint `name`; any
    /// other error as it is.
    fn on_constraint(self, name: &str, problem: impl FnOnce() -> ApiError) -> Result<T, ApiError>;
}

impl<T> OnConstraint<T> for Result<T, StoreError> {
    fn on_constraint(self, name: &str, problem: impl FnOnce() -> ApiError) -> Result<T, ApiError> {
        self.map_err(|e| match e {
            StoreError::Conflict { constraint } if constraint == name => problem(),
            other => other.into(),
        })
    }
}
