//! Abuse resistance, tried as an attacker would: deep feed pages, password guessing against
//! someone else's account, registration floods, directory scraping, forged `X-Forwarded-For`,
//! and `/metrics` on a listener of its own. Each test plays the attacker against a real server
//! and checks that the limit holds while the rightful user is still served.
//!
//! Client addresses are played through `X-Forwarded-For` from a trusted proxy (127.0.0.1 is
//! listed in `http.trusted_proxies`), the way herald behind a balancer sees them.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use herald::config::Settings;
use herald::store::pg_tls::PgTls;
use herald::store::{database, StoreError};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::{test_settings, Answer, TestApp};

/// The password `TestApp::user` registers everyone with.
const PASSWORD: &str = "correct horse";

/// Settings whose requests from 127.0.0.1 are charged to the address they forward for.
fn behind_a_proxy() -> Settings {
    let mut settings = test_settings();
    settings.http.trusted_proxies = vec!["127.0.0.1".into()];
    settings
}

fn retry_after(answer: &Answer) -> u64 {
    answer
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a numeric Retry-After")
}

async fn login_from(app: &TestApp, id: Uuid, password: &str, address: &str) -> Answer {
    let body = json!({"id": id, "password": password}).to_string();
    app.call_with(
        "POST",
        "/login",
        None,
        Some(body),
        &[("x-forwarded-for", address)],
    )
    .await
}

fn registration(name: &str) -> String {
    json!({
        "first_name": name,
        "second_name": "Flood",
        "birthdate": "1990-05-17",
        "city": "Lisbon",
        "password": PASSWORD,
    })
    .to_string()
}

async fn register_from(app: &TestApp, name: &str, address: &str) -> Answer {
    app.call_with(
        "POST",
        "/user/register",
        None,
        Some(registration(name)),
        &[("x-forwarded-for", address)],
    )
    .await
}

#[actix_web::test]
async fn feed_pages_deeper_than_ten_thousand_are_refused() {
    let app = TestApp::spawn().await;
    let me = app.user("Reader").await;
    for (query, expected) in [
        ("offset=9990&limit=10", 200),
        ("offset=9991&limit=10", 400),
        ("offset=0&limit=1000", 200),
        ("offset=9223372036854775807&limit=1", 400),
        ("offset=9000&limit=1000", 200),
        ("offset=9001&limit=1000", 400),
    ] {
        let (status, body) = app
            .get(&format!("/post/feed?{query}"), Some(&me.token))
            .await;
        assert_eq!(status, expected, "{query}: {body}");
        if expected == 400 {
            let message = body["message"].as_str().unwrap_or_default();
            assert!(message.contains("10000"), "{query}: {body}");
        }
    }
}

/// A query that outlives `database.statement_timeout_ms` is cancelled by PostgreSQL, and herald
/// reads the cancellation as "unavailable, retry later" (503), not as a bug (500). The pool's
/// connection is fine afterwards.
#[actix_web::test]
async fn a_query_past_the_statement_timeout_is_cut_short_and_answered_503() {
    let app = TestApp::spawn().await;
    let mut settings = app.settings.database.clone();
    settings.statement_timeout_ms = 200;
    settings.pool_size = 1;
    let pool = database::build_pool(&settings, &PgTls::disabled()).expect("pool");
    use diesel_async::RunQueryDsl;
    let mut conn = pool.get().await.expect("connection");
    let started = Instant::now();
    let cut = diesel::sql_query("SELECT pg_sleep(30)")
        .execute(&mut conn)
        .await
        .expect_err("cancelled by the statement timeout");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "cancelled long before the sleep's end"
    );
    assert!(StoreError::from(cut).is_unavailable());
    diesel::sql_query("SELECT 1")
        .execute(&mut conn)
        .await
        .expect("the connection still serves");
}

