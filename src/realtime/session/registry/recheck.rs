//! Checking every session's position against the feed log, when the log has started a new epoch
//! (see `store::epochs`): each running session holds its live events and fills its gap from its
//! last position, which answers `feed.reset` where that position belongs to a history the
//! database no longer has. A session that receives no event after a failover learns of it so.

use actix::prelude::*;

use super::SessionRegistry;
use crate::realtime::session::protocol::FeedSync;

/// Asks every running session of this node to check its position against the log.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct CheckPositions;

impl Handler<CheckPositions> for SessionRegistry {
    type Result = usize;

    fn handle(&mut self, _: CheckPositions, _: &mut Context<Self>) -> usize {
        let mut asked = 0;
        for handle in self
            .sessions
            .values()
            .filter_map(|entry| entry.handle.as_ref())
        {
            // Sessions still being admitted have their first fill to come, which checks.
            handle.sync.do_send(FeedSync::Hold);
            handle.sync.do_send(FeedSync::CatchUp { after: None });
            asked += 1;
        }
        asked
    }
}
