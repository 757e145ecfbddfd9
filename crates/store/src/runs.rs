//! Test runs, their metrics and releases, and the idempotency of their creation.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use jointeval_domain::conformance::{Deviation, ResultFacts};
use jointeval_domain::run::{
    Digests, ImportedLog, Lease, MetricValue, Reduction, ResultsDigest, Run, RunDescription,
    RunStatus, SampleError, SampleId, SampleScore, ScoreValue, StoredReduction, StoredScore,
    keep_last_of_each_key,
};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::StoreError;

struct Row {
    id: Uuid,
    exercise_id: Uuid,
    protocol_id: Uuid,
    protocol_version: i32,
    institute_id: Uuid,
    harness_name: String,
    harness_version: String,
    config: serde_json::Value,
    model_version: String,
    status: String,
    created_by: Uuid,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    updated_by: Uuid,
    updated_at: DateTime<Utc>,
    digest: Option<String>,
    digest_formula: Option<String>,
    transcripts_digest: Option<String>,
    released_to: Vec<Uuid>,
    transcripts_released_to: Vec<Uuid>,
    lease_holder: Option<Uuid>,
    lease_expires_at: Option<DateTime<Utc>>,
    inspect_log: Option<serde_json::Value>,
    deviations: serde_json::Value,
    checked_at: Option<DateTime<Utc>>,
    checked_task: Option<String>,
}

impl TryFrom<Row> for Run {
    type Error = StoreError;
    fn try_from(r: Row) -> Result<Self, StoreError> {
        Ok(Run {
            id: r.id,
            exercise_id: r.exercise_id,
            protocol_id: r.protocol_id,
            protocol_version: r.protocol_version,
            institute_id: r.institute_id,
            harness_name: r.harness_name,
            harness_version: r.harness_version,
            config: r.config,
            model_version: r.model_version,
            status: RunStatus::from_str(&r.status).map_err(StoreError::corrupt)?,
            created_by: r.created_by,
            created_at: r.created_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            updated_by: r.updated_by,
            updated_at: r.updated_at,
            digest: r.digest,
            digest_formula: r.digest_formula,
            transcripts_digest: r.transcripts_digest,
            released_to: r.released_to,
            transcripts_released_to: r.transcripts_released_to,
            lease: match (r.lease_holder, r.lease_expires_at) {
                (Some(holder), Some(expires_at)) => Some(Lease { holder, expires_at }),
                _ => None,
            },
            imported_log: r
                .inspect_log
                .map(serde_json::from_value)
                .transpose()
                .map_err(StoreError::corrupt)?,
            deviations: serde_json::from_value(r.deviations).map_err(StoreError::corrupt)?,
            checked_at: r.checked_at,
            checked_task: r.checked_task,
        })
    }
}

pub struct NewRun<'a> {
    pub exercise_id: Uuid,
    pub protocol_id: Uuid,
    pub protocol_version: i32,
    pub institute_id: Uuid,
    pub description: &'a RunDescription,
    pub created_by: Uuid,
}

#[tracing::instrument(skip_all)]
pub async fn insert(conn: &mut PgConnection, new: &NewRun<'_>) -> Result<Run, StoreError> {
    let id = Uuid::now_v7();
    sqlx::query!(
        "insert into runs (id, exercise_id, protocol_id, protocol_version, institute_id, harness_name,
                           harness_version, config, model_version, created_by, updated_by)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
        id,
        new.exercise_id,
        new.protocol_id,
        new.protocol_version,
        new.institute_id,
        new.description.harness_name,
        new.description.harness_version,
        new.description.config,
        new.description.model_version,
        new.created_by
    )
    .execute(&mut *conn)
    .await?;
    written(conn, id).await
}

/// A run; with `lock`, locked for the rest of the transaction against other changes of
/// it, though not against writes of its results: their foreign key's share lock on the
/// run is compatible with `for no key update`, so an upload in flight holds no change
/// of the run waiting.
#[tracing::instrument(skip_all)]
pub async fn get(conn: &mut PgConnection, id: Uuid, lock: bool) -> Result<Option<Run>, StoreError> {
    if lock {
        sqlx::query!("select id from runs where id = $1 for no key update", id)
            .fetch_optional(&mut *conn)
            .await?;
    }
    let row = sqlx::query_as!(
        Row,
        r#"select r.id, r.exercise_id, r.protocol_id, r.protocol_version, r.institute_id,
                  r.harness_name, r.harness_version, r.config, r.model_version, r.status,
                  r.created_by, r.created_at, r.started_at, r.finished_at, r.updated_by,
                  r.updated_at, r.digest, r.digest_formula, r.transcripts_digest,
                  array(select distinct institute_id from run_releases rr
                        where rr.run_id = r.id order by institute_id) as "released_to!",
                  array(select institute_id from run_releases rr
                        where rr.run_id = r.id and rr.transcripts
                        order by institute_id) as "transcripts_released_to!",
                  r.lease_holder, r.lease_expires_at, r.inspect_log, r.deviations, r.checked_at,
                  r.checked_task
           from runs r
           where r.id = $1"#,
        id
    )
    .fetch_optional(conn)
    .await?;
    row.map(Run::try_from).transpose()
}

