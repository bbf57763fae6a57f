//! Actor-level tests: the real `SessionRegistry`, `BrokerActor` and `Watchdog` on a real
//! RabbitMQ and PostgreSQL, with small stand-in actors in place of WebSocket sessions.

mod support;

use std::time::{Duration, Instant};

use actix::prelude::*;
use herald::config::Settings;
use herald::realtime::broker::{Prepare, Publish};
use herald::realtime::messages::{Deliver, Disconnect, DisconnectReason, Heartbeat, SessionHandle};
use herald::realtime::registry::{
    Deregister, Register, SessionCount, SessionRegistry, UserSessions,
};
use herald::realtime::topology::session_queue;
use herald::realtime::watchdog::Round;
use herald::realtime::FeedEvent;
use herald::startup::{prepare_database, Realtime};
use herald::store::models::NewUser;
use herald::store::{friends, users, DbPool};
use serde_json::{json, Value};
use support::{amqp, eventually, publish_raw, queue_exists, test_settings, Cleanup};
use tokio::sync::mpsc;
use uuid::Uuid;

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
        let realtime = Realtime::start(&settings.amqp, &settings.realtime, pool.clone())
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
    async fn manual_watchdog() -> Rig {
        let mut settings = test_settings();
        settings.realtime.ping_interval_secs = 3600;
        settings.realtime.client_timeout_secs = 3600;
        Rig::start(settings).await
    }

    fn queue_of(&self, session: &StandIn) -> String {
        session_queue(&self.settings.realtime.exchange, session.id)
    }

    /// Prepares the queue (as the WebSocket route does before upgrading), then starts a
    /// stand-in session that registers itself.
    async fn session(&self, user_id: Uuid, behaviour: Behaviour) -> StandIn {
        let id = Uuid::new_v4();
        self.realtime
            .broker
            .send(Prepare {
                session_id: id,
                user_id,
            })
            .await
            .expect("broker answers")
            .expect("queue prepared");
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

    /// Hands `event` to the broker for fan-out and checks each of `sessions` receives it.
    async fn publish_and_expect(&self, event: FeedEvent, sessions: &mut [StandIn]) {
        self.realtime
            .broker
            .send(Publish(event.clone()))
            .await
            .expect("broker answers")
            .expect("queued");
        let expected: Value = serde_json::from_str(&event.to_json()).expect("json");
        for session in sessions {
            assert_eq!(session.next_event().await, expected);
        }
    }

    async fn session_count(&self) -> usize {
        self.realtime
            .registry
            .send(SessionCount)
            .await
            .expect("registry answers")
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Behaviour {
    /// Answers heartbeats as a healthy client would.
    Responsive,
    /// Reports that its client has been silent for an hour.
    Silent,
    /// Stops without deregistering, like an actor that crashed.
    Crashes,
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
        self.registry.do_send(Register {
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
    fn handle(&mut self, msg: Deliver, _: &mut Context<Self>) {
        let value = serde_json::from_str(&msg.0).expect("deliveries are JSON");
        let _ = self.seen.send(Seen::Event(value));
    }
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

#[actix_web::test]
async fn events_reach_exactly_the_sessions_of_the_routed_user() {
    let rig = Rig::manual_watchdog().await;
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
}

#[actix_web::test]
async fn published_posts_fan_out_to_followers_from_the_database() {
    let rig = Rig::manual_watchdog().await;
    let author = rig.add_user("Author").await;
    let fans = [rig.add_user("Fan1").await, rig.add_user("Fan2").await];
    let loner = rig.add_user("Loner").await;
    {
        let mut conn = rig.pool.get().await.expect("connection");
        for fan in fans {
            friends::follow(&mut conn, fan, author)
                .await
                .expect("follow");
        }
    }
    let mut fan_sessions = Vec::new();
    for fan in fans {
        fan_sessions.push(rig.session(fan, Behaviour::Responsive).await);
    }
    let mut loner_session = rig.session(loner, Behaviour::Responsive).await;

    let event = FeedEvent::PostCreated {
        post_id: Uuid::now_v7(),
        post_text: "hello followers".into(),
        author_user_id: author,
    };
    rig.publish_and_expect(event, &mut fan_sessions).await;
    let sentinel = marker(9);
    let conn = amqp(&rig.settings).await;
    publish_raw(
        &conn,
        &rig.settings.realtime.exchange,
        &format!("user.{loner}"),
        &sentinel,
    )
    .await;
    assert_eq!(
        loner_session.next_event().await,
        sentinel,
        "the loner got the author's post"
    );
}

#[actix_web::test]
async fn a_stopped_sessions_queue_is_deleted() {
    let rig = Rig::manual_watchdog().await;
    let conn = amqp(&rig.settings).await;
    let session = rig.session(Uuid::new_v4(), Behaviour::Responsive).await;
    let queue = rig.queue_of(&session);
    assert!(
        queue_exists(&conn, &queue).await,
        "the queue exists while the session lives"
    );

    session.addr.do_send(Die);
    assert!(eventually(|| async { !queue_exists(&conn, &queue).await }).await);
    assert!(eventually(|| async { rig.session_count().await == 0 }).await);
}

#[actix_web::test]
async fn the_watchdog_stops_a_session_that_never_answers() {
    let rig = Rig::manual_watchdog().await;
    let conn = amqp(&rig.settings).await;
    let mut silent = rig.session(Uuid::new_v4(), Behaviour::Silent).await;
    let mut healthy = rig.session(Uuid::new_v4(), Behaviour::Responsive).await;
    let (silent_queue, healthy_queue) = (rig.queue_of(&silent), rig.queue_of(&healthy));
    assert!(eventually(|| async { rig.session_count().await == 2 }).await);

    let report = rig
        .realtime
        .watchdog
        .send(Round)
        .await
        .expect("watchdog answers");
    assert_eq!((report.alive, report.timed_out), (1, 1), "{report:?}");
    match silent.next().await {
        Seen::Disconnected(reason) => assert_eq!(reason, DisconnectReason::ClientTimeout),
        other => panic!("expected a disconnect, got {other:?}"),
    }
    assert!(eventually(|| async { !queue_exists(&conn, &silent_queue).await }).await);
    assert!(queue_exists(&conn, &healthy_queue).await);
    assert_eq!(rig.session_count().await, 1);
    assert!(
        healthy.seen.try_recv().is_err(),
        "the healthy session was left alone"
    );
}

#[actix_web::test]
async fn the_watchdog_deletes_the_queue_of_a_crashed_actor() {
    let rig = Rig::manual_watchdog().await;
    let conn = amqp(&rig.settings).await;
    let session = rig.session(Uuid::new_v4(), Behaviour::Crashes).await;
    let queue = rig.queue_of(&session);
    assert!(eventually(|| async { rig.session_count().await == 1 }).await);
    session.addr.do_send(Die);
    // Nothing deregistered it; the watchdog notices the dead actor.
    assert!(eventually(|| async { !session.addr.connected() }).await);
    let report = rig
        .realtime
        .watchdog
        .send(Round)
        .await
        .expect("watchdog answers");
    assert_eq!(report.gone, 1, "{report:?}");
    assert!(eventually(|| async { !queue_exists(&conn, &queue).await }).await);
    assert_eq!(rig.session_count().await, 0);
}

#[actix_web::test]
async fn the_watchdog_sweeps_a_queue_whose_session_never_started() {
    // Real timers this time: a one-second watchdog.
    let rig = Rig::start(test_settings()).await;
    let conn = amqp(&rig.settings).await;
    let session_id = Uuid::new_v4();
    rig.realtime
        .broker
        .send(Prepare {
            session_id,
            user_id: Uuid::new_v4(),
        })
        .await
        .expect("broker answers")
        .expect("prepared");
    let queue = session_queue(&rig.settings.realtime.exchange, session_id);
    assert!(queue_exists(&conn, &queue).await);
    // No session ever registers (say, the upgrade failed): a later round releases the queue.
    assert!(eventually(|| async { !queue_exists(&conn, &queue).await }).await);
}

#[actix_web::test]
async fn fan_out_pages_through_every_follower() {
    let mut settings = test_settings();
    settings.realtime.ping_interval_secs = 3600;
    settings.realtime.client_timeout_secs = 3600;
    settings.realtime.fanout_page_size = 7; // 40 followers: six pages, the last one partial
    settings.realtime.max_confirms_in_flight = 5; // and more publishes than confirm permits
    let rig = Rig::start(settings).await;
    let author = rig.add_user("Star").await;
    let mut sessions = Vec::new();
    for i in 0..40 {
        let fan = rig.add_user(&format!("Fan{i}")).await;
        let mut conn = rig.pool.get().await.expect("connection");
        friends::follow(&mut conn, fan, author)
            .await
            .expect("follow");
        sessions.push(rig.session(fan, Behaviour::Responsive).await);
    }
    let event = FeedEvent::PostDeleted {
        post_id: Uuid::now_v7(),
        author_user_id: author,
    };
    rig.publish_and_expect(event, &mut sessions).await;
}

#[actix_web::test]
async fn the_topology_is_a_durable_direct_exchange_and_capped_exclusive_session_queues() {
    let rig = Rig::manual_watchdog().await;
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

    let session = rig.session(Uuid::new_v4(), Behaviour::Responsive).await;
    let queue = rig.queue_of(&session);
    let listing = std::process::Command::new("rabbitmqctl")
        .args(["list_queues", "-q", "--formatter", "json"])
        .args(["name", "exclusive", "auto_delete", "arguments"])
        .output()
        .expect("rabbitmqctl runs");
    let queues: Value = serde_json::from_slice(&listing.stdout).expect("json listing");
    let ours = queues
        .as_array()
        .expect("array")
        .iter()
        .find(|q| q["name"] == queue.as_str())
        .unwrap_or_else(|| panic!("{queue} not listed"));
    assert_eq!(ours["exclusive"], true, "{ours}");
    assert_eq!(ours["auto_delete"], true, "{ours}");
    let arguments = ours["arguments"].to_string();
    assert!(arguments.contains("x-expires"), "{ours}");
    assert!(arguments.contains("x-max-length"), "{ours}");
}
