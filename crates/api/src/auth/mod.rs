//! Who is calling: tokens, passwords and secrets, and the authenticating extractor.

mod caller;
pub mod secrets;
pub mod tokens;

use std::time::Duration;

pub use caller::{
    Caller, CallerChangingPassword, not_found, request_meta, unauthorized, unreadable_authorization,
};
pub use tokens::TokenSettings;

/// How logins are checked and throttled.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub tokens: TokenSettings,
    /// Failed logins of one account, within `throttle_window`, before it is throttled.
    pub max_failures_per_login: i64,
    /// Failed logins from one client address, within `throttle_window`, before it is throttled.
    pub max_failures_per_addr: i64,
    pub throttle_window: Duration,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            tokens: TokenSettings::default(),
            max_failures_per_login: 5,
            max_failures_per_addr: 50,
            throttle_window: Duration::from_secs(15 * 60),
        }
    }
}
