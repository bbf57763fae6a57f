//! Waking other instances' relays after this instance's writes: one PostgreSQL `NOTIFY` on a
//! connection of its own, sent after the writes committed, never inside them.
//!
//! A `NOTIFY` inside a write's transaction takes a cluster-wide lock at commit and holds it
//! through the WAL flush, so every write committed one after another (no group commit). Here
//! the writes commit without it; each write then counts itself ([`Notifier::wrote`]), and this
//! task sends one `NOTIFY` for every write counted so far: at once after a quiet spell, then
//! at most one per [`MIN_GAP`] (a burst of writes costs one). Its connection commits with
//! `synchronous_commit = off`: the `NOTIFY` carries nothing but a wake-up, and a lost one (a
//! crash of the server just then, this connection down) is covered by every relay's idle tick.
//! While this instance leads the relay, its own relay is woken directly and nothing is sent.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use diesel_async::SimpleAsyncConnection;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::store::events::NOTIFY_CHANNEL;
use crate::store::pg_tls::PgTls;
use crate::store::{database, StoreError};

/// The shortest time between two `NOTIFY`s: writes within it share the next one.
pub const MIN_GAP: Duration = Duration::from_millis(1);

/// The writers' side: count a committed write, so a `NOTIFY` follows it.
#[derive(Clone, Default)]
pub struct Notifier(Arc<Counted>);

#[derive(Default)]
struct Counted {
    written: AtomicU64,
    wake: Notify,
}

impl Notifier {
    /// A write committed (or the lead was lost with writes possibly waiting): other instances'
    /// relays are to be woken.
    pub fn wrote(&self) {
        self.0.written.fetch_add(1, Ordering::AcqRel);
        self.0.wake.notify_one();
    }

    fn written(&self) -> u64 {
        self.0.written.load(Ordering::Acquire)
    }
}

/// Sends a `NOTIFY` after writes counted by `notifier` (none while `leading`), reconnecting
/// after any failure, `retry` apart.
pub async fn run(
    url: String,
    tls: PgTls,
    notifier: Notifier,
    leading: Arc<AtomicBool>,
    retry: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    // Writes up to this count are announced (or were relayed by this instance).
    let mut announced = notifier.written();
    loop {
        tokio::select! {
            Err(error) = announce(&url, &tls, &notifier, &leading, &mut announced) => {
                log::debug!("announcing feed log writes: {error}");
            }
            _ = stopped.wait_for(|stop| *stop) => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(retry) => {}
            _ = stopped.wait_for(|stop| *stop) => return,
        }
    }
}

/// Connects and announces writes until something fails.
async fn announce(
    url: &str,
    tls: &PgTls,
    notifier: &Notifier,
    leading: &AtomicBool,
    announced: &mut u64,
) -> Result<Infallible, StoreError> {
    let mut conn = database::connect(url, tls)
        .await
        .map_err(|error| StoreError::Unavailable(error.to_string()))?;
    conn.batch_execute("SET synchronous_commit = off").await?;
    let statement = format!("NOTIFY {NOTIFY_CHANNEL}");
    let mut last_sent: Option<Instant> = None;
    loop {
        // Writes counted while the connection was down are announced at once.
        if notifier.written() == *announced {
            notifier.0.wake.notified().await;
        }
        if let Some(at) = last_sent.filter(|at| at.elapsed() < MIN_GAP) {
            tokio::time::sleep_until(at + MIN_GAP).await;
        }
        let upto = notifier.written();
        if upto == *announced {
            continue; // a wake-up for writes already announced
        }
        if !leading.load(Ordering::Acquire) {
            conn.batch_execute(&statement).await?;
            last_sent = Some(Instant::now());
        }
        // Else this instance's relay was woken by the writers themselves.
        *announced = upto;
    }
}
