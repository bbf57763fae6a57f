//! Names and arguments of everything herald declares on RabbitMQ, and the one way a routing key
//! is bound to or unbound from a queue, in one place.

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use lapin::options::QueueBindOptions;
use lapin::types::{AMQPValue, FieldTable};
use lapin::Channel;
use uuid::Uuid;

use crate::config::RealtimeSettings;

/// Routing key that reaches every session of one user.
pub fn user_routing_key(user_id: Uuid) -> String {
    format!("user.{user_id}")
}

/// Routing key of a celebrity's events: published once, bound by every node (or session queue)
/// with a local follower of that author.
pub fn author_routing_key(author_id: Uuid) -> String {
    format!("author.{author_id}")
}

/// What a delivery's routing key addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    User(Uuid),
    Author(Uuid),
}

impl Route {
    pub fn parse(key: &str) -> Option<Route> {
        if let Some(id) = key.strip_prefix("user.") {
            return Uuid::parse_str(id).ok().map(Route::User);
        }
        key.strip_prefix("author.")
            .and_then(|id| Uuid::parse_str(id).ok())
            .map(Route::Author)
    }

    pub fn key(self) -> String {
        match self {
            Route::User(id) => user_routing_key(id),
            Route::Author(id) => author_routing_key(id),
        }
    }
}

/// Name of one node's queue (node mode), prefixed by the exchange like session queues.
pub fn node_queue_name(exchange: &str, node_id: Uuid) -> String {
    format!("{exchange}.node.{node_id}")
}

/// Arguments of a node queue: capped, so a stalled node cannot fill the broker's memory. It
/// needs no `x-expires`: it is exclusive, so it goes with the node's connection.
pub fn node_queue_arguments(settings: &RealtimeSettings) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-max-length".into(),
        AMQPValue::LongLongInt(i64::from(settings.node_queue_max_length)),
    );
    args
}

/// Name of one session's queue, prefixed by the exchange so several deployments (or test runs)
/// sharing a broker are easy to tell apart.
pub fn session_queue_name(exchange: &str, session_id: Uuid) -> String {
    format!("{exchange}.session.{session_id}")
}

/// Arguments of a session queue: `x-expires` drops a queue nobody uses (a safety net should a
/// delete be lost), `x-max-length` caps what a stuck consumer can pile up.
pub fn session_queue_arguments(settings: &RealtimeSettings) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-expires".into(),
        AMQPValue::LongLongInt(i64::from(settings.queue_expires_ms)),
    );
    args.insert(
        "x-max-length".into(),
        AMQPValue::LongLongInt(i64::from(settings.queue_max_length)),
    );
    args
}

/// Binds `key` on `exchange` to `queue`. (Not awaited here: the node binder starts many before
/// it awaits any.)
pub fn bind<'a>(
    channel: &'a Channel,
    queue: &str,
    exchange: &str,
    key: &str,
) -> BoxFuture<'a, Result<(), lapin::Error>> {
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .boxed()
}

/// Unbinds `key` on `exchange` from `queue`.
pub fn unbind<'a>(
    channel: &'a Channel,
    queue: &str,
    exchange: &str,
    key: &str,
) -> BoxFuture<'a, Result<(), lapin::Error>> {
    channel
        .queue_unbind(
            queue.into(),
            exchange.into(),
            key.into(),
            FieldTable::default(),
        )
        .boxed()
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    #[test]
    fn names_carry_the_ids() {
        let id = Uuid::nil();
        assert_eq!(
            super::user_routing_key(id),
            "user.00000000-0000-0000-0000-000000000000"
        );
        assert_eq!(
            super::session_queue_name("herald.feed", id),
            "herald.feed.session.00000000-0000-0000-0000-000000000000"
        );
    }

    #[test]
    fn routes_parse_back_from_their_keys() {
        use super::Route;
        let id = Uuid::new_v4();
        assert_eq!(Route::parse(&Route::User(id).key()), Some(Route::User(id)));
        assert_eq!(
            Route::parse(&Route::Author(id).key()),
            Some(Route::Author(id))
        );
        assert_eq!(Route::parse("user.not-a-uuid"), None);
        assert_eq!(Route::parse(&format!("group.{id}")), None);
    }
}
