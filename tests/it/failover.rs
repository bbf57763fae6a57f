//! herald through a PostgreSQL failover, on a private primary and streaming standby started by
//! the test (the shared server is never touched): the primary stopped or killed, the standby
//! promoted, herald on the multi-host URL (or on one address a forwarder moves).
//!
//! - Synchronous replication: every post answered 200 reaches every session once, in order; no
//!   session is closed or reset; a post retried with its `Idempotency-Key` through the failover
//!   is written once.
//! - Asynchronous replication with commits the standby never got: no session receives a
//!   position twice or out of order (the feed clients check every position); each that saw a
//!   lost event gets `feed.reset` (even with no event after the failover) and then the new
//!   primary's events, one that saw nothing lost continues without a reset; a resume from the
//!   lost history gets `feed.reset`, one from before it gets the new events.
//!
//! Each test prints what the failover cost: seconds until writes succeeded again, and resets.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use serde_json::Value;
use uuid::Uuid;

use crate::idempotency::{count_posts, post_counting, post_retrying};
use crate::support::forwarder::Forwarder;
use crate::support::pg_cluster::{PgCluster, Replication};
use crate::support::{test_settings, FeedClient, Received, TestApp, TestUser};

/// How long anything may take across a failover on a busy two-core machine.
const FAILOVER_DEADLINE: Duration = Duration::from_secs(120);

/// Sessions watching the author.
const READERS: usize = 4;

/// Writers posting back to back through the crash.
const CRASH_WRITERS: usize = 4;

#[derive(Clone, Copy, Debug)]
enum Stop {
    Fast,
    Kill,
}

#[derive(Clone, Copy, Debug)]
enum Front {
    /// herald on `postgres://…@primary,standby/…?target_session_attrs=read-write`.
    MultiHost,
    /// herald on one address a `socat` forwarder moves from the primary to the standby.
    Forwarder,
}

#[actix_web::test]
async fn synchronous_replication_fast_stop_loses_nothing_and_resets_no_one() {
    synchronous_failover(Stop::Fast).await;
}

#[actix_web::test]
async fn synchronous_replication_killed_primary_loses_nothing_and_resets_no_one() {
    synchronous_failover(Stop::Kill).await;
}

#[actix_web::test]
async fn lost_commits_behind_a_multi_host_url_reset_sessions_and_reuse_no_position() {
    lost_commits(Front::MultiHost).await;
}

#[actix_web::test]
async fn lost_commits_behind_a_moved_forwarder_reset_sessions_and_reuse_no_position() {
    lost_commits(Front::Forwarder).await;
}

