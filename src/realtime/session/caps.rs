//! `SessionCaps`: how many feed sessions this instance holds, per user, per client address and
//! in all, and the caps on each (`realtime.max_sessions_per_user`, `max_sessions_per_address`,
//! `max_sessions`). A session takes a [`SessionPermit`] before it is admitted and holds it for
//! its life; dropping the permit (the session actor stopping, or an upgrade that failed) gives
//! the place back. Every transport admits through here, so one token cannot open thousands of
//! sessions (each two descriptors, each receiving every event again), and the instance refuses
//! at the door (503) before it runs out of descriptors inside.
//!
//! The counts are this instance's: a user may hold the cap on each instance behind a balancer.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use uuid::Uuid;

use crate::config::RealtimeSettings;
use crate::limits::network_of;

/// Why a session was refused a place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapRefusal {
    /// The user already holds `max_sessions_per_user` sessions here (429).
    User,
    /// The client address already holds `max_sessions_per_address` sessions here (429).
    Address,
    /// This instance holds `max_sessions` (503).
    Instance,
}

#[derive(Default)]
struct Counts {
    total: usize,
    by_user: HashMap<Uuid, usize>,
    by_address: HashMap<IpAddr, usize>,
}

struct Shared {
    per_user: usize,
    per_address: usize,
    total: usize,
    /// Connections the HTTP server may hold at once (see [`SessionCaps::connection_cap`]).
    connections: usize,
    counts: Mutex<Counts>,
}

#[derive(Clone)]
pub struct SessionCaps(Arc<Shared>);

/// One session's place; given back when dropped.
pub struct SessionPermit {
    caps: Arc<Shared>,
    user: Uuid,
    address: Option<IpAddr>,
}

impl SessionCaps {
    pub fn new(settings: &RealtimeSettings) -> Self {
        Self::within(settings, open_files_limit())
    }

    /// The caps for a process allowed `descriptors` open files. A tenth of them (at most
    /// 1,000) is kept for everything but connections: the database pool, the broker, the
    /// listeners, files. Of the rest, each session takes two (its connection, and the
    /// duplicate its write watch keeps), and connections that are not sessions (HTTP requests,
    /// upgrades under way) get half the reserve: so sessions at their cap plus connections at
    /// theirs never reach the limit, and a flood of connections waits in the listen backlog
    /// instead of failing inside with `EMFILE`.
    fn within(settings: &RealtimeSettings, descriptors: usize) -> Self {
        let reserve = (descriptors / 10).min(1_000);
        let total = match settings.max_sessions {
            0 => (descriptors - reserve) / 2,
            n => n,
        };
        SessionCaps(Arc::new(Shared {
            per_user: settings.max_sessions_per_user,
            per_address: settings.max_sessions_per_address,
            total,
            connections: total.saturating_add(reserve / 2).max(1),
            counts: Mutex::new(Counts::default()),
        }))
    }

    /// Connections the HTTP server may hold at once, across its workers: the instance's
    /// session cap and half the reserve (see [`within`](Self::within)).
    pub fn connection_cap(&self) -> usize {
        self.0.connections
    }

    /// A place for a session of `user` from `address`, or why there is none.
    pub fn try_take(
        &self,
        user: Uuid,
        address: Option<IpAddr>,
    ) -> Result<SessionPermit, CapRefusal> {
        let shared = &self.0;
        let address = address.map(network_of);
        let mut counts = lock(shared);
        if counts.total >= shared.total {
            return Err(CapRefusal::Instance);
        }
        if counts.by_user.get(&user).copied().unwrap_or(0) >= shared.per_user {
            return Err(CapRefusal::User);
        }
        if let Some(address) = address {
            if counts.by_address.get(&address).copied().unwrap_or(0) >= shared.per_address {
                return Err(CapRefusal::Address);
            }
            *counts.by_address.entry(address).or_insert(0) += 1;
        }
        *counts.by_user.entry(user).or_insert(0) += 1;
        counts.total += 1;
        Ok(SessionPermit {
            caps: Arc::clone(shared),
            user,
            address,
        })
    }

