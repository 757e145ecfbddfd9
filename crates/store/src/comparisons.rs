//! The sums a paired comparison of two runs needs, computed in PostgreSQL in one
//! statement: the runs' scores never come into the service's memory.

use jointeval_domain::comparison::{
    Category, Cell, ClusterSums, MAX_CATEGORIES, NumericSums, Reducer, Unmatched,
};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::StoreError;

/// What to compare: one scorer's values, paired by sample and epoch (one epoch only, when
/// `epoch` is set), or by sample once `reducer` has reduced each sample's epochs.
pub struct Selection<'a> {
    pub a: Uuid,
    pub b: Uuid,
    pub scorer: &'a str,
    pub epoch: Option<i32>,
    pub reducer: Option<Reducer>,
    pub cluster: Option<&'a str>,
}

/// How many unmatched samples of each side are listed.
pub const UNMATCHED_LISTED: i64 = 100;

pub struct Sums {
    pub matched: i64,
    pub a_only: i64,
    pub b_only: i64,
    pub a_only_listed: Vec<Unmatched>,
    pub b_only_listed: Vec<Unmatched>,
    pub numeric: NumericSums,
    pub clusters: Option<ClusterSums>,
    /// At most [`jointeval_domain::comparison::MAX_CATEGORIES`] + 1.
    pub categories: Vec<Category>,
    pub table: Vec<Cell>,
}

