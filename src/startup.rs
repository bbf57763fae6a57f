//! Start-up and shutdown, split from `main` so tests can run whole servers on random ports:
//! database (create, migrate, pool), broker link and realtime actors, then the HTTP server.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::{from_fn, Condition, Logger};
use actix_web::{web, App, HttpServer};
use tokio::sync::watch;

use crate::auth::hasher::Hasher;
use crate::auth::throttle::LoginThrottle;
use crate::config::{AmqpSettings, DatabaseSettings, RealtimeSettings, Settings};
use crate::http::client_address::{ClientAddress, TrustedProxies};
use crate::http::connection::ConnectionFd;
use crate::http::cors::{self, AllowedOrigins};
use crate::http::listeners::{self, MetricsListener};
use crate::http::metrics::{self as http_metrics, HttpMetrics};
use crate::http::{self, body_deadline, request_id, AppState};
use crate::limits::per_address::AddressLimiter;
use crate::metrics::{Metrics, MetricsError};
use crate::realtime::broker::actor::{Close, LinkUp};
use crate::realtime::broker::link;
use crate::realtime::relay::{self, Relay};
use crate::realtime::routing::{BrokerPort, RegistryPort};
use crate::realtime::session::caps::SessionCaps;
use crate::realtime::session::epoch_watch;
use crate::realtime::session::history::FeedHistory;
use crate::realtime::session::protocol::DisconnectReason;
use crate::realtime::session::registry::upkeep::{DisconnectAll, SessionCount};
use crate::realtime::session::relink;
use crate::realtime::session::token_watch::TokenWatch;
use crate::realtime::session::watchdog;
use crate::realtime::transport::sockjs::http_session::SockJsSession;
use crate::realtime::transport::sockjs::sessions::SockJsSessions;
use crate::realtime::{BrokerActor, BrokerError, BrokerHealth, SessionRegistry, Stats, Watchdog};
use crate::retry::{self, redact};
use crate::store::history::HistoryBounds;
use crate::store::pg_tls::PgTls;
use crate::store::{database, DbPool};
use crate::tls::TlsError;

