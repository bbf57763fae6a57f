//! Test support: whole herald servers on random ports, each test with its own database and its
//! own exchange (dropped when the test ends, even if it fails), an HTTP client for the API,
//! a WebSocket feed client, and probes that ask RabbitMQ directly what exists.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use actix_codec::Framed;
use awc::ws::{CloseReason, Codec, Frame, Message};
use awc::BoxedSocket;
use futures_util::{SinkExt, StreamExt};
use herald::config::{QueueMode, Settings};
use herald::startup::{Application, Realtime, Stopper};
use herald::store::DbPool;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use uuid::Uuid;

/// How long any awaited condition may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Settings for one isolated run: a fresh database name and a fresh exchange, both named
/// `herald_<kind>_<id>`, and a random port. Pair with `Cleanup` to drop them afterwards.
pub fn isolated_settings(kind: &str) -> Settings {
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
pub const TEST_CLIENT_TIMEOUT_SECS: u64 = 30;

/// Settings for one isolated test, in the default queue mode: a watchdog that rounds every
/// second (so releases and sweeps happen quickly) but drops a client only after
/// [`TEST_CLIENT_TIMEOUT_SECS`] of silence.
pub fn test_settings() -> Settings {
    let mut settings = isolated_settings("test");
    settings.http.workers = 2;
    settings.realtime.ping_interval_secs = 1;
    settings.realtime.client_timeout_secs = TEST_CLIENT_TIMEOUT_SECS;
    settings
}

/// [`test_settings`] in the given queue mode.
pub fn test_settings_in(mode: QueueMode) -> Settings {
    let mut settings = test_settings();
    settings.realtime.queue_mode = mode;
    settings
}

/// Turns each named `async fn name(mode: QueueMode)` into two tests, `name::node` and
/// `name::session`: the realtime suite runs whole in both queue modes. (`#[macro_use] mod
/// support;` to use it.)
#[allow(unused_macros)]
macro_rules! in_both_modes {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[actix_web::test]
            async fn node() {
                super::$name(herald::config::QueueMode::Node).await
            }

            #[actix_web::test]
            async fn session() {
                super::$name(herald::config::QueueMode::Session).await
            }
        }
    )*};
}

/// Drops a test's database and exchange. Runs on a thread of its own with its own runtime, so
/// it works from `Drop`, even while a failed test unwinds.
pub fn drop_test_resources(database_url: String, amqp_url: String, exchange: String) {
    let cleanup = std::thread::spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(_) => return,
        };
        runtime.block_on(async move {
            if let Err(error) = herald::store::database::drop_database(&database_url).await {
                eprintln!("cleanup: dropping {database_url}: {error}");
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
            self.0.database.url.clone(),
            self.0.amqp.url.clone(),
            self.0.realtime.exchange.clone(),
        );
    }
}

