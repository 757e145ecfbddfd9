/// What went wrong in the database, sorted by what the caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or is shutting down: worth retrying later.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// A unique or foreign-key constraint refused the change; carries the constraint's name.
    #[error("constraint {constraint} refused the change")]
    Conflict { constraint: String },
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The request carried text PostgreSQL cannot store (a NUL character): the client's
    /// input, not our failure.
    #[error("text PostgreSQL cannot store")]
    UnstorableText,
    /// Arithmetic on stored values left double precision (SQLSTATE 22003: a difference or
    /// a square of scores past 1.8e308): the data's limit, not our failure.
    #[error("a value out of the range of double precision")]
    OutOfRange,
    /// A stored row breaks a rule the schema should have enforced.
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Other(sqlx::Error),
}

impl StoreError {
    pub(crate) fn corrupt(e: impl std::fmt::Display) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if is_unavailable(&e) {
            return StoreError::Unavailable(e);
        }
        // 22021: a byte sequence invalid in UTF-8 (a NUL in text); 22P05: a character
        // jsonb cannot hold (\u0000).
        if let sqlx::Error::Database(db) = &e
            && matches!(db.code().as_deref(), Some("22021" | "22P05"))
        {
            return StoreError::UnstorableText;
        }
        if let sqlx::Error::Database(db) = &e
            && db.code().as_deref() == Some("22003")
        {
            return StoreError::OutOfRange;
        }
        if let sqlx::Error::Database(db) = &e
            && (db.is_unique_violation()
                || db.is_foreign_key_violation()
                || db.code().as_deref() == Some(EXCLUSION_VIOLATION))
            && let Some(constraint) = db.constraint()
        {
            return StoreError::Conflict {
                constraint: constraint.to_owned(),
            };
        }
        StoreError::Other(e)
    }
}

const EXCLUSION_VIOLATION: &str = "23P01";

fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // SQLSTATE class 08 (connection exception), 57P01–57P03 (shutdown, cannot
        // connect now), 53300 (too many connections), and the server's own limits:
        // 57014 (statement timeout), 55P03 (lock timeout), 25P03 (idle in transaction).
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08")
                || code.starts_with("57P")
                || matches!(code.as_ref(), "53300" | "57014" | "55P03" | "25P03")
        }),
        _ => false,
    }
}
