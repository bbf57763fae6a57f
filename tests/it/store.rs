//! Store-level tests. Query plans: with realistic table sizes, the name search, the feed and the
//! follower scan must be served by their indexes, not by sequential scans (the plans are of the
//! SQL diesel actually generates, prepared with its bind parameters, as herald runs it). And the
//! feed log: follows and switches logged with their change, positions in commit order, resume
//! bounds, and the relay's lock.

use diesel::pg::Pg;
use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use herald::startup::prepare_database;
use herald::store::{celebrities, events, friends, history, posts, users, DbPool};
use uuid::Uuid;

use crate::support::{test_settings, Cleanup};

#[derive(diesel::QueryableByName)]
struct PlanLine {
    #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
    line: String,
}

/// `EXPLAIN EXECUTE` of a query's own SQL, its binds passed as untyped literals (PostgreSQL
/// gives each the parameter's type, as it does for the driver's binds).
async fn plan_of<Q>(conn: &mut AsyncPgConnection, name: &str, query: &Q) -> String
where
    Q: diesel::query_builder::QueryFragment<Pg>,
{
    let debug = diesel::debug_query::<Pg, _>(query).to_string();
    let (sql, binds) = debug.split_once(" -- binds: ").expect("debug_query output");
    let literals: Vec<String> = binds
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split(", ")
        .map(|bind| format!("'{}'", bind.trim_matches('"').replace('\'', "''")))
        .collect();
    conn.batch_execute(&format!("PREPARE {name} AS {sql}"))
        .await
        .expect("prepare");
    let lines: Vec<PlanLine> =
        diesel::sql_query(format!("EXPLAIN EXECUTE {name}({})", literals.join(", ")))
            .load(conn)
            .await
            .expect("explain");
    lines.into_iter().map(|l| l.line + "\n").collect()
}

/// A migrated database of this test's own, dropped when the `Cleanup` goes.
async fn fresh_database() -> (Cleanup, DbPool) {
    let mut settings = test_settings();
    // These tests seed tens of thousands of rows through the pool in single statements.
    settings.database.statement_timeout_ms = 0;
    let cleanup = Cleanup(settings.clone());
    let pool = prepare_database(&settings.database)
        .await
        .expect("database");
    (cleanup, pool)
}

#[actix_web::test]
async fn search_feed_and_fan_out_queries_use_their_indexes() {
    let (_cleanup, pool) = fresh_database().await;
    let mut conn = pool.get().await.expect("connection");
    let seed = [
        "INSERT INTO users (id, first_name, second_name, birthdate, city, password_hash)
         SELECT gen_random_uuid(), 'Name' || g, 'Surname' || (g % 997), DATE '1990-01-01', 'City', 'x'
         FROM generate_series(1, 50000) AS g",
        "INSERT INTO friendships (user_id, friend_id)
         SELECT a.id, b.id FROM (SELECT id, row_number() OVER () AS n FROM users) a
         JOIN (SELECT id, row_number() OVER () AS n FROM users) b ON b.n = (a.n % 50000) + 1",
        "INSERT INTO posts (id, author_id, text)
         SELECT gen_random_uuid(), id, 'post' FROM users, generate_series(1, 4)",
        "INSERT INTO feed_events (seq, author_id, kind, post_id, post_text)
         SELECT row_number() OVER (), author_id, 'post.created', id, text FROM posts",
        "ANALYZE",
    ];
    for statement in seed {
        conn.batch_execute(statement).await.expect("seed");
    }
    let user: Uuid = {
        use diesel::QueryDsl;
        use herald::store::schema::users::dsl::{id, users as all_users};
        all_users.select(id).first(&mut conn).await.expect("a user")
    };

    let search = users::search_query(
        users::like_prefix("Name12"),
        users::like_prefix("Surname1"),
        1000,
    );
    let feed = posts::feed_query(user, 0, 10);
    let followers = friends::followers_page_query(user, Uuid::nil(), 1000);
    let resume = history::history_query(user, 100_000, 1001);
    let plans = [
        (
            "users_name_prefix_idx",
            plan_of(&mut conn, "search", &search).await,
        ),
        (
            "posts_author_feed_idx",
            plan_of(&mut conn, "feed", &feed).await,
        ),
        (
            "friendships_followers_idx",
            plan_of(&mut conn, "followers", &followers).await,
        ),
        (
            "feed_events_author_seq_idx",
            plan_of(&mut conn, "resume", &resume).await,
        ),
    ];
    for (index, plan) in plans {
        assert!(plan.contains(index), "expected {index} in:\n{plan}");
        assert!(!plan.contains("Seq Scan"), "sequential scan in:\n{plan}");
    }
}

