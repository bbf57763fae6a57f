//! Percentile math: nearest-rank percentiles over sorted samples, and the summary every report
//! prints (count, p50, p90, p99, max).

use serde::Serialize;

/// Nearest-rank percentile of ascending `sorted` samples (`p` in 0..=100); `None` when empty.
/// Nearest rank always returns an observed value, so "p99 ≤ 20 ms" means a real delivery.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Latency summary in milliseconds; the percentiles are `None` without samples.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    pub count: usize,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

impl Summary {
    /// Sorts `samples` in place and summarizes them.
    pub fn of(samples: &mut [f64]) -> Self {
        samples.sort_by(f64::total_cmp);
        Summary {
            count: samples.len(),
            p50: percentile(samples, 50.0),
            p90: percentile(samples, 90.0),
            p99: percentile(samples, 99.0),
            max: samples.last().copied(),
        }
    }
}

/// A rate that is `None` when the interval is empty, rather than infinite.
pub fn per_second(count: u64, seconds: f64) -> Option<f64> {
    (seconds > 0.0).then(|| count as f64 / seconds)
}

#[cfg(test)]
mod tests {
    use super::{per_second, percentile, Summary};

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&samples, 50.0), Some(50.0));
        assert_eq!(percentile(&samples, 99.0), Some(99.0));
        assert_eq!(percentile(&samples, 100.0), Some(100.0));
        assert_eq!(percentile(&samples, 0.0), Some(1.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
        // Ten samples: p90 is the 9th, p99 rounds up to the 10th.
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&ten, 90.0), Some(9.0));
        assert_eq!(percentile(&ten, 99.0), Some(10.0));
    }

    #[test]
    fn summaries_sort_their_samples_and_survive_emptiness() {
        let mut samples = vec![5.0, 1.0, 3.0, 2.0, 4.0];
        let summary = Summary::of(&mut samples);
        assert_eq!(samples, vec![1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(summary.count, 5);
        assert_eq!(summary.p50, Some(3.0));
        assert_eq!(summary.max, Some(5.0));
        let empty = Summary::of(&mut []);
        assert_eq!(empty.count, 0);
        assert_eq!(empty.p99, None);
        assert_eq!(per_second(10, 2.0), Some(5.0));
        assert_eq!(per_second(10, 0.0), None);
    }
}
