//! `AddressLimiter`: at most `limit` requests of one kind (registrations, searches) per client
//! network in each window; the next one is refused with the wait until its window ends (429
//! with `Retry-After`). Checked before any work is done, so a refusal costs a map lookup.

use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::network_of;
use super::window_counts::WindowCounts;

pub struct AddressLimiter {
    limit: u32,
    counts: Mutex<WindowCounts<IpAddr>>,
}

impl AddressLimiter {
    /// `limit` requests per `window` per address; 0 turns the limit off.
    pub fn new(limit: u32, window: Duration) -> Self {
        AddressLimiter {
            limit,
            counts: Mutex::new(WindowCounts::new(window)),
        }
    }

    /// Counts a request from `address`: `Err(wait)` if the address has used up its window.
    /// A request from no known address (a Unix socket, a test harness) is not limited.
    pub fn admit(&self, address: Option<IpAddr>) -> Result<(), Duration> {
        self.admit_at(Instant::now(), address)
    }

    fn admit_at(&self, now: Instant, address: Option<IpAddr>) -> Result<(), Duration> {
        let Some(address) = address.filter(|_| self.limit > 0) else {
            return Ok(());
        };
        let key = network_of(address);
        // Every update is one insert or assignment: the table is consistent whatever panicked.
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let seen = counts.get(&key, now);
        if seen.count >= self.limit {
            return Err(seen.ends.saturating_duration_since(now));
        }
        counts.count(key, now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::time::{Duration, Instant};

    use super::AddressLimiter;

    #[test]
    fn an_address_gets_its_limit_per_window_and_others_are_untouched() {
        let limiter = AddressLimiter::new(2, Duration::from_secs(60));
        let home: IpAddr = "192.0.2.1".parse().expect("ip");
        let away: IpAddr = "192.0.2.2".parse().expect("ip");
        let t0 = Instant::now();
        assert!(limiter.admit_at(t0, Some(home)).is_ok());
        assert!(limiter.admit_at(t0, Some(home)).is_ok());
        let wait = limiter.admit_at(t0 + Duration::from_secs(15), Some(home));
        assert_eq!(wait, Err(Duration::from_secs(45)));
        assert!(limiter.admit_at(t0, Some(away)).is_ok());
        assert!(limiter
            .admit_at(t0 + Duration::from_secs(60), Some(home))
            .is_ok());
        assert!(limiter.admit_at(t0, None).is_ok());
    }

    #[test]
    fn zero_turns_the_limit_off() {
        let limiter = AddressLimiter::new(0, Duration::from_secs(60));
        let home: IpAddr = "192.0.2.1".parse().expect("ip");
        for _ in 0..100 {
            assert!(limiter.admit(Some(home)).is_ok());
        }
    }
}
