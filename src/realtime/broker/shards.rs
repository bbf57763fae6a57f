//! Author shards: how a celebrity's events reach every node without a binding per author.
//!
//! In node mode the relay publishes an event routed `author.<id>` under one of a fixed set of
//! shard keys, `authors.<n>` (`n` a stable hash of the author, `realtime.author_shards` of them),
//! and names the author in a header. Every node binds every shard key once, when its link comes
//! up, so a connect or a follow costs the broker nothing for the authors it watches; the node's
//! registry already hands each delivery only to the local sessions that watch its author.
//! Measured (bench/BROKER.md): a bind is a cluster-wide metadata write at a few thousand per
//! second whatever the number of brokers, while an event costs each node little to drop.
//!
//! User shards (`realtime.user_shards` > 0, off by default) do the same for `user.<id>`: the
//! relay publishes it as `users.<n>` with the user in the header, and a node binds a user shard
//! while a local session's user falls in it (held like a user key), so at thousands of sessions
//! per node every shard is bound and a reconnect costs the broker nothing. Every node then gets
//! every per-user message, so it pays only where those are few: with `celebrity_followers = 1`
//! they are follow changes only (docs/SCALE.md).
//!
//! Session mode keeps `author.<id>` and `user.<id>` (each session queue binds exactly its own).

use lapin::types::{AMQPValue, FieldTable, ShortString};
use uuid::Uuid;

use super::topology::{user_routing_key, Route};
use crate::config::{QueueMode, RealtimeSettings};

/// Prefix of the author shard keys.
pub const SHARD_PREFIX: &str = "authors.";

/// Prefix of the user shard keys.
pub const USER_SHARD_PREFIX: &str = "users.";

/// How many shard keys each kind of route travels under; `None`: its own key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShardCounts {
    pub authors: Option<u16>,
    pub users: Option<u16>,
}

impl ShardCounts {
    /// What `settings` ask for: shards only in node mode, and only when set above 0.
    pub fn of(settings: &RealtimeSettings) -> ShardCounts {
        let node = settings.queue_mode == QueueMode::Node;
        let count = |n: u16| (node && n > 0).then_some(n);
        ShardCounts {
            authors: count(settings.author_shards),
            users: count(settings.user_shards),
        }
    }
}

/// Header naming the logical route (`author.<id>`) of a message published under a shard key.
pub const ROUTE_HEADER: &str = "herald-route";

/// The shard of `author` among `shards`: stable across processes and versions (the publisher
/// and every node must agree), spread evenly for random (v4) and time-ordered (v7) ids alike.
pub fn shard_of(author: Uuid, shards: u16) -> u16 {
    let bits = author.as_u128();
    let folded = (bits as u64) ^ ((bits >> 64) as u64);
    // A multiplicative mix, so ids that differ only in a few bits still land apart.
    let mixed = folded.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((mixed >> 32) % u64::from(shards.max(1))) as u16
}

/// Shard key number `n`.
pub fn shard_key(n: u16) -> String {
    format!("{SHARD_PREFIX}{n}")
}

/// Every shard key a node binds.
pub fn all_keys(shards: u16) -> Vec<String> {
    (0..shards.max(1)).map(shard_key).collect()
}

/// User shard key number `n`.
pub fn user_shard_key(n: u16) -> String {
    format!("{USER_SHARD_PREFIX}{n}")
}

/// The key a node binds for a local session of `user`: its shard with user shards (`shards` >
/// 0), else `user.<id>`.
pub fn node_user_key(user: Uuid, shards: u16) -> String {
    if shards == 0 {
        return user_routing_key(user);
    }
    user_shard_key(shard_of(user, shards))
}

/// Where the relay publishes a message whose logical routing key is `key`: `author.<id>` and
/// `user.<id>` go under their shard keys when those are on, with the header that names them;
/// anything else goes as it is.
pub fn physical_route(key: String, shards: ShardCounts) -> (String, Option<String>) {
    match Route::parse(&key) {
        Some(Route::Author(author)) => match shards.authors {
            Some(n) => (shard_key(shard_of(author, n)), Some(key)),
            None => (key, None),
        },
        Some(Route::User(user)) => match shards.users {
            Some(n) => (user_shard_key(shard_of(user, n)), Some(key)),
            None => (key, None),
        },
        None => (key, None),
    }
}

