//! The audit trail: events appended under the chain head's row lock, in the transaction
//! of the change they record, and read back for the API and for verification.

use chrono::{DateTime, Utc};
use jointeval_domain::audit::{Change, Event, Link};
use jointeval_domain::canonical;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{StoreError, Tx, commit};

/// Records the change as the transaction's last statement, then commits: the change and
/// its event stand or fall together. Last, because the chain head stays locked from the
/// event to the commit, and every other writer waits for it.
pub async fn commit_audited(mut tx: Tx, change: &Change) -> Result<Event, StoreError> {
    let event = append(&mut tx, change).await?;
    commit(tx).await?;
    Ok(event)
}

#[tracing::instrument(skip_all, fields(action = change.action))]
async fn append(conn: &mut PgConnection, change: &Change) -> Result<Event, StoreError> {
    let head = sqlx::query!(
        r#"select seq as "seq!", hash as "hash!", clock_timestamp() as "at!",
                  nullif(current_setting('jointeval.actor', true), '') as actor,
                  nullif(current_setting('jointeval.request_id', true), '') as request_id,
                  nullif(current_setting('jointeval.client_addr', true), '') as client_addr
           from audit_head_locked()"#
    )
    .fetch_one(&mut *conn)
    .await?;
    let actor = head.actor.ok_or_else(|| {
        StoreError::corrupt("an audited change in a transaction without an actor")
    })?;
    let mut visible_to = change.visible_to.clone();
    visible_to.sort();
    visible_to.dedup();
    let summary =
        String::from_utf8(canonical::to_bytes(&change.summary)).map_err(StoreError::corrupt)?;
    let event = Event {
        seq: head.seq + 1,
        // PostgreSQL keeps microseconds: hash what will be read back.
        at: head.at,
        actor,
        institute_id: change.institute_id,
        action: change.action.to_owned(),
        object_type: change.object_type().to_owned(),
        object_id: change.object_id.clone(),
        visible_to,
        summary,
        request_id: head.request_id,
        client_addr: head.client_addr,
        prev_hash: String::new(),
        hash: String::new(),
    }
    .seal(&head.hash);
    sqlx::query!(
        "insert into audit_events (seq, at, actor, institute_id, action, object_type, object_id,
                                   visible_to, summary, request_id, client_addr, prev_hash, hash)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        event.seq,
        event.at,
        event.actor,
        event.institute_id,
        event.action,
        event.object_type,
        event.object_id,
        &event.visible_to,
        event.summary,
        event.request_id,
        event.client_addr,
        event.prev_hash,
        event.hash,
    )
    .execute(&mut *conn)
    .await?;
    Ok(event)
}

/// Which events a reader asks for.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub actor: Option<String>,
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    pub action: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// Which events a reader may see: those visible to an institute it administers, and
/// those of the object types it reviews that are visible to an institute it reviews for.
#[derive(Debug, Clone, Default)]
pub struct EventReader {
    pub admin_of: Vec<Uuid>,
    pub reviewer_of: Vec<Uuid>,
    pub reviewed_types: Vec<String>,
}

/// Events in sequence order, after `after_seq`.
#[tracing::instrument(skip_all)]
pub async fn list(
    conn: &mut PgConnection,
    reader: &EventReader,
    filter: &EventFilter,
    after_seq: i64,
    limit: i64,
) -> Result<Vec<Event>, StoreError> {
    let rows: Vec<Event> = sqlx::query_as!(
        Event,
        "select seq, at, actor, institute_id, action, object_type, object_id, visible_to,
                summary, request_id, client_addr, prev_hash, hash
         from audit_events
         where (visible_to && $1::uuid[]
                or (visible_to && $2::uuid[] and object_type = any($3::text[])))
           and ($4::text is null or actor = $4)
           and ($5::text is null or object_type = $5)
           and ($6::text is null or object_id = $6)
           and ($7::text is null or action = $7)
           and ($8::timestamptz is null or at >= $8)
           and ($9::timestamptz is null or at < $9)
           and seq > $10
         order by seq
         limit $11",
        &reader.admin_of,
        &reader.reviewer_of,
        &reader.reviewed_types,
        filter.actor,
        filter.object_type,
        filter.object_id,
        filter.action,
        filter.since,
        filter.until,
        after_seq,
        limit,
    )
    .fetch_all(conn)
    .await?;
    Ok(rows)
}

/// Every event after `after_seq`, up to `limit`, for verification.
#[tracing::instrument(skip_all)]
pub async fn chain(
    conn: &mut PgConnection,
    after_seq: i64,
    limit: i64,
) -> Result<Vec<Event>, StoreError> {
    let rows: Vec<Event> = sqlx::query_as!(
        Event,
        "select seq, at, actor, institute_id, action, object_type, object_id, visible_to,
                summary, request_id, client_addr, prev_hash, hash
         from audit_events where seq > $1 order by seq limit $2",
        after_seq,
        limit,
    )
    .fetch_all(conn)
    .await?;
    Ok(rows)
}

/// The newest event's position and hash.
#[tracing::instrument(skip_all)]
pub async fn head(conn: &mut PgConnection) -> Result<Link, StoreError> {
    Ok(sqlx::query_as!(Link, "select seq, hash from audit_head")
        .fetch_one(conn)
        .await?)
}