#[actix_web::test]
async fn writes_cut_off_by_a_crash_answer_503_and_their_retries_write_once() {
    let mut cluster = PgCluster::primary_only("crash").await;
    let mut settings = test_settings();
    settings.database.url = cluster.primary.url(&database_name(&settings.database.url));
    let app = TestApp::spawn_with(settings).await;
    let (author, mut feeds) = audience(&app).await;

    // Writers posting back to back (so some are mid-transaction when the postmaster dies), each
    // post retried with its key until 200 (a 500 fails the test); the postmaster is killed
    // mid-way and the same server started again.
    let posted: RefCell<Vec<(Uuid, String)>> = RefCell::new(Vec::new());
    let unavailable = Cell::new(0);
    let done = Cell::new(false);
    let writer = |w: usize| {
        let (posted, unavailable, done, app, author) =
            (&posted, &unavailable, &done, &app, &author);
        async move {
            let mut n = 0;
            while !done.get() {
                let text = format!("post {w}.{n}");
                let key = format!("crash-{w}-{n}");
                let id = post_counting(app, author, &text, &key, unavailable).await;
                posted.borrow_mut().push((id, text));
                n += 1;
            }
        }
    };
    let writers = futures_util::future::join_all((0..CRASH_WRITERS).map(writer));
    let crash = async {
        let count = || posted.borrow().len();
        while count() < 10 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        cluster.primary.kill().await;
        let killed = Instant::now();
        cluster.primary.start().await;
        let before = count();
        while count() == before {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let back = killed.elapsed();
        while count() < before + 10 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        done.set(true);
        back
    };
    let (_, back) = futures_util::join!(writers, crash);
    let posted = posted.into_inner();
    assert_eq!(
        count_posts(&app, &author).await,
        posted.len() as i64,
        "a retried post was written twice"
    );
    // Every post once on every session (in position order: the client checks), and nothing
    // else. A restart is not a failover: the same history, so no reset and no jump.
    let texts: std::collections::HashMap<Uuid, String> = posted.iter().cloned().collect();
    for (i, feed) in feeds.iter_mut().enumerate() {
        let mut seen = std::collections::HashSet::new();
        while seen.len() < texts.len() {
            let event = next(feed, &format!("session {i}")).await;
            let post: Uuid = event["postId"]
                .as_str()
                .and_then(|id| id.parse().ok())
                .unwrap_or_else(|| panic!("session {i}: not a post event: {event}"));
            let text = texts
                .get(&post)
                .unwrap_or_else(|| panic!("session {i}: a post never answered 200: {event}"));
            crate::support::assert_event(&event, "post.created", post, author.id, Some(text));
            assert!(seen.insert(post), "session {i}: {post} twice");
        }
    }
    let last = feeds[0].last_seq().expect("a position");
    assert!(
        last < crate::support::pg_cluster::SMALL_POSITIONS,
        "a restart moved the numbering: {last}"
    );
    app.relay_idle().await;
    println!(
        "crash cost (postmaster killed, same server restarted): writes back {:.1} s after the \
         kill; {} posts, {} answers 503 (retried with their keys), 0 written twice, 0 resets",
        back.as_secs_f64(),
        posted.len(),
        unavailable.get()
    );
}

/// The test's database name (from the isolated settings).
fn database_name(app_url: &str) -> String {
    url::Url::parse(app_url)
        .expect("the test's database url")
        .path()
        .trim_start_matches('/')
        .to_owned()
}

/// An author, readers following them, and one open feed each.
async fn audience(app: &TestApp) -> (TestUser, Vec<FeedClient>) {
    let author = app.user("Author").await;
    let mut feeds = Vec::new();
    for i in 0..READERS {
        let reader = app.user(&format!("Reader{i}")).await;
        app.follow(&reader, &author).await;
        feeds.push(app.feed(&reader).await);
    }
    (author, feeds)
}

/// The position the log gave `post`'s creation, once numbered.
async fn position_of(app: &TestApp, post: Uuid) -> i64 {
    #[derive(QueryableByName)]
    struct Seq {
        #[diesel(sql_type = Nullable<BigInt>)]
        seq: Option<i64>,
    }
    let started = Instant::now();
    loop {
        if let Ok(mut conn) = app.pool.get().await {
            let found: Result<Seq, _> = diesel::sql_query(
                "SELECT max(seq) AS seq FROM feed_events
                  WHERE post_id = $1 AND kind = 'post.created'",
            )
            .bind::<SqlUuid, _>(post)
            .get_result(&mut conn)
            .await;
            if let Ok(Seq { seq: Some(seq) }) = found {
                return seq;
            }
        }
        assert!(
            started.elapsed() < FAILOVER_DEADLINE,
            "post {post} never numbered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The next frame of `feed` within the failover deadline; a close or silence fails the test.
async fn next(feed: &mut FeedClient, what: &str) -> Value {
    match feed.receive(FAILOVER_DEADLINE).await {
        Received::Event(value) => value,
        Received::Closed(reason) => panic!("{what}: the session was closed: {reason:?}"),
        Received::TimedOut => panic!("{what}: nothing within {FAILOVER_DEADLINE:?}"),
    }
}

async fn synchronous_failover(stop: Stop) {
    let mut cluster = PgCluster::start("sync", Replication::Synchronous).await;
    let mut settings = test_settings();
    settings.database.url = cluster.multi_host_url(&database_name(&settings.database.url));
    let app = TestApp::spawn_with(settings).await;
    let (author, mut feeds) = audience(&app).await;

    // Posts flow (each retried with its key until 200) while the primary goes and the standby
    // is promoted.
    let posted: RefCell<Vec<(Uuid, String)>> = RefCell::new(Vec::new());
    let done = Cell::new(false);
    let poster = async {
        let mut n = 0;
        while !done.get() {
            let text = format!("post {n}");
            let id = post_retrying(&app, &author, &text, &format!("key-{n}")).await;
            posted.borrow_mut().push((id, text));
            n += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let failover = async {
        let count = || posted.borrow().len();
        while count() < 5 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let stopped = Instant::now();
        match stop {
            Stop::Fast => cluster.primary.stop_fast().await,
            Stop::Kill => cluster.primary.kill().await,
        }
        let before = count();
        cluster.standby.promote().await;
        let promoted = stopped.elapsed();
        while count() == before {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let back = stopped.elapsed();
        while count() < before + 5 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        done.set(true);
        (promoted, back)
    };
    let ((), (promoted, back)) = futures_util::join!(poster, failover);
    let posted = posted.into_inner();

    for (i, feed) in feeds.iter_mut().enumerate() {
        for (post, text) in &posted {
            let event = next(feed, &format!("session {i}, {text}")).await;
            crate::support::assert_event(&event, "post.created", *post, author.id, Some(text));
        }
        if let Received::Event(extra) = feed.receive(Duration::from_millis(500)).await {
            panic!("session {i}: an event after the last post: {extra}");
        }
    }
    assert_eq!(
        count_posts(&app, &author).await,
        posted.len() as i64,
        "a retried post was written twice"
    );
    println!(
        "failover cost (synchronous, {stop:?} stop, multi-host URL): promoted {:.1} s after \
         the stop, writes back {:.1} s after the stop; {} posts, 0 resets, 0 sessions closed",
        promoted.as_secs_f64(),
        back.as_secs_f64(),
        posted.len()
    );
}

async fn lost_commits(front: Front) {
    let mut cluster = PgCluster::start("async", Replication::Asynchronous).await;
    let mut forwarder = match front {
        Front::Forwarder => Some(Forwarder::to(cluster.primary.port).await),
        Front::MultiHost => None,
    };
    let mut settings = test_settings();
    let name = database_name(&settings.database.url);
    settings.database.url = match &forwarder {
        Some(forwarder) => format!("postgres://postgres@127.0.0.1:{}/{name}", forwarder.port),
        None => cluster.multi_host_url(&name),
    };
    let app = TestApp::spawn_with(settings).await;
    let author = app.user("Author").await;
    let mut readers = Vec::new();
    let mut feeds = Vec::new();
    for i in 0..READERS {
        let reader = app.user(&format!("Reader{i}")).await;
        app.follow(&reader, &author).await;
        feeds.push(app.feed(&reader).await);
        readers.push(reader);
    }
    // A follower of an author who posts nothing after the failover: it learns of it anyway.
    let quiet = app.user("Quiet").await;
    let watcher = app.user("Watcher").await;
    app.follow(&watcher, &quiet).await;
    let mut watching = app.feed(&watcher).await;
    // A follower of an author who posts nothing in the lost history: it continues, no reset.
    let steady = app.user("Steady").await;
    let calm = app.user("Calm").await;
    app.follow(&calm, &steady).await;
    let mut calm_feed = app.feed(&calm).await;
    let steady_post = app.create_post(&steady, "kept, steadily").await;
    calm_feed
        .expect_created(steady_post, &steady, "kept, steadily")
        .await;

    // Replicated: both servers have these.
    for n in 0..3 {
        let text = format!("kept {n}");
        let post = app.create_post(&author, &text).await;
        for feed in &mut feeds {
            feed.expect_created(post, &author, &text).await;
        }
    }
    let kept_position = feeds[0].last_seq().expect("a position");
    app.relay_idle().await;
    cluster.await_standby_caught_up().await;

    // Only the primary has these: the sessions see them, then the primary dies.
    cluster.standby.stop_fast().await;
    for n in 0..3 {
        let text = format!("lost {n}");
        let post = app.create_post(&author, &text).await;
        for feed in &mut feeds {
            feed.expect_created(post, &author, &text).await;
        }
    }
    let lost_position = feeds[0].last_seq().expect("a position");
    let quiet_post = app.create_post(&quiet, "lost, quietly").await;
    watching
        .expect_created(quiet_post, &quiet, "lost, quietly")
        .await;
    cluster.primary.kill().await;
    let died = Instant::now();

    cluster.standby.start().await;
    if let Some(forwarder) = forwarder.as_mut() {
        forwarder.point_at(cluster.standby.port).await;
    }
    cluster.standby.promote().await;
    let promoted = died.elapsed();

    let mut after = Vec::new();
    for n in 0..3 {
        let text = format!("after {n}");
        after.push((
            post_retrying(&app, &author, &text, &format!("after-{n}")).await,
            text,
        ));
    }
    let back = died.elapsed();
    let mut positions = Vec::new();
    for (post, _) in &after {
        positions.push(position_of(&app, *post).await);
    }
    assert!(
        positions[0] > lost_position,
        "a position given out again: {} after the lost {lost_position}",
        positions[0]
    );
    let last_after = *positions.last().expect("three posts");

    // Every session: a reset (its position is in the lost history), then whatever of the new
    // primary's events the reset does not cover, in order; nothing twice (the client checks).
    let mut resets = 0;
    for (i, feed) in feeds.iter_mut().enumerate() {
        let first = next(feed, &format!("session {i} after the failover")).await;
        assert_eq!(first["type"], "feed.reset", "session {i}: {first}");
        resets += 1;
        let reset_to = first["seq"].as_i64().expect("a reset position");
        assert!(reset_to > lost_position, "session {i}: reset to {reset_to}");
        for ((post, text), position) in after.iter().zip(&positions) {
            if *position <= reset_to {
                continue; // in the page the client reloads
            }
            let event = next(feed, &format!("session {i}, {text}")).await;
            crate::support::assert_event(&event, "post.created", *post, author.id, Some(text));
        }
        assert!(feed.last_seq().is_some_and(|seq| seq >= last_after));
    }
    let reset_within = died.elapsed();
    let first = next(&mut watching, "the quiet author's follower").await;
    assert_eq!(first["type"], "feed.reset", "{first}");
    let quiet_reset_within = died.elapsed();
    let steady_after = post_retrying(&app, &steady, "after, steadily", "steady-after").await;
    let event = next(&mut calm_feed, "the steady author's follower").await;
    crate::support::assert_event(
        &event,
        "post.created",
        steady_after,
        steady.id,
        Some("after, steadily"),
    );

    // A resume from the lost history is reset; one from before it continues with the new
    // primary's events, without a reset.
    let mut lost = app.feed_since(&readers[0], lost_position).await;
    let first = next(&mut lost, "resume from the lost history").await;
    assert_eq!(first["type"], "feed.reset", "{first}");
    assert!(first["seq"].as_i64().is_some_and(|seq| seq >= last_after));
    let mut kept = app.feed_since(&readers[1], kept_position).await;
    for (post, text) in &after {
        let event = next(&mut kept, "resume from before the loss").await;
        crate::support::assert_event(&event, "post.created", *post, author.id, Some(text));
    }

    app.relay_idle().await;
    println!(
        "failover cost (asynchronous, lost commits, {front:?}): promoted {:.1} s after the kill, \
         writes back {:.1} s after it, every session reset within {:.1} s: {resets} resets of \
         {READERS} sessions, 0 closed; a session with no event after the failover reset within \
         {:.1} s; a session that saw nothing lost continued without a reset; positions jumped from {lost_position} (lost) to {}",
        promoted.as_secs_f64(),
        back.as_secs_f64(),
        reset_within.as_secs_f64(),
        quiet_reset_within.as_secs_f64(),
        positions[0]
    );
}
