//! Feed clients nobody at herald wrote: `tests/browser/feed_client.mjs` run under Node with
//! `@stomp/stompjs` 7 (over `ws` or `sockjs-client`), legacy `stompjs` 2.3 over `sockjs-client`,
//! or the `eventsource` package, printing one JSON line per thing that happens. Its packages
//! come from `bash tests/browser/install`; without them the test fails saying so.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use super::app::{TestApp, TestUser};
use super::DEADLINE;

fn script_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// One running client; dropping it kills the process.
pub struct NodeClient {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    /// The last `message-id` (or SSE `id`) seen, to check strictly increasing positions.
    last_seq: Option<i64>,
}

impl NodeClient {
    /// Starts a `kind` client (`stompjs-ws`, `stompjs-sockjs`, `legacy-sockjs`, `sse`) of `user`
    /// against `app`, with the script's `options`.
    pub async fn start(app: &TestApp, kind: &str, user: &TestUser, options: Value) -> NodeClient {
        let module = script_dir().join("node_modules/@stomp/stompjs/package.json");
        assert!(
            module.exists(),
            "the transport tests need tests/browser/node_modules: run `bash tests/browser/install` once"
        );
        let mut child = Command::new("node")
            .arg("feed_client.mjs")
            .arg(kind)
            .arg(&app.address)
            .arg(&user.token)
            .arg(options.to_string())
            .current_dir(script_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs (is Node.js installed?)");
        let stdout = child.stdout.take().expect("piped stdout");
        NodeClient {
            child,
            lines: BufReader::new(stdout).lines(),
            last_seq: None,
        }
    }

    /// The next line the client prints, within the deadline.
    pub async fn next(&mut self) -> Value {
        match tokio::time::timeout(DEADLINE * 3, self.lines.next_line()).await {
            Ok(Ok(Some(line))) => serde_json::from_str(&line)
                .unwrap_or_else(|_| panic!("the client printed something not JSON: {line}")),
            Ok(Ok(None)) => json!({ "exited": true }),
            Ok(Err(error)) => panic!("reading the client: {error}"),
            Err(_) => panic!("the client said nothing within {:?}", DEADLINE * 3),
        }
    }

    /// Waits until the client has subscribed; fails on anything else.
    pub async fn ready(&mut self) {
        let line = self.next().await;
        assert_eq!(
            line,
            json!({ "ready": true }),
            "expected the client to subscribe"
        );
    }

    /// The next feed event the client received, checked to come after the one before.
    pub async fn event(&mut self) -> Value {
        let line = self.next().await;
        let event = line
            .get("message")
            .unwrap_or_else(|| panic!("expected a feed event, got {line}"))
            .clone();
        let seq = event["seq"].as_i64().expect("events carry seq");
        let headers = &line["headers"];
        let id = headers
            .get("message-id")
            .or(headers.get("id"))
            .and_then(Value::as_str);
        assert_eq!(
            id,
            Some(seq.to_string().as_str()),
            "the id is the seq: {line}"
        );
        if let Some(last) = self.last_seq {
            if event["type"] == "feed.reset" {
                assert!(seq >= last, "a reset to {seq} after {last}");
            } else {
                assert!(
                    seq > last,
                    "position {seq} after {last}: out of order or twice"
                );
            }
        }
        self.last_seq = Some(seq);
        event
    }

    /// The next line must report an error (a STOMP ERROR, or a refused stream).
    pub async fn error(&mut self) -> String {
        let line = self.next().await;
        line.get("error")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("expected an error, got {line}"))
            .to_owned()
    }

    /// Whatever the client says within `within`, if anything (for "nothing more came").
    pub async fn said_within(&mut self, within: std::time::Duration) -> Option<Value> {
        match tokio::time::timeout(within, self.lines.next_line()).await {
            Ok(Ok(Some(line))) => Some(serde_json::from_str(&line).unwrap_or(Value::String(line))),
            Ok(Ok(None)) => Some(json!({ "exited": true })),
            Ok(Err(error)) => panic!("reading the client: {error}"),
            Err(_) => None,
        }
    }

    pub async fn stop(mut self) {
        drop(self.child.stdin.take());
        let _ = tokio::time::timeout(DEADLINE, self.child.wait()).await;
    }
}
