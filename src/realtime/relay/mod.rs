//! The relay: carries the feed log to RabbitMQ, in position order, with publisher confirms.
//!
//! Every instance runs one; the one whose dedicated PostgreSQL connection holds the relay's
//! advisory lock leads, and the others try again every [`LEAD_RETRY`], so if the leader dies
//! (its connection closes and PostgreSQL frees the lock) another takes over within seconds. Only
//! an instance with a broker link takes the lead, and a leader that cannot publish for
//! [`GIVE_UP_AFTER`] gives it up. The leader, on that same connection (so no other instance can
//! number while it does), first enters the log's epoch (`store::epochs`: on a server whose
//! history differs from the one the log was numbered on, a promoted standby, the numbering jumps
//! past anything the old history gave out), then loops:
//!
//! 1. numbers committed events and reads them back in the same statement
//!    (`store::events::number_batch`), which gives positions in commit order;
//! 2. publishes every numbered event after the last confirmed position: a post event once,
//!    routed `author.<id>`, if its author switched to celebrity at an earlier position, else
//!    once per follower, routed `user.<follower>`; a follow or unfollow of a celebrity, and a
//!    switch (to every follower), as control messages routed `user.<follower>`;
//! 3. waits for the broker to confirm them all, then records the position as published.
//!
//! A publish that fails or is refused is retried from the last recorded position (a session
//! drops what it already has), so an event is never lost, though a failover may send one twice.
//! Writers wake the relay at once, after their commit, through [`Relay::nudge`]: it wakes this
//! instance's relay, and unless this instance leads, its notifier (`notifier`) sends a
//! PostgreSQL `NOTIFY` on a connection of its own, which every instance `LISTEN`s for (`listen`):
//! the writes' transactions take no `NOTIFY` lock. A slow tick ([`IDLE_TICK`]) is only a safety
//! net: for a lost `NOTIFY`, a write whose answer was lost after its commit, and writes made
//! by a tool outside herald.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel_async::AsyncPgConnection;
use lapin::Channel;
use tokio::sync::{watch, Notify};

use self::notifier::Notifier;
use self::outbox::PublishError;
use super::stats::Stats;
use super::trace::{self, Commits};
use crate::config::RealtimeSettings;
use crate::realtime::broker::shards;
use crate::store::epochs::{self, Epoch};
use crate::store::events::{self as log_store};
use crate::store::pg_tls::PgTls;
use keepalives::with_keepalives;

mod keepalives;
mod listen;
mod notifier;
mod outbox;
mod publish;
use crate::store::{database, StoreError};

/// How often an instance that does not lead tries to take the lead.
pub const LEAD_RETRY: Duration = Duration::from_secs(1);

/// The safety net: an idle leader looks for unnumbered events this often even if no write woke
/// it (a lost notification, a write from a tool outside herald).
const IDLE_TICK: Duration = Duration::from_secs(1);

/// Pause before publishing a batch again after a failure.
const REPUBLISH_PAUSE: Duration = Duration::from_millis(250);

/// A leader that cannot publish for this long (no broker link, or publishes failing in a row)
/// gives up the lead, so an instance that can takes it over.
const GIVE_UP_AFTER: Duration = Duration::from_secs(5);

/// How often the leader prunes events older than `realtime.history_ttl_secs`, and how many it
/// deletes per statement.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
const PRUNE_BATCH: i64 = 10_000;

/// One instance's relay: wake it after a write, ask whether it leads, stop it.
#[derive(Clone)]
pub struct Relay {
    nudge: Arc<Notify>,
    commits: Commits,
    notifier: Notifier,
    leading: Arc<AtomicBool>,
    stop: Arc<watch::Sender<bool>>,
}

impl Relay {
    /// A committed write has an event waiting: wake this instance's relay now (and note when,
    /// to time the event from its commit), and unless it leads, the leading instance's (through
    /// the notifier's `NOTIFY`). Call it only after the write's commit.
    pub fn nudge(&self) {
        self.commits.note();
        self.nudge.notify_one();
        if !self.is_leading() {
            self.notifier.wrote();
        }
    }

    /// Whether this instance relays the log right now.
    pub fn is_leading(&self) -> bool {
        self.leading.load(Ordering::Relaxed)
    }

    /// Stops relaying (and frees the lead for another instance).
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }
}

