//! End to end: real WebSocket clients against running herald servers (one or two instances
//! sharing PostgreSQL and the exchange). Negative checks ("X never got Y") use barriers: a
//! later event that must arrive first, since one author's events reach a queue in order. Every
//! test runs in both queue modes.

use awc::ws::{CloseCode, Message};
use herald::config::QueueMode;
use herald::realtime::probes::{BoundKeys, Queues};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{
    self, amqp, assert_event, is_routed, queue_exists, FeedClient, Received, TestApp,
};

in_both_modes!(
    three_users_see_exactly_their_friends_posts,
    every_session_of_a_user_gets_each_event,
    browsers_can_pass_the_token_in_the_query,
    a_session_on_one_instance_gets_posts_written_through_another,
    a_silent_client_is_dropped_and_its_routing_is_gone,
    the_upgrade_needs_a_valid_token_and_a_websocket_request,
    bad_frames_close_only_the_offending_session,
    shutdown_closes_sessions_with_1001_and_releases_queues,
    sessions_outlive_a_lost_broker_link_and_miss_nothing,
    a_deleted_queue_loses_no_event,
    following_a_celebrity_takes_effect_for_live_sessions,
    an_author_becoming_a_celebrity_loses_and_doubles_no_event,
    a_resume_replays_what_was_missed_then_goes_live,
    a_gap_beyond_the_history_bound_is_a_feed_reset,
    the_feed_page_names_its_position_and_a_subscription_from_it_misses_nothing,
    follow_then_post_at_once_is_always_delivered,
);

async fn three_users_see_exactly_their_friends_posts(mode: QueueMode) {
    let app = TestApp::spawn_in(mode).await;
    let one = app.user("One").await;
    let two = app.user("Two").await;
    let three = app.user("Three").await;
    app.follow(&two, &one).await;
    let mut feed_1 = app.feed(&one).await;
    let mut feed_2 = app.feed(&two).await;
    let mut feed_3 = app.feed(&three).await;

    // Each change is awaited before the next: a change the relay has not published yet when
    // the next one commits goes out as the log then has it (an edit or deletion erases what
    // came before it), which is right but not what this test is about.
    let p1 = app.create_post(&one, "hello from one").await;
    app.create_post(&three, "nobody follows three").await;
    // Two sees one's created, updated, deleted, in order, and nothing of three's in between.
    feed_2.expect_created(p1, &one, "hello from one").await;
    let (status, _) = app
        .put(
            "/post/update",
            Some(&one.token),
            Some(&json!({"id": p1, "text": "edited"})),
        )
        .await;
    assert_eq!(status, 200);
    assert_event(
        &feed_2.next_event().await,
        "post.updated",
        p1,
        one.id,
        Some("edited"),
    );
    let (status, _) = app
        .put(&format!("/post/delete/{p1}"), Some(&one.token), None)
        .await;
    assert_eq!(status, 200);
    assert_event(&feed_2.next_event().await, "post.deleted", p1, one.id, None);

    // After unfollowing, one's posts stop reaching two.
    app.unfollow(&two, &one).await;
    app.create_post(&one, "two no longer hears this").await;
    app.follow(&two, &three).await;
    let barrier = app.create_post(&three, "barrier for two").await;
    feed_2
        .expect_created(barrier, &three, "barrier for two")
        .await;

    // One and three follow nobody until now: their first events are these barriers.
    app.follow(&one, &three).await;
    let barrier_1 = app.create_post(&three, "barrier for one").await;
    feed_1
        .expect_created(barrier_1, &three, "barrier for one")
        .await;
    app.follow(&three, &one).await;
    let barrier_3 = app.create_post(&one, "barrier for three").await;
    feed_3
        .expect_created(barrier_3, &one, "barrier for three")
        .await;
}

