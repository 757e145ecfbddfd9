//! Exercises, their participants, protocol versions and agreements.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use jointeval_domain::exercise::{
    Exercise, ExerciseStatus, ModelAccess, ModelUnderTest, PlannedProtocol,
};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::StoreError;

struct Row {
    id: Uuid,
    title: String,
    model_provider: String,
    model_name: String,
    model_version: String,
    model_access: String,
    lead_institute_id: Uuid,
    participants: Vec<Uuid>,
    protocol_ids: Vec<Uuid>,
    protocol_numbers: Vec<i32>,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    status: String,
    plan_revision: i32,
    agreed: Vec<Uuid>,
    created_by: Uuid,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<Row> for Exercise {
    type Error = StoreError;
    fn try_from(r: Row) -> Result<Self, StoreError> {
        Ok(Exercise {
            id: r.id,
            title: r.title,
            model: ModelUnderTest {
                provider: r.model_provider,
                name: r.model_name,
                version: r.model_version,
                access: ModelAccess::from_str(&r.model_access).map_err(StoreError::corrupt)?,
            },
            lead_institute_id: r.lead_institute_id,
            participants: r.participants,
            protocol_versions: r.protocol_ids.into_iter().zip(r.protocol_numbers).collect(),
            starts_at: r.starts_at,
            ends_at: r.ends_at,
            status: ExerciseStatus::from_str(&r.status).map_err(StoreError::corrupt)?,
            plan_revision: r.plan_revision,
            agreed: r.agreed,
            created_by: r.created_by,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

/// What a plan is made of.
pub struct Plan<'a> {
    pub title: &'a str,
    pub model: &'a ModelUnderTest,
    pub participants: &'a [Uuid],
    pub protocol_versions: &'a [(Uuid, i32)],
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

/// The protocol versions named, as a plan needs to check them; unknown ones are absent.
#[tracing::instrument(skip_all)]
pub async fn planned_protocols(
    conn: &mut PgConnection,
    versions: &[(Uuid, i32)],
) -> Result<Vec<Option<PlannedProtocol>>, StoreError> {
    let mut out = Vec::with_capacity(versions.len());
    for (protocol_id, number) in versions {
        let row = sqlx::query!(
            r#"select v.status,
                      array(select institute_id from protocol_participants pp
                            where pp.protocol_id = v.protocol_id order by institute_id) as "participants!"
               from protocol_versions v where v.protocol_id = $1 and v.number = $2"#,
            protocol_id,
            number
        )
        .fetch_optional(&mut *conn)
        .await?;
        out.push(row.map(|r| PlannedProtocol {
            protocol_id: *protocol_id,
            number: *number,
            approved: r.status == "approved",
            participants: r.participants,
        }));
    }
    Ok(out)
}

#[tracing::instrument(skip_all)]
pub async fn insert(
    conn: &mut PgConnection,
    plan: &Plan<'_>,
    lead_institute_id: Uuid,
    created_by: Uuid,
) -> Result<Exercise, StoreError> {
    let id = Uuid::now_v7();
    sqlx::query!(
        "insert into exercises (id, title, model_provider, model_name, model_version, model_access,
                                lead_institute_id, starts_at, ends_at, created_by)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        id,
        plan.title,
        plan.model.provider,
        plan.model.name,
        plan.model.version,
        plan.model.access.as_str(),
        lead_institute_id,
        plan.starts_at,
        plan.ends_at,
        created_by
    )
    .execute(&mut *conn)
    .await?;
    write_sets(conn, id, plan).await?;
    written(conn, id).await
}

async fn write_sets(conn: &mut PgConnection, id: Uuid, plan: &Plan<'_>) -> Result<(), StoreError> {
    sqlx::query!(
        "delete from exercise_participants where exercise_id = $1",
        id
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "insert into exercise_participants (exercise_id, institute_id) select $1, unnest($2::uuid[])",
        id,
        plan.participants
    )
    .execute(&mut *conn)
    .await?;
    let (ids, numbers): (Vec<Uuid>, Vec<i32>) = plan.protocol_versions.iter().copied().unzip();
    sqlx::query!(
        "delete from exercise_protocol_versions where exercise_id = $1",
        id
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "insert into exercise_protocol_versions (exercise_id, protocol_id, number)
         select $1, * from unnest($2::uuid[], $3::int[])",
        id,
        &ids,
        &numbers
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Replaces the plan and bumps its revision, which withdraws every agreement.
#[tracing::instrument(skip_all)]
pub async fn change_plan(
    conn: &mut PgConnection,
    id: Uuid,
    plan: &Plan<'_>,
) -> Result<Exercise, StoreError> {
    sqlx::query!(
        "update exercises set title = $2, model_provider = $3, model_name = $4, model_version = $5,
                model_access = $6, starts_at = $7, ends_at = $8,
                plan_revision = plan_revision + 1, updated_at = now()
         where id = $1",
        id,
        plan.title,
        plan.model.provider,
        plan.model.name,
        plan.model.version,
        plan.model.access.as_str(),
        plan.starts_at,
        plan.ends_at
    )
    .execute(&mut *conn)
    .await?;
    write_sets(conn, id, plan).await?;
    written(conn, id).await
}

/// The exercise as a write in this transaction left it.
async fn written(conn: &mut PgConnection, id: Uuid) -> Result<Exercise, StoreError> {
    get(conn, id, false)
        .await?
        .ok_or_else(|| StoreError::Corrupt("written exercise vanished".into()))
}

/// An exercise; with `lock`, locked for the rest of the transaction.
#[tracing::instrument(skip_all)]
pub async fn get(
    conn: &mut PgConnection,
    id: Uuid,
    lock: bool,
) -> Result<Option<Exercise>, StoreError> {
    if lock {
        sqlx::query!("select id from exercises where id = $1 for update", id)
            .fetch_optional(&mut *conn)
            .await?;
    }
    Ok(list(conn, &[], Some(id), None, None, None, 1).await?.pop())
}

/// Exercises in which one of `institutes` participates (or the one with `id`), by id.
#[allow(clippy::too_many_arguments)]
async fn list(
    conn: &mut PgConnection,
    institutes: &[Uuid],
    id: Option<Uuid>,
    status: Option<ExerciseStatus>,
    institute_id: Option<Uuid>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Exercise>, StoreError> {
    let rows = sqlx::query_as!(
        Row,
        r#"select x.id, x.title, x.model_provider, x.model_name, x.model_version, x.model_access,
                  x.lead_institute_id,
                  array(select institute_id from exercise_participants p
                        where p.exercise_id = x.id order by institute_id) as "participants!",
                  array(select protocol_id from exercise_protocol_versions v
                        where v.exercise_id = x.id order by protocol_id) as "protocol_ids!",
                  array(select number from exercise_protocol_versions v
                        where v.exercise_id = x.id order by protocol_id) as "protocol_numbers!",
                  x.starts_at, x.ends_at, x.status, x.plan_revision,
                  array(select institute_id from exercise_agreements a
                        where a.exercise_id = x.id and a.plan_revision = x.plan_revision
                        order by institute_id) as "agreed!",
                  x.created_by, x.created_at, x.updated_at
           from exercises x
           where (($1::uuid is not null and x.id = $1)
                  or ($1::uuid is null and exists (select 1 from exercise_participants p
                                                   where p.exercise_id = x.id and p.institute_id = any($2))))
             and ($3::text is null or x.status = $3)
             and ($4::uuid is null or exists (select 1 from exercise_participants p
                                              where p.exercise_id = x.id and p.institute_id = $4))
             and x.id > $5
           order by x.id
           limit $6"#,
        id,
        institutes,
        status.map(ExerciseStatus::as_str),
        institute_id,
        after.unwrap_or(crate::BEFORE_ALL_IDS),
        limit
    )
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(Exercise::try_from).collect()
}

/// The exercises one of `institutes` takes part in: the only ones their staff may know of.
#[tracing::instrument(skip_all)]
pub async fn list_visible(
    conn: &mut PgConnection,
    institutes: &[Uuid],
    status: Option<ExerciseStatus>,
    institute_id: Option<Uuid>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Exercise>, StoreError> {
    list(conn, institutes, None, status, institute_id, after, limit).await
}

/// Records an institute's agreement to the current plan (again is a no-op). The
/// exercise's version changes with it: its ETag covers who agreed.
#[tracing::instrument(skip_all)]
pub async fn agree(
    conn: &mut PgConnection,
    id: Uuid,
    institute_id: Uuid,
    plan_revision: i32,
    by: Uuid,
) -> Result<Exercise, StoreError> {
    sqlx::query!(
        "insert into exercise_agreements (exercise_id, institute_id, plan_revision, agreed_by)
         values ($1, $2, $3, $4) on conflict do nothing",
        id,
        institute_id,
        plan_revision,
        by
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!("update exercises set updated_at = now() where id = $1", id)
        .execute(&mut *conn)
        .await?;
    written(conn, id).await
}

#[tracing::instrument(skip_all)]
pub async fn set_status(
    conn: &mut PgConnection,
    id: Uuid,
    status: ExerciseStatus,
) -> Result<Exercise, StoreError> {
    sqlx::query!(
        "update exercises set status = $2, updated_at = now() where id = $1",
        id,
        status.as_str()
    )
    .execute(&mut *conn)
    .await?;
    written(conn, id).await
}
