//! Sessions admitted in band, whatever carries them (a WebSocket, SockJS's HTTP requests): the
//! client authenticates in its first frame (STOMP's CONNECT) and is admitted and registered on
//! its first SUBSCRIBE. Written once here for every actor that hosts such a session
//! ([`InBandHost`]): it runs what the client's input asks, in order, waiting for each
//! asynchronous step (authentication, admission) before reading on.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use actix::dev::ToEnvelope;
use actix::prelude::*;
use actix_web_actors::ws::CloseCode;
use uuid::Uuid;

use super::framing::{Command, Framing};
use crate::realtime::session::admission;
use crate::realtime::session::caps::SessionPermit;
use crate::realtime::session::core::{FeedStart, SessionCore, TokenGrant};
use crate::realtime::session::protocol::{Deliver, Disconnect, FeedSync, Heartbeat};
use crate::realtime::session::token_watch::TokenWatch;
use crate::store::DbPool;

/// Checks a token in band: what it grants, or why not (said to the client).
pub type Authenticator =
    Rc<dyn Fn(String) -> Pin<Box<dyn Future<Output = Result<TokenGrant, String>>>>>;

/// Takes a session's place under the caps (`session::caps`) for a user, or says why not.
pub type PlaceTaker = Rc<dyn Fn(Uuid) -> Result<SessionPermit, String>>;

/// How a session gets admitted.
pub enum Admission {
    /// Its route admitted it before the connection was accepted.
    Done { user_id: Uuid, start: FeedStart },
    /// Its client authenticates in band, then subscribes.
    InBand(InBand),
}

/// What an in-band admission needs.
pub struct InBand {
    pub pool: DbPool,
    pub authenticate: Authenticator,
    /// The handshake's token (`?token=` or `Authorization`), if any.
    pub token: Option<String>,
    /// The handshake's resume position (`?since=` or `Last-Event-ID`), if any.
    pub since: Option<i64>,
    /// How long the client has to authenticate and subscribe.
    pub deadline: Duration,
    /// A place under the session caps, taken on SUBSCRIBE.
    pub take_place: PlaceTaker,
    /// Where the session's token is watched for expiry and revocation (4001).
    pub token_watch: Addr<TokenWatch>,
    /// Set once authenticated.
    pub grant: Option<TokenGrant>,
}

/// The parts of a hosting actor the in-band steps use.
pub struct Parts<'a, F> {
    pub core: &'a mut SessionCore,
    pub framing: &'a mut F,
    pub admission: &'a mut Admission,
    /// An asynchronous step is under way: client input waits.
    pub busy: &'a mut bool,
}

/// An actor hosting a session that may be admitted in band.
pub trait InBandHost:
    Actor + Handler<Deliver> + Handler<FeedSync> + Handler<Heartbeat> + Handler<Disconnect>
where
    Self::Context: AsyncContext<Self>
        + ToEnvelope<Self, Deliver>
        + ToEnvelope<Self, FeedSync>
        + ToEnvelope<Self, Heartbeat>
        + ToEnvelope<Self, Disconnect>,
{
    type Framing: Framing;

    fn parts(&mut self) -> Parts<'_, Self::Framing>;

    /// Sends one message of the framing to the client.
    fn send(&mut self, text: String, ctx: &mut Self::Context);

    /// Closes the client's connection and ends the session.
    fn close(&mut self, code: CloseCode, reason: &str, ctx: &mut Self::Context);

    /// Refuses the client: the framing's last word, then a close.
    fn refuse(&mut self, why: &str, ctx: &mut Self::Context) {
        let parts = self.parts();
        log::info!(
            "{} session {}: refused: {why}",
            Self::Framing::NAME,
            parts.core.id()
        );
        if let Some(text) = parts.framing.refused(why) {
            self.send(text, ctx);
        }
        self.close(CloseCode::Policy, why, ctx);
    }

    /// Starts the session: registers one its route admitted, or gives an in-band client its
    /// deadline to authenticate and subscribe.
    fn start_session(&mut self, ctx: &mut Self::Context) {
        let parts = self.parts();
        match &*parts.admission {
            Admission::Done { user_id, start } => {
                let (user_id, start) = (*user_id, *start);
                parts.core.register(user_id, start, &ctx.address());
            }
            Admission::InBand(in_band) => {
                ctx.run_later(in_band.deadline, |host, ctx| {
                    if !host.parts().core.is_registered() {
                        host.refuse("no CONNECT and SUBSCRIBE in time", ctx);
                    }
                });
            }
        }
    }

    /// Runs what the client's input asks, in order, until an asynchronous step starts.
    fn drain(&mut self, ctx: &mut Self::Context) {
        loop {
            let parts = self.parts();
            if *parts.busy {
                return;
            }
            let Some(command) = parts.framing.next_command() else {
                return;
            };
            match command {
                Command::Reply(text) => self.send(text, ctx),
                Command::Close { code, reason } => return self.close(code, &reason, ctx),
                Command::Authenticate { token } => authenticate(self, token, ctx),
                Command::Subscribe { since } => subscribe(self, since, ctx),
            }
        }
    }
}

