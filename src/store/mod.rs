//! Persistence: the PostgreSQL schema, its row types and every query herald runs, behind a
//! pooled diesel-async connection. Routes call the functions here; no SQL lives elsewhere.

pub mod celebrities;
pub mod database;
pub mod epochs;
pub mod events;
pub mod friends;
pub mod history;
pub mod idempotency;
pub mod models;
pub mod pg_tls;
pub mod pg_url;
pub mod posts;
pub mod schema;
pub mod sslmode;
pub mod tokens;
pub mod users;

use diesel_async::pooled_connection::deadpool::{Object, Pool, PoolError};
use diesel_async::AsyncPgConnection;

pub type DbPool = Pool<AsyncPgConnection>;
pub type DbConn = Object<AsyncPgConnection>;

/// What can go wrong talking to PostgreSQL, split by what the caller should tell its client.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No connection could be had in time: the database is down or saturated. Retry later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A row names a user that does not exist (or no longer does).
    #[error("no such user")]
    NoSuchUser,
    #[error("database error: {0}")]
    Query(#[from] diesel::result::Error),
}

impl From<PoolError> for StoreError {
    fn from(error: PoolError) -> Self {
        StoreError::Unavailable(error.to_string())
    }
}

impl StoreError {
    /// A query that failed because the server went away (or stopped taking writes), or that ran
    /// past `database.statement_timeout_ms`, is an outage or an overload, not a bug: the client
    /// is told to retry (503), and a write it sent may or may not have committed (the
    /// `Idempotency-Key` header makes the retry safe).
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Unavailable(_) => true,
            StoreError::Query(error) => is_outage(error),
            StoreError::NoSuchUser => false,
        }
    }
}

/// Whether `error` says the connection or the server failed rather than the query, or that
/// the query ran past `database.statement_timeout_ms`: the connection closed or broke
/// (mid-transaction too, even at its commit), the server is shutting down, starting or
/// recovering, it is a standby (read-only) during a failover, or it cancelled the statement.
fn is_outage(error: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    match error {
        Error::DatabaseError(kind, info) => match kind {
            DatabaseErrorKind::ClosedConnection
            | DatabaseErrorKind::UnableToSendCommand
            | DatabaseErrorKind::ReadOnlyTransaction => true,
            // SQLSTATE class 57 (operator intervention): the server terminates the session
            // for a shutdown, a crash of another backend, or it is not ready yet, or cancels a
            // statement past its timeout (57014). diesel-async keeps only the message of these.
            DatabaseErrorKind::Unknown => {
                let message = info.message();
                message.starts_with("terminating connection")
                    || message.starts_with("the database system is")
                    || message.starts_with("canceling statement due to statement timeout")
            }
            _ => false,
        },
        Error::RollbackErrorOnCommit { commit_error, .. } => is_outage(commit_error),
        Error::BrokenTransactionManager => true,
        _ => false,
    }
}

/// Takes a connection from the pool, waiting at most the pool's configured timeout.
pub async fn connection(pool: &DbPool) -> Result<DbConn, StoreError> {
    Ok(pool.get().await?)
}

#[cfg(test)]
mod tests {
    use diesel::result::{DatabaseErrorKind, Error};

    use super::StoreError;

    fn database(kind: DatabaseErrorKind, message: &str) -> StoreError {
        StoreError::Query(Error::DatabaseError(kind, Box::new(message.to_owned())))
    }

    #[test]
    fn a_lost_server_is_an_outage_and_a_bad_query_is_not() {
        for outage in [
            database(DatabaseErrorKind::UnableToSendCommand, "connection closed"),
            database(DatabaseErrorKind::ClosedConnection, "closed"),
            database(
                DatabaseErrorKind::ReadOnlyTransaction,
                "cannot execute INSERT in a read-only transaction",
            ),
            database(
                DatabaseErrorKind::Unknown,
                "terminating connection due to administrator command",
            ),
            database(
                DatabaseErrorKind::Unknown,
                "the database system is in recovery mode",
            ),
            StoreError::Query(Error::RollbackErrorOnCommit {
                rollback_error: Box::new(Error::BrokenTransactionManager),
                commit_error: Box::new(Error::DatabaseError(
                    DatabaseErrorKind::UnableToSendCommand,
                    Box::new("connection closed".to_owned()),
                )),
            }),
            StoreError::Unavailable("timed out".into()),
        ] {
            assert!(outage.is_unavailable(), "{outage}");
        }
        for bug in [
            database(DatabaseErrorKind::UniqueViolation, "duplicate key"),
            database(DatabaseErrorKind::Unknown, "syntax error at or near"),
            StoreError::Query(Error::NotFound),
            StoreError::NoSuchUser,
        ] {
            assert!(!bug.is_unavailable(), "{bug}");
        }
    }
}
