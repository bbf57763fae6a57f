//! The feed events sessions receive, exactly as the contract spells them on the wire: each
//! with its position `seq`, built from a row of the feed log; and the `feed.reset` frame.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::store::events::{Kind, LoggedEvent};

/// One event, serialized as one WebSocket text frame (and one AMQP message body).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum FeedEvent {
    #[serde(rename = "post.created")]
    PostCreated {
        #[serde(rename = "postId")]
        post_id: Uuid,
        #[serde(rename = "postText")]
        post_text: String,
        author_user_id: Uuid,
    },
    #[serde(rename = "post.updated")]
    PostUpdated {
        #[serde(rename = "postId")]
        post_id: Uuid,
        #[serde(rename = "postText")]
        post_text: String,
        author_user_id: Uuid,
    },
    #[serde(rename = "post.deleted")]
    PostDeleted {
        #[serde(rename = "postId")]
        post_id: Uuid,
        author_user_id: Uuid,
    },
}

impl FeedEvent {
    /// The author whose followers must receive this event.
    pub fn author(&self) -> Uuid {
        match self {
            FeedEvent::PostCreated { author_user_id, .. }
            | FeedEvent::PostUpdated { author_user_id, .. }
            | FeedEvent::PostDeleted { author_user_id, .. } => *author_user_id,
        }
    }

    pub fn to_json(&self) -> String {
        // Serializing this enum cannot fail: every field is a string or a UUID.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The post event a log row records (`None` for routing changes, which no client sees).
    pub fn from_logged(row: &LoggedEvent) -> Option<FeedEvent> {
        let post_id = row.post_id?;
        let author_user_id = row.author_id;
        let text = || row.post_text.clone().unwrap_or_default();
        Some(match Kind::parse(&row.kind)? {
            Kind::PostCreated => FeedEvent::PostCreated {
                post_id,
                post_text: text(),
                author_user_id,
            },
            Kind::PostUpdated => FeedEvent::PostUpdated {
                post_id,
                post_text: text(),
                author_user_id,
            },
            Kind::PostDeleted => FeedEvent::PostDeleted {
                post_id,
                author_user_id,
            },
            Kind::Follow | Kind::Unfollow | Kind::Celebrity => return None,
        })
    }

    /// The text frame of this event at position `seq`.
    pub fn frame(&self, seq: i64) -> String {
        #[derive(Serialize)]
        struct Sequenced<'a> {
            #[serde(flatten)]
            event: &'a FeedEvent,
            seq: i64,
        }
        serde_json::to_string(&Sequenced { event: self, seq }).unwrap_or_default()
    }
}

/// A frame ready for a session: its position and its text.
pub type Frame = (i64, Arc<str>);

/// A log row as a session's frame, if sessions see it.
pub fn frame_of(row: &LoggedEvent) -> Option<Frame> {
    let event = FeedEvent::from_logged(row)?;
    Some((row.seq, event.frame(row.seq).into()))
}

/// The frame that tells a client its gap cannot be filled: reload `/post/feed`, then continue
/// from `seq`.
pub fn reset_frame(seq: i64) -> String {
    serde_json::json!({ "type": "feed.reset", "seq": seq }).to_string()
}

#[cfg(test)]
mod tests {
    use super::FeedEvent;
    use uuid::Uuid;

    #[test]
    fn events_use_the_contract_field_names() {
        let (post, author) = (Uuid::nil(), Uuid::max());
        let created = FeedEvent::PostCreated {
            post_id: post,
            post_text: "hi".into(),
            author_user_id: author,
        };
        let value: serde_json::Value = serde_json::from_str(&created.to_json()).expect("json");
        assert_eq!(value["type"], "post.created");
        assert_eq!(value["postId"], post.to_string());
        assert_eq!(value["postText"], "hi");
        assert_eq!(value["author_user_id"], author.to_string());

        let deleted = FeedEvent::PostDeleted {
            post_id: post,
            author_user_id: author,
        };
        let value: serde_json::Value = serde_json::from_str(&deleted.to_json()).expect("json");
        assert_eq!(value["type"], "post.deleted");
        assert!(value.get("postText").is_none());
        assert_eq!(created.author(), author);
    }

    #[test]
    fn frames_carry_their_position_beside_the_contract_fields() {
        let event = FeedEvent::PostUpdated {
            post_id: Uuid::nil(),
            post_text: "edited".into(),
            author_user_id: Uuid::max(),
        };
        let value: serde_json::Value = serde_json::from_str(&event.frame(42)).expect("json");
        assert_eq!(value["type"], "post.updated");
        assert_eq!(value["seq"], 42);
        assert_eq!(value["postText"], "edited");
        assert_eq!(value["author_user_id"], Uuid::max().to_string());
        let reset: serde_json::Value = serde_json::from_str(&super::reset_frame(7)).expect("json");
        assert_eq!(reset, serde_json::json!({"type": "feed.reset", "seq": 7}));
    }

    #[test]
    fn routing_rows_are_not_frames() {
        let row = crate::store::events::LoggedEvent {
            seq: 3,
            kind: "follow".into(),
            author_id: Uuid::max(),
            follower_id: Some(Uuid::nil()),
            post_id: None,
            post_text: None,
        };
        assert!(super::frame_of(&row).is_none());
        let post = crate::store::events::LoggedEvent {
            kind: "post.deleted".into(),
            post_id: Some(Uuid::nil()),
            follower_id: None,
            ..row
        };
        let (seq, text) = super::frame_of(&post).expect("a post frame");
        assert_eq!(seq, 3);
        assert!(text.contains("\"post.deleted\""));
    }
}