/// The run an institute imported the eval `eval_id` into, if it did (one at most, by
/// `runs_inspect_eval_once`).
#[tracing::instrument(skip_all)]
pub async fn with_eval(
    conn: &mut PgConnection,
    institute_id: Uuid,
    eval_id: &str,
) -> Result<Option<Run>, StoreError> {
    let id = sqlx::query_scalar!(
        "select id from runs where institute_id = $1 and inspect_log ->> 'eval_id' = $2",
        institute_id,
        eval_id
    )
    .fetch_optional(&mut *conn)
    .await?;
    match id {
        Some(id) => get(conn, id, false).await,
        None => Ok(None),
    }
}

/// The runs of an exercise that `institutes` may see: their own, and those released to
/// them. What is not listed here does not exist for them, not even in a count.
#[tracing::instrument(skip_all)]
pub async fn list_visible(
    conn: &mut PgConnection,
    exercise_id: Uuid,
    institutes: &[Uuid],
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Run>, StoreError> {
    let rows = sqlx::query_as!(
        Row,
        r#"select r.id, r.exercise_id, r.protocol_id, r.protocol_version, r.institute_id,
                  r.harness_name, r.harness_version, r.config, r.model_version, r.status,
                  r.created_by, r.created_at, r.started_at, r.finished_at, r.updated_by,
                  r.updated_at, r.digest, r.digest_formula, r.transcripts_digest,
                  array(select distinct institute_id from run_releases rr
                        where rr.run_id = r.id order by institute_id) as "released_to!",
                  array(select institute_id from run_releases rr
                        where rr.run_id = r.id and rr.transcripts
                        order by institute_id) as "transcripts_released_to!",
                  r.lease_holder, r.lease_expires_at, r.inspect_log, r.deviations, r.checked_at,
                  r.checked_task
           from runs r
           where r.exercise_id = $1
             and (r.institute_id = any($2)
                  or exists (select 1 from run_releases rr
                             where rr.run_id = r.id and rr.institute_id = any($2)))
             and r.id > $3
           order by r.id
           limit $4"#,
        exercise_id,
        institutes,
        after.unwrap_or(crate::BEFORE_ALL_IDS),
        limit
    )
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(Run::try_from).collect()
}

/// Claims the oldest claimable run of `institutes` (of `harness`, if given) for `holder`
/// under a lease of `lease_secs`: a queued run, or a running one whose lease expired.
/// Runs locked by a concurrent claim are skipped, so two claims never get the same run,
/// whichever service instance they reach.
#[tracing::instrument(skip_all)]
pub async fn claim(
    conn: &mut PgConnection,
    institutes: &[Uuid],
    harness: Option<&str>,
    holder: Uuid,
    lease_secs: i64,
) -> Result<Option<Run>, StoreError> {
    let claimed = sqlx::query_scalar!(
        "with next as (
             select id from runs
             where institute_id = any($1)
               and ($2::text is null or harness_name = $2)
               and exercise_id in (select id from exercises where status = 'active')
               and (status = 'queued'
                    or (status = 'running' and lease_expires_at < now()))
             order by created_at, id
             limit 1
             for update skip locked)
         update runs set status = 'running', started_at = coalesce(started_at, now()),
                         lease_holder = $3, lease_expires_at = now() + make_interval(secs => $4),
                         updated_by = $3, updated_at = now()
         from next where runs.id = next.id
         returning runs.id",
        institutes,
        harness,
        holder,
        lease_secs as f64
    )
    .fetch_optional(&mut *conn)
    .await?;
    match claimed {
        Some(id) => get(conn, id, false).await,
        None => Ok(None),
    }
}

