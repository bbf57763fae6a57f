//! Fan-out: turns one post event into one AMQP message per follower, routed `user.<follower>`,
//! or, for a celebrity, into a single message routed `author.<id>`. It also carries follow
//! changes to the follower's nodes (control messages) and runs an author's switch to celebrity.
//!
//! It runs beside the request path: the HTTP handler only enqueues a job. Each worker takes its
//! jobs in order, and all of one author's jobs go to the same worker, so a follower sees an
//! author's events in the order they happened. For each job a worker reads the author's
//! followers from PostgreSQL in keyset pages and publishes pipelined: it never waits for a
//! message to be written, nor for its confirm, before the next publish (lapin queues a
//! publish's frames the first time its future is polled, so each is polled once, in order, and
//! then handed over). A separate task awaits the writes and confirms, and a semaphore bounds
//! how many are in flight.

use std::sync::Arc;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Channel, PublisherConfirm};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use super::control::{Control, CONTROL_TYPE};
use super::events::FeedEvent;
use super::pipeline::{self, Started};
use super::stats::Stats;
use super::topology::{author_routing_key, user_routing_key};
use crate::config::RealtimeSettings;
use crate::store::celebrities::{self, PublishMode};
use crate::store::{self, friends, DbPool};

/// Jobs waiting for one worker beyond this make `BrokerActor`'s enqueue wait (backpressure on
/// writers).
const JOB_BACKLOG: usize = 10_000;

/// One unit of work for the fan-out, done in the order given.
pub enum FanoutJob {
    /// A post event, for every follower of `author_id`.
    Event { author_id: Uuid, payload: Arc<[u8]> },
    /// A follow change, for every session of `user_id`, wherever it is connected.
    Control { user_id: Uuid, control: Control },
    /// `author_id` has just been claimed as a celebrity: have every follower's node route
    /// `author.<id>` to them, then switch the author's events to the single publish.
    Promote { author_id: Uuid },
}

impl From<FeedEvent> for FanoutJob {
    fn from(event: FeedEvent) -> Self {
        FanoutJob::Event {
            author_id: event.author(),
            payload: event.to_json().into_bytes().into(),
        }
    }
}

impl FanoutJob {
    /// The author whose events this job must stay in order with: jobs about one author all go
    /// to the same worker.
    fn author(&self) -> Uuid {
        match self {
            FanoutJob::Event { author_id, .. } | FanoutJob::Promote { author_id } => *author_id,
            FanoutJob::Control { control, .. } => match control {
                Control::Watch(author) | Control::Unwatch(author) => *author,
            },
        }
    }
}

/// Where jobs go: one ordered queue per worker, chosen by the job's author, so one author's
/// events (and follow changes) stay in order while different authors' fan-outs overlap their
/// database round trips.
#[derive(Clone)]
pub struct Fanout {
    workers: Vec<mpsc::Sender<FanoutJob>>,
}

impl Fanout {
    /// Hands a committed change to the fan-out. The write already succeeded, so a failure here
    /// is logged rather than turned into an error the client would retry.
    pub async fn announce(&self, job: impl Into<FanoutJob>) {
        if let Err(job) = self.send(job.into()).await {
            log::error!(
                "a change by {} was not published: the fan-out has stopped",
                job.author()
            );
        }
    }

    /// Queues a job; waits while that worker's backlog is full. Errs once the workers are gone.
    pub async fn send(&self, job: FanoutJob) -> Result<(), FanoutJob> {
        let author = job.author().as_u128();
        let shard = (author % self.workers.len().max(1) as u128) as usize;
        match self.workers.get(shard) {
            Some(worker) => worker.send(job).await.map_err(|refused| refused.0),
            None => Err(job),
        }
    }
}

