//! The HTTP API against a real server, PostgreSQL and RabbitMQ: every route's success and its
//! 400/401/403/404 cases, the error body, request ids, the body limit and 503s.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::{test_settings, Answer, TestApp};

fn assert_error(status: u16, body: &Value, expected: u16) {
    assert_eq!(status, expected, "body: {body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "body: {body}"
    );
    assert!(
        body["request_id"].as_str().is_some_and(|r| !r.is_empty()),
        "body: {body}"
    );
    assert_eq!(body["code"], expected, "body: {body}");
}

fn registration() -> Value {
    json!({
        "first_name": "Иван",
        "second_name": "Петров",
        "birthdate": "1985-03-09",
        "biography": "chess, hiking",
        "city": "Kazan",
        "password": "s3cret-enough",
    })
}

#[actix_web::test]
async fn register_login_and_get_a_user() {
    let app = TestApp::spawn().await;
    let (status, body) = app.post("/user/register", None, &registration()).await;
    assert_eq!(status, 200, "{body}");
    let id: Uuid = body["user_id"]
        .as_str()
        .expect("user_id")
        .parse()
        .expect("uuid");

    let (status, body) = app.get(&format!("/user/get/{id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({
            "id": id, "first_name": "Иван", "second_name": "Петров", "birthdate": "1985-03-09",
            "biography": "chess, hiking", "city": "Kazan",
        })
    );

    let (status, body) = app
        .post(
            "/login",
            None,
            &json!({"id": id, "password": "s3cret-enough"}),
        )
        .await;
    assert_eq!(status, 200);
    let token = body["token"].as_str().expect("token");
    assert!(token.len() >= 32, "at least 128 bits of token");

    // Only a hash of the token is stored, and the password only as an argon2id hash.
    let stored = sql_strings(&app, "SELECT encode(token_hash, 'hex') FROM login_tokens").await;
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0], token);
    let hashes = sql_strings(&app, "SELECT password_hash FROM users").await;
    assert!(hashes[0].starts_with("$argon2id$"), "{}", hashes[0]);
}

async fn sql_strings(app: &TestApp, query: &str) -> Vec<String> {
    use diesel::sql_types::Text;
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        value: String,
    }
    let mut conn = app.pool.get().await.expect("connection");
    let rows: Vec<Row> = diesel::sql_query(format!("SELECT value FROM ({query}) AS t(value)"))
        .load(&mut conn)
        .await
        .expect("query");
    rows.into_iter().map(|r| r.value).collect()
}

#[actix_web::test]
async fn registration_rejects_bad_input() {
    let app = TestApp::spawn().await;
    let cases: Vec<(&str, Value)> = vec![
        ("missing field", {
            let mut v = registration();
            v.as_object_mut().expect("object").remove("first_name");
            v
        }),
        ("wrong type", {
            let mut v = registration();
            v["city"] = json!(42);
            v
        }),
        ("empty name", {
            let mut v = registration();
            v["second_name"] = json!("   ");
            v
        }),
        ("long name", {
            let mut v = registration();
            v["first_name"] = json!("x".repeat(101));
            v
        }),
        ("empty city", {
            let mut v = registration();
            v["city"] = json!("");
            v
        }),
        ("impossible date", {
            let mut v = registration();
            v["birthdate"] = json!("2001-02-29");
            v
        }),
        ("not a date", {
            let mut v = registration();
            v["birthdate"] = json!("yesterday");
            v
        }),
        ("short password", {
            let mut v = registration();
            v["password"] = json!("short");
            v
        }),
        ("not an object", json!([1, 2, 3])),
    ];
    for (what, body) in cases {
        let (status, response) = app.post("/user/register", None, &body).await;
        assert_eq!(status, 400, "{what}: {response}");
        assert_error(status, &response, 400);
    }
    let Answer { status, body, .. } = app
        .call(
            "POST",
            "/user/register",
            None,
            Some("{\"first_name\": ".into()),
        )
        .await;
    assert_error(status, &body, 400);
    // Nothing half-written was left behind.
    assert!(sql_strings(&app, "SELECT id::text FROM users")
        .await
        .is_empty());
}