/// The sums of the comparison of `selection`'s two runs. A label counts by its number in
/// the numeric sums, and as itself in the table; a reducer reduces numbers only.
#[tracing::instrument(skip_all)]
pub async fn sums(conn: &mut PgConnection, selection: &Selection<'_>) -> Result<Sums, StoreError> {
    room_to_join(conn, true).await?;
    // Scores too large for double precision are refused by the database mid-statement;
    // the savepoint keeps the transaction usable for the next comparison.
    sqlx::query!("savepoint comparison")
        .execute(&mut *conn)
        .await?;
    let row = sqlx::query!(
        r#"with s as not materialized (
               select run_id, sample_id, epoch, value_number, value_label,
                      sample_metadata ->> $6::text as cluster
               from run_samples
               where run_id in ($1, $2) and scorer = $3 and ($4::int is null or epoch = $4)
           ),
           reduced as not materialized (
               select run_id, sample_id, -1 as epoch,
                      case $5::text
                          when 'mean' then avg(value_number)
                          when 'median' then percentile_cont(0.5) within group (order by value_number)
                          when 'max' then max(value_number)
                          else min(value_number)
                      end as value_number,
                      null::text as value_label, min(cluster) as cluster
               from s where $5::text is not null
               group by run_id, sample_id
           ),
           sides as not materialized (
               select run_id, sample_id, epoch, value_number, value_label, cluster
               from s where $5::text is null
               union all
               select run_id, sample_id, epoch, value_number, value_label, cluster
               from reduced
           ),
           pairs as materialized (
               select coalesce(a.sample_id, b.sample_id) as sample_id,
                      coalesce(a.epoch, b.epoch) as epoch,
                      a.value_number as xa, b.value_number as xb,
                      a.value_label as la, b.value_label as lb,
                      coalesce(a.cluster, b.cluster) as cluster,
                      a.cluster <> b.cluster as split,
                      a.sample_id is not null as in_a, b.sample_id is not null as in_b
               from (select * from sides where run_id = $1) a
               full join (select * from sides where run_id = $2) b
                 on a.sample_id = b.sample_id and a.epoch = b.epoch
           ),
           num as not materialized (
               select xa, xb, xa - xb as d, cluster, split from pairs
               where xa is not null and xb is not null
           ),
           m as (
               select count(*) as n, avg(xa) as mean_a, avg(xb) as mean_b, avg(d) as mean_d,
                      var_samp(xa) as var_a, var_samp(xb) as var_b, var_samp(d) as var_d,
                      count(*) filter (where cluster is null) as no_cluster,
                      count(*) filter (where split) as split_cluster
               from num
           ),
           c as (
               select count(*) as clusters,
                      coalesce(sum(power(g.s - g.k * m.mean_d, 2)), 0) as deviation
               from (select sum(d) as s, count(*) as k from num
                     where cluster is not null group by cluster) g
               cross join m
           ),
           matched as (
               select la, lb, xa, xb from pairs
               where in_a and in_b and (la is not null or xa is not null)
                 and (lb is not null or xb is not null)
           ),
           vals as not materialized (
               select la as label, case when la is null then xa + 0.0 end as key, xa as number
               from matched
               union all
               select lb, case when lb is null then xb + 0.0 end, xb from matched
           ),
           -- More than 100 categories among the first values prove as many among all:
           -- scores that are not categories (a float of every value) then skip grouping
           -- every value, which cost a million pairs more than a second.
           prefix as (
               select coalesce(label, key::text) as category, min(number) as number
               from (select * from vals limit 20000) p
               group by 1
               limit 101
           ),
           categories as (
               select category, number from prefix where (select count(*) from prefix) > $8
               union all
               select coalesce(label, key::text) as category, min(number) as number
               from (select label, key, min(number) as number
                     from vals
                     where (select count(*) from prefix) <= $8
                     group by label, key
                     limit 202) g
               group by 1
               limit 101
           ),
           cells as (
               select coalesce(la, (xa + 0.0)::text) as ca, coalesce(lb, (xb + 0.0)::text) as cb,
                      count(*) as count
               from matched
               where (select count(*) from categories) <= $8
               group by 1, 2 limit 10001
           )
           select (select count(*) from pairs where in_a and in_b) as "matched!",
                  (select count(*) from pairs where not in_b) as "a_only!",
                  (select count(*) from pairs where not in_a) as "b_only!",
                  (select coalesce(jsonb_agg(jsonb_build_object(
                              'sample_id', sample_id, 'epoch', nullif(epoch, -1))
                              order by sample_id, epoch), '[]')
                   from (select sample_id, epoch from pairs where not in_b
                         order by sample_id, epoch limit $7) u) as "a_only_listed!",
                  (select coalesce(jsonb_agg(jsonb_build_object(
                              'sample_id', sample_id, 'epoch', nullif(epoch, -1))
                              order by sample_id, epoch), '[]')
                   from (select sample_id, epoch from pairs where not in_a
                         order by sample_id, epoch limit $7) u) as "b_only_listed!",
                  m.n as "n!", m.mean_a, m.mean_b, m.mean_d, m.var_a, m.var_b, m.var_d,
                  m.no_cluster as "no_cluster!", m.split_cluster as "split_cluster!",
                  c.clusters as "clusters!",
                  c.deviation as "deviation!",
                  (select coalesce(jsonb_agg(jsonb_build_object(
                              'label', category, 'number', number)), '[]')
                   from categories) as "categories!",
                  (select coalesce(jsonb_agg(jsonb_build_object(
                              'a', ca, 'b', cb, 'count', count)), '[]')
                   from cells) as "cells!"
           from m cross join c"#,
        selection.a,
        selection.b,
        selection.scorer,
        selection.epoch,
        selection.reducer.map(Reducer::as_str),
        selection.cluster,
        UNMATCHED_LISTED,
        MAX_CATEGORIES as i64,
    )
    .fetch_one(&mut *conn)
    .await;
    let row = match row.map_err(StoreError::from) {
        Ok(row) => row,
        Err(StoreError::OutOfRange) => {
            sqlx::query!("rollback to savepoint comparison")
                .execute(&mut *conn)
                .await?;
            return Err(StoreError::OutOfRange);
        }
        Err(e) => return Err(e),
    };
    sqlx::query!("release savepoint comparison")
        .execute(conn)
        .await?;
    Ok(Sums {
        matched: row.matched,
        a_only: row.a_only,
        b_only: row.b_only,
        a_only_listed: json(row.a_only_listed)?,
        b_only_listed: json(row.b_only_listed)?,
        numeric: NumericSums {
            pairs: row.n,
            mean_a: row.mean_a,
            mean_b: row.mean_b,
            mean_difference: row.mean_d,
            variance_a: row.var_a,
            variance_b: row.var_b,
            variance_difference: row.var_d,
        },
        clusters: selection.cluster.map(|field| ClusterSums {
            field: field.to_owned(),
            pairs_without_field: row.no_cluster,
            pairs_split: row.split_cluster,
            clusters: row.clusters,
            squared_deviation_sum: row.deviation,
        }),
        categories: json(row.categories)?,
        table: json(row.cells)?,
    })
}

