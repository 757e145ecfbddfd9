use std::str::FromStr;

use chrono::{DateTime, Utc};
use jointeval_domain::{ActiveRole, Membership, Role};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::StoreError;

struct Row {
    id: Uuid,
    account_id: Uuid,
    institute_id: Uuid,
    role: String,
    valid_from: DateTime<Utc>,
    valid_until: Option<DateTime<Utc>>,
    granted_by: Option<Uuid>,
    created_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
}

impl TryFrom<Row> for Membership {
    type Error = StoreError;
    fn try_from(r: Row) -> Result<Self, StoreError> {
        Ok(Membership {
            id: r.id,
            account_id: r.account_id,
            institute_id: r.institute_id,
            role: Role::from_str(&r.role).map_err(StoreError::corrupt)?,
            valid_from: r.valid_from,
            valid_until: r.valid_until,
            granted_by: r.granted_by,
            created_at: r.created_at,
            revoked_at: r.revoked_at,
        })
    }
}

/// The roles an account holds at this moment: its direct memberships in their window,
/// and the host roles of its approved exchanges in theirs.
#[tracing::instrument(skip_all)]
pub async fn active_roles(
    conn: &mut PgConnection,
    account_id: Uuid,
) -> Result<Vec<ActiveRole>, StoreError> {
    let rows = sqlx::query!(
        r#"select institute_id as "institute_id!", role as "role!", null::uuid as exchange_id
           from memberships
           where account_id = $1 and revoked_at is null
             and valid_from <= now() and (valid_until is null or now() < valid_until)
           union all
           select e.host_institute_id, r.role, e.id
           from exchanges e cross join unnest(e.roles) as r(role)
           where e.account_id = $1 and e.status = 'approved'
             and e.starts_at <= now() and now() < e.ends_at"#,
        account_id
    )
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(ActiveRole {
                institute_id: r.institute_id,
                role: Role::from_str(&r.role).map_err(StoreError::corrupt)?,
                exchange_id: r.exchange_id,
            })
        })
        .collect()
}

/// Every direct membership of an account, past, present and future.
#[tracing::instrument(skip_all)]
pub async fn list_for_account(
    conn: &mut PgConnection,
    account_id: Uuid,
) -> Result<Vec<Membership>, StoreError> {
    let rows = sqlx::query_as!(
        Row,
        "select id, account_id, institute_id, role, valid_from, valid_until, granted_by,
                created_at, revoked_at
         from memberships where account_id = $1 order by valid_from, id",
        account_id
    )
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(Membership::try_from).collect()
}

pub struct NewMembership {
    pub account_id: Uuid,
    pub institute_id: Uuid,
    pub role: Role,
    pub valid_from: DateTime<Utc>,
    pub valid_until: Option<DateTime<Utc>>,
    pub granted_by: Option<Uuid>,
}

/// Grants a role; a window overlapping one of the same role is refused by the
/// `memberships_no_overlap` constraint.
#[tracing::instrument(skip_all)]
pub async fn grant(conn: &mut PgConnection, new: &NewMembership) -> Result<Membership, StoreError> {
    let row = sqlx::query_as!(
        Row,
        "insert into memberships (id, account_id, institute_id, role, valid_from, valid_until, granted_by)
         values ($1, $2, $3, $4, $5, $6, $7)
         returning id, account_id, institute_id, role, valid_from, valid_until, granted_by,
                   created_at, revoked_at",
        Uuid::now_v7(),
        new.account_id,
        new.institute_id,
        new.role.as_str(),
        new.valid_from,
        new.valid_until,
        new.granted_by
    )
    .fetch_one(conn)
    .await?;
    row.try_into()
}

/// Reads a membership and locks it until the transaction ends.
#[tracing::instrument(skip_all)]
pub async fn get_for_update(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<Membership>, StoreError> {
    let row = sqlx::query_as!(
        Row,
        "select id, account_id, institute_id, role, valid_from, valid_until, granted_by,
                created_at, revoked_at
         from memberships where id = $1 for update",
        id
    )
    .fetch_optional(conn)
    .await?;
    row.map(Membership::try_from).transpose()
}

/// Ends a membership now; it stays in the history.
#[tracing::instrument(skip_all)]
pub async fn revoke(
    conn: &mut PgConnection,
    id: Uuid,
    revoked_by: Uuid,
) -> Result<Membership, StoreError> {
    let row = sqlx::query_as!(
        Row,
        "update memberships set revoked_at = now(), revoked_by = $2
         where id = $1 and revoked_at is null
         returning id, account_id, institute_id, role, valid_from, valid_until, granted_by,
                   created_at, revoked_at",
        id,
        revoked_by
    )
    .fetch_one(conn)
    .await?;
    row.try_into()
}