/// Records the log a run's results were imported from, and how the run deviates from its
/// protocol version.
#[tracing::instrument(skip_all)]
pub async fn record_imported_log(
    conn: &mut PgConnection,
    id: Uuid,
    log: &ImportedLog,
    deviations: &[Deviation],
    task: Option<&str>,
) -> Result<(), StoreError> {
    let log = serde_json::to_value(log).map_err(StoreError::corrupt)?;
    let deviations = serde_json::to_value(deviations).map_err(StoreError::corrupt)?;
    sqlx::query!(
        "update runs set inspect_log = $2, deviations = $3, checked_at = now(), checked_task = $4
         where id = $1",
        id,
        log,
        deviations,
        task
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Records a run's comparability verdict: how it deviates from its protocol version.
#[tracing::instrument(skip_all)]
pub async fn record_verdict(
    conn: &mut PgConnection,
    id: Uuid,
    deviations: &[Deviation],
    task: Option<&str>,
) -> Result<(), StoreError> {
    let deviations = serde_json::to_value(deviations).map_err(StoreError::corrupt)?;
    sqlx::query!(
        "update runs set deviations = $2, checked_at = now(), checked_task = $3 where id = $1",
        id,
        deviations,
        task
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// What a run's stored results show of what was run: its distinct samples and epochs
/// (errored ones among them), its scorers, and its errored samples.
#[tracing::instrument(skip_all)]
pub async fn result_facts(conn: &mut PgConnection, id: Uuid) -> Result<ResultFacts, StoreError> {
    let row = sqlx::query!(
        r#"with keys as (select sample_id, epoch from run_samples where run_id = $1
                         union
                         select sample_id, epoch from run_sample_errors where run_id = $1)
           select (select count(distinct sample_id) from keys) as "samples!",
                  (select count(distinct epoch) from keys) as "epochs!",
                  array(select distinct scorer from run_samples where run_id = $1
                        order by scorer) as "scorers!",
                  (select count(*) from run_sample_errors where run_id = $1) as "errored!""#,
        id
    )
    .fetch_one(conn)
    .await?;
    Ok(ResultFacts {
        samples: row.samples,
        epochs: row.epochs,
        scorers: row.scorers,
        errored_samples: row.errored,
    })
}

/// Keeps one chunk of a run's original log.
#[tracing::instrument(skip_all)]
pub async fn insert_log_chunk(
    conn: &mut PgConnection,
    id: Uuid,
    n: i32,
    data: &[u8],
) -> Result<(), StoreError> {
    sqlx::query!(
        "insert into run_log_chunks (run_id, n, data) values ($1, $2, $3)",
        id,
        n,
        data
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Chunk `n` of a run's original log; `None` past the last.
#[tracing::instrument(skip_all)]
pub async fn log_chunk(
    conn: &mut PgConnection,
    id: Uuid,
    n: i32,
) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(sqlx::query_scalar!(
        "select data from run_log_chunks where run_id = $1 and n = $2",
        id,
        n
    )
    .fetch_optional(conn)
    .await?)
}

/// Renews the lease on a run for `lease_secs` from now.
#[tracing::instrument(skip_all)]
pub async fn renew_lease(
    conn: &mut PgConnection,
    id: Uuid,
    holder: Uuid,
    lease_secs: i64,
) -> Result<Run, StoreError> {
    sqlx::query!(
        "update runs set lease_expires_at = now() + make_interval(secs => $3)
         where id = $1 and lease_holder = $2",
        id,
        holder,
        lease_secs as f64
    )
    .execute(&mut *conn)
    .await?;
    written(conn, id).await
}

/// The run as a write in this transaction left it.
async fn written(conn: &mut PgConnection, id: Uuid) -> Result<Run, StoreError> {
    get(conn, id, false)
        .await?
        .ok_or_else(|| StoreError::Corrupt("written run vanished".into()))
}

/// Moves a run, stamping when it started or finished and who moved it.
#[tracing::instrument(skip_all)]
pub async fn set_status(
    conn: &mut PgConnection,
    id: Uuid,
    status: RunStatus,
    by: Uuid,
    digests: Option<&Digests>,
) -> Result<Run, StoreError> {
    sqlx::query!(
        "update runs set status = $2, updated_by = $3, updated_at = now(),
                started_at = case when $2 = 'running' then now() else started_at end,
                finished_at = case when $2 in ('succeeded', 'failed', 'cancelled') then now() else finished_at end,
                digest = coalesce($4, digest),
                digest_formula = case when $4::text is null then digest_formula else $5 end,
                transcripts_digest = coalesce($6, transcripts_digest),
                lease_holder = case when $2 in ('succeeded', 'failed', 'cancelled') then null else lease_holder end,
                lease_expires_at = case when $2 in ('succeeded', 'failed', 'cancelled') then null else lease_expires_at end
         where id = $1",
        id,
        status.as_str(),
        by,
        digests.map(|d| d.results.as_str()),
        jointeval_domain::run::RESULTS_DIGEST_FORMULA,
        digests.map(|d| d.transcripts.as_str()),
    )
    .execute(&mut *conn)
    .await?;
    written(conn, id).await
}

/// Inserts or replaces a batch of metrics, keyed by (scorer, metric), in one statement.
#[tracing::instrument(skip_all)]
pub async fn upsert_metrics(
    conn: &mut PgConnection,
    run_id: Uuid,
    batch: &[MetricValue],
) -> Result<(), StoreError> {
    let scorers: Vec<&str> = batch.iter().map(|m| m.scorer.as_str()).collect();
    let metrics: Vec<&str> = batch.iter().map(|m| m.metric.as_str()).collect();
    let values: Vec<f64> = batch.iter().map(|m| m.value).collect();
    let stderrs: Vec<Option<f64>> = batch.iter().map(|m| m.stderr).collect();
    let counts: Vec<Option<i64>> = batch.iter().map(|m| m.sample_count).collect();
    let names: Vec<Option<&str>> = batch.iter().map(|m| m.name.as_deref()).collect();
    let unscored: Vec<Option<i64>> = batch.iter().map(|m| m.unscored_count).collect();
    sqlx::query!(
        "insert into run_metrics (run_id, scorer, metric, value, stderr, sample_count, name,
                                  unscored_count)
         select $1, * from unnest($2::text[], $3::text[], $4::float8[], $5::float8[], $6::int8[],
                                  $7::text[], $8::int8[])
         on conflict (run_id, scorer, metric) do update
           set value = excluded.value, stderr = excluded.stderr,
               sample_count = excluded.sample_count, name = excluded.name,
               unscored_count = excluded.unscored_count",
        run_id,
        &scorers as &[&str],
        &metrics as &[&str],
        &values,
        &stderrs as &[Option<f64>],
        &counts as &[Option<i64>],
        &names as &[Option<&str>],
        &unscored as &[Option<i64>]
    )
    .execute(conn)
    .await?;
    Ok(())
}

#[tracing::instrument(skip_all)]
pub async fn metrics(
    conn: &mut PgConnection,
    run_id: Uuid,
) -> Result<Vec<MetricValue>, StoreError> {
    Ok(sqlx::query_as!(
        MetricValue,
        "select scorer, metric, value, stderr, sample_count, name, unscored_count
         from run_metrics where run_id = $1 order by scorer, metric",
        run_id
    )
    .fetch_all(conn)
    .await?)
}

/// Releases a run's results to `institutes`, and its transcripts too with `transcripts`,
/// recording who and the digest released. A release an institute holds already is kept
/// as it was: the results again add nothing, the transcripts add a row beside a release
/// of the results alone. Answers the institutes this release reached anew.
#[tracing::instrument(skip_all)]
pub async fn release(
    conn: &mut PgConnection,
    run_id: Uuid,
    institutes: &[Uuid],
    transcripts: bool,
    by: Uuid,
    digest: &str,
) -> Result<(Run, Vec<Uuid>), StoreError> {
    let mut reached = sqlx::query_scalar!(
        r#"insert into run_releases (run_id, institute_id, released_by, digest,
                                   executing_institute_id, transcripts)
           select $1, i, $3, $4, (select institute_id from runs where id = $1), $5
           from unnest($2::uuid[]) as i
           where not exists (select 1 from run_releases rr
                             where rr.run_id = $1 and rr.institute_id = i
                               and (rr.transcripts or not $5))
           on conflict do nothing
           returning institute_id"#,
        run_id,
        institutes,
        by,
        digest,
        transcripts
    )
    .fetch_all(&mut *conn)
    .await?;
    reached.sort();
    Ok((written(conn, run_id).await?, reached))
}

/// One sample score, flattened for storage.
pub struct SampleRow {
    pub sample_id: String,
    pub epoch: i32,
    pub scorer: String,
    pub value_number: Option<f64>,
    pub value_label: Option<String>,
    pub sample_metadata: Option<serde_json::Value>,
    /// The transcripts: `None` where the caller may not read them.
    pub answer: Option<String>,
    pub explanation: Option<String>,
    pub metadata: Option<serde_json::Value>,
}

impl SampleRow {
    fn has_transcripts(&self) -> bool {
        self.answer.is_some() || self.explanation.is_some() || self.metadata.is_some()
    }

    /// The score as the service answers it, its transcripts `withheld` or not.
    pub fn into_score(self, withheld: bool) -> StoredScore {
        // A label is the value as reported, its number beside it.
        let value = match (&self.value_label, self.value_number) {
            (Some(l), _) => serde_json::json!(l),
            (None, Some(n)) => serde_json::json!(n),
            (None, None) => serde_json::Value::Null,
        };
        StoredScore {
            sample_id: self.sample_id,
            epoch: self.epoch,
            scorer: self.scorer,
            value,
            number: self.value_number,
            sample_metadata: self.sample_metadata,
            answer: self.answer.filter(|_| !withheld),
            explanation: self.explanation.filter(|_| !withheld),
            metadata: self.metadata.filter(|_| !withheld),
            transcripts_withheld: withheld,
        }
    }
}

/// Writes scores into a running run, the last of each (sample id, epoch, scorer) in the
/// batch winning and replacing a score stored before; answers how many keys were new to
/// the run (the caller adds them to its count with [`count_new_samples`]). New keys go
/// in by `COPY`, the fastest way in; a batch with a key stored before is upserted.
pub async fn write_samples(
    conn: &mut PgConnection,
    run_id: Uuid,
    mut scores: Vec<SampleScore>,
) -> Result<i64, StoreError> {
    keep_last_of_each_key(&mut scores);
    let rows: Vec<SampleRow> = scores.into_iter().map(SampleRow::from).collect();
    if copy_new_samples(conn, run_id, &rows).await? {
        Ok(rows.len() as i64)
    } else {
        upsert_samples(conn, run_id, &rows).await
    }
}

impl From<SampleScore> for SampleRow {
    fn from(score: SampleScore) -> Self {
        let value_number = score.value.number();
        let value_label = match score.value {
            ScoreValue::Number(_) => None,
            ScoreValue::Label(l) => Some(l),
        };
        Self {
            sample_id: match score.sample_id {
                SampleId::Int(i) => i.to_string(),
                SampleId::Text(s) => s,
            },
            epoch: score.epoch,
            scorer: score.scorer,
            value_number,
            value_label,
            sample_metadata: score.sample_metadata,
            answer: score.answer,
            explanation: score.explanation,
            metadata: score.metadata,
        }
    }
}

/// Inserts or replaces a batch of scores, keyed by (sample id, epoch, scorer), with
/// their transcripts; answers how many keys were new. The batch must hold each key once.
#[tracing::instrument(skip_all)]
async fn upsert_samples(
    conn: &mut PgConnection,
    run_id: Uuid,
    rows: &[SampleRow],
) -> Result<i64, StoreError> {
    let ids: Vec<&str> = rows.iter().map(|r| r.sample_id.as_str()).collect();
    let epochs: Vec<i32> = rows.iter().map(|r| r.epoch).collect();
    let scorers: Vec<&str> = rows.iter().map(|r| r.scorer.as_str()).collect();
    let numbers: Vec<Option<f64>> = rows.iter().map(|r| r.value_number).collect();
    let labels: Vec<Option<&str>> = rows.iter().map(|r| r.value_label.as_deref()).collect();
    let sample_metadata: Vec<Option<serde_json::Value>> =
        rows.iter().map(|r| r.sample_metadata.clone()).collect();
    // A row the upsert inserted has no xmax; one it replaced has.
    let new = sqlx::query_scalar!(
        r#"with written as (
             insert into run_samples (run_id, sample_id, epoch, scorer, value_number,
                                      value_label, sample_metadata)
             select $1, * from unnest($2::text[], $3::int4[], $4::text[], $5::float8[],
                                      $6::text[], $7::jsonb[])
             on conflict (run_id, sample_id, epoch, scorer) do update
               set value_number = excluded.value_number, value_label = excluded.value_label,
                   sample_metadata = excluded.sample_metadata
             returning xmax = 0 as inserted)
           select count(*) filter (where inserted) as "new!" from written"#,
        run_id,
        &ids as &[&str],
        &epochs,
        &scorers as &[&str],
        &numbers as &[Option<f64>],
        &labels as &[Option<&str>],
        &sample_metadata as &[Option<serde_json::Value>]
    )
    .fetch_one(&mut *conn)
    .await?;
    // A replaced score's transcripts are replaced too: gone where the new one has none.
    sqlx::query!(
        "delete from run_sample_transcripts t
         using unnest($2::text[], $3::int4[], $4::text[]) k(sample_id, epoch, scorer)
         where t.run_id = $1 and t.sample_id = k.sample_id and t.epoch = k.epoch
           and t.scorer = k.scorer",
        run_id,
        &ids as &[&str],
        &epochs,
        &scorers as &[&str],
    )
    .execute(&mut *conn)
    .await?;
    let with: Vec<&SampleRow> = rows.iter().filter(|r| r.has_transcripts()).collect();
    let ids: Vec<&str> = with.iter().map(|r| r.sample_id.as_str()).collect();
    let epochs: Vec<i32> = with.iter().map(|r| r.epoch).collect();
    let scorers: Vec<&str> = with.iter().map(|r| r.scorer.as_str()).collect();
    let answers: Vec<Option<&str>> = with.iter().map(|r| r.answer.as_deref()).collect();
    let explanations: Vec<Option<&str>> = with.iter().map(|r| r.explanation.as_deref()).collect();
    let metadata: Vec<Option<serde_json::Value>> =
        with.iter().map(|r| r.metadata.clone()).collect();
    sqlx::query!(
        "insert into run_sample_transcripts (run_id, sample_id, epoch, scorer, answer,
                                             explanation, metadata)
         select $1, * from unnest($2::text[], $3::int4[], $4::text[], $5::text[], $6::text[],
                                  $7::jsonb[])",
        run_id,
        &ids as &[&str],
        &epochs,
        &scorers as &[&str],
        &answers as &[Option<&str>],
        &explanations as &[Option<&str>],
        &metadata as &[Option<serde_json::Value>]
    )
    .execute(conn)
    .await?;
    Ok(new)
}

