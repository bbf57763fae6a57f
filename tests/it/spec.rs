//! The protocol as documented, checked against a live herald. `docs/openapi.json`: schemathesis
//! (installed by `bash tests/spec/install`, which `bash tests/run` runs first) generates
//! requests for every operation, with a logged-in user's token and ids that exist, and checks
//! every answer's status, content type, headers and body against the document.
//! `docs/asyncapi.yaml`: the frames real feed sessions receive (live creates, edits and
//! deletes, a resume, a `feed.reset`) are validated against the document's message payloads,
//! and frames herald must never send are shown to fail that validation.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use awc::http::header::{HeaderMap, HeaderName, HeaderValue};
use awc::ws::CloseCode;
use jsonschema::{Draft, Validator};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use uuid::Uuid;

use crate::support::{self, Answer, FeedClient, TestApp};

/// The repository root, where the documents and the tools' virtualenv are.
const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// Test cases schemathesis generates per operation and phase: enough to reach every status an
/// operation documents, few enough for about a minute on a busy 2-core machine.
const MAX_EXAMPLES: u32 = 30;

/// The seed of schemathesis's data generation: every run generates the same requests.
const SEED: u32 = 20_251_127;

/// The whole schemathesis run may take this long before the test gives up on it.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

/// The password `TestApp::register` gives every user.
const PASSWORD: &str = "correct horse";

fn schemathesis() -> PathBuf {
    let tool = Path::new(REPO).join(".venv-tools/bin/schemathesis");
    assert!(
        tool.is_file(),
        "schemathesis is not installed at {}: run the tests with `bash tests/run`, which \
         installs it (or `bash tests/spec/install` alone; it pins the version in \
         tests/spec/requirements.txt)",
        tool.display()
    );
    tool
}

