//! `herald-broker-bench`: what RabbitMQ itself pays for herald's routing, measured on a broker
//! the caller names (a private node or cluster that `bench/broker` starts; never the shared one).
//!
//! - `rate`: `queue.bind` and `queue.unbind` per second on one queue, one at a time (each waits
//!   for its reply, as a lone connect's bind does) and pipelined (`--window` in flight on one
//!   channel, as herald's node binder sends them).
//! - `scale`: grows one node-like queue (exclusive, transient, on a direct exchange) to each of
//!   `--sizes` bindings and measures there the node's memory, a lone bind's and unbind's
//!   latency, and a publish's latency (publish → delivery to a consumer of that queue); then
//!   deletes the queue while another queue's publisher measures how long publishes stall.
//!
//! Every figure is printed as one JSON object per line on stdout.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use serde_json::json;

#[derive(Parser)]
struct Cli {
    /// AMQP URL of the broker to measure (a private node: this declares and deletes freely).
    #[arg(long)]
    url: String,
    /// Erlang node name, for `rabbitmqctl -n` (memory figures); none: memory is not read.
    #[arg(long)]
    node: Option<String>,
    /// A label carried into every output line (e.g. "single", "cluster").
    #[arg(long, default_value = "")]
    label: String,
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// Bind then unbind `--ops` distinct keys, sequentially and pipelined.
    Rate {
        #[arg(long, default_value_t = 5000)]
        ops: usize,
        #[arg(long, default_value_t = 512)]
        window: usize,
    },
    /// Messages through the exchange: `--messages` published (confirms pipelined) to one key
    /// bound by `--queues` queues, all consumed; msgs/s, deliveries/s, broker CPU per each.
    Throughput {
        #[arg(long, default_value_t = 100_000)]
        messages: usize,
        #[arg(long, default_value_t = 1)]
        queues: usize,
        #[arg(long, default_value_t = 300)]
        bytes: usize,
    },
    /// Grow one queue's bindings through `--sizes` and measure there.
    Scale {
        #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
        sizes: Vec<usize>,
        #[arg(long, default_value_t = 512)]
        window: usize,
        /// Lone binds, unbinds and publishes timed at each size.
        #[arg(long, default_value_t = 200)]
        samples: usize,
    },
}

const EXCHANGE: &str = "herald.brokerbench";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let conn = Connection::connect(&cli.url, ConnectionProperties::default())
        .await
        .context("connecting")?;
    let channel = conn.create_channel().await?;
    channel
        .exchange_declare(
            EXCHANGE.into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await?;
    match cli.what {
        What::Rate { ops, window } => rate(&cli, &channel, ops, window).await?,
        What::Throughput {
            messages,
            queues,
            bytes,
        } => throughput(&cli, &conn, messages, queues, bytes).await?,
        What::Scale {
            ref sizes,
            window,
            samples,
        } => scale(&cli, &conn, &channel, sizes, window, samples).await?,
    }
    let _ = conn.close(200, "done".into()).await;
    Ok(())
}

