//! Fan-out latency, end to end: one author, N followers online over real WebSockets, M posts.
//! For every delivery it measures post request start -> frame received at the follower
//! (so the time includes the HTTP request and the commit), and reports percentiles of every
//! delivery and of the last follower per post, plus deliveries per second.
//!
//! Run: `cargo bench --bench fanout` (PostgreSQL and RabbitMQ on localhost, as for the tests).
//! Size: `HERALD_BENCH_FOLLOWERS` (default 1000), `HERALD_BENCH_POSTS` (default 50).
//! It uses a fresh database and exchange and drops both at the end.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use awc::ws::{Frame, Message};
use chrono::{NaiveDate, Utc};
use futures_util::{SinkExt, StreamExt};
use herald::auth::token;
use herald::config::Settings;
use herald::startup::Application;
use herald::store::models::NewUser;
use herald::store::{friends, tokens, users};
use lapin::{Connection, ConnectionProperties};
use tokio::sync::mpsc;
use uuid::Uuid;

/// This run's settings: a fresh database `herald_bench_<id>`, a fresh exchange
/// `herald.bench.<id>`, a random port and a pool for many sessions. The database and the
/// exchange are dropped when it goes out of scope, however the run ends.
struct Scratch(Settings);

impl Scratch {
    fn new() -> Scratch {
        let mut settings = Settings::load().expect("settings load");
        let run = Uuid::new_v4().simple().to_string();
        let mut url = url::Url::parse(&settings.database.url).expect("database url");
        url.set_path(&format!("/herald_bench_{run}"));
        settings.database.url = url.to_string();
        settings.realtime.exchange = format!("herald.bench.{run}");
        settings.http.bind = "127.0.0.1:0".into();
        settings.database.pool_size = 32;
        Scratch(settings)
    }
}

impl Drop for Scratch {
    /// On a thread of its own with its own runtime, so it also works while a failed run unwinds.
    fn drop(&mut self) {
        let database_url = self.0.database.url.clone();
        let amqp_url = self.0.amqp.url.clone();
        let exchange = self.0.realtime.exchange.clone();
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Err(error) = herald::store::database::drop_database(&database_url).await {
                    eprintln!("cleanup: dropping {database_url}: {error}");
                }
                if let Ok(conn) =
                    Connection::connect(&amqp_url, ConnectionProperties::default()).await
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
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[actix_web::main]
async fn main() {
    let followers = env_number("HERALD_BENCH_FOLLOWERS", 1000);
    let posts = env_number("HERALD_BENCH_POSTS", 50);
    let scratch = Scratch::new();

    let app = Application::build(scratch.0.clone())
        .await
        .expect("herald starts");
    let port = app.port();
    let pool = app.pool().clone();
    let stopper = app.stopper();
    actix_rt::spawn(app.run_until_stopped());

    // Seed straight into the store: argon2 for a thousand users is not what we measure.
    eprintln!("seeding 1 author and {followers} followers");
    let mut conn = pool.get().await.expect("connection");
    let expires = Utc::now() + chrono::Duration::hours(1);
    let new_user = |name: String| {
        let id = Uuid::new_v4();
        let token = token::generate();
        (id, token, name)
    };
    let author = new_user("Author".into());
    let fans: Vec<_> = (0..followers)
        .map(|i| new_user(format!("Fan{i}")))
        .collect();
    for (id, token, name) in std::iter::once(&author).chain(fans.iter()) {
        users::insert(
            &mut conn,
            &NewUser {
                id: *id,
                first_name: name,
                second_name: "Bench",
                birthdate: NaiveDate::from_ymd_opt(1990, 1, 1).expect("date"),
                biography: "",
                city: "Bench",
                password_hash: "unused",
            },
        )
        .await
        .expect("user");
        tokens::insert(&mut conn, &token::digest(token), *id, expires)
            .await
            .expect("token");
    }
    let threshold = scratch.0.realtime.celebrity_followers;
    for (id, _, _) in &fans {
        friends::follow(&mut conn, *id, author.0, threshold)
            .await
            .expect("follow");
    }
    drop(conn);

    eprintln!("connecting {followers} WebSocket sessions");
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<(usize, String, Instant)>();
    let connect_start = Instant::now();
    for (index, (_, token, _)) in fans.iter().enumerate() {
        let (_, mut framed) = awc::Client::new()
            .ws(format!("ws://127.0.0.1:{port}/post/feed/posted"))
            .bearer_auth(token)
            .connect()
            .await
            .expect("websocket");
        let seen = seen_tx.clone();
        actix_rt::spawn(async move {
            while let Some(Ok(frame)) = framed.next().await {
                match frame {
                    Frame::Text(bytes) => {
                        let at = Instant::now();
                        let value: serde_json::Value =
                            serde_json::from_slice(&bytes).unwrap_or_default();
                        let post = value["postId"].as_str().unwrap_or_default().to_owned();
                        if seen.send((index, post, at)).is_err() {
                            break;
                        }
                    }
                    Frame::Ping(payload) => {
                        let _ = framed.send(Message::Pong(payload)).await;
                    }
                    Frame::Close(_) => break,
                    _ => {}
                }
            }
        });
    }
    let connect_time = connect_start.elapsed();

    eprintln!("posting {posts} posts");
    let client = awc::Client::default();
    let mut all = Vec::with_capacity(followers * posts);
    let mut last = Vec::with_capacity(posts);
    let mut missing = 0usize;
    let run_start = Instant::now();
    for n in 0..posts {
        let sent = Instant::now();
        let mut response = client
            .post(format!("http://127.0.0.1:{port}/post/create"))
            .bearer_auth(&author.1)
            .send_json(&serde_json::json!({ "text": format!("bench post {n}") }))
            .await
            .expect("post");
        let post: String = response.json().await.expect("post id");
        let mut got: HashMap<usize, Instant> = HashMap::with_capacity(followers);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while got.len() < followers {
            match tokio::time::timeout_at(deadline, seen_rx.recv()).await {
                Ok(Some((index, id, at))) if id == post => {
                    got.insert(index, at);
                }
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        missing += followers - got.len();
        let mut latest = Duration::ZERO;
        for at in got.values() {
            let latency = at.saturating_duration_since(sent);
            latest = latest.max(latency);
            all.push(latency);
        }
        last.push(latest);
    }
    let run_time = run_start.elapsed();
    all.sort();
    last.sort();

    println!("## fan-out: 1 author, {followers} online followers, {posts} posts\n");
    println!("| measure | p50 | p90 | p99 | max |");
    println!("|---|---|---|---|---|");
    for (name, data) in [("every delivery", &all), ("last follower per post", &last)] {
        println!(
            "| {name} | {} | {} | {} | {} |",
            ms(percentile(data, 50.0)),
            ms(percentile(data, 90.0)),
            ms(percentile(data, 99.0)),
            ms(data.last().copied().unwrap_or_default())
        );
    }
    println!();
    println!(
        "- sessions connected: {followers} in {:.2} s ({:.0} sessions/s, one queue each)",
        connect_time.as_secs_f64(),
        followers as f64 / connect_time.as_secs_f64()
    );
    println!(
        "- deliveries: {} in {:.2} s ({:.0}/s, posts sent one after another)",
        all.len(),
        run_time.as_secs_f64(),
        all.len() as f64 / run_time.as_secs_f64()
    );
    println!("- missing deliveries: {missing}");

    stopper.stop().await;
    drop(scratch); // before `exit`, which skips destructors
    if missing > 0 {
        std::process::exit(1);
    }
}