/// A directory of its own for one run's configuration and report; removed when the run
/// passed, kept (and named in the failure) when it did not.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let dir = std::env::temp_dir().join(format!("herald-spec-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        Scratch(dir)
    }

    fn keep(self) -> PathBuf {
        let dir = self.0.clone();
        std::mem::forget(self);
        dir
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// schemathesis's configuration for this run: ids that exist, bound to the parameters that
/// take them (each used in half of the cases; the other half stays generated), so the
/// operations reach their 200 and 403 answers and not only 404. Doomed posts are the only
/// ones `PUT /post/delete/{id}` gets, so `GET` and `PUT /post/update` keep theirs.
fn config(users: &[Uuid], kept_posts: &[Uuid], doomed_posts: &[Uuid]) -> String {
    let list = |ids: &[Uuid]| {
        ids.iter()
            .map(|id| format!("\"{id}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let bind = |operation: &str, parameter: &str, dictionary: &str| {
        format!(
            "[[operations]]\ninclude-operation-id = \"{operation}\"\n\
             parameters = {{ \"{parameter}\" = {{ dictionary = \"{dictionary}\", probability = 0.5 }} }}\n"
        )
    };
    [
        format!("[dictionaries.users]\nvalues = [{}]\n", list(users)),
        format!("[dictionaries.posts]\nvalues = [{}]\n", list(kept_posts)),
        format!("[dictionaries.doomed]\nvalues = [{}]\n", list(doomed_posts)),
        format!("[dictionaries.passwords]\nvalues = [\"{PASSWORD}\"]\n"),
        bind("userGet", "path.id", "users"),
        bind("friendSet", "path.user_id", "users"),
        bind("friendDelete", "path.user_id", "users"),
        bind("postGet", "path.id", "posts"),
        bind("postUpdate", "body.id", "posts"),
        bind("postDelete", "path.id", "doomed"),
        "[[operations]]\ninclude-operation-id = \"login\"\nparameters = { \
         \"body.id\" = { dictionary = \"users\", probability = 0.5 }, \
         \"body.password\" = { dictionary = \"passwords\", probability = 0.5 } }\n"
            .to_owned(),
    ]
    .join("\n")
}

/// The statuses herald answered, per operation ("METHOD /path" as the document spells it), as
/// schemathesis's ndjson report recorded them.
fn statuses_seen(report: &Path) -> BTreeMap<String, BTreeSet<u64>> {
    let text = std::fs::read_to_string(report).expect("schemathesis wrote its report");
    let mut seen: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    for line in text.lines() {
        let event: Value = serde_json::from_str(line).expect("the report is ndjson");
        let Some(recorder) = event.pointer("/ScenarioFinished/recorder") else {
            continue;
        };
        let Some(interactions) = recorder["interactions"].as_object() else {
            continue;
        };
        for (case, interaction) in interactions {
            let case = &recorder["cases"][case]["value"];
            let (Some(method), Some(path), Some(status)) = (
                case["method"].as_str(),
                case["path"].as_str(),
                interaction
                    .pointer("/response/status_code")
                    .and_then(Value::as_u64),
            ) else {
                continue;
            };
            seen.entry(format!("{method} {path}"))
                .or_default()
                .insert(status);
        }
    }
    seen
}

/// The lines of schemathesis's output from its summary on (or its last 60 lines).
fn summary(output: &str) -> String {
    let lines: Vec<&str> = output.lines().collect();
    let from = lines
        .iter()
        .position(|line| line.contains(" SUMMARY "))
        .unwrap_or(lines.len().saturating_sub(60));
    lines[from..].join("\n")
}

#[actix_web::test]
async fn http_answers_match_the_openapi_document() {
    let tool = schemathesis();
    let spec = Path::new(REPO).join("docs/openapi.json");
    let document: Value =
        serde_json::from_str(&std::fs::read_to_string(&spec).expect("docs/openapi.json"))
            .expect("docs/openapi.json is JSON");

    let mut settings = support::test_settings();
    // Short, so the 408 below comes quickly; schemathesis's bodies arrive whole at once.
    settings.http.body_timeout_secs = 1;
    let app = TestApp::spawn_with(settings).await;
    let me = app.user("Spec").await;
    let other = app.user("Other").await;
    let mine = app.create_post(&me, "mine, kept").await;
    let theirs = app.create_post(&other, "theirs").await;
    let mut doomed = vec![theirs];
    for i in 0..3 {
        doomed.push(app.create_post(&me, &format!("mine, doomed {i}")).await);
    }
    let scratch = Scratch::new();
    let config_path = scratch.0.join("schemathesis.toml");
    std::fs::write(
        &config_path,
        config(&[me.id, other.id], &[mine, theirs], &doomed),
    )
    .expect("config written");
    let report = scratch.0.join("report.ndjson");

    let mut command = tokio::process::Command::new(&tool);
    command
        .current_dir(&scratch.0)
        .arg("--config-file")
        .arg(&config_path)
        .arg("run")
        .arg(&spec)
        .args(["--url", &app.address])
        .args(["--header", &format!("Authorization: Bearer {}", me.token)])
        // Logging out would revoke the very token the run uses: `/logout` is held to the
        // document below, with a token of its own.
        .args(["--exclude-operation-id", "logout"])
        // Every check but positive_data_acceptance, which needs every schema-valid request
        // accepted: a birth date must also be no later than today and a real calendar day,
        // and a handshake must also be a WebSocket upgrade, neither of which a schema says.
        .args(["--checks", "all"])
        .args(["--exclude-checks", "positive_data_acceptance"])
        .args(["--max-examples", &MAX_EXAMPLES.to_string()])
        .args(["--seed", &SEED.to_string()])
        .args(["--workers", "1"])
        .args(["--request-timeout", "30"])
        .args(["--generation-database", "none"])
        .args(["--report", "ndjson"])
        .arg("--report-ndjson-path")
        .arg(&report)
        .arg("--no-color")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(RUN_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("schemathesis did not finish within {RUN_TIMEOUT:?}"))
        .expect("schemathesis runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() {
        let kept = scratch.keep();
        panic!(
            "herald's answers do not match docs/openapi.json ({}; config and report kept in \
             {}):\n{text}",
            output.status,
            kept.display()
        );
    }
    eprintln!("{}", summary(&text));

    // A pass must mean the operations were really exercised: each reached its success (the
    // socket's handshake, which schemathesis cannot upgrade, its refusal).
    let seen = statuses_seen(&report);
    let paths = document["paths"].as_object().expect("paths");
    for (path, item) in paths {
        for method in ["get", "post", "put"] {
            if item.get(method).is_none() {
                continue;
            }
            if path == "/logout" {
                continue;
            }
            let operation = format!("{} {path}", method.to_uppercase());
            let statuses = seen
                .get(&operation)
                .unwrap_or_else(|| panic!("schemathesis never called {operation}: {seen:?}"));
            let wanted = if path == "/post/feed/posted" {
                400
            } else {
                200
            };
            assert!(
                statuses.contains(&wanted),
                "{operation} never answered {wanted}: it answered {statuses:?}"
            );
        }
    }
    // The ids in the configuration reached the answers that need them (a 200 of the
    // operations that take an id, checked above, needs one too).
    for (operation, status) in [("PUT /post/update", 403), ("PUT /post/delete/{id}", 403)] {
        assert!(
            seen.get(operation).is_some_and(|s| s.contains(&status)),
            "{operation} never answered {status}: {:?}",
            seen.get(operation)
        );
    }

    // What schemathesis does not provoke, provoked here and held to the same document: a body
    // over the limit, one that does not arrive in time, a login flood, PostgreSQL gone.
    let openapi = OpenApi(document);
    let huge = json!({ "text": "x".repeat(app.settings.http.body_limit_bytes) }).to_string();
    let answer = app
        .call("POST", "/post/create", Some(&me.token), Some(huge))
        .await;
    openapi.conforms("POST", "/post/create", 413, &answer);
    openapi.conforms("POST", "/login", 408, &slow_body(app.port).await);
    let leaving = app.login(other.id).await;
    let answer = app.call("POST", "/logout", Some(&leaving), None).await;
    openapi.conforms("POST", "/logout", 200, &answer);
    let answer = app.call("POST", "/logout", Some(&leaving), None).await;
    openapi.conforms("POST", "/logout", 401, &answer);
    let wrong = json!({ "id": other.id, "password": "not the password" }).to_string();
    let mut throttled = None;
    for _ in 0..=app.settings.auth.login_failures_per_user_address {
        let answer = app.call("POST", "/login", None, Some(wrong.clone())).await;
        if answer.status == 429 {
            throttled = Some(answer);
            break;
        }
        openapi.conforms("POST", "/login", 400, &answer);
    }
    openapi.conforms(
        "POST",
        "/login",
        429,
        &throttled.expect("a 429 for a login flood"),
    );
    herald::store::database::drop_database(&app.settings.database.url)
        .await
        .expect("the test database dropped");
    let answer = app
        .call("GET", &format!("/user/get/{}", me.id), None, None)
        .await;
    openapi.conforms("GET", "/user/get/{id}", 503, &answer);
    let answer = app.call("GET", "/health", None, None).await;
    openapi.conforms("GET", "/health", 503, &answer);
}

/// A `POST /login` whose body never arrives whole, answered (408) once the deadline passes.
async fn slow_body(port: u16) -> Answer {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connects");
    stream
        .write_all(
            b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"id\": ",
        )
        .await
        .expect("request sent");
    let mut raw = Vec::new();
    tokio::time::timeout(support::DEADLINE, stream.read_to_end(&mut raw))
        .await
        .expect("answered and closed in time")
        .expect("read");
    let raw = String::from_utf8_lossy(&raw);
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP answer");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let mut headers = HeaderMap::new();
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            headers.append(
                HeaderName::from_bytes(name.trim().as_bytes()).expect("a header name"),
                HeaderValue::from_str(value.trim()).expect("a header value"),
            );
        }
    }
    Answer {
        status,
        body: serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_owned())),
        headers,
    }
}

