//! Watching for a new epoch of the feed log (see `store::epochs`): every node polls the newest
//! epoch that moved the numbering, and when it changes (a failover that may have lost commits)
//! has every local session check its position, so a session whose client saw a lost event gets
//! `feed.reset` even if no new event comes its way. (Sessions that do receive an event after the
//! failover see the jump and check by themselves: see `in_order`.)

use std::time::Duration;

use actix::Addr;

use super::registry::recheck::CheckPositions;
use super::registry::SessionRegistry;
use crate::store::{self, epochs, DbPool};

/// How often each node reads the newest epoch (one indexed read of a tiny table).
const POLL_EVERY: Duration = Duration::from_secs(2);

/// Runs until the registry is gone. The first read, at once (the node starts right after its
/// database check, before any session exists), sets the baseline: sessions admitted later start
/// from positions of the epoch current then.
pub async fn run(registry: Addr<SessionRegistry>, pool: DbPool) {
    let mut seen: Option<Option<i64>> = None;
    while registry.connected() {
        let newest = match store::connection(&pool).await {
            Ok(mut conn) => epochs::newest_jump(&mut conn).await,
            Err(error) => Err(error),
        };
        // Unreadable (the database is away): try again next round.
        if let Ok(newest) = newest {
            if seen.is_some_and(|before| before != newest) {
                match registry.send(CheckPositions).await {
                    Ok(asked) => log::warn!(
                        "the feed log started a new epoch (a failover): {asked} sessions check \
                         their positions"
                    ),
                    Err(_) => return,
                }
            }
            seen = Some(newest);
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}
