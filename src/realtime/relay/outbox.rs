//! The relay's outbox: publishes pipelined (each publish's frames queued in order without
//! waiting for the one before: see `broker::pipeline`), with at most `max_in_flight`
//! unconfirmed, each event's stages observed as its first message goes.

use std::collections::VecDeque;
use std::time::Instant;

use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Channel, PublisherConfirm};

use crate::realtime::broker::pipeline::{self, Started};
use crate::realtime::broker::shards;
use crate::realtime::stats::{Stage, Stats};
use crate::realtime::trace::{self, Sent};
use crate::store::StoreError;

/// Why a batch was not confirmed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Broker(#[from] lapin::Error),
    #[error("the broker refused (nacked) a message")]
    Nacked,
}

/// A publish whose frames are queued: it resolves once they are written, to its confirm.
/// With when it was sent.
pub type InFlight = (
    Instant,
    Started<'static, Result<PublisherConfirm, lapin::Error>>,
);

/// Publishes pipelined (each publish's frames queued in order without waiting for the one
/// before: see `pipeline`), with at most `max_in_flight` unconfirmed.
pub struct Outbox<'a> {
    pub channel: &'a Channel,
    pub exchange: &'a str,
    pub in_flight: VecDeque<InFlight>,
    pub max_in_flight: usize,
    pub stats: &'a Stats,
    /// The current event's stamps.
    pub sent: Sent,
    /// Whether the current event's first message is still to go (its stages are observed then).
    pub first_of_event: bool,
    /// Which routes go under shard keys (see `broker::shards`).
    pub shards: shards::ShardCounts,
}

impl Outbox<'_> {
    pub async fn send(
        &mut self,
        routing_key: String,
        payload: &[u8],
        properties: BasicProperties,
    ) -> Result<(), PublishError> {
        while self.in_flight.len() >= self.max_in_flight {
            if let Some(oldest) = self.in_flight.pop_front() {
                confirmed(oldest, self.stats).await?;
            }
        }
        if std::mem::take(&mut self.first_of_event) {
            trace::observe_relayed(&self.sent, self.stats);
        }
        let mut headers = trace::headers(self.sent);
        let (routing_key, logical) = shards::physical_route(routing_key, self.shards);
        if let Some(logical) = logical {
            shards::tag(&mut headers, logical);
        }
        let properties = properties.with_headers(headers);
        let publish = {
            let (channel, exchange) = (self.channel.clone(), self.exchange.to_owned());
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
        let sent = Instant::now();
        self.in_flight
            .push_back((sent, pipeline::start(Box::pin(publish)).await));
        self.stats.add_published(1);
        Ok(())
    }

    /// Waits for every confirm; the first failure fails the batch.
    pub async fn finish(mut self) -> Result<(), PublishError> {
        let mut outcome = Ok(());
        while let Some(publish) = self.in_flight.pop_front() {
            if let Err(error) = confirmed(publish, self.stats).await {
                outcome = outcome.and(Err(error));
            }
        }
        outcome
    }
}

async fn confirmed((sent, publish): InFlight, stats: &Stats) -> Result<(), PublishError> {
    let Some(written) = pipeline::finish(publish).await else {
        return Ok(()); // awaited already
    };
    let acked = !written?.await?.is_nack();
    stats.count_confirm(acked);
    stats.observe(Stage::Confirm, sent.elapsed().as_secs_f64());
    if !acked {
        return Err(PublishError::Nacked);
    }
    Ok(())
}
