//! `WindowCounts<K>`: how many times each key was counted within a fixed window that starts at
//! its first count, in a table of bounded size. The building block of the login throttle and
//! the per-address limits.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Most keys tracked at once; past it, expired windows are dropped, then the oldest tenth,
/// rather than memory growing without bound.
const MAX_TRACKED: usize = 100_000;

#[derive(Clone, Copy)]
struct Window {
    started: Instant,
    last: Instant,
    count: u32,
}

/// What is known of a key in its current window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    /// Counts in the window (0 once it has ended).
    pub count: u32,
    /// When it was last counted (now, if never in this window).
    pub last: Instant,
    /// When the window ends.
    pub ends: Instant,
}

pub struct WindowCounts<K> {
    window: Duration,
    capacity: usize,
    windows: HashMap<K, Window>,
}

impl<K: Hash + Eq + Copy> WindowCounts<K> {
    pub fn new(window: Duration) -> Self {
        Self::with_capacity(window, MAX_TRACKED)
    }

    pub fn with_capacity(window: Duration, capacity: usize) -> Self {
        WindowCounts {
            window,
            capacity: capacity.max(10),
            windows: HashMap::new(),
        }
    }

    /// The key's count in its current window (0 once the window has ended), when it was last
    /// counted, and when that window ends.
    pub fn get(&self, key: &K, now: Instant) -> Seen {
        match self.windows.get(key) {
            Some(w) if w.started + self.window > now => Seen {
                count: w.count,
                last: w.last,
                ends: w.started + self.window,
            },
            _ => Seen {
                count: 0,
                last: now,
                ends: now + self.window,
            },
        }
    }

    /// Counts the key once more, opening a new window if its last one has ended; returns the
    /// new count.
    pub fn count(&mut self, key: K, now: Instant) -> u32 {
        if !self.windows.contains_key(&key) && self.windows.len() >= self.capacity {
            self.make_room(now);
        }
        let fresh = Window {
            started: now,
            last: now,
            count: 0,
        };
        let window = self.windows.entry(key).or_insert(fresh);
        if window.started + self.window <= now {
            *window = fresh;
        }
        window.count = window.count.saturating_add(1);
        window.last = now;
        window.count
    }

    /// Takes one count back (an attempt that turned out not to count).
    pub fn uncount(&mut self, key: &K) {
        if let Some(window) = self.windows.get_mut(key) {
            window.count = window.count.saturating_sub(1);
            if window.count == 0 {
                self.windows.remove(key);
            }
        }
    }

    /// Forgets the key.
    pub fn clear(&mut self, key: &K) {
        self.windows.remove(key);
    }

    pub fn len(&self) -> usize {
        self.windows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// The table is full: drop expired windows, and if that is not enough, the oldest tenth,
    /// so new keys are still counted (an old window dropped early only forgives a little).
    fn make_room(&mut self, now: Instant) {
        let window = self.window;
        self.windows.retain(|_, w| w.started + window > now);
        if self.windows.len() >= self.capacity {
            let mut starts: Vec<Instant> = self.windows.values().map(|w| w.started).collect();
            starts.sort_unstable();
            if let Some(cutoff) = starts.get(self.capacity / 10).copied() {
                self.windows.retain(|_, w| w.started > cutoff);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::WindowCounts;

    #[test]
    fn counts_within_a_window_and_starts_afresh_after_it() {
        let mut counts = WindowCounts::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert_eq!(counts.count(1, t0), 1);
        assert_eq!(counts.count(1, t0 + Duration::from_secs(59)), 2);
        assert_eq!(counts.get(&1, t0).count, 2);
        assert_eq!(counts.get(&1, t0 + Duration::from_secs(60)).count, 0);
        assert_eq!(counts.count(1, t0 + Duration::from_secs(60)), 1);
        counts.uncount(&1);
        assert_eq!(counts.get(&1, t0 + Duration::from_secs(61)).count, 0);
        assert!(counts.is_empty());
    }

    #[test]
    fn the_table_stays_bounded_under_a_flood_of_keys() {
        let mut counts = WindowCounts::with_capacity(Duration::from_secs(60), 1_000);
        let t0 = Instant::now();
        for key in 0..50_000u32 {
            counts.count(key, t0 + Duration::from_millis(u64::from(key)));
        }
        assert!(counts.len() <= 1_000, "{}", counts.len());
        // The newest keys are still counted.
        assert_eq!(counts.get(&49_999, t0 + Duration::from_secs(50)).count, 1);
    }
}
