//! The feed over the other transports (§4, §5), read by clients nobody at herald wrote:
//! `@stomp/stompjs` 7 over `ws` at `/stomp` and the `eventsource` package at
//! `/post/feed/events`, and, for what a client library would never send, a raw WebSocket
//! speaking bad STOMP and raw HTTP readers. Each client checks that positions only increase.

use std::time::Duration;

use actix_web::web;
use awc::ws::{Frame, Message};
use futures_util::StreamExt;
use serde_json::{json, Value};

use super::support::{
    assert_event, eventually, test_settings, FeedClient, NodeClient, TestApp, TestUser, DEADLINE,
};

/// Creates, edits and deletes a post of `author`, each step once `client` has the event of the
/// one before (an edit that overtakes its post's creation on the way to the broker erases the
/// creation's text in the log, so the creation would arrive edited): the three events, in
/// order.
async fn create_update_delete(app: &TestApp, author: &TestUser, client: &mut NodeClient) {
    let post = app.create_post(author, "hello").await;
    assert_event(
        &client.event().await,
        "post.created",
        post,
        author.id,
        Some("hello"),
    );
    let (status, _) = app
        .put(
            "/post/update",
            Some(&author.token),
            Some(&json!({"id": post, "text": "edited"})),
        )
        .await;
    assert_eq!(status, 200);
    assert_event(
        &client.event().await,
        "post.updated",
        post,
        author.id,
        Some("edited"),
    );
    let (status, _) = app
        .put(&format!("/post/delete/{post}"), Some(&author.token), None)
        .await;
    assert_eq!(status, 200);
    assert_event(&client.event().await, "post.deleted", post, author.id, None);
}

#[actix_web::test]
async fn stompjs_reads_friends_posts_in_order_with_the_token_in_each_place() {
    let app = TestApp::spawn().await;
    let author = app.user("Author").await;
    let stranger = app.user("Stranger").await;
    for token_in in ["passcode", "authorization", "token", "url"] {
        let reader = app.user("Reader").await;
        app.follow(&reader, &author).await;
        let mut client =
            NodeClient::start(&app, "stompjs-ws", &reader, json!({ "tokenIn": token_in })).await;
        client.ready().await;
        app.create_post(&stranger, "not followed").await;
        create_update_delete(&app, &author, &mut client).await;
        client.stop().await;
    }
}

#[actix_web::test]
async fn stompjs_is_refused_without_a_valid_token_or_on_another_users_destination() {
    let app = TestApp::spawn().await;
    let reader = app.user("Reader").await;
    let other = app.user("Other").await;
    let forged = TestUser {
        id: reader.id,
        token: "0".repeat(64),
    };
    let mut client = NodeClient::start(&app, "stompjs-ws", &forged, json!({})).await;
    assert!(client.error().await.contains("token"));
    client.stop().await;

    let destination = format!("/topic/user.{}", other.id);
    let mut client = NodeClient::start(
        &app,
        "stompjs-ws",
        &reader,
        json!({ "destination": destination }),
    )
    .await;
    assert!(client.error().await.contains("destination"));
    client.stop().await;
    assert!(eventually(|| async { app.session_count().await == 0 }).await);
}

#[actix_web::test]
async fn stompjs_resumes_after_since_and_is_reset_beyond_the_history() {
    let mut settings = test_settings();
    settings.realtime.history_max_events = 3;
    let app = TestApp::spawn_with(settings).await;
    let author = app.user("Author").await;
    let reader = app.user("Reader").await;
    app.follow(&reader, &author).await;
    app.create_post(&author, "one").await;
    app.relay_idle().await;
    let after_first = app.relay_state().await.numbered_seq;
    let second = app.create_post(&author, "two").await;
    app.relay_idle().await;

    let mut client = NodeClient::start(
        &app,
        "stompjs-ws",
        &reader,
        json!({ "since": after_first, "ack": "client" }),
    )
    .await;
    client.ready().await;
    assert_event(
        &client.event().await,
        "post.created",
        second,
        author.id,
        Some("two"),
    );
    let live = app.create_post(&author, "three").await;
    assert_event(
        &client.event().await,
        "post.created",
        live,
        author.id,
        Some("three"),
    );
    client.stop().await;

    for i in 0..5 {
        app.create_post(&author, &format!("more {i}")).await;
    }
    app.relay_idle().await;
    let head = app.relay_state().await.numbered_seq;
    let mut client = NodeClient::start(&app, "stompjs-ws", &reader, json!({ "since": 0 })).await;
    client.ready().await;
    assert_eq!(
        client.event().await,
        json!({ "type": "feed.reset", "seq": head })
    );
    client.stop().await;
}