async fn every_session_of_a_user_gets_each_event(mode: QueueMode) {
    let app = TestApp::spawn_in(mode).await;
    let author = app.user("Author").await;
    let reader = app.user("Reader").await;
    app.follow(&reader, &author).await;
    let mut tab_1 = app.feed(&reader).await;
    let mut tab_2 = app.feed(&reader).await;
    let post = app.create_post(&author, "to both tabs").await;
    tab_1.expect_created(post, &author, "to both tabs").await;
    tab_2.expect_created(post, &author, "to both tabs").await;
}

async fn browsers_can_pass_the_token_in_the_query(mode: QueueMode) {
    let app = TestApp::spawn_in(mode).await;
    let author = app.user("Author").await;
    let reader = app.user("Reader").await;
    app.follow(&reader, &author).await;
    let url = format!(
        "ws://127.0.0.1:{}/post/feed/posted?token={}",
        app.port, reader.token
    );
    let (_, framed) = awc::Client::new()
        .ws(url)
        .connect()
        .await
        .expect("connects");
    let mut feed = support::FeedClient::answering(framed);
    let post = app.create_post(&author, "via query token").await;
    feed.expect_created(post, &author, "via query token").await;
}

async fn a_session_on_one_instance_gets_posts_written_through_another(mode: QueueMode) {
    let a = TestApp::spawn_in(mode).await;
    let b = a.sibling().await;
    let author = a.user("Author").await;
    let reader = a.user("Reader").await;
    a.follow(&reader, &author).await;
    let mut feed_on_a = a.feed(&reader).await;
    let mut feed_on_b = b.feed(&reader).await;
    let post = b.create_post(&author, "written through b").await;
    feed_on_a
        .expect_created(post, &author, "written through b")
        .await;
    feed_on_b
        .expect_created(post, &author, "written through b")
        .await;
    b.stop().await;
    let post = a.create_post(&author, "b is gone").await;
    feed_on_a.expect_created(post, &author, "b is gone").await;
}

async fn a_silent_client_is_dropped_and_its_routing_is_gone(mode: QueueMode) {
    // The one test of the client timeout: a short one (the default is far longer than any test).
    let mut settings = support::test_settings_in(mode);
    settings.realtime.ping_interval_secs = 1;
    settings.realtime.client_timeout_secs = 3;
    settings.realtime.write_timeout_secs = 3;
    let timeout = settings.realtime.client_timeout();
    let interval = settings.realtime.ping_interval();
    let app = TestApp::spawn_with(settings).await;
    let conn = amqp(&app.settings).await;
    let exchange = app.settings.realtime.exchange.clone();
    let quiet = app.user("Quiet").await;
    let lively = app.user("Lively").await;
    let author = app.user("Author").await;
    app.follow(&lively, &author).await;

    let mut silent = app.raw_feed(&quiet).await;
    let queues = app
        .realtime
        .broker
        .send(Queues)
        .await
        .expect("broker answers");
    assert_eq!(queues.len(), 1);
    let queue = queues[0].clone();
    assert!(queue_exists(&conn, &queue).await);
    // Stuff the silent client's socket until herald can no longer write to it, so its
    // forwarder is stuck handing over a delivery when the watchdog gives up on it.
    let bulky = json!({ "type": "post.created", "postText": "z".repeat(60_000) });
    for _ in 0..300 {
        support::publish_raw(&conn, &exchange, &format!("user.{}", quiet.id), &bulky).await;
    }
    let mut alive = app.feed(&lively).await;

    // The lively client answers pings for longer than the timeout (and two more watchdog
    // rounds) and stays connected; the silent one (never read from) is dropped meanwhile.
    assert!(matches!(
        alive.receive(timeout + 2 * interval).await,
        Received::TimedOut
    ));
    assert!(
        support::eventually(|| async {
            support::bound(&exchange, &format!("user.{}", quiet.id)).await == 0
        })
        .await
    );
    // Its own queue is deleted; a node's queue stays for the others.
    assert_eq!(queue_exists(&conn, &queue).await, mode == QueueMode::Node);
    assert!(!is_routed(&conn, &exchange, &format!("user.{}", quiet.id)).await);
    let post = app.create_post(&author, "still here").await;
    alive.expect_created(post, &author, "still here").await;
    assert_eq!(app.session_count().await, 1);

    // Its socket was stuffed, so it is also a client that stopped reading: its connection
    // ends with 1008 if the close frame could still be written, else with a reset (see
    // `write_watch`); either way it ends.
    if let Some(reason) = support::raw_close_reason(&mut silent).await {
        assert_eq!(reason.code, CloseCode::Policy);
    }
}