    /// Sessions holding a place now.
    pub fn held(&self) -> usize {
        lock(&self.0).total
    }

    /// The instance-wide cap in force.
    pub fn instance_cap(&self) -> usize {
        self.0.total
    }
}

impl Drop for SessionPermit {
    fn drop(&mut self) {
        let mut counts = lock(&self.caps);
        counts.total = counts.total.saturating_sub(1);
        give_back(&mut counts.by_user, self.user);
        if let Some(address) = self.address {
            give_back(&mut counts.by_address, address);
        }
    }
}

fn give_back<K: Hash + Eq>(map: &mut HashMap<K, usize>, key: K) {
    if let Some(n) = map.get_mut(&key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(&key);
        }
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, Counts> {
    // Each update is a few additions: consistent whatever panicked while holding it.
    shared.counts.lock().unwrap_or_else(PoisonError::into_inner)
}

/// This process's open-files limit (its soft limit, which `startup` raises to the hard one).
fn open_files_limit() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given and has no other effect.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    if read && limit.rlim_cur != libc::RLIM_INFINITY {
        usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
    } else {
        1 << 20
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use uuid::Uuid;

    use super::{CapRefusal, SessionCaps};
    use crate::config::Settings;

    fn caps(per_user: usize, per_address: usize, total: usize) -> SessionCaps {
        let mut settings = Settings::load_from(None, Some(Default::default()))
            .expect("defaults")
            .realtime;
        settings.max_sessions_per_user = per_user;
        settings.max_sessions_per_address = per_address;
        settings.max_sessions = total;
        SessionCaps::new(&settings)
    }

    #[test]
    fn each_cap_refuses_the_next_session_and_a_dropped_permit_frees_its_place() {
        let caps = caps(2, 3, 4);
        let (ann, bob) = (Uuid::new_v4(), Uuid::new_v4());
        let home: Option<IpAddr> = Some("192.0.2.1".parse().expect("ip"));
        let away: Option<IpAddr> = Some("192.0.2.2".parse().expect("ip"));
        let first = caps.try_take(ann, home).expect("first");
        let _second = caps.try_take(ann, home).expect("second");
        assert_eq!(caps.try_take(ann, away).err(), Some(CapRefusal::User));
        let _third = caps.try_take(bob, home).expect("bob from home");
        assert_eq!(caps.try_take(bob, home).err(), Some(CapRefusal::Address));
        let _fourth = caps.try_take(bob, away).expect("bob from away");
        assert_eq!(
            caps.try_take(Uuid::new_v4(), away).err(),
            Some(CapRefusal::Instance)
        );
        drop(first);
        assert_eq!(caps.held(), 3);
        assert!(caps.try_take(ann, away).is_ok());
    }

    #[test]
    fn sessions_and_connections_at_their_caps_stay_below_the_descriptor_limit() {
        let settings = |max| {
            let mut realtime = Settings::load_from(None, Some(Default::default()))
                .expect("defaults")
                .realtime;
            realtime.max_sessions = max;
            realtime
        };
        for descriptors in [256, 1024, 20_000, 1_048_576] {
            let caps = SessionCaps::within(&settings(0), descriptors);
            // Each session: its connection and a duplicate; other connections: one each.
            let used = caps.instance_cap() + caps.connection_cap();
            assert!(caps.instance_cap() > 0);
            assert!(caps.connection_cap() > caps.instance_cap());
            assert!(used + 64 <= descriptors, "{descriptors}: {used}");
        }
        assert_eq!(
            SessionCaps::within(&settings(0), 20_000).instance_cap(),
            9_500
        );
        assert_eq!(SessionCaps::within(&settings(7), 20_000).instance_cap(), 7);
    }
}