/// docs/openapi.json, for answers checked outside schemathesis.
struct OpenApi(Value);

impl OpenApi {
    /// The value at `reference` (`#/...`) of the document.
    fn resolve<'a>(&'a self, value: &'a Value) -> &'a Value {
        match value["$ref"].as_str() {
            Some(reference) => {
                let pointer = reference.strip_prefix('#').expect("a local $ref");
                self.0.pointer(pointer).expect("the $ref resolves")
            }
            None => value,
        }
    }

    /// A validator for `schema`, whose `$ref`s point into the document's components.
    fn validator(&self, schema: &Value) -> Validator {
        let schema = json!({ "allOf": [schema], "components": self.0["components"] });
        jsonschema::options()
            .with_draft(Draft::Draft4)
            .build(&schema)
            .unwrap_or_else(|error| panic!("{schema} compiles: {error}"))
    }

    /// Asserts `answer` is one the document gives `method path`: its status listed, every
    /// header the document requires there present and valid, its body as documented.
    fn conforms(&self, method: &str, path: &str, status: u16, answer: &Answer) {
        assert_eq!(answer.status, status, "{method} {path}: {:?}", answer.body);
        let operation = &self.0["paths"][path][method.to_lowercase()];
        let response = operation["responses"]
            .get(status.to_string())
            .map(|response| self.resolve(response))
            .unwrap_or_else(|| panic!("docs/openapi.json gives {method} {path} no {status}"));
        for (name, header) in response["headers"].as_object().into_iter().flatten() {
            let header = self.resolve(header);
            let value = answer
                .headers
                .get(name.as_str())
                .and_then(|v| v.to_str().ok());
            let Some(value) = value else {
                assert!(
                    header["required"] != true,
                    "{method} {path} {status}: no {name} header"
                );
                continue;
            };
            let value = match header["schema"]["type"].as_str() {
                Some("integer") => value
                    .parse::<i64>()
                    .map(Value::from)
                    .unwrap_or(json!(value)),
                _ => json!(value),
            };
            let validator = self.validator(&header["schema"]);
            assert!(
                validator.is_valid(&value),
                "{method} {path} {status}: {name}: {value} does not match {}",
                header["schema"]
            );
        }
        let schema = &response["content"]["application/json"]["schema"];
        if schema.is_null() {
            // No content documented: the body must be empty.
            assert!(
                answer.body.is_null(),
                "{method} {path} {status}: an empty body is documented, got {}",
                answer.body
            );
            return;
        }
        let validator = self.validator(schema);
        let errors: Vec<String> = validator
            .iter_errors(&answer.body)
            .map(|error| error.to_string())
            .collect();
        assert!(
            errors.is_empty(),
            "{method} {path} {status}: {} does not match {schema}: {errors:?}",
            answer.body
        );
    }
}

