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
//! Session mode keeps `author.<id>` (each session queue binds exactly what it follows).

use lapin::types::{AMQPValue, FieldTable, ShortString};
use uuid::Uuid;

use super::topology::Route;

/// Prefix of the shard keys.
pub const SHARD_PREFIX: &str = "authors.";

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

/// Where the relay publishes a message whose logical routing key is `key`: a celebrity's
/// `author.<id>` goes under its shard key, with the header that names it; anything else (and
/// everything when `shards` is `None`, session mode) goes as it is.
pub fn physical_route(key: String, shards: Option<u16>) -> (String, Option<String>) {
    match (shards, Route::parse(&key)) {
        (Some(shards), Some(Route::Author(author))) => {
            (shard_key(shard_of(author, shards)), Some(key))
        }
        _ => (key, None),
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
    if !routing_key.starts_with(SHARD_PREFIX) {
        return Route::parse(routing_key);
    }
    let logical = headers?.inner().get(ROUTE_HEADER)?;
    let text = match logical {
        AMQPValue::LongString(text) => String::from_utf8_lossy(text.as_bytes()).into_owned(),
        AMQPValue::ShortString(text) => text.as_str().to_owned(),
        _ => return None,
    };
    // Only an author may travel under a shard key.
    match Route::parse(&text)? {
        Route::Author(author) => Some(Route::Author(author)),
        Route::User(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realtime::broker::topology::{author_routing_key, user_routing_key};

    #[test]
    fn an_author_goes_under_its_shard_and_comes_back_from_the_header() {
        let author = Uuid::new_v4();
        let (key, logical) = physical_route(author_routing_key(author), Some(16));
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
        assert_eq!(physical_route(key.clone(), Some(16)), (key.clone(), None));
        let author = author_routing_key(user);
        assert_eq!(physical_route(author.clone(), None), (author, None));
        assert_eq!(route_of(&key, None), Some(Route::User(user)));
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
