//! One private PostgreSQL server of a failover test's pair (see `pg_cluster`): started, stopped
//! fast, killed like a crash, promoted, and asked where its WAL is.

use std::fs;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use herald::store::database;
use herald::store::pg_tls::PgTls;

use super::private_broker::{signal, stop_with_parent, tail};
use super::private_postgres::{as_postgres, bin_dir, postmaster_pid, stop_server};

/// How long a start or a promotion may take on a busy machine.
const SLOW_STEP: Duration = Duration::from_secs(120);

/// How long a server may take to stop before it is stopped harder.
const STOP_DEADLINE: Duration = Duration::from_secs(20);

/// One server of the pair.
pub struct PgNode {
    pub name: &'static str,
    pub(super) dir: PathBuf,
    pub port: u16,
    pub(super) settings: Vec<String>,
    pub(super) server: Option<tokio::process::Child>,
}

impl PgNode {
    pub(super) fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    /// A URL of `database` on this server alone.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Starts the server and waits until it takes connections (a standby: once consistent).
    pub async fn start(&mut self) {
        assert!(self.server.is_none(), "{} already runs", self.name);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_file())
            .expect("its log");
        let log_err = log.try_clone().expect("its log, twice");
        let mut command = as_postgres(&bin_dir().join("postgres"));
        command.arg("-D").arg(self.data());
        for setting in &self.settings {
            command.arg("-c").arg(setting);
        }
        command.stdin(Stdio::null()).stdout(log).stderr(log_err);
        stop_with_parent(&mut command);
        self.server = Some(command.spawn().expect("postgres runs"));
        let started = Instant::now();
        loop {
            let probe = tokio::time::timeout(
                Duration::from_secs(5),
                database::connect(&self.url("postgres"), &PgTls::disabled()),
            )
            .await;
            if let Ok(Ok(_)) = probe {
                return;
            }
            if let Some(server) = self.server.as_mut() {
                if let Ok(Some(status)) = server.try_wait() {
                    self.server = None;
                    panic!("{}", self.report(&format!("exited ({status}) at start")));
                }
            }
            assert!(
                started.elapsed() < SLOW_STEP,
                "{}",
                self.report("takes no connection")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn postmaster(&self) -> Option<u32> {
        postmaster_pid(&self.data())
    }

    /// A fast shutdown (SIGINT), awaited.
    pub async fn stop_fast(&mut self) {
        self.stop_with(libc::SIGINT).await;
    }

    /// A crash: SIGKILL to the postmaster and then to every process it had started (as a
    /// machine crash would take them all), awaited, so the server can be started again.
    pub async fn kill(&mut self) {
        let children = self.postmaster().map(children_of).unwrap_or_default();
        self.stop_with(libc::SIGKILL).await;
        for child in &children {
            signal(*child, libc::SIGKILL);
        }
        let started = Instant::now();
        while children
            .iter()
            .any(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists())
            && started.elapsed() < STOP_DEADLINE
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop_with(&mut self, sig: libc::c_int) {
        let Some(mut server) = self.server.take() else {
            return;
        };
        match self.postmaster() {
            Some(pid) => signal(pid, sig),
            None => {
                let _ = server.start_kill();
            }
        }
        if tokio::time::timeout(STOP_DEADLINE, server.wait())
            .await
            .is_err()
        {
            let _ = server.start_kill();
            let _ = server.wait().await;
        }
    }

    /// `pg_ctl promote`, then waits until the server takes writes.
    pub async fn promote(&self) {
        let output = as_postgres(&bin_dir().join("pg_ctl"))
            .args(["promote", "-w", "-t", "120", "-D"])
            .arg(self.data())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .expect("pg_ctl runs");
        assert!(
            output.status.success(),
            "pg_ctl promote: {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            self.report("")
        );
        let started = Instant::now();
        while self.is_in_recovery().await != Some(false) {
            assert!(
                started.elapsed() < SLOW_STEP,
                "{}",
                self.report("not promoted")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn connect(&self) -> Option<AsyncPgConnection> {
        database::connect(&self.url("postgres"), &PgTls::disabled())
            .await
            .ok()
    }

    async fn is_in_recovery(&self) -> Option<bool> {
        #[derive(QueryableByName)]
        struct Recovery {
            #[diesel(sql_type = Bool)]
            recovering: bool,
        }
        let mut conn = self.connect().await?;
        let found: Recovery = diesel::sql_query("SELECT pg_is_in_recovery() AS recovering")
            .get_result(&mut conn)
            .await
            .ok()?;
        Some(found.recovering)
    }

    pub(super) async fn lsn(&self, query: &str) -> Option<i64> {
        #[derive(QueryableByName)]
        struct Lsn {
            #[diesel(sql_type = BigInt)]
            lsn: i64,
        }
        let mut conn = self.connect().await?;
        let found: Lsn = diesel::sql_query(query).get_result(&mut conn).await.ok()?;
        Some(found.lsn)
    }

    pub(super) fn report(&self, why: &str) -> String {
        format!(
            "PostgreSQL {} in {} (port {}) {why}\n--- end of its log ---\n{}",
            self.name,
            self.dir.display(),
            self.port,
            tail(&self.log_file())
        )
    }

    /// Stops it (blocking, for `Drop`): fast, then immediate, then SIGKILL.
    pub(super) fn stop_now(&mut self) {
        if let Some(mut server) = self.server.take() {
            let what = format!("PostgreSQL node in {}", self.log_file().display());
            stop_server(&mut server, self.postmaster(), &what);
        }
    }
}

/// The processes whose parent is `parent` (read from `/proc`).
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(entry.path().join("stat")).ok()?;
            // `pid (comm) state ppid …`: the command may hold blanks and parentheses.
            let after_comm = &stat[stat.rfind(')')? + 1..];
            let ppid: u32 = after_comm.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == parent).then_some(pid)
        })
        .collect()
}
