//! `run`: one scenario end to end — seed, connect, load (with its faults), drain, check — with
//! the readings around each phase, the pass/fail verdict, and the report files.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;

use crate::check;
use crate::cores;
use crate::faults;
use crate::floor;
use crate::interrupt::Interrupt;
use crate::load::{self, Schedule};
use crate::panics;
use crate::plot;
use crate::probes;
use crate::report::{self, Finished, Report, RunFigures};
use crate::seed::{self, Graph};
use crate::sessions::{self, ConnectOutcome};
use crate::stages;
use crate::stats::{per_second, Summary};
use crate::{seconds_arg, AuthorChoice, RunArgs, Transport};

/// Descriptors needed beyond the sessions and the posting connections: the database, stdio,
/// `rabbitmqctl`, the runtime's own.
const SPARE_FILES: u64 = 128;
/// Connect errors kept for the report (the count is always complete).
const ERROR_SAMPLES: usize = 5;

/// A progress bar for one phase (drawn on stderr when it is a terminal).
fn phase_bar(phase: &str) -> ProgressBar {
    let bar = ProgressBar::new(0).with_prefix(phase.to_owned());
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix:>8} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, eta {eta})",
    ) {
        bar.set_style(style);
    }
    bar
}

/// The WebSocket feed URL on the same host as the HTTP base URL.
fn feed_url(base_url: &str, transport: Transport) -> Result<String> {
    let path = match transport {
        Transport::Json => "/post/feed/posted",
        Transport::Stomp => "/stomp",
    };
    match base_url.strip_prefix("http://") {
        Some(rest) => Ok(format!("ws://{}{path}", rest.trim_end_matches('/'))),
        None => bail!("--url must be a plain http:// URL (got {base_url})"),
    }
}

/// Who writes each post, and when.
fn plan_posts(args: &RunArgs, graph: &Graph, rng: &mut StdRng) -> Result<(Vec<u32>, Schedule)> {
    let ordinary_users = graph.len() - u32::from(graph.celebrity.is_some());
    let (authors, schedule, span) = match (args.rate, args.duration, args.author) {
        (Some(rate), Some(duration), None) => {
            if !(rate.is_finite() && rate > 0.0 && duration > 0.0) {
                bail!("--rate and --duration must be positive");
            }
            let span = seconds_arg("--duration", duration)?;
            let count = (rate * duration).round().max(1.0);
            if count > f64::from(u32::MAX) {
                bail!("--rate × --duration is {count} posts, more than a run can make");
            }
            let authors = (0..count as usize)
                .map(|_| rng.random_range(0..ordinary_users))
                .collect();
            (authors, Schedule::Rate(rate), span)
        }
        (None, None, Some(choice)) => {
            let author = match choice {
                AuthorChoice::Celebrity => graph.celebrity.context(
                    "--author celebrity needs --celebrity-followers K (K > 0) to seed one",
                )?,
                AuthorChoice::Random => rng.random_range(0..ordinary_users),
            };
            let (schedule, span) = match args.interval_ms {
                0 => (Schedule::AfterPrevious, Duration::ZERO),
                ms => {
                    let interval = Duration::from_millis(ms);
                    let span = interval
                        .checked_mul(args.posts)
                        .context("--interval-ms × --posts is too long")?;
                    (Schedule::Every(interval), span)
                }
            };
            (vec![author; args.posts as usize], schedule, span)
        }
        _ => bail!(
            "choose one load: --rate R --duration D (steady), or --author celebrity|random --posts P (burst)"
        ),
    };
    // Instants this far ahead must exist (the drain waits past the last post).
    if span
        .checked_mul(2)
        .and_then(|twice| Instant::now().checked_add(twice))
        .is_none()
    {
        bail!("the posting schedule ({span:?}) is too long");
    }
    Ok((authors, schedule))
}

/// Everything settled before the run touches herald or its database.
struct Plan {
    /// One per `--url`, in the same order.
    ws_urls: Vec<String>,
    file_limit: u64,
    rng_seed: u64,
    graph: Graph,
    authors: Vec<u32>,
    schedule: Schedule,
    settle: Duration,
    quiet: Duration,
    drain_timeout: Duration,
    fault_timeout: Duration,
}

