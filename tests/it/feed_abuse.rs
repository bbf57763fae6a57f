//! Abuse of the feed, and what users take back: the caps on open sessions (per user, per
//! address, per instance), erasure of edited and deleted text from the feed log (no replay
//! carries it), and tokens that end: `POST /logout` and expiry close their sessions with 4001,
//! on every instance.

use awc::error::WsClientError;
use awc::ws::CloseCode;
use herald::config::Settings;
use serde_json::Value;

use crate::support::{test_settings, Answer, FeedClient, Received, TestApp, TestUser, DEADLINE};

/// Tries to open `user`'s feed socket from `address` (through the trusted proxy 127.0.0.1);
/// the HTTP status of a refused upgrade, or the open client.
async fn try_feed(app: &TestApp, token: &str, address: &str) -> Result<FeedClient, u16> {
    let url = format!("ws://127.0.0.1:{}/post/feed/posted", app.port);
    match awc::Client::new()
        .ws(url)
        .bearer_auth(token)
        .set_header("x-forwarded-for", address)
        .connect()
        .await
    {
        Ok((_, framed)) => Ok(FeedClient::answering(framed)),
        Err(WsClientError::InvalidResponseStatus(status)) => Err(status.as_u16()),
        Err(other) => panic!("upgrade failed oddly: {other}"),
    }
}

fn capped(per_user: usize, per_address: usize, total: usize) -> Settings {
    let mut settings = test_settings();
    settings.http.trusted_proxies = vec!["127.0.0.1".into()];
    settings.realtime.max_sessions_per_user = per_user;
    settings.realtime.max_sessions_per_address = per_address;
    settings.realtime.max_sessions = total;
    settings
}

#[actix_web::test]
async fn open_sessions_are_capped_per_user_per_address_and_per_instance() {
    let app = TestApp::spawn_with(capped(3, 4, 6)).await;
    let (ann, bob, cy) = (
        app.user("Ann").await,
        app.user("Bob").await,
        app.user("Cy").await,
    );

    let mut held = Vec::new();
    for n in 0..3 {
        held.push(
            try_feed(&app, &ann.token, &format!("198.51.100.{n}"))
                .await
                .expect("ann"),
        );
    }
    assert_eq!(
        try_feed(&app, &ann.token, "198.51.100.9").await.err(),
        Some(429),
        "a fourth session of one user"
    );
    // One address: four sessions of anyone, then 429.
    held.push(
        try_feed(&app, &bob.token, "203.0.113.1")
            .await
            .expect("bob 1"),
    );
    held.push(
        try_feed(&app, &bob.token, "203.0.113.1")
            .await
            .expect("bob 2"),
    );
    held.push(
        try_feed(&app, &cy.token, "203.0.113.1")
            .await
            .expect("cy 1"),
    );
    // Six sessions in all: the instance is full, whoever asks.
    assert_eq!(
        try_feed(&app, &cy.token, "192.0.2.50").await.err(),
        Some(503),
        "the instance's cap"
    );
    // A session that ends gives its place back.
    let mut first = held.remove(0);
    first
        .send(awc::ws::Message::Close(Some(CloseCode::Normal.into())))
        .await;
    let _ = first.close_reason().await;
    assert!(
        app.eventually(|| async { try_feed(&app, &ann.token, "198.51.100.20").await.is_ok() })
            .await,
        "a place freed by a closed session"
    );
}

/// The per-address cap counts the TCP peer when no proxy is trusted: forged forwarding changes
/// nothing.
#[actix_web::test]
async fn the_session_cap_per_address_counts_the_real_peer() {
    let mut settings = capped(100, 2, 100);
    settings.http.trusted_proxies.clear();
    let app = TestApp::spawn_with(settings).await;
    let ann = app.user("Ann").await;
    let _one = try_feed(&app, &ann.token, "198.51.100.1")
        .await
        .expect("one");
    let _two = try_feed(&app, &ann.token, "198.51.100.2")
        .await
        .expect("two");
    assert_eq!(
        try_feed(&app, &ann.token, "198.51.100.3").await.err(),
        Some(429)
    );
}

/// Every frame a resume replays, as text, in order.
async fn replayed(feed: &mut FeedClient, count: usize) -> Vec<Value> {
    let mut frames = Vec::new();
    for _ in 0..count {
        frames.push(feed.next_event().await);
    }
    frames
}

