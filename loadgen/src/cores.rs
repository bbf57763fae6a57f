//! Where the machine's cores went during the steady phase: the CPU time (user + system, from
//! `/proc`) of herald, PostgreSQL (the postmaster and all its backends), RabbitMQ (`beam.smp`)
//! and this load generator, each a process tree (or several: every herald instance of a run)
//! sampled when the first post is sent and when the last is answered, and the machine's own busy time over the same window (`/proc/stat`),
//! so the rest ("other": other work on the machine, the kernel's own threads) shows too.

use std::collections::HashMap;
use std::time::Instant;

use serde::Serialize;

/// Clock ticks per second of `/proc` times (USER_HZ, 100 on every Linux this runs on).
const TICK_MS: f64 = 10.0;

/// Process trees to account for as one: found by pid (several: the instances of a deployment on
/// this machine, summed), or as the oldest root process of that name.
#[derive(Clone, Debug)]
pub struct Target {
    pub name: &'static str,
    pub pids: Vec<u32>,
    /// Whether what the root's exited (reaped) children used counts: yes for a server's workers
    /// (PostgreSQL's backends), no for the loadgen's fault commands (a profiler among them).
    pub with_reaped: bool,
}

impl Target {
    /// `pid` when given, else the oldest process named `comm` whose parent has another name
    /// (the postmaster, not a backend; the shared broker, started before any private one).
    pub fn find(name: &'static str, pid: Option<u32>, comm: &str) -> Target {
        let pid = pid.or_else(|| oldest_root_named(&processes(), comm));
        Target {
            name,
            pids: pid.into_iter().collect(),
            with_reaped: true,
        }
    }
}

/// The tree CPU of each target and the machine's busy time, at one moment.
pub struct Sample {
    at: Instant,
    trees_ms: Vec<Option<f64>>,
    machine_busy_ms: Option<f64>,
}

pub fn sample(targets: &[Target]) -> Sample {
    let procs = processes();
    Sample {
        at: Instant::now(),
        trees_ms: targets
            .iter()
            .map(|t| trees_cpu_ms(&procs, &t.pids, t.with_reaped))
            .collect(),
        machine_busy_ms: machine_busy_ms(),
    }
}

#[derive(Serialize, Clone, Debug)]
pub struct CoreFigure {
    pub name: String,
    pub pids: Vec<u32>,
    pub cpu_ms: Option<f64>,
    /// CPU over wall time: 1.0 is one core kept busy.
    pub cores: Option<f64>,
    pub us_per_post: Option<f64>,
    pub us_per_delivery: Option<f64>,
}

#[derive(Serialize, Clone, Debug, Default)]
pub struct CoreFigures {
    pub wall_seconds: f64,
    pub posts: u64,
    /// Frames the client received in the same window.
    pub deliveries: u64,
    /// One row per target, then "other" (machine busy − the targets) and "machine busy".
    pub rows: Vec<CoreFigure>,
}

/// The accounting between two samples, over `posts` posts sent and `deliveries` frames read.
pub fn account(
    targets: &[Target],
    before: &Sample,
    after: &Sample,
    posts: u64,
    deliveries: u64,
) -> CoreFigures {
    let wall_ms = after.at.saturating_duration_since(before.at).as_secs_f64() * 1000.0;
    let row = |name: String, pids: Vec<u32>, cpu_ms: Option<f64>| CoreFigure {
        name,
        pids,
        cpu_ms,
        cores: cpu_ms.filter(|_| wall_ms > 0.0).map(|ms| ms / wall_ms),
        us_per_post: cpu_ms
            .filter(|_| posts > 0)
            .map(|ms| ms * 1000.0 / posts as f64),
        us_per_delivery: cpu_ms
            .filter(|_| deliveries > 0)
            .map(|ms| ms * 1000.0 / deliveries as f64),
    };
    let mut rows: Vec<CoreFigure> = targets
        .iter()
        .zip(before.trees_ms.iter().zip(&after.trees_ms))
        .map(|(target, (b, a))| {
            // A tree whose reading fell (a process gone) has no meaningful difference.
            let used = a.zip(*b).map(|(a, b)| a - b).filter(|ms| *ms >= 0.0);
            row(target.name.to_owned(), target.pids.clone(), used)
        })
        .collect();
    let busy = after
        .machine_busy_ms
        .zip(before.machine_busy_ms)
        .map(|(a, b)| a - b);
    let accounted: f64 = rows.iter().filter_map(|r| r.cpu_ms).sum();
    rows.push(row(
        "other".into(),
        Vec::new(),
        busy.map(|b| (b - accounted).max(0.0)),
    ));
    rows.push(row("machine busy".into(), Vec::new(), busy));
    CoreFigures {
        wall_seconds: wall_ms / 1000.0,
        posts,
        deliveries,
        rows,
    }
}

/// One table cell per target: "0.86 cores · 1,720 µs/post · 34.4 µs/delivery".
pub fn cell(figure: &CoreFigure) -> String {
    let fmt = |v: Option<f64>, decimals: usize, unit: &str| {
        v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.decimals$}{unit}"))
    };
    format!(
        "{} cores · {} per post · {} per delivery",
        fmt(figure.cores, 2, ""),
        fmt(figure.us_per_post, 0, " µs"),
        fmt(figure.us_per_delivery, 1, " µs"),
    )
}