#[actix_web::test]
async fn login_failures() {
    let app = TestApp::spawn().await;
    let id = app.register("Ann", "Lee").await;
    let (status, body) = app
        .post(
            "/login",
            None,
            &json!({"id": id, "password": "wrong password"}),
        )
        .await;
    assert_error(status, &body, 400);
    let (status, body) = app
        .post(
            "/login",
            None,
            &json!({"id": Uuid::new_v4(), "password": "whatever1"}),
        )
        .await;
    assert_error(status, &body, 404);
    let (status, body) = app
        .post(
            "/login",
            None,
            &json!({"id": "not-a-uuid", "password": "whatever1"}),
        )
        .await;
    assert_error(status, &body, 400);
}

#[actix_web::test]
async fn get_user_errors() {
    let app = TestApp::spawn().await;
    let (status, body) = app
        .get(&format!("/user/get/{}", Uuid::new_v4()), None)
        .await;
    assert_error(status, &body, 404);
    let (status, body) = app.get("/user/get/12345", None).await;
    assert_error(status, &body, 400);
}

#[actix_web::test]
async fn search_matches_name_prefixes_case_insensitively() {
    let app = TestApp::spawn().await;
    let anna = app.register("Anna", "Smith").await;
    let anita = app.register("anita", "SMYTHE").await;
    app.register("Anna", "Jones").await;
    app.register("Bob", "Smith").await;
    app.register("A%na", "Smith").await;

    let (status, body) = app
        .get("/user/search?first_name=AN&last_name=sm", None)
        .await;
    assert_eq!(status, 200, "{body}");
    let mut found: Vec<Uuid> = body
        .as_array()
        .expect("array")
        .iter()
        .map(|u| u["id"].as_str().expect("id").parse().expect("uuid"))
        .collect();
    found.sort();
    let mut expected = vec![anna, anita];
    expected.sort();
    assert_eq!(found, expected);

    // LIKE wildcards in the query match only literally.
    let (_, body) = app
        .get("/user/search?first_name=%25&last_name=S", None)
        .await;
    assert_eq!(body.as_array().map(Vec::len), Some(0), "{body}");
    let (_, body) = app
        .get("/user/search?first_name=A%25&last_name=S", None)
        .await;
    assert_eq!(body.as_array().map(Vec::len), Some(1), "{body}");

    let (status, body) = app.get("/user/search?first_name=An", None).await;
    assert_error(status, &body, 400);
    let (status, body) = app.get("/user/search?first_name=&last_name=S", None).await;
    assert_error(status, &body, 400);
}

#[actix_web::test]
async fn friendships_are_directed_idempotent_and_checked() {
    let app = TestApp::spawn().await;
    let a = app.user("A").await;
    let b = app.user("B").await;
    app.follow(&a, &b).await;
    app.follow(&a, &b).await; // idempotent
    let post = app.create_post(&b, "from b").await;
    let (_, feed) = app.get("/post/feed", Some(&a.token)).await;
    assert_eq!(feed.as_array().map(Vec::len), Some(1), "{feed}");
    assert_eq!(feed[0]["id"], post.to_string());
    // Directed: B does not see A's posts.
    app.create_post(&a, "from a").await;
    let (_, feed) = app.get("/post/feed", Some(&b.token)).await;
    assert_eq!(feed, json!([]));

    app.unfollow(&a, &b).await;
    app.unfollow(&a, &b).await; // idempotent
    let (_, feed) = app.get("/post/feed", Some(&a.token)).await;
    assert_eq!(feed, json!([]));

    let (status, body) = app
        .put(&format!("/friend/set/{}", a.id), Some(&a.token), None)
        .await;
    assert_error(status, &body, 400);
    let (status, body) = app
        .put(
            &format!("/friend/set/{}", Uuid::new_v4()),
            Some(&a.token),
            None,
        )
        .await;
    assert_error(status, &body, 404);
    let (status, body) = app.put("/friend/set/nope", Some(&a.token), None).await;
    assert_error(status, &body, 400);
    let (status, body) = app.put(&format!("/friend/set/{}", b.id), None, None).await;
    assert_error(status, &body, 401);
    let (status, body) = app
        .put(
            &format!("/friend/delete/{}", b.id),
            Some(&"0".repeat(64)),
            None,
        )
        .await;
    assert_error(status, &body, 401);
    let (status, body) = app
        .put(
            &format!("/friend/delete/{}", b.id),
            Some("garbage token"),
            None,
        )
        .await;
    assert_error(status, &body, 401);
}