async fn the_upgrade_needs_a_valid_token_and_a_websocket_request(mode: QueueMode) {
    let app = TestApp::spawn_in(mode).await;
    let user = app.user("User").await;
    for path in [
        "/post/feed/posted".to_owned(),
        "/post/feed/posted?token=not-a-token".to_owned(),
        format!("/post/feed/posted?token={}", "a".repeat(64)),
    ] {
        let (status, body) = app.get(&path, None).await;
        assert_eq!(status, 401, "{path}: {body}");
        assert_eq!(body["code"], 401);
    }
    let error = awc::Client::new()
        .ws(format!("ws://127.0.0.1:{}/post/feed/posted", app.port))
        .bearer_auth("f".repeat(64))
        .connect()
        .await
        .err()
        .expect("refused");
    assert!(
        error.to_string().contains("401") || format!("{error:?}").contains("401"),
        "{error:?}"
    );
    // A valid token on a plain GET is not an upgrade.
    let (status, body) = app.get("/post/feed/posted", Some(&user.token)).await;
    assert_eq!(status, 400, "{body}");
    // Refused upgrades leave no queue or binding behind.
    let broker = &app.realtime.broker;
    match mode {
        QueueMode::Session => assert!(broker.send(Queues).await.expect("broker").is_empty()),
        QueueMode::Node => assert_eq!(broker.send(BoundKeys).await.expect("broker"), 0),
    }
}

async fn bad_frames_close_only_the_offending_session(mode: QueueMode) {
    let mut settings = support::test_settings_in(mode);
    settings.realtime.max_frame_bytes = 1024;
    let app = TestApp::spawn_with(settings).await;
    let author = app.user("Author").await;
    let reader = app.user("Reader").await;
    let vandal = app.user("Vandal").await;
    app.follow(&reader, &author).await;
    let mut good = app.feed(&reader).await;

    // Client pings are answered with the same payload.
    let mut chatty = app.feed(&vandal).await;
    chatty
        .send(Message::Ping(b"are you there".to_vec().into()))
        .await;
    match chatty.next_frame().await {
        awc::ws::Frame::Pong(payload) => assert_eq!(&payload[..], b"are you there"),
        other => panic!("expected a pong, got {other:?}"),
    }

    // Client data frames are ignored; the session stays.
    chatty.send(Message::Text("hello?".into())).await;
    chatty.send(Message::Binary(vec![0u8; 16].into())).await;
    app.follow(&vandal, &author).await;
    let post = app.create_post(&author, "after chatter").await;
    chatty.expect_created(post, &author, "after chatter").await;
    good.expect_created(post, &author, "after chatter").await;

    // An oversized frame closes that session with 1009.
    chatty.send(Message::Text("x".repeat(4096).into())).await;
    let reason = chatty.close_reason().await.expect("close reason");
    assert_eq!(reason.code, CloseCode::Size);

    // Bytes that are not WebSocket framing close that session with 1002.
    let code = raw_garbage_close_code(app.port, &vandal.token).await;
    assert_eq!(code, 1002);

    // Everyone else is still served.
    let post = app.create_post(&author, "still fine").await;
    good.expect_created(post, &author, "still fine").await;
    let (status, _) = app.get("/health", None).await;
    assert_eq!(status, 200);
    assert!(support::eventually(|| async { app.session_count().await == 1 }).await);
}