/// Writes an imported log's reductions into a running run, a batch of rows to a
/// statement.
#[tracing::instrument(skip_all)]
pub async fn insert_reductions(
    conn: &mut PgConnection,
    run_id: Uuid,
    reductions: &[Reduction],
) -> Result<(), StoreError> {
    for batch in reductions.chunks(WRITE_BATCH) {
        let scorers: Vec<&str> = batch.iter().map(|r| r.scorer.as_str()).collect();
        let reducers: Vec<&str> = batch
            .iter()
            .map(|r| r.reducer.as_deref().unwrap_or(""))
            .collect();
        let ids: Vec<&str> = batch.iter().map(|r| r.sample_id.as_str()).collect();
        let numbers: Vec<Option<f64>> = batch.iter().map(|r| r.value.number()).collect();
        let labels: Vec<Option<&str>> = batch
            .iter()
            .map(|r| match &r.value {
                ScoreValue::Label(l) => Some(l.as_str()),
                ScoreValue::Number(_) => None,
            })
            .collect();
        sqlx::query!(
            "insert into run_reductions (run_id, scorer, reducer, sample_id, value_number, value_label)
             select $1, * from unnest($2::text[], $3::text[], $4::text[], $5::float8[], $6::text[])",
            run_id,
            &scorers as &[&str],
            &reducers as &[&str],
            &ids as &[&str],
            &numbers as &[Option<f64>],
            &labels as &[Option<&str>]
        )
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Writes the samples of an imported log that ended in an error.
#[tracing::instrument(skip_all)]
pub async fn insert_sample_errors(
    conn: &mut PgConnection,
    run_id: Uuid,
    errors: &[SampleError],
) -> Result<(), StoreError> {
    for batch in errors.chunks(WRITE_BATCH) {
        let ids: Vec<&str> = batch.iter().map(|e| e.sample_id.as_str()).collect();
        let epochs: Vec<i32> = batch.iter().map(|e| e.epoch).collect();
        let messages: Vec<&str> = batch.iter().map(|e| e.message.as_str()).collect();
        sqlx::query!(
            "insert into run_sample_errors (run_id, sample_id, epoch, message)
             select $1, * from unnest($2::text[], $3::int4[], $4::text[])",
            run_id,
            &ids as &[&str],
            &epochs,
            &messages as &[&str]
        )
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Rows one statement of [`insert_reductions`] or [`insert_sample_errors`] writes.
const WRITE_BATCH: usize = 5_000;

/// A page of a run's reductions, by (scorer, reducer, sample id), after `after`.
#[tracing::instrument(skip_all)]
pub async fn reductions(
    conn: &mut PgConnection,
    run_id: Uuid,
    after: Option<(&str, &str, &str)>,
    limit: i64,
) -> Result<Vec<StoredReduction>, StoreError> {
    let (scorer, reducer, sample_id) = after.unwrap_or(("", "", ""));
    let rows = sqlx::query!(
        r#"select scorer, reducer, sample_id, value_number, value_label from run_reductions
           where run_id = $1 and (scorer, reducer, sample_id) > ($2, $3, $4)
           order by scorer, reducer, sample_id
           limit $5"#,
        run_id,
        scorer,
        reducer,
        sample_id,
        limit
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| StoredReduction {
            value: match (&r.value_label, r.value_number) {
                (Some(l), _) => serde_json::json!(l),
                (None, n) => serde_json::json!(n),
            },
            number: r.value_number,
            reducer: (!r.reducer.is_empty()).then_some(r.reducer),
            scorer: r.scorer,
            sample_id: r.sample_id,
        })
        .collect())
}

/// A page of a run's errored samples, by (sample id, epoch), after `after`.
#[tracing::instrument(skip_all)]
pub async fn sample_errors(
    conn: &mut PgConnection,
    run_id: Uuid,
    after: Option<(&str, i32)>,
    limit: i64,
) -> Result<Vec<SampleError>, StoreError> {
    let (sample_id, epoch) = after.unwrap_or(("", i32::MIN));
    Ok(sqlx::query_as!(
        SampleError,
        "select sample_id, epoch, message from run_sample_errors
         where run_id = $1 and (sample_id, epoch) > ($2, $3)
         order by sample_id, epoch
         limit $4",
        run_id,
        sample_id,
        epoch,
        limit
    )
    .fetch_all(conn)
    .await?)
}

/// Adds `new` scores to the run's count; answers how many it holds now.
#[tracing::instrument(skip_all)]
pub async fn count_new_samples(
    conn: &mut PgConnection,
    run_id: Uuid,
    new: i64,
) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar!(
        "update runs set sample_count = sample_count + $2 where id = $1 returning sample_count",
        run_id,
        new
    )
    .fetch_one(conn)
    .await?)
}

/// Which samples to read. A value range leaves labels out.
#[derive(Debug, Default)]
pub struct SampleFilter<'a> {
    pub scorer: Option<&'a str>,
    pub epoch: Option<i32>,
    pub value_min: Option<f64>,
    pub value_max: Option<f64>,
    /// Whether to read the transcripts too (row-level security still leaves out those the
    /// caller may not read).
    pub transcripts: bool,
}

