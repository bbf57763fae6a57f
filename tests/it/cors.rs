//! Cross-origin requests (`http.cors_origins`): preflights answered or refused, headers on the
//! answers to listed origins only, the feed socket refused to other origins, and nothing at all
//! changed when the list is empty or the request has no `Origin`.

use std::time::Duration;

use awc::http::header::HeaderMap;

use crate::support::{test_settings, Answer, TestApp};

const ALLOWED: &str = "https://app.example.com";
const STRANGER: &str = "https://evil.example.com";

/// Sends `method path` with `headers` (and no body); returns what came back.
async fn send(app: &TestApp, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let method = awc::http::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = client.request(method, app.url(path));
    for (name, value) in headers {
        request = request.insert_header((*name, *value));
    }
    let mut response = request.send().await.expect("request sent");
    Answer::read(&mut response).await
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A header's comma-separated values, lower case.
fn listed(headers: &HeaderMap, name: &str) -> Vec<String> {
    header(headers, name)
        .unwrap_or_default()
        .split(',')
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty())
        .collect()
}

fn preflight<'a>(origin: &'a str, method: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("Origin", origin),
        ("Access-Control-Request-Method", method),
        (
            "Access-Control-Request-Headers",
            "authorization, content-type",
        ),
    ]
}

/// An error in the contract's shape: JSON with the message, the request id and the code.
fn assert_error(answer: &Answer, code: u16) {
    assert_eq!(answer.status, code, "{}", answer.body);
    assert_eq!(answer.body["code"], code, "{}", answer.body);
    assert!(answer.body["message"].is_string(), "{}", answer.body);
    assert!(answer.body["request_id"].is_string(), "{}", answer.body);
}

/// The headers of a WebSocket upgrade, for a request whose refusal is to be read.
fn upgrade<'a>(origin: Option<&'a str>, token: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut headers = vec![
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Authorization", token),
    ];
    if let Some(origin) = origin {
        headers.push(("Origin", origin));
    }
    headers
}

/// Opens the feed socket with `origin`; returns the status of the answer (101 if upgraded).
async fn open_feed(app: &TestApp, token: &str, origin: Option<&str>) -> u16 {
    let mut request = awc::Client::new()
        .ws(format!("ws://127.0.0.1:{}/post/feed/posted", app.port))
        .bearer_auth(token);
    if let Some(origin) = origin {
        request = request.origin(origin);
    }
    match request.connect().await {
        Ok((response, _framed)) => response.status().as_u16(),
        Err(awc::error::WsClientError::InvalidResponseStatus(status)) => status.as_u16(),
        Err(error) => panic!("websocket: {error}"),
    }
}