/// docs/asyncapi.yaml, read for what a client receives on `/post/feed/posted`: one validator
/// per message the channel's subscribe operation lists.
struct AsyncApi {
    document: Value,
    /// (message name, i.e. the frame's `type`; the validator of its payload).
    messages: Vec<(String, Validator)>,
}

impl AsyncApi {
    const CHANNEL: &'static str = "/post/feed/posted";

    fn load() -> AsyncApi {
        let path = Path::new(REPO).join("docs/asyncapi.yaml");
        let text = std::fs::read_to_string(&path).expect("docs/asyncapi.yaml");
        let document: Value = serde_yaml_ng::from_str(&text).expect("docs/asyncapi.yaml is YAML");
        assert_eq!(document["asyncapi"], "2.6.0", "an AsyncAPI 2.6 document");
        let channel = &document["channels"][Self::CHANNEL];
        let listed = channel["subscribe"]["message"]["oneOf"]
            .as_array()
            .expect("the channel's subscribe lists its messages with oneOf");
        let messages = listed
            .iter()
            .map(|entry| {
                let reference = entry["$ref"].as_str().expect("a message $ref");
                let pointer = reference.strip_prefix('#').expect("a local $ref");
                let message = document.pointer(pointer).expect("the $ref resolves");
                let name = message["name"].as_str().expect("a message name").to_owned();
                // The payload, with the document's components beside it so its own `$ref`s
                // (`#/components/schemas/...`) resolve.
                let schema = json!({
                    "allOf": [{ "$ref": format!("{reference}/payload") }],
                    "components": document["components"],
                });
                let validator = jsonschema::options()
                    .with_draft(Draft::Draft7)
                    .build(&schema)
                    .unwrap_or_else(|error| panic!("the payload of {name} compiles: {error}"));
                (name, validator)
            })
            .collect();
        AsyncApi { document, messages }
    }

