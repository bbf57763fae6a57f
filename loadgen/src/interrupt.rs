//! Ctrl-C and SIGTERM. The first one stops the run at the phase it is in: the figures measured so
//! far still go into a (partial) report, and the reason is printed. A second one quits at once.

use std::future::Future;

use anyhow::{anyhow, Result};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::watch;

/// Whether, and by which signal, the run was asked to stop.
#[derive(Clone)]
pub struct Interrupt(watch::Receiver<Option<&'static str>>);

impl Interrupt {
    /// Starts listening for SIGINT and SIGTERM on the current runtime. Where the handlers
    /// cannot be installed the signals keep their default effect (the process just ends).
    pub fn listen() -> Interrupt {
        let (tx, rx) = watch::channel(None);
        match signal(SignalKind::interrupt())
            .and_then(|int| Ok((int, signal(SignalKind::terminate())?)))
        {
            Ok((mut int, mut term)) => {
                actix_rt::spawn(async move {
                    let first = next_signal(&mut int, &mut term).await;
                    eprintln!(
                        "\nherald-loadgen: {first} received: stopping; what was measured so far goes \
                         into a partial report ({first} again quits at once, without one)"
                    );
                    let _ = tx.send(Some(first));
                    let again = next_signal(&mut int, &mut term).await;
                    eprintln!("herald-loadgen: {again} received again: quitting without a report");
                    std::process::exit(130);
                });
            }
            Err(error) => eprintln!(
                "herald-loadgen: warning: cannot handle SIGINT/SIGTERM ({error}); \
                 a signal will end the run without a report"
            ),
        }
        Interrupt(rx)
    }

    /// Runs `work` to its end, unless a signal arrives first: then it fails, naming the signal.
    pub async fn guard<T>(&self, work: impl Future<Output = Result<T>>) -> Result<T> {
        let mut signalled = self.0.clone();
        let stop = async move {
            loop {
                if let Some(name) = *signalled.borrow_and_update() {
                    return name;
                }
                if signalled.changed().await.is_err() {
                    // The listener is gone (it never is while the process runs): never stop.
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            result = work => result,
            name = stop => Err(anyhow!("interrupted by {name}")),
        }
    }
}

async fn next_signal(int: &mut Signal, term: &mut Signal) -> &'static str {
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}
