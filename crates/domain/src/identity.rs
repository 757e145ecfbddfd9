//! Accounts, roles and the values people type in: each valid by construction.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::ValidationError;

/// A role an account holds at an institute.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Author,
    Reviewer,
    Evaluator,
    Viewer,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Author,
        Role::Reviewer,
        Role::Evaluator,
        Role::Viewer,
    ];

    /// What the role lets its holder do at its institute, as `/v1/me` reports it.
    pub fn permissions(self) -> &'static [&'static str] {
        match self {
            Role::Admin => &[
                "read",
                "accounts:manage",
                "memberships:manage",
                "exchanges:manage",
            ],
            Role::Author => &["read", "protocols:draft", "protocols:comment"],
            Role::Reviewer => &[
                "read",
                "protocols:review",
                "protocols:comment",
                "results:release",
            ],
            Role::Evaluator => &["read", "runs:execute", "results:write"],
            Role::Viewer => &["read"],
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Author => "author",
            Role::Reviewer => "reviewer",
            Role::Evaluator => "evaluator",
            Role::Viewer => "viewer",
        }
    }
}

impl FromStr for Role {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| ValidationError::new("role", "is not a role"))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    Person,
    Service,
}

impl AccountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::Person => "person",
            AccountKind::Service => "service",
        }
    }
}

impl FromStr for AccountKind {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "person" => Ok(AccountKind::Person),
            "service" => Ok(AccountKind::Service),
            _ => Err(ValidationError::new("kind", "is not an account kind")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    Active,
    Disabled,
}

impl AccountStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::Disabled => "disabled",
        }
    }
}

impl FromStr for AccountStatus {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(AccountStatus::Active),
            "disabled" => Ok(AccountStatus::Disabled),
            _ => Err(ValidationError::new("status", "is not an account status")),
        }
    }
}

/// What a partner tool's service account may do, on top of its roles.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
pub enum Scope {
    #[serde(rename = "protocols:read")]
    ProtocolsRead,
    #[serde(rename = "exercises:read")]
    ExercisesRead,
    #[serde(rename = "runs:read")]
    RunsRead,
    #[serde(rename = "runs:write")]
    RunsWrite,
    /// Claim queued runs from the queue and hold them under a lease.
    #[serde(rename = "runs:execute")]
    RunsExecute,
    #[serde(rename = "results:read")]
    ResultsRead,
    #[serde(rename = "results:write")]
    ResultsWrite,
}

impl Scope {
    pub const ALL: [Scope; 7] = [
        Scope::ProtocolsRead,
        Scope::ExercisesRead,
        Scope::RunsRead,
        Scope::RunsWrite,
        Scope::RunsExecute,
        Scope::ResultsRead,
        Scope::ResultsWrite,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::ProtocolsRead => "protocols:read",
            Scope::ExercisesRead => "exercises:read",
            Scope::RunsRead => "runs:read",
            Scope::RunsWrite => "runs:write",
            Scope::RunsExecute => "runs:execute",
            Scope::ResultsRead => "results:read",
            Scope::ResultsWrite => "results:write",
        }
    }

    pub fn parse(field: &str, s: &str) -> Result<Self, ValidationError> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| ValidationError::new(field, format!("{s:?} is not a scope")))
    }
}

/// An e-mail address, kept as typed; compared case-insensitively by the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(field: &str, value: &str) -> Result<Self, ValidationError> {
        let value = value.trim();
        let invalid = || ValidationError::new(field, "is not an e-mail address");
        if value.len() > 254 || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid());
        }
        let (local, domain) = value.rsplit_once('@').ok_or_else(invalid)?;
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && !domain.contains('@');
        if local.is_empty() || local.len() > 64 || !domain_ok {
            return Err(invalid());
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A name shown to people: 1–200 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(field: &str, value: &str) -> Result<Self, ValidationError> {
        let value = value.trim();
        let count = value.chars().count();
        if count == 0 || count > 200 || value.chars().any(char::is_control) {
            return Err(ValidationError::new(
                field,
                "must be 1 to 200 characters, without control characters",
            ));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password a person chose: 12 to 128 characters. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

pub const PASSWORD_MIN_CHARS: usize = 12;
pub const PASSWORD_MAX_CHARS: usize = 128;

impl Password {
    pub fn parse(field: &str, value: &str) -> Result<Self, ValidationError> {
        let count = value.chars().count();
        if !(PASSWORD_MIN_CHARS..=PASSWORD_MAX_CHARS).contains(&count) {
            return Err(ValidationError::new(
                field,
                format!("must be {PASSWORD_MIN_CHARS} to {PASSWORD_MAX_CHARS} characters"),
            ));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// An account as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: Uuid,
    pub kind: AccountKind,
    /// Persons only.
    pub email: Option<String>,
    pub display_name: String,
    pub home_institute_id: Uuid,
    pub status: AccountStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A role granted directly at an institute, for a window of time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub id: Uuid,
    pub account_id: Uuid,
    pub institute_id: Uuid,
    pub role: Role,
    pub valid_from: DateTime<Utc>,
    pub valid_until: Option<DateTime<Utc>>,
    /// `None` for the first admins, made by `jointeval admin bootstrap`.
    pub granted_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl Membership {
    pub fn is_active_at(&self, at: DateTime<Utc>) -> bool {
        self.revoked_at.is_none()
            && self.valid_from <= at
            && self.valid_until.is_none_or(|until| at < until)
    }
}

/// A role at an institute that an account holds now, and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveRole {
    pub institute_id: Uuid,
    pub role: Role,
    /// The exchange that grants it, when it is a host role of exchanged personnel.
    pub exchange_id: Option<Uuid>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_need_a_local_part_and_a_dotted_domain() {
        for good in ["a@b.org", "Jane.Doe+x@dsit.gov.uk", " ada@nist.gov "] {
            assert!(Email::parse("email", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "a",
            "a@b",
            "@b.org",
            "a@.org",
            "a@b..org",
            "a b@c.org",
            "a@b.org.",
        ] {
            assert!(Email::parse("email", bad).is_err(), "{bad}");
        }
        assert!(Email::parse("email", &format!("{}@b.org", "a".repeat(65))).is_err());
    }

    #[test]
    fn passwords_are_12_to_128_characters_and_never_printed() {
        assert!(Password::parse("password", "short").is_err());
        assert!(Password::parse("password", &"x".repeat(129)).is_err());
        // Characters, not bytes: twelve multi-byte characters are enough.
        let p = Password::parse("password", &"é".repeat(12)).expect("valid");
        assert!(!format!("{p:?}").contains('é'));
    }

    #[test]
    fn roles_and_scopes_round_trip_through_their_names() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        for scope in Scope::ALL {
            assert_eq!(Scope::parse("scopes", scope.as_str()), Ok(scope));
        }
        assert!("root".parse::<Role>().is_err());
        assert!(Scope::parse("scopes", "everything").is_err());
    }
}
