//! `/metrics`: the Prometheus text a scraper reads, checked against what really happened on a
//! fresh instance (its own registry): one session, one post delivered, one close.

use awc::ws::{CloseCode, CloseReason, Message};
use herald::config::QueueMode;

use crate::support::{FeedClient, TestApp};

in_both_modes!(the_metrics_count_what_happened);

/// The value of the sample `series` (name and labels exactly as rendered), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok())?
        })
}

async fn scrape(app: &TestApp) -> String {
    let answer = app.call("GET", "/metrics", None, None).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let content_type = answer
        .headers
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    answer.body.as_str().unwrap_or_default().to_owned()
}

async fn the_metrics_count_what_happened(mode: QueueMode) {
    let app = TestApp::spawn_in(mode).await;
    let (author, _reader, mut feed) = app.author_and_follower().await;
    // A first post, once received, means the session's first fill is over: the next frame is
    // written live (a frame held while a fill runs is written with it, untimed).
    let warm_up = app.create_post(&author, "warm-up").await;
    feed.expect_created(warm_up, &author, "warm-up").await;
    // The client may have had it from that fill, with its live copy (counted as a delivery when
    // handed, then dropped as a duplicate) still on its way: counts start once it was handed.
    let handed = "herald_feed_stage_seconds_count{stage=\"registry\"}";
    assert!(
        app.eventually(|| async { sample(&scrape(&app).await, handed) >= Some(1.0) })
            .await,
        "the warm-up's live copy was never handed to the session"
    );
    let before = scrape(&app).await;
    // The commit stage is the one stamp the relay takes from the writer's note. Every wake-up
    // of the relay by a write comes after that note (writes no longer NOTIFY in their own
    // transaction), but the relay also numbers on its one-second idle tick, which can fall
    // between a post's commit and its writer's note: that event then goes untimed for that
    // stage, by design (see `realtime::trace`). Rare, but a test must not flake on it, so
    // measured posts are sent, each awaited, until one has been timed through it: at most
    // five, and every other count below is per post.
    let committed = "herald_feed_stage_seconds_count{stage=\"commit\"}";
    let mut measured = 0.0;
    loop {
        let post = app.create_post(&author, "measured").await;
        feed.expect_created(post, &author, "measured").await;
        measured += 1.0;
        // The frame is counted and timed before it is written; the relay's confirm (and the
        // commit stage, observed as the relay publishes) may come later.
        let confirmed = "herald_feed_stage_seconds_count{stage=\"confirm\"}";
        let grown = |series: &str, text: &str| {
            sample(text, series).unwrap_or(0.0) - sample(&before, series).unwrap_or(0.0)
        };
        assert!(
            app.eventually(|| async { grown(confirmed, &scrape(&app).await) >= measured })
                .await,
            "the measured post's confirm was never timed"
        );
        if grown(committed, &scrape(&app).await) >= 1.0 || measured >= 5.0 {
            break;
        }
    }
    let mode_label = mode.as_str();
    let text = scrape(&app).await;
    let at = |series: &str| sample(&text, series);
    let grew = |series: &str| at(series).unwrap_or(0.0) - sample(&before, series).unwrap_or(0.0);
    assert_eq!(
        at(&format!("herald_sessions{{mode=\"{mode_label}\"}}")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(at("herald_session_connects_total"), Some(1.0), "{text}");
    assert_eq!(grew("herald_feed_deliveries_total"), measured, "{text}");
    assert_eq!(at("herald_broker_link_up"), Some(1.0), "{text}");
    assert_eq!(at("herald_relay_leading"), Some(1.0), "{text}");
    assert!(
        grew("herald_broker_messages_published_total") >= 1.0,
        "{text}"
    );
    assert!(
        grew("herald_broker_confirms_total{outcome=\"ack\"}") >= 1.0,
        "{text}"
    );
    // The post's frame was timed through every stage, and written once.
    assert_eq!(
        grew("herald_feed_delivery_seconds_count"),
        measured,
        "{text}"
    );
    assert_eq!(
        grew("herald_feed_first_delivery_seconds_count"),
        measured,
        "{text}"
    );
    for stage in [
        "commit", "pickup", "publish", "broker", "registry", "socket", "confirm",
    ] {
        let series = format!("herald_feed_stage_seconds_count{{stage=\"{stage}\"}}");
        assert!(grew(&series) >= 1.0, "stage {stage}\n{text}");
    }
    // HTTP requests by route pattern (never the raw path) and status.
    assert_eq!(
        at("herald_http_requests_total{method=\"POST\",route=\"/post/create\",status=\"200\"}"),
        Some(1.0 + measured),
        "{text}"
    );
    assert!(at(
        "herald_http_request_duration_seconds_count{method=\"POST\",route=\"/post/create\"}"
    )
    .is_some_and(|n| n >= 1.0));
    let (status, _) = app
        .get(&format!("/user/get/{}", uuid::Uuid::new_v4()), None)
        .await;
    assert!(status >= 400, "{status}");
    let text = scrape(&app).await;
    let series = format!(
        "herald_http_requests_total{{method=\"GET\",route=\"/user/get/{{id}}\",status=\"{status}\"}}"
    );
    assert_eq!(sample(&text, &series), Some(1.0), "{text}");

    // A client that closes with 1000 is counted under that code once its session stops.
    close_normally(&mut feed).await;
    let closed = "herald_session_disconnects_total{code=\"1000\"}";
    assert!(
        app.eventually(|| async { sample(&scrape(&app).await, closed) == Some(1.0) })
            .await,
        "{}",
        scrape(&app).await
    );
}

async fn close_normally(feed: &mut FeedClient) {
    feed.send(Message::Close(Some(CloseReason {
        code: CloseCode::Normal,
        description: None,
    })))
    .await;
    assert!(feed.close_reason().await.is_some());
}
