//! The client side of the feed: WebSocket sessions spread over a few OS threads, each running
//! its own single-threaded actix runtime (awc is `!Send`), connecting from several loopback
//! source addresses so tens of thousands of sockets do not run out of ephemeral ports. Every
//! text frame is recorded with the instant it was read and the `seq` herald gave it, if any;
//! pings are answered with pongs; a session that ends early is counted with its close code.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Display;
use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use awc::ws::{Frame, Message};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::stomp;

/// Every post the loadgen writes starts with this, followed by its sequence number, so a frame
/// names its post even when it arrives before the HTTP response that returns the post's id.
pub const POST_TEXT_PREFIX: &str = "loadgen #";

/// The sequence number recorded for a frame that is not one of this run's `post.created` events.
pub const NOT_OURS: u32 = u32::MAX;

/// Time allowed for one WebSocket handshake (TCP connect included).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// One received frame.
#[derive(Clone, Copy)]
pub struct Delivery {
    pub session: u32,
    /// The loadgen's number of the post the frame carries (`NOT_OURS` for any other frame).
    pub seq: u32,
    /// herald's own sequence number of the frame on its session (`"seq"`), when it has one.
    pub feed_seq: Option<u64>,
    pub at: Instant,
}

/// One handshake's result, reported to the coordinating thread as it happens.
pub enum ConnectOutcome {
    Connected { session: u32, at: Instant },
    Failed { session: u32, error: String },
}

/// Counters every client thread updates, read by the drain.
pub struct Shared {
    base: Instant,
    /// Frames received so far, on every session.
    pub received: AtomicU64,
    /// When the latest frame arrived, in nanoseconds since `base` (0: none yet).
    last_frame_nanos: AtomicU64,
    /// Sessions the server closed or that failed after connecting.
    pub dropped: AtomicU64,
    /// Which they were, and how they ended.
    ended: Mutex<Endings>,
}

/// How the sessions that ended before the run was over ended.
#[derive(Default, Clone)]
pub struct Endings {
    /// Why, with counts: the close code and reason herald sent, or the error.
    pub reasons: BTreeMap<String, u64>,
    /// Of those herald closed with a close frame: how many with each code ("none": no code).
    pub close_codes: BTreeMap<String, u64>,
    /// Which sessions ended.
    pub sessions: Vec<u32>,
}

/// How one session ended before the run was over.
enum Ending {
    /// herald sent a close frame, with this code if any.
    Closed { code: Option<u16>, why: String },
    /// The connection ended or failed without one.
    Lost(String),
}

impl Shared {
    fn new() -> Shared {
        Shared {
            base: Instant::now(),
            received: AtomicU64::new(0),
            last_frame_nanos: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            ended: Mutex::new(Endings::default()),
        }
    }

    /// Counts one session that ended before the run was over, and how.
    fn dropped(&self, session: u32, ending: Ending) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut ended) = self.ended.lock() {
            ended.sessions.push(session);
            let why = match ending {
                Ending::Closed { code, why } => {
                    let code = code.map_or_else(|| "none".to_owned(), |code| code.to_string());
                    *ended.close_codes.entry(code).or_default() += 1;
                    why
                }
                Ending::Lost(why) => why,
            };
            *ended.reasons.entry(why).or_default() += 1;
        }
    }

    /// How the sessions that ended before the run was over ended.
    pub fn endings(&self) -> Endings {
        self.ended
            .lock()
            .map(|ended| ended.clone())
            .unwrap_or_default()
    }

    pub fn last_frame(&self) -> Option<Instant> {
        match self.last_frame_nanos.load(Ordering::Relaxed) {
            0 => None,
            nanos => Some(self.base + Duration::from_nanos(nanos)),
        }
    }
}

/// What the client threads need to open sessions.
pub struct Plan {
    /// Session `i` connects to `ws_urls[i mod n]` (the instances of one deployment).
    pub ws_urls: Vec<String>,
    /// (session index = user index, token) pairs.
    pub sessions: Vec<(u32, String)>,
    pub threads: usize,
    pub concurrency: usize,
    pub per_source_ip: u32,
}

/// The running client threads. `finish` stops them and hands back every recorded frame.
pub struct ClientThreads {
    pub shared: Arc<Shared>,
    workers: Vec<(String, JoinHandle<Vec<Delivery>>, oneshot::Sender<()>)>,
}

/// What the client threads recorded, and which of them died on the way (their frames are lost).
pub struct Collected {
    pub deliveries: Vec<Delivery>,
    pub failures: Vec<String>,
}

