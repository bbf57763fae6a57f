//! Reports: the figures of a run or a baseline, written as `<label>.json` (everything, plus the
//! parameters and the exact command line) and `<label>.md` (a measure | value table), and the
//! "n/a" convention for readings that could not be had.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::faults::FaultFigures;
use crate::probes::RealtimeCounters;
use crate::stats::Summary;

/// What every latency in a run report measures.
pub const LATENCY_NOTE: &str = "latency = POST /post/create sent -> frame read by the client; \
     it includes the HTTP request and the commit, so it upper-bounds commit -> frame received";

#[derive(Serialize)]
pub struct Report<F> {
    pub label: String,
    pub kind: &'static str,
    pub command: String,
    pub started_at: String,
    pub note: &'static str,
    pub params: serde_json::Value,
    pub passed: bool,
    pub failures: Vec<String>,
    /// Why the run stopped before its end, when it did: the figures are those measured so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aborted: Option<String>,
    pub figures: F,
}

/// How a run that got to its end came out: every reason it failed (none: it passed), and where
/// its report is.
pub struct Finished {
    pub failures: Vec<String>,
    pub report: PathBuf,
}

/// Figures that know how to show themselves as table rows.
pub trait Rows {
    fn rows(&self) -> Vec<(String, String)>;
}

#[derive(Serialize, Default)]
pub struct RunFigures {
    pub seed: SeedFigures,
    pub connect: ConnectFigures,
    pub posts: PostFigures,
    pub deliveries: DeliveryFigures,
    pub latency_ms: Option<Summary>,
    pub last_follower_ms: Option<Summary>,
    pub first_follower_ms: Option<Summary>,
    /// POST sent → its answer read, for the posts that succeeded.
    pub post_answer_ms: Option<Summary>,
    /// herald's own latency stages over the load (from its `/metrics`).
    pub stages: Vec<crate::stages::StageFigure>,
    pub client: ClientFigures,
    /// Where the cores went over the steady phase (first post sent → last answered).
    pub cores: Option<crate::cores::CoreFigures>,
    pub herald: HeraldFigures,
    pub broker: BrokerFigures,
    pub realtime: RealtimeFigures,
    /// Client threads that died during the run (their sessions' frames are lost).
    pub client_failures: Vec<String>,
    /// The `--at` fault commands, in the order they ran.
    pub faults: Vec<FaultFigures>,
}

#[derive(Serialize, Default)]
pub struct SeedFigures {
    pub users: u64,
    pub follow_edges: u64,
    pub tokens: u64,
    pub celebrities_marked: u64,
    pub seconds: f64,
}

#[derive(Serialize, Default)]
pub struct ConnectFigures {
    pub attempted: u64,
    pub connected: u64,
    pub failed: u64,
    pub source_addresses: u64,
    /// First attempt → last success.
    pub seconds: f64,
    pub per_sec: Option<f64>,
    /// Sessions that ended (closed by the server, or failed) before the run was over.
    pub dropped: u64,
    /// Why they ended (the close code and reason herald sent, or the error), with counts.
    pub dropped_reasons: BTreeMap<String, u64>,
    /// Of `dropped`, the sessions herald closed with a close frame.
    pub closed_by_server: u64,
    /// Their close codes, with counts ("none": a close frame without a code).
    pub close_codes: BTreeMap<String, u64>,
    pub errors: Vec<String>,
}

#[derive(Serialize, Default)]
pub struct PostFigures {
    pub attempted: u64,
    pub ok: u64,
    pub failed: u64,
    pub seconds: f64,
    pub per_sec: Option<f64>,
    pub errors: Vec<String>,
}

#[derive(Serialize, Default)]
pub struct DeliveryFigures {
    pub expected: u64,
    pub valid: u64,
    pub missing: u64,
    pub wrong: u64,
    pub duplicates: u64,
    pub for_failed_posts: u64,
    /// Of `missing`, those owed to sessions that ended before the run was over.
    pub missing_on_dropped_sessions: u64,
    /// Deliveries (duplicates aside) that arrived after one that must follow them, each once.
    pub out_of_order: u64,
    /// Frames whose `seq` was not above every `seq` already received on their session.
    pub out_of_order_by_seq: u64,
    /// Deliveries of a post after a later post of its author (sent after it was answered).
    pub out_of_order_by_author: u64,
    /// Frames that carried herald's `seq`, and frames that did not.
    pub frames_with_seq: u64,
    pub frames_without_seq: u64,
    /// Valid deliveries / (first post sent → last valid delivery).
    pub per_sec: Option<f64>,
    pub drain_end: Option<crate::check::DrainEnd>,
    pub drain_seconds: f64,
}

