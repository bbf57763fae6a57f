//! Hostile and careless clients: each test plays one (a frame declaring a huge length, a login
//! flood, a password guesser, a body that never arrives, a reader that stopped reading, a
//! wrong method) against a real server, and checks that herald refuses it promptly and keeps
//! serving everyone else. Raw TCP where the misbehaviour is below what an HTTP client allows.

use std::time::Duration;

use futures_util::future::join_all;
use herald::config::QueueMode;
use herald::realtime::broker::topology::user_routing_key;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::{
    amqp, eventually_within, force_close_herald_connections, publish_raw, test_settings,
    test_settings_in, Answer, TestApp, TestUser, DEADLINE,
};

in_both_modes!(
    a_client_that_stops_reading_is_dropped_as_too_slow,
    a_stalled_client_is_dropped_even_when_the_broker_link_is_lost_meanwhile,
);

/// The password `TestApp::user` registers everyone with.
const PASSWORD: &str = "correct horse";

/// Opens a WebSocket by hand (so the test controls every byte) and returns the socket right
/// after the 101 response. `receive_buffer` shrinks the client's socket buffer, for tests that
/// want the server's writes to back up quickly.
async fn raw_websocket(app: &TestApp, user: &TestUser, receive_buffer: Option<u32>) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    if let Some(size) = receive_buffer {
        socket.set_recv_buffer_size(size).expect("SO_RCVBUF");
    }
    let address = format!("127.0.0.1:{}", app.port).parse().expect("address");
    let mut stream = socket.connect(address).await.expect("connects");
    let request = format!(
        "GET /post/feed/posted HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer {}\r\n\r\n",
        user.token
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("upgrade sent");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(DEADLINE, stream.read(&mut byte))
            .await
            .expect("upgrade answered in time")
            .expect("read");
        assert_eq!(n, 1, "connection closed during the upgrade");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    stream
}

/// Reads server frames until a close frame; returns its code. Pings and other frames are
/// skipped.
async fn close_code(stream: &mut TcpStream) -> u16 {
    loop {
        let mut head = [0u8; 2];
        stream.read_exact(&mut head).await.expect("a frame header");
        let len = match head[1] & 0x7f {
            126 => u64::from(stream.read_u16().await.expect("length")),
            127 => stream.read_u64().await.expect("length"),
            n => u64::from(n),
        };
        let mut payload = vec![0u8; usize::try_from(len).expect("length fits")];
        stream.read_exact(&mut payload).await.expect("payload");
        if head[0] & 0x0f == 0x8 {
            assert!(payload.len() >= 2, "a close frame with a code");
            return u16::from_be_bytes([payload[0], payload[1]]);
        }
    }
}

async fn health(app: &TestApp) -> Value {
    let (status, body) = app.get("/health", None).await;
    assert_eq!(status, 200, "{body}");
    body
}

#[actix_web::test]
async fn a_frame_declared_above_the_limit_is_refused_from_its_header() {
    let app = TestApp::spawn().await;
    let user = app.user("Flooder").await;
    let bystander = app.user("Bystander").await;
    let mut calm = app.feed(&bystander).await;
    let mut stream = raw_websocket(&app, &user, None).await;

    // A masked binary frame declaring 2^62 bytes, then a little of that payload. Before the
    // guard, the server buffered the payload as it came and said nothing until the watchdog
    // gave up on the client.
    let mut frame = vec![0x82, 0x80 | 127];
    frame.extend_from_slice(&(1u64 << 62).to_be_bytes());
    frame.extend_from_slice(&[7, 7, 7, 7]);
    frame.extend(std::iter::repeat_n(0u8, 64 * 1024));
    stream.write_all(&frame).await.expect("frame sent");

    let code = tokio::time::timeout(DEADLINE, close_code(&mut stream))
        .await
        .expect("closed in time, without waiting for the payload");
    assert_eq!(code, 1009, "close code 1009 (message too big)");

    // Everyone else is still served.
    let author = app.user("Author").await;
    app.follow(&bystander, &author).await;
    let post = app.create_post(&author, "still here").await;
    calm.expect_created(post, &author, "still here").await;
}