#[actix_web::test]
async fn failed_logins_slow_the_failing_address_and_never_the_rightful_user() {
    let mut settings = behind_a_proxy();
    settings.auth.login_failures_per_user_address = 3;
    settings.auth.login_failures_per_address = 4;
    settings.auth.login_failures_per_user = 7;
    settings.auth.login_failure_window_secs = 300;
    let app = TestApp::spawn_with(settings).await;
    let target = app.user("Target").await;

    // One address guesses: three free failures, then it must wait, even with the right password.
    for n in 0..3 {
        let answer = login_from(&app, target.id, "guess", "198.51.100.1").await;
        assert_eq!(answer.status, 400, "guess {n}: {}", answer.body);
    }
    let refused = login_from(&app, target.id, "guess", "198.51.100.1").await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert!((1..=300).contains(&retry_after(&refused)));
    let answer = login_from(&app, target.id, PASSWORD, "198.51.100.1").await;
    assert_eq!(answer.status, 429, "the guesser waits whatever it sends");

    // The rightful user, elsewhere, is not refused.
    let answer = login_from(&app, target.id, PASSWORD, "203.0.113.7").await;
    assert_eq!(answer.status, 200, "{}", answer.body);

    // More guessers, each below its own limit, bring the user to its ceiling (seven): only the
    // addresses that have failed for this user wait now; a clean one still gets in.
    for address in ["198.51.100.2", "198.51.100.3"] {
        for _ in 0..2 {
            let answer = login_from(&app, target.id, "guess", address).await;
            assert_eq!(answer.status, 400, "{address}: {}", answer.body);
        }
    }
    let answer = login_from(&app, target.id, PASSWORD, "198.51.100.2").await;
    assert_eq!(
        answer.status, 429,
        "a failing address past the user's ceiling"
    );
    let answer = login_from(&app, target.id, PASSWORD, "192.0.2.99").await;
    assert_eq!(answer.status, 200, "a clean address: {}", answer.body);

    // One address trying many users is slowed whichever user it tries next.
    for n in 0..4 {
        let answer = login_from(&app, Uuid::new_v4(), "guess", "198.51.100.9").await;
        assert_eq!(answer.status, 404, "spray {n}: {}", answer.body);
    }
    let answer = login_from(&app, target.id, PASSWORD, "198.51.100.9").await;
    assert_eq!(answer.status, 429, "the sprayer waits: {}", answer.body);
}