#[derive(Serialize, Default)]
pub struct HeraldFigures {
    /// Every instance's; the figures below are their sums.
    pub pids: Vec<u32>,
    pub rss_before_kib: Option<u64>,
    pub rss_after_kib: Option<u64>,
    pub rss_per_session_kib: Option<f64>,
    /// herald's CPU time spent while the sessions connected, per session.
    pub connect_cpu_ms_per_session: Option<f64>,
}

/// The load generator's own cost, so a report shows when the client, not herald, is the floor.
#[derive(Serialize, Default)]
pub struct ClientFigures {
    /// Threads reading the WebSockets.
    pub threads: usize,
    /// CPU this process used from the first post to the end of the drain.
    pub cpu_ms: Option<f64>,
    /// That, as a share of one core over the same wall time.
    pub cpu_share_of_one_core: Option<f64>,
}

#[derive(Serialize, Default)]
pub struct BrokerFigures {
    pub memory_before_bytes: Option<u64>,
    pub memory_after_bytes: Option<u64>,
    pub memory_per_session_bytes: Option<f64>,
}

#[derive(Serialize, Default)]
pub struct RealtimeFigures {
    pub before: Option<RealtimeCounters>,
    pub after: Option<RealtimeCounters>,
    pub published: Option<u64>,
    pub consumed: Option<u64>,
    pub delivered: Option<u64>,
    /// Broker messages published per successful post (AMQP fan-out factor).
    pub messages_per_post: Option<f64>,
}