/// Starts the relay, its `LISTEN` task and its notifier on the current arbiter. `channel` carries the
/// publishing channel (confirms on), `None` while the broker is unreachable: the relay then
/// waits, and writes keep committing their events meanwhile.
pub fn spawn(
    database_url: &str,
    tls: PgTls,
    settings: &RealtimeSettings,
    channel: watch::Receiver<Option<Channel>>,
    stats: Stats,
) -> Relay {
    let (stop, stopped) = watch::channel(false);
    let relay = Relay {
        nudge: Arc::new(Notify::new()),
        commits: Commits::default(),
        notifier: Notifier::default(),
        leading: Arc::new(AtomicBool::new(false)),
        stop: Arc::new(stop),
    };
    let leader = Leader {
        url: database_url.to_owned(),
        tls: tls.clone(),
        exchange: settings.exchange.clone(),
        page_size: settings.fanout_page_size,
        batch: settings.relay_batch,
        max_in_flight: settings.max_confirms_in_flight,
        history_ttl: settings.history_ttl(),
        // Node queues bind shards (see `broker::shards`); session queues, their own keys.
        shards: shards::ShardCounts::of(settings),
        channel,
        stats,
        relay: relay.clone(),
        stopped,
    };
    actix_rt::spawn(leader.run());
    actix_rt::spawn(listen::listen(
        database_url.to_owned(),
        tls.clone(),
        Arc::clone(&relay.nudge),
        LEAD_RETRY,
        relay.stop.subscribe(),
    ));
    actix_rt::spawn(notifier::run(
        database_url.to_owned(),
        tls,
        relay.notifier.clone(),
        Arc::clone(&relay.leading),
        LEAD_RETRY,
        relay.stop.subscribe(),
    ));
    relay
}

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("PostgreSQL: {0}")]
    Connect(#[from] diesel::ConnectionError),
    #[error("stopped")]
    Stopped,
    #[error("it could not publish for {0:?}")]
    CannotPublish(Duration),
}

struct Leader {
    url: String,
    tls: PgTls,
    exchange: String,
    page_size: i64,
    batch: i64,
    max_in_flight: usize,
    history_ttl: Duration,
    shards: shards::ShardCounts,
    channel: watch::Receiver<Option<Channel>>,
    stats: Stats,
    relay: Relay,
    stopped: watch::Receiver<bool>,
}

impl Leader {
    async fn run(mut self) {
        loop {
            if *self.stopped.borrow() {
                return;
            }
            let outcome = self.try_lead().await;
            let was_leading = self.relay.leading.swap(false, Ordering::Relaxed);
            match outcome {
                Ok(()) | Err(RelayError::Stopped) => {}
                Err(error) if was_leading => {
                    log::warn!("the feed relay stopped leading: {error}")
                }
                // Not leading, so nothing stalls: the database is unreachable and every
                // write is failing with its own error meanwhile.
                Err(error) => log::debug!("the feed relay cannot take the lead: {error}"),
            }
            if was_leading {
                log::info!("this instance no longer relays the feed log");
                // Writes here skipped their NOTIFY while this instance led: wake whichever
                // instance leads next, in case one already does and waits.
                self.relay.notifier.wrote();
            }
            if self.pause(LEAD_RETRY).await.is_err() {
                return;
            }
        }
    }

    /// Sleeps, unless stopped first.
    async fn pause(&mut self, how_long: Duration) -> Result<(), RelayError> {
        tokio::select! {
            _ = tokio::time::sleep(how_long) => Ok(()),
            _ = self.stopped.wait_for(|stop| *stop) => Err(RelayError::Stopped),
        }
    }

    /// Connects, takes the lead if it is free, and relays until something fails. The lock
    /// goes with the connection, when this returns.
    async fn try_lead(&mut self) -> Result<(), RelayError> {
        let mut conn = database::connect(&with_keepalives(&self.url), &self.tls).await?;
        loop {
            // Only an instance that can publish takes the lead: one without a broker link
            // would hold it and stall every instance.
            if self.has_channel() && log_store::try_lead(&mut conn).await? {
                break;
            }
            self.pause(LEAD_RETRY).await?;
        }
        // Before anything is numbered: positions must survive a crash of this server, and
        // must not repeat ones a lost history gave out (see `store::epochs`).
        epochs::durable_commits(&mut conn).await?;
        let epoch = epochs::enter(&mut conn).await?;
        if epoch.started {
            log::warn!(
                "the database's history changed (a promoted standby or a restored backup): \
                 feed positions continue after {} instead of {}; clients past {} get feed.reset",
                epoch.base,
                epoch.branched_at,
                epoch.branched_at
            );
        }
        self.relay.leading.store(true, Ordering::Relaxed);
        log::info!("this instance relays the feed log");
        self.lead(&mut conn, epoch).await
    }

    fn has_channel(&self) -> bool {
        usable(&self.channel.borrow())
    }