/// Users `n` of them, for the log tests.
async fn seed_users(conn: &mut AsyncPgConnection, n: usize) -> Vec<Uuid> {
    conn.batch_execute(&format!(
        "INSERT INTO users (id, first_name, second_name, birthdate, city, password_hash)
         SELECT gen_random_uuid(), 'Name' || g, 'Surname', DATE '1990-01-01', 'City', 'x'
         FROM generate_series(1, {n}) AS g"
    ))
    .await
    .expect("seed");
    use diesel::QueryDsl;
    use herald::store::schema::users::dsl::{id, users as all_users};
    all_users.select(id).load(conn).await.expect("ids")
}

/// Follows keep the count in step and each writes its event; the follow that reaches the
/// threshold switches the author to celebrity, with an event of its own; numbering follows
/// insert order and records the switch's position.
#[actix_web::test]
async fn follows_and_the_switch_to_celebrity_are_logged_and_numbered() {
    let (_cleanup, pool) = fresh_database().await;
    let mut conn = pool.get().await.expect("connection");
    let ids = seed_users(&mut conn, 4).await;
    let (star, fans) = (ids[0], &ids[1..]);
    posts::create(&mut conn, star, "before anyone followed")
        .await
        .expect("post");
    for (i, fan) in fans.iter().enumerate() {
        let change = friends::follow(&mut conn, *fan, star, 3)
            .await
            .expect("follow")
            .expect("a new edge");
        assert_eq!(change.celebrity, i == 2, "{change:?}");
    }
    assert!(friends::follow(&mut conn, fans[0], star, 3)
        .await
        .expect("again")
        .is_none());
    let change = friends::unfollow(&mut conn, fans[2], star)
        .await
        .expect("unfollow")
        .expect("an edge removed");
    assert_eq!((change.follower_count, change.celebrity), (2, true));
    assert_eq!(
        celebrities::followed_by(&mut conn, fans[0])
            .await
            .expect("followed"),
        vec![star]
    );

    let numbered = events::number_batch(&mut conn, 1000).await.expect("number");
    let rows = events::numbered_after(&mut conn, 0, 100)
        .await
        .expect("rows");
    // The relay publishes what numbering returns: exactly what reading the log back gives,
    // the switch position included (taken from the batch itself, the switch being in it).
    let view = |rows: &[events::RelayedEvent]| -> Vec<(events::LoggedEvent, Option<i64>, i64)> {
        rows.iter()
            .map(|row| (row.event.clone(), row.celebrity_seq, row.recorded_us))
            .collect()
    };
    assert_eq!(view(&numbered), view(&rows));
    assert!(rows.iter().all(|row| row.recorded_us > 0));
    let kinds: Vec<&str> = rows.iter().map(|row| row.event.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "post.created",
            "follow",
            "follow",
            "follow",
            "celebrity",
            "unfollow"
        ],
        "in insert order"
    );
    let seqs: Vec<i64> = rows.iter().map(|row| row.event.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6]);
    // The switch is at 5: only the unfollow after it goes out once.
    let once: Vec<bool> = rows.iter().map(|row| row.once()).collect();
    assert_eq!(once, [false, false, false, false, false, true]);
    assert_eq!(events::head(&mut conn).await.expect("head"), 6);
}

