//! `LoginThrottle`: failed logins counted per (user, address), per address and per user, in a
//! fixed window (`auth.login_failure_window_secs`), so that guessing costs the guesser time and
//! never locks the rightful user out:
//!
//! - **(user, address)**: `auth.login_failures_per_user_address` failures are free; after them
//!   each further attempt for that user from that address waits twice as long as the last
//!   (1 s, 2 s, 4 s, … until the window ends). Only that address is slowed, for that user.
//! - **address**: `auth.login_failures_per_address` failures for any users, then the same
//!   growing delays for every login from it.
//! - **user**: a ceiling, `auth.login_failures_per_user`, across all addresses, high enough
//!   that one address cannot reach it. Past it, only addresses that have themselves failed for
//!   this user are delayed: the right password from an address that has not been failing is
//!   never refused.
//!
//! Besides, a user and an address may each have only a few checks in flight at once
//! (`auth.login_checks_in_flight_per_user`, `_per_address`): a burst of logins, right or wrong,
//! for one user or from one address waits its turn (429, retry in a second) instead of filling
//! the hashers' queue and turning everyone else's login into a 503.
//!
//! A refused attempt answers 429 before any password is hashed. Every attempt is counted as a
//! failure when it begins (else 64 guesses sent at once would all pass the check before the
//! first failure was counted) and taken back if it succeeds, or if it ends without a verdict (a
//! 503: the database or the hashers were unavailable; that was no failed guess).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::config::AuthSettings;
use crate::limits::network_of;
use crate::limits::window_counts::{Seen, WindowCounts};

/// The first delay past a free allowance; each further failure doubles it.
const FIRST_DELAY: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Hash, PartialEq, Eq, Debug)]
enum Key {
    Pair(Uuid, IpAddr),
    Address(IpAddr),
    User(Uuid),
}

pub struct LoginThrottle {
    per_pair: u32,
    per_address: u32,
    per_user: u32,
    in_flight_per_user: u32,
    in_flight_per_address: u32,
    state: Mutex<State>,
}

struct State {
    counts: WindowCounts<Key>,
    /// Checks under way, by `Key::User` and `Key::Address`.
    in_flight: HashMap<Key, u32>,
}

/// How long an attempt refused for too many checks in flight is asked to wait.
const IN_FLIGHT_WAIT: Duration = Duration::from_secs(1);

/// A login attempt under way, counted as a failure until it says otherwise. Dropped without a
/// verdict (its client hung up mid-check), it stays a failure.
pub struct LoginAttempt {
    throttle: Arc<LoginThrottle>,
    keys: Vec<Key>,
    /// The keys whose in-flight count this attempt holds.
    flying: Vec<Key>,
    settled: bool,
}

impl LoginThrottle {
    pub fn new(settings: &AuthSettings) -> Self {
        LoginThrottle {
            per_pair: settings.login_failures_per_user_address,
            per_address: settings.login_failures_per_address,
            per_user: settings.login_failures_per_user,
            in_flight_per_user: settings.login_checks_in_flight_per_user,
            in_flight_per_address: settings.login_checks_in_flight_per_address,
            state: Mutex::new(State {
                counts: WindowCounts::new(Duration::from_secs(settings.login_failure_window_secs)),
                in_flight: HashMap::new(),
            }),
        }
    }

    /// A login attempt for `user` from `address` begins: `Err(wait)` if it must wait that long
    /// first; otherwise the attempt, counted as a failure until settled.
    pub fn begin(
        self: &Arc<Self>,
        user: Uuid,
        address: Option<IpAddr>,
    ) -> Result<LoginAttempt, Duration> {
        let now = Instant::now();
        let keys = self.keys(user, address);
        let flying = self.flying(user, address);
        let mut state = self.lock();
        let busy = flying.iter().any(|(key, limit)| {
            *limit > 0 && state.in_flight.get(key).copied().unwrap_or(0) >= *limit
        });
        if busy {
            return Err(IN_FLIGHT_WAIT);
        }
        if let Some(wait) = self.wait_in(&state.counts, now, &keys) {
            return Err(wait);
        }
        for key in &keys {
            state.counts.count(key.0, now);
        }
        for (key, _) in &flying {
            *state.in_flight.entry(*key).or_insert(0) += 1;
        }
        Ok(LoginAttempt {
            throttle: Arc::clone(self),
            keys: keys.into_iter().map(|(key, _)| key).collect(),
            flying: flying.into_iter().map(|(key, _)| key).collect(),
            settled: false,
        })
    }

    /// The keys an attempt counts against, each with its free allowance (0: not limited).
    fn keys(&self, user: Uuid, address: Option<IpAddr>) -> Vec<(Key, u32)> {
        let mut keys = vec![(Key::User(user), self.per_user)];
        if let Some(network) = address.map(network_of) {
            keys.push((Key::Pair(user, network), self.per_pair));
            keys.push((Key::Address(network), self.per_address));
        }
        keys
    }

