//! Actor-level tests: the real `SessionRegistry`, `BrokerActor` and `Watchdog` on a real
//! RabbitMQ and PostgreSQL, with small stand-in actors in place of WebSocket sessions. Every
//! test runs in both queue modes.

use std::time::{Duration, Instant};

use actix::prelude::*;
use herald::config::{QueueMode, Settings};
use herald::realtime::broker::topology::{session_queue_name, user_routing_key};
use herald::realtime::probes::{BoundKeys, Queues, UserSessions};
use herald::realtime::session::admission;
use herald::realtime::session::protocol::{
    Deliver, Disconnect, DisconnectReason, FeedSync, Heartbeat, SessionHandle,
};
use herald::realtime::session::registry::upkeep::SessionCount;
use herald::realtime::session::registry::{Deregister, Register, SessionRegistry};
use herald::realtime::session::watchdog::{Round, RoundReport};
use herald::realtime::FeedEvent;
use herald::startup::{prepare_database, Realtime};
use herald::store::models::NewUser;
use herald::store::{celebrities, events, friends, posts, users, DbPool};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::support::{
    self, amqp, bound, eventually, eventually_within, is_routed, publish_raw, queue_exists,
    queue_listing, test_settings_in, Cleanup,
};

/// One test's realtime actors, its database and exchange (dropped at the end).
struct Rig {
    settings: Settings,
    realtime: Realtime,
    pool: DbPool,
    _cleanup: Cleanup,
}

impl Rig {
    async fn start(settings: Settings) -> Rig {
        let pool = prepare_database(&settings.database)
            .await
            .expect("database");
        let realtime = Realtime::start(
            &settings.amqp,
            &settings.realtime,
            &settings.database,
            pool.clone(),
            &herald::metrics::Metrics::new(),
        )
        .await
        .expect("realtime");
        Rig {
            _cleanup: Cleanup(settings.clone()),
            settings,
            realtime,
            pool,
        }
    }

    /// Automatic watchdog rounds out of the way: tests send `Round` themselves.
    async fn manual_watchdog(mode: QueueMode) -> Rig {
        Rig::start(manual_settings(mode)).await
    }

    fn exchange(&self) -> &str {
        &self.settings.realtime.exchange
    }

    /// How many queues `user_id`'s events are routed to.
    async fn routed(&self, user_id: Uuid) -> usize {
        bound(self.exchange(), &user_routing_key(user_id)).await
    }

    /// Admits a session exactly as the WebSocket route does before upgrading.
    async fn admit(&self, session_id: Uuid, user_id: Uuid) {
        admission::admit(&self.realtime.registry, &self.pool, session_id, user_id)
            .await
            .expect("admitted");
    }

    /// Admits a session, then starts a stand-in session actor that registers itself.
    async fn session(&self, user_id: Uuid, behaviour: Behaviour) -> StandIn {
        let id = Uuid::new_v4();
        self.admit(id, user_id).await;
        let (seen_tx, seen) = mpsc::unbounded_channel();
        let addr = FakeSession {
            id,
            user_id,
            registry: self.realtime.registry.clone(),
            seen: seen_tx,
            behaviour,
            born: Instant::now(),
        }
        .start();
        StandIn { id, addr, seen }
    }

    async fn add_user(&self, name: &str) -> Uuid {
        let id = Uuid::new_v4();
        let mut conn = self.pool.get().await.expect("connection");
        users::insert(
            &mut conn,
            &NewUser {
                id,
                first_name: name,
                second_name: "Actor",
                birthdate: chrono::NaiveDate::from_ymd_opt(1990, 1, 1).expect("date"),
                biography: "",
                city: "Nowhere",
                password_hash: "not-a-real-hash",
            },
        )
        .await
        .expect("insert user");
        id
    }

    /// `author_id` follows nobody special: makes `fan` follow them, as the route does.
    async fn follow(&self, fan: Uuid, author_id: Uuid) {
        let mut conn = self.pool.get().await.expect("connection");
        let threshold = self.settings.realtime.celebrity_followers;
        friends::follow(&mut conn, fan, author_id, threshold)
            .await
            .expect("follow");
        self.realtime.relay.nudge();
    }

