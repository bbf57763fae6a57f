//! `herald-loadgen`: the load generator behind `bench/run`. This file owns the command line
//! (clap) and the exit code; each phase of a run lives in its own module.
//!
//! - `run`: seed users and a follower graph straight into herald's database, open WebSocket
//!   sessions, post at a rate or in a burst (running `--at` fault commands meanwhile), wait for
//!   the deliveries, check that each one reached exactly its followers, once and in order, and
//!   report latency, throughput and resource figures.
//! - `baseline`: the same publish → consume path through RabbitMQ with lapin alone, no herald,
//!   as a ceiling to compare herald's throughput with.
//!
//! Exit codes: 0 when every check passed, 1 when a check failed (missing, wrong, duplicate or
//! out-of-order deliveries, failed connects or posts — an unreachable herald is that —, sessions
//! dropped, a fault command that failed, a panic on a client thread), 2 when the run itself could
//! not be carried out (bad arguments, an unreachable database or broker, an interruption by
//! SIGINT or SIGTERM, a panic on the main thread), 130 on a second SIGINT or SIGTERM. Every one
//! of them says why on stderr, as its last line. Whenever a run got as far as seeding, a report
//! is written, a partial one if the run was cut short.

mod baseline;
mod check;
mod cores;
mod faults;
mod floor;
mod interrupt;
mod load;
mod panics;
mod plot;
mod probes;
mod report;
mod scenario;
mod seed;
mod sessions;
mod stages;
mod stats;
mod stomp;

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;

use crate::interrupt::Interrupt;

#[derive(Parser)]
#[command(version, about = "Load generator and benchmark for herald")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One scenario end to end: seed, connect, load, drain, check, report.
    Run(Box<RunArgs>),
    /// The herald-free ceiling: lapin publish → consume through a direct exchange.
    Baseline(BaselineArgs),
}

/// Where and how the figures of one run are written.
#[derive(Args, Clone, Serialize)]
pub struct OutputArgs {
    /// Directory for `<label>.json`, `<label>.md` and, with `--plot`, `<label>-cdf.png`.
    #[arg(long, default_value = "bench/out")]
    pub out: PathBuf,
    /// Name of this run in file names and reports.
    #[arg(long, default_value = "run")]
    pub label: String,
    /// Also draw the latency CDF as a PNG.
    #[arg(long)]
    pub plot: bool,
}

/// Who writes the posts of a burst.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthorChoice {
    /// The extra user followed by `--celebrity-followers` users.
    Celebrity,
    /// One seeded user picked at random.
    Random,
}

/// The feed transport a run's sessions use.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Json,
    Stomp,
}

#[derive(Args, Clone, Serialize)]
pub struct RunArgs {
    /// herald's base URL (HTTP; the WebSocket URL is derived from it). Several (repeated or
    /// comma-separated) for instances of one deployment: session `i` connects to the `i mod n`th,
    /// post `p` is sent to the `p mod n`th, and `/metrics` and `/health` are summed over them.
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:8080")]
    pub url: Vec<String>,
    /// herald's database, seeded directly (bulk SQL).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/herald")]
    pub database_url: String,
    /// Users to seed (default: as many as sessions).
    #[arg(long)]
    pub users: Option<u32>,
    /// WebSocket sessions to open, one per user, the first users first.
    #[arg(long, default_value_t = 1000)]
    pub sessions: u32,
    /// How many random other users each user follows.
    #[arg(long, default_value_t = 0)]
    pub follows: u32,
    /// Seed one extra author followed by this many users (the first ones, so online ones).
    #[arg(long, default_value_t = 0)]
    pub celebrity_followers: u32,
    /// Authors with at least this many followers get `celebrity_since` set (herald's default).
    #[arg(long, default_value_t = 10_000)]
    pub celebrity_threshold: u32,
    /// Steady load: posts per second, from random seeded authors (needs `--duration`).
    #[arg(long, requires = "duration", conflicts_with = "author")]
    pub rate: Option<f64>,
    /// Steady load: seconds to post for.
    #[arg(long, requires = "rate")]
    pub duration: Option<f64>,
    /// Burst: one author writes `--posts` posts.
    #[arg(long, value_enum)]
    pub author: Option<AuthorChoice>,
    /// Burst: number of posts.
    #[arg(long, default_value_t = 50)]
    pub posts: u32,
    /// Burst: milliseconds between post starts; 0 sends each post when the previous answered.
    #[arg(long, default_value_t = 0)]
    pub interval_ms: u64,
    /// WebSocket handshakes in flight at once.
    #[arg(long, default_value_t = 512)]
    pub connect_concurrency: usize,
    /// OS threads running client sessions (each its own single-threaded runtime).
    #[arg(long, default_value_t = 2)]
    pub client_threads: usize,
    /// Sessions per source address (127.0.0.2, 127.0.0.3, ...): each address has ~28k ports.
    #[arg(long, default_value_t = 20_000)]
    pub per_source_ip: u32,
    /// HTTP keep-alive clients that share the posting.
    #[arg(long, default_value_t = 4)]
    pub http_clients: usize,
    /// Post requests in flight at once (steady load).
    #[arg(long, default_value_t = 256)]
    pub post_concurrency: usize,
    /// Drain ends when no frame arrived for this many seconds.
    #[arg(long, default_value_t = 3.0)]
    pub quiet_secs: f64,
    /// Drain never lasts longer than this.
    #[arg(long, default_value_t = 120.0)]
    pub drain_timeout_secs: f64,
    /// Idle time after the last session connected, before herald's memory is read.
    #[arg(long, default_value_t = 2.0)]
    pub settle_secs: f64,
    /// herald's process id, to read its resident memory before and after connecting and its
    /// CPU. Several (repeated or comma-separated), one per `--url`: their figures are summed.
    #[arg(long, value_delimiter = ',')]
    pub herald_pid: Vec<u32>,
    /// PostgreSQL's postmaster, for the core accounting (its backends are its children);
    /// default: the oldest process named `postgres` whose parent is not one.
    #[arg(long)]
    pub postgres_pid: Option<u32>,
    /// RabbitMQ's `beam.smp`, for the core accounting; default: the oldest one.
    #[arg(long)]
    pub broker_pid: Option<u32>,
    /// The client's floor: run against a trivial broadcaster started in this process (no
    /// database, no broker) instead of herald; `--url` and `--database-url` are not used.
    #[arg(long)]
    pub floor: bool,
    /// How the sessions read the feed: `json` (the WebSocket of §3) or `stomp` (STOMP over a
    /// WebSocket at /stomp, §4). The floor always speaks JSON.
    #[arg(long, value_enum, default_value_t = Transport::Json)]
    pub transport: Transport,
    /// Seed for the follower graph and author choice (random if absent).
    #[arg(long)]
    pub rng_seed: Option<u64>,
    /// A fault to inject: run COMMAND with `sh -c` SECS seconds after the first post is sent
    /// (repeatable; one at a time, in order of SECS). The load phase lasts until the last one
    /// has finished; one that fails fails the run.
    #[arg(long = "at", value_name = "SECS:COMMAND")]
    pub at: Vec<faults::Fault>,
    /// A fault command still running after this many seconds is killed (and fails the run).
    #[arg(long, default_value_t = 60.0)]
    pub fault_timeout_secs: f64,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args, Clone, Serialize)]
