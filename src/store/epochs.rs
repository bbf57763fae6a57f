//! The feed log's epochs (the `feed_epochs` table, see the `failover` migration): what keeps a
//! position from ever naming two different events when the database's history changes under
//! herald (a standby promoted after asynchronous replication, a backup restored).
//!
//! A server's identity is its system identifier and its WAL timeline: a promoted standby has a
//! new timeline, a restored dump a new system identifier, while a restart (even a crash, even
//! behind the same forwarded address) keeps both. The relay calls [`enter`] each time it takes
//! the lead, before it numbers anything: when the server is not the one the newest epoch was
//! written on, this server may lack commits the old one numbered and published, so the
//! numbering jumps far past anything that may have been handed out, and the range skipped is
//! recorded. A `since` in a skipped range gets `feed.reset` ([`in_skipped_range`]); a live
//! session sees the jump ([`SUSPICIOUS_JUMP`]) and checks its position against the log before
//! writing anything after it.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use super::StoreError;

/// How far past the last position it has a new epoch starts at least: more events than the
/// lost history can have numbered.
pub const EPOCH_GAP: i64 = 1 << 32;

/// A step between two positions one session receives that only a new epoch makes (nothing else
/// skips two billion positions): the session then checks its own against the log.
pub const SUSPICIOUS_JUMP: i64 = EPOCH_GAP / 2;

/// The epoch the relay numbers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, QueryableByName)]
pub struct Epoch {
    /// The last position this history shares with the one before.
    #[diesel(sql_type = BigInt)]
    pub branched_at: i64,
    /// Numbering continues after this; nothing in (branched_at, base] exists.
    #[diesel(sql_type = BigInt)]
    pub base: i64,
    /// Whether this call started the epoch (the numbering jumped just now).
    #[diesel(sql_type = Bool)]
    pub started: bool,
}

impl Epoch {
    /// The position to record as published once everything up to `last` is: the skipped range
    /// holds no event, so having published up to `branched_at` is having published up to `base`.
    pub fn published_mark(&self, last: i64) -> i64 {
        if last == self.branched_at {
            self.base
        } else {
            last
        }
    }
}

/// The epoch statement. The identity query reads the timeline of the WAL being written
/// (`pg_control_checkpoint()` would show the old one until the first checkpoint after a
/// promotion); each function is only called where the role may (a managed database may refuse
/// `pg_control_system()`), 0 standing for "unknown". On a standby it fails (no WAL is
/// written there), which is right: the relay must not number on one.
///
/// The new base is the greater of the last position plus [`EPOCH_GAP`] and the server's clock in
/// microseconds plus the gap: the clock term keeps two standbys promoted one after the other,
/// from the same last position, from starting at the same base (a relay numbers far fewer than
/// one event per microsecond), and stays below 2^53, so JavaScript clients read it exactly.
const ENTER: &str = "
WITH identity AS (
    SELECT CASE WHEN has_function_privilege('pg_control_system()', 'EXECUTE')
                THEN (SELECT system_identifier FROM pg_control_system()) ELSE 0 END
               AS system_identifier,
           ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint
               AS timeline),
relay AS (SELECT numbered_seq FROM feed_relay WHERE id = 1 FOR UPDATE),
newest AS (
    SELECT system_identifier, timeline, branched_at, base FROM feed_epochs
     ORDER BY id DESC LIMIT 1),
decided AS (
    SELECT i.system_identifier, i.timeline, r.numbered_seq,
           n.branched_at AS kept_branched_at, n.base AS kept_base,
           (n.base IS NULL) AS first,
           (n.base IS NOT NULL AND (n.system_identifier, n.timeline)
                IS DISTINCT FROM (i.system_identifier, i.timeline)) AS changed
      FROM identity i CROSS JOIN relay r LEFT JOIN newest n ON true),
started AS (
    INSERT INTO feed_epochs (system_identifier, timeline, branched_at, base)
    SELECT system_identifier, timeline, numbered_seq,
           CASE WHEN changed
                THEN greatest(numbered_seq,
                              (extract(epoch FROM clock_timestamp()) * 1000000)::bigint)
                     + $1
                ELSE numbered_seq END
      FROM decided WHERE first OR changed
    RETURNING branched_at, base),
jumped AS (
    UPDATE feed_relay
       SET numbered_seq = started.base,
           published_seq = CASE WHEN published_seq >= numbered_seq THEN started.base
                                ELSE published_seq END
      FROM started WHERE id = 1 AND started.base > started.branched_at
    RETURNING 1)
SELECT coalesce(s.branched_at, d.kept_branched_at) AS branched_at,
       coalesce(s.base, d.kept_base) AS base,
       (s.base IS NOT NULL AND s.base > s.branched_at) AS started
  FROM decided d LEFT JOIN started s ON true";

/// Enters the epoch of the server `conn` is on, starting a new one (and moving the numbering
/// past the old history) if the server is not the one the newest epoch was written on. Only
/// the holder of the relay lock may call it, before numbering anything.
pub async fn enter(conn: &mut AsyncPgConnection) -> Result<Epoch, StoreError> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        Ok(diesel::sql_query(ENTER)
            .bind::<BigInt, _>(EPOCH_GAP)
            .get_result(conn)
            .await?)
    })
    .await
}

#[derive(QueryableByName)]
struct Skipped {
    #[diesel(sql_type = Bool)]
    skipped: bool,
}

/// Whether `position` lies in a range a new epoch skipped: a position of a history this log
/// no longer has (or never gave out), which no resume can continue from.
pub async fn in_skipped_range(
    conn: &mut AsyncPgConnection,
    position: i64,
) -> Result<bool, StoreError> {
    let found: Skipped = diesel::sql_query(
        "SELECT EXISTS (SELECT 1 FROM feed_epochs WHERE branched_at < $1 AND $1 <= base)
             AS skipped",
    )
    .bind::<BigInt, _>(position)
    .get_result(conn)
    .await?;
    Ok(found.skipped)
}

#[derive(QueryableByName)]
struct Newest {
    #[diesel(sql_type = diesel::sql_types::Nullable<BigInt>)]
    id: Option<i64>,
}

/// The newest epoch that moved the numbering (none before the first failover).
pub async fn newest_jump(conn: &mut AsyncPgConnection) -> Result<Option<i64>, StoreError> {
    let newest: Newest =
        diesel::sql_query("SELECT max(id) AS id FROM feed_epochs WHERE base > branched_at")
            .get_result(conn)
            .await?;
    Ok(newest.id)
}

/// Makes this connection's commits durable on this server before they return, if the server
/// would let them return earlier (`synchronous_commit = off`): positions the relay numbers are
/// published right after, and must survive a crash of the server (a restart keeps the epoch,
/// so nothing else would stop them being given out again).
pub async fn durable_commits(conn: &mut AsyncPgConnection) -> Result<(), StoreError> {
    diesel::sql_query(
        "SELECT set_config('synchronous_commit', 'local', false)
          WHERE current_setting('synchronous_commit') = 'off'",
    )
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Epoch;

    #[test]
    fn publishing_up_to_the_branch_point_is_publishing_up_to_the_base() {
        let epoch = Epoch {
            branched_at: 16,
            base: 1 << 40,
            started: true,
        };
        assert_eq!(epoch.published_mark(16), 1 << 40);
        assert_eq!(epoch.published_mark(15), 15);
        assert_eq!(epoch.published_mark((1 << 40) + 3), (1 << 40) + 3);
    }
}