pub struct TestApp {
    pub port: u16,
    pub address: String,
    pub settings: Settings,
    pub realtime: Realtime,
    pub pool: DbPool,
    stopper: Stopper,
    client: awc::Client,
    /// Set on the instance that created the database and exchange (not on siblings).
    _cleanup: Option<Cleanup>,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(test_settings()).await
    }

    pub async fn spawn_in(mode: QueueMode) -> TestApp {
        Self::spawn_with(test_settings_in(mode)).await
    }

    pub async fn spawn_with(settings: Settings) -> TestApp {
        Self::start(settings, true).await
    }

    /// A second instance sharing this one's database and exchange.
    pub async fn sibling(&self) -> TestApp {
        Self::start(self.settings.clone(), false).await
    }

    async fn start(settings: Settings, owns_resources: bool) -> TestApp {
        let app = Application::build(settings.clone())
            .await
            .expect("herald starts");
        let port = app.port();
        let realtime = app.realtime().clone();
        let pool = app.pool().clone();
        let stopper = app.stopper();
        actix_rt::spawn(app.run_until_stopped());
        TestApp {
            port,
            address: format!("http://127.0.0.1:{port}"),
            settings: settings.clone(),
            realtime,
            pool,
            stopper,
            _cleanup: owns_resources.then(|| Cleanup(settings.clone())),
            client: awc::Client::builder()
                .timeout(Duration::from_secs(30))
                .finish(),
        }
    }

    pub async fn stop(&self) {
        self.stopper.stop().await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Sends a request; returns the status and the body parsed as JSON (`Null` when empty).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<String>,
    ) -> (u16, Value, awc::http::header::HeaderMap) {
        let method = awc::http::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let mut response = match body {
            Some(body) => request
                .insert_header(("content-type", "application/json"))
                .send_body(body)
                .await
                .expect("request sent"),
            None => request.send().await.expect("request sent"),
        };
        let bytes = response.body().limit(16 << 20).await.expect("body");
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        (
            response.status().as_u16(),
            value,
            response.headers().clone(),
        )
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let (status, body, _) = self.call("GET", path, token, None).await;
        (status, body)
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        let (status, body, _) = self.call("POST", path, token, Some(body.to_string())).await;
        (status, body)
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: Option<&Value>) -> (u16, Value) {
        let (status, body, _) = self
            .call("PUT", path, token, body.map(|b| b.to_string()))
            .await;
        (status, body)
    }

    pub async fn register(&self, first_name: &str, second_name: &str) -> Uuid {
        let (status, body) = self
            .post(
                "/user/register",
                None,
                &json!({
                    "first_name": first_name,
                    "second_name": second_name,
                    "birthdate": "1990-05-17",
                    "biography": "tests things",
                    "city": "Lisbon",
                    "password": "correct horse",
                }),
            )
            .await;
        assert_eq!(status, 200, "register: {body}");
        body["user_id"]
            .as_str()
            .expect("user_id")
            .parse()
            .expect("uuid")
    }

    pub async fn login(&self, id: Uuid) -> String {
        let (status, body) = self
            .post(
                "/login",
                None,
                &json!({"id": id, "password": "correct horse"}),
            )
            .await;
        assert_eq!(status, 200, "login: {body}");
        body["token"].as_str().expect("token").to_owned()
    }

    /// A registered, logged-in user.
    pub async fn user(&self, name: &str) -> TestUser {
        let id = self.register(name, "Tester").await;
        let token = self.login(id).await;
        TestUser { id, token }
    }

    pub async fn follow(&self, follower: &TestUser, author: &TestUser) {
        let (status, body) = self
            .put(
                &format!("/friend/set/{}", author.id),
                Some(&follower.token),
                None,
            )
            .await;
        assert_eq!(status, 200, "follow: {body}");
    }

    pub async fn unfollow(&self, follower: &TestUser, author: &TestUser) {
        let (status, body) = self
            .put(
                &format!("/friend/delete/{}", author.id),
                Some(&follower.token),
                None,
            )
            .await;
        assert_eq!(status, 200, "unfollow: {body}");
    }

    pub async fn create_post(&self, author: &TestUser, text: &str) -> Uuid {
        let (status, body) = self
            .post(
                "/post/create",
                Some(&author.token),
                &json!({ "text": text }),
            )
            .await;
        assert_eq!(status, 200, "create post: {body}");
        body.as_str().expect("bare id").parse().expect("uuid")
    }

    /// How many sessions this instance's registry holds.
    pub async fn session_count(&self) -> usize {
        self.realtime
            .registry
            .send(herald::realtime::registry::SessionCount)
            .await
            .expect("registry answers")
    }

    /// An author, a follower of theirs, and the follower's open feed.
    pub async fn author_and_follower(&self) -> (TestUser, TestUser, FeedClient) {
        let author = self.user("Author").await;
        let reader = self.user("Reader").await;
        self.follow(&reader, &author).await;
        let feed = self.feed(&reader).await;
        (author, reader, feed)
    }

    /// Opens the feed socket for `user`, with a client that answers pings in the background.
    pub async fn feed(&self, user: &TestUser) -> FeedClient {
        FeedClient::answering(self.raw_feed(user).await)
    }

    /// Opens the feed socket for `user` and leaves it to the test: nothing reads it, so pings
    /// go unanswered (a client that went silent without closing).
    pub async fn raw_feed(&self, user: &TestUser) -> Framed<BoxedSocket, Codec> {
        let url = format!("ws://127.0.0.1:{}/post/feed/posted", self.port);
        let (response, framed) = awc::Client::new()
            .ws(url)
            .bearer_auth(&user.token)
            .connect()
            .await
            .expect("websocket connects");
        assert_eq!(response.status().as_u16(), 101);
        framed
    }

    /// Runs `probe` until it holds or the deadline passes; returns whether it held.
    pub async fn eventually<F, Fut>(&self, probe: F) -> bool
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        eventually(probe).await
    }
}

pub struct TestUser {
    pub id: Uuid,
    pub token: String,
}

/// Runs `probe` every 25 ms until it holds or `DEADLINE` passes; returns whether it held.
pub async fn eventually<F, Fut>(probe: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_within(DEADLINE, probe).await
}

