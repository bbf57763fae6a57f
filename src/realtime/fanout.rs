//! Fan-out: turns one post event into one AMQP message per follower, routed `user.<follower>`.
//!
//! It runs beside the request path: the HTTP handler only enqueues a job. One worker takes jobs
//! in order (so a follower sees a post's events in the order they happened), streams the
//! author's followers from PostgreSQL in keyset pages, and publishes with confirms pipelined:
//! it never waits for one confirm before the next publish. A separate task drains confirms,
//! and a semaphore bounds how many are in flight.

use std::sync::Arc;

use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Channel, PublisherConfirm};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use super::topology::user_routing_key;
use crate::config::RealtimeSettings;
use crate::store::{self, friends, DbPool};

/// Jobs waiting beyond this make `BrokerActor`'s enqueue wait (backpressure on writers).
const JOB_BACKLOG: usize = 10_000;

/// One event to deliver to every follower of `author_id`.
pub struct FanoutJob {
    pub author_id: Uuid,
    pub payload: Arc<[u8]>,
}

/// Starts the worker on the current arbiter; returns where to send jobs.
///
/// `channel` carries the current publishing channel (with confirms on), `None` while the broker
/// is disconnected: the worker waits for the next one rather than dropping jobs.
pub fn spawn(
    db: DbPool,
    settings: &RealtimeSettings,
    channel: watch::Receiver<Option<Channel>>,
) -> mpsc::Sender<FanoutJob> {
    let (jobs_tx, jobs_rx) = mpsc::channel(JOB_BACKLOG);
    let (confirms_tx, confirms_rx) = mpsc::unbounded_channel();
    let worker = Worker {
        db,
        exchange: settings.exchange.clone(),
        page_size: settings.fanout_page_size,
        in_flight: Arc::new(Semaphore::new(settings.max_confirms_in_flight)),
        channel,
        confirms: confirms_tx,
    };
    actix_rt::spawn(worker.run(jobs_rx));
    actix_rt::spawn(drain_confirms(confirms_rx));
    jobs_tx
}

struct Worker {
    db: DbPool,
    exchange: String,
    page_size: i64,
    in_flight: Arc<Semaphore>,
    channel: watch::Receiver<Option<Channel>>,
    confirms: mpsc::UnboundedSender<(PublisherConfirm, OwnedSemaphorePermit)>,
}

impl Worker {
    async fn run(mut self, mut jobs: mpsc::Receiver<FanoutJob>) {
        while let Some(job) = jobs.recv().await {
            let Some(channel) = self.current_channel().await else {
                return; // the broker actor is gone: the process is stopping
            };
            if let Err(error) = self.fan_out(&channel, &job).await {
                log::error!("fan-out of an event by {} stopped: {error}", job.author_id);
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

    async fn fan_out(&self, channel: &Channel, job: &FanoutJob) -> Result<(), FanoutError> {
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(1);
        let mut after = Uuid::nil();
        loop {
            let page = {
                let mut conn = store::connection(&self.db).await?;
                friends::followers_page(&mut conn, job.author_id, after, self.page_size).await?
            };
            for follower in &page {
                let permit = Arc::clone(&self.in_flight)
                    .acquire_owned()
                    .await
                    .map_err(|_| FanoutError::Closed)?;
                let confirm = channel
                    .basic_publish(
                        self.exchange.as_str().into(),
                        user_routing_key(*follower).into(),
                        BasicPublishOptions::default(),
                        &job.payload,
                        properties.clone(),
                    )
                    .await?;
                self.confirms
                    .send((confirm, permit))
                    .map_err(|_| FanoutError::Closed)?;
            }
            match page.last() {
                Some(last) if page.len() as i64 == self.page_size => after = *last,
                _ => return Ok(()),
            }
        }
    }
}

/// Awaits confirms in publish order (the broker confirms in order) and frees their permits.
async fn drain_confirms(
    mut confirms: mpsc::UnboundedReceiver<(PublisherConfirm, OwnedSemaphorePermit)>,
) {
    while let Some((confirm, permit)) = confirms.recv().await {
        match confirm.await {
            Ok(confirmation) if confirmation.is_nack() => {
                log::warn!("the broker refused (nacked) a feed event")
            }
            Ok(_) => {}
            Err(error) => log::warn!("a feed event's confirm failed: {error}"),
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
}
