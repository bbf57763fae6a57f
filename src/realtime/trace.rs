//! Where a feed event's time goes, stage by stage (see [`Stage`]): wall-clock stamps taken as
//! it moves (recorded in the log, committed, read by the relay, published, consumed, handed to
//! sessions, written), carried between processes in AMQP headers, and observed into the
//! `herald_feed_stage_seconds` histograms where each stage ends.
//!
//! The log row holds when the event was recorded (its insert, the last statement before the
//! commit). When it committed is known to the writer only: a writer on the relaying instance
//! notes it as it wakes the relay ([`Commits`]), and the relay stamps an event with the first
//! such note at or after its recording: for an event written through the relaying instance,
//! never later than its own commit, so a stage from the commit is never understated. An event
//! written through another instance is measured from its recording, unless a local write
//! committed in between lends it its stamp (the stamps are exact on one instance, as in the
//! benchmark, and an estimate across several).
//!
//! Stamps from two hosts are only as comparable as their clocks: a stage that would come out
//! negative (a clock behind) is observed as zero. On one host (the benchmark) they are exact.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use lapin::types::{AMQPValue, FieldTable, ShortString};

use super::stats::{Stage, Stats};

const RECORDED: &str = "x-herald-recorded-us";
const COMMITTED: &str = "x-herald-committed-us";
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
    to.saturating_sub(from).max(0) as f64 / 1e6
}

/// How many recent commits [`Commits`] remembers.
const COMMITS_KEPT: usize = 1024;

/// When this instance's writes committed, as they wake the relay: recent stamps, in order.
#[derive(Clone, Default)]
pub struct Commits(Arc<Mutex<Noted>>);

#[derive(Default)]
struct Noted {
    stamps: VecDeque<i64>,
    /// The newest stamp let go: an event recorded before it may have committed among those
    /// forgotten, so it gets none rather than a later one.
    forgotten: i64,
}

impl Commits {
    /// A write committed just now.
    pub fn note(&self) {
        let now = now_us();
        if let Ok(mut noted) = self.0.lock() {
            if noted.stamps.len() >= COMMITS_KEPT {
                if let Some(oldest) = noted.stamps.pop_front() {
                    noted.forgotten = noted.forgotten.max(oldest);
                }
            }
            // Writers on several threads may note out of order by a hair: keep it sorted.
            let at = noted.stamps.partition_point(|&stamp| stamp <= now);
            noted.stamps.insert(at, now);
        }
    }

    /// The first commit noted at or after `recorded_us`: the commit of the event recorded
    /// then, or an earlier one (never a later one), if it was written through this instance.
    /// `None` when that commit may have been forgotten (a backlog of more than
    /// [`COMMITS_KEPT`] writes), or none was noted.
    pub fn after(&self, recorded_us: i64) -> Option<i64> {
        let noted = self.0.lock().ok()?;
        if recorded_us <= noted.forgotten {
            return None;
        }
        let at = noted.stamps.partition_point(|&stamp| stamp < recorded_us);
        noted.stamps.get(at).copied()
    }
}

/// What the relay knows of an event's time when it publishes it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sent {
    pub recorded_us: i64,
    pub committed_us: Option<i64>,
    pub picked_us: i64,
}

/// The headers of a message whose event has the stamps `sent`, published now.
pub fn headers(sent: Sent) -> FieldTable {
    let mut table = FieldTable::default();
    table.insert(
        ShortString::from(RECORDED),
        AMQPValue::LongLongInt(sent.recorded_us),
    );
    if let Some(committed) = sent.committed_us {
        table.insert(
            ShortString::from(COMMITTED),
            AMQPValue::LongLongInt(committed),
        );
    }
    table.insert(
        ShortString::from(PICKED),
        AMQPValue::LongLongInt(sent.picked_us),
    );
    table.insert(
        ShortString::from(PUBLISHED),
        AMQPValue::LongLongInt(now_us()),
    );
    table
}

/// The relay publishes an event's first message now: observes the stages up to here, once per
/// event (commit where known, pickup, publish).
pub fn observe_relayed(sent: &Sent, stats: &Stats) {
    let now = now_us();
    if let Some(committed) = sent.committed_us {
        stats.observe(Stage::Commit, seconds(sent.recorded_us, committed));
    }
    let origin = sent.committed_us.unwrap_or(sent.recorded_us);
    stats.observe(Stage::Pickup, seconds(origin, sent.picked_us));
    stats.observe(Stage::Publish, seconds(sent.picked_us, now));
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
    /// The commit, or where unknown the recording: where a delivery is measured from.
    origin: i64,
    handed: AtomicI64,
    /// Whether one of its frames has been written on this node.
    written: AtomicBool,
}

impl Trace {
    /// Reads a message's stamps as this node's consumer receives it, and observes the broker
    /// stage (per consumed message; the stages before it are the relay's, once per event:
    /// [`observe_relayed`]).
    pub fn consumed(headers: Option<&FieldTable>, stats: &Stats) -> Trace {
        let Some(headers) = headers else {
            return Trace(None);
        };
        let (Some(recorded), Some(published)) =
            (stamp(headers, RECORDED), stamp(headers, PUBLISHED))
        else {
            return Trace(None);
        };
        let consumed = now_us();
        let origin = stamp(headers, COMMITTED).unwrap_or(recorded);
        stats.observe(Stage::Broker, seconds(published, consumed));
        Trace(Some(Arc::new(Stamps {
            origin,
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
            stats.observe_delivery(seconds(stamps.origin, now), first);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{headers, now_us, stamp, Commits, Sent, COMMITTED, PICKED, PUBLISHED, RECORDED};

    #[test]
    fn stamps_travel_in_headers() {
        let before = now_us();
        let sent = Sent {
            recorded_us: 10,
            committed_us: Some(15),
            picked_us: 20,
        };
        let table = headers(sent);
        assert_eq!(stamp(&table, RECORDED), Some(10));
        assert_eq!(stamp(&table, COMMITTED), Some(15));
        assert_eq!(stamp(&table, PICKED), Some(20));
        assert!(stamp(&table, PUBLISHED).is_some_and(|at| at >= before));
        assert_eq!(stamp(&table, "x-other"), None);
        let remote = headers(Sent {
            committed_us: None,
            ..sent
        });
        assert_eq!(stamp(&remote, COMMITTED), None);
    }

    #[test]
    fn an_event_takes_the_first_commit_noted_after_its_recording() {
        let commits = Commits::default();
        let recorded = now_us();
        assert_eq!(commits.after(recorded), None, "nothing noted yet");
        commits.note();
        let first = commits
            .after(recorded)
            .expect("a commit after the recording");
        assert!(first >= recorded);
        commits.note();
        assert_eq!(
            commits.after(recorded),
            Some(first),
            "the first, not the latest"
        );
        assert_eq!(
            commits.after(now_us() + 1_000_000),
            None,
            "none after a later recording"
        );
        // Past the stamps kept, an event recorded before the oldest kept gets none.
        for _ in 0..super::COMMITS_KEPT {
            commits.note();
        }
        assert_eq!(commits.after(recorded), None, "its commit may be forgotten");
        let late = now_us();
        commits.note();
        assert!(commits.after(late).is_some_and(|at| at >= late));
    }

    #[test]
    fn a_clock_behind_gives_zero_not_a_negative_stage() {
        assert_eq!(super::seconds(2_000, 1_000), 0.0);
        assert_eq!(super::seconds(1_000, 3_500), 0.0025);
    }
}