    /// Why `frame` is not a message of the channel (empty when it is one): it must match
    /// exactly one message's payload, the one named by its `type`.
    fn problems(&self, frame: &Value) -> Vec<String> {
        let matching: Vec<&str> = self
            .messages
            .iter()
            .filter(|(_, validator)| validator.is_valid(frame))
            .map(|(name, _)| name.as_str())
            .collect();
        match matching.as_slice() {
            [name] if frame["type"] == *name => Vec::new(),
            [name] => vec![format!("matches {name} but its type is {}", frame["type"])],
            [] => {
                let named = self
                    .messages
                    .iter()
                    .find(|(name, _)| frame["type"] == name.as_str());
                match named {
                    Some((name, validator)) => validator
                        .iter_errors(frame)
                        .map(|error| format!("{name}: {error} at {}", error.instance_path()))
                        .collect(),
                    None => vec![format!("no message is named {}", frame["type"])],
                }
            }
            several => vec![format!("matches several messages: {several:?}")],
        }
    }

    /// Asserts `frame` is a message of the channel; returns its name.
    fn check(&self, frame: &Value) -> String {
        let problems = self.problems(frame);
        assert!(
            problems.is_empty(),
            "a frame herald sent does not match docs/asyncapi.yaml: {frame}\n{}",
            problems.join("\n")
        );
        frame["type"].as_str().unwrap_or_default().to_owned()
    }

    /// The close codes the channel documents.
    fn close_codes(&self) -> BTreeSet<u64> {
        self.document["channels"][Self::CHANNEL]["x-close-codes"]
            .as_array()
            .expect("x-close-codes")
            .iter()
            .filter_map(|entry| entry["code"].as_u64())
            .collect()
    }

    /// The handshake's query parameters the channel's WebSocket binding documents.
    fn query_parameters(&self) -> BTreeSet<String> {
        self.document["channels"][Self::CHANNEL]["bindings"]["ws"]["query"]["properties"]
            .as_object()
            .expect("the ws binding's query")
            .keys()
            .cloned()
            .collect()
    }
}

/// `frame` without `field`.
fn without(frame: &Value, field: &str) -> Value {
    let mut frame = frame.clone();
    if let Some(object) = frame.as_object_mut() {
        object.remove(field);
    }
    frame
}