#[actix_web::test]
async fn a_json_socket_stomp_and_sse_of_one_user_on_two_instances_all_receive() {
    let app = TestApp::spawn().await;
    let sibling = app.sibling().await;
    let author = app.user("Author").await;
    let reader = app.user("Reader").await;
    app.follow(&reader, &author).await;
    let mut json_feed = app.feed(&reader).await;
    let mut stomp = NodeClient::start(&sibling, "stompjs-ws", &reader, json!({})).await;
    stomp.ready().await;
    let mut sse = NodeClient::start(&sibling, "sse", &reader, json!({})).await;
    sse.ready().await;
    create_update_delete(&app, &author, &mut stomp).await;
    assert_eq!(sse.event().await["type"], "post.created");
    assert_eq!(sse.event().await["type"], "post.updated");
    assert_eq!(sse.event().await["type"], "post.deleted");
    sse.stop().await;
    assert_eq!(json_feed.next_event().await["type"], "post.created");
    assert_eq!(json_feed.next_event().await["type"], "post.updated");
    assert_eq!(json_feed.next_event().await["type"], "post.deleted");
    stomp.stop().await;
    sibling.stop().await;
}

/// A raw STOMP client on `/stomp`, for input no library would send.
async fn raw_stomp(app: &TestApp) -> FeedClient {
    let url = format!("ws://127.0.0.1:{}/stomp", app.port);
    let (response, framed) = awc::Client::new()
        .ws(url)
        .protocols(["v12.stomp", "v10.stomp"])
        .max_frame_size(1 << 20)
        .connect()
        .await
        .expect("websocket connects");
    assert_eq!(response.status().as_u16(), 101);
    assert_eq!(
        response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("v12.stomp")
    );
    FeedClient::answering(framed)
}

/// The next text frame, as text.
async fn next_text(client: &mut FeedClient) -> String {
    loop {
        match client.next_frame().await {
            Frame::Text(bytes) | Frame::Binary(bytes) => {
                return String::from_utf8_lossy(&bytes).into_owned()
            }
            Frame::Close(reason) => panic!("closed while waiting for a frame: {reason:?}"),
            _ => {}
        }
    }
}

async fn send(client: &mut FeedClient, text: &str) {
    client.send(Message::Text(text.to_owned().into())).await;
}

/// A raw client of `user`, connected and subscribed.
async fn subscribed(app: &TestApp, user: &TestUser) -> FeedClient {
    let mut client = raw_stomp(app).await;
    send(
        &mut client,
        &format!(
            "CONNECT\naccept-version:1.2\nhost:x\npasscode:{}\n\n\0",
            user.token
        ),
    )
    .await;
    let connected = next_text(&mut client).await;
    assert!(connected.starts_with("CONNECTED\n"), "{connected}");
    assert!(connected.contains("version:1.2\n"), "{connected}");
    send(
        &mut client,
        "SUBSCRIBE\nid:s\ndestination:/queue/feed\nreceipt:r\n\n\0",
    )
    .await;
    assert!(next_text(&mut client)
        .await
        .starts_with("RECEIPT\nreceipt-id:r\n"));
    client
}

/// Sends `input` and expects an ERROR, then the close.
async fn refused(client: &mut FeedClient, input: Message) -> String {
    client.send(input).await;
    let error = next_text(client).await;
    assert!(error.starts_with("ERROR\n"), "{error}");
    assert!(client.close_reason().await.is_some());
    error
}

