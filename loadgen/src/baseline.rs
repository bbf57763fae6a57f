//! `baseline` (S5): the herald-free ceiling. lapin alone publishes feed-sized messages through
//! a direct exchange, round-robin over `user.<uuid>` routing keys bound to one consumer queue,
//! with publishes and confirms pipelined, and consumes them with manual acks sent in batches
//! (`multiple`) — the same techniques herald's fan-out and node queue use, so the figure is a
//! fair ceiling. The exchange is this run's own and is deleted at the end, whatever happened.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_util::{FutureExt, StreamExt};
use herald::realtime::broker::pipeline::{self, Started};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use serde::Deserialize;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::interrupt::Interrupt;
use crate::report::{self, BaselineFigures, Finished, Report};
use crate::seed::redact;
use crate::stats::{per_second, Summary};
use crate::{seconds_arg, BaselineArgs};

pub async fn run(args: BaselineArgs, interrupt: &Interrupt) -> Result<Finished> {
    let command = report::command_line();
    let started_at = chrono::Utc::now().to_rfc3339();
    if args.keys == 0 || args.messages == 0 {
        bail!("the baseline cannot start: --keys and --messages must be positive");
    }
    let patience = seconds_arg("--timeout-secs", args.timeout_secs.max(1.0))
        .context("the baseline cannot start")?;
    let connection = interrupt
        .guard(async {
            Connection::connect(
                &args.amqp_url,
                ConnectionProperties::default()
                    .with_connection_name("herald-loadgen baseline".into()),
            )
            .await
            .with_context(|| format!("connecting to RabbitMQ at {}", redact(&args.amqp_url)))
        })
        .await?;
    let exchange = format!("herald.baseline.{}", std::process::id());
    let setup = connection
        .create_channel()
        .await
        .context("opening a channel")?;
    setup
        .exchange_declare(
            exchange.as_str().into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("declaring exchange {exchange}"))?;
    let measured = interrupt
        .guard(measure(&connection, &exchange, &args, patience))
        .await;
    if let Err(error) = setup
        .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
        .await
    {
        eprintln!("warning: could not delete exchange {exchange}: {error}");
    }
    let _ = connection.close(200, "baseline done".into()).await;
    let mut report = Report {
        label: args.output.label.clone(),
        kind: "baseline",
        command,
        started_at,
        note:
            "latency = basic.publish issued -> delivery read by the consumer (same process clock)",
        params: serde_json::json!({ "args": &args, "exchange": exchange }),
        passed: false,
        failures: Vec::new(),
        aborted: None,
        figures: BaselineFigures::default(),
    };
    let figures = match measured {
        Ok(figures) => figures,
        Err(error) => {
            // Nothing was measured to the end; the report still says what was tried and why
            // it stopped.
            let why = format!("{error:#}");
            report.failures.push(format!("the baseline stopped: {why}"));
            report.aborted = Some(why);
            match report::write(&args.output.out, &report) {
                Ok((json_path, _)) => eprintln!(
                    "herald-loadgen: wrote a report of the failed baseline to {}",
                    json_path.display()
                ),
                Err(write_error) => eprintln!(
                    "herald-loadgen: could not write a report of the failed baseline either: \
                     {write_error:#}"
                ),
            }
            return Err(error);
        }
    };

    if figures.missing > 0 {
        report.failures.push(format!(
            "{} of {} messages never consumed within --timeout-secs",
            figures.missing, figures.messages
        ));
    }
    report.passed = report.failures.is_empty();
    report.figures = figures;
    let (json_path, _) = report::write(&args.output.out, &report)?;
    report::print(&report);
    eprintln!("wrote {}", json_path.display());
    Ok(Finished {
        failures: report.failures,
        report: json_path,
    })
}

#[derive(Deserialize)]
struct Stamp {
    #[serde(rename = "sentNanos")]
    sent_nanos: u64,
}