/// A page of a run's samples, by (sample id, epoch, scorer), after `after`. It turns
/// sorting and merge joins off for the rest of the transaction: make it the
/// transaction's last read.
#[tracing::instrument(skip_all)]
pub async fn samples(
    conn: &mut PgConnection,
    run_id: Uuid,
    filter: &SampleFilter<'_>,
    after: Option<(&str, i32, &str)>,
    limit: i64,
) -> Result<Vec<SampleRow>, StoreError> {
    // Below every key when there is no cursor (see [`crate::BEFORE_ALL_IDS`]).
    let (after_id, after_epoch, after_scorer) = after.unwrap_or(("", i32::MIN, ""));
    // A page is read along the key's index, never collected and sorted: right after a
    // large upload the statistics still describe a small run, and the planner chose to
    // sort every row after the cursor (a 1,000,000-row export took 47 s).
    sqlx::query!("set local enable_sort = off")
        .execute(&mut *conn)
        .await?;
    // Nor merged with the transcripts, which would read them from the run's first.
    sqlx::query!("set local enable_mergejoin = off")
        .execute(&mut *conn)
        .await?;
    // The transcripts are joined page by page; row-level security leaves them out where
    // the caller may not read them.
    Ok(sqlx::query_as!(
        SampleRow,
        "with page as (
             select sample_id, epoch, scorer, value_number, value_label, sample_metadata
             from run_samples
             where run_id = $1
               and ($2::text is null or scorer = $2)
               and ($3::int is null or epoch = $3)
               and (sample_id, epoch, scorer) > ($4, $5, $6)
               and ($8::float8 is null or value_number >= $8)
               and ($9::float8 is null or value_number <= $9)
             order by sample_id, epoch, scorer
             limit $7
         )
         select p.sample_id as \"sample_id!\", p.epoch as \"epoch!\", p.scorer as \"scorer!\",
                p.value_number, p.value_label, p.sample_metadata,
                t.answer as \"answer?\", t.explanation as \"explanation?\",
                t.metadata as \"metadata?\"
         from page p
         left join run_sample_transcripts t
           on $10 and t.run_id = $1 and t.sample_id = p.sample_id and t.epoch = p.epoch
          and t.scorer = p.scorer
         order by p.sample_id, p.epoch, p.scorer",
        run_id,
        filter.scorer,
        filter.epoch,
        after_id,
        after_epoch,
        after_scorer,
        limit,
        filter.value_min,
        filter.value_max,
        filter.transcripts
    )
    .fetch_all(conn)
    .await?)
}

