//! `InOrder`: what keeps one session's frames in strictly increasing position, each once.
//!
//! Live events arrive in position order (one relay publishes in order, and a queue keeps it),
//! but a routing change (a new follow, a switch to celebrity, a rebuilt broker link, a resume)
//! opens a gap only the log can fill. While such a fill is under way the session *holds* its
//! live events; when the fill comes back both are merged by position, and anything at or below
//! the last position written is dropped as already sent.
//!
//! A step far larger than any traffic makes (`store::epochs::SUSPICIOUS_JUMP`) means the log
//! may have started a new epoch after a failover, and the session's position may belong to a
//! history the database no longer has: the gate then holds everything from that frame on and
//! asks the session to check its position against the log (a fill, which answers `feed.reset`
//! for a lost position) before writing any of it.

use crate::realtime::events::Frame;
use crate::store::epochs::SUSPICIOUS_JUMP;

/// What a step let through: frames to write now, in order, and how many were dropped as
/// duplicates.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Released {
    pub frames: Vec<Frame>,
    pub duplicates: usize,
    /// The session must fill its gap after this position (its last one) before anything more
    /// is written: a frame jumped as only a new epoch makes positions jump. The gate holds
    /// meanwhile, as for any fill, until [`InOrder::filled`]: a session that ignored this
    /// would hold its events for good.
    pub check_after: Option<i64>,
}

#[derive(Debug)]
pub struct InOrder {
    /// The last position written to the client.
    last: i64,
    /// Fills under way.
    holds: u32,
    held: Vec<Frame>,
    /// Past this many held frames the session gives up on order and asks for a reset.
    held_max: usize,
    overflowed: bool,
    /// The highest position seen, written or not.
    newest: i64,
    /// Jumps to positions up to here have been checked against the log already.
    checked_through: i64,
}

impl InOrder {
    /// A session whose client has everything up to `last`.
    pub fn new(last: i64, held_max: usize) -> Self {
        InOrder {
            last,
            holds: 0,
            held: Vec::new(),
            held_max,
            overflowed: false,
            newest: last,
            checked_through: last,
        }
    }

    pub fn last(&self) -> i64 {
        self.last
    }

    /// The highest position seen so far (the place to reset a client to).
    pub fn newest(&self) -> i64 {
        self.newest
    }

    /// A fill is starting: hold live events until [`filled`](Self::filled) is called for it.
    pub fn hold(&mut self) {
        self.holds += 1;
    }

    /// A live event.
    pub fn live(&mut self, frame: Frame) -> Released {
        self.newest = self.newest.max(frame.0);
        if self.holds > 0 {
            if self.held.len() >= self.held_max {
                self.overflowed = true;
            } else {
                self.held.push(frame);
            }
            return Released::default();
        }
        self.release(vec![frame])
    }

    /// One fill has come back with `frames` (in any order). Returns what can be written once
    /// no fill is under way any more; `None` when the held events overflowed meanwhile, so
    /// order cannot be promised (the session then resets its client).
    pub fn filled(&mut self, frames: Vec<Frame>) -> Option<Released> {
        self.holds = self.holds.saturating_sub(1);
        if let Some(top) = frames.iter().map(|(seq, _)| *seq).max() {
            self.newest = self.newest.max(top);
        }
        if self.held.len() + frames.len() > self.held_max {
            self.overflowed = true;
        } else {
            self.held.extend(frames);
        }
        if self.holds > 0 {
            return Some(Released::default());
        }
        let held = std::mem::take(&mut self.held);
        if std::mem::take(&mut self.overflowed) {
            return None;
        }
        Some(self.release(held))
    }

    /// The client is told to reload and continue from `seq`: nothing at or below it is sent
    /// any more.
    pub fn reset_to(&mut self, seq: i64) {
        self.last = self.last.max(seq);
    }

    fn release(&mut self, mut frames: Vec<Frame>) -> Released {
        frames.sort_by_key(|(seq, _)| *seq);
        let mut released = Released::default();
        let mut frames = frames.into_iter();
        while let Some(frame) = frames.next() {
            if frame.0 <= self.last {
                released.duplicates += 1;
            } else if frame.0 > self.checked_through && frame.0 - self.last >= SUSPICIOUS_JUMP {
                // Held until the check (a fill from `last`) comes back; jumps up to this frame
                // are covered by it.
                self.checked_through = frame.0;
                self.holds += 1;
                self.held.push(frame);
                self.held.extend(frames);
                released.check_after = Some(self.last);
                return released;
            } else {
                self.last = frame.0;
                released.frames.push(frame);
            }
        }
        released
    }
}

