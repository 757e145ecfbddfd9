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
