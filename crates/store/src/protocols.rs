//! Protocols, their versions, reviews and comments.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use jointeval_domain::protocol::{
    Comment, Protocol, ProtocolContent, ProtocolStatus, ProtocolVersion, Review, RiskArea, Verdict,
    VersionStatus,
};
use sqlx::PgConnection;
use sqlx::types::Json;
use uuid::Uuid;

use crate::StoreError;

struct ProtocolRow {
    id: Uuid,
    slug: String,
    title: String,
    risk_area: String,
    summary: String,
    lead_institute_id: Uuid,
    participants: Vec<Uuid>,
    status: String,
    created_by: Uuid,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<ProtocolRow> for Protocol {
    type Error = StoreError;
    fn try_from(r: ProtocolRow) -> Result<Self, StoreError> {
        Ok(Protocol {
            id: r.id,
            slug: r.slug,
            title: r.title,
            risk_area: RiskArea::from_str(&r.risk_area).map_err(StoreError::corrupt)?,
            summary: r.summary,
            lead_institute_id: r.lead_institute_id,
            participants: r.participants,
            status: ProtocolStatus::from_str(&r.status).map_err(StoreError::corrupt)?,
            created_by: r.created_by,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

pub struct NewProtocol<'a> {
    pub slug: &'a str,
    pub title: &'a str,
    pub risk_area: RiskArea,
    pub summary: &'a str,
    pub lead_institute_id: Uuid,
    pub participants: &'a [Uuid],
    pub created_by: Uuid,
}

#[tracing::instrument(skip_all)]
pub async fn insert(
    conn: &mut PgConnection,
    new: &NewProtocol<'_>,
) -> Result<Protocol, StoreError> {
    let id = Uuid::now_v7();
    sqlx::query!(
        "insert into protocols (id, slug, title, risk_area, summary, lead_institute_id, created_by)
         values ($1, $2, $3, $4, $5, $6, $7)",
        id,
        new.slug,
        new.title,
        new.risk_area.as_str(),
        new.summary,
        new.lead_institute_id,
        new.created_by
    )
    .execute(&mut *conn)
    .await?;
    set_participants(conn, id, new.participants).await
}

#[tracing::instrument(skip_all)]
pub async fn set_participants(
    conn: &mut PgConnection,
    protocol_id: Uuid,
    participants: &[Uuid],
) -> Result<Protocol, StoreError> {
    sqlx::query!(
        "delete from protocol_participants where protocol_id = $1",
        protocol_id
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "insert into protocol_participants (protocol_id, institute_id) select $1, unnest($2::uuid[])",
        protocol_id,
        participants
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "update protocols set updated_at = now() where id = $1",
        protocol_id
    )
    .execute(&mut *conn)
    .await?;
    written(conn, protocol_id).await
}

#[tracing::instrument(skip_all)]
pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<Option<Protocol>, StoreError> {
    let row = sqlx::query_as!(
        ProtocolRow,
        r#"select p.id, p.slug, p.title, p.risk_area, p.summary, p.lead_institute_id,
                  array(select institute_id from protocol_participants pp
                        where pp.protocol_id = p.id order by institute_id) as "participants!",
                  p.status, p.created_by, p.created_at, p.updated_at
           from protocols p where p.id = $1"#,
        id
    )
    .fetch_optional(conn)
    .await?;
    row.map(Protocol::try_from).transpose()
}

/// Locks a protocol for the rest of the transaction: versions are numbered and opened
/// under this lock.
#[tracing::instrument(skip_all)]
pub async fn lock(conn: &mut PgConnection, id: Uuid) -> Result<(), StoreError> {
    sqlx::query!("select id from protocols where id = $1 for update", id)
        .fetch_optional(conn)
        .await?;
    Ok(())
}

#[derive(Debug, Default)]
pub struct ProtocolFilter {
    pub risk_area: Option<RiskArea>,
    pub status: Option<ProtocolStatus>,
    /// Protocols this institute participates in.
    pub institute_id: Option<Uuid>,
    /// Text in the title or summary.
    pub q: Option<String>,
}

/// The protocols in which one of `institutes` participates: the only ones a caller whose
/// roles are at those institutes may know of. Ordered by id, after `after`.
#[tracing::instrument(skip_all)]
pub async fn list_visible(
    conn: &mut PgConnection,
    institutes: &[Uuid],
    filter: &ProtocolFilter,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Protocol>, StoreError> {
    let pattern = filter
        .q
        .as_ref()
        .map(|q| format!("%{}%", crate::escape_like(q)));
    let rows = sqlx::query_as!(
        ProtocolRow,
        r#"select p.id, p.slug, p.title, p.risk_area, p.summary, p.lead_institute_id,
                  array(select institute_id from protocol_participants pp
                        where pp.protocol_id = p.id order by institute_id) as "participants!",
                  p.status, p.created_by, p.created_at, p.updated_at
           from protocols p
           where exists (select 1 from protocol_participants pp
                         where pp.protocol_id = p.id and pp.institute_id = any($1))
             and ($2::text is null or p.risk_area = $2)
             and ($3::text is null or p.status = $3)
             and ($4::uuid is null or exists (select 1 from protocol_participants pp
                                              where pp.protocol_id = p.id and pp.institute_id = $4))
             and ($5::text is null or p.title ilike $5 or p.summary ilike $5)
             and p.id > $6
           order by p.id
           limit $7"#,
        institutes,
        filter.risk_area.map(RiskArea::as_str),
        filter.status.map(ProtocolStatus::as_str),
        filter.institute_id,
        pattern,
        after.unwrap_or(crate::BEFORE_ALL_IDS),
        limit
    )
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(Protocol::try_from).collect()
}

#[tracing::instrument(skip_all)]
pub async fn retire(conn: &mut PgConnection, id: Uuid) -> Result<Protocol, StoreError> {
    sqlx::query!(
        "update protocols set status = 'retired', updated_at = now() where id = $1",
        id
    )
    .execute(&mut *conn)
    .await?;
    written(conn, id).await
}

/// The protocol as a write in this transaction left it.
async fn written(conn: &mut PgConnection, id: Uuid) -> Result<Protocol, StoreError> {
    get(conn, id)
        .await?
        .ok_or_else(|| StoreError::Corrupt("written protocol vanished".into()))
}

struct VersionRow {
    id: Uuid,
    protocol_id: Uuid,
    number: i32,
    status: String,
    content: Json<ProtocolContent>,
    content_sha256: Option<String>,
    based_on: Option<i32>,
    revision: i32,
    created_by: Uuid,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    submitted_by: Option<Uuid>,
    submitted_at: Option<DateTime<Utc>>,
    decided_at: Option<DateTime<Utc>>,
    editors: Vec<Uuid>,
}

impl TryFrom<VersionRow> for ProtocolVersion {
    type Error = StoreError;
    fn try_from(r: VersionRow) -> Result<Self, StoreError> {
        Ok(ProtocolVersion {
            id: r.id,
            protocol_id: r.protocol_id,
            number: r.number,
            status: VersionStatus::from_str(&r.status).map_err(StoreError::corrupt)?,
            content: r.content.0,
            content_sha256: r.content_sha256,
            based_on: r.based_on,
            revision: r.revision,
            created_by: r.created_by,
            created_at: r.created_at,
            updated_at: r.updated_at,
            submitted_by: r.submitted_by,
            submitted_at: r.submitted_at,
            decided_at: r.decided_at,
            editors: r.editors,
        })
    }
}

/// Opens version number `max + 1` as a draft, its creator its first editor. A second
/// open version is refused by `protocol_versions_one_open`.
#[tracing::instrument(skip_all)]
pub async fn insert_version(
    conn: &mut PgConnection,
    protocol_id: Uuid,
    content: &ProtocolContent,
    based_on: Option<i32>,
    created_by: Uuid,
) -> Result<ProtocolVersion, StoreError> {
    let id = Uuid::now_v7();
    let number = sqlx::query_scalar!(
        r#"insert into protocol_versions (id, protocol_id, number, content, based_on, created_by)
           values ($1, $2, (select coalesce(max(number), 0) + 1 from protocol_versions where protocol_id = $2),
                   $3, $4, $5)
           returning number"#,
        id,
        protocol_id,
        Json(content) as _,
        based_on,
        created_by
    )
    .fetch_one(&mut *conn)
    .await?;
    add_editor(conn, id, created_by).await?;
    written_version(conn, protocol_id, number).await
}

async fn add_editor(
    conn: &mut PgConnection,
    version_id: Uuid,
    account_id: Uuid,
) -> Result<(), StoreError> {
    sqlx::query!(
        "insert into protocol_version_editors (version_id, account_id) values ($1, $2)
         on conflict do nothing",
        version_id,
        account_id
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A version; with `lock`, locked for the rest of the transaction.
#[tracing::instrument(skip_all)]
pub async fn get_version(
    conn: &mut PgConnection,
    protocol_id: Uuid,
    number: i32,
    lock: bool,
) -> Result<Option<ProtocolVersion>, StoreError> {
    if lock {
        sqlx::query!(
            "select id from protocol_versions where protocol_id = $1 and number = $2 for update",
            protocol_id,
            number
        )
        .fetch_optional(&mut *conn)
        .await?;
    }
    Ok(versions(conn, protocol_id, Some(number)).await?.pop())
}

/// Every version of a protocol, newest first.
#[tracing::instrument(skip_all)]
pub async fn list_versions(
    conn: &mut PgConnection,
    protocol_id: Uuid,
) -> Result<Vec<ProtocolVersion>, StoreError> {
    versions(conn, protocol_id, None).await
}

async fn versions(
    conn: &mut PgConnection,
    protocol_id: Uuid,
    number: Option<i32>,
) -> Result<Vec<ProtocolVersion>, StoreError> {
    let rows = sqlx::query_as!(
        VersionRow,
        r#"select v.id, v.protocol_id, v.number, v.status,
                  v.content as "content: Json<ProtocolContent>", v.content_sha256, v.based_on,
                  v.revision, v.created_by, v.created_at, v.updated_at, v.submitted_by,
                  v.submitted_at, v.decided_at,
                  array(select account_id from protocol_version_editors e
                        where e.version_id = v.id order by first_edit_at, account_id) as "editors!"
           from protocol_versions v
           where v.protocol_id = $1 and ($2::int is null or v.number = $2)
           order by v.number desc"#,
        protocol_id,
        number
    )
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(ProtocolVersion::try_from).collect()
}

/// Replaces a draft's content, bumps its revision and records the editor.
#[tracing::instrument(skip_all)]
pub async fn update_content(
    conn: &mut PgConnection,
    version: &ProtocolVersion,
    content: &ProtocolContent,
    editor: Uuid,
) -> Result<ProtocolVersion, StoreError> {
    sqlx::query!(
        "update protocol_versions set content = $2, revision = revision + 1, updated_at = now()
         where id = $1",
        version.id,
        Json(content) as _
    )
    .execute(&mut *conn)
    .await?;
    add_editor(conn, version.id, editor).await?;
    written_version(conn, version.protocol_id, version.number).await
}

/// The version as a write in this transaction left it.
async fn written_version(
    conn: &mut PgConnection,
    protocol_id: Uuid,
    number: i32,
) -> Result<ProtocolVersion, StoreError> {
    get_version(conn, protocol_id, number, false)
        .await?
        .ok_or_else(|| StoreError::Corrupt("written version vanished".into()))
}

#[tracing::instrument(skip_all)]
pub async fn submit(
    conn: &mut PgConnection,
    version: &ProtocolVersion,
    sha256: &str,
    by: Uuid,
) -> Result<ProtocolVersion, StoreError> {
    sqlx::query!(
        "update protocol_versions
         set status = 'in_review', content_sha256 = $2, submitted_by = $3, submitted_at = now(),
             revision = revision + 1, updated_at = now()
         where id = $1",
        version.id,
        sha256,
        by
    )
    .execute(&mut *conn)
    .await?;
    written_version(conn, version.protocol_id, version.number).await
}

#[tracing::instrument(skip_all)]
pub async fn set_version_status(
    conn: &mut PgConnection,
    version: &ProtocolVersion,
    status: VersionStatus,
) -> Result<ProtocolVersion, StoreError> {
    sqlx::query!(
        "update protocol_versions
         set status = $2, decided_at = case when $2 in ('approved', 'changes_requested') then now() end,
             revision = revision + 1, updated_at = now()
         where id = $1",
        version.id,
        status.as_str()
    )
    .execute(&mut *conn)
    .await?;
    written_version(conn, version.protocol_id, version.number).await
}

/// Whether any version of the protocol is approved.
#[tracing::instrument(skip_all)]
pub async fn has_approved_version(
    conn: &mut PgConnection,
    protocol_id: Uuid,
) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar!(
        r#"select exists(select 1 from protocol_versions where protocol_id = $1 and status = 'approved') as "exists!""#,
        protocol_id
    )
    .fetch_one(conn)
    .await?)
}

struct ReviewRow {
    id: Uuid,
    version_id: Uuid,
    reviewer_id: Uuid,
    institute_id: Uuid,
    verdict: String,
    comment: String,
    created_at: DateTime<Utc>,
}

impl TryFrom<ReviewRow> for Review {
    type Error = StoreError;
    fn try_from(r: ReviewRow) -> Result<Self, StoreError> {
        Ok(Review {
            id: r.id,
            version_id: r.version_id,
            reviewer_id: r.reviewer_id,
            institute_id: r.institute_id,
            verdict: Verdict::from_str(&r.verdict).map_err(StoreError::corrupt)?,
            comment: r.comment,
            created_at: r.created_at,
        })
    }
}

/// Records a review; a second review by the same reviewer is refused by `protocol_reviews_once`.
#[tracing::instrument(skip_all)]
pub async fn insert_review(
    conn: &mut PgConnection,
    version_id: Uuid,
    reviewer_id: Uuid,
    institute_id: Uuid,
    verdict: Verdict,
    comment: &str,
) -> Result<Review, StoreError> {
    let row = sqlx::query_as!(
        ReviewRow,
        "insert into protocol_reviews (id, version_id, reviewer_id, institute_id, verdict, comment)
         values ($1, $2, $3, $4, $5, $6)
         returning id, version_id, reviewer_id, institute_id, verdict, comment, created_at",
        Uuid::now_v7(),
        version_id,
        reviewer_id,
        institute_id,
        verdict.as_str(),
        comment
    )
    .fetch_one(conn)
    .await?;
    row.try_into()
}

#[tracing::instrument(skip_all)]
pub async fn list_reviews(
    conn: &mut PgConnection,
    version_id: Uuid,
) -> Result<Vec<Review>, StoreError> {
    let rows = sqlx::query_as!(
        ReviewRow,
        "select id, version_id, reviewer_id, institute_id, verdict, comment, created_at
         from protocol_reviews where version_id = $1 order by id",
        version_id
    )
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(Review::try_from).collect()
}

#[tracing::instrument(skip_all)]
pub async fn insert_comment(
    conn: &mut PgConnection,
    version_id: Uuid,
    parent_id: Option<Uuid>,
    author_id: Uuid,
    anchor: Option<&str>,
    body: &str,
) -> Result<Comment, StoreError> {
    Ok(sqlx::query_as!(
        Comment,
        "insert into protocol_comments (id, version_id, parent_id, author_id, anchor, body)
         values ($1, $2, $3, $4, $5, $6)
         returning id, version_id, parent_id, author_id, anchor, body, created_at",
        Uuid::now_v7(),
        version_id,
        parent_id,
        author_id,
        anchor,
        body
    )
    .fetch_one(conn)
    .await?)
}

#[tracing::instrument(skip_all)]
pub async fn list_comments(
    conn: &mut PgConnection,
    version_id: Uuid,
) -> Result<Vec<Comment>, StoreError> {
    Ok(sqlx::query_as!(
        Comment,
        "select id, version_id, parent_id, author_id, anchor, body, created_at
         from protocol_comments where version_id = $1 order by id",
        version_id
    )
    .fetch_all(conn)
    .await?)
}
