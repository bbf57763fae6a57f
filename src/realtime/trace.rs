//! Where a feed event's time goes, stage by stage (see [`Stage`]): wall-clock stamps taken as
//! it moves (recorded in the log, read by the relay, published, consumed, handed to sessions,
//! written), carried between processes in AMQP headers, and observed into the
//! `herald_feed_stage_seconds` histograms where each stage ends.
//!
//! Stamps from two hosts are only as comparable as their clocks: a stage that would come out
//! negative (a clock behind) is observed as zero. On one host (the benchmark) they are exact.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use lapin::types::{AMQPValue, FieldTable, ShortString};

use super::stats::{Stage, Stats};

const RECORDED: &str = "x-herald-recorded-us";
const PICKED: &str = "x-herald-picked-us";
const PUBLISHED: &str = "x-herald-published-us";

/// Now, in microseconds since the Unix epoch.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_micros() as i64)
}

/// Seconds from stamp `from` to stamp `to`, never negative.
fn seconds(from: i64, to: i64) -> f64 {
    (to - from).max(0) as f64 / 1e6
}

/// The headers of a message whose event was recorded at `recorded_us`, read by the relay at
/// `picked_us` and published now.
pub fn headers(recorded_us: i64, picked_us: i64) -> FieldTable {
    let mut table = FieldTable::default();
    table.insert(
        ShortString::from(RECORDED),
        AMQPValue::LongLongInt(recorded_us),
    );
    table.insert(ShortString::from(PICKED), AMQPValue::LongLongInt(picked_us));
    table.insert(
        ShortString::from(PUBLISHED),
        AMQPValue::LongLongInt(now_us()),
    );
    table
}

fn stamp(headers: &FieldTable, name: &str) -> Option<i64> {
    headers
        .inner()
        .iter()
        .find(|(key, _)| key.as_str() == name)
        .and_then(|(_, value)| match value {
            AMQPValue::LongLongInt(us) => Some(*us),
            _ => None,
        })
}

/// One consumed message's stamps, shared by every session it is handed to. `None` for a
/// message that carries none (published by something else than a relay).
#[derive(Clone, Default)]
pub struct Trace(Option<Arc<Stamps>>);

struct Stamps {
    recorded: i64,
    handed: AtomicI64,
    /// Whether one of its frames has been written on this node.
    written: AtomicBool,
}

impl Trace {
    /// Reads a message's stamps as this node's consumer receives it, and observes the stages
    /// that ended by now: pickup, publish and broker.
    pub fn consumed(headers: Option<&FieldTable>, stats: &Stats) -> Trace {
        let Some(headers) = headers else {
            return Trace(None);
        };
        let (Some(recorded), Some(picked), Some(published)) = (
            stamp(headers, RECORDED),
            stamp(headers, PICKED),
            stamp(headers, PUBLISHED),
        ) else {
            return Trace(None);
        };
        let consumed = now_us();
        stats.observe(Stage::Pickup, seconds(recorded, picked));
        stats.observe(Stage::Publish, seconds(picked, published));
        stats.observe(Stage::Broker, seconds(published, consumed));
        Trace(Some(Arc::new(Stamps {
            recorded,
            handed: AtomicI64::new(consumed),
            written: AtomicBool::new(false),
        })))
    }

    /// The registry starts handing the message to its sessions: observes the registry stage.
    pub fn handing(&self, stats: &Stats) {
        if let Some(stamps) = &self.0 {
            let now = now_us();
            let consumed = stamps.handed.swap(now, Ordering::Relaxed);
            stats.observe(Stage::Registry, seconds(consumed, now));
        }
    }

    /// A session wrote the message's frame to its WebSocket: observes the socket stage and the
    /// delivery as a whole.
    pub fn written(&self, stats: &Stats) {
        if let Some(stamps) = &self.0 {
            let now = now_us();
            stats.observe(
                Stage::Socket,
                seconds(stamps.handed.load(Ordering::Relaxed), now),
            );
            let first = !stamps.written.swap(true, Ordering::Relaxed);
            stats.observe_delivery(seconds(stamps.recorded, now), first);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{headers, now_us, stamp, PICKED, PUBLISHED, RECORDED};

    #[test]
    fn stamps_travel_in_headers() {
        let before = now_us();
        let table = headers(10, 20);
        assert_eq!(stamp(&table, RECORDED), Some(10));
        assert_eq!(stamp(&table, PICKED), Some(20));
        assert!(stamp(&table, PUBLISHED).is_some_and(|at| at >= before));
        assert_eq!(stamp(&table, "x-other"), None);
    }

    #[test]
    fn a_clock_behind_gives_zero_not_a_negative_stage() {
        assert_eq!(super::seconds(2_000, 1_000), 0.0);
        assert_eq!(super::seconds(1_000, 3_500), 0.0025);
    }
}
