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

    pub fn count_dropped_slow(&self) {
        self.0.dropped_slow.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            published: self.0.published.load(Ordering::Relaxed),
            consumed: self.0.consumed.load(Ordering::Relaxed),
            delivered: self.0.delivered.load(Ordering::Relaxed),
            dropped_slow: self.0.dropped_slow.load(Ordering::Relaxed),
        }
    }
}