/// The digests of a run's results as they stand, to record when it finishes: its
/// metrics and every score, read in the digest's order a few rows at a time. Taken by
/// the run's institute, which reads its transcripts.
pub async fn results_digest(conn: &mut PgConnection, run_id: Uuid) -> Result<Digests, StoreError> {
    let metrics = metrics(&mut *conn, run_id).await?;
    let mut digest = ResultsDigest::new(&metrics);
    let mut scores = samples_in_digest_order(conn, run_id);
    while let Some(row) = futures_util::TryStreamExt::try_next(&mut scores).await? {
        digest.score(&row.into_score(false));
    }
    Ok(digest.finish())
}

/// Every score of a run in the order its digest takes them (see `ResultsDigest`): by
/// sample id, epoch and scorer, the text compared as bytes whatever the database's
/// collation. Streamed: the run may hold millions.
fn samples_in_digest_order<'c>(
    conn: &'c mut PgConnection,
    run_id: Uuid,
) -> impl futures_util::Stream<Item = Result<SampleRow, sqlx::Error>> + 'c {
    sqlx::query_as!(
        SampleRow,
        r#"select s.sample_id, s.epoch, s.scorer, s.value_number, s.value_label,
                  s.sample_metadata, t.answer as "answer?", t.explanation as "explanation?",
                  t.metadata as "metadata?"
           from run_samples s
           left join run_sample_transcripts t
             on t.run_id = s.run_id and t.sample_id = s.sample_id and t.epoch = s.epoch
            and t.scorer = s.scorer
           where s.run_id = $1
           order by s.sample_id collate "C", s.epoch, s.scorer collate "C""#,
        run_id
    )
    .fetch(conn)
}

