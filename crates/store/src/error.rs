//! What a database error means for the caller. The port's [`StoreError`]
//! names no driver: a caller learns that the database could not be reached
//! (`Unavailable`), that it refused a statement (`Failed`), or that what it
//! holds cannot be read back (`Corrupt`); the driver's words go into the
//! message, with what was being done.

use callmeta_app::store::StoreError;

/// `doing` says what was being done ("opening data/callmeta.db").
pub(crate) fn db_error(doing: &str, e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::RowNotFound => StoreError::NotFound,
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Configuration(_) => StoreError::Unavailable(format!("{doing}: {e}")),
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::Decode(_) => StoreError::Corrupt(format!("{doing}: {e}")),
        sqlx::Error::Database(ref db) if db.is_unique_violation() => {
            StoreError::Conflict(format!("{doing}: already exists"))
        }
        e => StoreError::Failed(format!("{doing}: {e}")),
    }
}

/// Whether a statement failed on a unique key (the caller says which).
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// `?` on sqlx results inside the store: the statement's purpose is given
/// by the method, so the message names the operation.
pub(crate) trait Context<T> {
    fn doing(self, doing: &str) -> Result<T, StoreError>;
}

impl<T> Context<T> for Result<T, sqlx::Error> {
    fn doing(self, doing: &str) -> Result<T, StoreError> {
        self.map_err(|e| db_error(doing, e))
    }
}