/// The source addresses for `sessions` sessions at most `per_ip` each: 127.0.0.2, 127.0.0.3, …
/// (127.0.0.1 is left to the server's own connections).
pub fn source_addresses(sessions: u32, per_ip: u32) -> Vec<Ipv4Addr> {
    let count = sessions.div_ceil(per_ip.max(1)).max(1);
    let first = u32::from(Ipv4Addr::new(127, 0, 0, 2));
    (0..count).map(|i| Ipv4Addr::from(first + i)).collect()
}

/// Starts the client threads; each reports every handshake on `outcomes`.
pub fn start(plan: Plan, outcomes: mpsc::UnboundedSender<ConnectOutcome>) -> Result<ClientThreads> {
    let threads = plan.threads.max(1);
    let addresses = source_addresses(plan.sessions.len() as u32, plan.per_source_ip);
    let shared = Arc::new(Shared::new());
    // One budget of handshakes in flight for the whole process, not per thread.
    let permits = Arc::new(Semaphore::new(plan.concurrency.max(1)));
    let mut shares: Vec<Vec<(u32, String)>> = vec![Vec::new(); threads];
    for (position, session) in plan.sessions.into_iter().enumerate() {
        shares[position % threads].push(session);
    }
    let mut workers = Vec::with_capacity(threads);
    for (number, sessions) in shares.into_iter().enumerate() {
        let (stop_tx, stop_rx) = oneshot::channel();
        let worker = Worker {
            ws_urls: plan.ws_urls.clone(),
            addresses: addresses.clone(),
            sessions,
            permits: Arc::clone(&permits),
            shared: Arc::clone(&shared),
            outcomes: outcomes.clone(),
        };
        let name = format!("loadgen-client-{number}");
        let handle = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || worker.run(stop_rx))
            .with_context(|| format!("spawning client thread {name}"))?;
        workers.push((name, handle, stop_tx));
    }
    Ok(ClientThreads { shared, workers })
}

impl ClientThreads {
    /// Stops every thread (closing its sessions) and returns all recorded frames, and which
    /// threads died on the way.
    pub fn finish(self) -> Collected {
        let mut collected = Collected {
            deliveries: Vec::new(),
            failures: Vec::new(),
        };
        for (name, handle, stop) in self.workers {
            let _ = stop.send(());
            match handle.join() {
                Ok(deliveries) => collected.deliveries.extend(deliveries),
                Err(payload) => collected.failures.push(format!(
                    "client thread {name} panicked ({}); the frames its sessions received are lost",
                    crate::panics::message(&*payload)
                )),
            }
        }
        collected
    }
}

struct Worker {
    ws_urls: Vec<String>,
    addresses: Vec<Ipv4Addr>,
    sessions: Vec<(u32, String)>,
    permits: Arc<Semaphore>,
    shared: Arc<Shared>,
    outcomes: mpsc::UnboundedSender<ConnectOutcome>,
}

impl Worker {
    fn run(self, stop: oneshot::Receiver<()>) -> Vec<Delivery> {
        let log = Rc::new(RefCell::new(Vec::new()));
        actix_rt::System::new().block_on(async {
            self.connect_all(Rc::clone(&log)).await;
            // Sessions keep reading on this thread's runtime until the run is over.
            let _ = stop.await;
        });
        log.take()
    }

    async fn connect_all(self, log: Rc<RefCell<Vec<Delivery>>>) {
        // One client per source address: the connector binds every socket it opens to it.
        let clients: Vec<awc::Client> = self
            .addresses
            .iter()
            .map(|&ip| {
                awc::Client::builder()
                    .connector(
                        awc::Connector::new()
                            .local_address(IpAddr::V4(ip))
                            .limit(0)
                            .timeout(HANDSHAKE_TIMEOUT),
                    )
                    .timeout(HANDSHAKE_TIMEOUT)
                    .finish()
            })
            .collect();
        let urls: Vec<Rc<str>> = self.ws_urls.into_iter().map(Rc::from).collect();
        if urls.is_empty() {
            for (session, _) in self.sessions {
                let _ = self.outcomes.send(ConnectOutcome::Failed {
                    session,
                    error: "no feed URL to connect to".into(),
                });
            }
            return;
        }
        let mut sessions = self.sessions.into_iter();
        for (session, token) in sessions.by_ref() {
            let Ok(permit) = Arc::clone(&self.permits).acquire_owned().await else {
                // Never happens (the semaphore is never closed); if it did, say so for each
                // session rather than leave the coordinator waiting for them.
                let _ = self.outcomes.send(ConnectOutcome::Failed {
                    session,
                    error: "no handshake permit (the permits were closed)".into(),
                });
                break;
            };
            let client = clients[session as usize % clients.len()].clone();
            let url = Rc::clone(&urls[session as usize % urls.len()]);
            let (log, shared) = (Rc::clone(&log), Arc::clone(&self.shared));
            // Reports the handshake however the task ends, even by a panic.
            let mut pending = Pending {
                session,
                outcomes: Some(self.outcomes.clone()),
            };
            actix_rt::spawn(async move {
                let handshake = client.ws(&*url).bearer_auth(&token).connect().await;
                drop(permit);
                let stomp = stomp::is_stomp(&url);
                match handshake {
                    Ok((_, mut framed)) => {
                        if stomp {
                            let opening = stomp::opening(&token);
                            let _ = framed.send(Message::Text(opening.into())).await;
                        }
                        pending.report(ConnectOutcome::Connected {
                            session,
                            at: Instant::now(),
                        });
                        read_frames(session, framed, stomp, &log, &shared).await;
                    }
                    Err(error) => pending.report(ConnectOutcome::Failed {
                        session,
                        error: error.to_string(),
                    }),
                }
            });
        }
        for (session, _) in sessions {
            let _ = self.outcomes.send(ConnectOutcome::Failed {
                session,
                error: "no handshake permit (the permits were closed)".into(),
            });
        }
    }
}

