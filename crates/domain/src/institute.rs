use std::fmt;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::ValidationError;

/// A party to the partnership, e.g. `US` or `UK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Institute {
    pub id: Uuid,
    pub code: InstituteCode,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// An institute's short code: 2–16 characters, upper-case letters, digits and `_`,
/// starting with a letter (the database checks the same rule).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InstituteCode(String);

impl InstituteCode {
    pub fn parse(field: &str, value: &str) -> Result<Self, ValidationError> {
        let mut chars = value.chars();
        let starts_with_letter = chars.next().is_some_and(|c| c.is_ascii_uppercase());
        let rest_ok = chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if (2..=16).contains(&value.len()) && starts_with_letter && rest_ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(ValidationError::new(
                field,
                "must be 2 to 16 characters: upper-case letters, digits or '_', starting with a letter",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InstituteCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn institute_codes_are_short_upper_case_words() {
        for good in ["US", "UK", "JP_AISI", "A1", "ABCDEFGHIJKLMNOP"] {
            assert_eq!(
                InstituteCode::parse("code", good).map(|c| c.to_string()),
                Ok(good.to_string())
            );
        }
        for bad in [
            "",
            "U",
            "us",
            "1US",
            "U-K",
            "ABCDEFGHIJKLMNOPQ",
            "ÜK",
            "U K",
        ] {
            let err = InstituteCode::parse("code", bad).expect_err(bad);
            assert_eq!(err.field, "code");
        }
    }
}
