//! The answers given to requests with an `Idempotency-Key`, kept per account, so that a
//! retry gets the first answer instead of a second object.

use sqlx::PgConnection;
use uuid::Uuid;

use crate::StoreError;

/// The answer first given to `key`, with the hash of the request it answered.
pub struct StoredAnswer {
    pub request_sha256: String,
    pub status: i32,
    pub body: serde_json::Value,
}

#[tracing::instrument(skip_all)]
pub async fn first_answer(
    conn: &mut PgConnection,
    account_id: Uuid,
    key: &str,
) -> Result<Option<StoredAnswer>, StoreError> {
    // Waits for a concurrent request with the same key to commit or roll back.
    sqlx::query!(
        "select pg_advisory_xact_lock(hashtext($1::uuid::text || $2))",
        account_id,
        key
    )
    .execute(&mut *conn)
    .await?;
    Ok(sqlx::query_as!(
        StoredAnswer,
        "select request_sha256, status, body from idempotency_keys where account_id = $1 and key = $2",
        account_id,
        key
    )
    .fetch_optional(conn)
    .await?)
}

#[tracing::instrument(skip_all)]
pub async fn remember(
    conn: &mut PgConnection,
    account_id: Uuid,
    key: &str,
    request_sha256: &str,
    status: i32,
    body: &serde_json::Value,
) -> Result<(), StoreError> {
    sqlx::query!(
        "insert into idempotency_keys (account_id, key, request_sha256, status, body)
         values ($1, $2, $3, $4, $5)",
        account_id,
        key,
        request_sha256,
        status,
        body
    )
    .execute(conn)
    .await?;
    Ok(())
}
