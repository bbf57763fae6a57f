//! Database lifecycle: create the database when it is missing, apply the embedded migrations,
//! and build the connection pool.

use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::Text;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::DbPool;
use crate::config::DatabaseSettings;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error("invalid database.url: {0}")]
    BadUrl(String),
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(#[from] diesel::ConnectionError),
    #[error("PostgreSQL query failed: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("migrations failed: {0}")]
    Migrate(String),
    #[error("cannot build the connection pool: {0}")]
    Pool(String),
}

#[derive(QueryableByName)]
struct Exists {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    exists: bool,
}

/// Splits `database.url` into the URL of the `postgres` maintenance database and the name of
/// the target database.
fn maintenance_url(url: &str) -> Result<(String, String), DatabaseError> {
    let mut parsed = url::Url::parse(url).map_err(|e| DatabaseError::BadUrl(e.to_string()))?;
    let name = parsed.path().trim_start_matches('/').to_owned();
    if name.is_empty() {
        return Err(DatabaseError::BadUrl("no database name in the path".into()));
    }
    let name = url::form_urlencoded::parse(format!("n={name}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or(name);
    parsed.set_path("/postgres");
    Ok((parsed.to_string(), name))
}

/// Creates the database named in `url` unless it exists. Safe to race with another instance.
pub async fn create_if_missing(url: &str) -> Result<(), DatabaseError> {
    let (admin_url, name) = maintenance_url(url)?;
    let mut conn = AsyncPgConnection::establish(&admin_url).await?;
    let exists = |name: String| {
        diesel::sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS exists")
            .bind::<Text, _>(name)
    };
    let found: Exists = exists(name.clone()).get_result(&mut conn).await?;
    if found.exists {
        return Ok(());
    }
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    if let Err(error) = diesel::sql_query(format!("CREATE DATABASE {quoted}"))
        .execute(&mut conn)
        .await
    {
        // Another instance may have created it between our check and our CREATE.
        let found: Exists = exists(name.clone()).get_result(&mut conn).await?;
        if !found.exists {
            return Err(error.into());
        }
    }
    log::info!("created database {name}");
    Ok(())
}

/// Drops the database named in `url`, closing its other connections. Used by tests to clean up.
pub async fn drop_database(url: &str) -> Result<(), DatabaseError> {
    let (admin_url, name) = maintenance_url(url)?;
    let mut conn = AsyncPgConnection::establish(&admin_url).await?;
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    diesel::sql_query(format!("DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
        .execute(&mut conn)
        .await?;
    Ok(())
}

/// Applies pending migrations and returns how many ran.
///
/// diesel's migration harness is synchronous; it runs on a thread of its own (with its own
/// small runtime inside the connection wrapper) so it never blocks an actix worker.
pub async fn run_migrations(url: &str) -> Result<usize, DatabaseError> {
    let url = url.to_owned();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let result = (|| {
            let mut conn =
                <AsyncConnectionWrapper<AsyncPgConnection> as diesel::Connection>::establish(&url)?;
            conn.run_pending_migrations(MIGRATIONS)
                .map(|applied| applied.len())
                .map_err(|e| DatabaseError::Migrate(e.to_string()))
        })();
        let _ = tx.send(result);
    });
    rx.await
        .map_err(|_| DatabaseError::Migrate("the migration thread died".into()))?
}

/// Builds the pool. Connections are made lazily; `acquire_timeout_ms` bounds every wait.
pub fn build_pool(settings: &DatabaseSettings) -> Result<DbPool, DatabaseError> {
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new(settings.url.clone());
    let timeout = Some(Duration::from_millis(settings.acquire_timeout_ms));
    DbPool::builder(manager)
        .max_size(settings.pool_size)
        .wait_timeout(timeout)
        .create_timeout(timeout)
        .recycle_timeout(timeout)
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|e| DatabaseError::Pool(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::maintenance_url;

    #[test]
    fn maintenance_url_swaps_the_database_name() {
        let (admin, name) = maintenance_url("postgres://u:p@host:5432/herald_x?sslmode=disable")
            .expect("valid url");
        assert_eq!(admin, "postgres://u:p@host:5432/postgres?sslmode=disable");
        assert_eq!(name, "herald_x");
    }

    #[test]
    fn maintenance_url_rejects_a_url_without_a_database() {
        assert!(maintenance_url("postgres://host:5432").is_err());
        assert!(maintenance_url("not a url").is_err());
    }
}
