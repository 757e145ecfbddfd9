//! Every transaction knows who is acting, so that row-level security can be enforced by
//! the database itself without rewriting the store.

use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::StoreError;

/// Who a transaction acts for.
#[derive(Debug, Clone)]
pub enum ActingAs {
    /// An authenticated account, in the capacity of these institutes.
    Account { id: Uuid, institutes: Vec<Uuid> },
    /// The service itself, for one named purpose (`login`, `bootstrap`, `authenticate` …).
    System(&'static str),
}

pub type Tx = Transaction<'static, Postgres>;

/// Begins a transaction carrying the actor in transaction-local settings, which end
/// with the transaction: a pooled connection never carries them into the next request.
pub async fn begin(pool: &PgPool, acting: &ActingAs) -> Result<Tx, StoreError> {
    let mut tx = pool.begin().await?;
    let (actor, institutes) = match acting {
        ActingAs::Account { id, institutes } => (
            id.to_string(),
            institutes
                .iter()
                .map(Uuid::to_string)
                .collect::<Vec<_>>()
                .join(","),
        ),
        ActingAs::System(purpose) => (format!("system:{purpose}"), String::new()),
    };
    sqlx::query!(
        "select set_config('jointeval.actor', $1, true) as actor,
                set_config('jointeval.institutes', $2, true) as institutes",
        actor,
        institutes
    )
    .fetch_one(&mut *tx)
    .await?;
    Ok(tx)
}

/// Commits, with the error in the store's terms.
pub async fn commit(tx: Tx) -> Result<(), StoreError> {
    tx.commit().await?;
    Ok(())
}
