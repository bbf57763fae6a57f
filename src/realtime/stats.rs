//! Counters of one node's realtime traffic, cheap to bump from any thread and shown by
//! `/health`: they let an operator (and the load generator) see how many broker messages a post
//! cost and whether deliveries keep up.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;

#[derive(Default)]
struct Counters {
    published: AtomicU64,
    consumed: AtomicU64,
    delivered: AtomicU64,
    dropped_slow: AtomicU64,
    relayed: AtomicU64,
    resumes: AtomicU64,
    replayed: AtomicU64,
    resets: AtomicU64,
    duplicates: AtomicU64,
}

#[derive(Clone, Default)]
pub struct Stats(Arc<Counters>);

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
    pub fn add_published(&self, n: u64) {
        self.0.published.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_consumed(&self, n: u64) {
        self.0.consumed.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_delivered(&self, n: u64) {
        self.0.delivered.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_relayed(&self, n: u64) {
        self.0.relayed.fetch_add(n, Ordering::Relaxed);
    }

    pub fn count_resume(&self) {
        self.0.resumes.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add_replayed(&self, n: u64) {
        self.0.replayed.fetch_add(n, Ordering::Relaxed);
    }

    pub fn count_reset(&self) {
        self.0.resets.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add_duplicates(&self, n: u64) {
        self.0.duplicates.fetch_add(n, Ordering::Relaxed);
    }

    pub fn count_dropped_slow(&self) {
        self.0.dropped_slow.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            published: self.0.published.load(Ordering::Relaxed),
            consumed: self.0.consumed.load(Ordering::Relaxed),
            delivered: self.0.delivered.load(Ordering::Relaxed),
            dropped_slow: self.0.dropped_slow.load(Ordering::Relaxed),
            relayed: self.0.relayed.load(Ordering::Relaxed),
            resumes: self.0.resumes.load(Ordering::Relaxed),
            replayed: self.0.replayed.load(Ordering::Relaxed),
            resets: self.0.resets.load(Ordering::Relaxed),
            duplicates: self.0.duplicates.load(Ordering::Relaxed),
        }
    }
}
