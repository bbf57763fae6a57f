//! herald through broker outages, on private RabbitMQ nodes started by the test (the shared
//! broker is never touched): a broker stopped under load and started again, and a two-node
//! cluster losing the node herald is connected to. In both, writes keep answering 200, no
//! session is closed, and every post reaches every online follower once, in order (the feed
//! clients check every position they receive). Every test runs in both queue modes, with
//! STOMP (`@stomp/stompjs` over a WebSocket and over SockJS's xhr_streaming) and SSE sessions
//! among the JSON ones.

use std::time::Duration;

use herald::config::QueueMode;
use uuid::Uuid;

use serde_json::json;

use crate::support::{
    assert_event, eventually, test_settings_in, FeedClient, NodeClient, PrivateBroker,
    PrivateCluster, Received, TestApp, TestUser,
};

in_both_modes!(
    a_broker_stopped_under_load_loses_nothing_and_closes_no_session,
    losing_the_cluster_node_herald_uses_moves_it_to_another_and_loses_nothing,
);

/// Posts by `author` at a steady pace until `stop` says so; returns them in order.
async fn keep_posting(
    app: &TestApp,
    author: &TestUser,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<(Uuid, String)> {
    let mut posts = Vec::new();
    while !*stop.borrow() {
        let text = format!("post {}", posts.len());
        // `create_post` asserts the write was answered 200.
        posts.push((app.create_post(author, &text).await, text));
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            _ = stop.changed() => {}
        }
    }
    posts
}

/// The feeds of an audience: JSON sockets, and clients of the other transports.
struct Feeds {
    json: Vec<FeedClient>,
    others: Vec<NodeClient>,
}

/// Every post, in order, once, on every feed; and nothing after.
async fn all_arrive(feeds: &mut Feeds, posts: &[(Uuid, String)], author: &TestUser) {
    for feed in feeds.json.iter_mut() {
        for (post, text) in posts {
            feed.expect_created(*post, author, text).await;
        }
        if let Received::Event(extra) = feed.receive(Duration::from_millis(300)).await {
            panic!("an event after the last post: {extra}");
        }
    }
    for client in feeds.others.iter_mut() {
        for (post, text) in posts {
            let event = client.event().await;
            assert_event(&event, "post.created", *post, author.id, Some(text));
        }
        if let Some(extra) = client.said_within(Duration::from_millis(300)).await {
            panic!("something after the last post: {extra}");
        }
    }
}

/// Every feed gets `post`, created with `text`.
async fn each_gets(feeds: &mut Feeds, post: Uuid, author: &TestUser, text: &str) {
    for feed in &mut feeds.json {
        feed.expect_created(post, author, text).await;
    }
    for client in &mut feeds.others {
        assert_event(
            &client.event().await,
            "post.created",
            post,
            author.id,
            Some(text),
        );
    }
}

/// An author, three followers (two tabs for the first) and their open feeds; the second and
/// third also read over STOMP (a WebSocket, SockJS) and SSE.
async fn audience(app: &TestApp) -> (TestUser, Feeds) {
    let author = app.user("Author").await;
    let mut json = Vec::new();
    let mut readers = Vec::new();
    for i in 0..3 {
        let reader = app.user(&format!("Reader{i}")).await;
        app.follow(&reader, &author).await;
        json.push(app.feed(&reader).await);
        readers.push(reader);
    }
    json.push(app.feed(&readers[0]).await);
    let mut others = Vec::new();
    for (kind, reader, options) in [
        ("stompjs-ws", &readers[1], json!({})),
        (
            "stompjs-sockjs",
            &readers[2],
            json!({ "transport": "xhr-streaming", "tokenIn": "url" }),
        ),
        ("sse", &readers[1], json!({})),
    ] {
        let mut client = NodeClient::start(app, kind, reader, options).await;
        client.ready().await;
        others.push(client);
    }
    // A STOMP client is ready once it has sent SUBSCRIBE, which herald admits a moment later:
    // every session is counted before a test takes the count it must keep.
    let expected = json.len() + others.len();
    assert!(
        eventually(|| async { app.session_count().await == expected }).await,
        "all {expected} sessions registered"
    );
    (author, Feeds { json, others })
}

async fn a_broker_stopped_under_load_loses_nothing_and_closes_no_session(mode: QueueMode) {
    let mut broker = PrivateBroker::start("outage").await;
    let mut settings = test_settings_in(mode);
    settings.amqp.url = broker.url();
    let app = TestApp::spawn_with(settings).await;
    let (author, mut feeds) = audience(&app).await;
    let sessions = app.session_count().await;

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let outage = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        broker.stop_app().await;
        // Down for a while, with writes going on.
        tokio::time::sleep(Duration::from_secs(3)).await;
        broker.start_app().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.send_replace(true);
    };
    let (posts, ()) = tokio::join!(keep_posting(&app, &author, stopped), outage);
    assert!(posts.len() >= 20, "only {} posts were written", posts.len());
    all_arrive(&mut feeds, &posts, &author).await;
    assert_eq!(app.session_count().await, sessions, "no session was closed");
    let stats = app.realtime.stats.snapshot();
    assert_eq!((stats.resets, stats.dropped_slow), (0, 0), "{stats:?}");
}

async fn losing_the_cluster_node_herald_uses_moves_it_to_another_and_loses_nothing(
    mode: QueueMode,
) {
    let mut cluster = PrivateCluster::start("failover", 2).await;
    let mut settings = test_settings_in(mode);
    settings.amqp.urls = cluster.urls(); // the first node first: herald connects there
    let app = TestApp::spawn_with(settings).await;
    let (author, mut feeds) = audience(&app).await;
    let sessions = app.session_count().await;

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let failover = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        cluster.node(0).stop_app().await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        stop.send_replace(true);
    };
    let (posts, ()) = tokio::join!(keep_posting(&app, &author, stopped), failover);
    assert!(posts.len() >= 20, "only {} posts were written", posts.len());
    all_arrive(&mut feeds, &posts, &author).await;
    assert_eq!(app.session_count().await, sessions, "no session was closed");
    // And it keeps serving through the second node once the first is back.
    cluster.node_mut(0).start_app().await;
    let after = app.create_post(&author, "after the failover").await;
    each_gets(&mut feeds, after, &author, "after the failover").await;
}