/// One metric of one finished run, for an exercise's summary.
pub struct SummaryRow {
    pub protocol_id: Uuid,
    pub protocol_version: i32,
    pub scorer: String,
    pub metric: String,
    pub institute_id: Uuid,
    pub run_id: Uuid,
    pub value: f64,
    pub stderr: Option<f64>,
    pub sample_count: Option<i64>,
    /// The run's comparability verdict (see `Run::comparable`).
    pub comparable: Option<bool>,
    pub deviations: Vec<Deviation>,
}

struct SummaryRecord {
    protocol_id: Uuid,
    protocol_version: i32,
    scorer: String,
    metric: String,
    institute_id: Uuid,
    run_id: Uuid,
    value: f64,
    stderr: Option<f64>,
    sample_count: Option<i64>,
    deviations: serde_json::Value,
    checked_at: Option<DateTime<Utc>>,
}

/// The metrics of an exercise's finished runs that `institutes` may see: their own, and
/// those released to them.
#[tracing::instrument(skip_all)]
pub async fn summary(
    conn: &mut PgConnection,
    exercise_id: Uuid,
    institutes: &[Uuid],
) -> Result<Vec<SummaryRow>, StoreError> {
    let records = sqlx::query_as!(
        SummaryRecord,
        "select r.protocol_id, r.protocol_version, m.scorer, m.metric, r.institute_id,
                r.id as run_id, m.value, m.stderr, m.sample_count, r.deviations, r.checked_at
         from runs r join run_metrics m on m.run_id = r.id
         where r.exercise_id = $1 and r.status in ('succeeded', 'failed')
           and (r.institute_id = any($2)
                or exists (select 1 from run_releases rr
                           where rr.run_id = r.id and rr.institute_id = any($2)))
         order by r.protocol_id, r.protocol_version, m.scorer, m.metric, r.institute_id, r.id",
        exercise_id,
        institutes
    )
    .fetch_all(conn)
    .await?;
    records
        .into_iter()
        .map(|r| {
            let deviations: Vec<Deviation> =
                serde_json::from_value(r.deviations).map_err(StoreError::corrupt)?;
            Ok(SummaryRow {
                protocol_id: r.protocol_id,
                protocol_version: r.protocol_version,
                scorer: r.scorer,
                metric: r.metric,
                institute_id: r.institute_id,
                run_id: r.run_id,
                value: r.value,
                stderr: r.stderr,
                sample_count: r.sample_count,
                comparable: r.checked_at.map(|_| deviations.is_empty()),
                deviations,
            })
        })
        .collect()
}

