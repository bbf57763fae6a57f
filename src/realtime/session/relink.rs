//! Relinking: when the broker link comes back (or moves to another of `amqp.urls`), every
//! session that outlived the old link is routed again on the new one and then fills its gap
//! from the feed log. No session is closed for a lost link.

use std::time::Duration;

use actix::Addr;
use futures_util::StreamExt;
use lapin::Channel;
use tokio::sync::watch;

use super::admission;
use super::registry::relinking::{HeldSessions, Relinked};
use super::registry::SessionRegistry;
use crate::store::DbPool;

/// Sessions rerouted at once: each costs a round trip to PostgreSQL and a few to RabbitMQ, which
/// the node queue's binder batches, so many in flight keep both busy (32 took 10 s for 2,000
/// sessions in S6 on a loaded machine).
const CONCURRENCY: usize = 128;

/// How long to wait before trying again the sessions a pass could not reroute.
const RETRY: Duration = Duration::from_secs(1);

/// Runs until the broker actor is gone: after every new link (a new publishing channel),
/// reroutes the sessions held since the last one was lost.
pub async fn run(
    registry: Addr<SessionRegistry>,
    pool: DbPool,
    mut links: watch::Receiver<Option<Channel>>,
) {
    while links.changed().await.is_ok() {
        loop {
            if links.borrow_and_update().is_none() {
                break; // down again: wait for the next link
            }
            let failed = pass(&registry, &pool).await;
            if failed == 0 {
                break;
            }
            tokio::time::sleep(RETRY).await;
        }
    }
}

/// Reroutes every held session once; returns how many could not be.
async fn pass(registry: &Addr<SessionRegistry>, pool: &DbPool) -> usize {
    let Ok(held) = registry.send(HeldSessions).await else {
        return 0;
    };
    if held.is_empty() {
        return 0;
    }
    let total = held.len();
    let failed = futures_util::stream::iter(held)
        .map(|(session_id, user_id)| async move {
            match admission::reroute(registry, pool, session_id, user_id).await {
                Ok(()) => {
                    registry.do_send(Relinked { session_id });
                    0
                }
                Err(error) => {
                    log::warn!(
                        "session {session_id}: rerouting it on the new link failed: {error}"
                    );
                    1
                }
            }
        })
        .buffer_unordered(CONCURRENCY)
        .fold(0usize, |sum, failed| async move { sum + failed })
        .await;
    log::info!(
        "broker link back: {} of {total} sessions rerouted and catching up from the log",
        total - failed
    );
    failed
}