pub struct BaselineArgs {
    /// RabbitMQ, as herald's `amqp.url`.
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    pub amqp_url: String,
    /// Routing keys `user.<uuid>` bound to the one consumer queue.
    #[arg(long, default_value_t = 1000)]
    pub keys: u32,
    /// Messages to publish, round-robin over the keys.
    #[arg(long, default_value_t = 200_000)]
    pub messages: u32,
    /// Unconfirmed publishes allowed in flight.
    #[arg(long, default_value_t = 4096)]
    pub in_flight: usize,
    /// Consumer prefetch (unacked deliveries the broker may push ahead).
    #[arg(long, default_value_t = 1000)]
    pub prefetch: u16,
    /// Give up waiting for deliveries after this many seconds.
    #[arg(long, default_value_t = 120.0)]
    pub timeout_secs: f64,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// A seconds argument as a `Duration` that can be added to now, or why it cannot be one.
pub fn seconds_arg(flag: &str, value: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|&duration| Instant::now().checked_add(duration).is_some())
        .ok_or_else(|| {
            anyhow!("{flag} must be a finite, non-negative number of seconds (got {value})")
        })
}

fn main() -> ExitCode {
    // Bad arguments: clap prints the reason and the usage, and exits with 2.
    let cli = Cli::parse();
    panics::install();
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        actix_rt::System::new().block_on(async move {
            let interrupt = Interrupt::listen();
            match cli.command {
                Command::Run(args) => scenario::run(*args, &interrupt).await,
                Command::Baseline(args) => baseline::run(args, &interrupt).await,
            }
        })
    }))
    .unwrap_or_else(|payload| {
        Err(anyhow!(
            "internal error, a bug in herald-loadgen: {}",
            panics::message(&*payload)
        ))
    });
    match outcome {
        Ok(finished) if finished.failures.is_empty() => {
            eprintln!(
                "herald-loadgen: all checks passed (report: {})",
                finished.report.display()
            );
            ExitCode::SUCCESS
        }
        Ok(finished) => {
            eprintln!(
                "herald-loadgen: checks FAILED: {} (report: {})",
                finished.failures.join("; "),
                finished.report.display()
            );
            ExitCode::from(1)
        }
        Err(error) => {
            eprintln!("herald-loadgen: error: {error:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;

    use super::{seconds_arg, Cli, Command};

    #[test]
    fn urls_and_pids_may_be_repeated_or_comma_separated() {
        let cli = Cli::try_parse_from([
            "herald-loadgen",
            "run",
            "--url",
            "http://a:1,http://b:2",
            "--url",
            "http://c:3",
            "--herald-pid",
            "10,11",
            "--herald-pid",
            "12",
        ])
        .expect("parses");
        let Command::Run(args) = cli.command else {
            panic!("a run");
        };
        assert_eq!(args.url, ["http://a:1", "http://b:2", "http://c:3"]);
        assert_eq!(args.herald_pid, [10, 11, 12]);
        let Command::Run(defaults) = Cli::try_parse_from(["herald-loadgen", "run"])
            .expect("parses")
            .command
        else {
            panic!("a run");
        };
        assert_eq!(defaults.url, ["http://127.0.0.1:8080"]);
        assert!(defaults.herald_pid.is_empty());
    }

    #[test]
    fn seconds_arguments_are_checked_not_panicked_on() {
        assert_eq!(
            seconds_arg("--quiet-secs", 1.5).expect("seconds"),
            Duration::from_millis(1500)
        );
        for bad in [f64::INFINITY, f64::NAN, -1.0, 1e30] {
            let error = seconds_arg("--quiet-secs", bad).expect_err("rejected");
            assert!(
                error.to_string().starts_with("--quiet-secs must be"),
                "{error}"
            );
        }
    }
}
