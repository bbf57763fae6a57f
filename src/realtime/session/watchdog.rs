//! `Watchdog`: every `realtime.ping_interval_secs` it heartbeats every registered session (the
//! session pings its client and says when it last heard from it; a large node's heartbeats are
//! spread over half the interval), stops sessions whose client
//! has been silent for `realtime.client_timeout_secs` or whose actor no longer answers, drops
//! admissions whose session never started, and has the broker release every queue (session
//! mode) or binding (node mode) that no live session needs. More often, it has the registry
//! reap sessions whose client stopped reading (see `write_watch`).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::future::join_all;
use uuid::Uuid;

use super::protocol::{Disconnect, DisconnectReason, Heartbeat};
use super::registry::upkeep::{NeededKeys, Prune, ReapStalled, Snapshot};
use super::registry::{Deregister, SessionRegistry};
use crate::realtime::broker::actor::{BrokerActor, CheckLink, Sweep};

/// Heartbeats go out in slices of this many sessions, spread over the first half of a round, so
/// that a node's thousands of pings (each a message to the session, a WebSocket Ping written,
/// an answer) are not one burst that every delivery and request behind it waits for.
const HEARTBEAT_SLICE: usize = 256;

pub struct Watchdog {
    registry: Addr<SessionRegistry>,
    broker: Addr<BrokerActor>,
    interval: Duration,
    timeout: Duration,
    write_timeout: Duration,
}

impl Watchdog {
    pub fn new(
        registry: Addr<SessionRegistry>,
        broker: Addr<BrokerActor>,
        interval: Duration,
        timeout: Duration,
        write_timeout: Duration,
    ) -> Self {
        Watchdog {
            registry,
            broker,
            interval,
            timeout,
            write_timeout,
        }
    }
}

impl Actor for Watchdog {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.interval, |_, ctx| ctx.notify(Round));
        // Stalled connections are cheap to find (a clock per session): look often, so one is
        // dropped within about a quarter of the write timeout after it expires.
        let reap_every = (self.write_timeout / 4).max(Duration::from_millis(250));
        ctx.run_interval(reap_every, |watchdog, _| {
            watchdog.registry.do_send(ReapStalled {
                timeout: watchdog.write_timeout,
            });
        });
    }
}

/// What one round found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RoundReport {
    pub alive: usize,
    /// Sessions stopped because their client (or their actor) stayed silent.
    pub timed_out: usize,
    /// Sessions whose actor had already stopped.
    pub gone: usize,
    /// Admissions dropped because their session never started.
    pub pruned: usize,
    /// Queues (session mode) or bindings (node mode) released because no live session needed
    /// them.
    pub swept: usize,
}

enum Verdict {
    Alive,
    Silent,
    Stuck,
    Gone,
}

/// One watchdog round. Sent by the watchdog's own timer; tests may send it to run a round now.
#[derive(Message)]
#[rtype(result = "RoundReport")]
pub struct Round;

impl Handler<Round> for Watchdog {
    type Result = ResponseFuture<RoundReport>;

    fn handle(&mut self, _: Round, _: &mut Context<Self>) -> Self::Result {
        let registry = self.registry.clone();
        let broker = self.broker.clone();
        let (interval, timeout) = (self.interval, self.timeout);
        // A channel closed under a live connection is noticed here at the latest.
        broker.do_send(CheckLink);
        Box::pin(async move {
            let mut report = RoundReport::default();
            let started = Instant::now();
            let Ok(sessions) = registry.send(Snapshot).await else {
                return report;
            };
            let total = sessions.len();
            let checks = sessions
                .into_iter()
                .enumerate()
                .map(|(n, (id, handle))| async move {
                    let delay = heartbeat_delay(n, total, interval);
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    handle.owe();
                    let answer =
                        tokio::time::timeout(interval, handle.heartbeat.send(Heartbeat)).await;
                    let verdict = match answer {
                        Ok(Ok(last_heard)) if last_heard.elapsed() <= timeout => Verdict::Alive,
                        // No answer from a WebSocket session: its actor is frozen behind a socket
                        // its client does not read. The reaper drops it as too slow.
                        Err(_) if handle.write.is_some() => Verdict::Stuck,
                        Ok(Ok(_)) | Err(_) => Verdict::Silent,
                        Ok(Err(_)) => Verdict::Gone,
                    };
                    (id, handle, verdict)
                });
            let mut live: HashSet<Uuid> = HashSet::new();
            for (id, handle, verdict) in join_all(checks).await {
                match verdict {
                    Verdict::Alive | Verdict::Stuck => {
                        live.insert(id);
                        report.alive += 1;
                    }
                    Verdict::Silent => {
                        log::info!("watchdog: session {id} timed out");
                        handle
                            .disconnect
                            .do_send(Disconnect(DisconnectReason::ClientTimeout));
                        registry.do_send(Deregister { session_id: id });
                        report.timed_out += 1;
                    }
                    Verdict::Gone => {
                        registry.do_send(Deregister { session_id: id });
                        report.gone += 1;
                    }
                }
            }
            // Anything younger than one interval before the snapshot may belong to a session
            // being admitted right now; it gets its turn next round.
            let older_than = started.checked_sub(interval).unwrap_or(started);
            report.pruned = registry
                .send(Prune { older_than })
                .await
                .unwrap_or_default();
            let needed = registry.send(NeededKeys).await.unwrap_or_default();
            report.swept = broker
                .send(Sweep {
                    live,
                    needed,
                    older_than,
                })
                .await
                .unwrap_or_default();
            report
        })
    }
}

/// When the `n`th of `total` sessions gets its heartbeat, from the start of a round: slices of
/// [`HEARTBEAT_SLICE`] evenly over the first half of the interval (the first at once).
fn heartbeat_delay(n: usize, total: usize, interval: Duration) -> Duration {
    let slices = u32::try_from(total.div_ceil(HEARTBEAT_SLICE).max(1)).unwrap_or(u32::MAX);
    let slice = u32::try_from(n / HEARTBEAT_SLICE).unwrap_or(u32::MAX);
    ((interval / 2) / slices).saturating_mul(slice)
}

/// Stops the watchdog's rounds (on shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

impl Handler<Stop> for Watchdog {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::{heartbeat_delay, HEARTBEAT_SLICE};
    use std::time::Duration;

    #[test]
    fn heartbeats_are_spread_over_half_the_interval_in_slices() {
        let interval = Duration::from_secs(10);
        // A small node: everyone at once, as before.
        assert!(
            (0..HEARTBEAT_SLICE).all(|n| heartbeat_delay(n, HEARTBEAT_SLICE, interval).is_zero())
        );
        // 10 slices of 256: 0, 0.5 s, 1 s, … 4.5 s.
        let total = 10 * HEARTBEAT_SLICE;
        assert!(heartbeat_delay(HEARTBEAT_SLICE - 1, total, interval).is_zero());
        assert_eq!(
            heartbeat_delay(HEARTBEAT_SLICE, total, interval),
            Duration::from_millis(500)
        );
        assert_eq!(
            heartbeat_delay(total - 1, total, interval),
            Duration::from_millis(4500)
        );
        // Never past half the interval, whatever the count.
        let many = 1_000_000;
        assert!(heartbeat_delay(many - 1, many, interval) < interval / 2);
    }
}