#[actix_web::test]
async fn bad_stomp_input_is_an_error_and_a_close_and_disturbs_no_one() {
    let app = TestApp::spawn().await;
    let author = app.user("Author").await;
    let reader = app.user("Reader").await;
    app.follow(&reader, &author).await;
    let mut bystander = NodeClient::start(&app, "stompjs-ws", &reader, json!({})).await;
    bystander.ready().await;

    let text = |s: String| Message::Text(s.into());
    let many_headers: String = std::iter::once("SUBSCRIBE\n".to_owned())
        .chain((0..10_000).map(|n| format!("h:{}\n", n % 10)))
        .chain(std::iter::once("\n\0".to_owned()))
        .collect();
    let oversize = format!("SEND\ndestination:/queue/feed\n\n{}\0", "x".repeat(70_000));
    let subscribes: String = (0..1000)
        .map(|n| format!("SUBSCRIBE\nid:{n}\ndestination:/queue/feed\n\n\0"))
        .collect();
    let cases: Vec<(&str, Message)> = vec![
        ("malformed", text("not stomp at all\0".into())),
        ("unknown command", text("FLY\n\n\0".into())),
        ("10,000 headers", text(many_headers)),
        ("oversize", text(oversize)),
        ("1,000 SUBSCRIBEs", text(subscribes)),
        ("SEND", text("SEND\ndestination:/queue/feed\n\nhi\0".into())),
        (
            "ACK of an id never sent",
            text("ACK\nid:12345\n\n\0".into()),
        ),
        (
            "another user's destination",
            text(format!(
                "SUBSCRIBE\nid:x\ndestination:/topic/{}\n\n\0",
                author.id
            )),
        ),
    ];
    for (what, input) in cases {
        let mut client = subscribed(&app, &reader).await;
        let error = refused(&mut client, input).await;
        println!("{what}: {}", error.lines().nth(1).unwrap_or_default());
    }
    // Before CONNECT: anything else is refused, and so is CONNECT without a token.
    let mut client = raw_stomp(&app).await;
    refused(
        &mut client,
        Message::Text("SUBSCRIBE\nid:1\ndestination:/queue/feed\n\n\0".into()),
    )
    .await;
    let mut client = raw_stomp(&app).await;
    refused(
        &mut client,
        Message::Text("CONNECT\naccept-version:1.2\n\n\0".into()),
    )
    .await;

    // The bystander still reads its feed, and every refused session is gone.
    let post = app.create_post(&author, "still here").await;
    assert_event(
        &bystander.event().await,
        "post.created",
        post,
        author.id,
        Some("still here"),
    );
    assert!(eventually(|| async { app.session_count().await == 1 }).await);
    bystander.stop().await;
}

#[actix_web::test]
async fn legacy_stomp_10_frames_split_across_messages_and_heart_beats_work() {
    let app = TestApp::spawn().await;
    let author = app.user("Author").await;
    let reader = app.user("Reader").await;
    app.follow(&reader, &author).await;
    let mut client = raw_stomp(&app).await;
    // 1.0 (no accept-version), the CONNECT cut in three, a heart-beat EOL in front.
    let connect = format!("\nCONNECT\nlogin:x\npasscode:{}\n\n\0", reader.token);
    let (a, rest) = connect.split_at(5);
    let (b, c) = rest.split_at(20);
    for piece in [a, b, c] {
        send(&mut client, piece).await;
    }
    let connected = next_text(&mut client).await;
    assert!(
        connected.starts_with("CONNECTED\nversion:1.0\n"),
        "{connected}"
    );
    // SUBSCRIBE and a DISCONNECT-free receipt request in one message.
    send(
        &mut client,
        "SUBSCRIBE\ndestination:/queue/feed\nack:client\n\n\0BEGIN\ntransaction:t\nreceipt:b\n\n\0",
    )
    .await;
    assert!(next_text(&mut client)
        .await
        .starts_with("RECEIPT\nreceipt-id:b\n"));
    let post = app.create_post(&author, "legacy").await;
    let message = next_text(&mut client).await;
    assert!(message.starts_with("MESSAGE\n"), "{message}");
    let body = message
        .split_once("\n\n")
        .map(|(_, body)| body.trim_end_matches('\0'))
        .expect("a body");
    let event: Value = serde_json::from_str(body).expect("JSON body");
    assert_event(&event, "post.created", post, author.id, Some("legacy"));
    let seq = event["seq"].as_i64().expect("seq");
    assert!(message.contains(&format!("message-id:{seq}\n")));
    // 1.0 acks by message-id.
    send(
        &mut client,
        &format!("ACK\nmessage-id:{seq}\nreceipt:a\n\n\0"),
    )
    .await;
    assert!(next_text(&mut client)
        .await
        .starts_with("RECEIPT\nreceipt-id:a\n"));
    send(&mut client, "DISCONNECT\nreceipt:bye\n\n\0").await;
    assert!(next_text(&mut client)
        .await
        .starts_with("RECEIPT\nreceipt-id:bye\n"));
    assert!(client.close_reason().await.is_some());
}