/// Memory to join two runs' scores in one pass, for the rest of the transaction: a
/// million pairs' hash table (some 64 MiB) fits, where the default 4 MiB spills it to disk
/// in batches. With `hash_only`, no merge join either: it would sort both sides by sample
/// id under the database's collation, which measured slower at a million pairs (the sums;
/// a page of disagreements keeps the planner's choice, which measured faster).
async fn room_to_join(conn: &mut PgConnection, hash_only: bool) -> Result<(), StoreError> {
    sqlx::query!(
        "select set_config('work_mem', '128MB', true) as work_mem,
                set_config('enable_mergejoin', case when $1 then 'off' else 'on' end, true)
                  as merge_join",
        hash_only
    )
    .fetch_one(conn)
    .await?;
    Ok(())
}

fn json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, StoreError> {
    serde_json::from_value(value).map_err(StoreError::corrupt)
}

/// Where a page of disagreements continues: after the pair of this key, in the list's
/// order (numeric pairs first, largest |a − b| first, then the others; ties by sample id
/// and epoch).
#[derive(Debug, Clone, PartialEq)]
pub struct DisagreementKey {
    /// 0 for a pair of two numbers, 1 for the others.
    pub class: i32,
    /// −|a − b| for a pair of numbers, 0 for the others.
    pub key: f64,
    pub sample_id: String,
    /// −1 when the epochs are reduced.
    pub epoch: i32,
}

impl DisagreementKey {
    /// Before every pair.
    pub fn first() -> Self {
        Self {
            class: -1,
            key: 0.0,
            sample_id: String::new(),
            epoch: 0,
        }
    }
}

/// One pair whose values differ, as stored; the answers and explanations only of the
/// sides the caller may read the transcripts of, and never when the epochs are reduced.
#[derive(Debug, Clone, PartialEq)]
pub struct DisagreementRow {
    pub sample_id: String,
    /// −1 when the epochs are reduced.
    pub epoch: i32,
    pub a_number: Option<f64>,
    pub a_label: Option<String>,
    pub b_number: Option<f64>,
    pub b_label: Option<String>,
    pub class: i32,
    pub key: f64,
    pub a_answer: Option<String>,
    pub a_explanation: Option<String>,
    pub b_answer: Option<String>,
    pub b_explanation: Option<String>,
}

impl DisagreementRow {
    pub fn key(&self) -> DisagreementKey {
        DisagreementKey {
            class: self.class,
            key: self.key,
            sample_id: self.sample_id.clone(),
            epoch: self.epoch,
        }
    }
}

/// Whose transcripts the caller may read, of the two runs compared.
#[derive(Debug, Clone, Copy)]
pub struct Transcripts {
    pub a: bool,
    pub b: bool,
}