    async fn lead(&mut self, conn: &mut AsyncPgConnection, epoch: Epoch) -> Result<(), RelayError> {
        let mut published = log_store::relay_state(conn).await?.published_seq;
        // Whether numbered events may wait unpublished (left by an earlier leader, or by a
        // failed publish): they go first. Once none do, each batch is numbered and read in one
        // statement, the one round trip an event waits for here.
        let mut backlog = true;
        // Whether the last numbering left nothing committed behind it.
        let mut caught_up = false;
        let mut last_prune: Option<Instant> = None;
        let mut failing_since: Option<Instant> = None;
        loop {
            if *self.stopped.borrow() {
                return Err(RelayError::Stopped);
            }
            if last_prune.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
                self.prune(conn).await?;
                last_prune = Some(Instant::now());
            }
            let rows = if backlog {
                let rows = log_store::numbered_after(conn, published, self.batch).await?;
                backlog = rows.len() as i64 >= self.batch;
                caught_up = false; // what committed meanwhile is numbered next, at once
                rows
            } else {
                if caught_up {
                    self.wait_for_writes().await?;
                }
                let rows = log_store::number_batch(conn, self.batch).await?;
                // A full batch may have left more: number again at once. Else every event
                // committed since has woken the relay (or will, within the idle tick), so it
                // waits for that instead of numbering nothing.
                caught_up = (rows.len() as i64) < self.batch;
                rows
            };
            if rows.is_empty() {
                continue;
            }
            let picked = trace::now_us();
            let channel = self.current_channel().await?;
            let (first, last) = (rows[0].event.seq, rows[rows.len() - 1].event.seq);
            match self.publish(conn, &channel, &rows, picked).await {
                Ok(()) => {
                    published = epoch.published_mark(last);
                    log_store::mark_published(conn, published).await?;
                    failing_since = None;
                    self.stats.add_relayed(rows.len() as u64);
                }
                Err(PublishError::Store(error)) => return Err(error.into()),
                Err(error) => {
                    backlog = true;
                    log::warn!(
                        "publishing feed positions {first}..={last} failed ({error}); \
                         publishing them again"
                    );
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= GIVE_UP_AFTER {
                        return Err(RelayError::CannotPublish(since.elapsed()));
                    }
                    self.pause(REPUBLISH_PAUSE).await?;
                }
            }
        }
    }

    /// Waits for a write to wake the relay, or for the idle tick. A wake-up always comes after
    /// its write's commit (see [`Relay::nudge`]), and one that comes while the relay is busy
    /// is kept for its next wait, so no committed event waits past the tick. (Waiting a moment
    /// more, to number more writes per statement, measured no fewer statements per post: under
    /// load the publish of one batch already gathers the next.)
    async fn wait_for_writes(&mut self) -> Result<(), RelayError> {
        tokio::select! {
            _ = self.relay.nudge.notified() => Ok(()),
            _ = tokio::time::sleep(IDLE_TICK) => Ok(()),
            _ = self.stopped.wait_for(|stop| *stop) => Err(RelayError::Stopped),
        }
    }

    async fn prune(&self, conn: &mut AsyncPgConnection) -> Result<(), RelayError> {
        let mut total = 0;
        loop {
            let pruned = log_store::prune(conn, self.history_ttl, PRUNE_BATCH).await?;
            total += pruned;
            if pruned < PRUNE_BATCH {
                break;
            }
        }
        if total > 0 {
            log::info!(
                "pruned {total} feed log events older than {:?}",
                self.history_ttl
            );
        }
        Ok(())
    }

    /// The current publishing channel, once there is one. Waits at most [`GIVE_UP_AFTER`]:
    /// a leader without a broker link gives up the lead.
    async fn current_channel(&mut self) -> Result<Channel, RelayError> {
        let mut channel = self.channel.clone();
        let wait = channel.wait_for(usable);
        tokio::select! {
            current = tokio::time::timeout(GIVE_UP_AFTER, wait) => match current {
                Ok(Ok(current)) => current.clone().ok_or(RelayError::Stopped),
                Ok(Err(_)) => Err(RelayError::Stopped), // the broker actor is gone
                Err(_) => Err(RelayError::CannotPublish(GIVE_UP_AFTER)),
            },
            _ = self.stopped.wait_for(|stop| *stop) => Err(RelayError::Stopped),
        }
    }
}

/// Whether the broker actor's current publishing channel can take publishes.
fn usable(channel: &Option<Channel>) -> bool {
    channel
        .as_ref()
        .is_some_and(|channel| channel.status().connected())
}