#[actix_web::test]
async fn edits_and_deletions_erase_earlier_text_from_the_log() {
    let app = TestApp::spawn().await;
    let author = app.user("Author").await;
    let kept = app.create_post(&author, "first draft, regretted").await;
    let (status, body) = app
        .put(
            "/post/update",
            Some(&author.token),
            Some(&serde_json::json!({"id": kept, "text": "as it stands now"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let gone = app.create_post(&author, "said in anger").await;
    let (status, body) = app
        .put(&format!("/post/delete/{gone}"), Some(&author.token), None)
        .await;
    assert_eq!(status, 200, "{body}");
    app.relay_idle().await;

    // A new follower resumes from the start of the log: four events, none with taken-back text.
    let reader = app.user("Reader").await;
    app.follow(&reader, &author).await;
    let mut feed = app.feed_since(&reader, 0).await;
    let frames = replayed(&mut feed, 4).await;
    let text: String = frames.iter().map(Value::to_string).collect();
    assert!(!text.contains("regretted"), "{text}");
    assert!(!text.contains("anger"), "{text}");
    let kinds: Vec<(&str, &str)> = frames
        .iter()
        .map(|f| {
            (
                f["type"].as_str().unwrap_or(""),
                f["postText"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("post.created", "as it stands now"),
            ("post.updated", "as it stands now"),
            ("post.deleted", "-"),
            ("post.deleted", "-"),
        ]
    );
    for frame in &frames[2..] {
        assert_eq!(frame["postId"], gone.to_string());
    }

    // No reader of the log (gap fill, reset, anything) can find it either: it is gone.
    use diesel::sql_types::BigInt;
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let mut conn = app.pool.get().await.expect("connection");
    let left: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM feed_events
          WHERE post_text LIKE '%regretted%' OR post_text LIKE '%anger%'",
    )
    .get_result(&mut conn)
    .await
    .expect("count");
    assert_eq!(left.n, 0);
}

/// A gap too long to replay ends in `feed.reset`, which carries no text at all; the page the
/// client then reloads holds only what stands.
#[actix_web::test]
async fn a_reset_after_erasure_reloads_only_what_stands() {
    let mut settings = test_settings();
    settings.realtime.history_max_events = 1;
    let app = TestApp::spawn_with(settings).await;
    let author = app.user("Author").await;
    let reader = app.user("Reader").await;
    app.follow(&reader, &author).await;
    let post = app.create_post(&author, "gone soon").await;
    let kept = app.create_post(&author, "stays").await;
    let (status, _) = app
        .put(&format!("/post/delete/{post}"), Some(&author.token), None)
        .await;
    assert_eq!(status, 200);
    app.relay_idle().await;
    let mut feed = app.feed_since(&reader, 0).await;
    let first = feed.next_event().await;
    assert_eq!(first["type"], "feed.reset", "{first}");
    assert!(!first.to_string().contains("gone soon"));
    let (status, page) = app.get("/post/feed?limit=10", Some(&reader.token)).await;
    assert_eq!(status, 200);
    let ids: Vec<String> = page
        .as_array()
        .map(|posts| posts.iter().map(|p| p["id"].to_string()).collect())
        .unwrap_or_default();
    assert_eq!(ids, vec![format!("\"{kept}\"")]);
}

async fn close_code(feed: &mut FeedClient) -> u16 {
    feed.close_reason()
        .await
        .map(|reason| reason.code.into())
        .unwrap_or(0)
}

#[actix_web::test]
async fn logout_revokes_the_token_everywhere_and_closes_its_sessions_with_4001() {
    let app = TestApp::spawn().await;
    let other = app.sibling().await;
    let author = app.user("Author").await;
    let reader = app.user("Reader").await;
    app.follow(&reader, &author).await;
    let second = TestUser {
        id: reader.id,
        token: app.login(reader.id).await,
    };
    let mut here = app.feed(&reader).await;
    let mut there = other.feed(&reader).await;
    let mut kept = app.feed(&second).await;
    app.follow(&author, &reader).await;
    let mut watching = app.feed(&author).await;

    let Answer { status, body, .. } = app.call("POST", "/logout", Some(&reader.token), None).await;
    assert_eq!(status, 200, "{body}");

    assert_eq!(close_code(&mut here).await, 4001);
    assert_eq!(
        close_code(&mut there).await,
        4001,
        "on the other instance too"
    );
    // The token is dead everywhere; the user's other token is not.
    let (status, _) = other.get("/post/feed", Some(&reader.token)).await;
    assert_eq!(status, 401);
    let answer = app.call("POST", "/logout", Some(&reader.token), None).await;
    assert_eq!(answer.status, 401);
    // A write checks the token in its own statement: refused here and there, nothing written.
    for instance in [&app, &other] {
        let (status, body) = instance
            .post(
                "/post/create",
                Some(&reader.token),
                &serde_json::json!({"text": "after logout"}),
            )
            .await;
        assert_eq!(status, 401, "{body}");
    }
    // The reader's follower sees the other token's next post first: the refused ones never were.
    let later = app.create_post(&second, "from the other tab").await;
    watching
        .expect_created(later, &second, "from the other tab")
        .await;
    let post = app.create_post(&author, "for the other tab").await;
    kept.expect_created(post, &author, "for the other tab")
        .await;
    let (status, _) = app.get("/post/feed", Some(&second.token)).await;
    assert_eq!(status, 200);
}

#[actix_web::test]
async fn a_session_whose_token_expires_is_closed_with_4001() {
    let mut settings = test_settings();
    settings.auth.token_ttl_secs = 2;
    let app = TestApp::spawn_with(settings).await;
    let reader = app.user("Reader").await;
    let mut feed = app.feed(&reader).await;
    // Nothing before the expiry, then the close.
    let code = loop {
        match feed.receive(DEADLINE).await {
            Received::Event(_) => continue,
            Received::Closed(reason) => break reason.map(|r| u16::from(r.code)).unwrap_or(0),
            Received::TimedOut => panic!("the session outlived its token by {DEADLINE:?}"),
        }
    };
    assert_eq!(code, 4001);
    let (status, _) = app.get("/post/feed", Some(&reader.token)).await;
    assert_eq!(status, 401);
}
