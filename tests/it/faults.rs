//! Fault tests: herald against brokers that go away and come back. Each test runs its own
//! private RabbitMQ nodes (see `support::private_broker`), never the shared broker, which the
//! other suites use meanwhile.

use std::time::Instant;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};

use crate::support::{PrivateCluster, DEADLINE};

/// A connection to `url`, or the error it ended with; never hangs past `DEADLINE`.
async fn try_connect(url: &str) -> Result<Connection, String> {
    match tokio::time::timeout(
        DEADLINE,
        Connection::connect(url, ConnectionProperties::default()),
    )
    .await
    {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {DEADLINE:?}")),
    }
}

async fn connect(url: &str) -> Connection {
    try_connect(url)
        .await
        .unwrap_or_else(|error| panic!("AMQP connects to {url}: {error}"))
}

/// The exchange the smoke test declares on one node and expects to see on the other.
const EXCHANGE: &str = "herald.faults.smoke";

/// Declares a durable, direct exchange; `passive` only checks that it exists.
async fn declare_exchange(
    connection: &Connection,
    exchange: &str,
    passive: bool,
) -> Result<(), lapin::Error> {
    let channel = connection.create_channel().await?;
    channel
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                durable: true,
                passive,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
}

/// The support's own check: private nodes boot, cluster, carry messages, go down and come
/// back, and leave nothing behind. Every fault test stands on this.
#[actix_web::test]
async fn private_broker_starts_stops_and_clusters() {
    let timer = Instant::now();
    let mut cluster = PrivateCluster::start("smoke", 2).await;
    let clustered = timer.elapsed();
    assert_ne!(cluster.node(0).port(), cluster.node(1).port());
    assert_eq!(
        cluster.urls(),
        [cluster.node(0).url(), cluster.node(1).url()]
    );

    // A message through node 1 (`node(0)`, the one node 2 joined): exchange, exclusive queue,
    // binding, confirmed publish, consume.
    let first = connect(&cluster.node(0).url()).await;
    declare_exchange(&first, EXCHANGE, false)
        .await
        .expect("the exchange is declared");
    let channel = first.create_channel().await.expect("channel");
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("queue");
    channel
        .queue_bind(
            queue.name().clone(),
            EXCHANGE.into(),
            "smoke".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("binding");
    let mut consumer = channel
        .basic_consume(
            queue.name().clone(),
            "smoke".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consumer");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    channel
        .basic_publish(
            EXCHANGE.into(),
            "smoke".into(),
            BasicPublishOptions::default(),
            b"hello",
            BasicProperties::default(),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    let delivery = tokio::time::timeout(DEADLINE, consumer.next())
        .await
        .expect("a delivery in time")
        .expect("the consumer is open")
        .expect("a delivery");
    assert_eq!(delivery.data, b"hello");
    delivery.ack(BasicAckOptions::default()).await.expect("ack");

    // Node 2 shares the cluster's metadata: the exchange declared on node 1 is there.
    let second = connect(&cluster.node(1).url()).await;
    declare_exchange(&second, EXCHANGE, true)
        .await
        .expect("node 2 sees the exchange declared on node 1");

    // Node 1's application stops: its clients are dropped and it refuses new ones; node 2
    // goes on.
    let timer = Instant::now();
    cluster.node(0).stop_app().await;
    let app_stopped = timer.elapsed();
    let disconnected = crate::support::eventually(|| {
        let first = &first;
        async move { !first.status().connected() }
    })
    .await;
    assert!(disconnected, "node 1's client is disconnected");
    let refused = try_connect(&cluster.node(0).url()).await;
    assert!(refused.is_err(), "node 1 refuses connections once stopped");
    declare_exchange(&connect(&cluster.node(1).url()).await, EXCHANGE, true)
        .await
        .expect("node 2 still serves, and still has the exchange");
    assert!(second.status().connected(), "node 2's client is untouched");

    // And back.
    let timer = Instant::now();
    cluster.node_mut(0).start_app().await;
    let app_started = timer.elapsed();
    declare_exchange(&connect(&cluster.node(0).url()).await, EXCHANGE, true)
        .await
        .expect("node 1 serves again, with the exchange");

    // Node 2 crashes and is booted again: it comes back into the cluster on its own (an
    // exchange declared on node 1 now shows on it; the first one, durable, would show on a
    // node back on its own too).
    let timer = Instant::now();
    cluster.node_mut(1).kill().await;
    let killed = timer.elapsed();
    assert!(
        try_connect(&cluster.node(1).url()).await.is_err(),
        "a killed node refuses connections"
    );
    let timer = Instant::now();
    cluster.node_mut(1).restart().await;
    let restarted = timer.elapsed();
    let after = format!("{EXCHANGE}.after-restart");
    declare_exchange(&connect(&cluster.node(0).url()).await, &after, false)
        .await
        .expect("an exchange is declared on node 1");
    declare_exchange(&connect(&cluster.node(1).url()).await, &after, true)
        .await
        .expect("node 2 is back in the cluster: it sees the new exchange");

    // Dropping the cluster stops every VM, running or not, and removes every directory.
    let leftovers: Vec<_> = cluster
        .nodes()
        .iter()
        .map(|node| {
            (
                node.os_pid().expect("a running node has a pid"),
                node.dir().to_owned(),
            )
        })
        .collect();
    let timer = Instant::now();
    cluster.node_mut(1).stop().await;
    let stopped = timer.elapsed();
    assert_eq!(cluster.node(1).os_pid(), None, "a stopped node has no VM");
    let timer = Instant::now();
    drop(cluster);
    let dropped = timer.elapsed();
    for (pid, dir) in leftovers {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "the VM {pid} is gone"
        );
        assert!(!dir.exists(), "{} is removed", dir.display());
    }
    eprintln!(
        "private cluster: booted and joined in {clustered:.1?}; stop_app {app_stopped:.1?}, \
         start_app {app_started:.1?}; kill {killed:.1?}, restart {restarted:.1?}; \
         stop {stopped:.1?}; dropped in {dropped:.1?}"
    );
}
