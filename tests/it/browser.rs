//! The browser client (`web/`, served at `/`) in real headless Chromium: a herald with its own
//! database and exchange, and `tests/browser/feed.mjs` (playwright-core driving Debian's
//! `chromium`) playing two people in two browser contexts against it. What the script checks
//! is written at its top; this test starts it, bounds it in time and reports its output.
//! Chromium and the script's `node_modules` come from `bash tests/browser/install`, which
//! `bash tests/run` runs first: without them the test fails saying so, it never skips.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::support::{test_settings, TestApp};

/// How long the whole browser scenario may take: about 20 s on an idle machine, several times
/// that on a loaded one.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(300);

/// The Chromium the script drives (`HERALD_CHROMIUM` overrides it, for the script too).
fn chromium() -> PathBuf {
    std::env::var_os("HERALD_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

fn script_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Fails the test, naming the fix, when what the script needs is not installed.
fn require_browser_tooling() {
    let missing: Vec<String> = [
        chromium(),
        script_dir().join("node_modules/playwright-core/package.json"),
    ]
    .into_iter()
    .filter(|path| !path.exists())
    .map(|path| path.display().to_string())
    .collect();
    assert!(
        missing.is_empty(),
        "the browser test needs {} (missing): run the tests with `bash tests/run`, which \
         installs them (or `bash tests/browser/install` alone)",
        missing.join(" and ")
    );
}

#[actix_web::test]
async fn two_people_in_chromium_follow_post_edit_delete_and_resume_live() {
    require_browser_tooling();
    let mut settings = test_settings();
    // Small enough that the script can run past it: a resume over a longer gap gets
    // `feed.reset`, which the page answers by reloading its feed.
    settings.realtime.history_max_events = 3;
    let app = TestApp::spawn_with(settings).await;
    let screenshot =
        std::env::temp_dir().join(format!("herald-browser-{}.png", uuid::Uuid::new_v4()));

    let started = Instant::now();
    let run = tokio::process::Command::new("node")
        .arg("feed.mjs")
        .arg(&app.address)
        .current_dir(script_dir())
        .env("HERALD_CHROMIUM", chromium())
        .env("HERALD_SCREENSHOT", &screenshot)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(SCRIPT_DEADLINE, run)
        .await
        .unwrap_or_else(|_| panic!("the browser script took over {SCRIPT_DEADLINE:?}"))
        .expect("node runs (is Node.js installed?)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser script failed ({}) after {:.1?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status,
        started.elapsed(),
    );
    println!(
        "browser scenario passed in {:.1?}; screenshot of the follower's page: {}\n{stdout}",
        started.elapsed(),
        screenshot.display()
    );
    app.stop().await;
}

#[actix_web::test]
async fn the_client_files_are_served_with_their_type_cache_and_security_headers() {
    let app = TestApp::spawn().await;
    for (path, content_type, snippet) in [
        ("/", "text/html; charset=utf-8", "<script src=\"/app.js\""),
        (
            "/app.js",
            "text/javascript; charset=utf-8",
            "/post/feed/posted",
        ),
        ("/app.css", "text/css; charset=utf-8", ".connection"),
    ] {
        let answer = app.call("GET", path, None, None).await;
        assert_eq!(answer.status, 200, "GET {path}");
        let header = |name: &str| {
            answer
                .headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(header("content-type"), content_type, "GET {path}");
        assert_eq!(header("cache-control"), "no-cache", "GET {path}");
        assert_eq!(header("x-content-type-options"), "nosniff", "GET {path}");
        let policy = header("content-security-policy");
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(policy.contains(directive), "GET {path}: {policy}");
        }
        let body = answer.body.as_str().unwrap_or_default();
        assert!(body.contains(snippet), "GET {path} serves the file");
    }
    let answer = app.call("POST", "/", None, Some("{}".into())).await;
    assert_eq!(answer.status, 405);
    assert_eq!(
        answer.headers.get("allow").map(|v| v.as_bytes()),
        Some(&b"GET"[..])
    );
    assert_eq!(app.get("/app.mjs", None).await.0, 404);
    app.stop().await;
}

#[actix_web::test]
async fn the_stomp_test_page_reads_the_feed_over_sockjs_stomp_and_sse_in_chromium() {
    require_browser_tooling();
    let app = TestApp::spawn().await;
    let run = tokio::process::Command::new("node")
        .arg("stomp_page.mjs")
        .arg(&app.address)
        .current_dir(script_dir())
        .env("HERALD_CHROMIUM", chromium())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(SCRIPT_DEADLINE, run)
        .await
        .unwrap_or_else(|_| panic!("the page script took over {SCRIPT_DEADLINE:?}"))
        .expect("node runs (is Node.js installed?)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the page script failed ({})\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status,
    );
    for transport in ["sockjs", "stomp", "sse"] {
        assert!(
            stdout.contains(&format!("{transport}: the page listed")),
            "{stdout}"
        );
    }
}