#[actix_web::test]
async fn listed_origins_get_cors_and_others_are_refused_where_it_matters() {
    let mut settings = test_settings();
    settings.http.cors_origins = vec![ALLOWED.to_owned(), "http://localhost:3000".to_owned()];
    let app = TestApp::spawn_with(settings).await;
    let user = app.user("Browser").await;
    let bearer = format!("Bearer {}", user.token);

    // A preflight from a listed origin is answered.
    let answer = send(&app, "OPTIONS", "/post/create", &preflight(ALLOWED, "POST")).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let h = &answer.headers;
    assert_eq!(header(h, "access-control-allow-origin"), Some(ALLOWED));
    for method in ["get", "post", "put"] {
        assert!(
            listed(h, "access-control-allow-methods").contains(&method.to_owned()),
            "{h:?}"
        );
    }
    for name in ["authorization", "content-type"] {
        assert!(
            listed(h, "access-control-allow-headers").contains(&name.to_owned()),
            "{h:?}"
        );
    }
    assert_eq!(header(h, "access-control-max-age"), Some("3600"));
    assert!(listed(h, "vary").contains(&"origin".to_owned()), "{h:?}");

    // A preflight from another origin, or for a method the API does not serve, is refused
    // with the API's error body, not a 404 or 500.
    for (origin, method) in [(STRANGER, "POST"), (ALLOWED, "DELETE")] {
        let answer = send(&app, "OPTIONS", "/post/create", &preflight(origin, method)).await;
        assert_error(&answer, 403);
        assert_eq!(
            header(&answer.headers, "access-control-allow-origin"),
            None,
            "{origin} {method}"
        );
    }
    // A preflight without an origin is malformed.
    let answer = send(
        &app,
        "OPTIONS",
        "/post/create",
        &[("Access-Control-Request-Method", "POST")],
    )
    .await;
    assert_error(&answer, 400);

    // An actual request from a listed origin gets the headers, and may read X-Feed-Seq.
    let answer = send(
        &app,
        "GET",
        "/post/feed",
        &[("Origin", ALLOWED), ("Authorization", &bearer)],
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let h = &answer.headers;
    assert_eq!(header(h, "access-control-allow-origin"), Some(ALLOWED));
    let exposed = listed(h, "access-control-expose-headers");
    for name in ["x-feed-seq", "x-request-id", "retry-after"] {
        assert!(exposed.contains(&name.to_owned()), "{h:?}");
    }
    assert!(header(h, "x-feed-seq").is_some(), "{h:?}");
    // Errors to a listed origin carry them too, so the page can read the error.
    let answer = send(&app, "GET", "/post/feed", &[("Origin", ALLOWED)]).await;
    assert_error(&answer, 401);
    assert_eq!(
        header(&answer.headers, "access-control-allow-origin"),
        Some(ALLOWED)
    );

    // Another origin's request is served, without the headers (the browser hides the answer);
    // a request without Origin (curl, native clients) is served as always.
    for headers in [
        vec![("Origin", STRANGER), ("Authorization", bearer.as_str())],
        vec![("Authorization", bearer.as_str())],
    ] {
        let answer = send(&app, "GET", "/post/feed", &headers).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(header(&answer.headers, "access-control-allow-origin"), None);
    }

    // Wrong methods that are no preflight still get 405 with Allow.
    for (method, headers) in [
        ("OPTIONS", vec![("Origin", ALLOWED)]),
        ("OPTIONS", vec![]),
        ("PATCH", vec![("Origin", ALLOWED)]),
    ] {
        let answer = send(&app, method, "/post/create", &headers).await;
        assert_error(&answer, 405);
        assert_eq!(header(&answer.headers, "allow"), Some("POST"), "{method}");
    }

    // The feed socket: refused to another origin (403, the API's error body), open to a
    // listed one and to clients that send no Origin.
    let answer = send(
        &app,
        "GET",
        "/post/feed/posted",
        &upgrade(Some(STRANGER), &bearer),
    )
    .await;
    assert_error(&answer, 403);
    assert_eq!(open_feed(&app, &user.token, Some(STRANGER)).await, 403);
    assert_eq!(open_feed(&app, &user.token, Some(ALLOWED)).await, 101);
    assert_eq!(
        open_feed(&app, &user.token, Some("http://localhost:3000")).await,
        101
    );
    assert_eq!(open_feed(&app, &user.token, None).await, 101);
    // herald's own page (served at /) is of herald's origin, listed or not.
    let own = format!("http://127.0.0.1:{}", app.port);
    assert_eq!(open_feed(&app, &user.token, Some(&own)).await, 101);
}

#[actix_web::test]
async fn a_star_admits_every_origin() {
    let mut settings = test_settings();
    settings.http.cors_origins = vec!["*".to_owned()];
    let app = TestApp::spawn_with(settings).await;
    let user = app.user("Anyone").await;

    let answer = send(&app, "OPTIONS", "/login", &preflight(STRANGER, "POST")).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        header(&answer.headers, "access-control-allow-origin"),
        Some("*")
    );
    let path = format!("/user/get/{}", user.id);
    let answer = send(&app, "GET", &path, &[("Origin", STRANGER)]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        header(&answer.headers, "access-control-allow-origin"),
        Some("*")
    );
    assert_eq!(open_feed(&app, &user.token, Some(STRANGER)).await, 101);
}

#[actix_web::test]
async fn without_cors_origins_nothing_changes() {
    let app = TestApp::spawn().await;
    let user = app.user("Native").await;

    // No CORS headers, and a preflight is just an OPTIONS the route does not serve.
    let path = format!("/user/get/{}", user.id);
    let answer = send(&app, "GET", &path, &[("Origin", ALLOWED)]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    for name in [
        "access-control-allow-origin",
        "access-control-expose-headers",
        "vary",
    ] {
        assert_eq!(header(&answer.headers, name), None, "{name}");
    }
    let answer = send(&app, "OPTIONS", "/post/create", &preflight(ALLOWED, "POST")).await;
    assert_error(&answer, 405);
    assert_eq!(header(&answer.headers, "access-control-allow-origin"), None);
    // And the feed socket checks no Origin.
    assert_eq!(open_feed(&app, &user.token, Some(STRANGER)).await, 101);
}
