//! Admitting a session before its WebSocket upgrade completes: read the feed's position, route
//! its user's events to this node, then those of the celebrities the user follows; the session
//! then fills from the log whatever was published between that position and its routing. The
//! WebSocket route runs this; so do the actor tests, so they exercise the very sequence the
//! route does. [`reroute`] does the same for a session that outlived its broker link.

use actix::Addr;
use uuid::Uuid;

use super::registry::relinking::Reroute;
use super::registry::{Admit, Deregister, SessionRegistry, WatchAuthors};
use crate::realtime::broker::error::BrokerError;
use crate::store::{self, celebrities, events, DbPool, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Admits session `session_id` of `user_id`. On success its events are routed here (and held
/// until its actor registers), and the result is the feed position read before any routing:
/// what was published after it may have missed the session, so its first fill starts there.
/// On failure nothing is left behind.
pub async fn admit(
    registry: &Addr<SessionRegistry>,
    pool: &DbPool,
    session_id: Uuid,
    user_id: Uuid,
) -> Result<i64, AdmissionError> {
    admit_from(registry, pool, session_id, user_id, None).await
}

/// [`admit`] with the feed position already read (`head`, with the token: see
/// `tokens::grant_for`), before anything is routed; read here when `None`.
pub async fn admit_from(
    registry: &Addr<SessionRegistry>,
    pool: &DbPool,
    session_id: Uuid,
    user_id: Uuid,
    head: Option<i64>,
) -> Result<i64, AdmissionError> {
    let head = match head {
        Some(head) => head,
        None => {
            let mut conn = store::connection(pool).await?;
            events::head(&mut conn).await?
        }
    };
    registry
        .send(Admit {
            session_id,
            user_id,
        })
        .await
        .map_err(|_| BrokerError::Unavailable)??;
    watch_celebrities(registry, pool, session_id, user_id).await?;
    Ok(head)
}

/// Routes a running session again on a new broker link. On failure the session stays held,
/// for the next attempt.
pub async fn reroute(
    registry: &Addr<SessionRegistry>,
    pool: &DbPool,
    session_id: Uuid,
    user_id: Uuid,
) -> Result<(), AdmissionError> {
    registry
        .send(Reroute { session_id })
        .await
        .map_err(|_| BrokerError::Unavailable)??;
    route_celebrities(registry, pool, session_id, user_id).await
}

/// Reads the celebrities `user_id` follows and routes them to the session. Read only once the
/// user's own key routes here: a follow committed after this read reaches this node as a
/// control message on that key.
async fn route_celebrities(
    registry: &Addr<SessionRegistry>,
    pool: &DbPool,
    session_id: Uuid,
    user_id: Uuid,
) -> Result<(), AdmissionError> {
    let authors = {
        let mut conn = store::connection(pool).await?;
        celebrities::followed_by(&mut conn, user_id).await?
    };
    registry
        .send(WatchAuthors {
            session_id,
            authors,
        })
        .await
        .map_err(|_| BrokerError::Unavailable)??;
    Ok(())
}

/// Routes the celebrities `user_id` follows to the session; undoes the admission on failure.
async fn watch_celebrities(
    registry: &Addr<SessionRegistry>,
    pool: &DbPool,
    session_id: Uuid,
    user_id: Uuid,
) -> Result<(), AdmissionError> {
    let watched = route_celebrities(registry, pool, session_id, user_id).await;
    if watched.is_err() {
        registry.do_send(Deregister { session_id });
    }
    watched
}