/// [`eventually`] with a deadline of its own, for conditions that by design take longer than
/// `DEADLINE` to come about (say, several rounds of a slow watchdog).
pub async fn eventually_within<F, Fut>(within: Duration, mut probe: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if probe().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A WebSocket feed client. A background task reads the socket, answers the server's pings
/// at once (so a slow test step never looks like a silent client) and passes every other
/// frame on; `send` writes through the same task.
pub struct FeedClient {
    frames: mpsc::UnboundedReceiver<Frame>,
    outgoing: mpsc::UnboundedSender<Message>,
}

pub enum Received {
    Event(Value),
    Closed(Option<CloseReason>),
    TimedOut,
}

impl FeedClient {
    pub fn answering(mut framed: Framed<BoxedSocket, Codec>) -> FeedClient {
        let (frames_tx, frames) = mpsc::unbounded_channel();
        let (outgoing, mut outgoing_rx) = mpsc::unbounded_channel::<Message>();
        actix_rt::spawn(async move {
            loop {
                tokio::select! {
                    frame = framed.next() => match frame {
                        Some(Ok(Frame::Ping(payload))) => {
                            if framed.send(Message::Pong(payload)).await.is_err() {
                                break;
                            }
                        }
                        Some(Ok(frame)) => {
                            let closing = matches!(frame, Frame::Close(_));
                            if frames_tx.send(frame).is_err() || closing {
                                break;
                            }
                        }
                        Some(Err(_)) | None => break,
                    },
                    message = outgoing_rx.recv() => match message {
                        Some(message) => {
                            if framed.send(message).await.is_err() {
                                break;
                            }
                        }
                        None => break,
                    },
                }
            }
        });
        FeedClient { frames, outgoing }
    }

    /// The next frame of interest within `within`: an event, the server's close, or nothing.
    pub async fn receive(&mut self, within: Duration) -> Received {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.frames.recv()).await {
                Err(_) => return Received::TimedOut,
                Ok(None) => return Received::Closed(None),
                Ok(Some(Frame::Text(bytes))) => {
                    let value = serde_json::from_slice(&bytes).expect("events are JSON");
                    return Received::Event(value);
                }
                Ok(Some(Frame::Close(reason))) => return Received::Closed(reason),
                Ok(Some(_)) => {}
            }
        }
    }

    /// The next raw frame (pings excepted), for tests about the protocol itself.
    pub async fn next_frame(&mut self) -> Frame {
        tokio::time::timeout(DEADLINE, self.frames.recv())
            .await
            .expect("a frame in time")
            .expect("socket open")
    }

    /// The next event; fails the test if none arrives within the deadline.
    pub async fn next_event(&mut self) -> Value {
        match self.receive(DEADLINE).await {
            Received::Event(value) => value,
            Received::Closed(reason) => {
                panic!("feed closed while waiting for an event: {reason:?}")
            }
            Received::TimedOut => panic!("no event within {DEADLINE:?}"),
        }
    }

    /// The next event must be `author`'s new post `post_id` with `text`.
    pub async fn expect_created(&mut self, post_id: Uuid, author: &TestUser, text: &str) {
        let event = self.next_event().await;
        assert_event(&event, "post.created", post_id, author.id, Some(text));
    }

    /// Waits for the server's close frame, skipping anything before it.
    pub async fn close_reason(&mut self) -> Option<CloseReason> {
        loop {
            match self.receive(DEADLINE).await {
                Received::Event(_) => continue,
                Received::Closed(reason) => return reason,
                Received::TimedOut => panic!("the server did not close within {DEADLINE:?}"),
            }
        }
    }

    pub async fn send(&mut self, message: Message) {
        self.outgoing.send(message).expect("socket task alive");
    }
}

/// Reads a socket nobody answered pings on until the server's close frame.
pub async fn raw_close_reason(framed: &mut Framed<BoxedSocket, Codec>) -> Option<CloseReason> {
    loop {
        match tokio::time::timeout(DEADLINE, framed.next()).await {
            Err(_) => panic!("the server did not close within {DEADLINE:?}"),
            Ok(Some(Ok(Frame::Close(reason)))) => return reason,
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_))) | Ok(None) => return None,
        }
    }
}

/// Asserts an event is exactly the given post event.
pub fn assert_event(event: &Value, kind: &str, post_id: Uuid, author: Uuid, text: Option<&str>) {
    assert_eq!(event["type"], kind, "event: {event}");
    assert_eq!(event["postId"], post_id.to_string(), "event: {event}");
    assert_eq!(
        event["author_user_id"],
        author.to_string(),
        "event: {event}"
    );
    match text {
        Some(text) => assert_eq!(event["postText"], text, "event: {event}"),
        None => assert!(event.get("postText").is_none(), "event: {event}"),
    }
}

/// A fresh AMQP connection for probing the broker from outside herald.
pub async fn amqp(settings: &Settings) -> Connection {
    Connection::connect(&settings.amqp.url, ConnectionProperties::default())
        .await
        .expect("AMQP connects")
}