    /// Writes a post by `author_id` (with its log event, as the route does), and checks each
    /// of `sessions` receives it, at a position.
    async fn post_and_expect(&self, author_id: Uuid, text: &str, sessions: &mut [StandIn]) {
        let post = {
            let mut conn = self.pool.get().await.expect("connection");
            posts::create(&mut conn, author_id, text)
                .await
                .expect("post")
        };
        self.realtime.relay.nudge();
        let expected = FeedEvent::PostCreated {
            post_id: post.id,
            post_text: text.into(),
            author_user_id: author_id,
        };
        let expected: Value = serde_json::from_str(&expected.to_json()).expect("json");
        for session in sessions {
            let mut got = session.next_event().await;
            let seq = got.as_object_mut().and_then(|event| event.remove("seq"));
            assert!(seq.and_then(|seq| seq.as_i64()).is_some_and(|seq| seq > 0));
            assert_eq!(got, expected);
        }
    }

    /// Waits until the relay has published every committed event.
    async fn relay_idle(&self) {
        let idle = eventually(|| async {
            let mut conn = self.pool.get().await.expect("connection");
            events::relay_state(&mut conn).await.expect("state").lag() == 0
        })
        .await;
        assert!(idle, "the relay did not catch up");
    }

    /// Runs one watchdog round now.
    async fn round(&self) -> RoundReport {
        self.realtime
            .watchdog
            .send(Round)
            .await
            .expect("watchdog answers")
    }

    async fn session_count(&self) -> usize {
        self.realtime
            .registry
            .send(SessionCount)
            .await
            .expect("registry answers")
    }
}

fn manual_settings(mode: QueueMode) -> Settings {
    let mut settings = test_settings_in(mode);
    settings.realtime.ping_interval_secs = 3600;
    settings.realtime.client_timeout_secs = 3600;
    settings
}

#[derive(Clone, Copy, PartialEq)]
enum Behaviour {
    /// Answers heartbeats as a healthy client would.
    Responsive,
    /// Reports that its client has been silent for an hour.
    Silent,
    /// Stops without deregistering, like an actor that crashed.
    Crashes,
    /// Takes its first event and then never handles another message, like a session whose
    /// client stopped reading; its mailbox holds two.
    Stuck,
}

#[derive(Debug)]
enum Seen {
    Event(Value),
    Disconnected(DisconnectReason),
}

struct FakeSession {
    id: Uuid,
    user_id: Uuid,
    registry: Addr<SessionRegistry>,
    seen: mpsc::UnboundedSender<Seen>,
    behaviour: Behaviour,
    born: Instant,
}

impl Actor for FakeSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.behaviour == Behaviour::Stuck {
            ctx.set_mailbox_capacity(2);
        }
        self.registry.do_send(Register {
            hub: None,
            session_id: self.id,
            handle: SessionHandle::new(self.user_id, &ctx.address()),
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        if self.behaviour != Behaviour::Crashes {
            self.registry.do_send(Deregister {
                session_id: self.id,
            });
        }
    }
}

impl Handler<Deliver> for FakeSession {
    type Result = ();
    fn handle(&mut self, msg: Deliver, ctx: &mut Context<Self>) {
        let value = serde_json::from_str(&msg.0 .1).expect("deliveries are JSON");
        let _ = self.seen.send(Seen::Event(value));
        if self.behaviour == Behaviour::Stuck {
            ctx.wait(actix::fut::wrap_future(std::future::pending::<()>()));
        }
    }
}

/// A stand-in keeps no position and fills no gap: these tests are about routing.
impl Handler<FeedSync> for FakeSession {
    type Result = ();
    fn handle(&mut self, _: FeedSync, _: &mut Context<Self>) {}
}

impl Handler<Heartbeat> for FakeSession {
    type Result = MessageResult<Heartbeat>;
    fn handle(&mut self, _: Heartbeat, _: &mut Context<Self>) -> Self::Result {
        MessageResult(match self.behaviour {
            Behaviour::Silent => self
                .born
                .checked_sub(Duration::from_secs(3600))
                .unwrap_or(self.born),
            _ => Instant::now(),
        })
    }
}

