//! SQLite's errors as the store's: a lock held past the busy timeout is [`StoreError::Locked`]
//! (answered BUSY: `StoreError::is_transient`),
//! everything else keeps its extended result code.

use rusqlite::ErrorCode;

use crate::store::StoreError;

/// SQLITE_BUSY (another connection's lock past the busy timeout) or SQLITE_LOCKED (a table
/// lock within this process): nothing was written, and a later try may succeed.
fn is_locked(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// The SQLite extended result code of `error`, or -1 when it did not come from SQLite.
pub(crate) fn code_of(error: &rusqlite::Error) -> i32 {
    match error {
        rusqlite::Error::SqliteFailure(e, _) => e.extended_code,
        _ => -1,
    }
}

/// The batch-wide error for a failed BEGIN, COMMIT or a rolled-back transaction.
pub(crate) fn transaction(error: &rusqlite::Error) -> StoreError {
    if is_locked(error) {
        return StoreError::Locked;
    }
    StoreError::TransactionFailed {
        code: code_of(error),
        detail: error.to_string().into(),
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        if is_locked(&error) {
            return StoreError::Locked;
        }
        StoreError::Sqlite {
            code: code_of(&error),
            detail: error.to_string().into(),
        }
    }
}
