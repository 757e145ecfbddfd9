//! Password hashes and service-account secrets. Only hashes are stored.

use jointeval_domain::Scope;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::StoreError;

#[tracing::instrument(skip_all)]
pub async fn set_password(
    conn: &mut PgConnection,
    account_id: Uuid,
    hash: &str,
    must_change: bool,
) -> Result<(), StoreError> {
    sqlx::query!(
        "insert into password_credentials (account_id, hash, must_change) values ($1, $2, $3)
         on conflict (account_id) do update
           set hash = excluded.hash, must_change = excluded.must_change, updated_at = now()",
        account_id,
        hash,
        must_change
    )
    .execute(conn)
    .await?;
    Ok(())
}

#[tracing::instrument(skip_all)]
pub async fn password_hash(
    conn: &mut PgConnection,
    account_id: Uuid,
) -> Result<Option<String>, StoreError> {
    Ok(sqlx::query_scalar!(
        "select hash from password_credentials where account_id = $1",
        account_id
    )
    .fetch_optional(conn)
    .await?)
}

#[tracing::instrument(skip_all)]
pub async fn set_service_secret(
    conn: &mut PgConnection,
    account_id: Uuid,
    secret_hash: &str,
    scopes: &[Scope],
) -> Result<(), StoreError> {
    let scopes: Vec<String> = scopes.iter().map(|s| s.as_str().to_owned()).collect();
    sqlx::query!(
        "insert into service_credentials (account_id, secret_hash, scopes) values ($1, $2, $3)
         on conflict (account_id) do update
           set secret_hash = excluded.secret_hash, scopes = excluded.scopes, rotated_at = now()",
        account_id,
        secret_hash,
        &scopes
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A service account's secret hash and scopes.
pub struct ServiceSecret {
    pub secret_hash: String,
    pub scopes: Vec<Scope>,
}

#[tracing::instrument(skip_all)]
pub async fn service_secret(
    conn: &mut PgConnection,
    account_id: Uuid,
) -> Result<Option<ServiceSecret>, StoreError> {
    let row = sqlx::query!(
        "select secret_hash, scopes from service_credentials where account_id = $1",
        account_id
    )
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        Ok(ServiceSecret {
            secret_hash: r.secret_hash,
            scopes: parse_scopes(&r.scopes)?,
        })
    })
    .transpose()
}

pub(crate) fn parse_scopes(stored: &[String]) -> Result<Vec<Scope>, StoreError> {
    stored
        .iter()
        .map(|s| Scope::parse("scopes", s).map_err(StoreError::corrupt))
        .collect()
}

#[tracing::instrument(skip_all)]
pub async fn must_change_password(
    conn: &mut PgConnection,
    account_id: Uuid,
) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar!(
        "select must_change from password_credentials where account_id = $1",
        account_id
    )
    .fetch_optional(conn)
    .await?
    .unwrap_or(false))
}

/// The account's token generation: the tokens it holds are good only while it is the one
/// they were issued with.
#[tracing::instrument(skip_all)]
pub async fn token_generation(
    conn: &mut PgConnection,
    account_id: Uuid,
) -> Result<Option<i64>, StoreError> {
    Ok(sqlx::query_scalar!(
        "select token_generation from accounts where id = $1",
        account_id
    )
    .fetch_optional(conn)
    .await?)
}

/// Ends every token the account holds now, for good: they carry the generation this
/// raises. The account's version (its ETag) is left as it was.
#[tracing::instrument(skip_all)]
pub async fn revoke_tokens(conn: &mut PgConnection, account_id: Uuid) -> Result<(), StoreError> {
    sqlx::query!(
        "update accounts set token_generation = token_generation + 1 where id = $1",
        account_id
    )
    .execute(conn)
    .await?;
    Ok(())
}