/// Upgrades by hand over TCP, sends a frame with a reserved opcode, and returns the close code
/// the server answers with.
async fn raw_garbage_close_code(port: u16, token: &str) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("tcp");
    let request = format!(
        "GET /post/feed/posted?token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut received = Vec::new();
    let mut buf = [0u8; 1024];
    let header_end = loop {
        let n = tokio::time::timeout(support::DEADLINE, stream.read(&mut buf))
            .await
            .expect("handshake in time")
            .expect("read");
        assert!(n > 0, "connection closed during the handshake");
        received.extend_from_slice(&buf[..n]);
        if let Some(pos) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
    };
    assert!(
        received.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&received)
    );
    received.drain(..header_end);
    // FIN + reserved opcode 0xB, masked, empty payload.
    stream
        .write_all(&[0x8B, 0x80, 1, 2, 3, 4])
        .await
        .expect("write");
    loop {
        // Frames from the server are unmasked: [0x88, len, code_hi, code_lo, ...] is a close.
        if let Some(pos) = received.iter().position(|b| *b == 0x88) {
            if received.len() >= pos + 4 {
                return u16::from_be_bytes([received[pos + 2], received[pos + 3]]);
            }
        }
        let n = tokio::time::timeout(support::DEADLINE, stream.read(&mut buf))
            .await
            .expect("close in time")
            .expect("read");
        assert!(n > 0, "closed without a close frame");
        received.extend_from_slice(&buf[..n]);
    }
}

async fn shutdown_closes_sessions_with_1001_and_releases_queues(mode: QueueMode) {
    let app = TestApp::spawn_in(mode).await;
    let conn = amqp(&app.settings).await;
    let user = app.user("Leaving").await;
    let mut feed = app.feed(&user).await;
    let queues = app.realtime.broker.send(Queues).await.expect("broker");
    assert_eq!(queues.len(), 1);
    app.stop().await;
    let reason = feed.close_reason().await.expect("close reason");
    assert_eq!(reason.code, CloseCode::Away);
    assert!(support::eventually(|| async { !queue_exists(&conn, &queues[0]).await }).await);
}

async fn sessions_outlive_a_lost_broker_link_and_miss_nothing(mode: QueueMode) {
    let app = TestApp::spawn_in(mode).await;
    let (author, _reader, mut feed) = app.author_and_follower().await;

    // First a channel-level failure: the exchange vanishes, so the next bind or publish fails
    // and the broker closes herald's channel. herald rebuilds its link (and the exchange).
    let conn = amqp(&app.settings).await;
    let exchange = app.settings.realtime.exchange.clone();
    conn.create_channel()
        .await
        .expect("channel")
        .exchange_delete(exchange.as_str().into(), Default::default())
        .await
        .expect("exchange deleted");
    let text = "after the channel error";
    let post = app.create_post(&author, text).await;
    feed.expect_created(post, &author, text).await;

    // Then the whole connection, twice, with writes while it is down: the same feed gets
    // everything, in order (the client checks positions), and is never closed.
    for round in 0..2 {
        let closed = support::force_close_herald_connections(&exchange).await;
        assert!(closed >= 1, "no herald connection found on the broker");
        let mut posts = Vec::new();
        for i in 0..3 {
            let text = format!("outage {round}, post {i}");
            posts.push((app.create_post(&author, &text).await, text));
        }
        for (post, text) in &posts {
            feed.expect_created(*post, &author, text).await;
        }
    }
    assert!(support::eventually(|| async { app.get("/health", None).await.0 == 200 }).await);
    assert_eq!(app.realtime.stats.snapshot().resets, 0);
}

async fn a_deleted_queue_loses_no_event(mode: QueueMode) {
    let app = TestApp::spawn_in(mode).await;
    let (author, reader, mut feed) = app.author_and_follower().await;
    let first = app.create_post(&author, "first").await;
    feed.expect_created(first, &author, "first").await;
    let queues = app.realtime.broker.send(Queues).await.expect("broker");
    support::delete_queue(&queues[0]).await;
    let second = app.create_post(&author, "second").await;
    match mode {
        // The node queue: herald rebuilds its link, and the session stays.
        QueueMode::Node => feed.expect_created(second, &author, "second").await,
        // A session's own queue: that session is told to reconnect, and resumes.
        QueueMode::Session => {
            let since = feed.last_seq().expect("a position");
            let reason = feed.close_reason().await.expect("close reason");
            assert_eq!(reason.code, CloseCode::Again);
            // Published (to nobody) before the client comes back: these come from the log.
            app.relay_idle().await;
            let mut resumed = app.feed_since(&reader, since).await;
            resumed.expect_created(second, &author, "second").await;
        }
    }
}

