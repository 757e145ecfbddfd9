//! PostgreSQL: the connection pool, migrations, and one module of queries per resource.
//! Every query is checked at compile time against the schema (`.sqlx/` offline data).
//! Store functions take a connection inside a transaction begun with [`begin`], which
//! records who is acting.

pub mod accounts;
mod actor;
pub mod audit;
pub mod comparisons;
pub mod credentials;
mod error;
pub mod exchanges;
pub mod exercises;
pub mod idempotency;
pub mod institutes;
pub mod login_failures;
pub mod memberships;
mod pool;
pub mod protocols;
pub mod roles;
pub mod runs;
pub mod signing_keys;

pub use actor::{ActingAs, RequestMeta, Tx, begin, commit};
pub use error::StoreError;
pub use pool::{MIGRATOR, PoolSettings, connect, migrate, migrations_current, ping};
pub use sqlx::{PgConnection, PgPool};

/// Where a keyset page starts without a cursor: below every id. A cursor is always a
/// plain bound (`id > $n`), never `$n is null or id > $n` nor a `coalesce`: under
/// row-level security only a bare parameter becomes an index bound in a prepared
/// statement's generic plan, and a deep page of a 1,000,000-row run read every row
/// before it.
pub(crate) const BEFORE_ALL_IDS: uuid::Uuid = uuid::Uuid::nil();

/// `text` as a literal inside a LIKE pattern.
pub(crate) fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}