/// A session whose handshake has not been reported yet. Dropped unreported (its task panicked
/// or was cancelled), it reports a failure, so the coordinator never waits for it in vain.
struct Pending {
    session: u32,
    outcomes: Option<mpsc::UnboundedSender<ConnectOutcome>>,
}

impl Pending {
    fn report(&mut self, outcome: ConnectOutcome) {
        if let Some(outcomes) = self.outcomes.take() {
            let _ = outcomes.send(outcome);
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let session = self.session;
        self.report(ConnectOutcome::Failed {
            session,
            error: "its task ended before the handshake did (a panic? see above)".into(),
        });
    }
}

/// Reads one session until it ends: records text frames, answers pings. A session that ends
/// while the run still wants it is counted as dropped, with the reason.
async fn read_frames<F, E>(
    session: u32,
    mut framed: F,
    stomp: bool,
    log: &RefCell<Vec<Delivery>>,
    shared: &Shared,
) where
    F: Stream<Item = Result<Frame, E>> + Sink<Message> + Unpin,
    E: Display,
{
    let ending = loop {
        let Some(frame) = framed.next().await else {
            break Ending::Lost("the connection ended without a close frame".to_owned());
        };
        match frame {
            Ok(Frame::Text(bytes)) => {
                let at = Instant::now();
                let body = if stomp {
                    match stomp::message_body(&bytes) {
                        Some(body) => body,
                        None => continue,
                    }
                } else {
                    &bytes[..]
                };
                let (seq, feed_seq) = read_frame(body);
                log.borrow_mut().push(Delivery {
                    session,
                    seq,
                    feed_seq,
                    at,
                });
                shared.received.fetch_add(1, Ordering::Relaxed);
                let nanos = at.saturating_duration_since(shared.base).as_nanos() as u64;
                shared
                    .last_frame_nanos
                    .fetch_max(nanos.max(1), Ordering::Relaxed);
            }
            Ok(Frame::Ping(payload)) => {
                // awc does not answer pings itself; a silent client is dropped by the watchdog.
                if framed.send(Message::Pong(payload)).await.is_err() {
                    break Ending::Lost(
                        "answering a ping failed (the socket is closed)".to_owned(),
                    );
                }
            }
            Ok(Frame::Close(Some(reason))) => {
                let code = u16::from(reason.code);
                break Ending::Closed {
                    code: Some(code),
                    why: format!(
                        "closed by herald with {code} ({})",
                        reason.description.as_deref().unwrap_or("no reason given")
                    ),
                };
            }
            Ok(Frame::Close(None)) => {
                break Ending::Closed {
                    code: None,
                    why: "closed by herald without a code".to_owned(),
                }
            }
            Err(error) => break Ending::Lost(format!("read error: {error}")),
            Ok(_) => {}
        }
    };
    shared.dropped(session, ending);
}

#[derive(Deserialize)]
struct FeedFrame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(rename = "postText", borrow, default)]
    post_text: Option<Cow<'a, str>>,
    #[serde(default)]
    seq: Option<FeedSeq>,
}

/// herald's `seq`: a JSON number, or the same digits as a string (as a 64-bit integer may be
/// sent to spare JavaScript clients); anything else makes the frame unreadable.
#[derive(Deserialize)]
#[serde(untagged)]
enum FeedSeq {
    Number(u64),
    Digits(String),
}

