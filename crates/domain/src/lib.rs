//! The domain: types that are valid by construction, and the decisions of the service.
//! Pure Rust, no IO: every rule here is reached by a unit test without a database.

pub mod audit;
pub mod canonical;
pub mod comparison;
pub mod conformance;
pub mod exchange;
pub mod exercise;
pub mod identity;
pub mod institute;
pub mod policy;
pub mod protocol;
pub mod run;

pub use exchange::{Exchange, ExchangePhase, ExchangeStatus, TransitionRefused};
pub use identity::{
    Account, AccountKind, AccountStatus, ActiveRole, DisplayName, Email, Membership, Password,
    Role, Scope,
};
pub use institute::{Institute, InstituteCode};
pub use policy::{
    AccountRef, Action, Actor, Decision, Denial, ExchangeRef, JointRef, Resource,
    agreement_capacities, choose_capacity, claim_capacities, decide, execution_capacities,
    review_capacities,
};

/// Why a value given to the service was refused, with the field it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}
