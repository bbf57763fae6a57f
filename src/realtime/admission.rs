//! Admitting a session before its WebSocket upgrade completes: route its user's events to this
//! node, then those of the celebrities the user follows. The WebSocket route runs this; so do
//! the actor tests, so they exercise the very sequence the route does.

use actix::Addr;
use uuid::Uuid;

use super::broker_error::BrokerError;
use super::registry::{Admit, Deregister, SessionRegistry, WatchAuthors};
use crate::store::{self, celebrities, DbPool, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Admits session `session_id` of `user_id`. On success its events are routed here (and held
/// until its actor registers); on failure nothing is left behind.
pub async fn admit(
    registry: &Addr<SessionRegistry>,
    pool: &DbPool,
    session_id: Uuid,
    user_id: Uuid,
) -> Result<(), AdmissionError> {
    registry
        .send(Admit {
            session_id,
            user_id,
        })
        .await
        .map_err(|_| BrokerError::Unavailable)??;
    // Read only once the user's own key routes here: a follow committed after this read
    // reaches this node as a control message on that key.
    let watched = async {
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
    .await;
    if watched.is_err() {
        registry.do_send(Deregister { session_id });
    }
    watched
}
