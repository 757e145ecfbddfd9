use jointeval_domain::{Institute, InstituteCode};
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::StoreError;

/// Institutes ordered by code, after the code `after` when given.
#[tracing::instrument(skip_all)]
pub async fn list(
    db: impl PgExecutor<'_>,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Institute>, StoreError> {
    let rows = sqlx::query!(
        "select id, code, name, created_at from institutes
         where code > $1
         order by code
         limit $2",
        after.unwrap_or(""),
        limit
    )
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(Institute {
                id: r.id,
                code: InstituteCode::parse("code", &r.code).map_err(StoreError::corrupt)?,
                name: r.name,
                created_at: r.created_at,
            })
        })
        .collect()
}

#[tracing::instrument(skip_all)]
pub async fn insert(
    db: impl PgExecutor<'_>,
    code: &InstituteCode,
    name: &str,
) -> Result<Institute, StoreError> {
    let id = Uuid::now_v7();
    let created_at = sqlx::query_scalar!(
        "insert into institutes (id, code, name) values ($1, $2, $3) returning created_at",
        id,
        code.as_str(),
        name
    )
    .fetch_one(db)
    .await?;
    Ok(Institute {
        id,
        code: code.clone(),
        name: name.to_owned(),
        created_at,
    })
}

#[tracing::instrument(skip_all)]
pub async fn get_by_code(
    db: impl PgExecutor<'_>,
    code: &str,
) -> Result<Option<Institute>, StoreError> {
    let row = sqlx::query!(
        "select id, code, name, created_at from institutes where code = $1",
        code
    )
    .fetch_optional(db)
    .await?;
    row.map(|r| {
        Ok(Institute {
            id: r.id,
            code: InstituteCode::parse("code", &r.code).map_err(StoreError::corrupt)?,
            name: r.name,
            created_at: r.created_at,
        })
    })
    .transpose()
}

/// Every institute; there are a handful.
#[tracing::instrument(skip_all)]
pub async fn all(db: impl PgExecutor<'_>) -> Result<Vec<Institute>, StoreError> {
    list(db, None, i64::MAX).await
}
