//! The leader's publishing of one batch: each event to its routing keys, in position order,
//! through the outbox (pipelined, with confirms), reading an author's followers a page at a
//! time where it goes out once per follower.

use diesel_async::AsyncPgConnection;
use lapin::Channel;
use std::collections::VecDeque;
use uuid::Uuid;

use super::outbox::{Outbox, PublishError};
use super::Leader;
use crate::realtime::broker::topology::{author_routing_key, user_routing_key};
use crate::realtime::control::{self, Control};
use crate::realtime::events::frame_of;
use crate::realtime::trace::Sent;
use crate::store::events::{Kind, RelayedEvent};
use crate::store::friends;

impl Leader {
    /// Publishes `rows` (read at `picked`, microseconds since the epoch) in order and waits
    /// for every confirm.
    pub(super) async fn publish(
        &self,
        conn: &mut AsyncPgConnection,
        channel: &Channel,
        rows: &[RelayedEvent],
        picked: i64,
    ) -> Result<(), PublishError> {
        let mut out = Outbox {
            channel,
            exchange: &self.exchange,
            in_flight: VecDeque::new(),
            max_in_flight: self.max_in_flight,
            stats: &self.stats,
            sent: Sent::default(),
            first_of_event: false,
            shards: self.shards,
        };
        for row in rows {
            let event = &row.event;
            let seq = event.seq;
            out.sent = Sent {
                recorded_us: row.recorded_us,
                committed_us: self.relay.commits.after(row.recorded_us),
                picked_us: picked,
            };
            let Some(kind) = Kind::parse(&event.kind) else {
                log::warn!(
                    "feed position {seq} has an unknown kind {:?}; skipped",
                    event.kind
                );
                continue;
            };
            // Stages are timed for what sessions see (post events), not for routing changes.
            out.first_of_event = kind.is_post();
            match kind {
                Kind::PostCreated | Kind::PostUpdated | Kind::PostDeleted => {
                    let Some((_, frame)) = frame_of(event) else {
                        log::warn!("feed position {seq} is a post event without a post; skipped");
                        continue;
                    };
                    let properties = control::properties(seq, false);
                    if row.once() {
                        let key = author_routing_key(event.author_id);
                        out.send(key, frame.as_bytes(), properties).await?;
                    } else {
                        self.to_followers(
                            conn,
                            &mut out,
                            event.author_id,
                            frame.as_bytes(),
                            seq,
                            false,
                        )
                        .await?;
                    }
                }
                Kind::Follow | Kind::Unfollow if row.once() => {
                    let Some(follower) = event.follower_id else {
                        continue;
                    };
                    let control = match kind {
                        Kind::Follow => Control::Watch(event.author_id),
                        _ => Control::Unwatch(event.author_id),
                    };
                    let properties = control::properties(seq, true);
                    out.send(user_routing_key(follower), &control.to_json(), properties)
                        .await?;
                }
                // A follow of an author published per follower changes nothing at the nodes:
                // the relay reads the followers when it publishes.
                Kind::Follow | Kind::Unfollow => {}
                Kind::Celebrity => {
                    let watch = Control::Watch(event.author_id).to_json();
                    self.to_followers(conn, &mut out, event.author_id, &watch, seq, true)
                        .await?;
                }
            }
        }
        out.finish().await
    }

    /// Publishes `payload` to every follower of `author_id`, a keyset page at a time.
    async fn to_followers(
        &self,
        conn: &mut AsyncPgConnection,
        out: &mut Outbox<'_>,
        author_id: Uuid,
        payload: &[u8],
        seq: i64,
        is_control: bool,
    ) -> Result<(), PublishError> {
        let mut after = Uuid::nil();
        loop {
            let page = friends::followers_page(conn, author_id, after, self.page_size).await?;
            for follower in &page {
                let properties = control::properties(seq, is_control);
                out.send(user_routing_key(*follower), payload, properties)
                    .await?;
            }
            match page.last() {
                Some(last) if page.len() as i64 == self.page_size => after = *last,
                _ => return Ok(()),
            }
        }
    }
}