/// Settings where `threshold` followers make a celebrity.
fn celebrity_settings(mode: QueueMode, threshold: i64) -> herald::config::Settings {
    let mut settings = support::test_settings_in(mode);
    settings.realtime.celebrity_followers = threshold;
    settings
}

async fn following_a_celebrity_takes_effect_for_live_sessions(mode: QueueMode) {
    let app = TestApp::spawn_with(celebrity_settings(mode, 2)).await;
    let exchange = app.settings.realtime.exchange.clone();
    let star = app.user("Star").await;
    let (fan_1, fan_2) = (app.user("Fan1").await, app.user("Fan2").await);
    app.follow(&fan_1, &star).await;
    app.follow(&fan_2, &star).await; // the second follower makes a celebrity
    let newcomer = app.user("Newcomer").await;
    let friend = app.user("Friend").await;
    app.follow(&newcomer, &friend).await;
    let mut feed = app.feed(&newcomer).await;
    app.relay_idle().await;

    // Following: the live session starts getting the star's single publishes, from the
    // very next post (no waiting for the binding).
    app.follow(&newcomer, &star).await;
    let post = app.create_post(&star, "welcome").await;
    feed.expect_created(post, &star, "welcome").await;
    // Node mode: the star's shard key, bound once for the link's life; session mode: its own.
    let key = support::celebrity_key(&app.settings, star.id);
    let sharded = key != format!("author.{}", star.id);
    assert_eq!(support::bound(&exchange, &key).await, 1);
    app.relay_idle().await;
    let published = app.realtime.stats.snapshot().published;
    let post = app.create_post(&star, "once").await;
    feed.expect_created(post, &star, "once").await;
    let barrier = app.create_post(&friend, "barrier").await;
    feed.expect_created(barrier, &friend, "barrier").await;
    app.relay_idle().await;
    assert_eq!(
        app.realtime.stats.snapshot().published,
        published + 2,
        "the star's post went out once, the friend's once"
    );

    // Unfollowing: the events go from the very next post, and the binding with them (no local
    // session needs it), unless it is a shard, which stays whoever follows what.
    app.unfollow(&newcomer, &star).await;
    app.create_post(&star, "you left").await;
    let barrier = app.create_post(&friend, "second barrier").await;
    feed.expect_created(barrier, &friend, "second barrier")
        .await;
    let left = usize::from(sharded);
    assert!(support::eventually(|| async { support::bound(&exchange, &key).await == left }).await);
}

/// The messages both instances published.
fn published(apps: &[&TestApp]) -> u64 {
    apps.iter()
        .map(|app| app.realtime.stats.snapshot().published)
        .sum()
}

