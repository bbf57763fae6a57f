//! Readings taken around a run, all best effort (a reading that cannot be had is `None`, shown
//! as "n/a"): herald's resident memory, RabbitMQ's memory, herald's `/health` realtime
//! counters; and raising this process's own open-file limit before thousands of sockets.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context, Result};
use rlimit::Resource;
use serde::{Deserialize, Serialize};

/// `VmRSS` of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_rss(&status)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// CPU time (user + system, all threads) process `pid` has used so far, in milliseconds.
pub fn cpu_ms(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_ms(&stat)
}

/// Fields 14 and 15 of `/proc/<pid>/stat`, counted after the command name (which may hold
/// spaces, hence the split at its closing parenthesis), in clock ticks of 10 ms (USER_HZ is 100
/// on Linux).
fn parse_cpu_ms(stat: &str) -> Option<f64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some((user + system) as f64 * 10.0)
}

/// RabbitMQ's total memory (the Erlang VM's view), in bytes, through `rabbitmqctl`. When that
/// cannot be had, the first failure says why on stderr (the figure is then "n/a").
pub fn broker_memory_bytes() -> Option<u64> {
    static WARNED: AtomicBool = AtomicBool::new(false);
    let reading = Command::new("rabbitmqctl")
        .args(["eval", "erlang:memory(total)."])
        .output()
        .context("running rabbitmqctl")
        .and_then(|output| {
            if !output.status.success() {
                bail!(
                    "rabbitmqctl eval: {}: {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                );
            }
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .rev()
                .find_map(|line| line.trim().parse().ok())
                .context("rabbitmqctl eval printed no number")
        });
    match reading {
        Ok(bytes) => Some(bytes),
        Err(error) => {
            if !WARNED.swap(true, Ordering::Relaxed) {
                eprintln!("herald-loadgen: warning: no broker memory figures: {error:#}");
            }
            None
        }
    }
}

/// The realtime counters herald's `/health` reports, when it reports them.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct RealtimeCounters {
    pub mode: Option<String>,
    pub sessions: Option<u64>,
    pub published: Option<u64>,
    pub consumed: Option<u64>,
    pub delivered: Option<u64>,
}

/// Reads `/health`; `None` if it does not answer or has no `realtime` section.
pub async fn realtime_counters(base_url: &str) -> Option<RealtimeCounters> {
    let client = awc::Client::default();
    let mut response = client.get(format!("{base_url}/health")).send().await.ok()?;
    let body: serde_json::Value = response.json().await.ok()?;
    serde_json::from_value(body.get("realtime")?.clone()).ok()
}

/// Every instance's realtime counters, summed (the mode is the first one's); `None` if one of
/// them does not answer.
pub async fn realtime_counters_all(base_urls: &[String]) -> Option<RealtimeCounters> {
    let mut each = Vec::with_capacity(base_urls.len());
    for url in base_urls {
        each.push(realtime_counters(url).await?);
    }
    sum_counters(each)
}

fn sum_counters(each: Vec<RealtimeCounters>) -> Option<RealtimeCounters> {
    let add = |a: Option<u64>, b: Option<u64>| Some(a? + b?);
    each.into_iter().reduce(|total, next| RealtimeCounters {
        mode: total.mode.or(next.mode),
        sessions: add(total.sessions, next.sessions),
        published: add(total.published, next.published),
        consumed: add(total.consumed, next.consumed),
        delivered: add(total.delivered, next.delivered),
    })
}

/// Every process's resident memory, summed, in KiB; `None` if there are none or one is gone.
pub fn rss_kib_all(pids: &[u32]) -> Option<u64> {
    (!pids.is_empty()).then_some(())?;
    pids.iter().map(|&pid| rss_kib(pid)).sum()
}

/// Every process's CPU time so far, summed, in ms; `None` if there are none or one is gone.
pub fn cpu_ms_all(pids: &[u32]) -> Option<f64> {
    (!pids.is_empty()).then_some(())?;
    pids.iter().map(|&pid| cpu_ms(pid)).sum()
}

/// Raises the soft open-file limit as far as allowed (the hard limit too, where privileged),
/// and fails early if it still cannot hold `needed` descriptors.
pub fn raise_nofile_limit(needed: u64) -> Result<u64> {
    let (_, hard) = rlimit::getrlimit(Resource::NOFILE).context("reading RLIMIT_NOFILE")?;
    let ceiling = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok())
        .unwrap_or(hard);
    // Raising the hard limit needs CAP_SYS_RESOURCE; without it keep the hard limit we have.
    if ceiling > hard && rlimit::setrlimit(Resource::NOFILE, ceiling, ceiling).is_ok() {
        return check_limit(ceiling, needed);
    }
    let soft = rlimit::increase_nofile_limit(hard).context("raising RLIMIT_NOFILE")?;
    check_limit(soft, needed)
}

fn check_limit(limit: u64, needed: u64) -> Result<u64> {
    if limit < needed {
        bail!(
            "open-file limit is {limit}, but this run needs about {needed}: \
             raise it (ulimit -Hn) or use fewer sessions"
        );
    }
    Ok(limit)
}

#[cfg(test)]
mod tests {
    #[test]
    fn vm_rss_is_read_in_kib() {
        let status = "Name:\therald\nVmPeak:\t  999 kB\nVmRSS:\t   123456 kB\nThreads:\t4\n";
        assert_eq!(super::parse_vm_rss(status), Some(123_456));
        assert_eq!(super::parse_vm_rss("Name:\tx\n"), None);
    }

    #[test]
    fn instances_counters_are_summed_and_a_missing_one_is_unknown() {
        use super::{sum_counters, RealtimeCounters};
        let counters = |published, consumed| RealtimeCounters {
            mode: Some("node".into()),
            sessions: Some(3),
            published,
            consumed,
            delivered: Some(7),
        };
        let total =
            sum_counters(vec![counters(Some(10), Some(1)), counters(Some(0), None)]).expect("some");
        assert_eq!(total.mode.as_deref(), Some("node"));
        assert_eq!(total.sessions, Some(6));
        assert_eq!(total.published, Some(10));
        assert_eq!(total.consumed, None);
        assert_eq!(total.delivered, Some(14));
        assert_eq!(sum_counters(Vec::new()), None);
        assert_eq!(super::cpu_ms_all(&[]), None);
        assert_eq!(super::rss_kib_all(&[]), None);
    }

    #[test]
    fn cpu_time_is_user_plus_system_ticks() {
        let stat = "4242 (herald (x)) S 1 2 3 4 5 6 7 8 9 10 150 25 0 0 20 0 7 0";
        assert_eq!(super::parse_cpu_ms(stat), Some(1750.0));
        assert_eq!(super::parse_cpu_ms("garbage"), None);
    }
}