/// Adds the logical route to a message's headers.
pub fn tag(headers: &mut FieldTable, logical: String) {
    headers.insert(
        ShortString::from(ROUTE_HEADER),
        AMQPValue::LongString(logical.into()),
    );
}

/// What a delivery addresses: its routing key, or for a shard key the route its header names.
pub fn route_of(routing_key: &str, headers: Option<&FieldTable>) -> Option<Route> {
    let author_shard = routing_key.starts_with(SHARD_PREFIX);
    if !author_shard && !routing_key.starts_with(USER_SHARD_PREFIX) {
        return Route::parse(routing_key);
    }
    let logical = headers?.inner().get(ROUTE_HEADER)?;
    let text = match logical {
        AMQPValue::LongString(text) => String::from_utf8_lossy(text.as_bytes()).into_owned(),
        AMQPValue::ShortString(text) => text.as_str().to_owned(),
        _ => return None,
    };
    // An author travels only under an author shard, a user only under a user shard.
    match (Route::parse(&text)?, author_shard) {
        (Route::Author(author), true) => Some(Route::Author(author)),
        (Route::User(user), false) => Some(Route::User(user)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realtime::broker::topology::{author_routing_key, user_routing_key};

    #[test]
    fn an_author_goes_under_its_shard_and_comes_back_from_the_header() {
        let author = Uuid::new_v4();
        let shards = ShardCounts {
            authors: Some(16),
            users: None,
        };
        let (key, logical) = physical_route(author_routing_key(author), shards);
        assert_eq!(key, shard_key(shard_of(author, 16)));
        let mut headers = FieldTable::default();
        tag(&mut headers, logical.expect("an author is tagged"));
        assert_eq!(route_of(&key, Some(&headers)), Some(Route::Author(author)));
        // Without its header a shard delivery addresses no one.
        assert_eq!(route_of(&key, None), None);
    }

    #[test]
    fn users_and_session_mode_keep_their_keys() {
        let user = Uuid::new_v4();
        let key = user_routing_key(user);
        let authors_only = ShardCounts {
            authors: Some(16),
            users: None,
        };
        assert_eq!(
            physical_route(key.clone(), authors_only),
            (key.clone(), None)
        );
        let author = author_routing_key(user);
        let session_mode = ShardCounts::default();
        assert_eq!(physical_route(author.clone(), session_mode), (author, None));
        assert_eq!(route_of(&key, None), Some(Route::User(user)));
        assert_eq!(node_user_key(user, 0), key);
    }

    #[test]
    fn a_user_goes_under_its_user_shard_when_those_are_on() {
        let user = Uuid::new_v4();
        let shards = ShardCounts {
            authors: Some(16),
            users: Some(64),
        };
        let (key, logical) = physical_route(user_routing_key(user), shards);
        assert_eq!(key, node_user_key(user, 64));
        assert!(key.starts_with(USER_SHARD_PREFIX));
        let mut headers = FieldTable::default();
        tag(&mut headers, logical.expect("a user is tagged"));
        assert_eq!(route_of(&key, Some(&headers)), Some(Route::User(user)));
        // A user's route under an author shard, or an author's under a user shard, is refused.
        assert_eq!(route_of(&shard_key(0), Some(&headers)), None);
        let mut author = FieldTable::default();
        tag(&mut author, author_routing_key(user));
        assert_eq!(route_of(&user_shard_key(0), Some(&author)), None);
    }

    #[test]
    fn a_user_route_under_a_shard_key_is_refused() {
        let mut headers = FieldTable::default();
        tag(&mut headers, user_routing_key(Uuid::new_v4()));
        assert_eq!(route_of(&shard_key(0), Some(&headers)), None);
    }

    #[test]
    fn shards_are_stable_and_spread() {
        let mut counts = [0u32; 16];
        for i in 0..16_000u128 {
            counts[usize::from(shard_of(Uuid::from_u128(i * 7919), 16))] += 1;
        }
        assert!(counts.iter().all(|c| (700..1300).contains(c)), "{counts:?}");
        for _ in 0..100 {
            let v7 = Uuid::now_v7();
            assert!(shard_of(v7, 16) < 16);
        }
        assert_eq!(all_keys(3), vec!["authors.0", "authors.1", "authors.2"]);
        assert_eq!(shard_of(Uuid::from_u128(42), 1), 0);
    }
}