fn authenticate<A>(host: &mut A, token: Option<String>, ctx: &mut A::Context)
where
    A: InBandHost,
    A::Context: AsyncContext<A>
        + ToEnvelope<A, Deliver>
        + ToEnvelope<A, FeedSync>
        + ToEnvelope<A, Heartbeat>
        + ToEnvelope<A, Disconnect>,
{
    let parts = host.parts();
    let Admission::InBand(in_band) = &*parts.admission else {
        return;
    };
    let Some(token) = token.or_else(|| in_band.token.clone()) else {
        return host.refuse("no token: send one in CONNECT or on the URL", ctx);
    };
    let check = (in_band.authenticate)(token);
    *parts.busy = true;
    ctx.wait(check.into_actor(host).map(|outcome, host, ctx| {
        let parts = host.parts();
        *parts.busy = false;
        match outcome {
            Ok(grant) => {
                let user_id = grant.user_id;
                if let Admission::InBand(in_band) = parts.admission {
                    in_band.grant = Some(grant);
                }
                for reply in parts.framing.connected(user_id) {
                    host.send(reply, ctx);
                }
                host.drain(ctx);
            }
            Err(why) => host.refuse(&why, ctx),
        }
    }));
}

fn subscribe<A>(host: &mut A, since: Option<i64>, ctx: &mut A::Context)
where
    A: InBandHost,
    A::Context: AsyncContext<A>
        + ToEnvelope<A, Deliver>
        + ToEnvelope<A, FeedSync>
        + ToEnvelope<A, Heartbeat>
        + ToEnvelope<A, Disconnect>,
{
    let parts = host.parts();
    if parts.core.is_registered() {
        return;
    }
    let Admission::InBand(in_band) = &*parts.admission else {
        return;
    };
    let Some(grant) = in_band.grant.clone() else {
        return host.refuse("SUBSCRIBE before CONNECT", ctx);
    };
    let user_id = grant.user_id;
    let permit = match (in_band.take_place)(user_id) {
        Ok(permit) => permit,
        Err(why) => return host.refuse(&why, ctx),
    };
    let token_watch = in_band.token_watch.clone();
    let since = since.or(in_band.since);
    parts.core.hold_permit(permit);
    parts.core.watch_token(token_watch, grant);
    let (registry, pool, id) = (parts.core.registry(), in_band.pool.clone(), parts.core.id());
    let admit = async move { admission::admit(&registry, &pool, id, user_id).await };
    *parts.busy = true;
    ctx.wait(admit.into_actor(host).map(move |outcome, host, ctx| {
        let parts = host.parts();
        *parts.busy = false;
        match outcome {
            Ok(head) => {
                let start = FeedStart::new(since, head);
                parts.core.register(user_id, start, &ctx.address());
                host.drain(ctx);
            }
            Err(error) => {
                log::warn!(
                    "{} session {id}: admission failed: {error}",
                    A::Framing::NAME
                );
                host.refuse("the feed is unavailable right now; try again", ctx);
            }
        }
    }));
}
