//! PostgreSQL: the connection pool, migrations, and one module of queries per resource.
//! Every query is checked at compile time against the schema (`.sqlx/` offline data).

mod error;
pub mod institutes;
mod pool;

pub use error::StoreError;
pub use pool::{MIGRATOR, PoolSettings, connect, migrate, migrations_current, ping};
pub use sqlx::PgPool;
