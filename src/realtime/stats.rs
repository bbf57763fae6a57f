//! One node's realtime figures, registered in its Prometheus registry (`crate::metrics`) and
//! cheap to bump from any thread: how many broker messages a post cost, whether deliveries keep
//! up, how sessions come and go, and where a feed event's time goes (the latency stages that
//! `trace` measures). `/health` shows the counters as JSON too, and the load generator reads
//! both.

use std::sync::Arc;

use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge, IntGaugeVec};
use serde::Serialize;

use crate::metrics::{Metrics, MetricsError, STAGE_BUCKETS};

/// The stages of a feed event's path, as `trace` stamps them (the `stage` label), in
/// [`Stage::ALL`] order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Recorded in the log → committed, as the writer saw it (writes through the relaying
    /// instance only).
    Commit,
    /// Committed (where known; else recorded) → read by the relay.
    Pickup,
    /// Read by the relay → its message handed to the AMQP client.
    Publish,
    /// Published → confirmed by the broker (off the delivery path: sessions do not wait).
    Confirm,
    /// Published → received by this node's consumer.
    Broker,
    /// Received → handed to the target sessions by the registry.
    Registry,
    /// Handed to a session → written to its WebSocket.
    Socket,
}

impl Stage {
    pub const ALL: [Stage; 7] = [
        Stage::Commit,
        Stage::Pickup,
        Stage::Publish,
        Stage::Confirm,
        Stage::Broker,
        Stage::Registry,
        Stage::Socket,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Stage::Commit => "commit",
            Stage::Pickup => "pickup",
            Stage::Publish => "publish",
            Stage::Confirm => "confirm",
            Stage::Broker => "broker",
            Stage::Registry => "registry",
            Stage::Socket => "socket",
        }
    }
}

struct Figures {
    published: IntCounter,
    confirms: IntCounterVec,
    consumed: IntCounter,
    delivered: IntCounter,
    dropped_slow: IntCounter,
    relayed: IntCounter,
    resumes: IntCounter,
    replayed: IntCounter,
    resets: IntCounter,
    duplicates: IntCounter,
    connects: IntCounter,
    disconnects: IntCounterVec,
    reconnects: IntCounter,
    stages: [Histogram; 7],
    delivery: Histogram,
    first_delivery: Histogram,
    /// Set when scraped.
    sessions: IntGaugeVec,
    link_up: IntGauge,
    relay_leading: IntGauge,
    relay_lag: IntGauge,
}

#[derive(Clone)]
pub struct Stats(Arc<Figures>);

/// A reading of every counter.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Feed messages (events and controls) this node published to RabbitMQ.
    pub published: u64,
    /// Deliveries this node received from RabbitMQ.
    pub consumed: u64,
    /// Events handed to WebSocket sessions.
    pub delivered: u64,
    /// Sessions closed because they could not keep up.
    pub dropped_slow: u64,
    /// Log events this node relayed (numbered, published and confirmed).
    pub relayed: u64,
    /// Sessions that connected with `since` (or `Last-Event-ID`).
    pub resumes: u64,
    /// Events read back from the log to fill sessions' gaps.
    pub replayed: u64,
    /// `feed.reset` frames sent: gaps the history could not fill.
    pub resets: u64,
    /// Events a session already had, dropped rather than sent twice.
    pub duplicates: u64,
}

impl Stats {
    /// Registers every realtime metric in `metrics`.
    pub fn new(metrics: &Metrics) -> Result<Stats, MetricsError> {
        let stage_vec = metrics.histogram_vec(
            "herald_feed_stage_seconds",
            "Time a feed event spends in each stage of its path: commit (recorded in the log to \
             committed, as its writer saw it, for writes through the relaying instance), pickup \
             (committed, or else recorded, to read by the relay), publish (read to published), confirm \
             (published to confirmed by the broker), broker (published to consumed by a node), \
             registry (consumed to handed to sessions), socket (handed to put on the session's WebSocket \
             stream). Commit, pickup and publish are observed once per post event by the relaying \
             instance, the others per consumed message.",
            &["stage"],
            STAGE_BUCKETS,
        )?;
        let stages = Stage::ALL.map(|stage| stage_vec.with_label_values(&[stage.label()]));
        Ok(Stats(Arc::new(Figures {
            published: metrics.counter(
                "herald_broker_messages_published_total",
                "Feed messages (events and controls) this node published to RabbitMQ.",
            )?,
            confirms: metrics.counter_vec(
                "herald_broker_confirms_total",
                "Publisher confirms received, by outcome (ack or nack).",
                &["outcome"],
            )?,
            consumed: metrics.counter(
                "herald_broker_messages_consumed_total",
                "Feed messages this node received from RabbitMQ.",
            )?,
            delivered: metrics.counter(
                "herald_feed_deliveries_total",
                "Live events handed to WebSocket sessions.",
            )?,
            dropped_slow: metrics.counter(
                "herald_sessions_dropped_slow_total",
                "Sessions closed (1008) because their client could not keep up.",
            )?,
            relayed: metrics.counter(
                "herald_relay_events_total",
                "Feed log events this node relayed (numbered, published and confirmed).",
            )?,
            resumes: metrics.counter(
                "herald_feed_resumes_total",
                "Sessions that connected with since or Last-Event-ID.",
            )?,
            replayed: metrics.counter(
                "herald_feed_replayed_events_total",
                "Events read back from the feed log to fill sessions' gaps.",
            )?,
            resets: metrics.counter(
                "herald_feed_resets_total",
                "feed.reset frames sent: gaps the history could not fill.",
            )?,
            duplicates: metrics.counter(
                "herald_feed_duplicates_dropped_total",
                "Events a session already had, dropped rather than sent twice.",
            )?,
            connects: metrics.counter(
                "herald_session_connects_total",
                "WebSocket sessions started.",
            )?,
            disconnects: metrics.counter_vec(
                "herald_session_disconnects_total",
                "WebSocket sessions ended, by close code (1006: the connection ended without one).",
                &["code"],
            )?,
            reconnects: metrics.counter(
                "herald_broker_link_reconnects_total",
                "Broker links opened again after one was lost.",
            )?,
            stages,
            delivery: metrics.histogram(
                "herald_feed_delivery_seconds",
                "From an event's commit (where known; else its recording in the feed log, just \
                 before) to its frame written to a session's WebSocket, per live delivery.",
                STAGE_BUCKETS,
            )?,
            first_delivery: metrics.histogram(
                "herald_feed_first_delivery_seconds",
                "From an event's commit (else its recording) to the first of its frames written \
                 on this node, per broker message.",
                STAGE_BUCKETS,
            )?,
            sessions: metrics.gauge_vec(
                "herald_sessions",
                "Open WebSocket sessions on this node, by queue mode.",
                &["mode"],
            )?,
            link_up: metrics.gauge(
                "herald_broker_link_up",
                "1 while this node's broker link is up.",
            )?,
            relay_leading: metrics.gauge(
                "herald_relay_leading",
                "1 while this node relays the feed log.",
            )?,
            relay_lag: metrics.gauge(
                "herald_relay_lag_events",
                "Feed log events committed but not yet confirmed by the broker.",
            )?,
        })))
    }

