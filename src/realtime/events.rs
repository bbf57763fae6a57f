//! The feed events sessions receive, exactly as the contract spells them on the wire.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

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
}
