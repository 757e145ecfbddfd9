use std::str::FromStr;

use chrono::{DateTime, Utc};
use jointeval_domain::{Account, AccountKind, AccountStatus, DisplayName, Email};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::StoreError;

struct Row {
    id: Uuid,
    kind: String,
    email: Option<String>,
    display_name: String,
    home_institute_id: Uuid,
    status: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<Row> for Account {
    type Error = StoreError;
    fn try_from(r: Row) -> Result<Self, StoreError> {
        Ok(Account {
            id: r.id,
            kind: AccountKind::from_str(&r.kind).map_err(StoreError::corrupt)?,
            email: r.email,
            display_name: r.display_name,
            home_institute_id: r.home_institute_id,
            status: AccountStatus::from_str(&r.status).map_err(StoreError::corrupt)?,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

pub struct NewAccount<'a> {
    pub kind: AccountKind,
    pub email: Option<&'a Email>,
    pub display_name: &'a DisplayName,
    pub home_institute_id: Uuid,
}

#[tracing::instrument(skip_all)]
pub async fn insert(conn: &mut PgConnection, new: &NewAccount<'_>) -> Result<Account, StoreError> {
    let row = sqlx::query_as!(
        Row,
        "insert into accounts (id, kind, email, display_name, home_institute_id)
         values ($1, $2, $3, $4, $5)
         returning id, kind, email, display_name, home_institute_id, status, created_at, updated_at",
        Uuid::now_v7(),
        new.kind.as_str(),
        new.email.map(Email::as_str),
        new.display_name.as_str(),
        new.home_institute_id
    )
    .fetch_one(conn)
    .await?;
    row.try_into()
}

/// An account; with `lock`, locked for the rest of the transaction.
#[tracing::instrument(skip_all)]
pub async fn get(
    conn: &mut PgConnection,
    id: Uuid,
    lock: bool,
) -> Result<Option<Account>, StoreError> {
    if lock {
        sqlx::query!("select id from accounts where id = $1 for update", id)
            .fetch_optional(&mut *conn)
            .await?;
    }
    let row = sqlx::query_as!(
        Row,
        "select id, kind, email, display_name, home_institute_id, status, created_at, updated_at
         from accounts where id = $1",
        id
    )
    .fetch_optional(conn)
    .await?;
    row.map(Account::try_from).transpose()
}

/// What a person's login needs: the account and its password hash.
pub struct PersonLogin {
    pub account: Account,
    pub password_hash: String,
    pub must_change_password: bool,
    /// The token generation this password is good for (see `credentials::revoke_tokens`).
    pub token_generation: i64,
}

#[tracing::instrument(skip_all)]
pub async fn find_person_login(
    conn: &mut PgConnection,
    email: &str,
) -> Result<Option<PersonLogin>, StoreError> {
    let row = sqlx::query!(
        "select a.id, a.kind, a.email, a.display_name, a.home_institute_id, a.status,
                a.created_at, a.updated_at, a.token_generation, c.hash, c.must_change
         from accounts a join password_credentials c on c.account_id = a.id
         where lower(a.email) = lower($1) and a.kind = 'person'",
        email
    )
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        Ok(PersonLogin {
            account: Row {
                id: r.id,
                kind: r.kind,
                email: r.email,
                display_name: r.display_name,
                home_institute_id: r.home_institute_id,
                status: r.status,
                created_at: r.created_at,
                updated_at: r.updated_at,
            }
            .try_into()?,
            password_hash: r.hash,
            must_change_password: r.must_change,
            token_generation: r.token_generation,
        })
    })
    .transpose()
}

/// Filters of the account list.
#[derive(Debug, Default)]
pub struct AccountFilter {
    pub home_institute_id: Option<Uuid>,
    pub kind: Option<AccountKind>,
    pub status: Option<AccountStatus>,
    /// Text in the e-mail address or the display name.
    pub q: Option<String>,
}

/// The accounts an admin of `administered` sees: those whose home is one of them, and
/// those exchanged into one of them right now. Ordered by id, after `after`.
#[tracing::instrument(skip_all)]
pub async fn list_visible(
    conn: &mut PgConnection,
    administered: &[Uuid],
    filter: &AccountFilter,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Account>, StoreError> {
    let pattern = filter
        .q
        .as_ref()
        .map(|q| format!("%{}%", crate::escape_like(q)));
    let rows = sqlx::query_as!(
        Row,
        r#"select id, kind, email, display_name, home_institute_id, status, created_at, updated_at
           from accounts a
           where (a.home_institute_id = any($1)
                  or exists (select 1 from exchanges e
                             where e.account_id = a.id and e.host_institute_id = any($1)
                               and e.status = 'approved' and e.starts_at <= now() and now() < e.ends_at))
             and ($2::uuid is null or a.home_institute_id = $2)
             and ($3::text is null or a.kind = $3)
             and ($4::text is null or a.status = $4)
             and ($5::text is null or a.email ilike $5 or a.display_name ilike $5)
             and a.id > $6
           order by a.id
           limit $7"#,
        administered,
        filter.home_institute_id,
        filter.kind.map(AccountKind::as_str),
        filter.status.map(AccountStatus::as_str),
        pattern,
        after.unwrap_or(crate::BEFORE_ALL_IDS),
        limit
    )
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(Account::try_from).collect()
}

#[tracing::instrument(skip_all)]
pub async fn update(
    conn: &mut PgConnection,
    id: Uuid,
    email: Option<&Email>,
    display_name: Option<&DisplayName>,
    status: Option<AccountStatus>,
) -> Result<Account, StoreError> {
    let row = sqlx::query_as!(
        Row,
        "update accounts set
            email = coalesce($2, email),
            display_name = coalesce($3, display_name),
            status = coalesce($4, status),
            updated_at = now()
         where id = $1
         returning id, kind, email, display_name, home_institute_id, status, created_at, updated_at",
        id,
        email.map(Email::as_str),
        display_name.map(DisplayName::as_str),
        status.map(AccountStatus::as_str)
    )
    .fetch_one(conn)
    .await?;
    row.try_into()
}

/// Institutes hosting the account through an exchange in progress.
#[tracing::instrument(skip_all)]
pub async fn hosted_by(conn: &mut PgConnection, account_id: Uuid) -> Result<Vec<Uuid>, StoreError> {
    Ok(sqlx::query_scalar!(
        "select host_institute_id from exchanges
         where account_id = $1 and status = 'approved' and starts_at <= now() and now() < ends_at",
        account_id
    )
    .fetch_all(conn)
    .await?)
}

/// Whether `account` is an active person of `institute`: all that an admin proposing an
/// exchange may learn of an account its policies do not let it see.
#[tracing::instrument(skip_all)]
pub async fn is_active_person_of(
    conn: &mut PgConnection,
    account: Uuid,
    institute: Uuid,
) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar!(
        r#"select jointeval_is_active_person_of($1, $2) as "yes!""#,
        account,
        institute
    )
    .fetch_one(conn)
    .await?)
}

/// Whether any account exists (a database that has never been bootstrapped has none).
#[tracing::instrument(skip_all)]
pub async fn any(conn: &mut PgConnection) -> Result<bool, StoreError> {
    Ok(
        sqlx::query_scalar!("select exists(select 1 from accounts) as \"exists!\"")
            .fetch_one(conn)
            .await?,
    )
}