/// What a frame carries: the loadgen number of the post of a `post.created` frame (or
/// `NOT_OURS`), and herald's `seq`, if any. An unreadable frame is `(NOT_OURS, None)`.
pub fn read_frame(frame: &[u8]) -> (u32, Option<u64>) {
    let Ok(parsed) = serde_json::from_slice::<FeedFrame<'_>>(frame) else {
        return (NOT_OURS, None);
    };
    let feed_seq = match parsed.seq {
        None => None,
        Some(FeedSeq::Number(seq)) => Some(seq),
        Some(FeedSeq::Digits(digits)) => match digits.parse() {
            Ok(seq) => Some(seq),
            Err(_) => return (NOT_OURS, None),
        },
    };
    if parsed.kind != "post.created" {
        return (NOT_OURS, feed_seq);
    }
    let post = parsed
        .post_text
        .as_deref()
        .and_then(|text| text.strip_prefix(POST_TEXT_PREFIX))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|digits| digits.parse().ok())
        .filter(|&seq| seq != NOT_OURS)
        .unwrap_or(NOT_OURS);
    (post, feed_seq)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use std::collections::BTreeMap;
    use std::sync::atomic::Ordering;

    use super::{read_frame, source_addresses, Ending, Shared, NOT_OURS};

    #[test]
    fn sessions_that_end_are_counted_by_close_code() {
        let shared = Shared::new();
        let closed = |code| Ending::Closed {
            code: Some(code),
            why: format!("closed by herald with {code} (x)"),
        };
        shared.dropped(3, closed(1013));
        shared.dropped(4, closed(1013));
        shared.dropped(5, closed(1008));
        shared.dropped(
            6,
            Ending::Closed {
                code: None,
                why: "closed by herald without a code".into(),
            },
        );
        shared.dropped(7, Ending::Lost("read error: reset".into()));
        let endings = shared.endings();
        assert_eq!(shared.dropped.load(Ordering::Relaxed), 5);
        assert_eq!(endings.sessions, vec![3, 4, 5, 6, 7]);
        assert_eq!(
            endings.close_codes,
            BTreeMap::from([
                ("1008".to_owned(), 1),
                ("1013".to_owned(), 2),
                ("none".to_owned(), 1)
            ])
        );
        assert_eq!(endings.reasons.len(), 4);
        assert_eq!(endings.reasons["closed by herald with 1013 (x)"], 2);
        assert_eq!(endings.reasons["read error: reset"], 1);
    }

    #[test]
    fn frames_are_matched_to_posts_by_their_text() {
        let ours = br#"{"type":"post.created","postId":"x","postText":"loadgen #42 s1","author_user_id":"y"}"#;
        assert_eq!(read_frame(ours), (42, None));
        let updated = br#"{"type":"post.updated","postId":"x","postText":"loadgen #42 s1"}"#;
        assert_eq!(read_frame(updated), (NOT_OURS, None));
        let foreign = br#"{"type":"post.created","postId":"x","postText":"hello"}"#;
        assert_eq!(read_frame(foreign), (NOT_OURS, None));
        assert_eq!(read_frame(b"not json"), (NOT_OURS, None));
    }

    #[test]
    fn herald_seq_is_read_when_present() {
        let numbered = br#"{"type":"post.created","seq":18446744073709551615,"postId":"x",
            "postText":"loadgen #7 s6","author_user_id":"y"}"#;
        assert_eq!(read_frame(numbered), (7, Some(u64::MAX)));
        let digits = br#"{"seq":"12","type":"post.created","postText":"loadgen #3 s6"}"#;
        assert_eq!(read_frame(digits), (3, Some(12)));
        // Another kind of event still has its place in the session's sequence.
        let deleted = br#"{"type":"post.deleted","seq":5,"postId":"x","author_user_id":"y"}"#;
        assert_eq!(read_frame(deleted), (NOT_OURS, Some(5)));
        // `"seq": null` is a frame without one.
        let null = br#"{"type":"post.created","seq":null,"postText":"loadgen #1 x"}"#;
        assert_eq!(read_frame(null), (1, None));
        // A seq that is no 64-bit unsigned integer makes the frame unreadable, not a panic.
        for bad in [
            &br#"{"type":"post.created","seq":-1,"postText":"loadgen #1 x"}"#[..],
            br#"{"type":"post.created","seq":1.5,"postText":"loadgen #1 x"}"#,
            br#"{"type":"post.created","seq":"1e3","postText":"loadgen #1 x"}"#,
            br#"{"type":"post.created","seq":18446744073709551616,"postText":"loadgen #1 x"}"#,
        ] {
            assert_eq!(read_frame(bad), (NOT_OURS, None));
        }
    }

    #[test]
    fn sessions_are_spread_over_enough_source_addresses() {
        assert_eq!(
            source_addresses(10, 20_000),
            vec![Ipv4Addr::new(127, 0, 0, 2)]
        );
        let many = source_addresses(50_000, 20_000);
        assert_eq!(many.len(), 3);
        assert_eq!(many[2], Ipv4Addr::new(127, 0, 0, 4));
        assert_eq!(source_addresses(600, 1)[300], Ipv4Addr::new(127, 0, 1, 46));
    }
}