async fn an_author_becoming_a_celebrity_loses_and_doubles_no_event(mode: QueueMode) {
    let a = TestApp::spawn_with(celebrity_settings(mode, 3)).await;
    let b = a.sibling().await;
    let star = a.user("Star").await;
    let (fan_1, fan_2, fan_3) = (
        a.user("Fan1").await,
        a.user("Fan2").await,
        a.user("Fan3").await,
    );
    let other = a.user("Other").await;
    for fan in [&fan_1, &fan_2, &fan_3] {
        a.follow(fan, &other).await;
    }
    a.follow(&fan_1, &star).await;
    a.follow(&fan_2, &star).await;
    // Fans online on both instances while the star crosses the threshold.
    let mut feeds = [
        a.feed(&fan_1).await,
        b.feed(&fan_2).await,
        a.feed(&fan_3).await,
    ];
    let first = a.create_post(&star, "before").await;
    for feed in &mut feeds[..2] {
        feed.expect_created(first, &star, "before").await;
    }

    // The third follow (through the other instance) switches the star; the star keeps
    // posting through the switch, through both instances.
    let posting = async {
        let mut posts: Vec<(uuid::Uuid, String)> = Vec::new();
        for i in 0..30 {
            let text = format!("post {i}");
            let app = if i % 2 == 0 { &a } else { &b };
            posts.push((app.create_post(&star, &text).await, text));
        }
        posts
    };
    let (posts, ()) = tokio::join!(posting, b.follow(&fan_3, &star));
    // Every fan gets every post once, in order: nothing lost, nothing twice. The third fan
    // was not following for the posts before its follow: it gets those after it.
    for feed in &mut feeds[..2] {
        for (post, text) in &posts {
            feed.expect_created(*post, &star, text).await;
        }
    }
    // Now the star is published once. (Other, with three followers, is a celebrity too.)
    a.relay_idle().await;
    let before = published(&[&a, &b]);
    let last = a.create_post(&star, "last").await;
    let barrier = a.create_post(&other, "barrier").await;
    for feed in &mut feeds {
        loop {
            let event = feed.next_event().await;
            if event["postId"] == last.to_string() {
                break;
            }
            assert_eq!(event["author_user_id"], star.id.to_string(), "{event}");
        }
        feed.expect_created(barrier, &other, "barrier").await;
    }
    a.relay_idle().await;
    assert_eq!(
        published(&[&a, &b]),
        before + 2,
        "one message for the star's post, one for the barrier"
    );
}

async fn a_resume_replays_what_was_missed_then_goes_live(mode: QueueMode) {
    let app = TestApp::spawn_in(mode).await;
    let (author, reader, mut feed) = app.author_and_follower().await;
    let first = app.create_post(&author, "seen").await;
    feed.expect_created(first, &author, "seen").await;
    let since = feed.last_seq().expect("a position");
    // The session's first fill is in (it held `first` until then), but it may have read `first`
    // from the log already, when the relay numbered it before the fill ran: count from here.
    let replayed_before = app.realtime.stats.snapshot().replayed;
    drop(feed);

    // Away: a post, another, an edit and a delete.
    let second = app.create_post(&author, "missed").await;
    let third = app.create_post(&author, "missed too").await;
    let edited = json!({ "id": second, "text": "missed, edited" });
    assert_eq!(
        app.put("/post/update", Some(&author.token), Some(&edited))
            .await
            .0,
        200
    );
    let deleted = app
        .put(&format!("/post/delete/{third}"), Some(&author.token), None)
        .await;
    assert_eq!(deleted.0, 200);

    // Published (to nobody) before the client comes back: these come from the log.
    app.relay_idle().await;
    let mut resumed = app.feed_since(&reader, since).await;
    // Replays carry what stands now: the edited text, and the deletion in place of the
    // deleted post's creation (the log erases what authors took back).
    resumed
        .expect_created(second, &author, "missed, edited")
        .await;
    let event = resumed.next_event().await;
    assert_event(&event, "post.deleted", third, author.id, None);
    let event = resumed.next_event().await;
    assert_event(
        &event,
        "post.updated",
        second,
        author.id,
        Some("missed, edited"),
    );
    let event = resumed.next_event().await;
    assert_event(&event, "post.deleted", third, author.id, None);
    let live = app.create_post(&author, "live again").await;
    resumed.expect_created(live, &author, "live again").await;

    // The same through `Last-Event-ID`, from the last position seen: only what came after.
    let last = resumed.last_seq().expect("a position");
    drop(resumed);
    let after = app.create_post(&author, "after the header").await;
    app.relay_idle().await;
    let url = format!("ws://127.0.0.1:{}/post/feed/posted", app.port);
    let (_, framed) = awc::Client::new()
        .ws(url)
        .bearer_auth(&reader.token)
        .header("Last-Event-ID", last.to_string())
        .connect()
        .await
        .expect("websocket connects");
    let mut by_header = FeedClient::answering(framed);
    by_header
        .expect_created(after, &author, "after the header")
        .await;
    let stats = app.realtime.stats.snapshot();
    assert_eq!((stats.resumes, stats.resets), (2, 0));
    assert_eq!(stats.replayed - replayed_before, 5, "{stats:?}");
}