/// How long shutdown waits for sessions to close before closing the broker link anyway.
const SESSION_DRAIN: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("{0}")]
    Database(#[from] database::DatabaseError),
    #[error("{0}")]
    Broker(#[from] BrokerError),
    #[error("cannot listen on {0}: {1}")]
    Bind(String, std::io::Error),
    #[error("cannot start the password hashing threads: {0}")]
    Threads(std::io::Error),
    #[error("{0}")]
    Tls(#[from] TlsError),
    #[error("configuration: {0}")]
    Config(String),
    #[error("cannot register the metrics: {0}")]
    Metrics(#[from] MetricsError),
}

/// Raises the soft limit on open files to the hard limit: each WebSocket session holds two
/// descriptors (its connection, and the duplicate its write watch keeps), and a default soft
/// limit of 1,024 would cap a node at a few hundred sessions.
pub fn raise_open_files_limit() {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit only read and write the struct passed by pointer,
        // which lives on this stack frame for both calls.
        let raised = unsafe {
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0
                && (limit.rlim_cur >= limit.rlim_max || {
                    limit.rlim_cur = limit.rlim_max;
                    libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0
                })
        };
        if raised {
            log::info!("open files limit: {}", limit.rlim_cur);
        } else {
            log::warn!("could not raise the open files limit; sessions may run out of descriptors");
        }
    }
}

/// Creates the database if missing (and allowed), applies migrations, and builds the pool,
/// retrying with backoff while PostgreSQL is unreachable. A CA file that cannot be used, or a
/// server certificate that does not verify, is reported at once instead.
pub async fn prepare_database(settings: &DatabaseSettings) -> Result<DbPool, StartupError> {
    let tls = PgTls::new(settings)?;
    let what = format!("PostgreSQL at {}", redact(&settings.url));
    let applied =
        retry::with_backoff_unless(&what, database::DatabaseError::is_permanent, || async {
            if settings.create_if_missing {
                if let Err(error) = database::create_if_missing(&settings.url, &tls).await {
                    log::debug!("could not create the database: {error}");
                }
            }
            database::run_migrations(&settings.url, &tls).await
        })
        .await?;
    if applied > 0 {
        log::info!("applied {applied} migration(s)");
    }
    Ok(database::build_pool(settings, &tls)?)
}

/// The realtime actors of one node, its relay of the feed log, and the history sessions fill
/// their gaps from.
#[derive(Clone)]
pub struct Realtime {
    pub broker: Addr<BrokerActor>,
    pub registry: Addr<SessionRegistry>,
    pub watchdog: Addr<Watchdog>,
    pub relay: Relay,
    pub history: FeedHistory,
    pub health: BrokerHealth,
    pub stats: Stats,
    pub metrics: Metrics,
    /// The SockJS sessions carried by HTTP requests (see `transport::sockjs`).
    pub sockjs: SockJsSessions<SockJsSession>,
}

impl Realtime {
    /// Connects to RabbitMQ (retrying with backoff), declares the exchange and starts the
    /// broker, registry, watchdog, relay and relinker on the current arbiter.
    pub async fn start(
        amqp: &AmqpSettings,
        settings: &RealtimeSettings,
        database: &DatabaseSettings,
        db: DbPool,
        metrics: &Metrics,
    ) -> Result<Self, StartupError> {
        let endpoints = Arc::new(link::Endpoints::new(amqp, &settings.exchange)?);
        let what = endpoints.describe();
        let first_link = retry::with_backoff_unless(&what, BrokerError::is_permanent, || {
            link::open_link(&endpoints, settings)
        })
        .await?;
        let health = BrokerHealth::default();
        let stats = Stats::new(metrics)?;
        let (publish_channel, publishing) = watch::channel(None);
        let relay = relay::spawn(
            &database.url,
            PgTls::new(database)?,
            settings,
            publishing.clone(),
            stats.clone(),
        );
        let bounds = HistoryBounds {
            max_events: settings.history_max_events,
            ttl: settings.history_ttl(),
        };
        let history = FeedHistory::new(db.clone(), bounds, stats.clone());
        // The registry and the broker each hold the other's port: make the broker's context
        // (and so its address) first, start the registry with it, then run the broker in it.
        let context = Context::new();
        let registry = SessionRegistry::new(
            BrokerPort::new(&context.address()),
            settings.queue_mode,
            stats.clone(),
        )
        .start();
        let broker = context.run(BrokerActor::new(
            settings.clone(),
            endpoints,
            RegistryPort::new(&registry),
            health.clone(),
            stats.clone(),
            publish_channel,
        ));
        broker.do_send(LinkUp(first_link));
        actix_rt::spawn(epoch_watch::run(registry.clone(), db.clone()));
        actix_rt::spawn(relink::run(registry.clone(), db, publishing));
        let watchdog = Watchdog::new(
            registry.clone(),
            broker.clone(),
            settings.ping_interval(),
            settings.client_timeout(),
            settings.write_timeout(),
        )
        .start();
        Ok(Realtime {
            broker,
            registry,
            watchdog,
            relay,
            history,
            health,
            stats,
            metrics: metrics.clone(),
            sockjs: SockJsSessions::default(),
        })
    }

    /// Closes every session with 1001, waits briefly for them to go, stops relaying, then
    /// closes the broker connection (which releases every session queue).
    pub async fn shutdown(&self) {
        let _ = self
            .registry
            .send(DisconnectAll(DisconnectReason::ServerShutdown))
            .await;
        let deadline = Instant::now() + SESSION_DRAIN;
        while Instant::now() < deadline {
            match self.registry.send(SessionCount).await {
                Ok(0) | Err(_) => break,
                Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        self.relay.stop();
        // `Close` bounds its own wait on RabbitMQ; this bounds the mailbox round trip too.
        let _ = tokio::time::timeout(SESSION_DRAIN * 3, self.broker.send(Close)).await;
        self.watchdog.do_send(watchdog::Stop);
    }
}

/// Stops a running application gracefully: sessions first, then the broker, then HTTP.
#[derive(Clone)]
pub struct Stopper {
    realtime: Realtime,
    server: ServerHandle,
}

impl Stopper {
    pub async fn stop(&self) {
        // Stop accepting first, so no session starts after the others were told to leave.
        self.server.pause().await;
        self.realtime.shutdown().await;
        self.server.stop(true).await;
    }
}

pub struct Application {
    port: u16,
    metrics_port: Option<u16>,
    server: Server,
    realtime: Realtime,
    pool: DbPool,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        // Claim the address first: a port that is taken is a configuration error to report
        // now, not after minutes of waiting for PostgreSQL and RabbitMQ. Connections wait in
        // the backlog until the server runs.
        let listener = TcpListener::bind(&settings.http.bind)
            .map_err(|e| StartupError::Bind(settings.http.bind.clone(), e))?;
        let address = listener
            .local_addr()
            .map_err(|e| StartupError::Bind(settings.http.bind.clone(), e))?;
        let metrics_listener = match settings.http.metrics_bind() {
            Some(bind) => {
                let listener =
                    TcpListener::bind(bind).map_err(|e| StartupError::Bind(bind.to_owned(), e))?;
                let address = listener
                    .local_addr()
                    .map_err(|e| StartupError::Bind(bind.to_owned(), e))?;
                Some((listener, address))
            }
            None => None,
        };
        let hasher = Hasher::start(settings.auth.hashers(), settings.auth.hash_queue)
            .map_err(StartupError::Threads)?;
        let origins =
            AllowedOrigins::parse(&settings.http.cors_origins).map_err(StartupError::Config)?;
        let trusted_proxies =
            TrustedProxies::parse(&settings.http.trusted_proxies).map_err(StartupError::Config)?;

        let pool = prepare_database(&settings.database).await?;
        let metrics = Metrics::new();
        let realtime = Realtime::start(
            &settings.amqp,
            &settings.realtime,
            &settings.database,
            pool.clone(),
            &metrics,
        )
        .await?;

        let session_caps = SessionCaps::new(&settings.realtime);
        let state = web::Data::new(AppState {
            pool: pool.clone(),
            relay: realtime.relay.clone(),
            history: realtime.history.clone(),
            registry: realtime.registry.clone(),
            broker_health: realtime.health.clone(),
            stats: realtime.stats.clone(),
            metrics,
            auth: settings.auth.clone(),
            realtime: settings.realtime.clone(),
            hasher,
            login_throttle: Arc::new(LoginThrottle::new(&settings.auth)),
            body_timeout: Duration::from_secs(settings.http.body_timeout_secs),
            origins: origins.clone(),
            sockjs: realtime.sockjs.clone(),
            trusted_proxies: trusted_proxies.clone(),
            registration_limit: AddressLimiter::new(
                settings.auth.registrations_per_address,
                Duration::from_secs(settings.auth.registration_window_secs),
            ),
            search_limit: AddressLimiter::new(
                settings.http.searches_per_address,
                Duration::from_secs(settings.http.search_window_secs),
            ),
            session_caps: session_caps.clone(),
            token_watch: TokenWatch::new(pool.clone(), settings.realtime.ping_interval()).start(),
            idempotency_ttl: settings.http.idempotency_ttl(),
        });
        http::idempotency::spawn_pruner(pool.clone(), settings.http.idempotency_ttl());
        let listener_split = web::Data::new(MetricsListener(
            metrics_listener.as_ref().map(|(_, address)| *address),
        ));
        let request_metrics = web::Data::new(HttpMetrics::new(&state.metrics)?);
        let body_limit = settings.http.body_limit_bytes;
        let mut server = HttpServer::new(move || {
            // CORS sits inside `stamp`, so its refusals get the JSON error body and a request
            // id; `refusals` turns them into the API's own errors first.
            App::new()
                .wrap(from_fn(body_deadline::enforce))
                .wrap(Condition::new(origins.is_on(), origins.middleware()))
                .wrap(Condition::new(origins.is_on(), from_fn(cors::refusals)))
                .wrap(from_fn(listeners::split))
                .wrap(from_fn(request_id::stamp))
                .wrap(from_fn(http_metrics::observe))
                .wrap(access_log(trusted_proxies.clone()))
                .app_data(state.clone())
                .app_data(listener_split.clone())
                .app_data(request_metrics.clone())
                .configure(|cfg| http::configure(cfg, body_limit))
                .default_service(web::to(http::error::not_found))
        })
        .on_connect(ConnectionFd::record)
        // A feed frame is one small write that must leave at once, not wait for the client's
        // ACK of the one before (Nagle's algorithm).
        .tcp_nodelay(true)
        .disable_signals()
        .shutdown_timeout(5);
        let workers = match settings.http.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        // Connections past the cap wait in the listen backlog rather than take descriptors the
        // sessions need (see `SessionCaps::within`). The cap is per worker.
        server = server
            .workers(workers)
            .max_connections(session_caps.connection_cap().div_ceil(workers));
        server = server
            .listen(listener)
            .map_err(|e| StartupError::Bind(settings.http.bind.clone(), e))?;
        let metrics_listener_port = metrics_listener.as_ref().map(|(_, a)| a.port());
        if let Some((listener, metrics_address)) = metrics_listener {
            server = server
                .listen(listener)
                .map_err(|e| StartupError::Bind(metrics_address.to_string(), e))?;
            log::info!("metrics on http://{metrics_address}/metrics");
        }
        let server = server.run();
        log::info!("herald listening on http://{address}");
        Ok(Application {
            port: address.port(),
            metrics_port: metrics_listener_port,
            server,
            realtime,
            pool,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of `http.metrics_bind`'s listener, when `/metrics` has one of its own.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_port
    }

    pub fn realtime(&self) -> &Realtime {
        &self.realtime
    }

    pub fn pool(&self) -> &DbPool {
        &self.pool
    }

    pub fn stopper(&self) -> Stopper {
        Stopper {
            realtime: self.realtime.clone(),
            server: self.server.handle(),
        }
    }

    /// Serves until SIGINT or SIGTERM (or a `Stopper`), then shuts down gracefully.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let stopper = self.stopper();
        actix_rt::spawn(async move {
            wait_for_signal().await;
            log::info!("signal received, shutting down");
            stopper.stop().await;
        });
        self.server.await
    }
}

/// One line per request. `%U` is the path without the query string: `?token=` never reaches
/// a log. The client field is the TCP peer, and the address it forwarded for only when it is
/// one of `http.trusted_proxies` (see `http::client_address`): never a header's raw text.
fn access_log(trusted: TrustedProxies) -> Logger {
    Logger::new("%{client}xi \"%{method}xi %U\" %s %b %{x-request-id}o %Dms")
        .custom_request_replace("method", |req| req.method().to_string())
        .custom_request_replace("client", move |req| ClientAddress::log_field(req, &trusted))
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
                return;
            }
            Err(error) => log::warn!("cannot listen for SIGTERM: {error}"),
        }
    }
    if let Err(error) = tokio::signal::ctrl_c().await {
        log::warn!("cannot listen for SIGINT: {error}");
        std::future::pending::<()>().await;
    }
}