/// Starts `realtime.fanout_workers` workers on the current arbiter; returns where to send jobs.
///
/// `channel` carries the current publishing channel (with confirms on), `None` while the broker
/// is disconnected: the workers wait for the next one rather than dropping jobs.
pub fn spawn(
    db: DbPool,
    settings: &RealtimeSettings,
    channel: watch::Receiver<Option<Channel>>,
    stats: Stats,
) -> Fanout {
    let (confirms_tx, confirms_rx) = mpsc::unbounded_channel();
    let failures = Arc::new(AtomicU64::new(0));
    let worker = Worker {
        db,
        exchange: settings.exchange.clone(),
        page_size: settings.fanout_page_size,
        max_in_flight: settings.max_confirms_in_flight,
        in_flight: Arc::new(Semaphore::new(settings.max_confirms_in_flight)),
        settle: settings.celebrity_settle(),
        stats,
        channel,
        confirms: confirms_tx,
        failures: Arc::clone(&failures),
    };
    let workers = (0..settings.fanout_workers.max(1))
        .map(|_| {
            let (jobs_tx, jobs_rx) = mpsc::channel(JOB_BACKLOG);
            actix_rt::spawn(worker.clone().run(jobs_rx));
            jobs_tx
        })
        .collect();
    actix_rt::spawn(drain_confirms(confirms_rx, failures));
    Fanout { workers }
}

#[derive(Clone)]
struct Worker {
    db: DbPool,
    exchange: String,
    page_size: i64,
    max_in_flight: usize,
    in_flight: Arc<Semaphore>,
    settle: Duration,
    stats: Stats,
    channel: watch::Receiver<Option<Channel>>,
    confirms: mpsc::UnboundedSender<(InFlight, OwnedSemaphorePermit)>,
    /// Publishes that failed or were refused, counted by the drain. Shared by every worker: a
    /// switch to celebrity is called off if this count moved while its controls were in flight,
    /// whichever worker's publish failed (erring on the side of staying per follower).
    failures: Arc<AtomicU64>,
}

impl Worker {
    async fn run(mut self, mut jobs: mpsc::Receiver<FanoutJob>) {
        while let Some(job) = jobs.recv().await {
            let Some(channel) = self.current_channel().await else {
                return; // the broker actor is gone: the process is stopping
            };
            let done = match &job {
                FanoutJob::Event { author_id, payload } => {
                    self.fan_out(&channel, *author_id, payload).await
                }
                FanoutJob::Control { user_id, control } => {
                    self.publish(
                        &channel,
                        user_routing_key(*user_id),
                        &control.to_json(),
                        true,
                    )
                    .await
                }
                FanoutJob::Promote { author_id } => self.promote(&channel, *author_id).await,
            };
            if let Err(error) = done {
                log::error!("fan-out for {} stopped: {error}", job.author());
            }
        }
    }

    async fn current_channel(&mut self) -> Option<Channel> {
        let current = self
            .channel
            .wait_for(|channel| channel.as_ref().is_some_and(|c| c.status().connected()))
            .await
            .ok()?;
        current.clone()
    }

    /// Publishes one message; its confirm is awaited by the drain task, within the in-flight
    /// bound.
    async fn publish(
        &self,
        channel: &Channel,
        routing_key: String,
        payload: &[u8],
        control: bool,
    ) -> Result<(), FanoutError> {
        let mut properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(1);
        if control {
            properties = properties.with_type(CONTROL_TYPE.into());
        }
        let permit = Arc::clone(&self.in_flight)
            .acquire_owned()
            .await
            .map_err(|_| FanoutError::Closed)?;
        let publish = {
            let (channel, exchange) = (channel.clone(), self.exchange.clone());
            let payload = payload.to_vec();
            async move {
                channel
                    .basic_publish(
                        exchange.as_str().into(),
                        routing_key.into(),
                        BasicPublishOptions::default(),
                        &payload,
                        properties,
                    )
                    .await
            }
        };
        // Started here, so its frames are queued now, in order; finished by the drain.
        let publish = pipeline::start(Box::pin(publish)).await;
        self.stats.add_published(1);
        self.confirms
            .send((publish, permit))
            .map_err(|_| FanoutError::Closed)
    }