#[cfg(test)]
mod tests {
    use super::{InOrder, Released};
    use crate::realtime::events::Frame;

    fn frame(seq: i64) -> Frame {
        (seq, seq.to_string().into())
    }

    fn seqs(released: &Released) -> Vec<i64> {
        released.frames.iter().map(|(seq, _)| *seq).collect()
    }

    #[test]
    fn live_events_pass_in_order_and_repeats_are_dropped() {
        let mut gate = InOrder::new(10, 100);
        assert_eq!(seqs(&gate.live(frame(11))), [11]);
        let again = gate.live(frame(11));
        assert_eq!((seqs(&again), again.duplicates), (vec![], 1));
        assert_eq!(gate.live(frame(9)).duplicates, 1);
        assert_eq!(seqs(&gate.live(frame(15))), [15]);
        assert_eq!(gate.last(), 15);
    }

    #[test]
    fn a_fill_and_the_events_held_meanwhile_merge_by_position() {
        let mut gate = InOrder::new(10, 100);
        gate.hold();
        assert!(gate.live(frame(14)).frames.is_empty());
        assert!(gate.live(frame(16)).frames.is_empty());
        let released = gate
            .filled(vec![frame(12), frame(14), frame(11), frame(9)])
            .expect("no overflow");
        assert_eq!(seqs(&released), [11, 12, 14, 16]);
        assert_eq!(released.duplicates, 2); // 14 twice, 9 already sent
        assert_eq!(seqs(&gate.live(frame(17))), [17], "no longer holding");
    }

    #[test]
    fn overlapping_fills_release_only_when_the_last_returns() {
        let mut gate = InOrder::new(0, 100);
        gate.hold();
        gate.hold();
        gate.live(frame(5));
        let first = gate.filled(vec![frame(3)]).expect("no overflow");
        assert!(first.frames.is_empty());
        let second = gate.filled(vec![frame(4), frame(1)]).expect("no overflow");
        assert_eq!(seqs(&second), [1, 3, 4, 5]);
    }

    #[test]
    fn a_jump_like_a_new_epochs_is_held_until_the_position_is_checked() {
        let jump = crate::store::epochs::EPOCH_GAP;
        let mut gate = InOrder::new(20, 100);
        assert_eq!(seqs(&gate.live(frame(21))), [21]);
        let held = gate.live(frame(21 + jump));
        assert!(held.frames.is_empty());
        assert_eq!(held.check_after, Some(21));
        assert!(
            gate.live(frame(22 + jump)).frames.is_empty(),
            "held behind the check"
        );
        // The check finds the position in the new history: what was held goes out.
        let released = gate.filled(vec![frame(21 + jump)]).expect("no overflow");
        assert_eq!(seqs(&released), [21 + jump, 22 + jump]);
        assert_eq!(released.check_after, None);
        assert_eq!(seqs(&gate.live(frame(23 + jump))), [23 + jump]);
        // A check that ends in a reset: nothing at or below the reset's position follows it.
        let mut gate = InOrder::new(5, 100);
        assert_eq!(gate.live(frame(6 + jump)).check_after, Some(5));
        gate.reset_to(7 + jump);
        let released = gate.filled(vec![]).expect("no overflow");
        assert!(released.frames.is_empty());
        assert_eq!(seqs(&gate.live(frame(8 + jump))), [8 + jump]);
    }

    #[test]
    fn too_much_held_asks_for_a_reset_and_the_reset_moves_the_position() {
        let mut gate = InOrder::new(0, 2);
        gate.hold();
        for seq in 1..=3 {
            gate.live(frame(seq));
        }
        assert_eq!(gate.filled(vec![]), None);
        assert_eq!(gate.newest(), 3);
        gate.reset_to(3);
        assert_eq!(gate.live(frame(3)).duplicates, 1);
        assert_eq!(seqs(&gate.live(frame(4))), [4]);
    }
}
