//! TLS to PostgreSQL and RabbitMQ, against private servers the tests start with certificates
//! of a CA made in the test (`support::certs`): the private PostgreSQL admits TLS connections
//! only, and the private RabbitMQ node's TLS listener demands a client certificate, so what
//! gets in has proved its encryption. The shared services are never touched but for the plain
//! RabbitMQ the first suite uses.

use std::time::Duration;

use diesel::sql_types::Bool;
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use herald::config::Settings;
use herald::startup::{Application, StartupError};
use herald::store::database;
use herald::store::pg_tls::PgTls;
use serde_json::Value;

use crate::support::certs::{text, CertDir, TestCa};
use crate::support::private_broker::{BrokerTls, PrivateBroker};
use crate::support::private_postgres::{settings_for, PrivatePostgres};
use crate::support::{test_settings, TestApp};

/// How long a start-up that must fail may take: a refused certificate ends the attempts at once,
/// but a busy machine is slow to say so.
const REFUSAL_DEADLINE: Duration = Duration::from_secs(60);

#[derive(QueryableByName)]
struct Encrypted {
    #[diesel(sql_type = Bool)]
    ssl: bool,
}

/// `settings` with its (fresh, per-test) database moved to `pg`, reached as `host`, with
/// `query` (`?sslmode=…`) and trusting `ca_file`.
fn on_private_postgres(
    mut settings: Settings,
    pg: &PrivatePostgres,
    host: &str,
    query: &str,
    ca_file: Option<&str>,
) -> Settings {
    let url = url::Url::parse(&settings.database.url).expect("database url");
    let name = url.path().trim_start_matches('/').to_owned();
    settings.database = settings_for(&pg.url(host, &name, query), ca_file);
    settings
}

/// Whether the app's pooled connections are encrypted, as PostgreSQL sees them.
async fn pool_is_encrypted(app: &TestApp) -> bool {
    let mut conn = app.pool.get().await.expect("a pooled connection");
    let row: Encrypted =
        diesel::sql_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .get_result(&mut conn)
            .await
            .expect("pg_stat_ssl");
    row.ssl
}

/// Builds a server that must not start; returns its error, which must come within
/// [`REFUSAL_DEADLINE`] (not after endless retries).
async fn refused_start(settings: Settings) -> StartupError {
    match tokio::time::timeout(REFUSAL_DEADLINE, Application::build(settings)).await {
        Ok(Ok(_)) => panic!("herald started"),
        Ok(Err(error)) => error,
        Err(_) => panic!("herald neither started nor gave up within {REFUSAL_DEADLINE:?}"),
    }
}

