//! Control messages: how the relay tells every node holding a user's sessions that the user
//! started or stopped following a celebrity (or that an author it follows became one), at a
//! position of the feed log. They travel like events (routed `user.<follower>`, so they reach
//! exactly the nodes or session queues of that user) but carry the AMQP type [`CONTROL_TYPE`]
//! and are never written to a WebSocket. Every message the relay publishes, event or control,
//! carries its position as its AMQP `message_id` ([`seq_of`]).

use lapin::BasicProperties;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// AMQP `type` property of control messages; events carry none.
pub const CONTROL_TYPE: &str = "herald.control";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Control {
    /// Start routing `author.<id>` to this user's sessions.
    Watch(Uuid),
    /// Stop routing `author.<id>` to this user's sessions.
    Unwatch(Uuid),
}

impl Control {
    pub fn to_json(self) -> Vec<u8> {
        // A one-field enum of a UUID always serializes.
        serde_json::to_vec(&self).unwrap_or_default()
    }

    pub fn parse(body: &[u8]) -> Option<Control> {
        serde_json::from_slice(body).ok()
    }
}

/// The AMQP properties of a feed message at position `seq`.
pub fn properties(seq: i64, control: bool) -> BasicProperties {
    let properties = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(1)
        .with_message_id(seq.to_string().into());
    if control {
        properties.with_type(CONTROL_TYPE.into())
    } else {
        properties
    }
}

/// The position a feed message carries (0 for one that carries none: it sorts before every
/// real position, so a session drops it rather than let it break the order).
pub fn seq_of(properties: &BasicProperties) -> i64 {
    properties
        .message_id()
        .as_ref()
        .and_then(|id| id.as_str().parse().ok())
        .unwrap_or(0)
}

/// Whether a delivery with these properties is a control message.
pub fn is_control(properties: &BasicProperties) -> bool {
    properties
        .kind()
        .as_ref()
        .is_some_and(|kind| kind.as_str() == CONTROL_TYPE)
}

#[cfg(test)]
mod tests {
    use super::Control;
    use uuid::Uuid;

    #[test]
    fn controls_round_trip_and_garbage_is_refused() {
        let id = Uuid::new_v4();
        for control in [Control::Watch(id), Control::Unwatch(id)] {
            assert_eq!(Control::parse(&control.to_json()), Some(control));
        }
        assert_eq!(
            String::from_utf8(Control::Watch(id).to_json()).expect("utf-8"),
            format!("{{\"watch\":\"{id}\"}}")
        );
        assert_eq!(Control::parse(b"{\"follow\":1}"), None);
    }

    #[test]
    fn positions_travel_as_the_message_id() {
        assert_eq!(super::seq_of(&super::properties(42, false)), 42);
        assert!(super::is_control(&super::properties(7, true)));
        assert!(!super::is_control(&super::properties(7, false)));
        assert_eq!(super::seq_of(&lapin::BasicProperties::default()), 0);
    }
}