async fn measure(
    connection: &Connection,
    exchange: &str,
    args: &BaselineArgs,
    patience: Duration,
) -> Result<BaselineFigures> {
    let consuming = connection
        .create_channel()
        .await
        .context("opening a channel")?;
    consuming
        .basic_qos(args.prefetch, BasicQosOptions::default())
        .await
        .context("basic.qos")?;
    let queue = consuming
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
        .context("declaring the consumer queue")?;
    let keys: Vec<String> = (0..args.keys)
        .map(|_| format!("user.{}", Uuid::new_v4()))
        .collect();
    for key in &keys {
        consuming
            .queue_bind(
                queue.name().clone(),
                exchange.into(),
                key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .with_context(|| format!("binding {key}"))?;
    }
    let consumer = consuming
        .basic_consume(
            queue.name().clone(),
            "herald-loadgen-baseline".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .context("basic.consume")?;

    let base = Instant::now();
    let expected = u64::from(args.messages);
    // The consumer gets a thread and runtime of its own, so the publisher (on this thread)
    // never slows it down: the figure is the broker's ceiling, not the loadgen's.
    let (consumed_tx, consumed_rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("baseline-consumer".into())
        .spawn(move || {
            let consumed = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the consumer's runtime")
                .and_then(|runtime| runtime.block_on(consume(consumer, expected, base, patience)));
            let _ = consumed_tx.send(consumed);
        })
        .context("spawning the consumer thread")?;

    let publish = connection
        .create_channel()
        .await
        .context("opening a channel")?;
    publish
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .context("confirm.select")?;
    let first_publish = Instant::now();
    publish_all(&publish, exchange, &keys, base, args)
        .await
        .context("publishing")?;
    let publish_seconds = first_publish.elapsed().as_secs_f64();

    let (mut latencies, last) = consumed_rx
        .await
        .context("the consumer thread died without a result (a panic? see above)")?
        .context("consuming")?;
    let received = latencies.len() as u64;
    let seconds = last.map_or(0.0, |last| {
        last.saturating_duration_since(first_publish).as_secs_f64()
    });
    Ok(BaselineFigures {
        keys: u64::from(args.keys),
        messages: expected,
        received,
        missing: expected.saturating_sub(received),
        publish_seconds,
        seconds,
        per_sec: per_second(received, seconds),
        latency_ms: Some(Summary::of(&mut latencies)),
    })
}

/// Consumes until `expected` deliveries arrived or `patience` passed, acking each one;
/// returns each delivery's latency (ms) and when the last arrived.
async fn consume(
    mut consumer: lapin::Consumer,
    expected: u64,
    base: Instant,
    patience: Duration,
) -> Result<(Vec<f64>, Option<Instant>)> {
    let deadline = tokio::time::Instant::now() + patience;
    let mut latencies = Vec::with_capacity(expected as usize);
    let mut last = None;
    let mut unacked: Option<lapin::Acker> = None;
    let mut unacked_count = 0u32;
    while (latencies.len() as u64) < expected {
        // Ack everything taken so far whenever nothing more is ready right now.
        let next = match consumer.next().now_or_never() {
            Some(next) => next,
            None => {
                if let Some(acker) = unacked.take() {
                    ack_through(&acker).await?;
                    unacked_count = 0;
                }
                match tokio::time::timeout_at(deadline, consumer.next()).await {
                    Ok(next) => next,
                    Err(_) => break,
                }
            }
        };
        let delivery = match next {
            Some(Ok(delivery)) => delivery,
            Some(Err(error)) => bail!("consuming: {error}"),
            None => break,
        };
        let at = Instant::now();
        if let Ok(stamp) = serde_json::from_slice::<Stamp>(&delivery.data) {
            let sent = base + Duration::from_nanos(stamp.sent_nanos);
            latencies.push(at.saturating_duration_since(sent).as_secs_f64() * 1000.0);
            last = Some(at);
        }
        unacked = Some(delivery.acker);
        unacked_count += 1;
        if unacked_count >= 256 {
            if let Some(acker) = unacked.take() {
                ack_through(&acker).await?;
            }
            unacked_count = 0;
        }
    }
    if let Some(acker) = unacked.take() {
        ack_through(&acker).await?;
    }
    Ok((latencies, last))
}

async fn ack_through(acker: &lapin::Acker) -> Result<()> {
    acker
        .ack(BasicAckOptions { multiple: true })
        .await
        .context("acking")?;
    Ok(())
}

/// Publishes every message, keeping at most `in_flight` unconfirmed.
async fn publish_all(
    channel: &Channel,
    exchange: &str,
    keys: &[String],
    base: Instant,
    args: &BaselineArgs,
) -> Result<()> {
    let properties = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(1);
    let author = Uuid::new_v4();
    let mut pending = VecDeque::with_capacity(args.in_flight);
    for seq in 0..args.messages {
        let body = serde_json::json!({
            "type": "post.created",
            "postId": Uuid::new_v4(),
            "postText": format!("baseline #{seq}"),
            "author_user_id": author,
            "sentNanos": base.elapsed().as_nanos() as u64,
        })
        .to_string();
        let key = keys[seq as usize % keys.len()].clone();
        let publish = {
            let (channel, exchange, properties) =
                (channel.clone(), exchange.to_owned(), properties.clone());
            async move {
                channel
                    .basic_publish(
                        exchange.as_str().into(),
                        key.as_str().into(),
                        BasicPublishOptions::default(),
                        body.as_bytes(),
                        properties,
                    )
                    .await
            }
        };
        // Started now, finished later: no publish waits for the previous one to be written.
        let publish = pipeline::start(Box::pin(publish)).await;
        pending.push_back(publish);
        if pending.len() >= args.in_flight.max(1) {
            if let Some(oldest) = pending.pop_front() {
                settle(oldest).await?;
            }
        }
    }
    for publish in pending {
        settle(publish).await?;
    }
    Ok(())
}

type InFlight = Started<'static, lapin::Result<lapin::PublisherConfirm>>;

/// Waits for a publish to be written, then for its confirm.
async fn settle(publish: InFlight) -> Result<()> {
    match pipeline::finish(publish).await {
        Some(written) => confirmed(written.context("basic.publish")?.await),
        None => bail!("a publish vanished"),
    }
}

fn confirmed(result: lapin::Result<lapin::Confirmation>) -> Result<()> {
    let confirmation = result.context("waiting for a publisher confirm")?;
    if confirmation.is_nack() {
        bail!("the broker refused (nacked) a message");
    }
    Ok(())
}