#[actix_web::test]
async fn registrations_are_limited_per_address() {
    let mut settings = behind_a_proxy();
    settings.auth.registrations_per_address = 3;
    let app = TestApp::spawn_with(settings).await;
    for n in 0..3 {
        let answer = register_from(&app, &format!("Ann{n}"), "198.51.100.1").await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    let refused = register_from(&app, "Ann3", "198.51.100.1").await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(refused.body["code"], 429);
    assert!(retry_after(&refused) >= 1);
    let answer = register_from(&app, "Bob", "198.51.100.2").await;
    assert_eq!(answer.status, 200, "another address: {}", answer.body);
}

/// Without `http.trusted_proxies`, `X-Forwarded-For` is the client's own text: every request
/// is charged to the TCP peer, whatever it claims.
#[actix_web::test]
async fn a_forged_forwarded_address_escapes_no_limit() {
    let mut settings = test_settings();
    settings.auth.registrations_per_address = 2;
    let app = TestApp::spawn_with(settings).await;
    let mut statuses = Vec::new();
    for n in 0..4 {
        let answer = register_from(&app, &format!("Eve{n}"), &format!("203.0.113.{n}")).await;
        statuses.push(answer.status);
    }
    assert_eq!(statuses, vec![200, 200, 429, 429]);
}

/// Registrations' hashes wait behind logins': a flood of them (here, one hasher kept busy by
/// eight registering clients at once, its queue always full) never makes a login 503.
#[actix_web::test]
async fn a_registration_flood_does_not_starve_logins() {
    let mut settings = test_settings();
    settings.auth.hash_concurrency = 1;
    settings.auth.hash_queue = 2;
    let app = Rc::new(TestApp::spawn_with(settings).await);
    let target = app.register("Target", "Flood").await;

    let flooding = Rc::new(Cell::new(true));
    let floods: Vec<_> = (0..8)
        .map(|client| {
            let (app, flooding) = (app.clone(), flooding.clone());
            actix_rt::spawn(async move {
                let mut statuses = Vec::new();
                let mut n = 0;
                while flooding.get() {
                    let name = format!("F{client}x{n}");
                    let answer = app
                        .call("POST", "/user/register", None, Some(registration(&name)))
                        .await;
                    statuses.push(answer.status);
                    n += 1;
                }
                statuses
            })
        })
        .collect();
    // Let the flood fill the queue: wait until some registration has been refused with 503.
    let mut logins = Vec::new();
    for _ in 0..5 {
        let body = json!({"id": target, "password": PASSWORD}).to_string();
        let answer = app.call("POST", "/login", None, Some(body)).await;
        logins.push(answer.status);
    }
    flooding.set(false);
    let mut registered = Vec::new();
    for flood in floods {
        registered.extend(flood.await.expect("flood task"));
    }
    assert!(
        registered.contains(&503),
        "the flood must have saturated the hashers to mean anything: {registered:?}"
    );
    assert_eq!(logins, vec![200; 5], "logins during the flood");
}

/// 128 right-password logins of one user at once (a runaway client, or someone keeping the
/// hashers busy on purpose) may have only a few checks in flight: the rest wait their turn
/// (429), and another user's login from elsewhere is never answered 503.
#[actix_web::test]
async fn a_burst_of_logins_for_one_user_leaves_the_hashers_to_everyone_else() {
    let mut settings = behind_a_proxy();
    settings.auth.hash_concurrency = 1;
    settings.auth.hash_queue = 4;
    let app = TestApp::spawn_with(settings).await;
    let busy = app.register("Busy", "Burst").await;
    let other = app.register("Other", "Calm").await;
    let burst = (0..128).map(|_| login_from(&app, busy, PASSWORD, "198.51.100.1"));
    let (burst, calm) = futures_util::future::join(join_all(burst), async {
        let mut statuses = Vec::new();
        for _ in 0..5 {
            statuses.push(
                login_from(&app, other, PASSWORD, "203.0.113.5")
                    .await
                    .status,
            );
        }
        statuses
    })
    .await;
    let statuses: Vec<u16> = burst.iter().map(|a| a.status).collect();
    assert!(statuses.contains(&200), "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(!statuses.contains(&503), "{statuses:?}");
    assert_eq!(
        calm,
        vec![200; 5],
        "the other user's logins during the burst"
    );
}

#[actix_web::test]
async fn searches_are_limited_per_address_and_bounded_in_rows_and_bytes() {
    let mut settings = behind_a_proxy();
    settings.http.searches_per_address = 4;
    let app = TestApp::spawn_with(settings).await;
    // 150 users named alike, the first 60 with the longest biography allowed.
    use diesel_async::RunQueryDsl;
    let mut conn = app.pool.get().await.expect("connection");
    diesel::sql_query(
        "INSERT INTO users (id, first_name, second_name, birthdate, biography, city, password_hash)
         SELECT gen_random_uuid(), 'Bulk', 'Scraped' || n, DATE '1990-01-01',
                CASE WHEN n <= 60 THEN repeat('b', 4000) ELSE '' END, 'Lisbon', 'x'
           FROM generate_series(1, 150) AS n",
    )
    .execute(&mut conn)
    .await
    .expect("users inserted");
    drop(conn);

    let search = |address: &'static str, last: &'static str| search_from(&app, address, last);
    let all = search("198.51.100.1", "Scr").await;
    assert_eq!(all.status, 200, "{}", all.body);
    let rows = all.body.as_array().map_or(0, Vec::len);
    let bytes = all.body.to_string().len();
    assert!(rows > 0 && rows <= 100, "{rows} rows");
    assert!(bytes <= 128 * 1024, "{bytes} bytes");
    // Short records only: the row bound is what stops it.
    let short = search("198.51.100.1", "Scraped1").await;
    let short_rows = short.body.as_array().map_or(0, Vec::len);
    assert!(short_rows <= 100, "{short_rows}");
    let _ = join_all([search("198.51.100.1", "S"), search("198.51.100.1", "S")]).await;
    let refused = search("198.51.100.1", "S").await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert!(retry_after(&refused) >= 1);
    let elsewhere = search("198.51.100.2", "S").await;
    assert_eq!(elsewhere.status, 200);
    let body: &Value = &elsewhere.body;
    assert!(body.is_array());
}

async fn search_from(app: &TestApp, address: &str, last: &str) -> Answer {
    let path = format!("/user/search?first_name=Bulk&last_name={last}");
    app.call_with("GET", &path, None, None, &[("x-forwarded-for", address)])
        .await
}

#[actix_web::test]
async fn metrics_may_have_a_listener_of_their_own() {
    let mut settings = test_settings();
    settings.http.metrics_bind = Some("127.0.0.1:0".into());
    let app = TestApp::spawn_with(settings).await;
    let metrics_port = app.metrics_port.expect("a metrics listener");
    assert_ne!(metrics_port, app.port);

    let (status, _) = app.get("/metrics", None).await;
    assert_eq!(status, 404, "/metrics has left the API's listener");
    let (status, _) = app.get("/health", None).await;
    assert_eq!(status, 200);

    let client = awc::Client::default();
    let mut response = client
        .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .send()
        .await
        .expect("scraped");
    let answer = Answer::read(&mut response).await;
    assert_eq!(answer.status, 200);
    let text = answer.body.as_str().unwrap_or_default();
    assert!(text.contains("herald_sessions"), "{text}");
    let mut response = client
        .get(format!("http://127.0.0.1:{metrics_port}/health"))
        .send()
        .await
        .expect("answered");
    assert_eq!(
        response.status().as_u16(),
        404,
        "the metrics listener serves only /metrics"
    );
    let _ = Answer::read(&mut response).await;
}
