//! Store-level tests. Query plans: with realistic table sizes, the name search, the feed and the
//! follower scan must be served by their indexes, not by sequential scans (the plans are of the
//! SQL diesel actually generates, prepared with its bind parameters, as herald runs it). And the
//! celebrity bookkeeping: follower counts and the claim of a switch.

use diesel::pg::Pg;
use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use herald::startup::prepare_database;
use herald::store::celebrities::{self, PublishMode};
use herald::store::{friends, posts, users, DbPool};
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
    let settings = test_settings();
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
    ];
    for (index, plan) in plans {
        assert!(plan.contains(index), "expected {index} in:\n{plan}");
        assert!(!plan.contains("Seq Scan"), "sequential scan in:\n{plan}");
    }
}

/// The switch to celebrity is claimed once; a claim left unfinished (its node died mid-switch)
/// can be claimed again only once it is stale; follows keep the count in step.
#[actix_web::test]
async fn a_celebrity_switch_is_claimed_once_and_again_only_when_stale() {
    let (_cleanup, pool) = fresh_database().await;
    let mut conn = pool.get().await.expect("connection");
    conn.batch_execute(
        "INSERT INTO users (id, first_name, second_name, birthdate, city, password_hash)
         SELECT gen_random_uuid(), 'Name' || g, 'Surname', DATE '1990-01-01', 'City', 'x'
         FROM generate_series(1, 4) AS g",
    )
    .await
    .expect("seed");
    let ids: Vec<Uuid> = {
        use diesel::QueryDsl;
        use herald::store::schema::users::dsl::{id, users as all_users};
        all_users.select(id).load(&mut conn).await.expect("ids")
    };
    let (star, fans) = (ids[0], &ids[1..]);
    for fan in fans {
        let change = friends::follow(&mut conn, *fan, star)
            .await
            .expect("follow")
            .expect("a new edge");
        assert!(!change.celebrity && !change.switching);
    }
    assert!(friends::follow(&mut conn, fans[0], star)
        .await
        .expect("again")
        .is_none());
    let change = friends::unfollow(&mut conn, fans[2], star)
        .await
        .expect("unfollow")
        .expect("an edge removed");
    assert_eq!(change.follower_count, 2);

    assert!(
        !celebrities::claim(&mut conn, star, 3).await.expect("claim"),
        "below the threshold"
    );
    assert!(celebrities::claim(&mut conn, star, 2).await.expect("claim"));
    assert!(
        !celebrities::claim(&mut conn, star, 2).await.expect("claim"),
        "claimed once"
    );
    let change = friends::follow(&mut conn, fans[2], star)
        .await
        .expect("follow")
        .expect("a new edge");
    assert!(change.celebrity && change.switching, "{change:?}");
    assert_eq!(
        celebrities::publish_mode(&mut conn, star)
            .await
            .expect("mode"),
        PublishMode::PerFollower,
        "per follower until the switch is done"
    );

    // The claimer died: once stale, the next claim wins.
    conn.batch_execute(&format!(
        "UPDATE users SET celebrity_claimed_at = now() - interval '1 hour' WHERE id = '{star}'"
    ))
    .await
    .expect("backdate");
    assert!(celebrities::claim(&mut conn, star, 2).await.expect("claim"));
    celebrities::switch_at(&mut conn, star, std::time::Duration::ZERO)
        .await
        .expect("switch");
    assert_eq!(
        celebrities::publish_mode(&mut conn, star)
            .await
            .expect("mode"),
        PublishMode::Once
    );
    assert!(
        !celebrities::claim(&mut conn, star, 2).await.expect("claim"),
        "done"
    );
    assert_eq!(
        celebrities::followed_by(&mut conn, fans[0])
            .await
            .expect("followed"),
        vec![star]
    );
}
