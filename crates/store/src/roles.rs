//! The database roles: migrations run as the tables' owner; the service connects as a
//! member of `jointeval_app`, which owns nothing and is held by row-level security.

use sqlx::PgPool;

use crate::StoreError;

/// The role the migrations grant the service's privileges to.
pub const SERVICE_GROUP: &str = "jointeval_app";

/// The login role the embedded default and the tests connect the service as.
pub const SERVICE_LOGIN: &str = "jointeval_service";

/// Creates `name` as a login role in [`SERVICE_GROUP`] unless it exists; run as the owner
/// (it needs CREATEROLE), after the migrations that create the group. No password: for
/// servers that trust local connections, such as the embedded default.
pub async fn ensure_service_login(owner: &PgPool, name: &str) -> Result<(), StoreError> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(StoreError::corrupt(format!(
            "{name:?} is not a role name this service creates"
        )));
    }
    let exists = sqlx::query_scalar!(
        r#"select exists(select 1 from pg_roles where rolname = $1) as "exists!""#,
        name
    )
    .fetch_one(owner)
    .await?;
    if exists {
        return Ok(());
    }
    // A role name cannot be a parameter; it was checked above.
    let created = sqlx::raw_sql(&format!("create role {name} login in role {SERVICE_GROUP}"))
        .execute(owner)
        .await;
    match created {
        Ok(_) => Ok(()),
        // Another process created it at the same moment.
        Err(sqlx::Error::Database(e)) if matches!(e.code().as_deref(), Some("42710" | "23505")) => {
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Why the pool's role would escape row-level security, by itself or through a role it
/// is a member of (and may `SET ROLE` to): none when it cannot.
pub async fn rls_bypass(pool: &PgPool) -> Result<Vec<&'static str>, StoreError> {
    let row = sqlx::query!(
        r#"select exists (select 1 from pg_roles r
                          where r.rolsuper and pg_has_role(current_user, r.oid, 'MEMBER'))
                      as "superuser!",
                  exists (select 1 from pg_roles r
                          where r.rolbypassrls and pg_has_role(current_user, r.oid, 'MEMBER'))
                      as "bypassrls!",
                  exists (select 1 from pg_tables
                          where schemaname = 'public'
                            and pg_has_role(current_user, tableowner, 'MEMBER')) as "owner!""#
    )
    .fetch_one(pool)
    .await?;
    Ok([
        (row.superuser, "is (or may become) a superuser"),
        (row.bypassrls, "has (or may take) BYPASSRLS"),
        (row.owner, "owns (or may act as the owner of) the tables"),
    ]
    .into_iter()
    .filter_map(|(yes, why)| yes.then_some(why))
    .collect())
}
