//! Settings for one isolated test (its own database, exchange and port) and the guard that
//! drops that database and exchange when the test ends.

use herald::config::{DatabaseSettings, QueueMode, Settings};
use herald::store::pg_tls::PgTls;
use lapin::{Connection, ConnectionProperties};
use uuid::Uuid;

/// Settings for one isolated run: a fresh database name and a fresh exchange, both named
/// `herald_<kind>_<id>`, and a random port. Pair with `Cleanup` to drop them afterwards.
fn isolated_settings(kind: &str) -> Settings {
    let mut settings = Settings::load().expect("settings load");
    let run = Uuid::new_v4().simple().to_string();
    let mut url = url::Url::parse(&settings.database.url).expect("database url");
    url.set_path(&format!("/herald_{kind}_{run}"));
    settings.database.url = url.to_string();
    settings.realtime.exchange = format!("herald.{kind}.{run}");
    settings.http.bind = "127.0.0.1:0".into();
    settings
}

/// How long a client may stay silent under [`test_settings`] before herald drops it: far
/// longer than any test step takes, even on a loaded machine, so only the tests about the
/// timeout itself (which set their own, short one) ever see a client dropped for silence.
const TEST_CLIENT_TIMEOUT_SECS: u64 = 30;

/// Settings for one isolated test, in the default queue mode: a watchdog that rounds every
/// second (so releases and sweeps happen quickly) but drops a client only after
/// [`TEST_CLIENT_TIMEOUT_SECS`] of silence.
pub fn test_settings() -> Settings {
    let mut settings = isolated_settings("test");
    settings.http.workers = 2;
    settings.realtime.ping_interval_secs = 1;
    settings.realtime.client_timeout_secs = TEST_CLIENT_TIMEOUT_SECS;
    // Every test's users come from 127.0.0.1: the per-address limits on registration and
    // search are off but for the tests about them (tests/it/abuse.rs), which set their own.
    settings.auth.registrations_per_address = 0;
    settings.http.searches_per_address = 0;
    settings
}

/// [`test_settings`] in the given queue mode.
pub fn test_settings_in(mode: QueueMode) -> Settings {
    let mut settings = test_settings();
    settings.realtime.queue_mode = mode;
    settings
}

/// Drops a test's database and exchange. Runs on a thread of its own with its own runtime, so
/// it works from `Drop`, even while a failed test unwinds.
fn drop_test_resources(database: DatabaseSettings, amqp_url: String, exchange: String) {
    let cleanup = std::thread::spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(_) => return,
        };
        runtime.block_on(async move {
            // Over TLS if the test's database asks for it (a plain connection otherwise).
            let tls = PgTls::new(&database).unwrap_or_else(|_| PgTls::disabled());
            let url = &database.url;
            if let Err(error) = herald::store::database::drop_database_with(url, &tls).await {
                eprintln!("cleanup: dropping {url}: {error}");
            }
            if let Ok(conn) = Connection::connect(&amqp_url, ConnectionProperties::default()).await
            {
                if let Ok(channel) = conn.create_channel().await {
                    let _ = channel
                        .exchange_delete(exchange.as_str().into(), Default::default())
                        .await;
                }
                let _ = conn.close(200, "bye".into()).await;
            }
        });
    });
    let _ = cleanup.join();
}

/// Drops a test's database and exchange when it goes out of scope, however the test ends.
pub struct Cleanup(pub Settings);

impl Drop for Cleanup {
    fn drop(&mut self) {
        drop_test_resources(
            self.0.database.clone(),
            self.0.amqp.url.clone(),
            self.0.realtime.exchange.clone(),
        );
    }
}
