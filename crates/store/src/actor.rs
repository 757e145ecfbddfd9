//! Every transaction knows who is acting and for which request, so that row-level
//! security and the audit trail take it from the database session itself.

use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::StoreError;

/// Who a transaction acts for.
#[derive(Debug, Clone)]
pub enum ActingAs {
    /// An authenticated account, in the capacity of these institutes.
    Account {
        id: Uuid,
        institutes: Vec<Uuid>,
        request: RequestMeta,
    },
    /// The service itself, for one named purpose (`login`, `bootstrap`, `authenticate` …).
    System {
        purpose: &'static str,
        request: RequestMeta,
    },
}

impl ActingAs {
    /// The service's own work outside any request.
    pub fn system(purpose: &'static str) -> Self {
        Self::System {
            purpose,
            request: RequestMeta::default(),
        }
    }
}

/// The request a transaction serves, as the audit trail records it.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    pub request_id: Option<String>,
    pub client_addr: Option<String>,
}

pub type Tx = Transaction<'static, Postgres>;

/// Begins a transaction carrying the actor in transaction-local settings, which end
/// with the transaction: a pooled connection never carries them into the next request.
pub async fn begin(pool: &PgPool, acting: &ActingAs) -> Result<Tx, StoreError> {
    let mut tx = pool.begin().await?;
    let (actor, institutes, request) = match acting {
        ActingAs::Account {
            id,
            institutes,
            request,
        } => (
            id.to_string(),
            institutes
                .iter()
                .map(Uuid::to_string)
                .collect::<Vec<_>>()
                .join(","),
            request,
        ),
        ActingAs::System { purpose, request } => {
            (format!("system:{purpose}"), String::new(), request)
        }
    };
    sqlx::query!(
        "select set_config('jointeval.actor', $1, true) as actor,
                set_config('jointeval.institutes', $2, true) as institutes,
                set_config('jointeval.request_id', $3, true) as request_id,
                set_config('jointeval.client_addr', $4, true) as client_addr",
        actor,
        institutes,
        request.request_id.as_deref().unwrap_or(""),
        request.client_addr.as_deref().unwrap_or(""),
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