#[actix_web::test]
async fn an_eventsource_client_reads_friends_posts_in_order_and_resumes_after_since() {
    let app = TestApp::spawn().await;
    let author = app.user("Author").await;
    let stranger = app.user("Stranger").await;
    let reader = app.user("Reader").await;
    app.follow(&reader, &author).await;
    for token_in in ["authorization", "url"] {
        let mut client =
            NodeClient::start(&app, "sse", &reader, json!({ "tokenIn": token_in })).await;
        client.ready().await;
        app.create_post(&stranger, "not followed").await;
        create_update_delete(&app, &author, &mut client).await;
        client.stop().await;
    }
    app.relay_idle().await;
    let position = app.relay_state().await.numbered_seq;
    let missed = app.create_post(&author, "missed").await;
    let mut client = NodeClient::start(&app, "sse", &reader, json!({ "since": position })).await;
    client.ready().await;
    assert_event(
        &client.event().await,
        "post.created",
        missed,
        author.id,
        Some("missed"),
    );
    client.stop().await;
}

/// A raw SSE response: its head, and its body as it comes.
async fn raw_events(
    app: &TestApp,
    query: &str,
    last_event_id: Option<i64>,
    token: &str,
) -> awc::ClientResponse<
    impl futures_util::Stream<Item = Result<web::Bytes, awc::error::PayloadError>>,
> {
    let mut request = awc::Client::new()
        .get(app.url(&format!("/post/feed/events{query}")))
        .bearer_auth(token);
    if let Some(id) = last_event_id {
        request = request.insert_header(("Last-Event-ID", id.to_string()));
    }
    request.send().await.expect("the request is answered")
}

/// Reads SSE blocks (the text between blank lines) until `count` events have come.
async fn sse_events<S>(body: &mut S, count: usize) -> Vec<(i64, String, Value)>
where
    S: futures_util::Stream<Item = Result<web::Bytes, awc::error::PayloadError>> + Unpin,
{
    let mut text = String::new();
    let mut events = Vec::new();
    while events.len() < count {
        let chunk = tokio::time::timeout(DEADLINE, body.next())
            .await
            .expect("an event in time")
            .expect("the stream open")
            .expect("a chunk");
        text.push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        while let Some((block, rest)) = text.split_once("\n\n") {
            let (mut id, mut name, mut data) = (None, None, None);
            for line in block.lines() {
                match line.split_once(": ") {
                    Some(("id", v)) => id = v.parse::<i64>().ok(),
                    Some(("event", v)) => name = Some(v.to_owned()),
                    Some(("data", v)) => data = serde_json::from_str::<Value>(v).ok(),
                    _ => {}
                }
            }
            if let (Some(id), Some(name), Some(data)) = (id, name, data) {
                events.push((id, name, data));
            }
            text = rest.to_owned();
        }
    }
    events
}

#[actix_web::test]
async fn sse_speaks_event_stream_and_last_event_id_wins_over_since() {
    let mut settings = test_settings();
    settings.realtime.history_max_events = 3;
    let app = TestApp::spawn_with(settings).await;
    let author = app.user("Author").await;
    let reader = app.user("Reader").await;
    app.follow(&reader, &author).await;

    let refused = awc::Client::new()
        .get(app.url("/post/feed/events"))
        .send()
        .await
        .expect("answered");
    assert_eq!(refused.status().as_u16(), 401);

    app.create_post(&author, "one").await;
    app.relay_idle().await;
    let after_one = app.relay_state().await.numbered_seq;
    let two = app.create_post(&author, "two").await;
    app.relay_idle().await;

    // EventSource reconnects to the URL it opened with (`since=0`) and adds Last-Event-ID.
    let mut response = raw_events(&app, "?since=0", Some(after_one), &reader.token).await;
    assert_eq!(response.status().as_u16(), 200);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(header("content-type").as_deref(), Some("text/event-stream"));
    assert_eq!(header("cache-control").as_deref(), Some("no-cache"));
    assert_eq!(header("x-accel-buffering").as_deref(), Some("no"));
    let first = tokio::time::timeout(DEADLINE, response.next())
        .await
        .expect("the preamble")
        .expect("open")
        .expect("a chunk");
    assert!(first.starts_with(b"retry: "), "{first:?}");
    let events = sse_events(&mut response, 1).await;
    assert_eq!(events[0].1, "post.created");
    assert_eq!(events[0].0, events[0].2["seq"].as_i64().expect("seq"));
    assert_event(&events[0].2, "post.created", two, author.id, Some("two"));

    // Beyond the history kept: a `feed.reset` event, with its id.
    for i in 0..5 {
        app.create_post(&author, &format!("more {i}")).await;
    }
    app.relay_idle().await;
    let head = app.relay_state().await.numbered_seq;
    let mut response = raw_events(&app, "?since=0", None, &reader.token).await;
    let events = sse_events(&mut response, 1).await;
    assert_eq!(
        events[0],
        (
            head,
            "feed.reset".to_owned(),
            json!({"type": "feed.reset", "seq": head})
        )
    );
}

