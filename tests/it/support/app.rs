//! A whole herald server on a random port, and its users: an HTTP client for the API and the
//! steps most tests take (register, log in, follow, post, open the feed).

use std::future::Future;
use std::time::Duration;

use actix_codec::Framed;
use awc::http::header::HeaderMap;
use awc::ws::Codec;
use awc::BoxedSocket;
use herald::config::{QueueMode, Settings};
use herald::startup::{Application, Realtime, Stopper};
use herald::store::DbPool;
use serde_json::{json, Value};
use uuid::Uuid;

use super::feed_client::FeedClient;
use super::settings::{test_settings, test_settings_in, Cleanup};

pub struct TestApp {
    pub port: u16,
    /// The port of `http.metrics_bind`'s listener, when set.
    pub metrics_port: Option<u16>,
    pub address: String,
    pub settings: Settings,
    pub realtime: Realtime,
    pub pool: DbPool,
    stopper: Stopper,
    client: awc::Client,
    /// Set on the instance that created the database and exchange (not on siblings).
    _cleanup: Option<Cleanup>,
}

/// One HTTP response, as [`TestApp::call`] returns it.
pub struct Answer {
    pub status: u16,
    /// The body parsed as JSON; a body that is not JSON comes as a string, an empty one as
    /// `Null`.
    pub body: Value,
    pub headers: HeaderMap,
}

impl Answer {
    /// Reads `response` whole (up to 16 MiB).
    pub async fn read<S>(response: &mut awc::ClientResponse<S>) -> Answer
    where
        S: futures_util::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>>
            + Unpin,
    {
        let bytes = response.body().limit(16 << 20).await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Answer {
            status: response.status().as_u16(),
            body,
            headers: response.headers().clone(),
        }
    }
}

pub struct TestUser {
    pub id: Uuid,
    pub token: String,
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
        let metrics_port = app.metrics_port();
        let realtime = app.realtime().clone();
        let pool = app.pool().clone();
        let stopper = app.stopper();
        actix_rt::spawn(app.run_until_stopped());
        TestApp {
            port,
            metrics_port,
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

    /// Sends a request; returns its status, body and headers.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<String>,
    ) -> Answer {
        self.call_with(method, path, token, body, &[]).await
    }

    /// [`call`](Self::call) with extra request headers.
    pub async fn call_with(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<String>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let method = awc::http::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.client.request(method, self.url(path));
        for (name, value) in headers {
            request = request.insert_header((*name, *value));
        }
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
        Answer::read(&mut response).await
    }

    /// `GET`; returns the status and the body (see [`Answer`]).
    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let answer = self.call("GET", path, token, None).await;
        (answer.status, answer.body)
    }

    /// `POST` of a JSON body; returns the status and the body (see [`Answer`]).
    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        let answer = self.call("POST", path, token, Some(body.to_string())).await;
        (answer.status, answer.body)
    }

    /// `PUT`, with or without a JSON body; returns the status and the body (see [`Answer`]).
    pub async fn put(&self, path: &str, token: Option<&str>, body: Option<&Value>) -> (u16, Value) {
        let answer = self
            .call("PUT", path, token, body.map(|b| b.to_string()))
            .await;
        (answer.status, answer.body)
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
            .send(herald::realtime::session::registry::upkeep::SessionCount)
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

    /// Opens the feed socket for `user`, resuming after position `since`.
    pub async fn feed_since(&self, user: &TestUser, since: i64) -> FeedClient {
        FeedClient::answering(self.open_feed(user, &format!("?since={since}")).await)
    }

    /// The feed log's positions, as the relay keeps them.
    pub async fn relay_state(&self) -> herald::store::events::RelayState {
        let mut conn = self.pool.get().await.expect("connection");
        herald::store::events::relay_state(&mut conn)
            .await
            .expect("relay state")
    }

    /// Waits until every committed event is numbered, published and confirmed.
    pub async fn relay_idle(&self) {
        assert!(
            self.eventually(|| async { self.relay_state().await.lag() == 0 })
                .await,
            "the relay did not catch up"
        );
    }

    /// Opens the feed socket for `user` and leaves it to the test: nothing reads it, so pings
    /// go unanswered (a client that went silent without closing).
    pub async fn raw_feed(&self, user: &TestUser) -> Framed<BoxedSocket, Codec> {
        self.open_feed(user, "").await
    }

    /// Opens the feed socket for `user`, with `query` after the path.
    async fn open_feed(&self, user: &TestUser, query: &str) -> Framed<BoxedSocket, Codec> {
        let url = format!("ws://127.0.0.1:{}/post/feed/posted{query}", self.port);
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
        Fut: Future<Output = bool>,
    {
        super::eventually(probe).await
    }
}