#[actix_web::test]
async fn a_login_flood_waits_for_a_few_hashers_and_the_excess_gets_503() {
    let mut settings = test_settings();
    settings.auth.hash_concurrency = 1;
    settings.auth.hash_queue = 1;
    settings.auth.login_failures_per_user = 0;
    settings.auth.login_failures_per_user_address = 0;
    settings.auth.login_failures_per_address = 0;
    settings.auth.login_checks_in_flight_per_user = 0;
    settings.auth.login_checks_in_flight_per_address = 0;
    let app = TestApp::spawn_with(settings).await;
    let user = app.user("Target").await;

    let attempts = (0..64).map(|_| {
        let body = json!({"id": user.id, "password": "not the password"}).to_string();
        app.call("POST", "/login", None, Some(body))
    });
    let answers = join_all(attempts).await;
    let mut refused = 0;
    for Answer {
        status,
        body,
        headers,
    } in &answers
    {
        match status {
            400 => {}
            503 => {
                refused += 1;
                assert!(
                    headers.contains_key("retry-after"),
                    "503 without Retry-After"
                );
                assert_eq!(body["code"], 503, "{body}");
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(
        refused > 0,
        "64 hashes at once with one hasher and a queue of one: some must be refused"
    );
    // And the server is fine afterwards: the right password still works.
    let (status, body) = app
        .post(
            "/login",
            None,
            &json!({"id": user.id, "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

#[actix_web::test]
async fn a_body_that_does_not_arrive_gets_408_and_its_connection_closes() {
    let mut settings = test_settings();
    settings.http.body_timeout_secs = 1;
    let app = TestApp::spawn_with(settings).await;
    let mut stream = TcpStream::connect(("127.0.0.1", app.port))
        .await
        .expect("connects");
    stream
        .write_all(
            b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
              Content-Length: 5000\r\n\r\n{\"id\": \"ab",
        )
        .await
        .expect("request sent");
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut answer))
        .await
        .expect("answered and closed in time")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("\"code\":408"),
        "the JSON error body: {answer}"
    );

    // Bodies that do arrive are unaffected.
    let user = app.user("Patient").await;
    assert_eq!(
        app.get(&format!("/user/get/{}", user.id), None).await.0,
        200
    );
}

#[actix_web::test]
async fn a_wrong_method_on_a_known_path_gets_405_with_allow() {
    let app = TestApp::spawn().await;
    for (method, path, allowed) in [
        ("GET", "/post/create", "POST"),
        ("TRACE", "/login", "POST"),
        (
            "DELETE",
            "/post/get/00000000-0000-0000-0000-000000000000",
            "GET",
        ),
        (
            "POST",
            "/friend/set/00000000-0000-0000-0000-000000000000",
            "PUT",
        ),
    ] {
        let Answer {
            status,
            body,
            headers,
        } = app.call(method, path, None, None).await;
        assert_eq!(status, 405, "{method} {path}: {body}");
        assert_eq!(
            headers.get("allow").and_then(|v| v.to_str().ok()),
            Some(allowed),
            "{method} {path}"
        );
        assert_eq!(body["code"], 405, "{body}");
        assert!(body["request_id"].is_string(), "{body}");
    }
    let Answer { status, .. } = app.call("GET", "/no/such/path", None, None).await;
    assert_eq!(status, 404);
}

/// Settings for a test about a client that stops reading: a small server-side send buffer, so
/// its socket fills fast, and no client timeout to drop it for its silence first.
fn stalling_settings(mode: QueueMode, write_timeout_secs: u64) -> herald::config::Settings {
    let mut settings = test_settings_in(mode);
    settings.realtime.write_timeout_secs = write_timeout_secs;
    settings.realtime.socket_send_buffer_bytes = 64 * 1024;
    settings.realtime.client_timeout_secs = 600;
    settings
}

/// Publishes far more to `user` than the socket buffers hold, and far fewer events than a
/// session's mailbox: only its stalled socket can tell that its client is not reading.
async fn stuff(app: &TestApp, user: &TestUser) {
    let conn = amqp(&app.settings).await;
    let big = json!({"type": "post.created", "postText": "x".repeat(256 * 1024)});
    for _ in 0..48 {
        publish_raw(
            &conn,
            &app.settings.realtime.exchange,
            &user_routing_key(user.id),
            &big,
        )
        .await;
    }
}

async fn a_client_that_stops_reading_is_dropped_as_too_slow(mode: QueueMode) {
    let app = TestApp::spawn_with(stalling_settings(mode, 2)).await;
    let stalled = app.user("Stalled").await;
    let reader = app.user("Reader").await;
    let author = app.user("Author").await;
    app.follow(&reader, &author).await;
    let mut healthy = app.feed(&reader).await;
    let stream = raw_websocket(&app, &stalled, Some(4096)).await;
    assert!(
        app.eventually(|| async { app.session_count().await == 2 })
            .await
    );
    let before = health(&app).await["realtime"]["dropped_slow"]
        .as_u64()
        .expect("dropped_slow");

    stuff(&app, &stalled).await;

    assert!(
        app.eventually(|| async {
            health(&app).await["realtime"]["dropped_slow"].as_u64() == Some(before + 1)
        })
        .await,
        "the stalled session was not counted as too slow"
    );
    assert!(
        app.eventually(|| async { app.session_count().await == 1 })
            .await
    );
    // Reset by the server, without the client reading a byte (reading would drain the socket
    // and let the session go on).
    assert!(
        app.eventually(|| async { matches!(stream.take_error(), Ok(Some(_))) })
            .await,
        "the stalled client's TCP connection was not dropped"
    );

    // The reader was never held up.
    let post = app.create_post(&author, "unhindered").await;
    healthy.expect_created(post, &author, "unhindered").await;
}

async fn a_stalled_client_is_dropped_even_when_the_broker_link_is_lost_meanwhile(mode: QueueMode) {
    // The link drops while the client is stalled: the registry forgets every session at once,
    // and a frozen one cannot act on being told to go. Its connection must still be dropped.
    let app = TestApp::spawn_with(stalling_settings(mode, 6)).await;
    let stalled = app.user("Stalled").await;
    let stream = raw_websocket(&app, &stalled, Some(4096)).await;
    assert!(
        app.eventually(|| async { app.session_count().await == 1 })
            .await
    );

    stuff(&app, &stalled).await;
    // Well within the write timeout, so the registry forgets the session before its reaper
    // would have found it stalled.
    let closed = force_close_herald_connections(&app.settings.realtime.exchange).await;
    assert!(closed >= 1, "no herald connection found on the broker");
    assert!(
        app.eventually(|| async { app.session_count().await == 0 })
            .await
    );
    assert!(
        eventually_within(Duration::from_secs(30), || async {
            matches!(stream.take_error(), Ok(Some(_)))
        })
        .await,
        "the stalled client's connection outlived the link"
    );
}
