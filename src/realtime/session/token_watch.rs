//! `TokenWatch`: closes the sessions whose login token has expired or been revoked (`POST
//! /logout`, on any instance), with close code 4001. Every session registers its token's hash
//! and expiry when it starts; every `realtime.ping_interval_secs` the watch closes the expired
//! ones, then asks PostgreSQL in one query which of the other tokens are still live, and closes
//! the sessions of those that are not. Revocation thus reaches every instance's sessions within
//! one period, through the database every instance already shares, without a message of its own.
//!
//! A database that cannot be asked closes nothing: a session is never ended for an outage.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::protocol::{Disconnect, DisconnectReason};
use crate::store::{self, tokens, DbPool};

/// Token hashes asked about in one query (a bound on its size; more go in further queries).
const BATCH: usize = 5_000;

struct Watched {
    token_hash: Vec<u8>,
    expires_at: DateTime<Utc>,
    disconnect: Recipient<Disconnect>,
}

pub struct TokenWatch {
    pool: DbPool,
    period: Duration,
    sessions: HashMap<Uuid, Watched>,
    /// A check is under way (its answer not in yet): the next tick skips its query.
    checking: bool,
}

impl TokenWatch {
    pub fn new(pool: DbPool, period: Duration) -> Self {
        TokenWatch {
            pool,
            period,
            sessions: HashMap::new(),
            checking: false,
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        let now = Utc::now();
        self.sessions.retain(|_, watched| {
            if !watched.disconnect.connected() {
                return false; // the session has ended
            }
            if watched.expires_at <= now {
                watched
                    .disconnect
                    .do_send(Disconnect(DisconnectReason::Unauthorized));
                return false;
            }
            true
        });
        if self.checking || self.sessions.is_empty() {
            return;
        }
        let asked: HashSet<Vec<u8>> = self
            .sessions
            .values()
            .map(|w| w.token_hash.clone())
            .collect();
        self.checking = true;
        let (pool, me) = (self.pool.clone(), ctx.address());
        actix_rt::spawn(async move {
            let live = still_live(&pool, &asked).await;
            me.do_send(Checked { asked, live });
        });
    }
}

async fn still_live(
    pool: &DbPool,
    asked: &HashSet<Vec<u8>>,
) -> Result<HashSet<Vec<u8>>, store::StoreError> {
    let mut conn = store::connection(pool).await?;
    let asked: Vec<Vec<u8>> = asked.iter().cloned().collect();
    let mut live = HashSet::new();
    for batch in asked.chunks(BATCH) {
        live.extend(tokens::still_live(&mut conn, batch).await?);
    }
    Ok(live)
}

impl Actor for TokenWatch {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.period, Self::tick);
    }
}

/// A session started with a token: watch it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WatchToken {
    pub session_id: Uuid,
    pub token_hash: Vec<u8>,
    pub expires_at: DateTime<Utc>,
    pub disconnect: Recipient<Disconnect>,
}

impl Handler<WatchToken> for TokenWatch {
    type Result = ();

    fn handle(&mut self, msg: WatchToken, _: &mut Context<Self>) {
        self.sessions.insert(
            msg.session_id,
            Watched {
                token_hash: msg.token_hash,
                expires_at: msg.expires_at,
                disconnect: msg.disconnect,
            },
        );
    }
}

/// The answer to a check: which of the asked tokens are live.
#[derive(Message)]
#[rtype(result = "()")]
struct Checked {
    asked: HashSet<Vec<u8>>,
    live: Result<HashSet<Vec<u8>>, store::StoreError>,
}

impl Handler<Checked> for TokenWatch {
    type Result = ();

    fn handle(&mut self, msg: Checked, _: &mut Context<Self>) {
        self.checking = false;
        let live = match msg.live {
            Ok(live) => live,
            Err(error) => {
                log::debug!("token watch: cannot check tokens now: {error}");
                return;
            }
        };
        self.sessions.retain(|_, watched| {
            let revoked =
                msg.asked.contains(&watched.token_hash) && !live.contains(&watched.token_hash);
            if revoked {
                watched
                    .disconnect
                    .do_send(Disconnect(DisconnectReason::Unauthorized));
            }
            !revoked
        });
    }
}
