use crate::support::TestDatabase;

#[tokio::test]
async fn migrations_apply_once_and_then_do_nothing() {
    let db = TestDatabase::empty().await;
    let pool = db.pool();
    jointeval_store::migrate(&pool).await.expect("first run");
    assert!(
        jointeval_store::migrations_current(&pool)
            .await
            .expect("check")
    );
    let applied: i64 = sqlx::query_scalar("select count(*) from _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .expect("count");

    jointeval_store::migrate(&pool).await.expect("second run");
    let again: i64 = sqlx::query_scalar("select count(*) from _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(applied, again);
    assert_eq!(applied as usize, jointeval_store::MIGRATOR.iter().count());
    pool.close().await;
}

#[tokio::test]
async fn the_schema_refuses_malformed_institutes() {
    let db = TestDatabase::migrated().await;
    let pool = db.pool();
    for (code, name) in [("us", "lower case"), ("X", "too short"), ("UK", "")] {
        let refused = sqlx::query("insert into institutes (id, code, name) values ($1, $2, $3)")
            .bind(uuid::Uuid::now_v7())
            .bind(code)
            .bind(name)
            .execute(&pool)
            .await;
        assert!(refused.is_err(), "{code:?} {name:?} was accepted");
    }
    pool.close().await;
}
