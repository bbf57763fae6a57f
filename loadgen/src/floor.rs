//! The client's floor (`run --floor`): a trivial broadcaster that answers the two calls the load
//! generator makes of herald (`POST /post/create` and the feed WebSocket) with no database, no
//! broker and no ordering work, run in this process on a thread of its own. A post becomes one
//! frame handed at once to every connected follower, built the way herald builds them (actix-web
//! sessions, one text frame each, TCP_NODELAY). Measured through the same client code as
//! herald, its latencies are what the load generator and the sockets add by themselves: the
//! part of a herald figure that is not herald's.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use actix::prelude::*;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use actix_web_actors::ws;
use anyhow::{Context as _, Result};
use uuid::Uuid;

use crate::seed::Graph;

/// The token of user `index`: the floor trusts it as it stands.
pub fn token(index: u32) -> String {
    format!("floor-{index}")
}

fn user_of(req: &HttpRequest) -> Option<u32> {
    req.headers()
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer floor-")?
        .parse()
        .ok()
}

/// One frame, shared by every session it goes to.
#[derive(Message, Clone)]
#[rtype(result = "()")]
struct Frame(Arc<str>);

struct Hub {
    /// Per author, the users following them.
    followers: Vec<Vec<u32>>,
    users: Vec<Uuid>,
    sessions: Mutex<HashMap<u32, Vec<Recipient<Frame>>>>,
    seq: AtomicI64,
}

struct Session {
    user: u32,
    hub: Arc<Hub>,
}

impl Actor for Session {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Ok(mut sessions) = self.hub.sessions.lock() {
            sessions
                .entry(self.user)
                .or_default()
                .push(ctx.address().recipient());
        }
    }
}

impl Handler<Frame> for Session {
    type Result = ();

    fn handle(&mut self, Frame(text): Frame, ctx: &mut Self::Context) {
        ctx.text(&*text);
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for Session {
    fn handle(&mut self, item: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        match item {
            Ok(ws::Message::Ping(payload)) => ctx.pong(&payload),
            Ok(ws::Message::Close(reason)) => {
                ctx.close(reason);
                ctx.stop();
            }
            Ok(_) => {}
            Err(_) => ctx.stop(),
        }
    }
}

async fn feed(
    req: HttpRequest,
    stream: web::Payload,
    hub: web::Data<Arc<Hub>>,
) -> actix_web::Result<HttpResponse> {
    let Some(user) = user_of(&req) else {
        return Ok(HttpResponse::Unauthorized().finish());
    };
    let hub = Arc::clone(hub.get_ref());
    ws::start(Session { user, hub }, &req, stream)
}

#[derive(serde::Deserialize)]
struct Post {
    text: String,
}

async fn create(req: HttpRequest, body: web::Json<Post>, hub: web::Data<Arc<Hub>>) -> HttpResponse {
    let Some(author) = user_of(&req) else {
        return HttpResponse::Unauthorized().finish();
    };
    let (Some(followers), Some(author_id)) = (
        hub.followers.get(author as usize),
        hub.users.get(author as usize),
    ) else {
        return HttpResponse::BadRequest().finish();
    };
    let post_id = Uuid::new_v4();
    // The position is taken under the lock that hands the frame out, so positions reach every
    // session in order even with several workers posting.
    if let Ok(sessions) = hub.sessions.lock() {
        let frame: Arc<str> = serde_json::json!({
            "type": "post.created",
            "postId": post_id,
            "postText": body.text,
            "author_user_id": author_id,
            "seq": hub.seq.fetch_add(1, Ordering::Relaxed) + 1,
        })
        .to_string()
        .into();
        for follower in followers {
            for session in sessions.get(follower).into_iter().flatten() {
                session.do_send(Frame(Arc::clone(&frame)));
            }
        }
    }
    HttpResponse::Ok().json(post_id.to_string())
}

/// Starts the broadcaster for `graph` on a random loopback port, on its own thread with
/// `workers` worker threads; returns its base URL. It runs until the process exits.
pub fn start(graph: &Graph, workers: usize) -> Result<String> {
    let mut followers = vec![Vec::new(); graph.len() as usize];
    for user in 0..graph.len() {
        for &author in graph.followed_by(user) {
            if let Some(list) = followers.get_mut(author as usize) {
                list.push(user);
            }
        }
    }
    let hub = Arc::new(Hub {
        followers,
        users: graph.users.clone(),
        sessions: Mutex::new(HashMap::new()),
        seq: AtomicI64::new(0),
    });
    let listener = TcpListener::bind("127.0.0.1:0").context("binding the floor broadcaster")?;
    let address = listener.local_addr().context("the floor's address")?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("floor".into())
        .spawn(move || {
            let system = actix_rt::System::new();
            let failed = ready_tx.clone();
            let served = system.block_on(async move {
                let hub = web::Data::new(hub);
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(hub.clone())
                        .route("/post/create", web::post().to(create))
                        .route("/post/feed/posted", web::get().to(feed))
                })
                .workers(workers.max(1))
                .tcp_nodelay(true)
                .disable_signals()
                .listen(listener)?
                .run();
                let _ = ready_tx.send(Ok(()));
                server.await
            });
            if let Err(error) = served {
                let _ = failed.send(Err(error));
            }
        })
        .context("starting the floor thread")?;
    ready_rx
        .recv()
        .context("the floor thread stopped")?
        .context("the floor broadcaster")?;
    Ok(format!("http://{address}"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::StreamExt;
    use rand::SeedableRng;

    use crate::seed::Graph;

    /// Two users following a celebrity (user 2): a post of theirs reaches both sessions, as a
    /// frame the client's parser reads as ours, with a position.
    #[actix_rt::test]
    async fn a_post_reaches_every_connected_follower() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let graph = Graph::generate(2, 0, 2, &mut rng).expect("graph");
        let base = super::start(&graph, 1).expect("floor starts");
        let ws = base.replacen("http", "ws", 1);
        let client = awc::Client::default();
        let mut sockets = Vec::new();
        for user in 0..2 {
            let (_, socket) = client
                .ws(format!("{ws}/post/feed/posted"))
                .bearer_auth(super::token(user))
                .connect()
                .await
                .expect("connects");
            sockets.push(socket);
        }
        // Connected is not registered yet: post until the first frame arrives.
        let mut frames = Vec::new();
        for socket in &mut sockets {
            let frame = loop {
                let answer = client
                    .post(format!("{base}/post/create"))
                    .bearer_auth(super::token(2))
                    .send_json(&serde_json::json!({ "text": "loadgen #0 floor" }))
                    .await
                    .expect("posted");
                assert!(answer.status().is_success());
                match tokio::time::timeout(Duration::from_millis(500), socket.next()).await {
                    Ok(Some(Ok(awc::ws::Frame::Text(text)))) => break text,
                    Ok(other) => panic!("unexpected {other:?}"),
                    Err(_) => continue,
                }
            };
            frames.push(frame);
        }
        for frame in frames {
            let (post, seq) = crate::sessions::read_frame(&frame);
            assert_eq!(post, 0, "{frame:?}");
            assert!(seq.is_some_and(|seq| seq >= 1), "{frame:?}");
        }
    }
}
