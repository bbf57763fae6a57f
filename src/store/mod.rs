//! Persistence: the PostgreSQL schema, its row types and every query herald runs, behind a
//! pooled diesel-async connection. Routes call the functions here; no SQL lives elsewhere.

pub mod celebrities;
pub mod database;
pub mod events;
pub mod friends;
pub mod models;
pub mod pg_tls;
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
    /// A query that failed because the server went away, or that ran past
    /// `database.statement_timeout_ms`, is an outage or an overload, not a bug: retry later.
    pub fn is_unavailable(&self) -> bool {
        use diesel::result::{DatabaseErrorKind, Error};
        match self {
            StoreError::Unavailable(_) => true,
            StoreError::Query(Error::DatabaseError(DatabaseErrorKind::ClosedConnection, _)) => true,
            StoreError::Query(Error::DatabaseError(_, info)) => {
                is_statement_timeout(info.message())
            }
            StoreError::Query(_) | StoreError::NoSuchUser => false,
        }
    }
}

/// PostgreSQL's message for a statement cancelled by `statement_timeout` (SQLSTATE 57014,
/// which diesel does not expose by code).
fn is_statement_timeout(message: &str) -> bool {
    message.starts_with("canceling statement due to statement timeout")
}

/// Takes a connection from the pool, waiting at most the pool's configured timeout.
pub async fn connection(pool: &DbPool) -> Result<DbConn, StoreError> {
    Ok(pool.get().await?)
}
