//! Drain and check: who must receive each post (the online followers of its author, from the
//! seeded graph), waiting until they all did or the feed went quiet, and judging every received
//! frame as valid, wrong (not a follower, or not a post of this run) or a duplicate.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use serde::Serialize;

use crate::load::PostRecord;
use crate::seed::Graph;
use crate::sessions::{Delivery, Shared, NOT_OURS};

/// How long the drain lingers after the expected count is reached, so duplicates and strays
/// that trail the last expected frame are still seen.
const GRACE: Duration = Duration::from_millis(300);
const POLL: Duration = Duration::from_millis(50);

/// `counts[author]`: how many online sessions follow `author`.
pub fn online_follower_counts(graph: &Graph, online: &[bool]) -> Vec<u32> {
    let mut counts = vec![0u32; graph.len() as usize];
    for (user, _) in online.iter().enumerate().filter(|(_, &on)| on) {
        for &author in graph.followed_by(user as u32) {
            counts[author as usize] += 1;
        }
    }
    counts
}

/// Deliveries the run must see: every online follower of the author of every successful post.
pub fn expected_deliveries(posts: &[PostRecord], counts: &[u32]) -> u64 {
    posts
        .iter()
        .filter(|post| post.ok)
        .map(|post| u64::from(counts[post.author as usize]))
        .sum()
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DrainEnd {
    AllArrived,
    Quiet,
    Timeout,
}

/// Waits until `expected` frames arrived (plus a short grace), or none arrived for `quiet`
/// (counted from the later of the last frame and `load_finished`), or `timeout` passed.
pub async fn drain(
    shared: &Shared,
    expected: u64,
    load_finished: Instant,
    quiet: Duration,
    timeout: Duration,
    progress: &ProgressBar,
) -> DrainEnd {
    progress.set_length(expected);
    let deadline = Instant::now() + timeout;
    let mut complete_since: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let received = shared.received.load(Ordering::Relaxed);
        progress.set_position(received.min(expected));
        if received >= expected {
            let since = *complete_since.get_or_insert(now);
            if now >= since + GRACE {
                return DrainEnd::AllArrived;
            }
        }
        let last_sign = shared
            .last_frame()
            .map_or(load_finished, |frame| frame.max(load_finished));
        if now.saturating_duration_since(last_sign) >= quiet {
            return DrainEnd::Quiet;
        }
        if now >= deadline {
            return DrainEnd::Timeout;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The judgement of every received frame.
#[derive(Debug, Default)]
pub struct Verdict {
    pub expected: u64,
    /// First receipts of a post by one of its author's followers.
    pub valid: u64,
    pub missing: u64,
    /// Frames for a session whose user does not follow the author, or for no post of this run.
    pub wrong: u64,
    /// Further receipts of a post already received on that session.
    pub duplicates: u64,
    /// Frames for posts whose HTTP request failed (it may have committed all the same).
    pub for_failed_posts: u64,
    /// Post request sent → frame read, for every valid delivery, in ms.
    pub latencies_ms: Vec<f64>,
    /// Per post with at least one valid delivery: the latest of them, in ms.
    pub last_follower_ms: Vec<f64>,
    pub last_valid_delivery: Option<Instant>,
}

/// Judges `deliveries` (sorted here) against the graph and the posts.
pub fn evaluate(
    deliveries: &mut [Delivery],
    graph: &Graph,
    posts: &[PostRecord],
    expected: u64,
) -> Verdict {
    deliveries.sort_unstable_by_key(|d| (d.session, d.seq, d.at));
    let mut verdict = Verdict {
        expected,
        ..Verdict::default()
    };
    let mut last_per_post: Vec<Option<f64>> = vec![None; posts.len()];
    let mut previous: Option<(u32, u32)> = None;
    for delivery in deliveries.iter() {
        let key = (delivery.session, delivery.seq);
        let repeated = previous == Some(key);
        previous = Some(key);
        let Some(post) = posts
            .get(delivery.seq as usize)
            .filter(|_| delivery.seq != NOT_OURS)
        else {
            verdict.wrong += 1;
            continue;
        };
        if !graph.follows(delivery.session, post.author) {
            verdict.wrong += 1;
        } else if repeated {
            verdict.duplicates += 1;
        } else if !post.ok {
            verdict.for_failed_posts += 1;
        } else {
            verdict.valid += 1;
            let latency = delivery
                .at
                .saturating_duration_since(post.sent)
                .as_secs_f64()
                * 1000.0;
            verdict.latencies_ms.push(latency);
            let slot = &mut last_per_post[delivery.seq as usize];
            *slot = Some(slot.map_or(latency, |seen| seen.max(latency)));
            verdict.last_valid_delivery = Some(
                verdict
                    .last_valid_delivery
                    .map_or(delivery.at, |seen| seen.max(delivery.at)),
            );
        }
    }
    verdict.last_follower_ms = last_per_post.into_iter().flatten().collect();
    verdict.missing = expected.saturating_sub(verdict.valid);
    verdict
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use rand::SeedableRng;

    use super::{evaluate, expected_deliveries, online_follower_counts};
    use crate::load::PostRecord;
    use crate::seed::Graph;
    use crate::sessions::{Delivery, NOT_OURS};

    #[test]
    fn frames_are_judged_valid_wrong_duplicate_or_missing() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        // Four users, no random follows; users 0 and 1 follow the celebrity (user 4).
        let graph = Graph::generate(4, 0, 2, &mut rng).expect("graph");
        let star = graph.celebrity.expect("celebrity");
        let online = [true, true, true, false, false];
        let counts = online_follower_counts(&graph, &online);
        assert_eq!(counts[star as usize], 2);
        let t0 = Instant::now();
        let post = |ok| PostRecord {
            author: star,
            sent: t0,
            ok,
        };
        let posts = [post(true), post(true), post(false)];
        let expected = expected_deliveries(&posts, &counts);
        assert_eq!(expected, 4);
        let at = |ms| t0 + Duration::from_millis(ms);
        let frame = |session, seq, ms| Delivery {
            session,
            seq,
            at: at(ms),
        };
        let mut deliveries = vec![
            frame(0, 0, 10),
            frame(1, 0, 30),
            frame(0, 1, 5),
            frame(0, 1, 6),        // duplicate
            frame(2, 0, 7),        // user 2 does not follow the star: wrong
            frame(1, NOT_OURS, 8), // not ours: wrong
            frame(1, 2, 9),        // a failed post's frame
        ];
        let verdict = evaluate(&mut deliveries, &graph, &posts, expected);
        assert_eq!(verdict.valid, 3);
        assert_eq!(verdict.missing, 1); // session 1 never got post 1
        assert_eq!(verdict.wrong, 2);
        assert_eq!(verdict.duplicates, 1);
        assert_eq!(verdict.for_failed_posts, 1);
        let mut last = verdict.last_follower_ms.clone();
        last.sort_by(f64::total_cmp);
        assert_eq!(last, vec![5.0, 30.0]);
        assert_eq!(verdict.last_valid_delivery, Some(at(30)));
    }
}