async fn declare_queue(channel: &Channel, name: &str) -> Result<()> {
    channel
        .queue_declare(
            name.into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

fn key(i: usize) -> String {
    // As long as herald's `author.<uuid>`.
    format!("author.00000000-0000-0000-0000-{i:012}")
}

async fn bind(channel: &Channel, queue: &str, key: &str) -> lapin::Result<()> {
    channel
        .queue_bind(
            queue.into(),
            EXCHANGE.into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
}

async fn unbind(channel: &Channel, queue: &str, key: &str) -> lapin::Result<()> {
    channel
        .queue_unbind(
            queue.into(),
            EXCHANGE.into(),
            key.into(),
            FieldTable::default(),
        )
        .await
}

/// Binds (or unbinds) keys `range` with up to `window` in flight; returns ops/s.
async fn pipelined(
    channel: &Channel,
    queue: &str,
    range: std::ops::Range<usize>,
    window: usize,
    binding: bool,
) -> Result<f64> {
    let n = range.len();
    let started = Instant::now();
    let mut calls = futures_util::stream::iter(range.map(|i| {
        let (channel, queue) = (channel.clone(), queue.to_owned());
        async move {
            let key = key(i);
            if binding {
                bind(&channel, &queue, &key).await
            } else {
                unbind(&channel, &queue, &key).await
            }
        }
    }))
    .buffered(window.max(1));
    while let Some(done) = calls.next().await {
        done?;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

async fn rate(cli: &Cli, channel: &Channel, ops: usize, window: usize) -> Result<()> {
    let queue = "herald.brokerbench.rate";
    declare_queue(channel, queue).await?;
    let pid = broker_pid(cli.node.as_deref());
    for (mode, w) in [("sequential", 1), ("pipelined", window)] {
        let cpu = cpu_ms(pid);
        let bind_rate = pipelined(channel, queue, 0..ops, w, true).await?;
        let bind_cpu = per_op(pid, cpu, ops);
        let cpu = cpu_ms(pid);
        let unbind_rate = pipelined(channel, queue, 0..ops, w, false).await?;
        let unbind_cpu = per_op(pid, cpu, ops);
        println!(
            "{}",
            json!({"label": cli.label, "test": "rate", "mode": mode, "window": w, "ops": ops,
                   "bind_per_sec": bind_rate.round(), "unbind_per_sec": unbind_rate.round(),
                   "broker_cpu_ms_per_bind": bind_cpu, "broker_cpu_ms_per_unbind": unbind_cpu})
        );
    }
    channel
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await?;
    Ok(())
}

/// The OS pid of the node's VM (the one `--node` names), to read its CPU time.
fn broker_pid(node: Option<&str>) -> Option<u32> {
    let out = Command::new("rabbitmqctl")
        .args(["-q", "-n", node?, "eval", "list_to_integer(os:getpid())."])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// User + system CPU time of a process so far, in ms.
fn cpu_ms(pid: Option<u32>) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid?)).ok()?;
    // Fields after the command (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks * 10.0) // USER_HZ is 100 on Linux
}

fn per_op(pid: Option<u32>, before: Option<f64>, ops: usize) -> Option<f64> {
    Some(round3((cpu_ms(pid)? - before?) / ops.max(1) as f64))
}

async fn throughput(
    cli: &Cli,
    conn: &Connection,
    messages: usize,
    queues: usize,
    bytes: usize,
) -> Result<()> {
    let publisher = conn.create_channel().await?;
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let mut consumers = Vec::new();
    for q in 0..queues {
        let channel = conn.create_channel().await?;
        let queue = format!("herald.brokerbench.tp.{q}");
        declare_queue(&channel, &queue).await?;
        bind(&channel, &queue, "tp").await?;
        let consumer = channel
            .basic_consume(
                queue.as_str().into(),
                "tp".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        consumers.push(tokio::spawn(async move {
            let mut consumer = consumer;
            let mut got = 0;
            while got < messages {
                match consumer.next().await {
                    Some(Ok(_)) => got += 1,
                    _ => break,
                }
            }
            drop(channel);
            got
        }));
    }
    let pid = broker_pid(cli.node.as_deref());
    let cpu = cpu_ms(pid);
    let payload = vec![b'x'; bytes];
    let started = Instant::now();
    let mut confirms = futures_util::stream::iter((0..messages).map(|_| {
        let (publisher, payload) = (publisher.clone(), payload.clone());
        async move {
            publisher
                .basic_publish(
                    EXCHANGE.into(),
                    "tp".into(),
                    BasicPublishOptions::default(),
                    &payload,
                    BasicProperties::default(),
                )
                .await?
                .await
        }
    }))
    .buffered(2048);
    while let Some(confirm) = confirms.next().await {
        confirm?;
    }
    let mut delivered = 0;
    for consumer in consumers {
        delivered += consumer.await?;
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu_total = cpu_ms(pid).zip(cpu).map(|(after, before)| after - before);
    println!(
        "{}",
        json!({"label": cli.label, "test": "throughput", "queues": queues, "bytes": bytes,
               "messages": messages, "delivered": delivered,
               "msgs_per_sec": (messages as f64 / secs).round(),
               "deliveries_per_sec": (delivered as f64 / secs).round(),
               "broker_cpu_ms_per_msg": cpu_total.map(|c| round3(c / messages as f64)),
               "broker_cpu_us_per_delivery": cpu_total.map(|c| round3(c * 1e3 / delivered.max(1) as f64)),
               "broker_cores_busy": cpu_total.map(|c| round3(c / 1e3 / secs))})
    );
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn summary(mut samples: Vec<f64>) -> serde_json::Value {
    samples.sort_by(|a, b| a.total_cmp(b));
    json!({"p50_ms": round3(percentile(&samples, 0.5)), "p99_ms": round3(percentile(&samples, 0.99)),
           "max_ms": round3(percentile(&samples, 1.0))})
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// `rabbitmqctl eval` on the node, parsed as an integer.
fn eval(node: &str, expr: &str) -> Option<u64> {
    let out = Command::new("rabbitmqctl")
        .args(["-q", "-n", node, "eval", expr])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn memory(node: Option<&str>) -> serde_json::Value {
    let Some(node) = node else {
        return json!(null);
    };
    let total = eval(node, "erlang:memory(total).");
    // Transient bindings live in these mnesia RAM tables (ets), on every node of a cluster.
    let routes = eval(
        node,
        "lists:sum([mnesia:table_info(T, memory) || T <- [rabbit_route, rabbit_reverse_route]]) \
         * erlang:system_info(wordsize).",
    );
    json!({"total_mib": total.map(|b| b / (1 << 20)), "route_tables_mib": routes.map(|b| b / (1 << 20))})
}

/// Publishes `samples` messages one at a time to `key` and times each until the consumer has it.
async fn publish_latency(
    channel: &Channel,
    consumer: &mut lapin::Consumer,
    key: &str,
    samples: usize,
) -> Result<Vec<f64>> {
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        channel
            .basic_publish(
                EXCHANGE.into(),
                key.into(),
                BasicPublishOptions::default(),
                b"x",
                BasicProperties::default(),
            )
            .await?;
        let delivery = tokio::time::timeout(Duration::from_secs(60), consumer.next())
            .await
            .context("no delivery within 60 s")?
            .context("consumer ended")??;
        times.push(started.elapsed().as_secs_f64() * 1e3);
        delivery.ack(BasicAckOptions::default()).await?;
    }
    Ok(times)
}

async fn scale(
    cli: &Cli,
    conn: &Connection,
    channel: &Channel,
    sizes: &[usize],
    window: usize,
    samples: usize,
) -> Result<()> {
    let label = &cli.label;
    let queue = "herald.brokerbench.node";
    declare_queue(channel, queue).await?;
    let consume_channel = conn.create_channel().await?;
    let mut consumer = consume_channel
        .basic_consume(
            queue.into(),
            "bench".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    println!(
        "{}",
        json!({"label": label, "test": "scale", "bindings": 0, "memory": memory(cli.node.as_deref())})
    );
    let mut bound = 0;
    for &size in sizes {
        if size < bound {
            bail!("--sizes must rise");
        }
        let grow_rate = pipelined(channel, queue, bound..size, window, true).await?;
        bound = size;
        let probe_key = key(0);
        let publish = publish_latency(channel, &mut consumer, &probe_key, samples).await?;
        let (mut binds, mut unbinds) = (Vec::new(), Vec::new());
        for i in 0..samples {
            let fresh = key(size + 1 + i);
            let t = Instant::now();
            bind(channel, queue, &fresh).await?;
            binds.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            unbind(channel, queue, &fresh).await?;
            unbinds.push(t.elapsed().as_secs_f64() * 1e3);
        }
        println!(
            "{}",
            json!({"label": label, "test": "scale", "bindings": size,
                   "grow_binds_per_sec": grow_rate.round(),
                   "memory": memory(cli.node.as_deref()),
                   "publish_to_delivery": summary(publish),
                   "lone_bind": summary(binds), "lone_unbind": summary(unbinds)})
        );
    }
    // A node queue with all its bindings goes (a herald node restarts): how long does that
    // take, and how long do publishes on the same exchange stall meanwhile?
    let side = conn.create_channel().await?;
    side.confirm_select(ConfirmSelectOptions::default()).await?;
    let side_queue = "herald.brokerbench.side";
    declare_queue(&side, side_queue).await?;
    bind(&side, side_queue, "side").await?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let prober = {
        let (side, stop) = (side.clone(), stop.clone());
        tokio::spawn(async move {
            let mut worst = 0f64;
            let mut count = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = Instant::now();
                let confirm = side
                    .basic_publish(
                        EXCHANGE.into(),
                        "side".into(),
                        BasicPublishOptions::default(),
                        b"x",
                        BasicProperties::default(),
                    )
                    .await;
                if let Ok(confirm) = confirm {
                    let _ = confirm.await;
                }
                worst = worst.max(t.elapsed().as_secs_f64() * 1e3);
                count += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (worst, count)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = Instant::now();
    channel
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await?;
    let delete_ms = t.elapsed().as_secs_f64() * 1e3;
    // A bind elsewhere right after: does the metadata store answer again?
    let t = Instant::now();
    bind(&side, side_queue, "side.after").await?;
    let bind_after_ms = t.elapsed().as_secs_f64() * 1e3;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (worst_confirm_ms, probes) = prober.await?;
    println!(
        "{}",
        json!({"label": label, "test": "delete_queue", "bindings": bound,
               "delete_ms": round3(delete_ms), "bind_after_ms": round3(bind_after_ms),
               "worst_publish_confirm_ms": round3(worst_confirm_ms), "probes": probes,
               "memory_after": memory(cli.node.as_deref())})
    );
    Ok(())
}