/// A page of the matched pairs of `selection` whose values differ, after `after`, in the
/// order of [`DisagreementKey`]: computed in PostgreSQL, a page at a time. Each page
/// joins the two runs' scores of the scorer and keeps the `limit` first pairs past the
/// cursor (a top-N sort, never a sort of every pair); only the page's rows are read again
/// for their answers and explanations. Values differ when their labels differ or, for two
/// numbers without labels, the numbers do; reduced values are numbers.
#[tracing::instrument(skip_all)]
pub async fn disagreements(
    conn: &mut PgConnection,
    selection: &Selection<'_>,
    transcripts: Transcripts,
    after: &DisagreementKey,
    limit: i64,
) -> Result<Vec<DisagreementRow>, StoreError> {
    room_to_join(conn, false).await?;
    let Some(reducer) = selection.reducer else {
        return Ok(sqlx::query_as!(
            DisagreementRow,
            r#"with pairs as (
                   select a.sample_id, a.epoch, a.value_number as xa, a.value_label as la,
                          b.value_number as xb, b.value_label as lb,
                          (a.value_number is null or b.value_number is null)::int as class,
                          coalesce(-abs(a.value_number - b.value_number), 0) as key
                   from run_samples a
                   join run_samples b
                     on b.run_id = $2 and b.scorer = $3
                    and b.sample_id = a.sample_id and b.epoch = a.epoch
                   where a.run_id = $1 and a.scorer = $3 and ($4::int is null or a.epoch = $4)
                     and case when a.value_label is null and b.value_label is null
                              then a.value_number <> b.value_number
                              -- As the comparison's categories: a label, or else the
                              -- number as text (the label "1" is the number 1).
                              else coalesce(a.value_label, (a.value_number + 0.0)::text)
                                   is distinct from
                                   coalesce(b.value_label, (b.value_number + 0.0)::text) end
               ),
               page as (
                   select * from pairs
                   where (class, key, sample_id, epoch) > ($5, $6, $7, $8)
                   order by class, key, sample_id, epoch
                   limit $9
               )
               select p.sample_id as "sample_id!", p.epoch as "epoch!",
                      p.xa as a_number, p.la as a_label, p.xb as b_number, p.lb as b_label,
                      p.class as "class!", p.key as "key!",
                      case when $10 then ra.answer end as a_answer,
                      case when $10 then ra.explanation end as a_explanation,
                      case when $11 then rb.answer end as b_answer,
                      case when $11 then rb.explanation end as b_explanation
               from page p
               left join run_sample_transcripts ra
                 on ra.run_id = $1 and ra.sample_id = p.sample_id and ra.epoch = p.epoch
                and ra.scorer = $3
               left join run_sample_transcripts rb
                 on rb.run_id = $2 and rb.sample_id = p.sample_id and rb.epoch = p.epoch
                and rb.scorer = $3
               order by p.class, p.key, p.sample_id, p.epoch"#,
            selection.a,
            selection.b,
            selection.scorer,
            selection.epoch,
            after.class,
            after.key,
            after.sample_id,
            after.epoch,
            limit,
            transcripts.a,
            transcripts.b,
        )
        .fetch_all(conn)
        .await?);
    };
    Ok(sqlx::query_as!(
        DisagreementRow,
        r#"with reduced as (
               select run_id, sample_id,
                      case $5::text
                          when 'mean' then avg(value_number)
                          when 'median' then percentile_cont(0.5) within group (order by value_number)
                          when 'max' then max(value_number)
                          else min(value_number)
                      end as x
               from run_samples
               where run_id in ($1, $2) and scorer = $3 and ($4::int is null or epoch = $4)
               group by run_id, sample_id
           ),
           pairs as (
               select a.sample_id, a.x as xa, b.x as xb,
                      (a.x is null or b.x is null)::int as class,
                      coalesce(-abs(a.x - b.x), 0) as key
               from reduced a join reduced b on b.run_id = $2 and b.sample_id = a.sample_id
               where a.run_id = $1 and a.x is distinct from b.x
           )
           select sample_id as "sample_id!", -1 as "epoch!",
                  xa as a_number, null::text as a_label, xb as b_number, null::text as b_label,
                  class as "class!", key as "key!",
                  null::text as a_answer, null::text as a_explanation,
                  null::text as b_answer, null::text as b_explanation
           from pairs
           where (class, key, sample_id) > ($6, $7, $8)
           order by class, key, sample_id
           limit $9"#,
        selection.a,
        selection.b,
        selection.scorer,
        selection.epoch,
        reducer.as_str(),
        after.class,
        after.key,
        after.sample_id,
        limit,
    )
    .fetch_all(conn)
    .await?)
}
