use std::time::Duration;

use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::StoreError;

/// The schema, embedded in the binary from `migrations/`.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_connections: u32,
    /// How long a request waits for a connection before it is answered 503.
    pub acquire_timeout: Duration,
    /// The server's limits on each connection's statements, lock waits and idle open
    /// transactions (`statement_timeout`, `lock_timeout`,
    /// `idle_in_transaction_session_timeout`): nothing stuck holds a connection for long.
    /// `None` leaves the server's own setting.
    pub statement_timeout: Option<Duration>,
    pub lock_timeout: Option<Duration>,
    pub idle_in_transaction_timeout: Option<Duration>,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: None,
            lock_timeout: None,
            idle_in_transaction_timeout: None,
        }
    }
}

/// A bounded pool. It connects lazily, so a service started while its database is
/// down still starts answering (503) and recovers when the database returns.
pub fn connect(options: PgConnectOptions, settings: &PoolSettings) -> PgPool {
    let limits: Vec<(&str, String)> = [
        ("statement_timeout", settings.statement_timeout),
        ("lock_timeout", settings.lock_timeout),
        (
            "idle_in_transaction_session_timeout",
            settings.idle_in_transaction_timeout,
        ),
    ]
    .into_iter()
    .filter_map(|(name, limit)| limit.map(|d| (name, d.as_millis().to_string())))
    .collect();
    PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        .connect_lazy_with(options.application_name("jointeval").options(limits))
}

#[tracing::instrument(skip_all)]
pub async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// Whether the database answers.
pub async fn ping(pool: &PgPool) -> Result<(), StoreError> {
    sqlx::query_scalar!("select 1 as \"one!\"")
        .fetch_one(pool)
        .await?;
    Ok(())
}

/// Whether every migration this build knows has been applied, unchanged.
pub async fn migrations_current(pool: &PgPool) -> Result<bool, StoreError> {
    let table_exists =
        sqlx::query_scalar!("select to_regclass('_sqlx_migrations') is not null as \"exists!\"")
            .fetch_one(pool)
            .await?;
    if !table_exists {
        return Ok(false);
    }
    // sqlx's own bookkeeping table is not part of our schema, so this query is not
    // checked at compile time.
    let applied: Vec<(i64, Vec<u8>)> = sqlx::query_as(
        "select version, checksum from _sqlx_migrations where success order by version",
    )
    .fetch_all(pool)
    .await?;
    Ok(MIGRATOR.iter().all(|m| {
        applied
            .iter()
            .any(|(version, checksum)| *version == m.version && *checksum == m.checksum.as_ref())
    }))
}