#[actix_web::test]
async fn an_sse_client_that_stops_reading_is_dropped_and_disturbs_no_one() {
    let mut settings = test_settings();
    settings.realtime.history_max_events = 4;
    settings.realtime.session_mailbox = 8;
    settings.realtime.socket_send_buffer_bytes = 4096;
    let app = TestApp::spawn_with(settings).await;
    let author = app.user("Author").await;
    let reader = app.user("Reader").await;
    app.follow(&reader, &author).await;
    let mut bystander = app.feed(&reader).await;

    // A client that sends its request and never reads, with a small receive buffer.
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket.set_recv_buffer_size(4096).expect("a small buffer");
    let mut stream = socket
        .connect(
            format!("127.0.0.1:{}", app.port)
                .parse()
                .expect("an address"),
        )
        .await
        .expect("connects");
    let request = format!(
        "GET /post/feed/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
        reader.token
    );
    tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes())
        .await
        .expect("the request is sent");
    assert!(eventually(|| async { app.session_count().await == 2 }).await);

    // The bystander is a client that reads what it is sent, as it comes: each post, in order
    // (its client checks the order). Left unread through the whole burst, its own small
    // mailbox and send buffer (the settings above are the server's, for every session) would
    // make it a slow client too, dropped or not depending on how fast posts are written.
    let text = "x".repeat(9_000);
    for _ in 0..80 {
        let post = app.create_post(&author, &text).await;
        assert_eq!(bystander.next_event().await["postId"], post.to_string());
        if app.session_count().await == 1 {
            break;
        }
    }
    assert!(
        eventually(|| async { app.session_count().await == 1 }).await,
        "the stalled SSE session is released"
    );
    // And it keeps being served after the stalled one is gone.
    let after = app.create_post(&author, "after").await;
    assert_eq!(bystander.next_event().await["postId"], after.to_string());
    drop(stream);
}

#[actix_web::test]
async fn stompjs_and_legacy_stompjs_read_the_feed_over_every_sockjs_transport() {
    let app = TestApp::spawn().await;
    let author = app.user("Author").await;
    let reader = app.user("Reader").await;
    app.follow(&reader, &author).await;
    for (kind, transport) in [
        ("stompjs-sockjs", "websocket"),
        ("stompjs-sockjs", "xhr-streaming"),
        ("stompjs-sockjs", "xhr-polling"),
        ("stompjs-sockjs", "eventsource"),
        ("legacy-sockjs", "websocket"),
        ("legacy-sockjs", "xhr-streaming"),
        ("legacy-sockjs", "xhr-polling"),
    ] {
        let options = json!({ "transport": transport, "tokenIn": "url" });
        let mut client = NodeClient::start(&app, kind, &reader, options).await;
        client.ready().await;
        create_update_delete(&app, &author, &mut client).await;
        client.stop().await;
        println!("{kind} over {transport}: ok");
    }
}

