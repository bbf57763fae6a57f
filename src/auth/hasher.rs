//! `Hasher`: the only place password hashes are computed. A fixed set of threads
//! (`auth.hash_concurrency`) takes jobs from a bounded queue (`auth.hash_queue`); a job that
//! finds the queue full is refused at once, so a login flood costs at most that many hashes'
//! memory (~19 MiB each) and answers the excess with 503 instead of piling up work. Dedicated
//! threads also keep the allocator's per-thread arenas few, so memory freed after a flood is
//! reused rather than scattered over hundreds of blocking-pool threads, and
//! [`return_memory_after_hashing`] makes the allocator give it back to the system.

use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
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

/// A handle to the hashing threads; cheap to clone. The threads end when the last handle is
/// dropped.
#[derive(Clone)]
pub struct Hasher {
    jobs: SyncSender<Job>,
}

impl Hasher {
    /// Starts `threads` hashing threads behind a queue of `queue` waiting jobs.
    pub fn start(threads: usize, queue: usize) -> std::io::Result<Hasher> {
        let (jobs, receiver) = mpsc::sync_channel::<Job>(queue);
        let receiver = Arc::new(Mutex::new(receiver));
        for n in 0..threads.max(1) {
            let receiver = Arc::clone(&receiver);
            thread::Builder::new()
                .name(format!("herald-hash-{n}"))
                .spawn(move || work(&receiver))?;
        }
        Ok(Hasher { jobs })
    }

    /// Hashes a new password.
    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        let answer = self.submit(move || password::hash(&password))?;
        answer.await.map_err(|_| PasswordError::Stopped)?
    }

    /// Checks a password against its stored hash.
    pub async fn verify(&self, password: String, stored: String) -> Result<bool, PasswordError> {
        let answer = self.submit(move || password::verify(&password, &stored))?;
        answer.await.map_err(|_| PasswordError::Stopped)
    }

    /// Queues a job now, or refuses it now if the queue is full.
    fn submit<T, F>(&self, job: F) -> Result<oneshot::Receiver<T>, PasswordError>
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
        self.jobs.try_send(job).map_err(|error| match error {
            TrySendError::Full(_) => PasswordError::Saturated,
            TrySendError::Disconnected(_) => PasswordError::Stopped,
        })?;
        Ok(answer)
    }
}

fn work(receiver: &Mutex<Receiver<Job>>) {
    loop {
        // Hold the lock only to take a job, not while running it.
        let job = match receiver.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => job(),
            Err(_) => return, // every handle dropped
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Hasher;
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
            .submit(move || {
                let _ = started_tx.send(());
                held.recv().is_ok()
            })
            .expect("the queue is empty");
        started.await.expect("the only thread runs the first job");
        let second = hasher.submit(|| true).expect("one job may wait");
        let third = hasher.submit(|| true);
        assert!(matches!(third, Err(PasswordError::Saturated)));
        release.send(()).expect("release");
        assert!(first.await.expect("first answered"));
        assert!(second.await.expect("second answered"));
    }
}
