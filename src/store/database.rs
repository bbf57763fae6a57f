//! Database lifecycle: open a connection (with TLS as `database.url`'s `sslmode` says: see
//! `pg_tls`), create the database when it is missing, apply the embedded migrations, and build
//! the connection pool.

use std::time::Duration;

use deadpool::managed::{Hook, HookError, HookResult};
use diesel::prelude::*;
use diesel::sql_types::Integer;
use diesel::sql_types::Text;
use diesel::{ConnectionError, ConnectionResult};
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, PoolError, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::pg_tls::{PgTls, SslMode};
use super::pg_url::PgUrl;
use super::DbPool;
use crate::config::DatabaseSettings;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// The `connect_timeout` (seconds, per host) a URL naming several hosts gets unless it sets one.
const MULTI_HOST_CONNECT_TIMEOUT_SECS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error("invalid database.url: {0}")]
    BadUrl(String),
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(#[from] diesel::ConnectionError),
    /// The server's certificate failed verification: a wrong `database.ca_file` or host name,
    /// which waiting does not fix.
    #[error(
        "PostgreSQL's certificate was refused ({0}): check database.ca_file and the host in \
         database.url"
    )]
    CertificateRefused(String),
    #[error("PostgreSQL query failed: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("migrations failed: {0}")]
    Migrate(String),
    #[error("cannot build the connection pool: {0}")]
    Pool(String),
}

impl DatabaseError {
    /// An error no retry can fix, so start-up reports it instead of waiting.
    pub fn is_permanent(&self) -> bool {
        matches!(self, DatabaseError::CertificateRefused(_))
    }
}

/// Opens one connection as `url` and `tls` say: plain for `sslmode` `disable` (or none),
/// through rustls otherwise. Every connection herald opens comes from here: the pool's, the
/// relay's, the migrations', database creation's.
pub async fn connect(url: &str, tls: &PgTls) -> ConnectionResult<AsyncPgConnection> {
    match open(url, tls).await {
        Ok(conn) => Ok(conn),
        Err(Refusal::Certificate(why)) => Err(ConnectionError::BadConnection(why)),
        Err(Refusal::Other(error)) => Err(error),
    }
}

/// Why `open` failed: a refused certificate is told apart from the rest.
enum Refusal {
    Certificate(String),
    Other(ConnectionError),
}

impl From<Refusal> for DatabaseError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Certificate(why) => DatabaseError::CertificateRefused(why),
            Refusal::Other(error) => DatabaseError::Connect(error),
        }
    }
}

async fn open(url: &str, tls: &PgTls) -> Result<AsyncPgConnection, Refusal> {
    let invalid = |why: String| Refusal::Other(ConnectionError::InvalidConnectionUrl(why));
    let url = with_multi_host_defaults(url);
    let (mode, url) = SslMode::of_url(&url).map_err(invalid)?;
    let connector = match (mode, tls.connector()) {
        (SslMode::Disable, _) => {
            return AsyncPgConnection::establish(&url)
                .await
                .map_err(Refusal::Other)
        }
        (_, Some(connector)) => connector.clone(),
        (_, None) => {
            return Err(invalid(format!(
                "sslmode {mode:?} asks for TLS, which this connection was not set up for"
            )))
        }
    };
    let config: tokio_postgres::Config = url
        .parse()
        .map_err(|e: tokio_postgres::Error| invalid(e.to_string()))?;
    let (client, connection) = config.connect(connector).await.map_err(|error| {
        let why = with_causes(&error);
        if crate::tls::is_certificate_refusal(&error) {
            Refusal::Certificate(why)
        } else {
            Refusal::Other(ConnectionError::BadConnection(why))
        }
    })?;
    AsyncPgConnection::try_from_client_and_connection(client, connection)
        .await
        .map_err(Refusal::Other)
}

/// `url` with what a URL naming several hosts needs and does not set:
/// `target_session_attrs=read-write` (herald writes: a standby must be skipped, not kept in the
/// pool refusing every write), and a `connect_timeout` (a host that died without a trace, no
/// answer rather than a refusal, would otherwise hold every new connection for the kernel's TCP
/// timeout, minutes, before the next host is tried).
fn with_multi_host_defaults(url: &str) -> String {
    let Ok(parsed) = PgUrl::parse(url) else {
        return url.to_owned();
    };
    if !parsed.has_several_hosts() {
        return url.to_owned();
    }
    let mut url = url.to_owned();
    for (key, value) in [
        ("target_session_attrs", "read-write".to_owned()),
        (
            "connect_timeout",
            MULTI_HOST_CONNECT_TIMEOUT_SECS.to_string(),
        ),
    ] {
        if !parsed.sets(key) {
            let separator = if url.contains('?') { '&' } else { '?' };
            url = format!("{url}{separator}{key}={value}");
        }
    }
    url
}

/// An error with its causes, `error: cause: cause`: tokio-postgres's own message is only its
/// kind ("error performing TLS handshake").
fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let shown = cause.to_string();
        if !text.ends_with(&shown) {
            text.push_str(": ");
            text.push_str(&shown);
        }
        next = cause.source();
    }
    text
}

#[derive(QueryableByName)]
struct Exists {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    exists: bool,
}

/// Splits `database.url` into the URL of the `postgres` maintenance database (on the same
/// hosts) and the name of the target database.
fn maintenance_url(url: &str) -> Result<(String, String), DatabaseError> {
    let parsed = PgUrl::parse(url).map_err(DatabaseError::BadUrl)?;
    let name = parsed.database();
    if name.is_empty() {
        return Err(DatabaseError::BadUrl("no database name in the path".into()));
    }
    Ok((parsed.with_database("postgres"), name))
}

