//! Waking the relay on other instances' writes: PostgreSQL `LISTEN` on the feed log's channel,
//! reconnecting after any failure.

use std::sync::Arc;
use std::time::Duration;

use diesel_async::SimpleAsyncConnection;
use futures_util::StreamExt;
use tokio::sync::{watch, Notify};

use crate::store::events::NOTIFY_CHANNEL;
use crate::store::pg_tls::PgTls;
use crate::store::{database, StoreError};

/// Wakes the local relay whenever another instance commits an event (its notifier's PostgreSQL
/// `NOTIFY`, see `notifier`), reconnecting after any failure.
pub async fn listen(
    url: String,
    tls: PgTls,
    nudge: Arc<Notify>,
    retry: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let listened = async {
            let mut conn = database::connect(&url, &tls)
                .await
                .map_err(|error| StoreError::Unavailable(error.to_string()))?;
            conn.batch_execute(&format!("LISTEN {NOTIFY_CHANNEL}"))
                .await
                .map_err(StoreError::from)?;
            // Anything committed before LISTEN took effect is found by this first wake-up.
            nudge.notify_one();
            let mut notifications = std::pin::pin!(conn.notifications_stream());
            while let Some(notification) = notifications.next().await {
                notification.map_err(StoreError::from)?;
                nudge.notify_one();
            }
            Ok::<(), StoreError>(())
        };
        tokio::select! {
            outcome = listened => {
                if let Err(error) = outcome {
                    log::debug!("listening for feed log writes: {error}");
                }
            }
            _ = stopped.wait_for(|stop| *stop) => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(retry) => {}
            _ = stopped.wait_for(|stop| *stop) => return,
        }
    }
}
