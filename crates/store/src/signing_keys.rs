//! The service's token signing keys (Ed25519). The newest key signs; a retired key
//! still verifies until the tokens it signed have expired.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::StoreError;

pub struct SigningKey {
    pub kid: String,
    /// PKCS#8 DER.
    pub private_key: Vec<u8>,
    pub public_key: Vec<u8>,
    pub created_at: DateTime<Utc>,
}

pub struct VerifyingKey {
    pub kid: String,
    pub public_key: Vec<u8>,
}

/// The key that signs new tokens.
#[tracing::instrument(skip_all)]
pub async fn current(conn: &mut PgConnection) -> Result<Option<SigningKey>, StoreError> {
    Ok(sqlx::query_as!(
        SigningKey,
        "select kid, private_key, public_key, created_at from signing_keys
         where retired_at is null order by created_at desc limit 1"
    )
    .fetch_optional(conn)
    .await?)
}

/// Keys whose tokens may still be alive: the current ones and those retired less than
/// `token_lifetime_secs` ago.
#[tracing::instrument(skip_all)]
pub async fn verifying(
    conn: &mut PgConnection,
    token_lifetime_secs: f64,
) -> Result<Vec<VerifyingKey>, StoreError> {
    Ok(sqlx::query_as!(
        VerifyingKey,
        "select kid, public_key from signing_keys
         where retired_at is null or retired_at > now() - make_interval(secs => $1)
         order by created_at desc",
        token_lifetime_secs
    )
    .fetch_all(conn)
    .await?)
}

/// Adds a key and retires the ones before it, atomically with the caller's transaction.
#[tracing::instrument(skip_all)]
pub async fn rotate(
    conn: &mut PgConnection,
    kid: &str,
    private_key: &[u8],
    public_key: &[u8],
) -> Result<(), StoreError> {
    // Serialises rotations, so that two starting instances do not both add a first key.
    sqlx::query!("lock table signing_keys in exclusive mode")
        .execute(&mut *conn)
        .await?;
    sqlx::query!("update signing_keys set retired_at = now() where retired_at is null")
        .execute(&mut *conn)
        .await?;
    sqlx::query!(
        "insert into signing_keys (kid, private_key, public_key) values ($1, $2, $3)",
        kid,
        private_key,
        public_key
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Whether a signing key exists, read under the same lock as `rotate`.
#[tracing::instrument(skip_all)]
pub async fn exists_locked(conn: &mut PgConnection) -> Result<bool, StoreError> {
    sqlx::query!("lock table signing_keys in exclusive mode")
        .execute(&mut *conn)
        .await?;
    Ok(
        sqlx::query_scalar!("select exists(select 1 from signing_keys) as \"exists!\"")
            .fetch_one(conn)
            .await?,
    )
}

/// The public key of `kid`, retired or not: what verifies an old signed checkpoint.
#[tracing::instrument(skip_all)]
pub async fn public_key(conn: &mut PgConnection, kid: &str) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(
        sqlx::query_scalar!("select public_key from signing_keys where kid = $1", kid)
            .fetch_optional(conn)
            .await?,
    )
}