impl Plan {
    fn new(args: &RunArgs) -> Result<Plan> {
        let users = args.users.unwrap_or(args.sessions);
        if args.sessions > users {
            bail!("--sessions {} exceeds --users {users}", args.sessions);
        }
        if args.url.is_empty() {
            bail!("--url needs at least one URL");
        }
        if !args.herald_pid.is_empty() && args.herald_pid.len() != args.url.len() {
            bail!(
                "--herald-pid names {} processes for {} --url instances: give one per instance, or none",
                args.herald_pid.len(),
                args.url.len()
            );
        }
        let ws_urls = args
            .url
            .iter()
            .map(|url| feed_url(url, args.transport))
            .collect::<Result<Vec<_>>>()?;
        let settle = seconds_arg("--settle-secs", args.settle_secs.max(0.0))?;
        let quiet = seconds_arg("--quiet-secs", args.quiet_secs.max(0.1))?;
        let drain_timeout = seconds_arg("--drain-timeout-secs", args.drain_timeout_secs.max(1.0))?;
        let fault_timeout = seconds_arg("--fault-timeout-secs", args.fault_timeout_secs.max(0.1))?;
        let posting_sockets = args.http_clients.max(1) * load::MAX_CONNECTIONS_PER_CLIENT;
        let file_limit = probes::raise_nofile_limit(
            u64::from(args.sessions) + posting_sockets as u64 + SPARE_FILES,
        )?;
        let rng_seed = args.rng_seed.unwrap_or_else(rand::random);
        let mut rng = StdRng::seed_from_u64(rng_seed);
        let graph = Graph::generate(users, args.follows, args.celebrity_followers, &mut rng)?;
        let (authors, schedule) = plan_posts(args, &graph, &mut rng)?;
        Ok(Plan {
            ws_urls,
            file_limit,
            rng_seed,
            graph,
            authors,
            schedule,
            settle,
            quiet,
            drain_timeout,
            fault_timeout,
        })
    }
}

/// What the check phase leaves for the plot.
struct Checked {
    latencies_ms: Vec<f64>,
    last_follower_ms: Vec<f64>,
}

pub async fn run(mut args: RunArgs, interrupt: &Interrupt) -> Result<Finished> {
    let command = report::command_line();
    let started_at = chrono::Utc::now().to_rfc3339();
    let mut plan = Plan::new(&args).context("the run cannot start")?;
    if args.floor {
        // As many worker threads as herald runs with its defaults: one per core.
        let workers = std::thread::available_parallelism().map_or(1, usize::from);
        let url = floor::start(&plan.graph, workers)?;
        plan.ws_urls = vec![feed_url(&url, Transport::Json)?];
        eprintln!("floor mode: a trivial broadcaster at {url} stands in for herald");
        args.url = vec![url];
    }
    let rng_seed = plan.rng_seed;
    let mut figures = RunFigures::default();
    let mut phase = "seeding";
    let measured = measure(&args, plan, &mut figures, &mut phase, interrupt).await;
    let (checked, failures, aborted) = match measured {
        Ok(checked) => {
            let failures = failures(&figures);
            (Some(checked), failures, None)
        }
        Err(error) => {
            let error = error.context(format!("while {phase}"));
            let why = format!("{error:#}");
            // A partial report: what was measured before the run stopped, and why it stopped.
            let report = Report {
                label: args.output.label.clone(),
                kind: "run",
                command,
                started_at,
                note: report::LATENCY_NOTE,
                params: serde_json::json!({ "args": &args, "rng_seed": rng_seed }),
                passed: false,
                failures: vec![format!("the run stopped {why}")],
                aborted: Some(why),
                figures,
            };
            match report::write(&args.output.out, &report) {
                Ok((json_path, _)) => eprintln!(
                    "herald-loadgen: wrote a partial report (figures up to the stop) to {}",
                    json_path.display()
                ),
                Err(write_error) => eprintln!(
                    "herald-loadgen: could not write a partial report either: {write_error:#}"
                ),
            }
            return Err(error);
        }
    };

    let passed = failures.is_empty();
    let report = Report {
        label: args.output.label.clone(),
        kind: "run",
        command,
        started_at,
        note: report::LATENCY_NOTE,
        params: serde_json::json!({ "args": &args, "rng_seed": rng_seed }),
        passed,
        failures: failures.clone(),
        aborted,
        figures,
    };
    let (json_path, _) = report::write(&args.output.out, &report)?;
    if let (true, Some(checked)) = (args.output.plot, &checked) {
        let path = args
            .output
            .out
            .join(format!("{}-cdf.png", args.output.label));
        let title = format!("{}: post sent → frame received", args.output.label);
        match plot::latency_cdf(
            &path,
            &title,
            &[
                ("every delivery", &checked.latencies_ms),
                ("last follower per post", &checked.last_follower_ms),
            ],
        ) {
            Ok(()) => eprintln!("plotted {}", path.display()),
            Err(error) => eprintln!("warning: no plot: {error:#}"),
        }
    }
    report::print(&report);
    eprintln!("wrote {}", json_path.display());
    Ok(Finished {
        failures,
        report: json_path,
    })
}