impl Handler<Disconnect> for FakeSession {
    type Result = ();
    fn handle(&mut self, msg: Disconnect, ctx: &mut Context<Self>) {
        let _ = self.seen.send(Seen::Disconnected(msg.0));
        ctx.stop();
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Die;

impl Handler<Die> for FakeSession {
    type Result = ();
    fn handle(&mut self, _: Die, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

struct StandIn {
    id: Uuid,
    addr: Addr<FakeSession>,
    seen: mpsc::UnboundedReceiver<Seen>,
}

impl StandIn {
    async fn next(&mut self) -> Seen {
        tokio::time::timeout(support::DEADLINE, self.seen.recv())
            .await
            .expect("something within the deadline")
            .expect("stand-in alive")
    }

    async fn next_event(&mut self) -> Value {
        match self.next().await {
            Seen::Event(value) => value,
            other => panic!("expected an event, got {other:?}"),
        }
    }
}

fn marker(n: u32) -> Value {
    json!({ "type": "post.created", "postId": Uuid::new_v4(), "postText": format!("m{n}"), "author_user_id": Uuid::nil() })
}

in_both_modes!(
    events_reach_exactly_the_sessions_of_the_routed_user,
    published_posts_fan_out_to_followers_from_the_database,
    a_stopped_session_releases_its_routing,
    the_watchdog_stops_a_session_that_never_answers,
    the_watchdog_releases_the_routing_of_a_crashed_actor,
    the_watchdog_releases_an_admission_whose_session_never_started,
    fan_out_pages_through_every_follower,
    a_celebrity_is_published_once_and_reaches_exactly_its_followers,
    the_topology_is_a_durable_direct_exchange_and_capped_exclusive_queues,
);

async fn events_reach_exactly_the_sessions_of_the_routed_user(mode: QueueMode) {
    let rig = Rig::manual_watchdog(mode).await;
    let conn = amqp(&rig.settings).await;
    let exchange = rig.settings.realtime.exchange.clone();
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let mut alice_1 = rig.session(alice, Behaviour::Responsive).await;
    let mut alice_2 = rig.session(alice, Behaviour::Responsive).await;
    let mut bob_1 = rig.session(bob, Behaviour::Responsive).await;

    // The registry knows both of Alice's sessions, by user.
    assert!(
        eventually(|| async {
            let mut ids = rig
                .realtime
                .registry
                .send(UserSessions(alice))
                .await
                .expect("registry answers");
            ids.sort();
            let mut expected = vec![alice_1.id, alice_2.id];
            expected.sort();
            ids == expected
        })
        .await
    );
    // Node mode binds a user once however many sessions; session mode binds each queue.
    let expected_bindings = match mode {
        QueueMode::Node => 1,
        QueueMode::Session => 2,
    };
    assert_eq!(rig.routed(alice).await, expected_bindings);

    let (m1, m2, m3) = (marker(1), marker(2), marker(3));
    publish_raw(&conn, &exchange, &format!("user.{alice}"), &m1).await;
    assert_eq!(alice_1.next_event().await, m1);
    assert_eq!(alice_2.next_event().await, m1);

    // Bob's first event is his own: he never saw Alice's.
    publish_raw(&conn, &exchange, &format!("user.{bob}"), &m2).await;
    assert_eq!(bob_1.next_event().await, m2);
    // And Alice's sessions never saw Bob's.
    publish_raw(&conn, &exchange, &format!("user.{alice}"), &m3).await;
    assert_eq!(alice_1.next_event().await, m3);
    assert_eq!(alice_2.next_event().await, m3);

    // One tab closing keeps Alice routed here for the other; the last one releases it.
    alice_1.addr.do_send(Die);
    assert!(eventually(|| async { rig.session_count().await == 2 }).await);
    let m4 = marker(4);
    publish_raw(&conn, &exchange, &format!("user.{alice}"), &m4).await;
    assert_eq!(alice_2.next_event().await, m4);
    alice_2.addr.do_send(Die);
    assert!(eventually(|| async { rig.routed(alice).await == 0 }).await);
    assert_eq!(rig.routed(bob).await, 1);
}

/// Settings where authors are published once per follower (no celebrity below 1,000).
fn per_follower_settings(mode: QueueMode) -> Settings {
    let mut settings = manual_settings(mode);
    settings.realtime.celebrity_followers = 1000;
    settings
}

async fn published_posts_fan_out_to_followers_from_the_database(mode: QueueMode) {
    let rig = Rig::start(per_follower_settings(mode)).await;
    let author = rig.add_user("Author").await;
    let fans = [rig.add_user("Fan1").await, rig.add_user("Fan2").await];
    let loner = rig.add_user("Loner").await;
    for fan in fans {
        rig.follow(fan, author).await;
    }
    let mut fan_sessions = Vec::new();
    for fan in fans {
        fan_sessions.push(rig.session(fan, Behaviour::Responsive).await);
    }
    let mut loner_session = rig.session(loner, Behaviour::Responsive).await;

    rig.post_and_expect(author, "hello followers", &mut fan_sessions)
        .await;
    let sentinel = marker(9);
    let conn = amqp(&rig.settings).await;
    publish_raw(&conn, rig.exchange(), &format!("user.{loner}"), &sentinel).await;
    assert_eq!(
        loner_session.next_event().await,
        sentinel,
        "the loner got the author's post"
    );
    assert_eq!(
        rig.realtime.stats.snapshot().published,
        2,
        "one per follower"
    );
}

async fn a_stopped_session_releases_its_routing(mode: QueueMode) {
    let rig = Rig::manual_watchdog(mode).await;
    let conn = amqp(&rig.settings).await;
    let user = Uuid::new_v4();
    let session = rig.session(user, Behaviour::Responsive).await;
    let queues = rig.realtime.broker.send(Queues).await.expect("broker");
    assert_eq!(queues.len(), 1, "{queues:?}");
    assert_eq!(rig.routed(user).await, 1);

    session.addr.do_send(Die);
    assert!(eventually(|| async { rig.routed(user).await == 0 }).await);
    assert!(eventually(|| async { rig.session_count().await == 0 }).await);
    match mode {
        // The session's own queue goes; the node's queue stays for the next session.
        QueueMode::Session => {
            assert!(eventually(|| async { !queue_exists(&conn, &queues[0]).await }).await)
        }
        QueueMode::Node => {
            assert!(queue_exists(&conn, &queues[0]).await);
            let keys = rig.realtime.broker.send(BoundKeys).await.expect("broker");
            assert_eq!(keys, 0);
        }
    }
}

async fn the_watchdog_stops_a_session_that_never_answers(mode: QueueMode) {
    let rig = Rig::manual_watchdog(mode).await;
    let (quiet, chatty) = (Uuid::new_v4(), Uuid::new_v4());
    let mut silent = rig.session(quiet, Behaviour::Silent).await;
    let mut healthy = rig.session(chatty, Behaviour::Responsive).await;
    assert!(eventually(|| async { rig.session_count().await == 2 }).await);

    let report = rig.round().await;
    assert_eq!((report.alive, report.timed_out), (1, 1), "{report:?}");
    match silent.next().await {
        Seen::Disconnected(reason) => assert_eq!(reason, DisconnectReason::ClientTimeout),
        other => panic!("expected a disconnect, got {other:?}"),
    }
    assert!(eventually(|| async { rig.routed(quiet).await == 0 }).await);
    assert_eq!(rig.routed(chatty).await, 1);
    assert_eq!(rig.session_count().await, 1);
    assert!(
        healthy.seen.try_recv().is_err(),
        "the healthy session was left alone"
    );
}

async fn the_watchdog_releases_the_routing_of_a_crashed_actor(mode: QueueMode) {
    let rig = Rig::manual_watchdog(mode).await;
    let user = Uuid::new_v4();
    let session = rig.session(user, Behaviour::Crashes).await;
    assert!(eventually(|| async { rig.session_count().await == 1 }).await);
    session.addr.do_send(Die);
    // Nothing deregistered it; the watchdog notices the dead actor.
    assert!(eventually(|| async { !session.addr.connected() }).await);
    assert_eq!(rig.routed(user).await, 1);
    let report = rig.round().await;
    assert_eq!(report.gone, 1, "{report:?}");
    assert!(eventually(|| async { rig.routed(user).await == 0 }).await);
    assert_eq!(rig.session_count().await, 0);
}

async fn the_watchdog_releases_an_admission_whose_session_never_started(mode: QueueMode) {
    // Real timers this time: a four-second watchdog, so the admission is seen before any round
    // may drop it (it must be older than one interval), with room to spare on a loaded machine.
    const INTERVAL_SECS: u64 = 4;
    let mut settings = test_settings_in(mode);
    settings.realtime.ping_interval_secs = INTERVAL_SECS;
    settings.realtime.client_timeout_secs = 2 * INTERVAL_SECS;
    let rig = Rig::start(settings).await;
    let conn = amqp(&rig.settings).await;
    let (session_id, user) = (Uuid::new_v4(), Uuid::new_v4());
    rig.admit(session_id, user).await;
    // (A probe publish, not `rabbitmqctl`: it answers before any round may drop the admission.)
    assert!(is_routed(&conn, rig.exchange(), &user_routing_key(user)).await);
    let queue = session_queue_name(rig.exchange(), session_id);
    assert_eq!(
        queue_exists(&conn, &queue).await,
        mode == QueueMode::Session
    );
    // No session ever registers (say, the upgrade failed): a later round releases it all: the
    // first one that starts over an interval after the admission, so at most two intervals on.
    let release = 2 * Duration::from_secs(INTERVAL_SECS) + support::DEADLINE;
    assert!(eventually_within(release, || async { rig.routed(user).await == 0 }).await);
    assert!(eventually(|| async { !queue_exists(&conn, &queue).await }).await);
}

async fn fan_out_pages_through_every_follower(mode: QueueMode) {
    let mut settings = per_follower_settings(mode);
    settings.realtime.fanout_page_size = 7; // 40 followers: six pages, the last one partial
    settings.realtime.max_confirms_in_flight = 5; // and more publishes than confirm permits
    let rig = Rig::start(settings).await;
    let author = rig.add_user("Star").await;
    let mut sessions = Vec::new();
    for i in 0..40 {
        let fan = rig.add_user(&format!("Fan{i}")).await;
        rig.follow(fan, author).await;
        sessions.push(rig.session(fan, Behaviour::Responsive).await);
    }
    rig.post_and_expect(author, "to every page", &mut sessions)
        .await;
}

async fn a_celebrity_is_published_once_and_reaches_exactly_its_followers(mode: QueueMode) {
    let mut settings = manual_settings(mode);
    settings.realtime.celebrity_followers = 3;
    let rig = Rig::start(settings).await;
    let star = rig.add_user("Star").await;
    let stranger = rig.add_user("Stranger").await;
    let mut fans = Vec::new();
    for i in 0..4 {
        let fan = rig.add_user(&format!("Fan{i}")).await;
        rig.follow(fan, star).await; // the third follow switches the star to celebrity
        fans.push(fan);
    }
    rig.relay_idle().await;
    {
        let mut conn = rig.pool.get().await.expect("connection");
        assert_eq!(
            celebrities::followed_by(&mut conn, fans[3])
                .await
                .expect("read"),
            vec![star]
        );
    }
    let mut sessions = Vec::new();
    for fan in &fans {
        sessions.push(rig.session(*fan, Behaviour::Responsive).await);
    }
    // Two tabs of one fan; and someone who does not follow the star.
    sessions.push(rig.session(fans[0], Behaviour::Responsive).await);
    let mut outsider = rig.session(stranger, Behaviour::Responsive).await;
    // Node mode: the star's shard key, bound once by the node whoever follows; session mode:
    // the star's key, on each of the five session queues.
    let expected_author_bindings = match mode {
        QueueMode::Node => 1,
        QueueMode::Session => 5,
    };
    let key = support::celebrity_key(&rig.settings, star);
    assert_eq!(bound(rig.exchange(), &key).await, expected_author_bindings);
    if mode == QueueMode::Node {
        assert_eq!(bound(rig.exchange(), &format!("author.{star}")).await, 0);
    }

    let published = rig.realtime.stats.snapshot().published;
    rig.post_and_expect(star, "to all my fans", &mut sessions)
        .await;
    assert_eq!(
        rig.realtime.stats.snapshot().published,
        published + 1,
        "published once"
    );

    let sentinel = marker(7);
    let conn = amqp(&rig.settings).await;
    publish_raw(
        &conn,
        rig.exchange(),
        &format!("user.{stranger}"),
        &sentinel,
    )
    .await;
    assert_eq!(
        outsider.next_event().await,
        sentinel,
        "the outsider got the star's post"
    );
    for session in &mut sessions {
        assert!(
            session.seen.try_recv().is_err(),
            "delivered once per session"
        );
    }
}

async fn the_topology_is_a_durable_direct_exchange_and_capped_exclusive_queues(mode: QueueMode) {
    let rig = Rig::manual_watchdog(mode).await;
    let conn = amqp(&rig.settings).await;
    // Re-declaring with the same kind and durability succeeds only if that is what exists
    // (anything else is PRECONDITION_FAILED).
    let channel = conn.create_channel().await.expect("channel");
    channel
        .exchange_declare(
            rig.settings.realtime.exchange.as_str().into(),
            lapin::ExchangeKind::Direct,
            lapin::options::ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .expect("the exchange is durable and direct");

    let _session = rig.session(Uuid::new_v4(), Behaviour::Responsive).await;
    let queues = rig.realtime.broker.send(Queues).await.expect("broker");
    let queue = queues.first().expect("one queue");
    let listed = queue_listing().await;
    let ours = listed
        .as_array()
        .expect("array")
        .iter()
        .find(|q| q["name"] == queue.as_str())
        .unwrap_or_else(|| panic!("{queue} not listed"));
    assert_eq!(ours["exclusive"], true, "{ours}");
    assert_eq!(ours["auto_delete"], true, "{ours}");
    let arguments = ours["arguments"].to_string();
    assert!(arguments.contains("x-max-length"), "{ours}");
    match mode {
        QueueMode::Session => {
            assert!(queue.contains(".session."), "{queue}");
            assert!(arguments.contains("x-expires"), "{ours}");
        }
        QueueMode::Node => assert!(queue.contains(".node."), "{queue}"),
    }
}

/// Node mode only: a session that cannot keep up is closed as too slow instead of holding
/// events (and memory) for ever, and releases its routing; the others keep theirs.
#[actix_web::test]
async fn a_session_that_stops_reading_is_closed_as_too_slow() {
    let rig = Rig::manual_watchdog(QueueMode::Node).await;
    let conn = amqp(&rig.settings).await;
    let (slow_user, fine_user) = (Uuid::new_v4(), Uuid::new_v4());
    let mut slow = rig.session(slow_user, Behaviour::Stuck).await;
    let mut fine = rig.session(fine_user, Behaviour::Responsive).await;
    assert!(eventually(|| async { rig.session_count().await == 2 }).await);
    for n in 0..6 {
        publish_raw(
            &conn,
            rig.exchange(),
            &format!("user.{slow_user}"),
            &marker(n),
        )
        .await;
    }
    assert_eq!(slow.next_event().await["postText"], "m0");
    assert!(eventually(|| async { rig.realtime.stats.snapshot().dropped_slow == 1 }).await);
    assert!(eventually(|| async { rig.routed(slow_user).await == 0 }).await);
    let sentinel = marker(42);
    publish_raw(
        &conn,
        rig.exchange(),
        &format!("user.{fine_user}"),
        &sentinel,
    )
    .await;
    assert_eq!(fine.next_event().await, sentinel);
}
