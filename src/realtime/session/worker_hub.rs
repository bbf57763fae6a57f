//! `WorkerHub`: one per worker thread, so that an event crosses threads once per worker rather
//! than once per session.
//!
//! Session actors live on the HTTP worker threads; the registry lives on the system thread.
//! Handing an event to fifty followers used to be fifty cross-thread sends, each taking the
//! worker's run-queue lock and often waking it (an eventfd write and a context switch). Now a
//! session joins the hub of its own thread when it registers, and the registry sends each hub
//! one [`HandOut`] per event naming that hub's target sessions. The hub, on the sessions' own
//! thread, puts the event into each one's mailbox: a local send that wakes nobody else.
//!
//! Live events keep their order: every live event of a session now takes the same two hops
//! (registry → hub → session), and a `FeedSync::Hold` the registry sends straight to a session
//! reaches it before any event the registry hands out after sending it (those wait in the hub
//! first). An event handed out before a hold may arrive after it and be held too; the gate
//! (`in_order`) writes it once, in position order, after the fill.
//!
//! The hub judges a full mailbox exactly as the registry did (the session is too slow) and
//! reports it, with sessions it no longer finds, back to the registry ([`Undelivered`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use uuid::Uuid;

use super::protocol::Deliver;
use super::write_watch::WriteWatch;
use crate::realtime::events::Frame;
use crate::realtime::stats::Stats;
use crate::realtime::trace::Trace;

/// What the hub needs of one session on its thread.
struct Local {
    deliver: Recipient<Deliver>,
    write: Option<Arc<WriteWatch>>,
}

type Locals = Rc<RefCell<HashMap<Uuid, Local>>>;

/// The hub of one thread, as a session's handle carries it: `id` tells the registry which
/// sessions share a hub.
#[derive(Clone)]
pub struct HubLink {
    pub id: u64,
    pub addr: Addr<WorkerHub>,
}

thread_local! {
    /// This thread's hub and its sessions, once a session has joined.
    static THIS_THREAD: RefCell<Option<(HubLink, Locals)>> = const { RefCell::new(None) };
}

/// Hub ids, unique in the process.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Adds a session of the current thread to its hub (starting the hub on the thread's arbiter
/// if it has none, or if that one stopped with its system), and returns the link for the
/// session's handle. Call on the session actor's own thread, before the registry can hand it
/// anything.
pub fn join(
    session_id: Uuid,
    deliver: Recipient<Deliver>,
    write: Option<Arc<WriteWatch>>,
) -> HubLink {
    THIS_THREAD.with(|cell| {
        let mut this = cell.borrow_mut();
        if !this.as_ref().is_some_and(|(link, _)| link.addr.connected()) {
            *this = None;
        }
        let (link, locals) = this.get_or_insert_with(|| {
            let locals: Locals = Rc::default();
            let addr = WorkerHub {
                locals: Rc::clone(&locals),
            }
            .start();
            let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
            (HubLink { id, addr }, locals)
        });
        locals
            .borrow_mut()
            .insert(session_id, Local { deliver, write });
        link.clone()
    })
}

/// Takes a session of the current thread off its hub (when its actor stops). Idempotent.
pub fn leave(session_id: Uuid) {
    THIS_THREAD.with(|cell| {
        if let Some((_, locals)) = cell.borrow().as_ref() {
            locals.borrow_mut().remove(&session_id);
        }
    });
}

/// One event for some of this hub's sessions.
#[derive(Message)]
#[rtype(result = "()")]
pub struct HandOut {
    pub sessions: Vec<Uuid>,
    pub frame: Frame,
    pub trace: Trace,
    pub stats: Stats,
    /// Where to report sessions that could not take it.
    pub undelivered: Recipient<Undelivered>,
}

/// Sessions a hub could not hand an event to: those whose mailbox was full (too slow) and
/// those it no longer has (stopped).
#[derive(Message, Debug, Default)]
#[rtype(result = "()")]
pub struct Undelivered {
    pub too_slow: Vec<(Uuid, i64)>,
    pub gone: Vec<Uuid>,
}

pub struct WorkerHub {
    locals: Locals,
}

impl Actor for WorkerHub {
    type Context = Context<Self>;
}

impl Handler<HandOut> for WorkerHub {
    type Result = ();

    fn handle(&mut self, msg: HandOut, _: &mut Context<Self>) {
        let mut undelivered = Undelivered::default();
        let mut handed = 0;
        {
            let locals = self.locals.borrow();
            for session_id in msg.sessions {
                let Some(local) = locals.get(&session_id) else {
                    undelivered.gone.push(session_id);
                    continue;
                };
                if let Some(watch) = &local.write {
                    watch.owed();
                }
                match local
                    .deliver
                    .try_send(Deliver(msg.frame.clone(), msg.trace.clone()))
                {
                    Ok(()) => handed += 1,
                    Err(SendError::Full(_)) => undelivered.too_slow.push((session_id, msg.frame.0)),
                    Err(SendError::Closed(_)) => undelivered.gone.push(session_id),
                }
            }
        }
        msg.stats.add_delivered(handed);
        if !undelivered.too_slow.is_empty() || !undelivered.gone.is_empty() {
            msg.undelivered.do_send(undelivered);
        }
    }
}
