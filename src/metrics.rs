//! Prometheus metrics, served at `/metrics` in the text exposition format.
//!
//! Each `Application` has its own registry (tests run several instances in one process, and
//! each reads its own). The realtime counters and latency histograms (`realtime::stats`) and
//! the HTTP middleware (`http::metrics`) register into it at start; readings cheaper to take
//! when scraped than to keep current (sessions, relay lag, the broker link) are set by the
//! `/metrics` route just before it renders. Every name follows Prometheus' conventions: a
//! `herald_` prefix, `_total` on counters, base units (`_seconds`).

use prometheus::core::Collector;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

pub use prometheus::Error as MetricsError;

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Buckets for the feed's latency stages: fine below 5 ms, where the targets are, then coarser
/// up to the seconds a broker outage can take.
pub const STAGE_BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.000_75, 0.001, 0.001_5, 0.002, 0.003, 0.004, 0.005, 0.007_5,
    0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Buckets for HTTP request durations (argon2 makes login and register take tens of ms).
pub const HTTP_BUCKETS: &[f64] = &[
    0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// One instance's registry.
#[derive(Clone, Default)]
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    pub fn new() -> Self {
        Metrics::default()
    }

    /// Every metric registered here, in the text format.
    pub fn render(&self) -> Result<String, MetricsError> {
        let mut text = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut text)?;
        String::from_utf8(text).map_err(|error| MetricsError::Msg(error.to_string()))
    }

    pub fn counter(&self, name: &str, help: &str) -> Result<IntCounter, MetricsError> {
        self.register(IntCounter::new(name, help)?)
    }

    pub fn counter_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntCounterVec, MetricsError> {
        self.register(IntCounterVec::new(Opts::new(name, help), labels)?)
    }

    pub fn gauge(&self, name: &str, help: &str) -> Result<IntGauge, MetricsError> {
        self.register(IntGauge::new(name, help)?)
    }

    pub fn gauge_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntGaugeVec, MetricsError> {
        self.register(IntGaugeVec::new(Opts::new(name, help), labels)?)
    }

    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        buckets: &[f64],
    ) -> Result<Histogram, MetricsError> {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        self.register(Histogram::with_opts(opts)?)
    }

    pub fn histogram_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> Result<HistogramVec, MetricsError> {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        self.register(HistogramVec::new(opts, labels)?)
    }

    fn register<C: Collector + Clone + 'static>(&self, collector: C) -> Result<C, MetricsError> {
        self.registry.register(Box::new(collector.clone()))?;
        Ok(collector)
    }
}

#[cfg(test)]
mod tests {
    use super::Metrics;

    #[test]
    fn renders_what_is_registered_and_refuses_a_name_twice() {
        let metrics = Metrics::new();
        let counter = metrics
            .counter("herald_test_things_total", "Things.")
            .expect("a valid name");
        counter.inc_by(3);
        let text = metrics.render().expect("renders");
        assert!(
            text.contains("# TYPE herald_test_things_total counter"),
            "{text}"
        );
        assert!(text.contains("herald_test_things_total 3"), "{text}");
        assert!(metrics
            .counter("herald_test_things_total", "Again.")
            .is_err());
    }
}
