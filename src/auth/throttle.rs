//! `LoginThrottle`: counts failed logins per user id and per client address in a fixed window
//! (`auth.login_failure_window_secs`). Once either count reaches its limit, further attempts for
//! that user or from that address are refused with 429 until the window ends, before any
//! password is hashed, so guessing costs the guesser time and the server nothing.
//!
//! Every attempt is counted as a failure when it begins, and taken back if it succeeds: counted
//! only after its hash, 64 guesses sent at once would all pass the check before the first
//! failure was counted.
//!
//! The counts live in this process: with several instances behind a balancer each keeps its
//! own, so the effective limit is at most the instance count times the configured one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::config::AuthSettings;

/// Most users and addresses tracked at once; past it, expired windows are dropped, then the
/// oldest tenth (see `make_room`), rather than memory growing without bound.
const MAX_TRACKED: usize = 100_000;

#[derive(Clone, Copy, Hash, PartialEq, Eq, Debug)]
enum Key {
    User(Uuid),
    Address(IpAddr),
}

#[derive(Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

pub struct LoginThrottle {
    per_user: u32,
    per_address: u32,
    window: Duration,
    windows: Mutex<HashMap<Key, Window>>,
}

impl LoginThrottle {
    pub fn new(settings: &AuthSettings) -> Self {
        LoginThrottle {
            per_user: settings.login_failures_per_user,
            per_address: settings.login_failures_per_address,
            window: Duration::from_secs(settings.login_failure_window_secs),
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// A login attempt begins: `Err(wait)` if this user or this address has used up its
    /// failures (retry after `wait`); otherwise the attempt is counted as a failure until
    /// [`succeeded`](Self::succeeded) says otherwise.
    pub fn begin(&self, user: Uuid, address: Option<IpAddr>) -> Result<(), Duration> {
        let now = Instant::now();
        let mut windows = self.lock();
        self.check_in(&windows, now, user, address)?;
        self.count_in(&mut windows, now, user, address);
        Ok(())
    }

    /// The id was no user's: the attempt still counts against the address, but keeps no window
    /// for the id (else made-up ids would fill the table).
    pub fn unknown_user(&self, user: Uuid) {
        self.lock().remove(&Key::User(user));
    }

    /// The password was right: the user's count is cleared, and the address gets back the
    /// failure this attempt was counted as (not more: one good login from an address must not
    /// license more guessing from it).
    pub fn succeeded(&self, user: Uuid, address: Option<IpAddr>) {
        let mut windows = self.lock();
        windows.remove(&Key::User(user));
        if let Some(window) = address.and_then(|a| windows.get_mut(&Key::Address(a))) {
            window.failures = window.failures.saturating_sub(1);
        }
    }

    fn keys(&self, user: Uuid, address: Option<IpAddr>) -> impl Iterator<Item = (Key, u32)> {
        [
            Some((Key::User(user), self.per_user)),
            address.map(|a| (Key::Address(network_of(a)), self.per_address)),
        ]
        .into_iter()
        .flatten()
        .filter(|(_, limit)| *limit > 0)
    }

    #[cfg(test)]
    fn check_at(&self, now: Instant, user: Uuid, address: Option<IpAddr>) -> Result<(), Duration> {
        self.check_in(&self.lock(), now, user, address)
    }

    #[cfg(test)]
    fn failed_at(&self, now: Instant, user: Uuid, address: Option<IpAddr>) {
        self.count_in(&mut self.lock(), now, user, address);
    }

    fn check_in(
        &self,
        windows: &HashMap<Key, Window>,
        now: Instant,
        user: Uuid,
        address: Option<IpAddr>,
    ) -> Result<(), Duration> {
        let wait = self
            .keys(user, address)
            .filter_map(|(key, limit)| {
                let window = windows.get(&key)?;
                let ends = window.started + self.window;
                (window.failures >= limit && ends > now).then(|| ends - now)
            })
            .max();
        match wait {
            Some(wait) => Err(wait),
            None => Ok(()),
        }
    }

    fn count_in(
        &self,
        windows: &mut HashMap<Key, Window>,
        now: Instant,
        user: Uuid,
        address: Option<IpAddr>,
    ) {
        for (key, _) in self.keys(user, address) {
            if !windows.contains_key(&key) && windows.len() >= MAX_TRACKED {
                make_room(windows, now, self.window);
            }
            let window = windows.entry(key).or_insert(Window {
                started: now,
                failures: 0,
            });
            if window.started + self.window <= now {
                *window = Window {
                    started: now,
                    failures: 0,
                };
            }
            window.failures = window.failures.saturating_add(1);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Window>> {
        // The map stays consistent whatever panicked while holding it: every update is one
        // insert or assignment.
        self.windows.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The address a limit applies to: IPv4 as is, IPv6 by its /64 (one subscriber's prefix: a
/// client holds a whole /64 and could otherwise change address at every attempt).
fn network_of(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !u128::from(u64::MAX);
            IpAddr::V6(std::net::Ipv6Addr::from(prefix))
        }
    }
}

/// The table is full: drop expired windows, and if that is not enough, the oldest tenth, so
/// that new guessers are still counted (an old window dropped early only forgives a little).
fn make_room(windows: &mut HashMap<Key, Window>, now: Instant, window: Duration) {
    windows.retain(|_, w| w.started + window > now);
    if windows.len() >= MAX_TRACKED {
        let mut starts: Vec<Instant> = windows.values().map(|w| w.started).collect();
        starts.sort_unstable();
        if let Some(cutoff) = starts.get(MAX_TRACKED / 10).copied() {
            windows.retain(|_, w| w.started > cutoff);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::{Duration, Instant};

    use uuid::Uuid;

    use super::LoginThrottle;
    use crate::config::AuthSettings;

    fn throttle(per_user: u32, per_address: u32) -> LoginThrottle {
        LoginThrottle::new(&AuthSettings {
            token_ttl_secs: 60,
            hash_concurrency: 1,
            hash_queue: 1,
            login_failures_per_user: per_user,
            login_failures_per_address: per_address,
            login_failure_window_secs: 60,
        })
    }

    const HOME: Option<IpAddr> = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
    const AWAY: Option<IpAddr> = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)));

    #[test]
    fn a_user_is_refused_after_the_limit_until_the_window_ends() {
        let throttle = throttle(3, 0);
        let (user, t0) = (Uuid::new_v4(), Instant::now());
        for n in 0..3 {
            assert!(throttle.check_at(t0, user, HOME).is_ok(), "attempt {n}");
            throttle.failed_at(t0, user, HOME);
        }
        let wait = throttle.check_at(t0 + Duration::from_secs(10), user, AWAY);
        assert_eq!(wait, Err(Duration::from_secs(50)));
        assert!(throttle.check_at(t0, Uuid::new_v4(), HOME).is_ok());
        assert!(throttle
            .check_at(t0 + Duration::from_secs(60), user, HOME)
            .is_ok());
    }

    #[test]
    fn an_address_is_refused_whichever_users_it_tries() {
        let throttle = throttle(0, 2);
        let t0 = Instant::now();
        throttle.failed_at(t0, Uuid::new_v4(), HOME);
        throttle.failed_at(t0, Uuid::new_v4(), HOME);
        assert!(throttle.check_at(t0, Uuid::new_v4(), HOME).is_err());
        assert!(throttle.check_at(t0, Uuid::new_v4(), AWAY).is_ok());
    }

    #[test]
    fn success_clears_the_user_but_not_the_address() {
        let throttle = throttle(2, 2);
        let (user, t0) = (Uuid::new_v4(), Instant::now());
        throttle.failed_at(t0, user, HOME);
        throttle.failed_at(t0, user, HOME);
        assert!(throttle.check_at(t0, user, AWAY).is_err());
        throttle.succeeded(user, AWAY);
        assert!(throttle.check_at(t0, user, AWAY).is_ok());
        assert!(throttle.check_at(t0, user, HOME).is_err());
    }

    #[test]
    fn an_ipv6_client_is_limited_by_its_prefix() {
        let throttle = throttle(0, 1);
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("v6");
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("v6");
        let elsewhere: IpAddr = "2001:db8:1:3::1".parse().expect("v6");
        assert!(throttle.begin(Uuid::new_v4(), Some(a)).is_ok());
        assert!(throttle.begin(Uuid::new_v4(), Some(b)).is_err());
        assert!(throttle.begin(Uuid::new_v4(), Some(elsewhere)).is_ok());
    }

    #[test]
    fn attempts_count_when_they_begin_so_a_burst_cannot_overshoot() {
        let throttle = throttle(3, 0);
        let user = Uuid::new_v4();
        // Three attempts in flight at once (none finished): the fourth is refused already.
        for _ in 0..3 {
            assert!(throttle.begin(user, HOME).is_ok());
        }
        assert!(throttle.begin(user, HOME).is_err());
        // One of them turns out right: the user starts afresh.
        throttle.succeeded(user, HOME);
        assert!(throttle.begin(user, HOME).is_ok());
    }
}
