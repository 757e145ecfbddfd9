//! Exchanges of personnel: proposed by one side, approved or rejected by the other,
//! in force from their start to their end, or until either side ends them.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::ValidationError;
use crate::identity::Role;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeStatus {
    Proposed,
    Approved,
    Rejected,
    Ended,
}

impl ExchangeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeStatus::Proposed => "proposed",
            ExchangeStatus::Approved => "approved",
            ExchangeStatus::Rejected => "rejected",
            ExchangeStatus::Ended => "ended",
        }
    }
}

impl FromStr for ExchangeStatus {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "proposed" => Ok(ExchangeStatus::Proposed),
            "approved" => Ok(ExchangeStatus::Approved),
            "rejected" => Ok(ExchangeStatus::Rejected),
            "ended" => Ok(ExchangeStatus::Ended),
            _ => Err(ValidationError::new("status", "is not an exchange status")),
        }
    }
}

/// Where an exchange stands at a moment, as people ask about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExchangePhase {
    /// Waiting for the other side.
    Proposed,
    Rejected,
    /// Approved, not started yet.
    Upcoming,
    /// In force: the person holds the host roles.
    Active,
    /// Past its end, or ended early.
    Ended,
}

impl ExchangePhase {
    pub fn as_str(self) -> &'static str {
        match self {
            ExchangePhase::Proposed => "proposed",
            ExchangePhase::Rejected => "rejected",
            ExchangePhase::Upcoming => "upcoming",
            ExchangePhase::Active => "active",
            ExchangePhase::Ended => "ended",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    pub id: Uuid,
    pub account_id: Uuid,
    pub home_institute_id: Uuid,
    pub host_institute_id: Uuid,
    pub roles: Vec<Role>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub status: ExchangeStatus,
    pub proposed_by: Uuid,
    pub proposed_by_institute_id: Uuid,
    pub decided_by: Option<Uuid>,
    pub decided_at: Option<DateTime<Utc>>,
    pub ended_by: Option<Uuid>,
    pub ended_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// Why a transition cannot happen from where the exchange stands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TransitionRefused(pub &'static str);

impl Exchange {
    pub fn phase(&self, now: DateTime<Utc>) -> ExchangePhase {
        match self.status {
            ExchangeStatus::Proposed => ExchangePhase::Proposed,
            ExchangeStatus::Rejected => ExchangePhase::Rejected,
            ExchangeStatus::Ended => ExchangePhase::Ended,
            ExchangeStatus::Approved if now < self.starts_at => ExchangePhase::Upcoming,
            ExchangeStatus::Approved if now < self.ends_at => ExchangePhase::Active,
            ExchangeStatus::Approved => ExchangePhase::Ended,
        }
    }

    /// Approving or rejecting: only a proposal is decided, and not once it has lapsed.
    pub fn check_decide(&self, now: DateTime<Utc>) -> Result<(), TransitionRefused> {
        if self.status != ExchangeStatus::Proposed {
            return Err(TransitionRefused(
                "only a proposed exchange is approved or rejected",
            ));
        }
        if now >= self.ends_at {
            return Err(TransitionRefused("the exchange's window has passed"));
        }
        Ok(())
    }

    /// Ending early: a proposal is withdrawn, an approved exchange stops now.
    pub fn check_end(&self, now: DateTime<Utc>) -> Result<(), TransitionRefused> {
        match self.phase(now) {
            ExchangePhase::Proposed | ExchangePhase::Upcoming | ExchangePhase::Active => Ok(()),
            ExchangePhase::Rejected | ExchangePhase::Ended => {
                Err(TransitionRefused("the exchange is already over"))
            }
        }
    }
}

/// A proposal's own rules: two different institutes, a window that ends after it
/// starts and has not passed, at least one role and no role twice.
pub fn validate_proposal(
    home_institute_id: Uuid,
    host_institute_id: Uuid,
    roles: &[Role],
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Vec<ValidationError> {
    let mut errors = Vec::new();
    if home_institute_id == host_institute_id {
        errors.push(ValidationError::new(
            "host_institute",
            "must differ from the home institute",
        ));
    }
    if roles.is_empty() {
        errors.push(ValidationError::new("roles", "must name at least one role"));
    }
    let mut sorted = roles.to_vec();
    sorted.sort();
    sorted.dedup();
    if sorted.len() != roles.len() {
        errors.push(ValidationError::new("roles", "must not name a role twice"));
    }
    if ends_at <= starts_at {
        errors.push(ValidationError::new("ends_at", "must be after starts_at"));
    } else if ends_at <= now {
        errors.push(ValidationError::new("ends_at", "must be in the future"));
    }
    errors
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn exchange(status: ExchangeStatus, starts_in: i64, ends_in: i64) -> (Exchange, DateTime<Utc>) {
        let now = Utc::now();
        let e = Exchange {
            id: Uuid::nil(),
            account_id: Uuid::nil(),
            home_institute_id: Uuid::from_u128(1),
            host_institute_id: Uuid::from_u128(2),
            roles: vec![Role::Viewer],
            starts_at: now + Duration::days(starts_in),
            ends_at: now + Duration::days(ends_in),
            status,
            proposed_by: Uuid::nil(),
            proposed_by_institute_id: Uuid::from_u128(1),
            decided_by: None,
            decided_at: None,
            ended_by: None,
            ended_at: None,
            created_at: now,
        };
        (e, now)
    }

    #[test]
    fn an_approved_exchange_is_in_force_only_inside_its_window() {
        for (starts, ends, phase) in [
            (1, 2, ExchangePhase::Upcoming),
            (-1, 1, ExchangePhase::Active),
            (-2, -1, ExchangePhase::Ended),
        ] {
            let (e, now) = exchange(ExchangeStatus::Approved, starts, ends);
            assert_eq!(e.phase(now), phase);
        }
    }

    #[test]
    fn only_proposals_are_decided_and_only_live_exchanges_ended() {
        let (proposed, now) = exchange(ExchangeStatus::Proposed, -1, 1);
        assert!(proposed.check_decide(now).is_ok());
        assert!(proposed.check_end(now).is_ok());
        let (lapsed, now) = exchange(ExchangeStatus::Proposed, -2, -1);
        assert!(lapsed.check_decide(now).is_err());
        for status in [
            ExchangeStatus::Approved,
            ExchangeStatus::Rejected,
            ExchangeStatus::Ended,
        ] {
            let (e, now) = exchange(status, -1, 1);
            assert!(e.check_decide(now).is_err(), "{status:?}");
        }
        let (rejected, now) = exchange(ExchangeStatus::Rejected, -1, 1);
        assert!(rejected.check_end(now).is_err());
        let (over, now) = exchange(ExchangeStatus::Approved, -2, -1);
        assert!(over.check_end(now).is_err());
    }

    #[test]
    fn proposals_need_two_institutes_a_forward_window_and_distinct_roles() {
        let now = Utc::now();
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let later = now + Duration::days(30);
        assert!(validate_proposal(a, b, &[Role::Viewer], now, later, now).is_empty());
        let fields = |errors: Vec<ValidationError>| -> Vec<String> {
            errors.into_iter().map(|e| e.field).collect()
        };
        assert_eq!(
            fields(validate_proposal(a, a, &[Role::Viewer], now, later, now)),
            ["host_institute"]
        );
        assert_eq!(
            fields(validate_proposal(a, b, &[], now, later, now)),
            ["roles"]
        );
        assert_eq!(
            fields(validate_proposal(
                a,
                b,
                &[Role::Viewer, Role::Viewer],
                now,
                later,
                now
            )),
            ["roles"]
        );
        assert_eq!(
            fields(validate_proposal(a, b, &[Role::Viewer], later, now, now)),
            ["ends_at"]
        );
        let past = now - Duration::days(1);
        assert_eq!(
            fields(validate_proposal(
                a,
                b,
                &[Role::Viewer],
                past - Duration::days(1),
                past,
                now
            )),
            ["ends_at"]
        );
    }
}