    pub fn add_published(&self, n: u64) {
        self.0.published.inc_by(n);
    }

    pub fn count_confirm(&self, acked: bool) {
        let outcome = if acked { "ack" } else { "nack" };
        self.0.confirms.with_label_values(&[outcome]).inc();
    }

    pub fn add_consumed(&self, n: u64) {
        self.0.consumed.inc_by(n);
    }

    pub fn add_delivered(&self, n: u64) {
        self.0.delivered.inc_by(n);
    }

    pub fn add_relayed(&self, n: u64) {
        self.0.relayed.inc_by(n);
    }

    pub fn count_resume(&self) {
        self.0.resumes.inc();
    }

    pub fn add_replayed(&self, n: u64) {
        self.0.replayed.inc_by(n);
    }

    pub fn count_reset(&self) {
        self.0.resets.inc();
    }

    pub fn add_duplicates(&self, n: u64) {
        self.0.duplicates.inc_by(n);
    }

    pub fn count_dropped_slow(&self) {
        self.0.dropped_slow.inc();
    }

    pub fn count_connect(&self) {
        self.0.connects.inc();
    }

    /// Counts a session's end under its close code: the codes herald sends or the protocol
    /// defines, by number; the rest (a client may pick any of 3000–4999) as `other`, so clients
    /// cannot grow the series.
    pub fn count_disconnect(&self, code: u16) {
        let label = match code {
            1000 => "1000",
            1001 => "1001",
            1002 => "1002",
            1003 => "1003",
            1005 => "1005",
            1006 => "1006",
            1007 => "1007",
            1008 => "1008",
            1009 => "1009",
            1010 => "1010",
            1011 => "1011",
            1012 => "1012",
            1013 => "1013",
            1014 => "1014",
            4001 => "4001",
            _ => "other",
        };
        self.0.disconnects.with_label_values(&[label]).inc();
    }

    pub fn count_reconnect(&self) {
        self.0.reconnects.inc();
    }

    /// Observes `seconds` spent in `stage`.
    pub fn observe(&self, stage: Stage, seconds: f64) {
        self.0.stages[stage as usize].observe(seconds);
    }

    /// Observes a live delivery written `seconds` after its event's commit (else its
    /// recording), and whether it was the first frame of its message on this node.
    pub fn observe_delivery(&self, seconds: f64, first: bool) {
        self.0.delivery.observe(seconds);
        if first {
            self.0.first_delivery.observe(seconds);
        }
    }

    /// The readings `/metrics` takes when scraped.
    pub fn set_gauges(&self, gauges: Gauges<'_>) {
        if let Some(sessions) = gauges.sessions {
            self.0
                .sessions
                .with_label_values(&[gauges.mode])
                .set(sessions as i64);
        }
        self.0.link_up.set(i64::from(gauges.link_up));
        self.0.relay_leading.set(i64::from(gauges.relay_leading));
        if let Some(lag) = gauges.relay_lag {
            self.0.relay_lag.set(lag);
        }
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let f = &self.0;
        StatsSnapshot {
            published: f.published.get(),
            consumed: f.consumed.get(),
            delivered: f.delivered.get(),
            dropped_slow: f.dropped_slow.get(),
            relayed: f.relayed.get(),
            resumes: f.resumes.get(),
            replayed: f.replayed.get(),
            resets: f.resets.get(),
            duplicates: f.duplicates.get(),
        }
    }
}

/// Readings taken when `/metrics` is scraped.
pub struct Gauges<'a> {
    pub mode: &'a str,
    /// `None` when the registry could not be asked: the last reading stays.
    pub sessions: Option<usize>,
    pub link_up: bool,
    pub relay_leading: bool,
    /// `None` when the database could not be asked: the last reading stays.
    pub relay_lag: Option<i64>,
}
