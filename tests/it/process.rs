//! The `herald` binary as users run it: `herald migrate`, configuration from `HERALD_CONFIG`
//! and `HERALD__*`, retrying unreachable dependencies at start, graceful stop on SIGTERM, and
//! no secrets in its logs.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use awc::ws::CloseCode;
use serde_json::json;
use uuid::Uuid;

use crate::support::{amqp, is_routed, test_settings, Cleanup, FeedClient, DEADLINE};

/// A running `herald` process whose log lines are collected as they come.
struct Herald {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    /// Set once the log is read to its end (the process closed its stderr).
    log_ended: Arc<AtomicBool>,
}

impl Herald {
    fn spawn(args: &[&str], env: &[(&str, String)]) -> Herald {
        let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
        command
            .args(args)
            .env("RUST_LOG", "info,herald=debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("herald starts");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&log);
        let log_ended = Arc::new(AtomicBool::new(false));
        let ended = Arc::clone(&log_ended);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().expect("log lock").push(line);
            }
            ended.store(true, Ordering::Release);
        });
        Herald {
            child,
            log,
            log_ended,
        }
    }

    fn log_text(&self) -> String {
        self.log.lock().expect("log lock").join("\n")
    }

    /// Waits for a log line containing `needle` and returns it.
    async fn wait_for_line(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(line) = self
                .log
                .lock()
                .expect("log lock")
                .iter()
                .find(|line| line.contains(needle))
            {
                return line.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {needle:?}; log so far:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the process to exit; returns whether it exited successfully.
    async fn wait_for_exit(&mut self) -> bool {
        let deadline = Instant::now() + DEADLINE;
        loop {
            // Exited, and its last lines read (on a busy machine the reader may lag the exit).
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                if self.log_ended.load(Ordering::Acquire) {
                    return status.success();
                }
            }
            assert!(
                Instant::now() < deadline,
                "herald did not exit:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn signal(&self, signal: &str) {
        let status = tokio::process::Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .await
            .expect("kill runs");
        assert!(status.success());
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Environment that points a `herald` process at a test's database and exchange.
fn env_for(settings: &herald::config::Settings) -> Vec<(&'static str, String)> {
    vec![
        ("HERALD__DATABASE__URL", settings.database.url.clone()),
        ("HERALD__AMQP__URL", settings.amqp.url.clone()),
        (
            "HERALD__REALTIME__EXCHANGE",
            settings.realtime.exchange.clone(),
        ),
        ("HERALD__HTTP__BIND", "127.0.0.1:0".into()),
    ]
}

fn listening_port(line: &str) -> u16 {
    line.rsplit(':')
        .next()
        .and_then(|port| port.trim().parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"))
}

#[actix_web::test]
async fn migrate_creates_the_database_and_exits() {
    let settings = test_settings();
    let _cleanup = Cleanup(settings.clone());
    let mut herald = Herald::spawn(&["migrate"], &env_for(&settings));
    assert!(herald.wait_for_exit().await, "{}", herald.log_text());
    let log = herald.log_text();
    assert!(log.contains("created database"), "{log}");
    // Every migration in the tree (counted, so a new one does not break this test).
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .expect("the migrations directory")
        .flatten()
        .filter(|entry| entry.path().join("up.sql").exists())
        .count();
    assert!(
        log.contains(&format!("applied {migrations} migration")),
        "{log}"
    );
    // The schema is there: a second run has nothing to apply.
    let mut again = Herald::spawn(&["migrate"], &env_for(&settings));
    assert!(again.wait_for_exit().await);
    assert!(
        !again.log_text().contains("applied"),
        "{}",
        again.log_text()
    );
}

#[actix_web::test]
async fn serves_with_a_config_file_and_stops_gracefully_on_sigterm() {
    let settings = test_settings();
    let _cleanup = Cleanup(settings.clone());
    // The config file sets the watchdog; the environment still wins for what it sets.
    let dir = std::env::temp_dir().join(format!("herald-process-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("herald.toml");
    std::fs::write(
        &file,
        "[http]\nbind = \"127.0.0.1:1\"\n[realtime]\nping_interval_secs = 1\nclient_timeout_secs = 30\n",
    )
    .expect("write");
    let mut env = env_for(&settings);
    env.push(("HERALD_CONFIG", file.to_string_lossy().into_owned()));
    // The most verbose logging there is: still no secret may reach the log.
    env.push(("RUST_LOG", "trace".into()));
    let mut herald = Herald::spawn(&[], &env);
    let port = listening_port(&herald.wait_for_line("listening on").await);

    let client = awc::Client::default();
    let base = format!("http://127.0.0.1:{port}");
    let password = "a-very-secret-password";
    let mut response = client
        .post(format!("{base}/user/register"))
        .send_json(
            &json!({"first_name": "Sig", "second_name": "Term", "birthdate": "2000-01-01",
                           "biography": "", "city": "Oslo", "password": password}),
        )
        .await
        .expect("register");
    let id = response.json::<serde_json::Value>().await.expect("json")["user_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let mut response = client
        .post(format!("{base}/login"))
        .send_json(&json!({"id": id, "password": password}))
        .await
        .expect("login");
    let token = response.json::<serde_json::Value>().await.expect("json")["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let (_, framed) = awc::Client::new()
        .ws(format!(
            "ws://127.0.0.1:{port}/post/feed/posted?token={token}"
        ))
        .connect()
        .await
        .expect("websocket");
    let mut feed = FeedClient::answering(framed);
    let conn = amqp(&settings).await;
    let routing_key = format!("user.{id}");
    assert!(is_routed(&conn, &settings.realtime.exchange, &routing_key).await);

    herald.signal("-TERM").await;
    let reason = feed.close_reason().await.expect("close reason");
    assert_eq!(reason.code, CloseCode::Away);
    assert!(herald.wait_for_exit().await, "{}", herald.log_text());

    let log = herald.log_text();
    assert!(!log.contains(&token), "the token reached the log");
    assert!(!log.contains(password), "the password reached the log");
    assert!(
        !log.contains("$argon2id$"),
        "a password hash reached the log"
    );
    // The AMQP login frame carries "\0guest\0guest"; lapin's frame trace would print it.
    assert!(
        !log.contains("103, 117, 101, 115, 116"),
        "the AMQP credentials reached the log"
    );
    assert!(
        log.contains("TRACE"),
        "the log was not at trace level after all"
    );
    assert!(!log.contains("panicked"), "{log}");
    // The session's queue and binding went with it.
    assert!(!is_routed(&conn, &settings.realtime.exchange, &routing_key).await);
    let _ = std::fs::remove_dir_all(dir);
}

/// Accepts on `listener` and pipes each connection to `target`.
async fn proxy(listener: tokio::net::TcpListener, target: &'static str) {
    while let Ok((mut inbound, _)) = listener.accept().await {
        tokio::spawn(async move {
            if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[actix_web::test]
async fn waits_for_unreachable_dependencies_then_starts() {
    let settings = test_settings();
    let _cleanup = Cleanup(settings.clone());
    let (pg_port, amqp_port) = (free_port(), free_port());
    let mut db_url = url::Url::parse(&settings.database.url).expect("url");
    db_url.set_port(Some(pg_port)).expect("port");
    let mut amqp_url = url::Url::parse(&settings.amqp.url).expect("url");
    amqp_url.set_port(Some(amqp_port)).expect("port");
    let mut env = env_for(&settings);
    env.retain(|(k, _)| !k.ends_with("__URL"));
    env.push(("HERALD__DATABASE__URL", db_url.to_string()));
    env.push(("HERALD__AMQP__URL", amqp_url.to_string()));
    let herald = Herald::spawn(&[], &env);

    // Nothing listens yet: herald says so and keeps trying.
    herald.wait_for_line("PostgreSQL at").await;
    let pg = tokio::net::TcpListener::bind(("127.0.0.1", pg_port))
        .await
        .expect("bind");
    tokio::spawn(proxy(pg, "127.0.0.1:5432"));
    herald.wait_for_line("RabbitMQ at").await;
    let rabbit = tokio::net::TcpListener::bind(("127.0.0.1", amqp_port))
        .await
        .expect("bind");
    tokio::spawn(proxy(rabbit, "127.0.0.1:5672"));

    let line = herald.wait_for_line("listening on").await;
    let port = listening_port(&line);
    let mut response = awc::Client::default()
        .get(format!("http://127.0.0.1:{port}/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(response.status().as_u16(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["status"], "ok");
    let log = herald.log_text();
    assert!(log.contains("retrying in"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

/// Nothing in `log` is a panic, and no line came from lapin (herald speaks for the broker).
fn assert_clean(log: &str) {
    assert!(!log.contains("panicked"), "{log}");
    assert!(!log.contains("RUST_BACKTRACE"), "{log}");
}

#[actix_web::test]
async fn a_taken_port_or_a_bad_address_is_one_clear_line_and_a_failed_exit() {
    let settings = test_settings();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("address").port();
    for (bind, expected) in [
        (format!("127.0.0.1:{port}"), "cannot listen on"),
        (
            "nonsense".to_owned(),
            "http.bind must be an IP address and port",
        ),
    ] {
        let mut env = env_for(&settings);
        env.retain(|(key, _)| *key != "HERALD__HTTP__BIND");
        env.push(("HERALD__HTTP__BIND", bind.clone()));
        let mut herald = Herald::spawn(&[], &env);
        assert!(
            !herald.wait_for_exit().await,
            "{bind}: exits with a failure"
        );
        let log = herald.log_text();
        assert!(log.contains(expected), "{bind}: {log}");
        assert_clean(&log);
    }
    drop(taken);
}

#[actix_web::test]
async fn an_amqp_url_that_is_not_one_url_is_refused_at_start_with_its_passwords_hidden() {
    let settings = test_settings();
    let mut env = env_for(&settings);
    env.retain(|(key, _)| *key != "HERALD__AMQP__URL");
    env.push((
        "HERALD__AMQP__URL",
        "amqp://guest:firstsecret@127.0.0.1:5672/%2f,amqp://admin:secondsecret@127.0.0.1:5673/%2f"
            .into(),
    ));
    let mut herald = Herald::spawn(&[], &env);
    assert!(!herald.wait_for_exit().await, "exits with a failure");
    let log = herald.log_text();
    assert!(log.contains("amqp.url"), "{log}");
    assert!(log.contains("more than one URL"), "{log}");
    assert!(!log.contains("firstsecret"), "{log}");
    assert!(!log.contains("secondsecret"), "{log}");
    assert_clean(&log);
}

#[actix_web::test]
async fn refused_amqp_credentials_are_one_clear_line_per_attempt() {
    let settings = test_settings();
    let _cleanup = Cleanup(settings.clone());
    let mut url = url::Url::parse(&settings.amqp.url).expect("url");
    url.set_password(Some("certainly-wrong")).expect("password");
    let mut env = env_for(&settings);
    env.retain(|(key, _)| *key != "HERALD__AMQP__URL");
    env.push(("HERALD__AMQP__URL", url.to_string()));
    let herald = Herald::spawn(&[], &env);

    // Wait for the third attempt's line, then look at everything logged since the first.
    let deadline = Instant::now() + DEADLINE * 3;
    let attempts = loop {
        let log = herald.log_text();
        let attempts = log.matches("refused the credentials").count();
        if attempts >= 3 {
            break attempts;
        }
        assert!(Instant::now() < deadline, "no third attempt; log:\n{log}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let log = herald.log_text();
    let first = log.find("refused the credentials").expect("a refusal");
    let since_first = &log[log[..first].rfind('\n').map_or(0, |n| n + 1)..];
    let lines = since_first.lines().count();
    // One line per attempt (the last may be being written), nothing from lapin in between.
    assert!(
        lines <= attempts + 1,
        "{lines} lines for {attempts} attempts:\n{since_first}"
    );
    assert!(!log.contains("lapin"), "{log}");
    assert!(!log.contains("certainly-wrong"), "{log}");
    assert_clean(&log);
}

#[actix_web::test]
async fn the_version_is_the_changelogs_latest() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("--version")
        .output()
        .await
        .expect("herald --version runs");
    assert!(output.status.success());
    let printed = String::from_utf8_lossy(&output.stdout);
    let changelog = include_str!("../../CHANGELOG.md");
    let latest = changelog
        .lines()
        .find_map(|line| line.strip_prefix("- "))
        .and_then(|entry| entry.split_whitespace().next())
        .expect("a changelog entry");
    assert_eq!(printed.trim(), format!("herald {latest}"));
}

/// Two instances share the log; the one relaying it is killed (SIGKILL, mid-load): the other
/// takes the lead and every post reaches the reader once, in order.
#[actix_web::test]
async fn when_the_relaying_instance_is_killed_another_takes_over_and_nothing_is_lost() {
    let settings = test_settings();
    let relaying = Herald::spawn(&[], &env_for(&settings));
    relaying.wait_for_line("herald listening on").await;
    relaying
        .wait_for_line("this instance relays the feed log")
        .await;
    let app = crate::support::TestApp::spawn_with(settings.clone()).await;
    assert!(!app.realtime.relay.is_leading());
    let (author, _reader, mut feed) = app.author_and_follower().await;

    let mut posts = Vec::new();
    for i in 0..40 {
        if i == 15 {
            relaying.signal("-KILL").await;
        }
        let text = format!("post {i}");
        posts.push((app.create_post(&author, &text).await, text));
    }
    for (post, text) in &posts {
        // In order, once: the feed client checks every position it receives.
        feed.expect_created(*post, &author, text).await;
    }
    assert!(app.realtime.relay.is_leading(), "the survivor leads");
    app.relay_idle().await;
    match feed.receive(Duration::from_millis(500)).await {
        crate::support::Received::TimedOut => {}
        _ => panic!("something after the last post"),
    }
}