/// Positions follow commit order, not insert order: an event inserted first but committed
/// last is numbered last.
#[actix_web::test]
async fn positions_follow_commit_order() {
    let (_cleanup, pool) = fresh_database().await;
    let mut early = pool.get().await.expect("connection");
    let mut late = pool.get().await.expect("connection");
    let ids = seed_users(&mut early, 2).await;
    // A raw transaction, held open across the other write and a numbering.
    early
        .batch_execute(&format!(
            "BEGIN; INSERT INTO feed_events (author_id, kind, post_id, post_text)
             VALUES ('{}', 'post.created', gen_random_uuid(), 'inserted first, committed last')",
            ids[0]
        ))
        .await
        .expect("begin");
    posts::create(&mut late, ids[1], "inserted last, committed first")
        .await
        .expect("post");
    assert_eq!(
        events::number_batch(&mut late, 1000)
            .await
            .expect("n")
            .len(),
        1
    );
    early.batch_execute("COMMIT").await.expect("commit");
    assert_eq!(
        events::number_batch(&mut late, 1000)
            .await
            .expect("n")
            .len(),
        1
    );
    let rows = events::numbered_after(&mut late, 0, 10)
        .await
        .expect("rows");
    let order: Vec<(i64, Uuid)> = rows
        .iter()
        .map(|r| (r.event.seq, r.event.author_id))
        .collect();
    assert_eq!(order, [(1, ids[1]), (2, ids[0])]);
}

/// A post and a follow of the same author never overlap: a follow waits for the post's
/// transaction (which holds the author's row), so its event is inserted, and numbered, after
/// the post's.
#[actix_web::test]
async fn a_follow_waits_for_a_post_of_its_author_in_flight() {
    let (_cleanup, pool) = fresh_database().await;
    let mut posting = pool.get().await.expect("connection");
    let mut following = pool.get().await.expect("connection");
    let ids = seed_users(&mut posting, 2).await;
    let (author, fan) = (ids[0], ids[1]);
    posting
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM users WHERE id = '{author}' FOR SHARE;
             INSERT INTO feed_events (author_id, kind, post_id, post_text)
             VALUES ('{author}', 'post.created', gen_random_uuid(), 'in flight')"
        ))
        .await
        .expect("a post in flight");
    let follow = friends::follow(&mut following, fan, author, 1000);
    tokio::pin!(follow);
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(300), &mut follow)
            .await
            .is_err(),
        "the follow waits for the post"
    );
    posting.batch_execute("COMMIT").await.expect("commit");
    follow.await.expect("follow").expect("a new edge");
    events::number_batch(&mut posting, 1000)
        .await
        .expect("number");
    let rows = events::numbered_after(&mut posting, 0, 10)
        .await
        .expect("rows");
    let kinds: Vec<&str> = rows.iter().map(|row| row.event.kind.as_str()).collect();
    assert_eq!(kinds, ["post.created", "follow"]);
}

/// The mirror: a post waits for a follow of its author in flight (the follow holds the
/// author's row through its count update), so its event is numbered after the follow's.
#[actix_web::test]
async fn a_post_waits_for_a_follow_of_its_author_in_flight() {
    let (_cleanup, pool) = fresh_database().await;
    let mut following = pool.get().await.expect("connection");
    let mut posting = pool.get().await.expect("connection");
    let ids = seed_users(&mut following, 2).await;
    let (author, fan) = (ids[0], ids[1]);
    following
        .batch_execute(&format!(
            "BEGIN; UPDATE users SET follower_count = follower_count + 1 WHERE id = '{author}';
             INSERT INTO feed_events (author_id, kind, follower_id)
             VALUES ('{author}', 'follow', '{fan}')"
        ))
        .await
        .expect("a follow in flight");
    let post = posts::create(&mut posting, author, "after the follow");
    tokio::pin!(post);
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(300), &mut post)
            .await
            .is_err(),
        "the post waits for the follow"
    );
    following.batch_execute("COMMIT").await.expect("commit");
    post.await.expect("post");
    events::number_batch(&mut following, 1000)
        .await
        .expect("number");
    let rows = events::numbered_after(&mut following, 0, 10)
        .await
        .expect("rows");
    let kinds: Vec<&str> = rows.iter().map(|row| row.event.kind.as_str()).collect();
    assert_eq!(kinds, ["follow", "post.created"]);
}

