//! PostgreSQL's errors as the store's: a connection that is gone, refused or silent is
//! [`StoreError::Unavailable`] (the writer reconnects), a statement cancelled by a timeout is
//! [`StoreError::TimedOut`] (the connection stays), anything else keeps its SQLSTATE.

use crate::store::StoreError;

/// SQLSTATE classes and codes that mean the server went away or is not taking work: 08
/// (connection exception), 57P01-57P03 (admin or crash shutdown, cannot connect now), 53300 (too
/// many connections).
fn means_unavailable(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300")
}

/// SQLSTATEs of a statement the server gave up on while the connection stays good:
/// query_canceled (`statement_timeout`, a cancel) and lock_not_available (`lock_timeout`).
fn means_cancelled(code: &str) -> bool {
    matches!(code, "57014" | "55P03")
}

/// What the server said, or the client's own description when the server said nothing.
fn server_message(error: &tokio_postgres::Error) -> String {
    error
        .as_db_error()
        .map(|db| db.message().to_owned())
        .unwrap_or_else(|| error.to_string())
}

/// The store's error for `error`; `closed` says whether the client lost its connection.
pub(crate) fn from_postgres(error: &tokio_postgres::Error, closed: bool) -> StoreError {
    match error.code() {
        Some(code) if means_cancelled(code.code()) && !closed => StoreError::TimedOut {
            code: code.code().into(),
            detail: server_message(error).into(),
        },
        Some(code) if !means_unavailable(code.code()) && !closed => StoreError::Postgres {
            code: code.code().into(),
            detail: server_message(error).into(),
        },
        Some(_) => StoreError::Unavailable {
            detail: with_sources(error).into(),
        },
        // No SQLSTATE: an I/O error, a closed connection, a protocol failure.
        None if closed || error.is_closed() || source_is_io(error) => StoreError::Unavailable {
            detail: with_sources(error).into(),
        },
        None => StoreError::Postgres {
            code: "".into(),
            detail: with_sources(error).into(),
        },
    }
}

/// "error connecting to server: Connection refused (os error 111)", not only the first part.
fn with_sources(error: &tokio_postgres::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn source_is_io(error: &tokio_postgres::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    false
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        from_postgres(&error, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_classes_are_unavailable_and_the_rest_keep_their_code() {
        for code in ["08006", "08001", "57P01", "57P03", "53300"] {
            assert!(means_unavailable(code), "{code}");
        }
        for code in ["23505", "53100", "42P01", "40001", "57014"] {
            assert!(!means_unavailable(code), "{code}");
        }
        for code in ["57014", "55P03"] {
            assert!(means_cancelled(code), "{code}");
        }
        for code in ["57P01", "53100", "40001"] {
            assert!(!means_cancelled(code), "{code}");
        }
    }
}