    /// Publishes `payload` (a control message if `control`) to every follower of `author_id`,
    /// routed `user.<follower>`, a keyset page at a time.
    async fn for_each_follower(
        &self,
        channel: &Channel,
        author_id: Uuid,
        payload: &[u8],
        control: bool,
    ) -> Result<(), FanoutError> {
        let mut after = Uuid::nil();
        loop {
            let page = {
                let mut conn = store::connection(&self.db).await?;
                friends::followers_page(&mut conn, author_id, after, self.page_size).await?
            };
            for follower in &page {
                self.publish(channel, user_routing_key(*follower), payload, control)
                    .await?;
            }
            match page.last() {
                Some(last) if page.len() as i64 == self.page_size => after = *last,
                _ => return Ok(()),
            }
        }
    }

    async fn fan_out(
        &self,
        channel: &Channel,
        author_id: Uuid,
        payload: &[u8],
    ) -> Result<(), FanoutError> {
        let mode = {
            let mut conn = store::connection(&self.db).await?;
            celebrities::publish_mode(&mut conn, author_id).await?
        };
        match mode {
            PublishMode::Once => {
                self.publish(channel, author_routing_key(author_id), payload, false)
                    .await
            }
            PublishMode::PerFollower => {
                self.for_each_follower(channel, author_id, payload, false)
                    .await
            }
        }
    }

    /// The switch to celebrity, without losing or doubling an event: every follower's node
    /// (or session queue) is told to route `author.<id>`; once the broker has taken all of
    /// those messages, and `realtime.celebrity_settle_ms` has been allowed for the nodes to
    /// apply them, the author's events go out once. Until then they still go per follower.
    async fn promote(&self, channel: &Channel, author_id: Uuid) -> Result<(), FanoutError> {
        let failures_before = self.failures.load(Ordering::Relaxed);
        let watch = Control::Watch(author_id).to_json();
        let sent = self
            .for_each_follower(channel, author_id, &watch, true)
            .await;
        // Every permit back means every write and confirm of the controls has come back.
        let all = u32::try_from(self.max_in_flight).unwrap_or(u32::MAX);
        drop(
            self.in_flight
                .acquire_many(all)
                .await
                .map_err(|_| FanoutError::Closed)?,
        );
        let mut conn = store::connection(&self.db).await?;
        if sent.is_err() || self.failures.load(Ordering::Relaxed) != failures_before {
            // Some follower's node may not know: stay per follower, and let a later follow
            // claim the switch again.
            celebrities::unclaim(&mut conn, author_id).await?;
            return sent.and(Err(FanoutError::Incomplete));
        }
        celebrities::switch_at(&mut conn, author_id, self.settle).await?;
        log::info!(
            "author {author_id} is now a celebrity: events go out once, as author.{author_id}"
        );
        Ok(())
    }
}

/// A publish whose frames are queued: it resolves once they are written, to its confirm.
type InFlight = Started<'static, Result<PublisherConfirm, lapin::Error>>;

/// Awaits writes and confirms in publish order (the broker confirms in order) and frees their
/// permits.
async fn drain_confirms(
    mut confirms: mpsc::UnboundedReceiver<(InFlight, OwnedSemaphorePermit)>,
    failures: Arc<AtomicU64>,
) {
    while let Some((publish, permit)) = confirms.recv().await {
        let confirm = match pipeline::finish(publish).await {
            Some(Ok(confirm)) => confirm,
            Some(Err(error)) => {
                log::warn!("publishing a feed message failed: {error}");
                failures.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            None => continue, // awaited above, so always there
        };
        match confirm.await {
            Ok(confirmation) if confirmation.is_nack() => {
                log::warn!("the broker refused (nacked) a feed message");
                failures.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(error) => {
                log::warn!("a feed message's confirm failed: {error}");
                failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        drop(permit);
    }
}

#[derive(Debug, thiserror::Error)]
enum FanoutError {
    #[error("{0}")]
    Store(#[from] store::StoreError),
    #[error("publish failed: {0}")]
    Publish(#[from] lapin::Error),
    #[error("the confirm drain stopped")]
    Closed,
    #[error("a follower's control message was not confirmed; the switch is called off")]
    Incomplete,
}