/// A resume gets the events after its position from the authors followed, in order, within
/// the bounds; past them (too many, pruned, a position never given out) it is told to reset.
#[actix_web::test]
async fn history_is_bounded_and_resets_beyond_its_bounds() {
    let (_cleanup, pool) = fresh_database().await;
    let mut conn = pool.get().await.expect("connection");
    let ids = seed_users(&mut conn, 3).await;
    let (reader, author, stranger) = (ids[0], ids[1], ids[2]);
    friends::follow(&mut conn, reader, author, 1000)
        .await
        .expect("follow");
    for i in 0..5 {
        posts::create(&mut conn, author, &format!("post {i}"))
            .await
            .expect("post");
        posts::create(&mut conn, stranger, "not followed")
            .await
            .expect("post");
    }
    events::number_batch(&mut conn, 1000).await.expect("number");
    let bounds = history::HistoryBounds {
        max_events: 5,
        ttl: std::time::Duration::from_secs(3600),
    };
    let texts = |history: history::History| match history {
        history::History::Events(rows) => rows
            .into_iter()
            .map(|row| (row.seq, row.post_text.unwrap_or_default()))
            .collect::<Vec<_>>(),
        other => panic!("expected events, got {other:?}"),
    };
    // Position 1 is the follow; the author's posts are at 2, 4, 6, 8, 10.
    let all = texts(
        history::history(&mut conn, reader, 1, Some(bounds))
            .await
            .expect("history"),
    );
    assert_eq!(
        all.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        [2, 4, 6, 8, 10]
    );
    assert_eq!(all[4].1, "post 4");
    let tail = texts(
        history::history(&mut conn, reader, 6, Some(bounds))
            .await
            .expect("history"),
    );
    assert_eq!(tail.len(), 2);
    // A new session's first fill (a position herald read itself): the same events in one
    // statement, and no answer when there are more than a gap may hold.
    let recent = history::recent(&mut conn, reader, 1, 5)
        .await
        .expect("recent")
        .expect("five fit in five");
    assert_eq!(
        recent.iter().map(|row| row.seq).collect::<Vec<_>>(),
        [2, 4, 6, 8, 10]
    );
    assert_eq!(
        history::recent(&mut conn, reader, 1, 4)
            .await
            .expect("recent"),
        None,
        "five do not fit in four: the bounded read decides"
    );
    let tight = history::HistoryBounds {
        max_events: 4,
        ..bounds
    };
    assert_eq!(
        history::history(&mut conn, reader, 1, Some(tight))
            .await
            .expect("history"),
        history::History::Reset(11),
        "five events do not fit in four"
    );
    assert_eq!(
        history::history(&mut conn, reader, 12, Some(bounds))
            .await
            .expect("history"),
        history::History::Reset(11),
        "a position this log never gave out"
    );
    // Everything published, then pruned as if a day had passed: an old position resets.
    events::mark_published(&mut conn, 11)
        .await
        .expect("published");
    conn.batch_execute("UPDATE feed_events SET created_at = now() - interval '2 days'")
        .await
        .expect("backdate");
    let day = std::time::Duration::from_secs(86_400);
    assert_eq!(events::prune(&mut conn, day, 100).await.expect("prune"), 11);
    assert_eq!(
        history::history(&mut conn, reader, 3, Some(bounds))
            .await
            .expect("history"),
        history::History::Reset(11)
    );
    assert_eq!(
        history::history(&mut conn, reader, 11, Some(bounds))
            .await
            .expect("history"),
        history::History::Events(Vec::new()),
        "nothing missed since the head"
    );
}

/// Only one connection at a time holds the relay's lock; it frees with its connection.
#[actix_web::test]
async fn one_relay_leads_at_a_time() {
    let (_cleanup, pool) = fresh_database().await;
    let mut first = pool.get().await.expect("connection");
    let mut second = pool.get().await.expect("connection");
    assert!(events::try_lead(&mut first).await.expect("lead"));
    assert!(!events::try_lead(&mut second).await.expect("lead"));
    first
        .batch_execute(&format!(
            "SELECT pg_advisory_unlock({})",
            events::RELAY_LOCK
        ))
        .await
        .expect("unlock");
    assert!(events::try_lead(&mut second).await.expect("lead"));
    second
        .batch_execute(&format!(
            "SELECT pg_advisory_unlock({})",
            events::RELAY_LOCK
        ))
        .await
        .expect("unlock");
}