#[actix_web::test]
async fn posts_crud_and_ownership() {
    let app = TestApp::spawn().await;
    let author = app.user("Author").await;
    let other = app.user("Other").await;
    let id = app.create_post(&author, "first version").await;

    let (status, body) = app.get(&format!("/post/get/{id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"id": id, "text": "first version", "author_user_id": author.id})
    );

    let (status, _) = app
        .put(
            "/post/update",
            Some(&author.token),
            Some(&json!({"id": id, "text": "second"})),
        )
        .await;
    assert_eq!(status, 200);
    let (_, body) = app.get(&format!("/post/get/{id}"), None).await;
    assert_eq!(body["text"], "second");

    // Someone else's post: 403, and nothing changes.
    let (status, body) = app
        .put(
            "/post/update",
            Some(&other.token),
            Some(&json!({"id": id, "text": "hijack"})),
        )
        .await;
    assert_error(status, &body, 403);
    let (status, body) = app
        .put(&format!("/post/delete/{id}"), Some(&other.token), None)
        .await;
    assert_error(status, &body, 403);
    let (_, body) = app.get(&format!("/post/get/{id}"), None).await;
    assert_eq!(body["text"], "second");

    // Unknown posts: 404.
    let missing = Uuid::new_v4();
    let (status, body) = app
        .put(
            "/post/update",
            Some(&author.token),
            Some(&json!({"id": missing, "text": "x"})),
        )
        .await;
    assert_error(status, &body, 404);
    let (status, body) = app
        .put(
            &format!("/post/delete/{missing}"),
            Some(&author.token),
            None,
        )
        .await;
    assert_error(status, &body, 404);
    let (status, body) = app.get(&format!("/post/get/{missing}"), None).await;
    assert_error(status, &body, 404);

    // Bad input: 400; no token: 401.
    for text in [json!(""), json!("  "), json!("x".repeat(10_001)), json!(17)] {
        let (status, body) = app
            .post(
                "/post/create",
                Some(&author.token),
                &json!({ "text": text }),
            )
            .await;
        assert_error(status, &body, 400);
    }
    let (status, body) = app
        .post(
            "/post/create",
            Some(&author.token),
            &json!({ "text": "ж".repeat(10_000) }),
        )
        .await;
    assert_eq!(status, 200, "10,000 characters is allowed: {body}");
    let (status, body) = app
        .put(
            "/post/update",
            Some(&author.token),
            Some(&json!({"id": "nope", "text": "x"})),
        )
        .await;
    assert_error(status, &body, 400);
    let (status, body) = app.post("/post/create", None, &json!({"text": "x"})).await;
    assert_error(status, &body, 401);
    // Well formed, but no such token: the write's own statement refuses it.
    let unknown = "ab".repeat(32);
    let (status, body) = app
        .post("/post/create", Some(&unknown), &json!({"text": "x"}))
        .await;
    assert_error(status, &body, 401);
    let (status, body) = app.get("/post/get/not-a-uuid", None).await;
    assert_error(status, &body, 400);

    let (status, _) = app
        .put(&format!("/post/delete/{id}"), Some(&author.token), None)
        .await;
    assert_eq!(status, 200);
    let (status, body) = app.get(&format!("/post/get/{id}"), None).await;
    assert_error(status, &body, 404);
}

#[actix_web::test]
async fn feed_is_newest_first_and_paged() {
    let app = TestApp::spawn().await;
    let reader = app.user("Reader").await;
    let a = app.user("A").await;
    let b = app.user("B").await;
    let stranger = app.user("Stranger").await;
    app.follow(&reader, &a).await;
    app.follow(&reader, &b).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let author = if i % 2 == 0 { &a } else { &b };
        ids.push(app.create_post(author, &format!("post {i}")).await);
    }
    app.create_post(&stranger, "not in the feed").await;
    ids.reverse();

    let (status, body) = app.get("/post/feed", Some(&reader.token)).await;
    assert_eq!(status, 200);
    let got: Vec<String> = body
        .as_array()
        .expect("array")
        .iter()
        .map(|p| p["id"].as_str().expect("id").to_owned())
        .collect();
    let want: Vec<String> = ids.iter().map(Uuid::to_string).collect();
    assert_eq!(got, want);

    let (_, body) = app
        .get("/post/feed?offset=1&limit=2", Some(&reader.token))
        .await;
    let got: Vec<&str> = body
        .as_array()
        .expect("array")
        .iter()
        .map(|p| p["id"].as_str().expect("id"))
        .collect();
    assert_eq!(got, vec![want[1].as_str(), want[2].as_str()]);

    for query in ["offset=-1", "limit=0", "limit=1001", "limit=ten"] {
        let (status, body) = app
            .get(&format!("/post/feed?{query}"), Some(&reader.token))
            .await;
        assert_error(status, &body, 400);
    }
    let (status, body) = app.get("/post/feed", None).await;
    assert_error(status, &body, 401);
}

