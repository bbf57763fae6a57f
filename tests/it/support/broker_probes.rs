//! Probes that ask RabbitMQ directly, from outside herald, what exists (queues, bindings,
//! routes), publish as another instance would, and break things behind herald's back.
//! Everything `rabbitmqctl` does is here.

use std::time::Duration;

use herald::config::Settings;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::Value;

/// A fresh AMQP connection for probing the broker from outside herald.
pub async fn amqp(settings: &Settings) -> Connection {
    Connection::connect(&settings.amqp.url, ConnectionProperties::default())
        .await
        .expect("AMQP connects")
}

/// Whether a queue exists. herald's session queues are exclusive, so from another connection a
/// passive declare of a live one fails with RESOURCE_LOCKED, and of a deleted one with NOT_FOUND.
pub async fn queue_exists(conn: &Connection, queue: &str) -> bool {
    let channel = conn.create_channel().await.expect("channel");
    let result = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await;
    match result {
        Ok(_) => true,
        Err(error) => match error.kind() {
            lapin::ErrorKind::ProtocolError(amqp) => match amqp.kind() {
                AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND) => false,
                AMQPErrorKind::Soft(AMQPSoftError::RESOURCELOCKED) => true,
                other => panic!("unexpected AMQP error for {queue}: {other:?}"),
            },
            other => panic!("unexpected error for {queue}: {other:?}"),
        },
    }
}

/// Whether the exchange routes `routing_key` anywhere (publishes a mandatory probe message).
pub async fn is_routed(conn: &Connection, exchange: &str, routing_key: &str) -> bool {
    let channel = conn.create_channel().await.expect("channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let confirm = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            br#"{"type":"probe"}"#,
            BasicProperties::default(),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    confirm.take_message().is_none()
}

/// How long one `rabbitmqctl` call may take before the test fails (each call boots an Erlang
/// VM: under a second on an idle machine, several on a loaded one).
const RABBITMQCTL_DEADLINE: Duration = Duration::from_secs(60);

/// Runs `rabbitmqctl` with `args` and returns its standard output. Awaited as a child process,
/// so the runtime (which also runs the server under test and the feed clients answering its
/// pings) keeps going meanwhile. Fails the test if it cannot run, exits non-zero, or takes
/// longer than [`RABBITMQCTL_DEADLINE`] (the child is killed then).
async fn rabbitmqctl(args: &[&str]) -> Vec<u8> {
    let child = tokio::process::Command::new("rabbitmqctl")
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(RABBITMQCTL_DEADLINE, child)
        .await
        .unwrap_or_else(|_| panic!("rabbitmqctl {args:?} took over {RABBITMQCTL_DEADLINE:?}"))
        .expect("rabbitmqctl runs");
    assert!(
        output.status.success(),
        "rabbitmqctl {args:?}: {}; stderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// The routing keys bound on `exchange`, with the queue each is bound to, as RabbitMQ lists
/// them (a probe that, unlike a mandatory publish, delivers nothing to anyone).
async fn bindings(exchange: &str) -> Vec<(String, String)> {
    let listing = rabbitmqctl(&[
        "list_bindings",
        "-q",
        "--formatter",
        "json",
        "source_name",
        "destination_name",
        "routing_key",
    ])
    .await;
    let rows: Value = serde_json::from_slice(&listing).expect("json listing");
    rows.as_array()
        .expect("array")
        .iter()
        .filter(|row| row["source_name"] == exchange)
        .map(|row| {
            (
                row["destination_name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                row["routing_key"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The key a celebrity's events travel under: in node mode with author shards, its shard
/// (bound once by every node for its link's life); otherwise `author.<id>`.
pub fn celebrity_key(settings: &Settings, author: uuid::Uuid) -> String {
    use herald::realtime::broker::shards::{shard_key, shard_of};
    let realtime = &settings.realtime;
    if realtime.queue_mode == herald::config::QueueMode::Node && realtime.author_shards > 0 {
        shard_key(shard_of(author, realtime.author_shards))
    } else {
        format!("author.{author}")
    }
}

/// How many queues have `key` bound on `exchange`.
pub async fn bound(exchange: &str, key: &str) -> usize {
    bindings(exchange)
        .await
        .iter()
        .filter(|(_, k)| k == key)
        .count()
}

/// Every queue on the broker, with whether it is exclusive and auto-delete and its arguments,
/// as RabbitMQ lists them (a JSON array of objects with those keys and `name`).
pub async fn queue_listing() -> Value {
    let listing = rabbitmqctl(&[
        "list_queues",
        "-q",
        "--formatter",
        "json",
        "name",
        "exclusive",
        "auto_delete",
        "arguments",
    ])
    .await;
    serde_json::from_slice(&listing).expect("json listing")
}

/// Deletes a queue on the broker's side, behind its owner's back.
pub async fn delete_queue(queue: &str) {
    rabbitmqctl(&["delete_queue", queue]).await;
}

/// Positions for raw messages: far above any a test's feed log reaches, increasing, so a
/// session takes each as new.
static RAW_POSITION: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(1 << 40);

/// Publishes a raw message to the exchange, as a relay would, at a position of its own (far
/// above the test's real ones: a session that takes one drops every real event after it).
pub async fn publish_raw(conn: &Connection, exchange: &str, routing_key: &str, body: &Value) {
    let seq = RAW_POSITION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let channel = conn.create_channel().await.expect("channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            body.to_string().as_bytes(),
            BasicProperties::default().with_message_id(seq.to_string().into()),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
}

/// Force-closes, on the broker's side, every AMQP connection herald opened for `exchange`
/// (herald names them `herald <exchange>`); returns how many were closed.
pub async fn force_close_herald_connections(exchange: &str) -> usize {
    let listing = rabbitmqctl(&["list_connections", "-q", "pid", "client_properties"]).await;
    let needle = format!("herald {exchange}\"");
    let pids: Vec<String> = String::from_utf8_lossy(&listing)
        .lines()
        .filter(|line| line.contains(&needle))
        .filter_map(|line| line.split('\t').next().map(str::to_owned))
        .collect();
    for pid in &pids {
        rabbitmqctl(&["close_connection", pid, "test: broker connection lost"]).await;
    }
    pids.len()
}
