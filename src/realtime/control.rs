//! Control messages: how a write on one node tells every node holding a user's sessions that the
//! user started or stopped following a celebrity. They travel like events (routed
//! `user.<follower>`, so they reach exactly the nodes or session queues of that user) but carry
//! the AMQP type [`CONTROL_TYPE`] and are never written to a WebSocket.

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
}
