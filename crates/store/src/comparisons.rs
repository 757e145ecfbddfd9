//! The sums a paired comparison of two runs needs, computed in PostgreSQL in one
//! statement: the runs' scores never come into the service's memory.

use jointeval_domain::comparison::{Category, Cell, ClusterSums, NumericSums, Reducer, Unmatched};
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
    let row = sqlx::query!(
        r#"with s as (
               select run_id, sample_id, epoch, value_number,
                      coalesce(value_label, value_number::text) as category,
                      metadata ->> $6::text as cluster
               from run_samples
               where run_id in ($1, $2) and scorer = $3 and ($4::int is null or epoch = $4)
           ),
           reduced as (
               select run_id, sample_id, -1 as epoch,
                      case $5::text
                          when 'mean' then avg(value_number)
                          when 'median' then percentile_cont(0.5) within group (order by value_number)
                          when 'max' then max(value_number)
                          else min(value_number)
                      end as value_number,
                      min(cluster) as cluster
               from s where $5::text is not null
               group by run_id, sample_id
           ),
           sides as (
               select run_id, sample_id, epoch, value_number, category, cluster
               from s where $5::text is null
               union all
               select run_id, sample_id, epoch, value_number, value_number::text, cluster
               from reduced
           ),
           pairs as materialized (
               select coalesce(a.sample_id, b.sample_id) as sample_id,
                      coalesce(a.epoch, b.epoch) as epoch,
                      a.value_number as xa, b.value_number as xb,
                      a.category as ca, b.category as cb,
                      coalesce(a.cluster, b.cluster) as cluster,
                      a.sample_id is not null as in_a, b.sample_id is not null as in_b
               from (select * from sides where run_id = $1) a
               full join (select * from sides where run_id = $2) b
                 on a.sample_id = b.sample_id and a.epoch = b.epoch
           ),
           num as (
               select xa, xb, xa - xb as d, cluster from pairs
               where xa is not null and xb is not null
           ),
           m as (
               select count(*) as n, avg(xa) as mean_a, avg(xb) as mean_b, avg(d) as mean_d,
                      var_samp(xa) as var_a, var_samp(xb) as var_b, var_samp(d) as var_d,
                      count(*) filter (where cluster is null) as no_cluster
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
               select ca, cb, xa, xb from pairs
               where in_a and in_b and ca is not null and cb is not null
           ),
           categories as (
               select category, min(number) as number
               from (select ca as category, xa as number from matched
                     union all
                     select cb, xb from matched) v
               group by category
               limit 101
           ),
           cells as (
               select ca, cb, count(*) as count from matched group by ca, cb limit 10001
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
                  m.no_cluster as "no_cluster!", c.clusters as "clusters!",
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
    )
    .fetch_one(conn)
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
            clusters: row.clusters,
            squared_deviation_sum: row.deviation,
        }),
        categories: json(row.categories)?,
        table: json(row.cells)?,
    })
}

fn json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, StoreError> {
    serde_json::from_value(value).map_err(StoreError::corrupt)
}