async fn a_gap_beyond_the_history_bound_is_a_feed_reset(mode: QueueMode) {
    let mut settings = support::test_settings_in(mode);
    settings.realtime.history_max_events = 3;
    let app = TestApp::spawn_with(settings).await;
    let author = app.user("Author").await;
    let reader = app.user("Reader").await;
    app.follow(&reader, &author).await;
    for i in 0..5 {
        app.create_post(&author, &format!("post {i}")).await;
    }
    app.relay_idle().await;
    let head = app.relay_state().await.numbered_seq;
    let mut feed = app.feed_since(&reader, 0).await;
    let reset = feed.next_event().await;
    assert_eq!(reset, json!({ "type": "feed.reset", "seq": head }));
    let live = app.create_post(&author, "after the reset").await;
    feed.expect_created(live, &author, "after the reset").await;
    assert_eq!(app.realtime.stats.snapshot().resets, 1);

    // A position never given out resets too; one that is not a number is refused.
    let mut future = app.feed_since(&reader, head + 1_000).await;
    assert_eq!(future.next_event().await["type"], "feed.reset");
    let url = format!(
        "ws://127.0.0.1:{}/post/feed/posted?since=yesterday",
        app.port
    );
    let refused = awc::Client::new()
        .ws(url)
        .bearer_auth(&reader.token)
        .connect()
        .await;
    match refused {
        Err(awc::error::WsClientError::InvalidResponseStatus(status)) => {
            assert_eq!(status.as_u16(), 400)
        }
        other => panic!("expected 400, got {:?}", other.map(|(r, _)| r.status())),
    }
}

async fn the_feed_page_names_its_position_and_a_subscription_from_it_misses_nothing(
    mode: QueueMode,
) {
    let app = TestApp::spawn_in(mode).await;
    let author = app.user("Author").await;
    let reader = app.user("Reader").await;
    app.follow(&reader, &author).await;
    let old = app.create_post(&author, "on the page").await;
    app.relay_idle().await;
    let page = app
        .call("GET", "/post/feed", Some(&reader.token), None)
        .await;
    assert_eq!(page.status, 200);
    assert_eq!(page.body[0]["id"], old.to_string());
    let position: i64 = page
        .headers
        .get("x-feed-seq")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .expect("an X-Feed-Seq header");
    assert_eq!(position, app.relay_state().await.numbered_seq);
    // Written between the page and the subscription: it must still arrive.
    let between = app.create_post(&author, "between").await;
    let mut feed = app.feed_since(&reader, position).await;
    feed.expect_created(between, &author, "between").await;
}

async fn follow_then_post_at_once_is_always_delivered(mode: QueueMode) {
    for threshold in [1, 1000] {
        let app = TestApp::spawn_with(celebrity_settings(mode, threshold)).await;
        let reader = app.user("Reader").await;
        let mut feed = app.feed(&reader).await;
        for i in 0..8 {
            let author = app.user(&format!("Author{i}")).await;
            app.follow(&reader, &author).await;
            let text = format!("right after the follow, {i}");
            let post = app.create_post(&author, &text).await;
            feed.expect_created(post, &author, &text).await;
        }
    }
}

#[actix_web::test]
async fn with_several_broker_urls_herald_serves_through_one_that_answers() {
    // `amqp.urls` as for a cluster whose first node is down: nothing listens on its port.
    let mut settings = support::test_settings();
    let down = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port");
    let mut dead = url::Url::parse(&settings.amqp.url).expect("url");
    dead.set_port(Some(down)).expect("port");
    settings.amqp.urls = vec![dead.to_string(), settings.amqp.url.clone()];
    let app = TestApp::spawn_with(settings).await;
    let (author, _reader, mut feed) = app.author_and_follower().await;
    let post = app
        .create_post(&author, "through the node that answers")
        .await;
    feed.expect_created(post, &author, "through the node that answers")
        .await;
}