/// Whether a queue exists. herald's session queues are exclusive, so from another connection a
/// passive declare of a live one fails with RESOURCE_LOCKED, and of a deleted one with NOT_FOUND.
pub async fn queue_exists(conn: &Connection, queue: &str) -> bool {
    let channel = conn.create_channel().await.expect("channel");
    let result = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await;
    match result {
        Ok(_) => true,
        Err(error) => match error.kind() {
            lapin::ErrorKind::ProtocolError(amqp) => match amqp.kind() {
                AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND) => false,
                AMQPErrorKind::Soft(AMQPSoftError::RESOURCELOCKED) => true,
                other => panic!("unexpected AMQP error for {queue}: {other:?}"),
            },
            other => panic!("unexpected error for {queue}: {other:?}"),
        },
    }
}

/// Whether the exchange routes `routing_key` anywhere (publishes a mandatory probe message).
pub async fn is_routed(conn: &Connection, exchange: &str, routing_key: &str) -> bool {
    let channel = conn.create_channel().await.expect("channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let confirm = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            br#"{"type":"probe"}"#,
            BasicProperties::default(),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    confirm.take_message().is_none()
}

/// How long one `rabbitmqctl` call may take before the test fails (each call boots an Erlang
/// VM: under a second on an idle machine, several on a loaded one).
pub const RABBITMQCTL_DEADLINE: Duration = Duration::from_secs(60);

/// Runs `rabbitmqctl` with `args` and returns its standard output. Awaited as a child process,
/// so the runtime (which also runs the server under test and the feed clients answering its
/// pings) keeps going meanwhile. Fails the test if it cannot run, exits non-zero, or takes
/// longer than [`RABBITMQCTL_DEADLINE`] (the child is killed then).
pub async fn rabbitmqctl(args: &[&str]) -> Vec<u8> {
    let child = tokio::process::Command::new("rabbitmqctl")
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(RABBITMQCTL_DEADLINE, child)
        .await
        .unwrap_or_else(|_| panic!("rabbitmqctl {args:?} took over {RABBITMQCTL_DEADLINE:?}"))
        .expect("rabbitmqctl runs");
    assert!(
        output.status.success(),
        "rabbitmqctl {args:?}: {}; stderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// The routing keys bound on `exchange`, with the queue each is bound to, as RabbitMQ lists
/// them (a probe that, unlike a mandatory publish, delivers nothing to anyone).
pub async fn bindings(exchange: &str) -> Vec<(String, String)> {
    let listing = rabbitmqctl(&[
        "list_bindings",
        "-q",
        "--formatter",
        "json",
        "source_name",
        "destination_name",
        "routing_key",
    ])
    .await;
    let rows: Value = serde_json::from_slice(&listing).expect("json listing");
    rows.as_array()
        .expect("array")
        .iter()
        .filter(|row| row["source_name"] == exchange)
        .map(|row| {
            (
                row["destination_name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                row["routing_key"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// How many queues have `key` bound on `exchange`.
pub async fn bound(exchange: &str, key: &str) -> usize {
    bindings(exchange)
        .await
        .iter()
        .filter(|(_, k)| k == key)
        .count()
}

/// Every queue on the broker, with whether it is exclusive and auto-delete and its arguments,
/// as RabbitMQ lists them (a JSON array of objects with those keys and `name`).
pub async fn queue_listing() -> Value {
    let listing = rabbitmqctl(&[
        "list_queues",
        "-q",
        "--formatter",
        "json",
        "name",
        "exclusive",
        "auto_delete",
        "arguments",
    ])
    .await;
    serde_json::from_slice(&listing).expect("json listing")
}

/// Deletes a queue on the broker's side, behind its owner's back.
pub async fn delete_queue(queue: &str) {
    rabbitmqctl(&["delete_queue", queue]).await;
}

/// Publishes a raw event to the exchange, as another herald instance would.
pub async fn publish_raw(conn: &Connection, exchange: &str, routing_key: &str, body: &Value) {
    let channel = conn.create_channel().await.expect("channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            body.to_string().as_bytes(),
            BasicProperties::default(),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
}

/// Force-closes, on the broker's side, every AMQP connection herald opened for `exchange`
/// (herald names them `herald <exchange>`); returns how many were closed.
pub async fn force_close_herald_connections(exchange: &str) -> usize {
    let listing = rabbitmqctl(&["list_connections", "-q", "pid", "client_properties"]).await;
    let needle = format!("herald {exchange}\"");
    let pids: Vec<String> = String::from_utf8_lossy(&listing)
        .lines()
        .filter(|line| line.contains(&needle))
        .filter_map(|line| line.split('\t').next().map(str::to_owned))
        .collect();
    for pid in &pids {
        rabbitmqctl(&["close_connection", pid, "test: broker connection lost"]).await;
    }
    pids.len()
}
