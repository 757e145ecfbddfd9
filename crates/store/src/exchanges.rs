use std::str::FromStr;

use chrono::{DateTime, Utc};
use jointeval_domain::{Exchange, ExchangeStatus, Role};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::StoreError;

struct Row {
    id: Uuid,
    account_id: Uuid,
    home_institute_id: Uuid,
    host_institute_id: Uuid,
    roles: Vec<String>,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    status: String,
    proposed_by: Uuid,
    proposed_by_institute_id: Uuid,
    decided_by: Option<Uuid>,
    decided_at: Option<DateTime<Utc>>,
    ended_by: Option<Uuid>,
    ended_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

impl TryFrom<Row> for Exchange {
    type Error = StoreError;
    fn try_from(r: Row) -> Result<Self, StoreError> {
        Ok(Exchange {
            id: r.id,
            account_id: r.account_id,
            home_institute_id: r.home_institute_id,
            host_institute_id: r.host_institute_id,
            roles: r
                .roles
                .iter()
                .map(|role| Role::from_str(role).map_err(StoreError::corrupt))
                .collect::<Result<_, _>>()?,
            starts_at: r.starts_at,
            ends_at: r.ends_at,
            status: ExchangeStatus::from_str(&r.status).map_err(StoreError::corrupt)?,
            proposed_by: r.proposed_by,
            proposed_by_institute_id: r.proposed_by_institute_id,
            decided_by: r.decided_by,
            decided_at: r.decided_at,
            ended_by: r.ended_by,
            ended_at: r.ended_at,
            created_at: r.created_at,
        })
    }
}

pub struct NewExchange<'a> {
    pub account_id: Uuid,
    pub home_institute_id: Uuid,
    pub host_institute_id: Uuid,
    pub roles: &'a [Role],
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub proposed_by: Uuid,
    pub proposed_by_institute_id: Uuid,
}

/// Proposes an exchange; one overlapping a live exchange of the same person to the same
/// host is refused by the `exchanges_no_overlap` constraint.
#[tracing::instrument(skip_all)]
pub async fn insert(
    conn: &mut PgConnection,
    new: &NewExchange<'_>,
) -> Result<Exchange, StoreError> {
    let roles: Vec<String> = new.roles.iter().map(|r| r.as_str().to_owned()).collect();
    let row = sqlx::query_as!(
        Row,
        "insert into exchanges (id, account_id, home_institute_id, host_institute_id, roles,
                                starts_at, ends_at, proposed_by, proposed_by_institute_id)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         returning id, account_id, home_institute_id, host_institute_id, roles, starts_at, ends_at,
                   status, proposed_by, proposed_by_institute_id, decided_by, decided_at,
                   ended_by, ended_at, created_at",
        Uuid::now_v7(),
        new.account_id,
        new.home_institute_id,
        new.host_institute_id,
        &roles,
        new.starts_at,
        new.ends_at,
        new.proposed_by,
        new.proposed_by_institute_id
    )
    .fetch_one(conn)
    .await?;
    row.try_into()
}

/// An exchange; with `lock`, locked for the rest of the transaction.
#[tracing::instrument(skip_all)]
pub async fn get(
    conn: &mut PgConnection,
    id: Uuid,
    lock: bool,
) -> Result<Option<Exchange>, StoreError> {
    if lock {
        sqlx::query!("select id from exchanges where id = $1 for update", id)
            .fetch_optional(&mut *conn)
            .await?;
    }
    let row = sqlx::query_as!(
        Row,
        "select id, account_id, home_institute_id, host_institute_id, roles, starts_at, ends_at,
                status, proposed_by, proposed_by_institute_id, decided_by, decided_at,
                ended_by, ended_at, created_at
         from exchanges where id = $1",
        id
    )
    .fetch_optional(conn)
    .await?;
    row.map(Exchange::try_from).transpose()
}

#[derive(Debug, Default)]
pub struct ExchangeFilter {
    pub account_id: Option<Uuid>,
    /// Exchanges from or to this institute.
    pub institute_id: Option<Uuid>,
    pub status: Option<ExchangeStatus>,
}

/// The exchanges an actor sees: those of its administered institutes (either side)
/// and its own. Ordered by id, after `after`.
#[tracing::instrument(skip_all)]
pub async fn list_visible(
    conn: &mut PgConnection,
    administered: &[Uuid],
    own_account: Uuid,
    filter: &ExchangeFilter,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Exchange>, StoreError> {
    let rows = sqlx::query_as!(
        Row,
        "select id, account_id, home_institute_id, host_institute_id, roles, starts_at, ends_at,
                status, proposed_by, proposed_by_institute_id, decided_by, decided_at,
                ended_by, ended_at, created_at
         from exchanges
         where (home_institute_id = any($1) or host_institute_id = any($1) or account_id = $2)
           and ($3::uuid is null or account_id = $3)
           and ($4::uuid is null or home_institute_id = $4 or host_institute_id = $4)
           and ($5::text is null or status = $5)
           and id > $6
         order by id
         limit $7",
        administered,
        own_account,
        filter.account_id,
        filter.institute_id,
        filter.status.map(ExchangeStatus::as_str),
        after.unwrap_or(crate::BEFORE_ALL_IDS),
        limit
    )
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(Exchange::try_from).collect()
}

#[tracing::instrument(skip_all)]
pub async fn decide(
    conn: &mut PgConnection,
    id: Uuid,
    approve: bool,
    decided_by: Uuid,
) -> Result<Exchange, StoreError> {
    let status = if approve { "approved" } else { "rejected" };
    let row = sqlx::query_as!(
        Row,
        "update exchanges set status = $2, decided_by = $3, decided_at = now(), updated_at = now()
         where id = $1
         returning id, account_id, home_institute_id, host_institute_id, roles, starts_at, ends_at,
                   status, proposed_by, proposed_by_institute_id, decided_by, decided_at,
                   ended_by, ended_at, created_at",
        id,
        status,
        decided_by
    )
    .fetch_one(conn)
    .await?;
    row.try_into()
}

#[tracing::instrument(skip_all)]
pub async fn end(
    conn: &mut PgConnection,
    id: Uuid,
    ended_by: Uuid,
) -> Result<Exchange, StoreError> {
    let row = sqlx::query_as!(
        Row,
        "update exchanges set status = 'ended', ended_by = $2, ended_at = now(), updated_at = now()
         where id = $1
         returning id, account_id, home_institute_id, host_institute_id, roles, starts_at, ends_at,
                   status, proposed_by, proposed_by_institute_id, decided_by, decided_at,
                   ended_by, ended_at, created_at",
        id,
        ended_by
    )
    .fetch_one(conn)
    .await?;
    row.try_into()
}
