//! Query plans: with realistic table sizes, the name search, the feed and the follower scan
//! must be served by their indexes, not by sequential scans.

mod support;

use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;
use herald::startup::prepare_database;
use support::{test_settings, Cleanup};

#[derive(diesel::QueryableByName)]
struct PlanLine {
    #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
    line: String,
}

#[actix_web::test]
async fn search_feed_and_fan_out_queries_use_their_indexes() {
    let settings = test_settings();
    let _cleanup = Cleanup(settings.clone());
    let pool = prepare_database(&settings.database)
        .await
        .expect("database");
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
        diesel::sql_query(statement)
            .execute(&mut conn)
            .await
            .expect("seed");
    }
    let user: String = {
        #[derive(diesel::QueryableByName)]
        struct Id {
            #[diesel(sql_type = Text)]
            id: String,
        }
        let ids: Vec<Id> = diesel::sql_query("SELECT id::text AS id FROM users LIMIT 1")
            .load(&mut conn)
            .await
            .expect("a user");
        ids[0].id.clone()
    };
    let plans = [
        (
            "users_name_prefix_idx",
            "SELECT id FROM users WHERE lower(first_name) LIKE 'name12%' \
             AND lower(second_name) LIKE 'surname1%' ORDER BY id LIMIT 1000"
                .to_owned(),
        ),
        (
            "posts_author_feed_idx",
            format!(
                "SELECT p.id FROM posts p JOIN friendships f ON f.friend_id = p.author_id \
                 WHERE f.user_id = '{user}' ORDER BY p.id DESC OFFSET 0 LIMIT 10"
            ),
        ),
        (
            "friendships_followers_idx",
            format!(
                "SELECT user_id FROM friendships WHERE friend_id = '{user}' \
                 ORDER BY user_id LIMIT 1000"
            ),
        ),
    ];
    for (index, query) in plans {
        let plan: Vec<PlanLine> = diesel::sql_query(format!("EXPLAIN {query}"))
            .load(&mut conn)
            .await
            .expect("explain");
        let plan: String = plan.into_iter().map(|l| l.line + "\n").collect();
        assert!(plan.contains(index), "expected {index} in:\n{plan}");
        assert!(!plan.contains("Seq Scan"), "sequential scan in:\n{plan}");
    }
}