/// Per pid: (parent pid, command name, utime+stime, cutime+cstime, start time), in ticks.
struct Proc {
    ppid: u32,
    comm: String,
    own: u64,
    reaped_children: u64,
    start: u64,
}

fn processes() -> HashMap<u32, Proc> {
    let mut procs = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return procs;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(proc) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| parse_stat(&stat))
        {
            procs.insert(pid, proc);
        }
    }
    procs
}

/// `/proc/<pid>/stat`: the command name sits in parentheses (and may hold spaces), then
/// state, ppid, … utime (14), stime (15), cutime (16), cstime (17), … starttime (22).
fn parse_stat(stat: &str) -> Option<Proc> {
    let open = stat.find('(')?;
    let (head, rest) = stat.rsplit_once(')')?;
    let comm = head.get(open + 1..)?.to_owned();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    Some(Proc {
        ppid: u32::try_from(num(1)?).ok()?,
        comm,
        own: num(11)? + num(12)?,
        reaped_children: num(13)? + num(14)?,
        start: num(19)?,
    })
}

fn oldest_root_named(procs: &HashMap<u32, Proc>, comm: &str) -> Option<u32> {
    procs
        .iter()
        .filter(|(_, p)| p.comm == comm)
        .filter(|(_, p)| procs.get(&p.ppid).is_none_or(|parent| parent.comm != comm))
        .min_by_key(|(pid, p)| (p.start, **pid))
        .map(|(pid, _)| *pid)
}

/// The CPU of `root` and every live descendant, plus what the root's reaped children used
/// (a PostgreSQL backend that exited during the window still counts, via the postmaster).
fn tree_cpu_ms(procs: &HashMap<u32, Proc>, root: u32, with_reaped: bool) -> Option<f64> {
    let root_proc = procs.get(&root)?;
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (pid, p) in procs {
        children.entry(p.ppid).or_default().push(*pid);
    }
    let mut ticks = if with_reaped {
        root_proc.reaped_children
    } else {
        0
    };
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        if let Some(p) = procs.get(&pid) {
            ticks += p.own;
        }
        if let Some(kids) = children.get(&pid) {
            stack.extend(kids.iter().copied().filter(|k| *k != pid));
        }
    }
    Some(ticks as f64 * TICK_MS)
}

/// The CPU of every tree rooted at one of `roots`, summed; `None` when there are none or one of
/// them is gone (a sum missing a member would read as a drop).
fn trees_cpu_ms(procs: &HashMap<u32, Proc>, roots: &[u32], with_reaped: bool) -> Option<f64> {
    if roots.is_empty() {
        return None;
    }
    roots
        .iter()
        .map(|&root| tree_cpu_ms(procs, root, with_reaped))
        .sum()
}

/// All CPUs' busy time so far (everything in `/proc/stat`'s `cpu` line but idle and iowait).
fn machine_busy_ms() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_machine_busy_ms(&stat)
}

fn parse_machine_busy_ms(stat: &str) -> Option<f64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest and guest_nice are inside user).
    let busy: u64 = ticks
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, t)| t)
        .sum();
    Some(busy as f64 * TICK_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let stat = "42 (postgres: a b) S 7 42 42 0 -1 4194560 10 0 0 0 150 25 3 4 20 0 1 0 999 0 0";
        let p = parse_stat(stat).expect("parses");
        assert_eq!(p.ppid, 7);
        assert_eq!(p.comm, "postgres: a b");
        assert_eq!(p.own, 175);
        assert_eq!(p.reaped_children, 7);
        assert_eq!(p.start, 999);
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn a_tree_sums_its_live_descendants_and_reaped_children() {
        let mk = |ppid, comm: &str, own, reaped| Proc {
            ppid,
            comm: comm.into(),
            own,
            reaped_children: reaped,
            start: 0,
        };
        let procs = HashMap::from([
            (10, mk(1, "postgres", 5, 100)),
            (11, mk(10, "postgres", 20, 0)),
            (12, mk(11, "postgres", 3, 0)),
            (20, mk(1, "other", 1000, 0)),
        ]);
        assert_eq!(tree_cpu_ms(&procs, 10, true), Some(1280.0));
        assert_eq!(tree_cpu_ms(&procs, 10, false), Some(280.0));
        assert_eq!(oldest_root_named(&procs, "postgres"), Some(10));
        assert_eq!(oldest_root_named(&procs, "beam.smp"), None);
    }

    #[test]
    fn several_roots_are_summed_and_a_missing_one_spoils_the_sum() {
        let mk = |ppid, own| Proc {
            ppid,
            comm: "herald".into(),
            own,
            reaped_children: 1,
            start: 0,
        };
        let procs = HashMap::from([(10, mk(1, 5)), (11, mk(10, 2)), (20, mk(1, 30))]);
        assert_eq!(trees_cpu_ms(&procs, &[10, 20], false), Some(370.0));
        assert_eq!(trees_cpu_ms(&procs, &[10, 20], true), Some(390.0));
        assert_eq!(trees_cpu_ms(&procs, &[10, 99], false), None);
        assert_eq!(trees_cpu_ms(&procs, &[], false), None);
    }

    #[test]
    fn machine_busy_leaves_out_idle_and_iowait() {
        let stat = "cpu  100 1 50 9000 7 2 3 4 0 0\ncpu0 1 1 1 1 1 1 1 1 0 0\n";
        assert_eq!(parse_machine_busy_ms(stat), Some(1600.0));
    }
}