#[test]
fn the_asyncapi_document_refuses_what_herald_must_never_send() {
    let api = AsyncApi::load();
    // Its own examples are messages of the channel.
    let mut examples = 0;
    for message in api.document["components"]["messages"]
        .as_object()
        .expect("messages")
        .values()
    {
        for example in message["examples"].as_array().into_iter().flatten() {
            assert_eq!(
                api.check(&example["payload"]),
                message["name"].as_str().unwrap_or_default()
            );
            examples += 1;
        }
    }
    assert_eq!(examples, 4);

    let post = Uuid::new_v4().to_string();
    let author = Uuid::new_v4().to_string();
    let created = json!({
        "type": "post.created", "postId": post, "postText": "hi", "author_user_id": author, "seq": 7
    });
    assert!(
        api.problems(&created).is_empty(),
        "{:?}",
        api.problems(&created)
    );
    let mut zero_seq = created.clone();
    zero_seq["seq"] = json!(0);
    let mut text_seq = created.clone();
    text_seq["seq"] = json!("7");
    let mut bad_id = created.clone();
    bad_id["postId"] = json!("not-a-uuid");
    let mut extra = created.clone();
    extra["password_hash"] = json!("$argon2id$…");
    let mut unknown = created.clone();
    unknown["type"] = json!("post.liked");
    let mut refused = vec![
        ("a created post without seq", without(&created, "seq")),
        (
            "a created post without postText",
            without(&created, "postText"),
        ),
        ("a post event at position 0", zero_seq),
        ("a position as a string", text_seq),
        ("a post id that is no UUID", bad_id),
        ("a field the document does not list", extra),
        ("an unknown type", unknown),
    ];
    refused.push((
        "a deleted post that still carries its text",
        json!({
            "type": "post.deleted", "postId": post, "postText": "hi", "author_user_id": author,
            "seq": 8
        }),
    ));
    refused.push((
        "a reset without its position",
        json!({ "type": "feed.reset" }),
    ));
    refused.push((
        "the OTUS payload alone (herald always adds type and seq)",
        json!({ "postId": post, "postText": "hi", "author_user_id": author }),
    ));
    for (what, frame) in refused {
        assert!(
            !api.problems(&frame).is_empty(),
            "docs/asyncapi.yaml accepts {what}: {frame}"
        );
    }
}

#[actix_web::test]
async fn feed_frames_match_the_asyncapi_document() {
    let api = AsyncApi::load();
    let query = api.query_parameters();
    assert!(
        query.contains("since") && query.contains("token"),
        "the handshake's query parameters: {query:?}"
    );
    let mut settings = support::test_settings();
    settings.realtime.history_max_events = 3;
    let app = TestApp::spawn_with(settings).await;
    let (author, reader, mut feed) = app.author_and_follower().await;
    let mut names = BTreeMap::<String, usize>::new();
    let mut check = |frame: &Value| *names.entry(api.check(frame)).or_default() += 1;

    // Live: a post, its edit, its deletion.
    let post = app.create_post(&author, "live").await;
    check(&feed.next_event().await);
    let edit = json!({ "id": post, "text": "live, edited" });
    let (status, _) = app
        .put("/post/update", Some(&author.token), Some(&edit))
        .await;
    assert_eq!(status, 200);
    check(&feed.next_event().await);
    let (status, _) = app
        .put(&format!("/post/delete/{post}"), Some(&author.token), None)
        .await;
    assert_eq!(status, 200);
    check(&feed.next_event().await);
    let since = feed.last_seq().expect("a position");
    drop(feed);

    // A resume: what was written meanwhile comes from the log.
    let missed = app.create_post(&author, "missed").await;
    let edit = json!({ "id": missed, "text": "missed, edited" });
    assert_eq!(
        app.put("/post/update", Some(&author.token), Some(&edit))
            .await
            .0,
        200
    );
    app.relay_idle().await;
    let mut resumed = app.feed_since(&reader, since).await;
    for _ in 0..2 {
        let frame = resumed.next_event().await;
        assert!(
            frame["seq"].as_i64().is_some_and(|seq| seq > since),
            "{frame}"
        );
        check(&frame);
    }
    drop(resumed);

    // A gap beyond the history kept (3 events here): a reset.
    for i in 0..4 {
        app.create_post(&author, &format!("beyond {i}")).await;
    }
    app.relay_idle().await;
    let mut reset = app.feed_since(&reader, 0).await;
    let frame = reset.next_event().await;
    assert_eq!(frame["type"], "feed.reset", "{frame}");
    check(&frame);
    assert_eq!(
        names,
        BTreeMap::from([
            ("feed.reset".to_owned(), 1),
            ("post.created".to_owned(), 2),
            ("post.deleted".to_owned(), 1),
            ("post.updated".to_owned(), 2),
        ])
    );

    // The close code of a shutdown is one the document lists.
    let mut open = FeedClient::answering(app.raw_feed(&reader).await);
    app.stop().await;
    let reason = open.close_reason().await.expect("a close frame");
    assert_eq!(reason.code, CloseCode::Away);
    assert!(api.close_codes().contains(&1001), "{:?}", api.close_codes());
}