#[actix_web::test]
async fn every_response_carries_a_request_id_and_errors_share_one_shape() {
    let app = TestApp::spawn().await;
    let Answer {
        status,
        body,
        headers,
    } = app.call("GET", "/no/such/route", None, None).await;
    assert_error(status, &body, 404);
    let header = headers
        .get("x-request-id")
        .expect("header")
        .to_str()
        .expect("ascii");
    assert_eq!(body["request_id"], header);

    let Answer {
        status, headers, ..
    } = app.call("GET", "/health", None, None).await;
    assert_eq!(status, 200);
    assert!(headers.contains_key("x-request-id"));

    // A sane client id is echoed; an unsafe one is replaced.
    let client = awc::Client::default();
    let response = client
        .get(app.url("/user/get/bad"))
        .insert_header(("x-request-id", "trace-abc.123"))
        .send()
        .await
        .expect("sent");
    assert_eq!(
        response.headers().get("x-request-id").expect("id"),
        "trace-abc.123"
    );
    let response = client
        .get(app.url("/health"))
        .insert_header(("x-request-id", "bad id with spaces"))
        .send()
        .await
        .expect("sent");
    let id = response
        .headers()
        .get("x-request-id")
        .expect("id")
        .to_str()
        .expect("ascii");
    assert_ne!(id, "bad id with spaces");
    assert!(Uuid::parse_str(id).is_ok());
}

#[actix_web::test]
async fn bodies_over_the_limit_get_413_and_the_server_keeps_serving() {
    let mut settings = test_settings();
    settings.http.body_limit_bytes = 4096;
    let app = TestApp::spawn_with(settings).await;
    let user = app.user("Big").await;
    let huge = json!({ "text": "x".repeat(8192) }).to_string();
    let Answer { status, body, .. } = app
        .call("POST", "/post/create", Some(&user.token), Some(huge))
        .await;
    assert_error(status, &body, 413);
    let Answer { status, body, .. } = app
        .call(
            "POST",
            "/user/register",
            None,
            Some(format!("{{\"a\":\"{}\"}}", "y".repeat(1 << 20))),
        )
        .await;
    assert_error(status, &body, 413);
    let id = app.create_post(&user, "still serving").await;
    let (status, _) = app.get(&format!("/post/get/{id}"), None).await;
    assert_eq!(status, 200);
}

#[actix_web::test]
async fn expired_tokens_are_refused() {
    let mut settings = test_settings();
    settings.auth.token_ttl_secs = 0;
    let app = TestApp::spawn_with(settings).await;
    let user = app.user("Shortlived").await;
    let (status, body) = app.get("/post/feed", Some(&user.token)).await;
    assert_error(status, &body, 401);
}

#[actix_web::test]
async fn writes_outlast_the_broker_and_a_lost_database_gives_503_with_retry_after() {
    let app = TestApp::spawn().await;
    let user = app.user("Patient").await;

    // The broker goes away: writes still succeed (their events wait in the feed log), and
    // the health check says the broker is down.
    app.realtime
        .broker
        .send(herald::realtime::broker::actor::Close)
        .await
        .expect("broker answers");
    let Answer { status, body, .. } = app
        .call(
            "POST",
            "/post/create",
            Some(&user.token),
            Some(json!({"text": "hi"}).to_string()),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        app.relay_state().await.lag() >= 1,
        "the event waits in the log"
    );
    let Answer {
        status,
        body,
        headers,
    } = app.call("GET", "/health", None, None).await;
    assert_error(status, &body, 503);
    assert!(headers.contains_key("retry-after"));
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("broker down")),
        "{body}"
    );

    // The database goes away: reads get 503 too.
    herald::store::database::drop_database(&app.settings.database.url)
        .await
        .expect("drop");
    let Answer {
        status,
        body,
        headers,
    } = app
        .call("GET", &format!("/user/get/{}", user.id), None, None)
        .await;
    assert_error(status, &body, 503);
    assert_eq!(
        headers.get("retry-after").map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
}
