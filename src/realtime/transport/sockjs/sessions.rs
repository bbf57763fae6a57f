//! `SockJsSessions`: this instance's SockJS sessions carried by HTTP requests, by the id the
//! client chose, shared by every worker (an `xhr_send` may land on any). Bounded: past
//! [`MAX_SESSIONS`] a new session is refused, and an abandoned one is gone within the
//! disconnect delay. The requests of one session must reach this instance (sticky routing in
//! front of several instances); elsewhere its id is unknown (404) and the client reconnects.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use actix::{Actor, Addr};

/// Open SockJS HTTP sessions one instance keeps at most.
pub const MAX_SESSIONS: usize = 10_000;

/// Generic over the session actor so that the actor may hold the map it is kept in.
pub struct SockJsSessions<A: Actor>(Arc<Mutex<HashMap<String, Addr<A>>>>);

impl<A: Actor> Clone for SockJsSessions<A> {
    fn clone(&self) -> Self {
        SockJsSessions(Arc::clone(&self.0))
    }
}

impl<A: Actor> Default for SockJsSessions<A> {
    fn default() -> Self {
        SockJsSessions(Arc::default())
    }
}

/// Refused: the instance holds as many SockJS sessions as it may.
#[derive(Debug)]
pub struct Full;

impl<A: Actor> SockJsSessions<A> {
    pub fn get(&self, key: &str) -> Option<Addr<A>> {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(key).filter(|addr| addr.connected()).cloned()
    }

    /// Keeps `addr` under `key`, unless full.
    pub fn insert(&self, key: &str, addr: Addr<A>) -> Result<(), Full> {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_SESSIONS {
            map.retain(|_, addr| addr.connected());
            if map.len() >= MAX_SESSIONS {
                return Err(Full);
            }
        }
        map.insert(key.to_owned(), addr);
        Ok(())
    }

    /// Whether another session may start.
    pub fn has_room(&self) -> bool {
        self.len() < MAX_SESSIONS
    }

    pub fn remove(&self, key: &str) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.remove(key);
    }

    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