#[actix_web::test]
async fn postgres_sslmodes() {
    let certs = CertDir::new("pg");
    let ca = TestCa::new(&certs, "good");
    let stranger = TestCa::new(&certs, "stranger");
    // Named for `localhost` only: reached as 127.0.0.1, the name does not match.
    let pg = PrivatePostgres::start("sslmodes", &ca.server("postgres", &["localhost"])).await;
    let ca_file = text(&ca.ca_file);

    // The server turns plain connections away: whatever gets in below came over TLS.
    let plain = database::connect(&pg.url("127.0.0.1", "postgres", ""), &PgTls::disabled()).await;
    let error = plain
        .err()
        .expect("a plain connection is refused")
        .to_string();
    assert!(error.contains("no encryption"), "{error}");

    // verify-full with the right CA: a whole server, its pool, migrations and relay over TLS.
    let settings = on_private_postgres(
        test_settings(),
        &pg,
        "localhost",
        "?sslmode=verify-full",
        Some(&ca_file),
    );
    let app = TestApp::spawn_with(settings.clone()).await;
    assert!(pool_is_encrypted(&app).await);
    let author = app.user("Author").await;
    app.create_post(&author, "over TLS").await;
    app.relay_idle().await;
    let (status, health) = app.get("/health", None).await;
    assert_eq!(status, 200, "{health}");

    // The same with a CA that did not sign the server's certificate: start-up says so, at once.
    let mut wrong = settings.clone();
    wrong.database.ca_file = Some(text(&stranger.ca_file));
    let error = refused_start(wrong).await.to_string();
    assert!(
        error.contains("certificate was refused") && error.contains("database.ca_file"),
        "{error}"
    );

    // verify-full checks the host name; verify-ca does not.
    let by_address = |query: &str| pg.url("127.0.0.1", "postgres", query);
    let ca_only = |url: &str| PgTls::new(&settings_for(url, Some(&ca_file))).expect("TLS");
    let url = by_address("?sslmode=verify-full");
    let error = database::connect(&url, &ca_only(&url))
        .await
        .err()
        .expect("the name does not match")
        .to_string();
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    let url = by_address("?sslmode=verify-ca");
    database::connect(&url, &ca_only(&url))
        .await
        .expect("verify-ca ignores the name");

    // require: encrypted without a CA at all.
    let settings = on_private_postgres(test_settings(), &pg, "127.0.0.1", "?sslmode=require", None);
    let unverified = TestApp::spawn_with(settings).await;
    assert!(pool_is_encrypted(&unverified).await);
    unverified.user("Someone").await;

    unverified.stop().await;
    app.stop().await;
}

#[actix_web::test]
async fn a_whole_app_over_tls() {
    let certs = CertDir::new("app");
    let ca = TestCa::new(&certs, "good");
    let stranger = TestCa::new(&certs, "stranger");
    let rabbit = ca.server("rabbit", &["localhost", "127.0.0.1"]);
    let client = ca.client("herald");
    let broker_tls = BrokerTls {
        ca_file: ca.ca_file.clone(),
        cert_file: rabbit.cert_file.clone(),
        key_file: rabbit.key_file.clone(),
        require_client_cert: true,
    };
    let pg_certificate = ca.server("postgres", &["localhost"]);
    let (pg, broker) = futures_util::join!(
        PrivatePostgres::start("app", &pg_certificate),
        PrivateBroker::start_tls("tls", &broker_tls)
    );
    let ca_file = text(&ca.ca_file);

    let mut settings = on_private_postgres(
        test_settings(),
        &pg,
        "localhost",
        "?sslmode=verify-full",
        Some(&ca_file),
    );
    settings.amqp.url = broker.amqps_url();
    settings.amqp.ca_file = Some(ca_file.clone());
    settings.amqp.cert_file = Some(text(&client.cert_file));
    settings.amqp.key_file = Some(text(&client.key_file));
    let app = TestApp::spawn_with(settings.clone()).await;

    let (author, _reader, mut feed) = app.author_and_follower().await;
    let post = app.create_post(&author, "hello over TLS").await;
    feed.expect_created(post, &author, "hello over TLS").await;
    assert!(pool_is_encrypted(&app).await);

    // herald's connection to the broker is TLS, with herald's client certificate.
    let listing = broker
        .rabbitmqctl(&[
            "list_connections",
            "ssl",
            "peer_cert_subject",
            "--formatter",
            "json",
        ])
        .await;
    let connections: Vec<Value> = serde_json::from_str(&listing).expect("json");
    assert!(!connections.is_empty(), "{listing}");
    for connection in &connections {
        assert_eq!(connection["ssl"], Value::Bool(true), "{listing}");
        let subject = connection["peer_cert_subject"].as_str().unwrap_or_default();
        assert!(subject.contains("herald test herald"), "{listing}");
    }

    // A CA that did not sign the broker's certificate: start-up says so, at once.
    let mut wrong = settings.clone();
    wrong.amqp.ca_file = Some(text(&stranger.ca_file));
    let error = refused_start(wrong).await.to_string();
    assert!(
        error.contains("certificate was refused") && error.contains("amqp.ca_file"),
        "{error}"
    );

    app.stop().await;
}
