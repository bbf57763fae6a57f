//! `FeedHistory`: fills a session's gap from the feed log, as frames, within the history bounds
//! (`realtime.history_max_events`, `realtime.history_ttl_secs`), and counts what it replays.

use uuid::Uuid;

use crate::realtime::events::{frame_of, Frame};
use crate::realtime::stats::Stats;
use crate::store::events::LoggedEvent;
use crate::store::history::{self, History, HistoryBounds};
use crate::store::{self, DbPool, StoreError};

/// What a fill came to.
#[derive(Debug)]
pub enum Fill {
    /// The missed events, in position order.
    Frames(Vec<Frame>),
    /// The gap cannot be filled: the client must reload and continue from this position.
    Reset(i64),
}

#[derive(Clone)]
pub struct FeedHistory {
    pool: DbPool,
    bounds: HistoryBounds,
    stats: Stats,
}

impl FeedHistory {
    pub fn new(pool: DbPool, bounds: HistoryBounds, stats: Stats) -> Self {
        FeedHistory {
            pool,
            bounds,
            stats,
        }
    }

    /// `user_id`'s missed post events after `after`, from every author it follows: always all
    /// of them, since a session drops by position whatever the fill's newest covers, so a fill
    /// of one author would make other authors' events still on their way look like repeats.
    pub async fn fill(&self, user_id: Uuid, after: i64) -> Result<Fill, StoreError> {
        let mut conn = store::connection(&self.pool).await?;
        Ok(
            match history::history(&mut conn, user_id, after, Some(self.bounds)).await? {
                History::Events(rows) => self.frames(&rows),
                History::Reset(head) => Fill::Reset(head),
            },
        )
    }

    /// The same for a position herald read itself at the session's admission (its first fill,
    /// when the client named none): such a position is inside the bounds by construction, so
    /// this is one statement, not the bounded read's snapshot of five. A connect storm pays it
    /// once per session.
    pub async fn fill_fresh(&self, user_id: Uuid, after: i64) -> Result<Fill, StoreError> {
        let mut conn = store::connection(&self.pool).await?;
        match history::recent(&mut conn, user_id, after, self.bounds.max_events).await? {
            Some(rows) => Ok(self.frames(&rows)),
            // More than a gap may hold, within moments: let the bounded read decide.
            None => {
                drop(conn);
                self.fill(user_id, after).await
            }
        }
    }

    fn frames(&self, rows: &[LoggedEvent]) -> Fill {
        let frames: Vec<Frame> = rows.iter().filter_map(frame_of).collect();
        self.stats.add_replayed(frames.len() as u64);
        Fill::Frames(frames)
    }
}
