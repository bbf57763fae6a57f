//! Faults injected during the load (`--at SECS:COMMAND`): shell commands run one after another,
//! each at its offset from the start of the posting (or as soon as the one before has finished),
//! timed, with their exit status and the tail of their output kept for the report. A command
//! that cannot start, fails or overruns its timeout fails the run: the scenario did not happen.

use std::process::Stdio;
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::process::Command;

use crate::seconds_arg;

/// Characters of a command's output (stdout, then stderr) kept for the report: the last ones.
const OUTPUT_TAIL: usize = 400;

/// One `--at SECS:COMMAND`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Fault {
    /// Seconds after the first post is sent.
    pub at_secs: f64,
    /// Run by `sh -c`.
    pub command: String,
}

impl FromStr for Fault {
    type Err = String;

    fn from_str(value: &str) -> Result<Fault, String> {
        let (at, command) = value
            .split_once(':')
            .ok_or_else(|| format!("expected SECS:COMMAND (got '{value}')"))?;
        let at_secs: f64 = at
            .trim()
            .parse()
            .map_err(|_| format!("'{at}' is not a number of seconds (expected SECS:COMMAND)"))?;
        seconds_arg("--at", at_secs).map_err(|error| error.to_string())?;
        let command = command.trim();
        if command.is_empty() {
            return Err(format!("no command after '{at}:'"));
        }
        Ok(Fault {
            at_secs,
            command: command.to_owned(),
        })
    }
}

/// What became of one fault. Times are seconds from the start of the posting.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FaultFigures {
    pub at_secs: f64,
    pub command: String,
    /// When it started: later than `at_secs` when the fault before it overran.
    pub started_secs: Option<f64>,
    /// How long it ran.
    pub seconds: Option<f64>,
    pub exit_code: Option<i32>,
    pub ok: bool,
    /// Why it is not ok.
    pub error: Option<String>,
    /// The end of its output.
    pub output: String,
}

/// Runs `faults` in order of their offsets from `start`, each given at most `timeout`.
pub async fn run(faults: &[Fault], start: Instant, timeout: Duration) -> Vec<FaultFigures> {
    let mut ordered: Vec<&Fault> = faults.iter().collect();
    ordered.sort_by(|a, b| a.at_secs.total_cmp(&b.at_secs));
    let mut figures = Vec::with_capacity(ordered.len());
    for fault in ordered {
        // Offsets were checked when parsed; one that still overflows runs at once.
        let due = Duration::try_from_secs_f64(fault.at_secs)
            .ok()
            .and_then(|offset| start.checked_add(offset))
            .unwrap_or(start);
        tokio::time::sleep_until(due.into()).await;
        let began = Instant::now();
        let mut figure = FaultFigures {
            at_secs: fault.at_secs,
            command: fault.command.clone(),
            started_secs: Some(began.saturating_duration_since(start).as_secs_f64()),
            ..FaultFigures::default()
        };
        let child = Command::new("sh")
            .arg("-c")
            .arg(&fault.command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output();
        match tokio::time::timeout(timeout, child).await {
            Ok(Ok(output)) => {
                figure.exit_code = output.status.code();
                figure.ok = output.status.success();
                if !figure.ok {
                    figure.error = Some(format!("it exited with {}", output.status));
                }
                let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
                text.push_str(&String::from_utf8_lossy(&output.stderr));
                figure.output = tail(text.trim(), OUTPUT_TAIL);
            }
            Ok(Err(error)) => figure.error = Some(format!("it could not be started: {error}")),
            Err(_) => {
                figure.error = Some(format!(
                    "it was still running after {:.0} s and was killed",
                    timeout.as_secs_f64()
                ))
            }
        }
        figure.seconds = Some(began.elapsed().as_secs_f64());
        eprintln!(
            "fault at {} s: `{}`: {} after {:.2} s (started at {:.2} s)",
            fault.at_secs,
            fault.command,
            figure.error.as_deref().unwrap_or("done"),
            figure.seconds.unwrap_or_default(),
            figure.started_secs.unwrap_or_default()
        );
        figures.push(figure);
    }
    figures
}

/// The last `max` characters of `text`, marked as cut when they are not all of it.
fn tail(text: &str, max: usize) -> String {
    let count = text.chars().count();
    if count <= max {
        return text.to_owned();
    }
    let cut: String = text.chars().skip(count - max).collect();
    format!("…{cut}")
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{run, tail, Fault};

    #[test]
    fn at_arguments_name_an_offset_and_a_command() {
        let fault: Fault = "20:rabbitmqctl -n a@localhost stop_app"
            .parse()
            .expect("fault");
        assert_eq!(fault.at_secs, 20.0);
        assert_eq!(fault.command, "rabbitmqctl -n a@localhost stop_app");
        // Only the first colon separates: the command may hold more.
        let fault: Fault = " 1.5 : echo a:b ".parse().expect("fault");
        assert_eq!((fault.at_secs, fault.command.as_str()), (1.5, "echo a:b"));
        for bad in ["20", "x:echo", "-1:echo", "inf:echo", "20:", "20:  "] {
            assert!(bad.parse::<Fault>().is_err(), "{bad}");
        }
    }

    #[test]
    fn output_tails_keep_the_end() {
        assert_eq!(tail("short", 10), "short");
        assert_eq!(tail("ééééé-end", 4), "…-end");
    }

    #[actix_rt::test]
    async fn faults_run_in_order_and_failures_are_reported() {
        let start = Instant::now();
        let faults = [
            "0.2:echo second; exit 3".parse().expect("fault"),
            "0:echo first".parse().expect("fault"),
            "0.3:sleep 5".parse().expect("fault"),
        ];
        let figures = run(&faults, start, Duration::from_millis(500)).await;
        assert_eq!(figures.len(), 3);
        assert_eq!(figures[0].command, "echo first");
        assert!(figures[0].ok);
        assert_eq!(figures[0].exit_code, Some(0));
        assert_eq!(figures[0].output, "first");
        assert!(!figures[1].ok);
        assert_eq!(figures[1].exit_code, Some(3));
        assert_eq!(figures[1].output, "second");
        assert!(figures[1].started_secs.expect("started") >= 0.2);
        assert!(!figures[2].ok);
        assert!(figures[2]
            .error
            .as_deref()
            .expect("error")
            .contains("still running"));
        assert!(start.elapsed() < Duration::from_secs(4));
    }
}