/// Writes a batch with `COPY`, the fastest way in, when none of its keys is stored yet;
/// answers `false`, having written nothing, when one is (then upsert it instead). The
/// batch must hold each key once.
#[tracing::instrument(skip_all)]
async fn copy_new_samples(
    conn: &mut PgConnection,
    run_id: Uuid,
    rows: &[SampleRow],
) -> Result<bool, StoreError> {
    let mut data = String::with_capacity(rows.len() * 128);
    let run = run_id.to_string();
    for r in rows {
        let number = r.value_number.map(|n| n.to_string());
        let sample_metadata = r.sample_metadata.as_ref().map(|m| m.to_string());
        let metadata = r.metadata.as_ref().map(|m| m.to_string());
        let fields = [
            Some(run.as_str()),
            Some(r.sample_id.as_str()),
            None,
            Some(r.scorer.as_str()),
            number.as_deref(),
            r.value_label.as_deref(),
            sample_metadata.as_deref(),
            r.answer.as_deref(),
            r.explanation.as_deref(),
            metadata.as_deref(),
        ];
        for (i, field) in fields.iter().enumerate() {
            if i > 0 {
                data.push('\t');
            }
            match (i, field) {
                (2, _) => data.push_str(&r.epoch.to_string()),
                (_, Some(text)) => copy_escape(&mut data, text),
                (_, None) => data.push_str("\\N"),
            }
        }
        data.push('\n');
    }
    // PostgreSQL refuses COPY into a table under row-level security: the batch goes by
    // COPY into a private temporary table, then by one INSERT, which the policies check.
    sqlx::query!("savepoint copy_batch")
        .execute(&mut *conn)
        .await?;
    let copied = async {
        // Unchecked queries: the temporary table exists only at run time.
        sqlx::query(
            "create temporary table if not exists run_samples_incoming
               (like run_samples, answer text, explanation text, metadata jsonb)
               on commit drop",
        )
        .execute(&mut *conn)
        .await?;
        let mut copy = conn
            .copy_in_raw(
                "copy run_samples_incoming (run_id, sample_id, epoch, scorer, value_number, \
                 value_label, sample_metadata, answer, explanation, metadata) from stdin",
            )
            .await?;
        copy.send(data.as_bytes()).await?;
        copy.finish().await?;
        sqlx::query(
            "insert into run_samples (run_id, sample_id, epoch, scorer, value_number,
                                      value_label, sample_metadata)
             select run_id, sample_id, epoch, scorer, value_number, value_label,
                    sample_metadata
             from run_samples_incoming",
        )
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            "insert into run_sample_transcripts (run_id, sample_id, epoch, scorer, answer,
                                                 explanation, metadata)
             select run_id, sample_id, epoch, scorer, answer, explanation, metadata
             from run_samples_incoming
             where answer is not null or explanation is not null or metadata is not null",
        )
        .execute(&mut *conn)
        .await?;
        sqlx::query("truncate run_samples_incoming")
            .execute(&mut *conn)
            .await
    }
    .await;
    match copied.map_err(StoreError::from) {
        Ok(_) => {
            sqlx::query!("release savepoint copy_batch")
                .execute(conn)
                .await?;
            Ok(true)
        }
        Err(StoreError::Conflict { .. }) => {
            sqlx::query!("rollback to savepoint copy_batch")
                .execute(conn)
                .await?;
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Text in `COPY`'s text format.
fn copy_escape(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}
