//! Failed logins, counted per login name and per client address over a window, so
//! that throttling holds across every instance of the service.

use sqlx::PgConnection;

use crate::StoreError;

pub struct RecentFailures {
    pub for_login: i64,
    pub from_addr: i64,
    /// Seconds until the oldest failure in the window leaves it.
    pub retry_after_secs: i64,
}

#[tracing::instrument(skip_all)]
pub async fn recent(
    conn: &mut PgConnection,
    login: &str,
    client_addr: &str,
    window_secs: f64,
) -> Result<RecentFailures, StoreError> {
    let row = sqlx::query!(
        r#"select
             count(*) filter (where login = lower($1)) as "for_login!",
             count(*) filter (where client_addr = $2) as "from_addr!",
             coalesce(ceil(extract(epoch from min(at) + make_interval(secs => $3) - now())), 1)::bigint
               as "retry_after!"
           from login_failures
           where (login = lower($1) or client_addr = $2) and at > now() - make_interval(secs => $3)"#,
        login,
        client_addr,
        window_secs
    )
    .fetch_one(conn)
    .await?;
    Ok(RecentFailures {
        for_login: row.for_login,
        from_addr: row.from_addr,
        retry_after_secs: row.retry_after.max(1),
    })
}

#[tracing::instrument(skip_all)]
pub async fn record(
    conn: &mut PgConnection,
    login: &str,
    client_addr: &str,
) -> Result<(), StoreError> {
    sqlx::query!(
        "insert into login_failures (login, client_addr) values (lower($1), $2)",
        login,
        client_addr
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Forgets a login's failures after it succeeds, and failures past any window.
#[tracing::instrument(skip_all)]
pub async fn clear(conn: &mut PgConnection, login: &str) -> Result<(), StoreError> {
    sqlx::query!(
        "delete from login_failures where login = lower($1) or at < now() - interval '1 day'",
        login
    )
    .execute(conn)
    .await?;
    Ok(())
}
