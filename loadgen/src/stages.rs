//! herald's own account of where a feed event's time went: its latency histograms
//! (`herald_feed_stage_seconds` by stage, `herald_feed_delivery_seconds`,
//! `herald_feed_first_delivery_seconds`) read from `/metrics` before and after the load, and
//! the difference turned into a count, p50 and p99 per stage, interpolated within buckets the
//! way Prometheus' `histogram_quantile` does. Several instances' histograms (a run against a
//! deployment of several) are summed bucket by bucket, as `sum by (le)` would.

use std::collections::BTreeMap;

use serde::Serialize;

/// Cumulative bucket counts of one histogram series: upper bound (seconds) → count.
type Buckets = BTreeMap<OrderedBound, u64>;

/// A bucket's upper bound, ordered totally (`+Inf` last).
#[derive(Debug, Clone, Copy)]
struct OrderedBound(f64);

impl PartialEq for OrderedBound {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for OrderedBound {}

impl PartialOrd for OrderedBound {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrderedBound {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Every latency series of one scrape, by name (`stage:<label>`, `delivery`, `first_delivery`).
#[derive(Debug, Clone, Default)]
pub struct Scrape(BTreeMap<String, Buckets>);

/// One stage's figures over the load, in milliseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StageFigure {
    pub stage: String,
    pub count: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// The order the stages of a feed event's path come in, with what each one spans.
pub const STAGES: &[(&str, &str)] = &[
    (
        "stage:commit",
        "recorded in the log → committed (as the writer saw it)",
    ),
    ("stage:pickup", "committed → relay read it"),
    ("stage:publish", "relay read → published"),
    ("stage:broker", "published → node consumed"),
    ("stage:registry", "consumed → handed to sessions"),
    ("stage:socket", "handed → written to the WebSocket"),
    (
        "first_delivery",
        "committed → first frame written (per message)",
    ),
    ("delivery", "committed → frame written (every delivery)"),
    ("stage:confirm", "published → broker confirm (off the path)"),
];

/// Reads `/metrics`; `None` if it does not answer.
pub async fn scrape(base_url: &str) -> Option<Scrape> {
    let client = awc::Client::default();
    let mut response = client
        .get(format!("{base_url}/metrics"))
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    let body = response.body().limit(16 << 20).await.ok()?;
    Some(parse(&String::from_utf8_lossy(&body)))
}

/// Every instance's `/metrics`, summed; `None` if one of them does not answer (a sum missing
/// an instance before or after the load would not be a difference of like with like).
pub async fn scrape_all(base_urls: &[String]) -> Option<Scrape> {
    let mut scrapes = Vec::with_capacity(base_urls.len());
    for url in base_urls {
        scrapes.push(scrape(url).await?);
    }
    Some(sum(scrapes))
}

/// Bucket counts added series by series and bound by bound.
fn sum(scrapes: Vec<Scrape>) -> Scrape {
    let mut total: BTreeMap<String, Buckets> = BTreeMap::new();
    for Scrape(series) in scrapes {
        for (key, buckets) in series {
            let into = total.entry(key).or_default();
            for (bound, count) in buckets {
                *into.entry(bound).or_default() += count;
            }
        }
    }
    Scrape(total)
}

/// The latency histograms' buckets in a text exposition.
fn parse(text: &str) -> Scrape {
    let mut series: BTreeMap<String, Buckets> = BTreeMap::new();
    for line in text.lines() {
        let Some((name, labels, value)) = sample(line) else {
            continue;
        };
        let key = match name {
            "herald_feed_stage_seconds_bucket" => match label(labels, "stage") {
                Some(stage) => format!("stage:{stage}"),
                None => continue,
            },
            "herald_feed_delivery_seconds_bucket" => "delivery".to_owned(),
            "herald_feed_first_delivery_seconds_bucket" => "first_delivery".to_owned(),
            _ => continue,
        };
        let Some(le) = label(labels, "le") else {
            continue;
        };
        let bound = if le == "+Inf" {
            f64::INFINITY
        } else {
            match le.parse() {
                Ok(bound) => bound,
                Err(_) => continue,
            }
        };
        series
            .entry(key)
            .or_default()
            .insert(OrderedBound(bound), value as u64);
    }
    Scrape(series)
}

/// `name{labels} value` → its parts.
fn sample(line: &str) -> Option<(&str, &str, f64)> {
    if line.starts_with('#') {
        return None;
    }
    let open = line.find('{')?;
    let close = line.rfind('}')?;
    let value = line
        .get(close + 1..)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((line.get(..open)?, line.get(open + 1..close)?, value))
}

fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    labels.split(',').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key.trim() == name).then(|| value.trim().trim_matches('"'))
    })
}