/// Creates the database named in `url` unless it exists. Safe to race with another instance.
pub async fn create_if_missing(url: &str, tls: &PgTls) -> Result<(), DatabaseError> {
    let (admin_url, name) = maintenance_url(url)?;
    let mut conn = open(&admin_url, tls).await?;
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

/// Drops the database named in `url`, closing its other connections. Used by tests to clean up,
/// over a plain connection (see [`drop_database_with`]).
pub async fn drop_database(url: &str) -> Result<(), DatabaseError> {
    drop_database_with(url, &PgTls::disabled()).await
}

/// [`drop_database`] over a connection as `tls` says.
pub async fn drop_database_with(url: &str, tls: &PgTls) -> Result<(), DatabaseError> {
    let (admin_url, name) = maintenance_url(url)?;
    let mut conn = open(&admin_url, tls).await?;
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    diesel::sql_query(format!("DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
        .execute(&mut conn)
        .await?;
    Ok(())
}

/// Applies pending migrations and returns how many ran.
///
/// diesel's migration harness is synchronous; it runs on a thread of its own (with its own
/// small runtime inside the connection wrapper) so it never blocks an actix worker. The
/// connection is opened here, so its I/O is driven by the caller's runtime meanwhile.
pub async fn run_migrations(url: &str, tls: &PgTls) -> Result<usize, DatabaseError> {
    let conn = open(url, tls).await?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::from(conn);
        let result = conn
            .run_pending_migrations(MIGRATIONS)
            .map(|applied| applied.len())
            .map_err(|e| DatabaseError::Migrate(e.to_string()));
        let _ = tx.send(result);
    });
    rx.await
        .map_err(|_| DatabaseError::Migrate("the migration thread died".into()))?
}

/// Builds the pool. Connections are made lazily, through `connect`; `acquire_timeout_ms` bounds
/// every wait.
pub fn build_pool(settings: &DatabaseSettings, tls: &PgTls) -> Result<DbPool, DatabaseError> {
    let mut config = ManagerConfig::default();
    let tls = tls.clone();
    let statement_timeout_ms = settings.statement_timeout_ms;
    config.custom_setup = Box::new(move |url| {
        let (url, tls) = (url.to_owned(), tls.clone());
        Box::pin(async move {
            let mut conn = connect(&url, &tls).await?;
            // Set once per connection: no request holds a pooled connection longer.
            diesel::sql_query(format!("SET statement_timeout = {statement_timeout_ms}"))
                .execute(&mut conn)
                .await
                .map_err(ConnectionError::CouldntSetupConfiguration)?;
            Ok(conn)
        })
    });
    // No `SELECT 1` on every checkout (a round trip on every request): a connection that was in
    // use a moment ago is handed out as it is, unless closed (deadpool drops one whose socket
    // the server closed, as in a crash or a failover); one idle longer is verified first.
    config.recycling_method = RecyclingMethod::Fast;
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
        settings.url.clone(),
        config,
    );
    let acquire = Duration::from_millis(settings.acquire_timeout_ms);
    let timeout = Some(acquire);
    DbPool::builder(manager)
        .max_size(settings.pool_size)
        .wait_timeout(timeout)
        .create_timeout(timeout)
        .recycle_timeout(timeout)
        .post_recycle(Hook::async_fn(move |conn, metrics| {
            Box::pin(verify_if_idle(conn, metrics.last_used(), acquire))
        }))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|e| DatabaseError::Pool(e.to_string()))
}

/// A pooled connection not checked out for this long is verified (`SELECT 1`) before it is
/// handed out again.
const VERIFY_IDLE_AFTER: Duration = Duration::from_secs(1);

/// Verifies `conn` if it has been idle [`VERIFY_IDLE_AFTER`] or longer: a server that went away
/// without closing the socket (a host lost from the network) is found here, within `timeout`,
/// and the pool opens another connection, rather than by the request's query.
async fn verify_if_idle(
    conn: &mut AsyncPgConnection,
    idle: Duration,
    timeout: Duration,
) -> HookResult<PoolError> {
    if idle < VERIFY_IDLE_AFTER {
        return Ok(());
    }
    let ping = diesel::select(1_i32.into_sql::<Integer>()).get_result::<i32>(conn);
    match tokio::time::timeout(timeout, ping).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(HookError::Backend(PoolError::QueryError(error))),
        Err(_) => Err(HookError::message("the connection did not answer in time")),
    }
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

    #[test]
    fn several_hosts_keep_their_list_and_get_what_they_need() {
        let url = "postgres://u@a:5432,b:5433/herald?target_session_attrs=any";
        let (admin, name) = maintenance_url(url).expect("valid url");
        assert_eq!(
            admin,
            "postgres://u@a:5432,b:5433/postgres?target_session_attrs=any"
        );
        assert_eq!(name, "herald");
        assert_eq!(
            super::with_multi_host_defaults(url),
            format!("{url}&connect_timeout=5")
        );
        assert_eq!(
            super::with_multi_host_defaults("postgres://a,b/herald"),
            "postgres://a,b/herald?target_session_attrs=read-write&connect_timeout=5"
        );
        let own = "postgres://a,b/herald?connect_timeout=2&target_session_attrs=read-write";
        assert_eq!(super::with_multi_host_defaults(own), own);
        assert_eq!(
            super::with_multi_host_defaults("postgres://a/h"),
            "postgres://a/h"
        );
    }
}
