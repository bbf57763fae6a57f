//! Drain and check: who must receive each post (the online followers of its author, from the
//! seeded graph), waiting until they all did or the feed went quiet, and judging every received
//! frame as valid, wrong (not a follower, or not a post of this run) or a duplicate, and as in
//! order or not: per session herald's `seq` must rise, and per author posts must come in the
//! order they were written.

use std::collections::{HashMap, HashSet};
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
    /// Of `missing`, those owed to sessions that ended before the run was over.
    pub missing_on_dropped: u64,
    /// Frames for a session whose user does not follow the author, or for no post of this run.
    pub wrong: u64,
    /// Further receipts of a post already received on that session.
    pub duplicates: u64,
    /// Frames for posts whose HTTP request failed (it may have committed all the same).
    pub for_failed_posts: u64,
    /// Frames (duplicates aside) that arrived after one that must follow them: by either check
    /// below, each frame counted once.
    pub out_of_order: u64,
    /// Frames whose `seq` is not above every `seq` already received on that session.
    pub out_of_order_by_seq: u64,
    /// Deliveries of a post after a later post of the same author on that session (later: sent
    /// after this one was answered, so herald committed it after this one).
    pub out_of_order_by_author: u64,
    /// Frames that carried herald's `seq`, and frames that did not.
    pub frames_with_seq: u64,
    pub frames_without_seq: u64,
    /// Post request sent → frame read, for every valid delivery, in ms.
    pub latencies_ms: Vec<f64>,
    /// Per post with at least one valid delivery: the latest of them, in ms.
    pub last_follower_ms: Vec<f64>,
    /// Per post with at least one valid delivery: the earliest of them, in ms.
    pub first_follower_ms: Vec<f64>,
    pub last_valid_delivery: Option<Instant>,
}

/// What one session has received so far, for the duplicate and order checks.
#[derive(Default)]
struct SessionState {
    posts: HashSet<u32>,
    highest_seq: Option<u64>,
    /// Per author: the latest `sent` among that author's posts received here so far.
    latest_sent: HashMap<u32, Instant>,
    valid: u64,
}

/// Judges `deliveries` against the graph and the posts. They are sorted here by session, each
/// session's frames in the order they arrived; `dropped` names the sessions that ended early.
pub fn evaluate(
    deliveries: &mut [Delivery],
    graph: &Graph,
    posts: &[PostRecord],
    expected: u64,
    dropped: &[u32],
) -> Verdict {
    deliveries.sort_by_key(|d| (d.session, d.at));
    let mut verdict = Verdict {
        expected,
        ..Verdict::default()
    };
    // Per post: its earliest and latest valid delivery.
    let mut per_post: Vec<Option<(f64, f64)>> = vec![None; posts.len()];
    let mut valid_per_session: HashMap<u32, u64> = HashMap::new();
    for session in deliveries.chunk_by(|a, b| a.session == b.session) {
        let mut state = SessionState::default();
        for delivery in session {
            judge(
                delivery,
                graph,
                posts,
                &mut state,
                &mut verdict,
                &mut per_post,
            );
        }
        if let Some(first) = session.first() {
            valid_per_session.insert(first.session, state.valid);
        }
    }
    verdict.first_follower_ms = per_post.iter().flatten().map(|(first, _)| *first).collect();
    verdict.last_follower_ms = per_post.iter().flatten().map(|(_, last)| *last).collect();
    verdict.missing = expected.saturating_sub(verdict.valid);
    // What each dropped session was owed: the successful posts of the authors it follows.
    let mut ok_posts = vec![0u64; graph.len() as usize];
    for post in posts.iter().filter(|post| post.ok) {
        if let Some(count) = ok_posts.get_mut(post.author as usize) {
            *count += 1;
        }
    }
    let mut counted = HashSet::new();
    for &session in dropped.iter().filter(|&&s| s < graph.len()) {
        if !counted.insert(session) {
            continue;
        }
        let owed: u64 = graph
            .followed_by(session)
            .iter()
            .map(|&author| ok_posts.get(author as usize).copied().unwrap_or(0))
            .sum();
        let got = valid_per_session.get(&session).copied().unwrap_or(0);
        verdict.missing_on_dropped += owed.saturating_sub(got);
    }
    verdict.missing_on_dropped = verdict.missing_on_dropped.min(verdict.missing);
    verdict
}