/// Each stage's figures over what happened between `before` and `after`, in [`STAGES`] order.
pub fn figures(before: &Scrape, after: &Scrape) -> Vec<StageFigure> {
    STAGES
        .iter()
        .filter_map(|(key, _)| {
            let later = after.0.get(*key)?;
            let earlier = before.0.get(*key);
            let delta: Vec<(f64, u64)> = later
                .iter()
                .map(|(bound, count)| {
                    let was = earlier.and_then(|e| e.get(bound)).copied().unwrap_or(0);
                    (bound.0, count.saturating_sub(was))
                })
                .collect();
            let count = delta.last().map_or(0, |(_, count)| *count);
            Some(StageFigure {
                stage: key.trim_start_matches("stage:").to_owned(),
                count,
                p50_ms: quantile(&delta, 0.5).map(|s| s * 1000.0),
                p99_ms: quantile(&delta, 0.99).map(|s| s * 1000.0),
            })
        })
        .collect()
}

/// The `q` quantile of cumulative buckets, linearly interpolated within its bucket (from 0 for
/// the first); a quantile in the `+Inf` bucket is the highest finite bound.
fn quantile(cumulative: &[(f64, u64)], q: f64) -> Option<f64> {
    let total = cumulative.last()?.1;
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut lower = (0.0, 0u64);
    for &(bound, count) in cumulative {
        if count as f64 >= rank {
            if bound.is_infinite() {
                return Some(lower.0);
            }
            let within = count - lower.1;
            if within == 0 {
                return Some(bound);
            }
            let fraction = (rank - lower.1 as f64) / within as f64;
            return Some(lower.0 + (bound - lower.0) * fraction);
        }
        lower = (bound, count);
    }
    Some(lower.0)
}

/// What a stage spans, for reports.
pub fn spans(stage: &str) -> &'static str {
    STAGES
        .iter()
        .find(|(key, _)| key.trim_start_matches("stage:") == stage)
        .map_or("", |(_, spans)| spans)
}

#[cfg(test)]
mod tests {
    use super::{figures, parse, quantile, sum};

    const BEFORE: &str = r#"# HELP herald_feed_stage_seconds Time.
# TYPE herald_feed_stage_seconds histogram
herald_feed_stage_seconds_bucket{stage="broker",le="0.001"} 1
herald_feed_stage_seconds_bucket{stage="broker",le="0.002"} 2
herald_feed_stage_seconds_bucket{stage="broker",le="+Inf"} 2
herald_feed_stage_seconds_sum{stage="broker"} 0.002
herald_feed_stage_seconds_count{stage="broker"} 2
herald_http_requests_total{route="/x",le="1"} 5
"#;

    const AFTER: &str = r#"herald_feed_stage_seconds_bucket{stage="broker",le="0.001"} 1
herald_feed_stage_seconds_bucket{stage="broker",le="0.002"} 52
herald_feed_stage_seconds_bucket{stage="broker",le="+Inf"} 102
herald_feed_delivery_seconds_bucket{le="0.01"} 10
herald_feed_delivery_seconds_bucket{le="+Inf"} 10
"#;

    #[test]
    fn quantiles_interpolate_within_buckets_like_prometheus() {
        let buckets = [(0.001, 0), (0.002, 50), (0.004, 100), (f64::INFINITY, 100)];
        assert_eq!(quantile(&buckets, 0.5), Some(0.002));
        assert!((quantile(&buckets, 0.75).unwrap_or_default() - 0.003).abs() < 1e-12);
        assert_eq!(quantile(&[(0.001, 0), (f64::INFINITY, 0)], 0.5), None);
        // Beyond the last finite bound: that bound.
        assert_eq!(
            quantile(&[(0.001, 1), (f64::INFINITY, 10)], 0.99),
            Some(0.001)
        );
    }

    #[test]
    fn figures_cover_only_what_happened_between_the_scrapes() {
        let (before, after) = (parse(BEFORE), parse(AFTER));
        let stages = figures(&before, &after);
        let broker = stages.iter().find(|s| s.stage == "broker").expect("broker");
        assert_eq!(broker.count, 100);
        // 50 of the 100 new ones fell in (1 ms, 2 ms], the other 50 above the last bound.
        assert!(
            (broker.p50_ms.unwrap_or_default() - 2.0).abs() < 1e-9,
            "{broker:?}"
        );
        assert_eq!(broker.p99_ms, Some(2.0));
        let delivery = stages
            .iter()
            .find(|s| s.stage == "delivery")
            .expect("delivery");
        assert_eq!(delivery.count, 10);
        assert!(stages.iter().all(|s| s.stage != "http"));
    }

    #[test]
    fn instances_are_summed_bucket_by_bucket() {
        let total = sum(vec![parse(BEFORE), parse(AFTER)]);
        let stages = figures(&parse(""), &total);
        let broker = stages.iter().find(|s| s.stage == "broker").expect("broker");
        // 2 + 102 events; 54 of them at or below 2 ms.
        assert_eq!(broker.count, 104);
        let delivery = stages
            .iter()
            .find(|s| s.stage == "delivery")
            .expect("delivery");
        assert_eq!(delivery.count, 10);
        // Against itself as the earlier scrape: nothing happened.
        let none = figures(&total, &total);
        assert!(none.iter().all(|s| s.count == 0 && s.p99_ms.is_none()));
    }
}
