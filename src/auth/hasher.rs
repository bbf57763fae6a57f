//! `Hasher`: the only place password hashes are computed. A fixed set of threads
//! (`auth.hash_concurrency`) takes jobs from two bounded queues (`auth.hash_queue` each): logins'
//! checks first, new passwords (registrations) only when no login waits. A job that finds its
//! queue full is refused at once, so a flood costs at most that many hashes' memory (~19 MiB
//! each) and answers the excess with 503 instead of piling up work; and a registration flood
//! delays a login by at most the hashes already running, never by the registrations queued.
//! Dedicated threads also keep the allocator's per-thread arenas few, so memory freed after a
//! flood is reused rather than scattered over hundreds of blocking-pool threads, and
//! [`return_memory_after_hashing`] makes the allocator give it back to the system.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;

use tokio::sync::oneshot;

use super::password::{self, PasswordError};

type Job = Box<dyn FnOnce() + Send>;

/// Allocations at least this large are mapped for themselves and unmapped when freed.
const MMAP_THRESHOLD: i32 = 4 << 20;

/// Makes memory freed by a hash go back to the system at once. Argon2 allocates its ~19 MiB of
/// blocks per hash; glibc serves an allocation that large with a fresh mapping, but after the
/// first is freed it raises its threshold and keeps later ones in per-thread arenas, which it
/// does not return (a flood left ~170 MiB resident after settling). A fixed threshold keeps
/// every such block mapped on its own. Process-wide, so `main` calls it once; nothing else
/// herald allocates comes near that size.
pub fn return_memory_after_hashing() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes allocator parameters; M_MMAP_THRESHOLD takes a size in
        // bytes, and glibc refuses (returns 0) a value out of range, which is harmless.
        let applied = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
        if applied == 0 {
            log::warn!("could not set the allocator's mmap threshold");
        }
    }
}

/// Which queue a job waits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Priority {
    /// A login's check: taken first.
    Login,
    /// A new password's hash: taken when no login waits.
    NewPassword,
}

#[derive(Default)]
struct Queues {
    login: VecDeque<Job>,
    new_password: VecDeque<Job>,
    /// Every handle is gone: the threads finish what is queued and end.
    closed: bool,
}

struct Shared {
    queues: Mutex<Queues>,
    ready: Condvar,
    capacity: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queues> {
        // Every update is one push, pop or assignment: consistent whatever panicked.
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Closes the queues when the last `Hasher` clone is dropped.
struct Owner(Arc<Shared>);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.lock().closed = true;
        self.0.ready.notify_all();
    }
}

/// A handle to the hashing threads; cheap to clone. The threads end when the last handle is
/// dropped.
#[derive(Clone)]
pub struct Hasher {
    owner: Arc<Owner>,
}

impl Hasher {
    /// Starts `threads` hashing threads behind two queues of `queue` waiting jobs each.
    pub fn start(threads: usize, queue: usize) -> std::io::Result<Hasher> {
        let shared = Arc::new(Shared {
            queues: Mutex::new(Queues::default()),
            ready: Condvar::new(),
            capacity: queue.max(1),
        });
        for n in 0..threads.max(1) {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name(format!("herald-hash-{n}"))
                .spawn(move || work(&shared))?;
        }
        Ok(Hasher {
            owner: Arc::new(Owner(shared)),
        })
    }

    /// Hashes a new password (a registration): waits behind every login's check.
    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        let answer = self.submit(Priority::NewPassword, move || password::hash(&password))?;
        answer.await.map_err(|_| PasswordError::Stopped)?
    }

    /// Checks a password against its stored hash (a login): goes first.
    pub async fn verify(&self, password: String, stored: String) -> Result<bool, PasswordError> {
        let answer = self.submit(Priority::Login, move || {
            password::verify(&password, &stored)
        })?;
        answer.await.map_err(|_| PasswordError::Stopped)
    }

    /// Queues a job now, or refuses it now if its queue is full.
    fn submit<T, F>(
        &self,
        priority: Priority,
        job: F,
    ) -> Result<oneshot::Receiver<T>, PasswordError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move || {
            // A caller that has gone (its client hung up) needs no hash.
            if !reply.is_closed() {
                let _ = reply.send(job());
            }
        });
        let shared = &self.owner.0;
        let mut queues = shared.lock();
        let queue = match priority {
            Priority::Login => &mut queues.login,
            Priority::NewPassword => &mut queues.new_password,
        };
        if queue.len() >= shared.capacity {
            return Err(PasswordError::Saturated);
        }
        queue.push_back(job);
        drop(queues);
        shared.ready.notify_one();
        Ok(answer)
    }
}

fn work(shared: &Shared) {
    loop {
        // Hold the lock only to take a job, not while running it.
        let job = {
            let mut queues = shared.lock();
            loop {
                if let Some(job) = queues.login.pop_front() {
                    break job;
                }
                if let Some(job) = queues.new_password.pop_front() {
                    break job;
                }
                if queues.closed {
                    return;
                }
                queues = shared
                    .ready
                    .wait(queues)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        job();
    }
}

#[cfg(test)]
mod tests {
    use super::{Hasher, Priority};
    use crate::auth::password::PasswordError;

    #[actix_web::test]
    async fn hashes_and_verifies_off_the_runtime() {
        let hasher = Hasher::start(1, 4).expect("threads");
        let stored = hasher.hash("correct horse".into()).await.expect("hash");
        assert!(hasher
            .verify("correct horse".into(), stored.clone())
            .await
            .expect("verify"));
        assert!(!hasher
            .verify("battery staple".into(), stored)
            .await
            .expect("verify"));
    }

    #[actix_web::test]
    async fn a_full_queue_is_refused_at_once() {
        let hasher = Hasher::start(1, 1).expect("threads");
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let (release, held) = std::sync::mpsc::channel::<()>();
        let first = hasher
            .submit(Priority::Login, move || {
                let _ = started_tx.send(());
                held.recv().is_ok()
            })
            .expect("the queue is empty");
        started.await.expect("the only thread runs the first job");
        let second = hasher
            .submit(Priority::Login, || true)
            .expect("one job may wait");
        let third = hasher.submit(Priority::Login, || true);
        assert!(matches!(third, Err(PasswordError::Saturated)));
        release.send(()).expect("release");
        assert!(first.await.expect("first answered"));
        assert!(second.await.expect("second answered"));
    }

    #[actix_web::test]
    async fn a_login_goes_before_every_waiting_new_password() {
        let hasher = Hasher::start(1, 8).expect("threads");
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let (release, held) = std::sync::mpsc::channel::<()>();
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let blocker = hasher
            .submit(Priority::NewPassword, move || {
                let _ = started_tx.send(());
                held.recv().is_ok()
            })
            .expect("queued");
        started.await.expect("the only thread runs the blocker");
        let mut answers = Vec::new();
        for n in 0..4 {
            let order = order.clone();
            answers.push(
                hasher
                    .submit(Priority::NewPassword, move || {
                        order.lock().expect("order").push(format!("register {n}"))
                    })
                    .expect("queued"),
            );
        }
        let login = {
            let order = order.clone();
            hasher
                .submit(Priority::Login, move || {
                    order.lock().expect("order").push("login".to_owned())
                })
                .expect("queued")
        };
        release.send(()).expect("release");
        assert!(blocker.await.expect("blocker answered"));
        login.await.expect("login answered");
        for answer in answers {
            answer.await.expect("answered");
        }
        let order = order.lock().expect("order").clone();
        assert_eq!(
            order.first().map(String::as_str),
            Some("login"),
            "{order:?}"
        );
        assert_eq!(order.len(), 5);
    }
}