/// One frame, in its session's order of arrival.
fn judge(
    delivery: &Delivery,
    graph: &Graph,
    posts: &[PostRecord],
    state: &mut SessionState,
    verdict: &mut Verdict,
    per_post: &mut [Option<(f64, f64)>],
) {
    // herald's seq must rise with every frame of the session, whatever the frame.
    let seq_behind = match delivery.feed_seq {
        Some(seq) => {
            verdict.frames_with_seq += 1;
            let behind = state.highest_seq.is_some_and(|highest| seq <= highest);
            state.highest_seq = Some(state.highest_seq.map_or(seq, |h| h.max(seq)));
            behind
        }
        None => {
            verdict.frames_without_seq += 1;
            false
        }
    };
    let post = posts
        .get(delivery.seq as usize)
        .filter(|_| delivery.seq != NOT_OURS)
        .filter(|post| graph.follows(delivery.session, post.author));
    let Some(post) = post else {
        verdict.wrong += 1;
        if seq_behind {
            verdict.out_of_order += 1;
            verdict.out_of_order_by_seq += 1;
        }
        return;
    };
    if !state.posts.insert(delivery.seq) {
        verdict.duplicates += 1;
        return;
    }
    let mut author_behind = false;
    if post.ok {
        // A later post of this author (sent after this one was answered) already came.
        let latest = state.latest_sent.entry(post.author).or_insert(post.sent);
        author_behind = *latest > post.answered;
        *latest = (*latest).max(post.sent);
    }
    if seq_behind || author_behind {
        verdict.out_of_order += 1;
        verdict.out_of_order_by_seq += u64::from(seq_behind);
        verdict.out_of_order_by_author += u64::from(author_behind);
    }
    if !post.ok {
        verdict.for_failed_posts += 1;
        return;
    }
    verdict.valid += 1;
    state.valid += 1;
    let latency = delivery
        .at
        .saturating_duration_since(post.sent)
        .as_secs_f64()
        * 1000.0;
    verdict.latencies_ms.push(latency);
    let slot = &mut per_post[delivery.seq as usize];
    *slot = Some(slot.map_or((latency, latency), |(first, last)| {
        (first.min(latency), last.max(latency))
    }));
    verdict.last_valid_delivery = Some(
        verdict
            .last_valid_delivery
            .map_or(delivery.at, |seen| seen.max(delivery.at)),
    );
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use rand::SeedableRng;

    use super::{evaluate, expected_deliveries, online_follower_counts};
    use crate::load::PostRecord;
    use crate::seed::Graph;
    use crate::sessions::{Delivery, NOT_OURS};

    /// Four users, no random follows; users 0 and 1 follow the celebrity (user 4).
    fn star_graph() -> (Graph, u32) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let graph = Graph::generate(4, 0, 2, &mut rng).expect("graph");
        let star = graph.celebrity.expect("celebrity");
        (graph, star)
    }

    fn frame(t0: Instant, session: u32, seq: u32, feed_seq: Option<u64>, ms: u64) -> Delivery {
        Delivery {
            session,
            seq,
            feed_seq,
            at: t0 + Duration::from_millis(ms),
        }
    }

    #[test]
    fn frames_are_judged_valid_wrong_duplicate_or_missing() {
        let (graph, star) = star_graph();
        let online = [true, true, true, false, false];
        let counts = online_follower_counts(&graph, &online);
        assert_eq!(counts[star as usize], 2);
        let t0 = Instant::now();
        let post = |ok| PostRecord {
            author: star,
            sent: t0,
            answered: t0,
            ok,
        };
        let posts = [post(true), post(true), post(false)];
        let expected = expected_deliveries(&posts, &counts);
        assert_eq!(expected, 4);
        let at = |ms| t0 + Duration::from_millis(ms);
        let frame = |session, seq, ms| frame(t0, session, seq, None, ms);
        let mut deliveries = vec![
            frame(0, 0, 10),
            frame(1, 0, 30),
            frame(0, 1, 5),
            frame(0, 1, 6),        // duplicate
            frame(2, 0, 7),        // user 2 does not follow the star: wrong
            frame(1, NOT_OURS, 8), // not ours: wrong
            frame(1, 2, 9),        // a failed post's frame
        ];
        let verdict = evaluate(&mut deliveries, &graph, &posts, expected, &[]);
        assert_eq!(verdict.valid, 3);
        assert_eq!(verdict.missing, 1); // session 1 never got post 1
        assert_eq!(verdict.missing_on_dropped, 0);
        assert_eq!(verdict.wrong, 2);
        assert_eq!(verdict.duplicates, 1);
        assert_eq!(verdict.for_failed_posts, 1);
        // Posts sent at once, none answered before another was sent: no order to keep.
        assert_eq!(verdict.out_of_order, 0);
        assert_eq!(
            (verdict.frames_with_seq, verdict.frames_without_seq),
            (0, 7)
        );
        let mut last = verdict.last_follower_ms.clone();
        last.sort_by(f64::total_cmp);
        assert_eq!(last, vec![5.0, 30.0]);
        let mut first = verdict.first_follower_ms.clone();
        first.sort_by(f64::total_cmp);
        assert_eq!(first, vec![5.0, 10.0]);
        assert_eq!(verdict.last_valid_delivery, Some(at(30)));
    }

    #[test]
    fn herald_seq_must_rise_on_every_session() {
        let (graph, star) = star_graph();
        let t0 = Instant::now();
        // Five posts in flight together: only the seq orders them.
        let posts = vec![
            PostRecord {
                author: star,
                sent: t0,
                answered: t0 + Duration::from_secs(1),
                ok: true,
            };
            5
        ];
        let frame = |session, post, seq: u64, ms| frame(t0, session, post, Some(seq), ms);
        let mut deliveries = vec![
            // Session 0: a gap filled after later live events: 12, 13 arrive behind 20.
            frame(0, 0, 10, 1),
            frame(0, 1, 20, 2),
            frame(0, 2, 12, 3),
            frame(0, 3, 13, 4),
            frame(0, 4, 21, 5),
            // Session 1: post 0 again under the same seq (a duplicate, not also out of order),
            // then under a new one; then a new post reusing a seq already seen (out of order).
            frame(1, 0, 7, 1),
            frame(1, 0, 7, 2),
            frame(1, 0, 9, 3),
            frame(1, 1, 8, 4),
            frame(1, 2, 9, 5),
            frame(1, 3, 10, 6),
        ];
        // The log is read per session in order of arrival, however the threads' logs interleave.
        deliveries.reverse();
        let expected = 9;
        let verdict = evaluate(&mut deliveries, &graph, &posts, expected, &[]);
        assert_eq!(verdict.duplicates, 2);
        assert_eq!(verdict.valid, 9);
        assert_eq!(verdict.missing, 0);
        assert_eq!(verdict.out_of_order_by_seq, 4); // 12, 13; then 8 and the second 9
        assert_eq!(verdict.out_of_order_by_author, 0);
        assert_eq!(verdict.out_of_order, 4);
        assert_eq!(
            (verdict.frames_with_seq, verdict.frames_without_seq),
            (11, 0)
        );
    }

    #[test]
    fn an_authors_posts_arrive_in_the_order_they_were_written() {
        let (graph, star) = star_graph();
        let t0 = Instant::now();
        let ms = |ms| t0 + Duration::from_millis(ms);
        let post = |sent, answered| PostRecord {
            author: star,
            sent: ms(sent),
            answered: ms(answered),
            ok: true,
        };
        // Post 1 was sent after post 0 was answered: it must follow it. Post 2 overlapped post
        // 1 in flight: either order is right between them.
        let posts = [post(0, 10), post(20, 30), post(25, 35)];
        let frame = |session, post, at| frame(t0, session, post, None, at);
        let mut deliveries = vec![
            frame(0, 1, 40),
            frame(0, 0, 41), // behind post 1
            frame(0, 2, 42),
            frame(1, 0, 40),
            frame(1, 2, 41),
            frame(1, 1, 42), // behind post 2, but they overlapped: in order
        ];
        let verdict = evaluate(&mut deliveries, &graph, &posts, 6, &[]);
        assert_eq!(verdict.valid, 6);
        assert_eq!(verdict.out_of_order_by_author, 1);
        assert_eq!(verdict.out_of_order_by_seq, 0);
        assert_eq!(verdict.out_of_order, 1);
    }

    #[test]
    fn losses_on_sessions_that_ended_are_told_apart() {
        let (graph, star) = star_graph();
        let t0 = Instant::now();
        let posts = vec![
            PostRecord {
                author: star,
                sent: t0,
                answered: t0,
                ok: true,
            };
            3
        ];
        // Session 0 was closed after the first post; session 1 stayed but lost the third.
        let frame = |session, post, at| frame(t0, session, post, None, at);
        let mut deliveries = vec![frame(0, 0, 1), frame(1, 0, 1), frame(1, 1, 2)];
        let verdict = evaluate(&mut deliveries, &graph, &posts, 6, &[0, 0, 3]);
        assert_eq!(verdict.valid, 3);
        assert_eq!(verdict.missing, 3);
        // Counted once however often it is named; user 3 follows nobody.
        assert_eq!(verdict.missing_on_dropped, 2);
    }
}
