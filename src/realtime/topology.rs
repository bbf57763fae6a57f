//! Names and arguments of everything herald declares on RabbitMQ, in one place.

use lapin::types::{AMQPValue, FieldTable};
use uuid::Uuid;

use crate::config::RealtimeSettings;

/// Routing key that reaches every session of one user.
pub fn user_routing_key(user_id: Uuid) -> String {
    format!("user.{user_id}")
}

/// Name of one session's queue, prefixed by the exchange so several deployments (or test runs)
/// sharing a broker are easy to tell apart.
pub fn session_queue(exchange: &str, session_id: Uuid) -> String {
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
            super::session_queue("herald.feed", id),
            "herald.feed.session.00000000-0000-0000-0000-000000000000"
        );
    }
}