#[actix_web::test]
async fn sockjs_answers_info_refuses_broken_input_and_releases_abandoned_sessions() {
    let app = TestApp::spawn().await;
    let client = awc::Client::new();
    let mut info = client
        .get(app.url("/sockjs/info?t=1"))
        .send()
        .await
        .expect("answered");
    assert_eq!(info.status().as_u16(), 200);
    let info: Value = info.json().await.expect("JSON");
    assert_eq!(info["websocket"], true);
    assert_eq!(info["cookie_needed"], false);
    assert!(info["entropy"].is_u64());

    // A poll opens a session; while a stream is attached, a poll is told another is open.
    let poll = |session: &str| {
        let request = client.post(app.url(&format!("/sockjs/000/{session}/xhr")));
        async move {
            let mut response = request.send().await.expect("answered");
            assert_eq!(response.status().as_u16(), 200);
            let body = response.body().await.expect("a body");
            String::from_utf8_lossy(&body).into_owned()
        }
    };
    assert_eq!(poll("one").await, "o\n");
    let mut stream = client
        .post(app.url("/sockjs/000/one/xhr_streaming"))
        .send()
        .await
        .expect("answered");
    assert_eq!(stream.status().as_u16(), 200);
    assert_eq!(
        poll("one").await,
        "c[2010,\"Another connection still open\"]\n"
    );
    let send = |body: &'static str| {
        client
            .post(app.url("/sockjs/000/one/xhr_send"))
            .send_body(body)
    };
    let status = |body| async move { send(body).await.expect("answered").status().as_u16() };
    assert_eq!(status("[\"broken").await, 400);
    assert_eq!(status("").await, 400);
    let unknown = client
        .post(app.url("/sockjs/000/nobody/xhr_send"))
        .send_body("[]")
        .await
        .expect("answered");
    assert_eq!(unknown.status().as_u16(), 404);
    // Bad STOMP in good SockJS: the stream gets the ERROR frame, then the close frame.
    assert_eq!(status("[\"FLY\\n\\n\\u0000\"]").await, 204);
    let mut text = String::new();
    while !text.contains("c[3000,") {
        let chunk = tokio::time::timeout(DEADLINE, stream.next())
            .await
            .expect("a frame in time")
            .expect("the stream open")
            .expect("a chunk");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.contains("a[\"ERROR\\n"), "{text}");

    // Thousands of ids opened and abandoned: all released after the disconnect delay.
    let opened: Vec<_> = (0..2000)
        .map(|n| {
            let client = client.clone();
            let url = app.url(&format!("/sockjs/000/abandoned{n}/xhr"));
            async move { client.post(url).send().await.map(|r| r.status().as_u16()) }
        })
        .collect();
    let statuses = futures_util::future::join_all(opened).await;
    assert!(
        statuses.iter().all(|s| matches!(s, Ok(200))),
        "every session opens"
    );
    assert!(app.realtime.sockjs.len() >= 1000);
    assert!(
        super::support::eventually_within(Duration::from_secs(30), || async {
            app.realtime.sockjs.is_empty()
        })
        .await,
        "abandoned sessions are released: {} left",
        app.realtime.sockjs.len()
    );
}

#[actix_web::test]
async fn the_user_cap_counts_every_transport_and_logout_closes_them_all() {
    let mut settings = test_settings();
    settings.realtime.max_sessions_per_user = 2;
    let app = TestApp::spawn_with(settings).await;
    let reader = app.user("Reader").await;
    let mut stomp = NodeClient::start(&app, "stompjs-ws", &reader, json!({})).await;
    stomp.ready().await;
    let mut sse = NodeClient::start(&app, "sse", &reader, json!({})).await;
    sse.ready().await;

    // A third session of the user, on any transport, is refused.
    let mut third = NodeClient::start(&app, "stompjs-ws", &reader, json!({})).await;
    assert!(third.error().await.contains("as many feed sessions"));
    third.stop().await;
    let refused = awc::Client::new()
        .get(app.url("/post/feed/events"))
        .bearer_auth(&reader.token)
        .send()
        .await
        .expect("answered");
    assert_eq!(refused.status().as_u16(), 429);

    // Logging out closes both: STOMP with an ERROR, the stream by ending (EventSource then
    // finds its token refused).
    let answer = app.call("POST", "/logout", Some(&reader.token), None).await;
    assert_eq!(answer.status, 200);
    assert!(stomp.error().await.contains("revoked"));
    assert!(sse.error().await.starts_with("sse error"));
    assert!(eventually(|| async { app.session_count().await == 0 }).await);
    stomp.stop().await;
    sse.stop().await;
}