/// The phases of a run, each filling in its figures as it ends, so that a run cut short (an
/// error, a signal) still has what was measured before; `phase` names the one under way.
async fn measure(
    args: &RunArgs,
    plan: Plan,
    figures: &mut RunFigures,
    phase: &mut &'static str,
    interrupt: &Interrupt,
) -> Result<Checked> {
    let Plan {
        ws_urls,
        file_limit,
        rng_seed,
        graph,
        authors,
        schedule,
        settle,
        quiet,
        drain_timeout,
        fault_timeout,
        ..
    } = plan;

    // Seed: tokens only for users that connect or post.
    *phase = "seeding the database";
    let mut needs_token = vec![false; graph.len() as usize];
    needs_token[..args.sessions as usize].fill(true);
    for &author in &authors {
        needs_token[author as usize] = true;
    }
    let bar = phase_bar("seed");
    let seeded = if args.floor {
        seed::Seeded {
            tokens: (0..graph.len())
                .map(|user| needs_token[user as usize].then(|| floor::token(user)))
                .collect(),
            celebrities_marked: 0,
            seconds: 0.0,
        }
    } else {
        interrupt
            .guard(seed::seed(
                &args.database_url,
                &graph,
                &needs_token,
                args.celebrity_threshold,
                &bar,
            ))
            .await?
    };
    bar.finish_and_clear();
    figures.seed = report::SeedFigures {
        users: u64::from(graph.len()),
        follow_edges: graph.edge_count() as u64,
        tokens: seeded.tokens.iter().flatten().count() as u64,
        celebrities_marked: seeded.celebrities_marked,
        seconds: seeded.seconds,
    };
    eprintln!(
        "seeded {} users, {} follows, {} tokens, {} celebrities in {:.1} s (rng seed {rng_seed})",
        figures.seed.users,
        figures.seed.follow_edges,
        figures.seed.tokens,
        figures.seed.celebrities_marked,
        figures.seed.seconds
    );

    figures.herald.pids = args.herald_pid.clone();
    figures.herald.rss_before_kib = probes::rss_kib_all(&args.herald_pid);
    figures.broker.memory_before_bytes = probes::broker_memory_bytes();

    // Connect.
    *phase = "connecting the WebSocket sessions";
    let mut sessions_plan = Vec::with_capacity(args.sessions as usize);
    for session in 0..args.sessions {
        let token = seeded.tokens[session as usize]
            .clone()
            .with_context(|| format!("session {session}'s user has no token"))?;
        sessions_plan.push((session, token));
    }
    let (outcomes_tx, mut outcomes) = mpsc::unbounded_channel();
    let bar = phase_bar("connect");
    bar.set_length(u64::from(args.sessions));
    let connect_started = Instant::now();
    let cpu_before = probes::cpu_ms_all(&args.herald_pid);
    let clients = sessions::start(
        sessions::Plan {
            ws_urls,
            sessions: sessions_plan,
            threads: args.client_threads,
            concurrency: args.connect_concurrency,
            per_source_ip: args.per_source_ip,
        },
        outcomes_tx,
    )?;
    let mut online = vec![false; graph.len() as usize];
    let mut last_connected = connect_started;
    let connect = &mut figures.connect;
    connect.attempted = u64::from(args.sessions);
    connect.source_addresses =
        sessions::source_addresses(args.sessions, args.per_source_ip).len() as u64;
    let mut unreported = false;
    while connect.connected + connect.failed < connect.attempted {
        let Some(outcome) = interrupt.guard(async { Ok(outcomes.recv().await) }).await? else {
            unreported = true; // every client thread is gone; the rest never reported
            break;
        };
        match outcome {
            ConnectOutcome::Connected { session, at } => {
                online[session as usize] = true;
                connect.connected += 1;
                last_connected = last_connected.max(at);
            }
            ConnectOutcome::Failed { session, error } => {
                connect.failed += 1;
                if connect.errors.len() < ERROR_SAMPLES {
                    connect.errors.push(format!("session {session}: {error}"));
                }
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    if unreported {
        let missing = connect.attempted - connect.connected - connect.failed;
        eprintln!(
            "herald-loadgen: warning: every client thread stopped before {missing} sessions \
             reported their handshake (see the messages above); they count as failed"
        );
        connect.errors.push(format!(
            "{missing} sessions never reported: their client thread stopped"
        ));
    }
    if let (Some(before), Some(after)) = (cpu_before, probes::cpu_ms_all(&args.herald_pid)) {
        if figures.connect.connected > 0 {
            figures.herald.connect_cpu_ms_per_session =
                Some((after - before) / figures.connect.connected as f64);
        }
    }
    let connect = &mut figures.connect;
    // Sessions that never reported (a client thread died) count as failures.
    connect.failed = connect.attempted - connect.connected;
    connect.seconds = last_connected
        .saturating_duration_since(connect_started)
        .as_secs_f64();
    connect.per_sec = per_second(connect.connected, connect.seconds);
    eprintln!(
        "connected {}/{} sessions in {:.2} s ({} sessions/s), {} failed (open-file limit {file_limit})",
        connect.connected,
        connect.attempted,
        connect.seconds,
        report::num(connect.per_sec, 0, ""),
        connect.failed
    );
    if let Some(first) = connect.errors.first() {
        eprintln!("first connect error: {first}");
    }

    // Idle a moment so herald's and the broker's memory reflect settled, idle sessions.
    *phase = "settling before the load";
    interrupt
        .guard(async {
            tokio::time::sleep(settle).await;
            Ok(())
        })
        .await?;
    figures.herald.rss_after_kib = probes::rss_kib_all(&args.herald_pid);
    figures.broker.memory_after_bytes = probes::broker_memory_bytes();
    let connected = figures.connect.connected;
    if connected > 0 {
        if let (Some(before), Some(after)) =
            (figures.herald.rss_before_kib, figures.herald.rss_after_kib)
        {
            figures.herald.rss_per_session_kib =
                Some((after as f64 - before as f64) / connected as f64);
        }
        if let (Some(before), Some(after)) = (
            figures.broker.memory_before_bytes,
            figures.broker.memory_after_bytes,
        ) {
            figures.broker.memory_per_session_bytes =
                Some((after as f64 - before as f64) / connected as f64);
        }
    }
    figures.realtime.before = probes::realtime_counters_all(&args.url).await;
    let stages_before = stages::scrape_all(&args.url).await;
    let client_cpu_before = probes::cpu_ms(std::process::id());
    let core_targets = [
        cores::Target {
            name: "herald",
            pids: if args.floor {
                Vec::new()
            } else {
                args.herald_pid.clone()
            },
            with_reaped: true,
        },
        cores::Target::find("PostgreSQL", args.postgres_pid, "postgres"),
        cores::Target::find("RabbitMQ", args.broker_pid, "beam.smp"),
        cores::Target {
            name: "loadgen",
            pids: vec![std::process::id()],
            with_reaped: false,
        },
    ];
    let received_before = clients.shared.received.load(Ordering::Relaxed);
    let cores_before = cores::sample(&core_targets);
    figures.client.threads = args.client_threads;
    note_dropped(figures, &clients.shared);

    // Load: the posts, and the faults timed from the first of them.
    *phase = "posting";
    let bar = phase_bar("load");
    let load_started = Instant::now();
    let (outcome, fault_figures) = interrupt
        .guard(async {
            let (posted, faults) = futures_util::future::join(
                load::run(
                    load::Plan {
                        base_urls: args.url.clone(),
                        authors,
                        schedule,
                        http_clients: args.http_clients,
                        concurrency: args.post_concurrency,
                        tag: args.output.label.clone(),
                    },
                    &seeded.tokens,
                    &bar,
                ),
                faults::run(&args.at, load_started, fault_timeout),
            )
            .await;
            Ok((posted?, faults))
        })
        .await?;
    // The later of the last answer and the last fault's end.
    let load_finished = Instant::now();
    let cores_after = cores::sample(&core_targets);
    let received_in_load = clients.shared.received.load(Ordering::Relaxed) - received_before;
    bar.finish_and_clear();
    figures.faults = fault_figures;
    let posts = &mut figures.posts;
    posts.attempted = outcome.posts.len() as u64;
    posts.failed = outcome.failed;
    posts.ok = posts.attempted - posts.failed;
    posts.seconds = outcome
        .finished
        .saturating_duration_since(outcome.started)
        .as_secs_f64();
    posts.per_sec = per_second(posts.attempted, posts.seconds);
    posts.errors = outcome.error_samples.clone();
    figures.cores = Some(cores::account(
        &core_targets,
        &cores_before,
        &cores_after,
        posts.attempted,
        received_in_load,
    ));
    eprintln!(
        "posted {} ({} failed) in {:.2} s",
        posts.attempted, posts.failed, posts.seconds
    );
    if let Some(first) = posts.errors.first() {
        eprintln!("first post error: {first}");
    }
    note_dropped(figures, &clients.shared);

    // Drain.
    *phase = "waiting for the deliveries";
    let counts = check::online_follower_counts(&graph, &online);
    let expected = check::expected_deliveries(&outcome.posts, &counts);
    let bar = phase_bar("drain");
    let drain_started = Instant::now();
    let drain_end = interrupt
        .guard(async {
            Ok(check::drain(
                &clients.shared,
                expected,
                load_finished,
                quiet,
                drain_timeout,
                &bar,
            )
            .await)
        })
        .await?;
    bar.finish_and_clear();
    figures.deliveries.drain_end = Some(drain_end);
    figures.deliveries.drain_seconds = drain_started.elapsed().as_secs_f64();
    figures.realtime.after = probes::realtime_counters_all(&args.url).await;
    if let (Some(before), Some(after)) = (&stages_before, stages::scrape_all(&args.url).await) {
        figures.stages = stages::figures(before, &after);
    }
    if let (Some(before), Some(after)) = (client_cpu_before, probes::cpu_ms(std::process::id())) {
        let wall_ms = load_started.elapsed().as_secs_f64() * 1000.0;
        figures.client.cpu_ms = Some(after - before);
        figures.client.cpu_share_of_one_core = (wall_ms > 0.0).then(|| (after - before) / wall_ms);
    }
    note_dropped(figures, &clients.shared);

    // Check.
    *phase = "checking the deliveries";
    let dropped = clients.shared.endings().sessions;
    let collected = clients.finish();
    for failure in &collected.failures {
        eprintln!("herald-loadgen: {failure}");
    }
    figures.client_failures = collected.failures;
    let mut deliveries = collected.deliveries;
    let mut verdict = check::evaluate(&mut deliveries, &graph, &outcome.posts, expected, &dropped);
    let d = &mut figures.deliveries;
    d.expected = verdict.expected;
    d.valid = verdict.valid;
    d.missing = verdict.missing;
    d.missing_on_dropped_sessions = verdict.missing_on_dropped;
    d.wrong = verdict.wrong;
    d.duplicates = verdict.duplicates;
    d.for_failed_posts = verdict.for_failed_posts;
    d.out_of_order = verdict.out_of_order;
    d.out_of_order_by_seq = verdict.out_of_order_by_seq;
    d.out_of_order_by_author = verdict.out_of_order_by_author;
    d.frames_with_seq = verdict.frames_with_seq;
    d.frames_without_seq = verdict.frames_without_seq;
    if let Some(last) = verdict.last_valid_delivery {
        d.per_sec = per_second(
            verdict.valid,
            last.saturating_duration_since(outcome.started)
                .as_secs_f64(),
        );
    }
    figures.latency_ms = Some(Summary::of(&mut verdict.latencies_ms));
    figures.last_follower_ms = Some(Summary::of(&mut verdict.last_follower_ms));
    figures.first_follower_ms = Some(Summary::of(&mut verdict.first_follower_ms));
    let mut answers: Vec<f64> = outcome
        .posts
        .iter()
        .filter(|post| post.ok)
        .map(|post| {
            post.answered
                .saturating_duration_since(post.sent)
                .as_secs_f64()
                * 1000.0
        })
        .collect();
    figures.post_answer_ms = Some(Summary::of(&mut answers));
    realtime_deltas(figures);
    Ok(Checked {
        latencies_ms: verdict.latencies_ms,
        last_follower_ms: verdict.last_follower_ms,
    })
}

/// Copies the count of sessions herald closed so far, why and with which codes, into the figures.
fn note_dropped(figures: &mut RunFigures, shared: &sessions::Shared) {
    let endings = shared.endings();
    let connect = &mut figures.connect;
    connect.dropped = shared.dropped.load(std::sync::atomic::Ordering::Relaxed);
    connect.dropped_reasons = endings.reasons;
    connect.closed_by_server = endings.close_codes.values().sum();
    connect.close_codes = endings.close_codes;
}

/// Differences of herald's cumulative realtime counters across the load, where reported.
fn realtime_deltas(figures: &mut RunFigures) {
    let (Some(before), Some(after)) = (&figures.realtime.before, &figures.realtime.after) else {
        return;
    };
    let delta = |b: Option<u64>, a: Option<u64>| Some(a?.saturating_sub(b?));
    figures.realtime.published = delta(before.published, after.published);
    figures.realtime.consumed = delta(before.consumed, after.consumed);
    figures.realtime.delivered = delta(before.delivered, after.delivered);
    if figures.posts.ok > 0 {
        figures.realtime.messages_per_post = figures
            .realtime
            .published
            .map(|published| published as f64 / figures.posts.ok as f64);
    }
}

/// Every reason this run fails its checks.
fn failures(figures: &RunFigures) -> Vec<String> {
    let d = &figures.deliveries;
    let mut why = Vec::new();
    let mut check = |count: u64, what: &str| {
        if count > 0 {
            why.push(format!("{count} {what}"));
        }
    };
    check(d.missing, "missing deliveries");
    check(d.wrong, "wrong deliveries");
    check(d.duplicates, "duplicate deliveries");
    if d.out_of_order > 0 {
        why.push(format!(
            "{} deliveries out of order ({} by seq, {} by author)",
            d.out_of_order, d.out_of_order_by_seq, d.out_of_order_by_author
        ));
    }
    let first = |errors: &[String]| {
        errors
            .first()
            .map_or_else(String::new, |error| format!(" (the first: {error})"))
    };
    if figures.connect.failed > 0 {
        why.push(format!(
            "{} failed connects{}",
            figures.connect.failed,
            first(&figures.connect.errors)
        ));
    }
    if figures.posts.failed > 0 {
        why.push(format!(
            "{} failed posts{}",
            figures.posts.failed,
            first(&figures.posts.errors)
        ));
    }
    if figures.connect.dropped > 0 {
        why.push(format!(
            "{} sessions dropped by the server ({})",
            figures.connect.dropped,
            report::counted(&figures.connect.dropped_reasons)
        ));
    }
    for fault in figures.faults.iter().filter(|fault| !fault.ok) {
        why.push(format!(
            "the fault at {} s (`{}`) failed: {}",
            fault.at_secs,
            fault.command,
            fault.error.as_deref().unwrap_or("no reason given")
        ));
    }
    why.extend(figures.client_failures.iter().cloned());
    if let Some((count, first)) = panics::seen() {
        why.push(format!(
            "{count} panic(s) in the load generator, the first: {first}"
        ));
    }
    if d.expected == 0 {
        why.push("no delivery was expected: no online session follows the posting authors".into());
    }
    why
}

#[cfg(test)]
mod tests {
    use super::feed_url;
    use crate::Transport;

    #[test]
    fn the_feed_url_follows_the_http_url() {
        assert_eq!(
            feed_url("http://127.0.0.1:8080/", Transport::Json).expect("url"),
            "ws://127.0.0.1:8080/post/feed/posted"
        );
        assert_eq!(
            feed_url("http://127.0.0.1:8080", Transport::Stomp).expect("url"),
            "ws://127.0.0.1:8080/stomp"
        );
        assert!(feed_url("https://example.test", Transport::Json).is_err());
    }
}