    /// The keys whose checks in flight are limited, each with its limit (0: not limited).
    fn flying(&self, user: Uuid, address: Option<IpAddr>) -> Vec<(Key, u32)> {
        let mut keys = vec![(Key::User(user), self.in_flight_per_user)];
        if let Some(network) = address.map(network_of) {
            keys.push((Key::Address(network), self.in_flight_per_address));
        }
        keys
    }

    /// How long the attempt must wait, if at all: the longest wait any of its keys asks for.
    fn wait_in(
        &self,
        counts: &WindowCounts<Key>,
        now: Instant,
        keys: &[(Key, u32)],
    ) -> Option<Duration> {
        // The user-wide ceiling slows only addresses that have failed for this user.
        let pair_failing = keys
            .iter()
            .any(|(key, _)| matches!(key, Key::Pair(..)) && counts.get(key, now).count > 0);
        let has_pair = keys.iter().any(|(key, _)| matches!(key, Key::Pair(..)));
        keys.iter()
            .filter(|(key, limit)| {
                *limit > 0 && (!matches!(key, Key::User(_)) || pair_failing || !has_pair)
            })
            .filter_map(|(key, limit)| delay(counts.get(key, now), *limit, now))
            .max()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The tables stay consistent whatever panicked while holding them: every update is one
        // insert or assignment.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The wait a key asks for: none within its free allowance; past it, the first delay doubled
/// for each failure beyond, counted from its last failure and never past its window's end.
fn delay(seen: Seen, limit: u32, now: Instant) -> Option<Duration> {
    let excess = seen.count.checked_sub(limit)?;
    let growing = FIRST_DELAY.saturating_mul(1u32 << excess.min(20));
    let until = (seen.last + growing).min(seen.ends);
    (until > now).then(|| until - now)
}

impl LoginAttempt {
    /// The password was right: this attempt is no failure, and the (user, address) pair
    /// starts afresh. (The address and the user keep their other failures: one good login
    /// must not license more guessing.)
    pub fn succeeded(mut self) {
        let mut state = self.throttle.lock();
        for key in &self.keys {
            match key {
                Key::Pair(..) => state.counts.clear(key),
                _ => state.counts.uncount(key),
            }
        }
        self.settled = true;
    }

    /// The password was wrong: the failure stands.
    pub fn failed(mut self) {
        self.settled = true;
    }

    /// The id was no user's: the attempt still counts against the address, but keeps no
    /// count for the id (else made-up ids would fill the table).
    pub fn unknown_user(mut self) {
        let mut state = self.throttle.lock();
        for key in &self.keys {
            if !matches!(key, Key::Address(_)) {
                state.counts.uncount(key);
            }
        }
        self.settled = true;
    }

    /// The attempt ended without a verdict (503: no database or no free hasher): not a
    /// failure.
    pub fn void(mut self) {
        let mut state = self.throttle.lock();
        for key in &self.keys {
            state.counts.uncount(key);
        }
        self.settled = true;
    }
}

impl Drop for LoginAttempt {
    /// Its check is no longer in flight, however it ended.
    fn drop(&mut self) {
        if !self.settled {
            log::debug!("a login attempt ended unsettled: it counts as a failure");
        }
        let mut state = self.throttle.lock();
        for key in &self.flying {
            if let Some(n) = state.in_flight.get_mut(key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    state.in_flight.remove(key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use uuid::Uuid;

    use super::{Key, LoginThrottle};
    use crate::config::AuthSettings;

    fn throttle(per_pair: u32, per_address: u32, per_user: u32) -> Arc<LoginThrottle> {
        Arc::new(LoginThrottle::new(&AuthSettings {
            token_ttl_secs: 60,
            hash_concurrency: 1,
            hash_queue: 1,
            login_failures_per_user_address: per_pair,
            login_failures_per_address: per_address,
            login_failures_per_user: per_user,
            login_failure_window_secs: 300,
            login_checks_in_flight_per_user: 0,
            login_checks_in_flight_per_address: 0,
            registrations_per_address: 0,
            registration_window_secs: 60,
        }))
    }

    const HOME: Option<IpAddr> = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
    const AWAY: Option<IpAddr> = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)));

    /// Counts `n` failures at `at` for `user` from `address`, as finished attempts would.
    fn fail(throttle: &LoginThrottle, at: Instant, user: Uuid, address: Option<IpAddr>, n: u32) {
        let keys = throttle.keys(user, address);
        let mut state = throttle.lock();
        for _ in 0..n {
            for (key, _) in &keys {
                state.counts.count(*key, at);
            }
        }
    }

    fn wait_at(
        throttle: &LoginThrottle,
        at: Instant,
        user: Uuid,
        address: Option<IpAddr>,
    ) -> Option<Duration> {
        let keys = throttle.keys(user, address);
        throttle.wait_in(&throttle.lock().counts, at, &keys)
    }

    #[test]
    fn one_address_is_slowed_for_one_user_with_growing_delays() {
        let throttle = throttle(5, 0, 0);
        let (user, t0) = (Uuid::new_v4(), Instant::now());
        fail(&throttle, t0, user, HOME, 5);
        assert_eq!(
            wait_at(&throttle, t0, user, HOME),
            Some(Duration::from_secs(1))
        );
        fail(&throttle, t0, user, HOME, 1);
        assert_eq!(
            wait_at(&throttle, t0, user, HOME),
            Some(Duration::from_secs(2))
        );
        fail(&throttle, t0, user, HOME, 3);
        assert_eq!(
            wait_at(&throttle, t0, user, HOME),
            Some(Duration::from_secs(16))
        );
        // The same user from elsewhere, and another user from here, are untouched.
        assert_eq!(wait_at(&throttle, t0, user, AWAY), None);
        assert_eq!(wait_at(&throttle, t0, Uuid::new_v4(), HOME), None);
        // The delay never outlasts the window.
        fail(&throttle, t0, user, HOME, 20);
        assert_eq!(
            wait_at(&throttle, t0 + Duration::from_secs(100), user, HOME),
            Some(Duration::from_secs(200))
        );
        assert_eq!(
            wait_at(&throttle, t0 + Duration::from_secs(300), user, HOME),
            None
        );
    }

    #[test]
    fn the_user_ceiling_never_refuses_an_address_that_has_not_been_failing() {
        let throttle = throttle(5, 0, 20);
        let (user, t0) = (Uuid::new_v4(), Instant::now());
        // Many addresses, a few failures each, reach the user's ceiling.
        for n in 0..10u8 {
            let address = Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, n)));
            fail(&throttle, t0, user, address, 2);
        }
        let failing = Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 3)));
        assert!(wait_at(&throttle, t0, user, failing).is_some());
        assert_eq!(wait_at(&throttle, t0, user, AWAY), None);
    }

    #[test]
    fn an_address_is_slowed_whichever_users_it_tries() {
        let throttle = throttle(0, 2, 0);
        let t0 = Instant::now();
        fail(&throttle, t0, Uuid::new_v4(), HOME, 1);
        fail(&throttle, t0, Uuid::new_v4(), HOME, 1);
        assert!(wait_at(&throttle, t0, Uuid::new_v4(), HOME).is_some());
        assert_eq!(wait_at(&throttle, t0, Uuid::new_v4(), AWAY), None);
    }

    #[test]
    fn attempts_count_when_they_begin_and_a_void_one_is_no_failure() {
        let throttle = throttle(3, 0, 0);
        let user = Uuid::new_v4();
        // Three attempts in flight at once (none finished): the fourth must wait already.
        let attempts: Vec<_> = (0..3)
            .map(|_| throttle.begin(user, HOME).expect("free"))
            .collect();
        assert!(throttle.begin(user, HOME).is_err());
        // All three end in 503s: none was a guess.
        for attempt in attempts {
            attempt.void();
        }
        assert!(throttle.lock().counts.is_empty());
        let attempt = throttle.begin(user, HOME).expect("free again");
        attempt.succeeded();
        let pair = Key::Pair(user, HOME.expect("ip"));
        assert_eq!(throttle.lock().counts.get(&pair, Instant::now()).count, 0);
    }

    #[test]
    fn an_unknown_user_counts_against_the_address_only() {
        let throttle = throttle(5, 5, 5);
        let id = Uuid::new_v4();
        throttle.begin(id, HOME).expect("free").unknown_user();
        let state = throttle.lock();
        let now = Instant::now();
        assert_eq!(state.counts.get(&Key::User(id), now).count, 0);
        assert_eq!(
            state
                .counts
                .get(&Key::Address(HOME.expect("ip")), now)
                .count,
            1
        );
    }

    #[test]
    fn only_a_few_checks_per_user_and_per_address_are_in_flight_at_once() {
        let throttle = Arc::new(LoginThrottle::new(&AuthSettings {
            token_ttl_secs: 60,
            hash_concurrency: 1,
            hash_queue: 1,
            login_failures_per_user_address: 0,
            login_failures_per_address: 0,
            login_failures_per_user: 0,
            login_failure_window_secs: 300,
            login_checks_in_flight_per_user: 2,
            login_checks_in_flight_per_address: 3,
            registrations_per_address: 0,
            registration_window_secs: 60,
        }));
        let (ann, bob) = (Uuid::new_v4(), Uuid::new_v4());
        let first = throttle.begin(ann, HOME).expect("one");
        let _second = throttle.begin(ann, AWAY).expect("two");
        assert_eq!(throttle.begin(ann, None).err(), Some(super::IN_FLIGHT_WAIT));
        let _third = throttle.begin(bob, HOME).expect("bob, third from home");
        assert!(
            throttle.begin(Uuid::new_v4(), HOME).is_err(),
            "home has three in flight"
        );
        first.succeeded();
        assert!(
            throttle.begin(ann, None).is_ok(),
            "a check ended: room again"
        );
    }
}
