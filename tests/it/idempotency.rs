//! The `Idempotency-Key` header of authenticated writes: a repeat by the same user with the same
//! key gets the first answer and writes nothing again; another user's key, or another key, is
//! another write; a key reused for a different request is refused; a malformed key is a 400.
//! (Retrying through a crashed database is in the `failover` suite.)

use std::cell::Cell;
use std::time::{Duration, Instant};

use serde_json::json;
use uuid::Uuid;

use crate::support::{Answer, TestApp, TestUser};

/// How long a keyed write may keep answering 503 before its retries fail the test (a failover
/// on a busy two-core machine).
const RETRY_DEADLINE: Duration = Duration::from_secs(120);

/// Sends `method path` as `user` with `key` as its `Idempotency-Key` and `body`.
pub async fn keyed(
    app: &TestApp,
    method: &str,
    path: &str,
    user: &TestUser,
    key: &str,
    body: Option<serde_json::Value>,
) -> Answer {
    let method = awc::http::Method::from_bytes(method.as_bytes()).expect("method");
    let request = awc::Client::new()
        .request(method, app.url(path))
        .bearer_auth(&user.token)
        .insert_header(("Idempotency-Key", key));
    let mut response = match body {
        Some(body) => request
            .insert_header(("content-type", "application/json"))
            .send_body(body.to_string())
            .await
            .expect("request sent"),
        None => request.send().await.expect("request sent"),
    };
    Answer::read(&mut response).await
}

pub async fn count_posts(app: &TestApp, author: &TestUser) -> i64 {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        count: i64,
    }
    let mut conn = app.pool.get().await.expect("connection");
    let found: Count =
        diesel::sql_query("SELECT count(*) AS count FROM posts WHERE author_id = $1")
            .bind::<diesel::sql_types::Uuid, _>(author.id)
            .get_result(&mut conn)
            .await
            .expect("count");
    found.count
}

/// Posts `text` with `key`, retrying (same key) while the database is unavailable (503) or the
/// connection fails; any other answer fails the test. Returns the post's id.
pub async fn post_retrying(app: &TestApp, author: &TestUser, text: &str, key: &str) -> Uuid {
    post_counting(app, author, text, key, &Cell::new(0)).await
}

/// [`post_retrying`], counting the 503s.
pub async fn post_counting(
    app: &TestApp,
    author: &TestUser,
    text: &str,
    key: &str,
    unavailable: &Cell<usize>,
) -> Uuid {
    let started = Instant::now();
    loop {
        let answer = keyed(
            app,
            "POST",
            "/post/create",
            author,
            key,
            Some(json!({"text": text})),
        )
        .await;
        match answer.status {
            200 => {
                return answer
                    .body
                    .as_str()
                    .expect("bare id")
                    .parse()
                    .expect("uuid")
            }
            503 => {
                assert!(answer.headers.contains_key("retry-after"));
                unavailable.set(unavailable.get() + 1);
            }
            other => panic!("post {text:?} answered {other}: {}", answer.body),
        }
        assert!(
            started.elapsed() < RETRY_DEADLINE,
            "post {text:?}: writes did not come back within {RETRY_DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_web::test]
async fn a_repeated_key_returns_the_first_answer_and_writes_nothing_again() {
    let app = TestApp::spawn().await;
    let (author, reader, mut feed) = app.author_and_follower().await;
    let body = json!({"text": "only once"});
    let first = keyed(
        &app,
        "POST",
        "/post/create",
        &author,
        "k-1",
        Some(body.clone()),
    )
    .await;
    assert_eq!(first.status, 200, "{}", first.body);
    let post: Uuid = first.body.as_str().expect("bare id").parse().expect("uuid");
    assert!(first.headers.get("idempotent-replayed").is_none());
    let again = keyed(
        &app,
        "POST",
        "/post/create",
        &author,
        "k-1",
        Some(body.clone()),
    )
    .await;
    assert_eq!((again.status, &again.body), (200, &first.body));
    assert_eq!(
        again
            .headers
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    assert_eq!(count_posts(&app, &author).await, 1);
    feed.expect_created(post, &author, "only once").await;

    // Another key is another post; the same key from another user is that user's own.
    let other = keyed(
        &app,
        "POST",
        "/post/create",
        &author,
        "k-2",
        Some(body.clone()),
    )
    .await;
    assert_ne!(other.body, first.body);
    let theirs = keyed(
        &app,
        "POST",
        "/post/create",
        &reader,
        "k-1",
        Some(body.clone()),
    )
    .await;
    assert_eq!(theirs.status, 200);
    assert_ne!(theirs.body, first.body);
    assert_eq!(count_posts(&app, &author).await, 2);

    // The same key for a different request writes nothing.
    let reused = keyed(
        &app,
        "POST",
        "/post/create",
        &author,
        "k-1",
        Some(json!({"text": "something else"})),
    )
    .await;
    assert_eq!(reused.status, 422, "{}", reused.body);
    assert_eq!(count_posts(&app, &author).await, 2);

    // A delete repeated answers as the first one did (200), not 404.
    let path = format!("/post/delete/{post}");
    assert_eq!(
        keyed(&app, "PUT", &path, &author, "d-1", None).await.status,
        200
    );
    assert_eq!(
        keyed(&app, "PUT", &path, &author, "d-1", None).await.status,
        200
    );
    assert_eq!(
        keyed(&app, "PUT", &path, &author, "d-2", None).await.status,
        404
    );
    // Follows take keys too.
    let follow = format!("/friend/set/{}", reader.id);
    assert_eq!(
        keyed(&app, "PUT", &follow, &author, "f-1", None)
            .await
            .status,
        200
    );
    assert_eq!(
        keyed(&app, "PUT", &follow, &author, "f-1", None)
            .await
            .status,
        200
    );

    for bad in ["", &"x".repeat(129)] {
        let refused = keyed(
            &app,
            "POST",
            "/post/create",
            &author,
            bad,
            Some(body.clone()),
        )
        .await;
        assert_eq!(refused.status, 400, "{bad:?}: {}", refused.body);
    }
    assert_eq!(
        count_posts(&app, &author).await,
        1,
        "two posted, one deleted"
    );
}

#[actix_web::test]
async fn concurrent_repeats_of_one_key_write_once() {
    let app = TestApp::spawn().await;
    let author = app.user("Author").await;
    let body = json!({"text": "raced"});
    let attempts = (0..6).map(|_| {
        keyed(
            &app,
            "POST",
            "/post/create",
            &author,
            "race",
            Some(body.clone()),
        )
    });
    let answers = futures_util::future::join_all(attempts).await;
    let first = &answers[0].body;
    for answer in &answers {
        assert_eq!((answer.status, &answer.body), (200, first));
    }
    assert_eq!(count_posts(&app, &author).await, 1);
}