/// Reasons with their counts, most frequent first: "closed by herald: 1013 (…) × 3; …".
pub fn counted(reasons: &BTreeMap<String, u64>) -> String {
    let mut sorted: Vec<_> = reasons.iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    sorted
        .iter()
        .map(|(why, count)| format!("{why} × {count}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A value, or "n/a" when it could not be had.
pub fn or_na<T: Display>(value: Option<T>) -> String {
    value.map_or_else(|| "n/a".to_owned(), |v| v.to_string())
}

/// A float with `decimals` decimals and a unit, or "n/a".
pub fn num(value: Option<f64>, decimals: usize, unit: &str) -> String {
    value.map_or_else(
        || "n/a".to_owned(),
        |v| format!("{v:.decimals$}{unit}").trim_end().to_owned(),
    )
}

fn summary_row(name: &str, summary: &Option<Summary>) -> (String, String) {
    let value = match summary {
        Some(s) if s.count > 0 => format!(
            "p50 {} · p90 {} · p99 {} · max {} (n={})",
            num(s.p50, 1, " ms"),
            num(s.p90, 1, " ms"),
            num(s.p99, 1, " ms"),
            num(s.max, 1, " ms"),
            s.count
        ),
        _ => "n/a".to_owned(),
    };
    (name.to_owned(), value)
}

/// One fault command: what it was, when it ran, how it ended.
fn fault_row(fault: &FaultFigures) -> String {
    let ran = match (fault.started_secs, fault.seconds) {
        (Some(started), Some(seconds)) => format!("ran at {started:.2} s for {seconds:.2} s"),
        _ => "did not run".to_owned(),
    };
    let outcome = match &fault.error {
        None => "ok".to_owned(),
        Some(error) if fault.output.is_empty() => format!("FAILED: {error}"),
        Some(error) => format!("FAILED: {error}: {}", fault.output),
    };
    format!("`{}`: {ran}, {outcome}", fault.command.replace('`', "'"))
        .replace('|', "/")
        .replace('\n', " ")
}

impl Rows for RunFigures {
    fn rows(&self) -> Vec<(String, String)> {
        let (c, p, d) = (&self.connect, &self.posts, &self.deliveries);
        let mut rows = vec![
            (
                "seeded".into(),
                format!(
                    "{} users, {} follows, {} tokens, {} celebrities in {:.1} s",
                    self.seed.users,
                    self.seed.follow_edges,
                    self.seed.tokens,
                    self.seed.celebrities_marked,
                    self.seed.seconds
                ),
            ),
            (
                "sessions connected".into(),
                format!(
                    "{}/{} ({} failed, {} dropped later) over {} source addresses",
                    c.connected, c.attempted, c.failed, c.dropped, c.source_addresses
                ),
            ),
            (
                "connect rate".into(),
                format!("{} ({:.2} s)", num(c.per_sec, 0, " sessions/s"), c.seconds),
            ),
            (
                "posts".into(),
                format!(
                    "{} ok, {} failed in {:.2} s ({})",
                    p.ok,
                    p.failed,
                    p.seconds,
                    num(p.per_sec, 1, " posts/s")
                ),
            ),
            summary_row("latency, every delivery", &self.latency_ms),
            summary_row("latency, last follower per post", &self.last_follower_ms),
            summary_row("latency, first follower per post", &self.first_follower_ms),
            summary_row("POST answered in", &self.post_answer_ms),
            ("deliveries/s".into(), num(d.per_sec, 0, "")),
            (
                "deliveries".into(),
                format!(
                    "{} of {} expected; missing {}, wrong {}, duplicates {}",
                    d.valid, d.expected, d.missing, d.wrong, d.duplicates
                ),
            ),
            (
                "order".into(),
                format!(
                    "out of order {} (by seq {}, by author {}); {} of {} frames carried a seq",
                    d.out_of_order,
                    d.out_of_order_by_seq,
                    d.out_of_order_by_author,
                    d.frames_with_seq,
                    d.frames_with_seq + d.frames_without_seq
                ),
            ),
            (
                "closed by herald".into(),
                if c.close_codes.is_empty() {
                    c.closed_by_server.to_string()
                } else {
                    format!(
                        "{} (codes: {})",
                        c.closed_by_server,
                        counted(&c.close_codes)
                    )
                },
            ),
            (
                "drain".into(),
                format!(
                    "{} after {:.2} s",
                    d.drain_end.map_or("n/a".into(), |end| format!("{end:?}")),
                    d.drain_seconds
                ),
            ),
            (
                "herald CPU per connect".into(),
                match self.herald.connect_cpu_ms_per_session {
                    Some(ms) if ms > 0.0 => format!(
                        "{ms:.3} ms per session: about {:.0} sessions/s per core of herald's own",
                        1000.0 / ms
                    ),
                    _ => "n/a".into(),
                },
            ),
            (
                "herald RSS".into(),
                format!(
                    "{} KiB → {} KiB; {} per session",
                    or_na(self.herald.rss_before_kib),
                    or_na(self.herald.rss_after_kib),
                    num(self.herald.rss_per_session_kib, 1, " KiB")
                ),
            ),
            (
                "broker memory".into(),
                format!(
                    "{} → {}; {} per session",
                    num(
                        self.broker
                            .memory_before_bytes
                            .map(|b| b as f64 / 1048576.0),
                        1,
                        " MiB"
                    ),
                    num(
                        self.broker.memory_after_bytes.map(|b| b as f64 / 1048576.0),
                        1,
                        " MiB"
                    ),
                    num(
                        self.broker.memory_per_session_bytes.map(|b| b / 1024.0),
                        1,
                        " KiB"
                    )
                ),
            ),
            (
                "broker messages per post".into(),
                num(self.realtime.messages_per_post, 2, ""),
            ),
        ];
        if !c.dropped_reasons.is_empty() {
            rows.push((
                "why sessions were dropped".into(),
                counted(&c.dropped_reasons),
            ));
        }
        if d.missing > 0 && c.dropped > 0 {
            rows.push((
                "missing, by session".into(),
                format!(
                    "{} on sessions that ended early, {} on sessions still open",
                    d.missing_on_dropped_sessions,
                    d.missing - d.missing_on_dropped_sessions
                ),
            ));
        }
        for fault in &self.faults {
            rows.push((format!("fault at {} s", fault.at_secs), fault_row(fault)));
        }
        if d.for_failed_posts > 0 {
            rows.push((
                "frames for failed posts".into(),
                d.for_failed_posts.to_string(),
            ));
        }
        if let Some(mode) = self.realtime.after.as_ref().and_then(|r| r.mode.clone()) {
            rows.push(("herald realtime mode".into(), mode));
        }
        rows.push((
            "load generator CPU".into(),
            match (self.client.cpu_ms, self.client.cpu_share_of_one_core) {
                (Some(ms), Some(share)) => format!(
                    "{ms:.0} ms over the load and drain: {:.0}% of one core ({} client threads)",
                    share * 100.0,
                    self.client.threads
                ),
                _ => "n/a".into(),
            },
        ));
        if let Some(cores) = &self.cores {
            for figure in &cores.rows {
                rows.push((
                    format!("CPU over the steady phase: {}", figure.name),
                    crate::cores::cell(figure),
                ));
            }
        }
        for stage in &self.stages {
            rows.push((
                format!("herald stage {}", stage.stage),
                format!(
                    "p50 {} · p99 {} (n={}): {}",
                    num(stage.p50_ms, 2, " ms"),
                    num(stage.p99_ms, 2, " ms"),
                    stage.count,
                    crate::stages::spans(&stage.stage)
                ),
            ));
        }
        rows
    }
}

#[derive(Serialize, Default)]
pub struct BaselineFigures {
    pub keys: u64,
    pub messages: u64,
    pub received: u64,
    pub missing: u64,
    pub publish_seconds: f64,
    /// First publish → last consume.
    pub seconds: f64,
    pub per_sec: Option<f64>,
    pub latency_ms: Option<Summary>,
}

impl Rows for BaselineFigures {
    fn rows(&self) -> Vec<(String, String)> {
        vec![
            (
                "messages".into(),
                format!(
                    "{} published over {} routing keys, {} consumed ({} missing)",
                    self.messages, self.keys, self.received, self.missing
                ),
            ),
            (
                "publishing".into(),
                format!("{:.2} s (confirms pipelined)", self.publish_seconds),
            ),
            (
                "deliveries/s".into(),
                format!(
                    "{} (first publish → last consume, {:.2} s)",
                    num(self.per_sec, 0, ""),
                    self.seconds
                ),
            ),
            summary_row("latency, publish → consume", &self.latency_ms),
        ]
    }
}

/// The command line as typed, quoted for a POSIX shell where needed.
pub fn command_line() -> String {
    std::env::args()
        .map(|arg| {
            let plain = !arg.is_empty()
                && arg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_./:=@%+-,".contains(c));
            if plain {
                arg
            } else {
                format!("'{}'", arg.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Writes `<dir>/<label>.json` and `<dir>/<label>.md`; returns their paths.
pub fn write<F: Serialize + Rows>(dir: &Path, report: &Report<F>) -> Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json_path = dir.join(format!("{}.json", report.label));
    let json = serde_json::to_string_pretty(report).context("serializing the report")?;
    std::fs::write(&json_path, json + "\n")
        .with_context(|| format!("writing {}", json_path.display()))?;
    let md_path = dir.join(format!("{}.md", report.label));
    std::fs::write(&md_path, markdown(report))
        .with_context(|| format!("writing {}", md_path.display()))?;
    Ok((json_path, md_path))
}

/// Prints the Markdown form on stdout; a closed stdout is worth a warning, not a panic.
pub fn print<F: Rows>(report: &Report<F>) {
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = stdout
        .write_all(markdown(report).as_bytes())
        .and_then(|()| stdout.flush())
    {
        eprintln!("herald-loadgen: warning: could not print the report on stdout: {error}");
    }
}

/// The Markdown form: a measure | value table, then the verdict and the command.
pub fn markdown<F: Rows>(report: &Report<F>) -> String {
    let mut out = format!("| {} | value |\n|---|---|\n", report.label);
    for (measure, value) in report.figures.rows() {
        out.push_str(&format!("| {measure} | {value} |\n"));
    }
    let verdict = if report.passed {
        "all checks passed".to_owned()
    } else {
        format!("FAILED: {}", report.failures.join("; "))
    };
    if let Some(why) = &report.aborted {
        out.push_str(&format!(
            "| aborted | {} (figures up to that point) |\n",
            why.replace('|', "/")
        ));
    }
    out.push_str(&format!("| checks | {verdict} |\n"));
    out.push_str(&format!(
        "\n_{}._\n\n`{}`\n",
        report.note,
        report.command.replace('`', "'")
    ));
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::{counted, num, or_na};

    #[test]
    fn reasons_are_listed_most_frequent_first() {
        let reasons = BTreeMap::from([
            ("read error: reset".to_owned(), 2),
            (
                "closed by herald with 1001 (server shutting down)".to_owned(),
                7,
            ),
        ]);
        assert_eq!(
            counted(&reasons),
            "closed by herald with 1001 (server shutting down) × 7; read error: reset × 2"
        );
        assert_eq!(counted(&BTreeMap::new()), "");
    }

    #[test]
    fn missing_readings_show_as_na() {
        assert_eq!(num(None, 1, " ms"), "n/a");
        assert_eq!(num(Some(1.26), 1, " ms"), "1.3 ms");
        assert_eq!(num(Some(3.0), 0, ""), "3");
        assert_eq!(or_na(None::<u64>), "n/a");
        assert_eq!(or_na(Some(5)), "5");
    }
}
